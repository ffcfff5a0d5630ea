"""A known raster-order prefix for image completion.

Completion (van den Oord et al., 2016, "Pixel Recurrent Neural Networks", Fig. 1 and §5.4:
occluded images completed by the model) conditions on the first `pixels` positions of
each image in raster order — the first `rows` rows and the first `cols` pixels of row
`rows` — and samples the rest. Because the model is autoregressive in that order, keeping
the prefix and drawing the remaining pixels one at a time is exact sampling from
p(rest | prefix).

A sampler given a `Prefix` starts its loop at raster position `pixels`: the positions
before it hold the known values and consume nothing from the generator, so a completion
from a generator state is as reproducible as a sample, and the cached and naive samplers
still agree pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from tractable.errors import ShapeError


class Prefix(NamedTuple):
    """`images`: likelihood targets (`model.targets(x)`, long `[n, C, H, W]`) whose first
    `pixels` raster positions are known; later positions are zero."""

    images: Tensor
    pixels: int

    def position(self, width: int) -> tuple[int, int]:
        """(row, col) of the first unknown pixel."""
        return divmod(self.pixels, width)


def raster_prefix_length(shape: Sequence[int], rows: int, cols: int = 0) -> int:
    """Raster positions kept by "the first `rows` rows and `cols` pixels of the next one".

    Raises `ShapeError` for rows outside 0..H, cols outside 0..W-1 (cols > 0 needs a row
    after the kept ones).
    """
    _, h, w = shape
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ShapeError(f"{name} must be an integer, got {v!r}")
    if not 0 <= rows <= h:
        raise ShapeError(f"rows to keep must be in 0..{h} for {h}-row images, got {rows}")
    if not 0 <= cols < w or (rows == h and cols):
        limit = 0 if rows == h else w - 1
        raise ShapeError(f"cols to keep must be in 0..{limit} here, got {cols}")
    return rows * w + cols


def make_prefix(targets: Tensor, pixels: int) -> Prefix:
    """The known part of `targets` `[n, C, H, W]` as a `Prefix` (unknown positions zeroed,
    the values both samplers start from)."""
    n, c, h, w = targets.shape
    known = torch.zeros(h * w, dtype=torch.bool, device=targets.device)
    known[:pixels] = True
    images = torch.where(known.view(1, 1, h, w), targets.long(), torch.zeros_like(targets.long()))
    return Prefix(images.contiguous(), pixels)


def check_prefix(prefix: Prefix, n: int, shape: Sequence[int], sampler: str) -> Prefix:
    """`prefix` if it fits `n` images of `shape` (C, H, W), else a `ShapeError`."""
    c, h, w = shape
    if not isinstance(prefix, Prefix):
        raise ShapeError(f"prefix must be a tractable.sampling.Prefix, got {type(prefix).__name__}")
    if tuple(prefix.images.shape) != (n, c, h, w):
        raise ShapeError(f"the prefix images are {list(prefix.images.shape)}; the {sampler!r} "
                         f"sampler draws {[n, c, h, w]}")
    if isinstance(prefix.pixels, bool) or not isinstance(prefix.pixels, int) or \
            not 0 <= prefix.pixels <= h * w:
        raise ShapeError(f"prefix length must be 0..{h * w} pixels, got {prefix.pixels!r}")
    return prefix


def start_values(shape: Sequence[int], n: int, prefix: Prefix | None,
                 device: torch.device) -> Tensor:
    """The likelihood targets `[n, C, H, W]` an autoregressive sampler starts from: zeros,
    or the prefix's known values (zeros after them)."""
    if prefix is None:
        return torch.zeros((n, *shape), dtype=torch.long, device=device)
    return prefix.images.to(device=device, dtype=torch.long).clone()
