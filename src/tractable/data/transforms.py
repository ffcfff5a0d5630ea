"""Batch transforms on uint8 images `[B, C, H, W]`: augmentation and bit depth.

Augmentations draw their randomness from a `torch.Generator` (one draw per image), so a
trainer that saves its generator state replays them exactly. They run on the batch's device.

Bit depth (Kingma & Dhariwal, 2018, "Glow", Sec. 5 and its code's `preprocess`): an 8-bit
value x in 0..255 reduced to n bits is `floor(x / 2**(8 - n))` in 0..2**n - 1, i.e. the n most
significant bits. `expand_bits` maps n-bit values back onto 0..255 for viewing with
`round(v * 255 / (2**n - 1))`, so 0 -> 0 and the top level -> 255.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tractable.errors import ShapeError


def _check_batch(x: Tensor, what: str) -> None:
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ShapeError(f"{what} needs uint8 images [B, C, H, W], got {x.dtype} "
                         f"{list(x.shape)}")


def _check_bits(n_bits: int) -> None:
    if not isinstance(n_bits, int) or not 1 <= n_bits <= 8:
        raise ShapeError(f"n_bits must be an int in 1..8, got {n_bits!r}")


def random_hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability `p`."""
    _check_batch(x, "random_hflip")
    flip = torch.rand(len(x), generator=generator, device=generator.device) < p
    flip = flip.to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """Translate each image by (dy, dx), each uniform in -max_shift..max_shift.

    The border is filled by repeating the edge pixels (no black frame for the model to learn).
    """
    _check_batch(x, "random_shift")
    if max_shift < 0:
        raise ShapeError(f"max_shift must be >= 0, got {max_shift}")
    b, _, h, w = x.shape
    if max_shift == 0 or b == 0:
        return x.clone()
    d = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator,
                      device=generator.device).to(x.device)
    # Output pixel (i, j) reads input pixel (i - dy, j - dx), clamped to the image.
    rows = (torch.arange(h, device=x.device) - d[:, :1]).clamp(0, h - 1)  # [B, H]
    cols = (torch.arange(w, device=x.device) - d[:, 1:]).clamp(0, w - 1)  # [B, W]
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    out = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def reduce_bits(x: Tensor, n_bits: int) -> Tensor:
    """Keep the `n_bits` most significant bits: uint8 0..255 -> uint8 0..2**n_bits - 1."""
    if x.dtype != torch.uint8:
        raise ShapeError(f"reduce_bits needs uint8 images, got {x.dtype}")
    _check_bits(n_bits)
    return x >> (8 - n_bits)


def expand_bits(x: Tensor, n_bits: int) -> Tensor:
    """Map n-bit values 0..2**n_bits - 1 back onto 0..255 (for pictures)."""
    if x.dtype != torch.uint8:
        raise ShapeError(f"expand_bits needs uint8 images, got {x.dtype}")
    _check_bits(n_bits)
    top = 2**n_bits - 1
    if x.numel() and int(x.max()) > top:
        raise ShapeError(f"expand_bits: values up to {int(x.max())} do not fit in {n_bits} bits")
    return ((x.to(torch.int32) * 255 + top // 2) // top).to(torch.uint8)
