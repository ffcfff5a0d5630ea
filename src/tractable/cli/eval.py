"""`tractable eval`: exact bits/dim of a run or saved model over a dataset split
(`tractable.evaluation.evaluate_bpd`)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from tractable.cli.common import (
    data_source_args,
    dataset_for,
    examples,
    limit_arg,
    open_model,
    weights_and_device_args,
)
from tractable.data import load_dataset
from tractable.errors import ConfigError, NumericalError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "eval", help="exact bits/dim of a run or saved model on a dataset",
        description="Exact bits/dim (and nats per image) of a model over every image of a "
        "dataset split, or a fixed random subset of them (--limit).",
        epilog=examples("tractable eval runs/m",
                        "tractable eval runs/m --split train --limit 1000 --json",
                        "tractable eval runs/m/model --data fashion-mnist --root ~/data/fmnist"))
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("--data", help="dataset (default: the one the run trained on)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    limit_arg(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    data_source_args(p)
    p.add_argument("--batch-size", type=int, default=64, metavar="IMAGES",
                   help="images per forward pass")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    weights_and_device_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from tractable.evaluation import evaluate_bpd

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    model, folder = open_model(args)
    model_dir = folder.model_dir
    data, opts = dataset_for(args, folder)
    ds = load_dataset(data, args.split, limit=args.limit, seed=args.seed, **opts)
    res = evaluate_bpd(model, ds, batch_size=args.batch_size, precision=args.precision,
                       progress=args.progress and sys.stderr.isatty())
    if not math.isfinite(res.bits_per_dim):
        raise NumericalError(f"{model_dir} scores {data} {args.split} at {res.bits_per_dim} "
                             "bits/dim: the model's numbers overflow on these images")
    label = model.bits_per_dim_label  # e.g. "bits/dim (4-level data)"
    out = {"data": data, "split": args.split, "model": str(model_dir), "family": model.family,
           "weights": args.weights, "precision": args.precision, "bits_per_dim_label": label,
           **res.to_dict()}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"{data} {args.split}: {res.bits_per_dim:.4f} {label} over {res.num_images} "
              f"images ({res.nats_per_image:.2f} nats/image; {model.family}, "
              f"{args.weights} weights, {args.precision})")
    return 0


