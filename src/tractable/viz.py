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


# ---- per-pixel NLL heatmaps and score histograms (tractable.evaluation) --------------------
# Anchor colours of a black -> purple -> red -> yellow -> white ramp (like "inferno").
_HEAT_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9],
                          [252, 255, 164]], dtype=np.float64)


def heat_colors(values: np.ndarray, vmax: float) -> np.ndarray:
    """Map values in [0, vmax] (clipped) to `uint8 [..., 3]` colours of a dark-to-bright ramp."""
    t = np.clip(np.asarray(values, dtype=np.float64) / max(vmax, 1e-12), 0.0, 1.0)
    pos = t * (len(_HEAT_ANCHORS) - 1)
    lo = np.minimum(pos.astype(np.int64), len(_HEAT_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _HEAT_ANCHORS[lo] * (1 - frac) + _HEAT_ANCHORS[lo + 1] * frac
    return np.rint(rgb).astype(np.uint8)


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
                      nrow: int | None = None, scale: int = 4,
                      vmax: float | None = None) -> None:
    """Write a PNG grid of image | NLL overlay pairs (see `nll_overlays`)."""
    save_grid(nll_overlays(images, maps, vmax), path, nrow=nrow, scale=scale)


def save_histograms(panels: dict[str, tuple[np.ndarray, np.ndarray]],
                    path: str | os.PathLike[str], labels: tuple[str, str] = ("in", "out"),
                    titles: dict[str, str] | None = None, bins: int = 50) -> None:
    """Write one PNG with a panel per entry `name: (values_a, values_b)`: two overlaid
    histograms (densities over shared bins; blue = `labels[0]`, orange = `labels[1]`)."""
    from PIL import ImageDraw, ImageFont

    if not panels:
        raise ShapeError("save_histograms needs at least one panel")
    pw, ph, margin = 420, 230, 28
    canvas = Image.new("RGB", (pw, ph * len(panels)), "white")
    draw = ImageDraw.Draw(canvas, "RGBA")
    try:
        font = ImageFont.load_default(size=12)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    colors = ((31, 119, 180, 140), (255, 127, 14, 140))
    for k, (name, (a, b)) in enumerate(panels.items()):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        both = np.concatenate([a, b])
        if both.size == 0 or not np.isfinite(both).all():
            raise ShapeError(f"histogram {name!r} needs finite values in both sets")
        lo, hi = float(both.min()), float(both.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        dens = [np.histogram(v, edges)[0] / max(len(v), 1) for v in (a, b)]
        top = max(float(d.max()) for d in dens) or 1.0
        x0, y0, x1, y1 = margin, k * ph + margin, pw - 10, (k + 1) * ph - margin
        bw = (x1 - x0) / bins
        for d, color in zip(dens, colors, strict=True):
            for i, v in enumerate(d):
                if v > 0:
                    bar_top = y1 - (y1 - y0) * v / top
                    draw.rectangle([x0 + i * bw, bar_top, x0 + (i + 1) * bw, y1], fill=color)
        draw.line([x0, y1, x1, y1], fill="black")
        draw.line([x0, y0, x0, y1], fill="black")
        draw.text((x0, k * ph + 6), (titles or {}).get(name, name), fill="black", font=font)
        draw.text((x0, y1 + 4), f"{lo:.3g}", fill="black", font=font)
        right = f"{hi:.3g}"
        draw.text((x1 - draw.textlength(right, font=font), y1 + 4), right, fill="black",
                  font=font)
        for j, (label, color) in enumerate(zip(labels, colors, strict=True)):
            lx, ly = x1 - 120, y0 + 4 + 16 * j
            draw.rectangle([lx, ly + 2, lx + 10, ly + 12], fill=color)
            draw.text((lx + 14, ly), label, fill="black", font=font)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
