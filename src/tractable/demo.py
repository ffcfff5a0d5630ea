"""`make demo`: train a small class-conditional PixelCNN++ on the bundled MNIST digits.

Trains the "small" preset (nr_resnet 1, nr_filters 32, 5 logistics) for about two epochs
(2,400 steps of 8 digits, the paper's optimizer settings) on CPU, evaluates exact test
bits/dim with the Polyak-averaged weights over all 1,000 test digits, and draws one row of
samples per digit class. Everything lands in the run folder
(default runs/demo): the sample grid, the GIF of sample grids over training, the bits/dim
curve, the metrics log and the model. Re-running continues an interrupted run.

The same through the command line:

    tractable train --model pixelcnn++ --preset small --conditional --data mnist-mini \
        --batch-size 8 --max-steps 2400 --eval-every 400 --out runs/demo
    tractable eval runs/demo
    tractable sample runs/demo --class all -n 80 --out runs/demo/samples.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from tractable.cli.failures import run_guarded
from tractable.data import load_dataset
from tractable.evaluation import evaluate_bpd
from tractable.models import load
from tractable.training import TrainConfig, resume, train
from tractable.training.checkpoint import MODEL_DIR, STATE_NAME
from tractable.training.pictures import draw_samples
from tractable.viz import save_grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--steps", type=int, default=2400, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="default: the paper's 1e-3")
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--per-class", type=int, default=8, help="samples per digit class")
    parser.add_argument("--limit-test", type=int, default=None, metavar="IMAGES",
                        help="evaluate on a fixed random subset of the test digits "
                        "(default: all 1,000)")
    parser.add_argument("--seed", type=int, default=0)
    return run_guarded(run_demo, parser.parse_args(argv))


def run_demo(args: argparse.Namespace) -> int:
    """Train (or continue), evaluate and sample; bad settings fail in one line (`main`)."""
    out = Path(args.out)
    t0 = time.perf_counter()

    print(f"training a small class-conditional PixelCNN++ on the bundled MNIST digits "
          f"({args.steps} steps of {args.batch_size} images, {torch.get_num_threads()} CPU "
          f"threads) -> {out}")
    if (out / STATE_NAME).is_file():
        print("continuing the run found there")
        resume(out, changes={"max_steps": args.steps})
    else:
        config = TrainConfig(data="mnist-mini", out=str(out), batch_size=args.batch_size,
                             lr=args.lr, max_steps=args.steps, eval_every=args.eval_every,
                             log_every=50, checkpoint_every=400, samples_per_eval=20,
                             sampler="cached", seed=args.seed, limit_test=args.limit_test)
        train("pixelcnn++", config, preset="small", conditional=True)
    t_train = time.perf_counter() - t0

    model = load(out / MODEL_DIR)
    test = load_dataset("mnist-mini", "test", limit=args.limit_test, seed=args.seed)
    result = evaluate_bpd(model, test, batch_size=100)
    k = model.config.num_classes
    y = torch.arange(k).repeat_interleave(args.per_class)
    samples = draw_samples(model, len(y), y=y, seed=args.seed, sampler="cached")
    save_grid(samples, out / "samples.png", nrow=args.per_class,
              row_labels=[f"digit {name}" for name in model.config.class_names],
              title=f"class-conditional samples, test {result.bits_per_dim:.3f} bits/dim")

    every = "all " if args.limit_test is None else ""
    print(f"\ntest bits/dim (EMA weights, {every}{result.num_images} test digits): "
          f"{result.bits_per_dim:.4f}")
    print(f"samples, one row per digit 0-9:  {out / 'samples.png'}")
    print(f"samples over training (GIF):     {out / 'samples.gif'}")
    print(f"bits/dim curve:                  {out / 'bpd.png'}")
    print(f"model (for tractable eval/sample): {out / MODEL_DIR}")
    print(f"time: {t_train:.0f} s training, {time.perf_counter() - t0 - t_train:.0f} s "
          "evaluating and sampling")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
