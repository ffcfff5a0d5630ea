"""Training throughput (images/s) of PixelCNN++ through the real trainer, by numerics mode.

Each row times full optimizer steps of `tractable.training.Trainer` (batch → loss →
backward → grad norm → Adam → EMA) on real images: the bundled MNIST digits for the
"small" preset (1×28×28) and the first CIFAR-10 batch from ../shared/data for the "paper"
preset (3×32×32). Modes: float32 eager (the baseline), channels_last, bfloat16 autocast,
and torch.compile on top. The ratio column is img/s over float32 eager of the same
configuration, all measured in this one run: the modes are timed in interleaved rounds and
each reports its median, so a change of machine load affects every mode alike.

    python bench/train_throughput.py [--configs small paper] [--steps 2] [--rounds 3]
        [--warmup 2] [--batch-small 32] [--batch-paper 8] [--modes fp32 bf16-cl ...]
        [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from tractable.data import load_dataset
from tractable.training import TrainConfig, Trainer, make_model

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-first4000"

# name -> (precision, channels_last, compile)
MODES = {
    "fp32": ("fp32", False, False),
    "fp32-cl": ("fp32", True, False),
    "bf16": ("bf16", False, False),
    "bf16-cl": ("bf16", True, False),
    "fp32-cl-compile": ("fp32", True, True),
    "bf16-cl-compile": ("bf16", True, True),
}


def data_for(config: str):
    if config == "small":
        return load_dataset("mnist-mini", "train"), "mnist-mini"
    root = Path(os.environ.get("TRACTABLE_CIFAR_ROOT", CIFAR))
    return load_dataset("cifar10", "train", root=root, batches=[1]), "cifar10 (first 4000)"


def make_trainer(config: str, mode: str, batch: int) -> Trainer:
    precision, channels_last, compile_ = MODES[mode]
    data, _ = data_for(config)
    model = make_model("pixelcnn++", data, seed=0, preset=config)
    cfg = TrainConfig(batch_size=batch, precision=precision, channels_last=channels_last,
                      compile=compile_, max_steps=10**9, samples_per_eval=0, progress=False,
                      quiet=True, device="cpu")
    return Trainer(model, data, None, cfg)


def seconds_per_step(trainer: Trainer, steps: int, clock=time.perf_counter) -> float:
    start = clock()
    for _ in range(steps):
        trainer._train_step()
    return (clock() - start) / steps


def measure(config: str, modes: list[str], batch: int, steps: int, warmup: int,
            rounds: int, clock=time.perf_counter) -> dict[str, float]:
    """img/s per mode: the median over `rounds` interleaved rounds (robust to load drift)."""
    trainers = {m: make_trainer(config, m, batch) for m in modes}
    for t in trainers.values():  # oneDNN primitive creation, torch.compile
        seconds_per_step(t, warmup)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(rounds):
        for m, t in trainers.items():
            times[m].append(seconds_per_step(t, steps, clock))
    return {m: batch / statistics.median(ts) for m, ts in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["small", "paper"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--steps", type=int, default=2, help="timed steps per mode per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-small", type=int, default=32)
    p.add_argument("--batch-paper", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: process CPU time (with --threads 1, robust on a shared machine)")
    args = p.parse_args()
    if args.clock == "cpu" and (args.threads or torch.get_num_threads()) != 1:
        p.error("--clock cpu needs --threads 1 (CPU time of several threads counts spinning)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# PixelCNN++ training throughput, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.clock} clock")
    print(f"{'config':7s} {'mode':17s} {'batch':>5s} {'img/s':>9s} {'ratio':>7s}")
    for config in args.configs:
        batch = args.batch_small if config == "small" else args.batch_paper
        ips = measure(config, args.modes, batch, args.steps, args.warmup, args.rounds,
                      time.process_time if args.clock == "cpu" else time.perf_counter)
        base = ips.get("fp32")
        for mode, v in ips.items():
            ratio = f"{v / base:6.2f}x" if base else "     -"
            print(f"{config:7s} {mode:17s} {batch:5d} {v:9.2f} {ratio:>7s}", flush=True)

if __name__ == "__main__":
    main()
