"""Per-pixel NLL heatmaps: where an image surprises a model (`tractable.evaluation.scoring`),
as overlays in a grid with a shared colour bar, or one map with its own bar (the app)."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from tractable.errors import ShapeError
from tractable.viz.canvas import heat_colors
from tractable.viz.grids import ColorBar, GridLayout, colorbar_pillow, display_scale, save_grid


def nll_overlays(images: Tensor, maps: Tensor, vmax: float | None = None,
                 alpha: float = 0.65) -> Tensor:
    """Each image beside its per-pixel NLL map blended over it: `uint8 [N, 3, H, 2W]`.

    `maps` `[N, H, W]` (nats per pixel) share one colour scale, 0..`vmax` (default: the 99th
    percentile of all maps), so brighter means more surprising in every tile alike.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"overlays need uint8 [N, 1|3, H, W] images, got {images.dtype} "
                         f"{list(images.shape)}")
    n, _, h, w = images.shape
    if tuple(maps.shape) != (n, h, w):
        raise ShapeError(f"NLL maps must be [N, H, W] = {[n, h, w]}, got {list(maps.shape)}")
    m = maps.detach().float().cpu().numpy()
    if vmax is None:
        vmax = float(np.quantile(m, 0.99)) if m.size else 1.0
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    base = rgb.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)
    heat = heat_colors(m, vmax).astype(np.float64)
    blend = np.rint((1 - alpha) * base + alpha * heat).astype(np.uint8)
    both = np.concatenate([base.astype(np.uint8), blend], axis=2)  # [N, H, 2W, 3]
    return torch.from_numpy(both).permute(0, 3, 1, 2).contiguous()


def save_nll_heatmaps(images: Tensor, maps: Tensor, path: str | os.PathLike[str],
                      nrow: int | None = None, scale: int | None = None,
                      vmax: float | None = None, title: str | None = None) -> GridLayout:
    """Write a PNG grid of image | NLL overlay pairs (see `nll_overlays`) with a colour bar
    of the shared scale in nats per pixel."""
    m = maps.detach().float().cpu().numpy()
    if vmax is None:
        vmax = float(np.quantile(m, 0.99)) if m.size else 1.0
    scale = scale or display_scale(images.shape[2], images.shape[2])
    return save_grid(nll_overlays(images, maps, vmax), path, nrow=nrow, scale=scale,
                     title=title, colorbar=ColorBar(vmax))


def heatmap_with_colorbar(values: Tensor, scale: int = 8, vmax: float | None = None,
                          unit: str = "nats") -> Image.Image:
    """A `[H, W]` map of values ≥ 0 (e.g. per-pixel NLL) coloured 0..`vmax` (default: its
    maximum), upscaled `scale`×, with a labelled colour bar on its right."""
    m = values.detach().double().cpu().numpy()
    if m.ndim != 2 or not np.isfinite(m).all():
        raise ShapeError(f"heatmap needs a finite [H, W] map, got shape {list(m.shape)}")
    vmax = float(m.max()) if vmax is None else vmax
    vmax = vmax if vmax > 0 else 1.0
    h, w = m.shape
    heat = Image.fromarray(heat_colors(m, vmax)).resize((w * scale, h * scale),
                                                         Image.Resampling.NEAREST)
    bar_w, gap, text_w, pad = 16, 8, 64, 8
    picture = Image.new("RGB", (heat.width + gap + bar_w + text_w, heat.height + 2 * pad),
                        "white")
    picture.paste(heat, (0, pad))
    colorbar_pillow(picture, ColorBar(vmax, unit), (heat.width + gap, pad, bar_w, heat.height))
    return picture
