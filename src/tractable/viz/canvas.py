"""What every picture is drawn with: matplotlib where it is installed (Agg renderer, fixed
DPI and the DejaVu Sans font it ships, so the same numbers give the same PNG), else
Pillow; and one atomic PNG writer."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageFont

from tractable._io import atomic_path

DPI = 100
FONT: dict[str, Any] = {"font.family": "DejaVu Sans", "font.size": 10.0}
CHAR_W, LINE_H = 7, 16  # generous pixel size of a 10 pt DejaVu Sans character at 100 dpi


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


def have_matplotlib() -> bool:
    """Whether the optional matplotlib (`pip install 'tractable[plots]'`) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def font_context(size: float | None = None) -> Any:
    """matplotlib settings of every labelled picture (fixed font and size)."""
    import matplotlib

    rc = {**FONT, **({"font.size": size} if size else {})}
    return matplotlib.rc_context(rc)  # type: ignore[arg-type]


def figure_pixels(size: tuple[int, int], draw: Callable[[Any], None],
                  font_size: float | None = None) -> np.ndarray:
    """A `size` (width, height) matplotlib figure drawn by `draw(figure)`: `uint8 [H, W, 3]`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with font_context(font_size):
        fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        draw(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def pillow_font(size: int = 12) -> Any:
    """Pillow's default font at `size` (the fixed bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def to_pil(grid: np.ndarray) -> Image.Image:
    """`uint8 [H, W, 1|3]` -> a Pillow image (greyscale or RGB)."""
    return Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)


def save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write `img` as a PNG, atomically (an earlier file stays whole if this fails)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
