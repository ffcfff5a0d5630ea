"""Whether a training run compiles its step with `torch.compile`.

A compiled PixelCNN++ step fuses the element-wise work around the convolutions (concat_elu,
dropout, gating, the mixture likelihood): 1.2–1.4x faster on CPU for narrow networks, whose
step is mostly that work. But the compiler's warm-up costs minutes before the first step
(3–4 on this project's CPU for either preset, on a first run), and for convolution-bound
networks (the paper preset) the compiled step is no faster on CPU.
So compiling is the default only where it was measured to pay: a family's
`compile_after_steps(device)` names the run length from which its model compiles on that
device (from `bench/train_throughput.py --warm-up`), and runs of at least that many
remaining steps compile. `--compile` / `--no-compile` decide outright.
"""

from __future__ import annotations

import os
import shutil

import torch

from tractable.models.base import TractableModel


def compiler_available(device: torch.device) -> bool:
    """Whether torch.compile can build kernels here: a C++ compiler for CPU, Triton on CUDA."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return any(name and shutil.which(name) for name in names)


def should_compile(model: TractableModel, asked: bool | None, remaining_steps: int,
                   device: torch.device) -> bool:
    """`asked` when given; else whether `model`'s family compiles runs this long here."""
    if asked is not None:
        return asked
    after = model.compile_after_steps(device)
    return after is not None and remaining_steps >= after and compiler_available(device)
