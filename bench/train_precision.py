"""Does bfloat16 training reach the bits/dim of float32 training at equal steps?

Trains the "small" PixelCNN++ preset on the bundled MNIST digits from the same
initialization on the same batches (same seed) in each numerics mode, then evaluates exact
test bits/dim over all 1,000 test digits in float32 with the Polyak-averaged weights. The
difference column is against float32 eager; img/s is the mean training speed of the run.

    python bench/train_precision.py [--steps 300] [--batch 32] [--modes fp32 bf16 bf16-cl]
"""

from __future__ import annotations

import argparse
import time

import torch

from tractable.evaluation import evaluate_bpd
from tractable.training import TrainConfig, Trainer, load_split, make_model

MODES = {"fp32": ("fp32", False), "fp32-cl": ("fp32", True), "bf16": ("bf16", False),
         "bf16-cl": ("bf16", True)}


def run(mode: str, steps: int, batch: int, seed: int) -> tuple[float, float, float]:
    precision, channels_last = MODES[mode]
    train, test = load_split("mnist-mini", "train"), load_split("mnist-mini", "test")
    model = make_model("pixelcnn++", train, seed=seed, preset="small")
    cfg = TrainConfig(batch_size=batch, max_steps=steps, precision=precision,
                      channels_last=channels_last, samples_per_eval=0, progress=False,
                      quiet=True, log_every=steps, seed=seed, device="cpu")
    trainer = Trainer(model, train, None, cfg)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    ema = trainer.ema.model.to(memory_format=torch.contiguous_format)
    test_bpd = evaluate_bpd(ema, test, batch_size=100).bits_per_dim
    train_bpd = trainer.log.of_kind("train")[-1]["bpd"]
    return test_bpd, train_bpd, steps * batch / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", default=["fp32", "bf16", "bf16-cl"],
                   choices=list(MODES))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# PixelCNN++ small on mnist-mini, {args.steps} steps x batch {args.batch}, "
          f"seed {args.seed}, {torch.get_num_threads()} threads; test bpd in fp32, EMA weights")
    print(f"{'mode':8s} {'test bpd':>9s} {'vs fp32':>8s} {'last train bpd':>15s} {'img/s':>7s}")
    base = None
    for mode in args.modes:
        test_bpd, train_bpd, ips = run(mode, args.steps, args.batch, args.seed)
        base = test_bpd if base is None and mode == "fp32" else base
        diff = f"{test_bpd - base:+8.4f}" if base is not None else "       -"
        print(f"{mode:8s} {test_bpd:9.4f} {diff} {train_bpd:15.4f} {ips:7.1f}", flush=True)


if __name__ == "__main__":
    main()
