"""Sampling speed: naive vs cached sampler, seconds per image, measured in one run.

Configurations: PixelCNN++ "small" (nr_resnet 1, nr_filters 32, nr_logistic_mix 5,
28x28x1), PixelCNN++ "paper" (nr_resnet 5, nr_filters 160, nr_logistic_mix 10, 32x32x3)
and Gated PixelCNN "gated-small" (its `small` preset: 8 layers, 32 filters, 256 levels,
28x28x1), each at batch 1 and 16, float32, randomly initialized (speed does not depend on
the weights).

The cached sampler draws whole images. The naive sampler costs the same at every pixel (one
full forward pass plus one likelihood draw), so it is timed over its first `--naive-steps`
pixel steps of an image (a whole row for batch 1, fewer for the paper model at batch 16)
and extrapolated to all H·W steps; the table says how many were measured.

The CPU is shared with other jobs, so both samplers run in this one process, one after the
other, with `--threads` (default 1: two threads on two busy cores thrash); compare the ratio
columns rather than absolute seconds between runs. Besides wall-clock seconds the table
gives the cached sampler's CPU seconds per image (process time): with one thread that is
what it would take on an idle core, whatever the other jobs do.

    python bench/sampling.py [--configs small paper gated-small] [--batches 1 16]
                             [--threads N] [--device cpu|cuda] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from tractable.models import GatedPixelCNN, PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.models.autoregressive import AutoregressiveModel
from tractable.models.gated_pixelcnn import GatedPixelCNNConfig
from tractable.sampling.cached import sample_cached

CONFIGS: dict[str, Callable[[], AutoregressiveModel]] = {
    "small": lambda: PixelCNNPlusPlus(PixelCNNPlusPlusConfig(
        image_shape=(1, 28, 28), **PixelCNNPlusPlus.presets["small"])),
    "paper": lambda: PixelCNNPlusPlus(PixelCNNPlusPlusConfig(
        image_shape=(3, 32, 32), **PixelCNNPlusPlus.presets["paper"])),
    "gated-small": lambda: GatedPixelCNN(GatedPixelCNNConfig(
        image_shape=(1, 28, 28), **GatedPixelCNN.presets["small"])),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_seconds_per_step(model: AutoregressiveModel, batch: int,
                           steps: int) -> tuple[float, float]:
    """Wall and CPU seconds of one naive-sampler step (the loop body of `sample_naive`)."""
    c, h, w = model.config.image_shape
    device = next(model.parameters()).device
    values = torch.zeros(batch, c, h, w, dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    channels = list(range(c)) if model.channel_sequential else [None]
    with torch.no_grad():
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        for k in range(steps):
            row, col = divmod(k, w)
            for channel in channels:
                params = model(model.scale(model.from_targets(values)))
                draw = model.likelihood.sample(params[:, :, row:row + 1, col:col + 1], 1.0,
                                               g)[:, :, 0, 0]
                if channel is None:
                    values[:, :, row, col] = draw
                else:
                    values[:, channel, row, col] = draw[:, channel]
        _sync(device)
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def cached_seconds(model: AutoregressiveModel, batch: int) -> tuple[float, float]:
    """Wall and CPU seconds of drawing `batch` whole images with the cached sampler."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(0)
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    sample_cached(model, batch, generator=g)
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def default_naive_steps(name: str, batch: int, width: int) -> int:
    """One row, except the paper model at batch > 1 (~10 s per forward pass here)."""
    return 2 if name == "paper" and batch > 1 else width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--naive-steps", type=int, default=0,
                        help="naive pixel steps to time (0: one row; 2 for paper at batch>1)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    rows = []
    for name in args.configs:
        torch.manual_seed(0)
        model = CONFIGS[name]().to(device).eval()
        c, h, w = model.config.image_shape
        cached_seconds(model, 1)  # warm-up (allocator, kernels)
        for batch in args.batches:
            steps = args.naive_steps or default_naive_steps(name, batch, w)
            cached, cached_cpu = (t / batch for t in cached_seconds(model, batch))
            naive, naive_cpu = (t * h * w / batch for t in naive_seconds_per_step(model, batch,
                                                                                    steps))
            rows.append((name, f"{c}x{h}x{w}", batch, naive, cached, naive / cached, cached_cpu,
                         naive_cpu / cached_cpu, f"{steps} of {h * w} steps"))
            print(f"  {name} batch {batch}: naive {naive:.3f} s/img, cached {cached:.4f} s/img "
                  f"({cached_cpu:.4f} CPU s/img), {naive / cached:.0f}x", flush=True)
    header = ("model", "image", "batch", "naive s/img", "cached s/img", "speed-up",
              "cached CPU s/img", "speed-up (CPU)", "naive timed over")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.4f} | {r[5]:.0f}x "
                  f"| {r[6]:.4f} | {r[7]:.0f}x | {r[8]} |")
    else:
        print(f"{'model':<12} {'image':<8} {'batch':>5} {'naive s/img':>12} {'cached s/img':>13} "
              f"{'speed-up':>9} {'cached CPU s/img':>17} {'(CPU)':>7}  naive timed over")
        for r in rows:
            print(f"{r[0]:<12} {r[1]:<8} {r[2]:>5} {r[3]:>12.2f} {r[4]:>13.4f} {r[5]:>8.0f}x "
                  f"{r[6]:>17.4f} {r[7]:>6.0f}x  {r[8]}")
    print("naive s/img is extrapolated: (seconds per pixel step) x H*W / batch, the step "
          "timed over the steps shown.")


if __name__ == "__main__":
    main()
