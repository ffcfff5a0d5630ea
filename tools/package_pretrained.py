"""Copy a finished training run into the package as a shipped model (`pretrained:NAME`).

Evaluates the run's Polyak-averaged model on the full test split and on a fixed subset
(the first N test images, recorded so the tests can re-evaluate it exactly), then writes
src/tractable/pretrained/NAME/{config.json, model.safetensors, pretrained.json}.

    python tools/package_pretrained.py RUN_DIR NAME [--root DATA_ROOT] [--subset 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from tractable.config import CONFIG_NAME
from tractable.data import load_dataset
from tractable.evaluation import evaluate_bpd
from tractable.models import load
from tractable.models.base import WEIGHTS_NAME

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tractable" / "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--root", help="dataset folder (fashion-mnist)")
    parser.add_argument("--subset", type=int, default=64, help="first N test images")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--test-limit", type=int,
                        help="evaluate only the first N test images (default: all)")
    parser.add_argument("--command", help="the training command(s), when they were more "
                                          "than one plain `tractable train` (e.g. resumed)")
    parser.add_argument("--hardware", help="where it was trained (default: this CPU, shared)")
    args = parser.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    summary = json.loads((args.run / "summary.json").read_text())
    model = load(args.run / "model").eval()
    data = run["data"]
    opts = {"root": args.root} if args.root else {}
    test = load_dataset(data, "test", **opts)
    first = type(test)(test.images[:args.subset], test.labels[:args.subset], test.class_names,
                       test.name)
    if args.test_limit:
        test = type(test)(test.images[:args.test_limit], test.labels[:args.test_limit],
                          test.class_names, test.name)
    # Glow's bits/dim draws dequantization noise: seed it so the numbers can be re-derived
    torch.manual_seed(0)
    t0 = time.perf_counter()
    full = evaluate_bpd(model, test, batch_size=args.batch_size)
    eval_s = time.perf_counter() - t0
    torch.manual_seed(0)
    sub = evaluate_bpd(model, first, batch_size=args.batch_size)
    train = run["train"]
    record = {
        "family": run["family"], "data": data, "num_classes": model.config.num_classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_bits_per_dim": round(full.bits_per_dim, 4), "test_images": full.num_images,
        "test_images_which": "all" if full.num_images == len(test) and not args.test_limit
        else f"the first {full.num_images} of the test split",
        "subset_first_n": args.subset, "subset_bits_per_dim": sub.bits_per_dim,
        "subset_seed": 0, "subset_batch_size": args.batch_size,
        "steps": summary["step"], "batch_size": train["batch_size"],
        "train_seconds": round(summary["elapsed_s"]),
        "eval_seconds": round(eval_s),
        "weights": "Polyak average (EMA)",
        "hardware": args.hardware or f"CPU, {torch.get_num_threads()} thread(s) at "
                    "evaluation; trained with 1 thread on a 2-core AMD EPYC (Zen 4) shared "
                    "with other jobs",
        "model_config": run["model_config"], "optimizer": run["optimizer"],
        "command": args.command or f"tractable train --model {run['family']} --preset small "
                   f"--conditional --data {data} --batch-size {train['batch_size']} "
                   f"--max-steps {summary['step']}",
    }
    out = PACKAGE / args.name
    out.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copyfile(args.run / "model" / name, out / name)
    (out / "pretrained.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("test_bits_per_dim", "test_images",
                                             "subset_bits_per_dim", "steps")}))


if __name__ == "__main__":
    main()
