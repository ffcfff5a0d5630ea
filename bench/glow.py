"""Glow: training speed, sampling time and peak memory, with and without gradient checkpointing.

    .venv/bin/python bench/glow.py [--configs small,cifar] [--precisions fp32,bf16] [--steps 2]
        [--batch N]

Configurations: small = 28×28×1, K=8, L=2, width 128, batch 16 (mnist-mini);
cifar = 32×32×3, K=32, L=3, width 512, batch 4 (real CIFAR-10 images when ../shared/data is
there, else MNIST digits tiled into 3 channels and padded to 32×32).

Per row: train img/s (forward + backward + Adamax step, median of --steps timed steps after
one warm-up), the time to sample 16 images, and the peak memory of one forward + backward.
Times are given as wall clock and, in brackets, as this process's CPU time: on a CPU shared
with other jobs the wall clock includes waiting for a core, the CPU time does not.

Peak memory is measured with torch's profiler (`profile_memory=True`): every CPU tensor
allocation and free of the step is an event with its byte count, and the peak of their
running sum is the most tensor memory alive at once during the step, above what was alive
when it started (parameters and optimizer state). It includes the weight gradients, which
the step allocates in both modes and checkpointing cannot shrink; the "peak − grads" column
subtracts them, leaving the activation memory that checkpointing targets. (tracemalloc
cannot see torch's allocator, and RSS includes allocator caching.)

bf16 rows run the coupling networks under CPU autocast; the flow's stream, the 1×1
convolutions, the split priors and all log-determinants stay float32.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from tractable.data import load_dataset
from tractable.models import Glow, GlowConfig

CONFIGS = {
    "small": dict(image_shape=(1, 28, 28), K=8, L=2, width=128, batch=16),
    "cifar": dict(image_shape=(3, 32, 32), K=32, L=3, width=512, batch=4),
}
SHARED = [os.environ.get("TRACTABLE_SHARED_DATA"), Path(__file__).resolve().parents[2] / "shared"
          / "data", "/work/shared/data"]


def real_images(shape: tuple[int, int, int], n: int) -> tuple[torch.Tensor, str]:
    if shape == (1, 28, 28):
        return load_dataset("mnist-mini", "train").images[:n], "mnist-mini"
    for root in SHARED:
        path = Path(root or "") / "cifar10-first4000" / "cifar-10-batches-py" / "data_batch_1"
        if root and path.is_file():
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="bytes")[b"data"][:n]
            return torch.from_numpy(np.asarray(data, np.uint8).reshape(n, 3, 32, 32).copy()), \
                "CIFAR-10"
    digits = load_dataset("mnist-mini", "train").images[:n]
    return torch.nn.functional.pad(digits, (2, 2, 2, 2)).repeat(1, 3, 1, 1), "mnist (tiled)"


def autocast(precision: str):  # type: ignore[no-untyped-def]
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def make_model(spec: dict, checkpoint_grads: bool, x: torch.Tensor) -> Glow:
    torch.manual_seed(0)
    cfg = GlowConfig(image_shape=spec["image_shape"], K=spec["K"], L=spec["L"],
                     width=spec["width"], checkpoint_grads=checkpoint_grads)
    model = Glow(cfg)
    model.data_dependent_init(x)
    return model.train()


def forward_backward(model: Glow, x: torch.Tensor, precision: str) -> None:
    with autocast(precision):
        loss, _ = model.loss(x)
    loss.backward()


def train_step(model: Glow, opt: torch.optim.Optimizer, x: torch.Tensor, precision: str) -> None:
    opt.zero_grad(set_to_none=True)
    forward_backward(model, x, precision)
    opt.step()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's native start/stop lines)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_bytes(fn) -> int:  # type: ignore[no-untyped-def]
    """Peak of live CPU tensor bytes during fn(), above the bytes live when it started."""
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def timed(fn, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median (wall, process CPU) seconds of `repeats` calls after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def bench(name: str, precision: str, steps: int, batch: int | None = None) -> list[dict]:
    spec = dict(CONFIGS[name], **({"batch": batch} if batch else {}))
    x, source = real_images(spec["image_shape"], spec["batch"])
    rows = []
    for ckpt in (False, True):
        model = make_model(spec, ckpt, x)
        opt = torch.optim.Adamax(model.parameters(), lr=1e-3)
        wall_s, cpu_s = timed(lambda m=model, o=opt: train_step(m, o, x, precision), steps)
        opt.zero_grad(set_to_none=True)
        peak = peak_bytes(lambda m=model: forward_backward(m, x, precision))
        rows.append(dict(config=name, batch=spec["batch"], data=source, precision=precision,
                         ckpt=ckpt,
                         params=sum(p.numel() for p in model.parameters()),
                         grads=sum(p.numel() * p.element_size() for p in model.parameters()),
                         img_s=spec["batch"] / wall_s, img_cpu_s=spec["batch"] / cpu_s,
                         peak=peak))
    model.eval()

    def sample() -> None:
        with torch.no_grad(), autocast(precision):
            model.sample(16, temperature=0.7, generator=torch.Generator().manual_seed(0))

    sample_s = timed(sample, 1 if name == "cifar" else 3)
    for r in rows:
        r["sample_s"], r["sample_cpu_s"] = sample_s
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="small,cifar")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--steps", type=int, default=2, help="timed train steps per row")
    p.add_argument("--batch", type=int, default=None,
                   help="batch for every config (default: each config's own, 16 / 4)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared CPU, more threads than free "
                   "cores makes OpenMP spin and every op 10x slower)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, torch threads={torch.get_num_threads()}", flush=True)
    print("| config | batch | data | precision | grad ckpt | params | train img/s wall (CPU) "
          "| 16 samples s wall (CPU) | peak fwd+bwd MB | peak − grads MB | ckpt/plain peak "
          "| ckpt/plain peak − grads |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    worst = {"peak": 0.0, "act": 0.0}
    for name in args.configs.split(","):
        for precision in args.precisions.split(","):
            rows = bench(name, precision, args.steps, args.batch)
            for r in rows:
                r["act"] = r["peak"] - r["grads"]
            ratio = {k: rows[1][k] / rows[0][k] for k in worst}
            worst = {k: max(worst[k], ratio[k]) for k in worst}
            for r in rows:
                rel = {k: f"{ratio[k]:.2f}" if r["ckpt"] else "1.00" for k in ratio}
                print(f"| {r['config']} | {r['batch']} | {r['data']} | {r['precision']} | "
                      f"{'yes' if r['ckpt'] else 'no'} | {r['params'] / 1e6:.2f}M | "
                      f"{r['img_s']:.2f} ({r['img_cpu_s']:.2f}) | "
                      f"{r['sample_s']:.2f} ({r['sample_cpu_s']:.2f}) | {r['peak'] / 2**20:.1f} | "
                      f"{r['act'] / 2**20:.1f} | {rel['peak']} | {rel['act']} |", flush=True)
    for k, what in (("act", "activation memory (peak − grads)"), ("peak", "whole step peak")):
        print(f"target ckpt/plain <= 0.40 for {what}: worst {worst[k]:.2f}, "
              f"{'met' if worst[k] <= 0.4 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
