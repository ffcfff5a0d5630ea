"""`tractable sample`: draw samples from a run or saved model into a labelled PNG grid
(`model.sample`, with a progress bar as its callback)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from tractable.cli.classes import class_labels, parse_class_spec
from tractable.cli.common import (
    ProgressBar,
    examples,
    open_model,
    weights_and_device_args,
)
from tractable.cli.output import output_path
from tractable.errors import ShapeError
from tractable.limits import MAX_IMAGES
from tractable.sampling import sampler_help, sampler_names


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sample", help="draw samples into a PNG grid (and .npy)",
        description="Draw samples from a run or saved model into a PNG grid (small images "
        "enlarged, one row per class with --class all, labelled), optionally also as .npy.",
        epilog=examples("tractable sample runs/m -n 64 --out samples.png --temperature 0.9",
                        "tractable sample runs/cond --class all -n 80 --out rows.png",
                        "tractable sample runs/cond --class 4:0.5,9:0.5 -n 16 --seed 1",
                        "tractable sample runs/m -n 1 --sampler naive --dtype float64 --npy"))
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("-n", type=int, default=64, metavar="IMAGES",
                   help="number of images (with --class all: per-class count is n // K, at "
                   "least 1)")
    p.add_argument("--out", metavar="PNG", help="the grid's file (default samples.png, or "
                   "samples-1.png, ... if that exists)")
    p.add_argument("--class", dest="class_spec", metavar="SPEC",
                   help="3 | cat | 4:0.5,9:0.5 (soft blend) | all (one row per class) "
                   "(default: unconditional, or classes in turn for a conditional model)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="scales the sampling distributions; < 1: smoother images")
    p.add_argument("--seed", type=int, default=0, help="same seed, same images")
    p.add_argument("--npy", action="store_true", help="also write uint8 [n, C, H, W] as .npy")
    p.add_argument("--sampler", metavar="|".join(sampler_names()),
                   help="default: the family's; " + sampler_help())
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="float64: exact mode of the autoregressive samplers")
    weights_and_device_args(p)
    p.add_argument("--nrow", type=int, metavar="IMAGES",
                   help="images per grid row (default: square, or one row per class)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    from tractable.viz import save_grid

    if not 1 <= args.n <= MAX_IMAGES:
        raise ShapeError(f"-n must be between 1 and {MAX_IMAGES:,} (one grid), got {args.n}; "
                         "draw more in several runs with different --seed")
    if args.nrow is not None and args.nrow < 1:
        raise ShapeError(f"--nrow must be >= 1, got {args.nrow}")
    out = output_path(args.out, "samples.png", (".npy",) if args.npy else ())
    model, folder = open_model(args)
    y, n, nrow, labels = classes_to_draw(args, model.config)
    param = next(model.parameters())
    if y is not None:
        y = y.to(param.device, param.dtype if y.is_floating_point() else y.dtype)
    x = model.sample(n, y=y, temperature=args.temperature,  # checked by the sampler
                     generator=torch.Generator(param.device).manual_seed(args.seed),
                     sampler=args.sampler, callback=ProgressBar()).cpu()
    if args.temperature != 1.0:
        labels["title"] = (labels.get("title", "") + f"  T = {args.temperature:g}").strip()
    save_grid(x, out, nrow=nrow, **labels)
    print(f"wrote {n} samples from {folder.model_dir} to {out}")
    if args.npy:
        from tractable._io import atomic_write_with

        npy = out.with_suffix(".npy")
        atomic_write_with(npy, lambda f: np.save(f, x.numpy()))
        print(f"wrote uint8 array {list(x.shape)} to {npy}")
    return 0


def classes_to_draw(args: argparse.Namespace, cfg: Any
                    ) -> tuple[torch.Tensor | None, int, int | None, dict[str, Any]]:
    """(y, n, images per grid row, the grid's labels) for `--class` (or, for a conditional
    model without it, the classes in turn, one per column)."""
    y, n, nrow = None, args.n, args.nrow
    labels: dict[str, Any] = {}
    names = class_labels(cfg)
    if args.class_spec is not None:
        y, n, per_row = parse_class_spec(args.class_spec, args.n, cfg.num_classes,
                                         list(cfg.class_names))
        nrow = nrow or per_row
        if per_row is not None and nrow == per_row:
            labels["row_labels"] = names
        elif y.dim() == 1 and args.class_spec.strip() != "all":
            labels["title"] = f"class {names[int(y[0])]}"
        elif y.dim() == 2:
            labels["title"] = "blend " + ", ".join(
                f"{names[k]} {float(w):.2g}" for k, w in enumerate(y[0]) if w > 0)
    elif cfg.num_classes:
        y = torch.arange(n) % cfg.num_classes
        nrow = nrow or cfg.num_classes
        if nrow == cfg.num_classes:
            labels["col_labels"] = names
        print(f"class-conditional model: sampling classes 0..{cfg.num_classes - 1} in turn "
              "(choose with --class)", file=sys.stderr)
    return y, n, nrow, labels
