"""Random pixel mutations: the input perturbation that trains a *background* model.

Ren et al., "Likelihood Ratios for Out-of-Distribution Detection" (NeurIPS 2019):
and Appendix: the background model is the same model trained on the in-distribution data
with each input perturbed by replacing values at rate μ with values drawn uniformly from
the value range (for 8-bit images, {0, ..., 255}). The corruption destroys the semantic
structure and leaves the population-level background statistics (e.g. the frequency of
zero pixels) for the background model to learn. They use μ in [0.1, 0.3].

`mutate` replaces each sub-pixel independently (`per="subpixel"`, the paper's choice), or
whole pixels with all their channels redrawn (`per="pixel"`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tractable.errors import ShapeError

MUTATION_UNITS = ("subpixel", "pixel")


def check_rate(rate: float) -> float:
    """`rate` as a float in [0, 1], or a `ShapeError` naming the problem."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ShapeError(f"mutation rate must be a number in [0, 1], got {rate!r}")
    return float(rate)


def mutate(
    x: Tensor,
    rate: float,
    generator: torch.Generator,
    levels: int = 256,
    per: str = "subpixel",
) -> Tensor:
    """A copy of `uint8 [B, C, H, W]` images with values replaced at `rate` by uniform ones.

    Each unit (sub-pixel, or pixel with `per="pixel"`) is replaced with probability `rate`
    by an independent draw from {0, ..., levels − 1}; `levels = 2**bits` for reduced bit
    depth. All randomness comes from `generator` (which sets the device the draws run on).
    """
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ShapeError(f"mutate needs uint8 images [B, C, H, W], got {x.dtype} "
                         f"{list(x.shape)}")
    rate = check_rate(rate)
    if not 2 <= levels <= 256:
        raise ShapeError(f"levels must be in 2..256 for uint8 images, got {levels}")
    if per not in MUTATION_UNITS:
        raise ShapeError(f"per must be one of {MUTATION_UNITS}, got {per!r}")
    b, c, h, w = x.shape
    where_shape = (b, c, h, w) if per == "subpixel" else (b, 1, h, w)
    dev = generator.device
    where = torch.rand(where_shape, generator=generator, device=dev) < rate
    values = torch.randint(0, levels, (b, c, h, w), generator=generator, device=dev,
                           dtype=torch.uint8)
    return torch.where(where.to(x.device), values.to(x.device), x)


def mutation_transform(
    rate: float, levels: int = 256, per: str = "subpixel"
) -> Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]:
    """A batch transform `(images, labels, generator) -> (mutated images, labels)` for
    the trainer's batch hook (`tractable.training.batches.BatchTransform`)."""
    rate = check_rate(rate)

    def transform(x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        return mutate(x, rate, g, levels=levels, per=per), y

    return transform
