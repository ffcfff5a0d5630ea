"""Does bfloat16 training reach the bits/dim of float32 training at equal steps?

Trains the "small" PixelCNN++ preset on the bundled MNIST digits from the same
initialization on the same batches (same seed) in each numerics mode, then evaluates exact
test bits/dim over all 1,000 test digits in float32 with the Polyak-averaged weights. The
difference column is against float32 with the same seed; img/s is the run's mean speed.
Short runs differ from seed to seed by more than one might expect (the weights are still
moving fast), so several seeds are run and the spread is printed: the question is whether
bfloat16 falls outside the float32 spread.

    python bench/train_precision.py [--steps 600] [--batch 16] [--seeds 0 1 2]
        [--modes fp32 bf16 bf16-cl fp32-cl-compile] [--threads N]

img/s includes a compiled mode's warm-up (the compiler's first steps).

`--against DIR` instead trains the *default* trainer (no numerics flags) of this checkout and
of another checkout DIR (each in a subprocess importing its own `DIR/src`), same seeds,
steps and batches, and prints the same columns per checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from tractable.data import load_dataset
from tractable.evaluation import evaluate_bpd
from tractable.training import TrainConfig, Trainer, make_model

# name -> (precision, channels_last, compile)
MODES = {"fp32": ("fp32", False, False), "fp32-cl": ("fp32", True, False),
         "fp32-cl-compile": ("fp32", True, True), "bf16": ("bf16", False, False),
         "bf16-cl": ("bf16", True, False)}


def run(mode: str | None, steps: int, batch: int, seed: int) -> tuple[float, float, float]:
    """(test bpd, last train bpd, img/s) of one run in numerics `mode`; None: the trainer's
    defaults for every numerics setting (also for an older checkout's `TrainConfig`)."""
    numerics = {} if mode is None else dict(zip(("precision", "channels_last", "compile"),
                                                MODES[mode], strict=True))
    train, test = load_dataset("mnist-mini", "train"), load_dataset("mnist-mini", "test")
    model = make_model("pixelcnn++", train, seed=seed, preset="small")
    cfg = TrainConfig(batch_size=batch, max_steps=steps, samples_per_eval=0, progress=False,
                      quiet=True, log_every=steps, seed=seed, device="cpu", **numerics)
    trainer = Trainer(model, train, None, cfg)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    ema = trainer.ema.model.to(memory_format=torch.contiguous_format)
    test_bpd = evaluate_bpd(ema, test, batch_size=100).bits_per_dim
    train_bpd = trainer.log.of_kind("train")[-1]["bpd"]
    return test_bpd, train_bpd, steps * batch / seconds


def against(tree: Path, steps: int, batches: int, seeds: list[int], threads: int) -> None:
    here = Path(__file__).resolve().parents[1]
    print(f"# PixelCNN++ small on mnist-mini, default trainer of this checkout vs {tree}, "
          f"{steps} steps x batch {batches}, {threads} threads; test bpd over 1000 digits "
          "in fp32, EMA weights")
    print(f"{'checkout':9s} {'seed':>4s} {'test bpd':>9s} {'vs other':>8s} "
          f"{'last train bpd':>15s} {'img/s':>7s}")
    results: dict[str, list[float]] = {"against": [], "this": []}
    for seed in seeds:
        base = None
        for name, root in (("against", tree), ("this", here)):
            env = dict(os.environ, PYTHONPATH=str(root / "src"), OMP_NUM_THREADS=str(threads))
            out = subprocess.run([sys.executable, __file__, "--default-worker", "--steps",
                                  str(steps), "--batch", str(batches), "--seeds", str(seed),
                                  "--threads", str(threads)], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            test_bpd, train_bpd, ips = map(float, out[-3:])
            results[name].append(test_bpd)
            base = test_bpd if base is None else base
            diff = f"{test_bpd - base:+8.4f}" if name == "this" else "       -"
            print(f"{name:9s} {seed:4d} {test_bpd:9.4f} {diff} {train_bpd:15.4f} {ips:7.1f}",
                  flush=True)
    print("# over seeds: mean test bpd (min..max)")
    for name, vals in results.items():
        print(f"{name:9s} {statistics.mean(vals):.4f} ({min(vals):.4f}..{max(vals):.4f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--modes", nargs="+", default=["fp32", "bf16"], choices=list(MODES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--against", type=Path, default=None)
    p.add_argument("--default-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.default_worker:
        print(*run(None, args.steps, args.batch, args.seeds[0]))
        return
    if args.against is not None:
        against(args.against.resolve(), args.steps, args.batch, args.seeds,
                args.threads or torch.get_num_threads())
        return
    print(f"# PixelCNN++ small on mnist-mini, {args.steps} steps x batch {args.batch}, "
          f"{torch.get_num_threads()} threads; test bpd over 1000 digits in fp32, EMA weights")
    print(f"{'mode':8s} {'seed':>4s} {'test bpd':>9s} {'vs fp32':>8s} {'last train bpd':>15s} "
          f"{'img/s':>7s}")
    results: dict[str, list[float]] = {m: [] for m in args.modes}
    for seed in args.seeds:
        base = None
        for mode in args.modes:
            test_bpd, train_bpd, ips = run(mode, args.steps, args.batch, seed)
            results[mode].append(test_bpd)
            base = test_bpd if base is None and mode == "fp32" else base
            diff = f"{test_bpd - base:+8.4f}" if base is not None else "       -"
            print(f"{mode:8s} {seed:4d} {test_bpd:9.4f} {diff} {train_bpd:15.4f} {ips:7.1f}",
                  flush=True)
    print("# over seeds: mean test bpd (min..max)")
    for mode, vals in results.items():
        print(f"{mode:8s} {statistics.mean(vals):.4f} ({min(vals):.4f}..{max(vals):.4f})")

if __name__ == "__main__":
    main()
