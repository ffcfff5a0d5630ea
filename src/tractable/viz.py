"""Pictures with Pillow: image grids (PNG) and animated GIFs."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from tractable._io import atomic_path
from tractable.errors import ShapeError


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile `uint8 [N, C, H, W]` images into one `uint8 [H', W', C]` array (C in {1, 3}).

    Image i sits at row i // nrow, column i % nrow, with `padding` black pixels around each.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"grid needs uint8 [N, 1|3, H, W] images, got {images.dtype} "
                         f"{list(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ShapeError("grid needs at least one image")
    if nrow is not None and nrow < 1:
        raise ShapeError(f"nrow must be at least 1, got {nrow}")
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = arr[i]
    return grid


def _to_pil(grid: np.ndarray) -> Image.Image:
    return Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)


def save_grid(images: Tensor, path: str | os.PathLike[str], nrow: int | None = None,
              scale: int = 2) -> None:
    """Write a PNG grid of `uint8 [N, C, H, W]` images (upscaled `scale`× for viewing)."""
    img = _to_pil(make_grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike[str],
             duration_ms: int = 300, scale: int = 2) -> None:
    """Write an animated GIF from grid arrays `[H, W, C]` (e.g. sample grids over training)."""
    if not frames:
        raise ShapeError("save_gif needs at least one frame")
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) != 1 or any(f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] not in (1, 3)
                               for f in frames):
        raise ShapeError(f"save_gif needs uint8 frames [H, W, 1|3] of one shape, got "
                         f"{sorted(shapes)}")
    pil = [_to_pil(f) for f in frames]
    if scale > 1:
        pil = [p.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST) for p in pil]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:],
                    duration=duration_ms, loop=0)
