"""PixelCNN++ training-step speed: forward + backward time per image.

Configurations: "small" = nr_resnet 1, nr_filters 32, nr_logistic_mix 5 on
28x28x1 MNIST digits, batch 16; "paper" = nr_resnet 5, nr_filters 160, nr_logistic_mix 10
on 32x32x3 CIFAR-10 images, batch 4. Each runs in float32 and under bfloat16 autocast,
with the default (NCHW) and channels_last memory formats; the ratio column is the speed-up
over float32 NCHW of the same configuration, all measured in this one run.

    python bench/pixelcnn_step.py [--configs small paper] [--iters 3] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

from tractable.data import load_dataset
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig

CONFIGS = {
    "small": dict(image_shape=(1, 28, 28), nr_resnet=1, nr_filters=32, nr_logistic_mix=5,
                  batch=16),
    "paper": dict(image_shape=(3, 32, 32), nr_resnet=5, nr_filters=160, nr_logistic_mix=10,
                  batch=4),
}
MODES = [("float32", False), ("bfloat16 autocast", False),
         ("float32 channels_last", True), ("bfloat16 autocast channels_last", True)]
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-first4000"


def real_images(shape: tuple[int, int, int], n: int) -> tuple[torch.Tensor, str]:
    """A batch of real images of `shape`: MNIST digits or CIFAR-10 (random if absent)."""
    if shape[0] == 1:
        return load_dataset("mnist-mini", "train").images[:n], "mnist-mini"
    if CIFAR.is_dir():
        data = load_dataset("cifar10", "train", root=CIFAR, batches=[1])
        return data.images[:n], "cifar10 (first 4000)"
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8), "random bytes"


def step_seconds(model: PixelCNNPlusPlus, x: torch.Tensor, bf16: bool) -> float:
    """Wall seconds of one forward + backward of `model.loss` on batch `x`."""
    autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    model.zero_grad(set_to_none=True)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with autocast:
        loss, _ = model.loss(x)
    loss.backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_modes(model: PixelCNNPlusPlus, x: torch.Tensor, warmup: int,
               iters: int) -> list[float]:
    """Median seconds per step of each of MODES, measured round-robin.

    Interleaving the modes (one step of each per round) spreads the drift of a shared,
    noisy CPU over all of them instead of favouring whichever ran at a quiet moment.
    """
    times: list[list[float]] = [[] for _ in MODES]
    for round_ in range(warmup + iters):
        for i, (mode, channels_last) in enumerate(MODES):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model.to(memory_format=fmt)
            seconds = step_seconds(model, x.contiguous(memory_format=fmt), "bfloat16" in mode)
            if round_ >= warmup:
                times[i].append(seconds)
    return [sorted(t)[len(t) // 2] for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per mode")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads; "
          f"median of {args.iters} round-robin timed steps after {args.warmup} warm-up, "
          "train mode")
    header = f"{'config':<8}{'batch':>6}  {'mode':<34}{'ms/image':>10}{'vs fp32':>9}"
    print(header)
    print("-" * len(header))
    for name in args.configs:
        spec = dict(CONFIGS[name])
        batch = spec.pop("batch")
        cfg = PixelCNNPlusPlusConfig(**spec)
        x, source = real_images(cfg.image_shape, batch)
        model = PixelCNNPlusPlus(cfg).to(args.device)
        x = x.to(args.device)
        model.data_dependent_init(x)
        model.train()
        medians = time_modes(model, x, args.warmup, args.iters)
        for (mode, _), seconds in zip(MODES, medians, strict=True):
            per_image, ratio = 1000 * seconds / batch, medians[0] / seconds
            print(f"{name:<8}{batch:>6}  {mode:<34}{per_image:>10.1f}{ratio:>8.2f}x")
        params = sum(p.numel() for p in model.parameters())
        print(f"{'':<8}{'':>6}  ({params:,} parameters, {source} images)")


if __name__ == "__main__":
    main()
