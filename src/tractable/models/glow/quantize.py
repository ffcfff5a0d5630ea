"""Bit-depth reduction and uniform dequantization (Glow §4 / openai/glow `preprocess`).

Images are `uint8` 0..255. A model with `n_bits < 8` keeps the top `n_bits` of each value
(x_q = floor(x / 2^(8-n_bits)), n_bins = 2^n_bits levels). The flow is a density on the
continuous scale

    x_c = (x_q + u) / n_bins - 0.5  in [-0.5, 0.5),   u ~ U[0, 1)^D,

so the discrete model is P(x_q) = ∫ p_c((x_q + u)/n_bins - 0.5) n_bins^-D du, and by Jensen
log P(x_q) >= E_u[log p_c(x_c)] - D·log(n_bins): the "−log(n_bins)·D" term of the paper's
objective (Theis et al. 2016, "A note on the evaluation of generative models").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from tractable.errors import ShapeError

if TYPE_CHECKING:
    from tractable.models.base import TractableModel


def reduce_bits(x: Tensor, n_bits: int) -> Tensor:
    """uint8 0..255 -> integer levels 0..2^n_bits - 1 (floor(x / 2^(8 - n_bits)))."""
    return torch.div(x.long(), 2 ** (8 - n_bits), rounding_mode="floor")


def to_continuous(
    x: Tensor,
    n_bits: int,
    dtype: torch.dtype = torch.float32,
    noise: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """uint8 images -> x_c in [-0.5, 0.5): uniform noise inside each bin, or the bin centre.

    Returns a new tensor; `x` is never modified.
    """
    n_bins = 2**n_bits
    xq = reduce_bits(x, n_bits).to(dtype)
    if noise:
        u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    else:
        u = torch.full_like(xq, 0.5)
    return (xq + u) / n_bins - 0.5


def to_uint8(x_c: Tensor, n_bits: int) -> Tensor:
    """x_c -> uint8 images: the bin containing x_c, scaled back to 0..255 (openai `postprocess`)."""
    n_bins = 2**n_bits
    x_c = x_c if x_c.dtype == torch.float64 else x_c.float()  # float64 decodes stay float64
    xq = torch.floor((x_c + 0.5) * n_bins).clamp(0, n_bins - 1)
    return (xq * 2 ** (8 - n_bits)).to(torch.uint8)


def continuous_input(model: TractableModel, x: Tensor, n_bits: int,
                     dtype: torch.dtype) -> Tensor:
    """What a flow's `encode` takes, as x_c in `dtype`: uint8 images (checked) at their
    bins' centres (deterministic), or a float tensor of the model's image shape taken as
    x_c itself (e.g. dequantized images)."""
    if x.dtype == torch.uint8:
        model.check_images(x)
        return to_continuous(x, n_bits, dtype, noise=False)
    shape = tuple(model.config.image_shape)
    if not x.is_floating_point() or tuple(x.shape[1:]) != shape:
        raise ShapeError(
            f"encode takes uint8 images or continuous float images x_c in [-0.5, 0.5) of "
            f"shape [B, {', '.join(map(str, shape))}], got {x.dtype} {list(x.shape)}")
    return x.to(dtype)
