"""Charts: the bits/dim curve of a run, OOD score histograms, a test set's bits/dim with one
image marked. Each is a list of `Panel`s (stacked top to bottom) drawn by `render`: with
matplotlib where it is installed, else with the one Pillow fallback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tractable.errors import ShapeError
from tractable.viz import canvas

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]
MARKER_COLOR = "#d62728"
MAX_DOTS = 40  # series with fewer points get a dot at each, so a few evaluations show


@dataclass(frozen=True)
class Line:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str


@dataclass(frozen=True)
class Bars:
    """A histogram: `heights[i]` over `[edges[i], edges[i + 1])`."""

    name: str
    edges: np.ndarray
    heights: np.ndarray
    color: str
    alpha: float = 1.0


@dataclass(frozen=True)
class Marker:
    """A vertical line at `x`, named `label`."""

    x: float
    label: str


@dataclass
class Panel:
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    lines: list[Line] = field(default_factory=list)
    bars: list[Bars] = field(default_factory=list)
    marker: Marker | None = None
    grid: bool = False


def render(panels: Sequence[Panel], size: tuple[int, int]) -> Image.Image:
    """The panels stacked in a `size` (width, height) RGB picture."""
    if canvas.have_matplotlib():
        return Image.fromarray(canvas.figure_pixels(size, lambda fig: _draw_mpl(fig, panels),
                                                    9.0 if len(panels) > 1 else None))
    return _draw_pillow(panels, size)


# ---- the pictures --------------------------------------------------------------------------
def plot_curves(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike[str],
    title: str = "bits/dim",
    xlabel: str = "optimizer step",
    ylabel: str = "bits/dim",
    size: tuple[int, int] = (720, 420),
) -> None:
    """A line plot of named `(xs, ys)` series as a `size` PNG, with axis labels and a legend;
    non-finite values are left out."""
    lines = []
    for i, (name, (xs, ys)) in enumerate(series.items()):
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        if pts:
            lines.append(Line(name, [p[0] for p in pts], [p[1] for p in pts],
                              COLORS[i % len(COLORS)]))
    canvas.save_png(render([Panel(title, xlabel, ylabel, lines=lines, grid=True)], size), path)


def save_histograms(panels: dict[str, tuple[np.ndarray, np.ndarray]],
                    path: str | os.PathLike[str], labels: tuple[str, str] = ("in", "out"),
                    titles: dict[str, str] | None = None, bins: int = 50,
                    xlabel: str = "score (bits/dim; higher = more OOD)") -> None:
    """Write one PNG with a panel per entry `name: (values_a, values_b)`: two overlaid
    histograms (fractions of each set over shared bins; blue = `labels[0]`, orange =
    `labels[1]`), 420 × 230 pixels per panel."""
    if not panels:
        raise ShapeError("save_histograms needs at least one panel")
    drawn = []
    for name, (a, b) in panels.items():
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        both = np.concatenate([a, b])
        if both.size == 0 or not np.isfinite(both).all():
            raise ShapeError(f"histogram {name!r} needs finite values in both sets")
        lo, hi = float(both.min()), float(both.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        bars = [Bars(f"{label} ({len(v):,})", edges, np.histogram(v, edges)[0] / max(len(v), 1),
                     color, 0.55)
                for v, label, color in zip((a, b), labels, (COLORS[0], COLORS[3]), strict=True)]
        drawn.append(Panel((titles or {}).get(name, name), xlabel, "fraction of images",
                           bars=bars))
    canvas.save_png(render(drawn, (420, 230 * len(drawn))), path)


def histogram_with_marker(values: np.ndarray, marker: float, title: str,
                          marker_label: str = "this image", bins: int = 30) -> Image.Image:
    """A histogram of `values` (e.g. a test set's bits/dim) with a red line at `marker`,
    420 × 220 pixels."""
    v = np.asarray(values, np.float64)
    if v.size == 0 or not np.isfinite(v).all() or not math.isfinite(marker):
        raise ShapeError("histogram needs finite values and a finite marker")
    lo, hi = min(float(v.min()), marker), max(float(v.max()), marker)
    span = hi - lo if hi > lo else 1.0
    edges = np.linspace(lo - 0.03 * span, hi + 0.03 * span, bins + 1)
    bars = Bars("", edges, np.histogram(v, edges)[0].astype(np.float64), COLORS[0])
    panel = Panel(title, ylabel="images", bars=[bars],
                  marker=Marker(marker, f"{marker_label}: {marker:.3f}"))
    return render([panel], (420, 220))


# ---- matplotlib ----------------------------------------------------------------------------
def _draw_mpl(fig: object, panels: Sequence[Panel]) -> None:
    from matplotlib.ticker import MaxNLocator

    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]  # type: ignore[attr-defined]
    for ax, p in zip(axes, panels, strict=True):
        for bar in p.bars:
            ax.bar(bar.edges[:-1], bar.heights, width=np.diff(bar.edges), align="edge",
                   color=bar.color, alpha=bar.alpha, label=bar.name or None)
        for line in p.lines:
            ax.plot(line.xs, line.ys, color=line.color, lw=1.6, label=line.name,
                    marker="o" if len(line.xs) < MAX_DOTS else None, ms=4)
        if p.marker is not None:
            ax.axvline(p.marker.x, color=MARKER_COLOR, lw=2.5, label=p.marker.label)
        ax.set_title(p.title, loc="left" if p.bars else "center")
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel)
        if p.grid:
            ax.grid(True, color="#dddddd", lw=0.6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="upper right", frameon=False, fontsize=8 if p.bars else None)
    fig.tight_layout(h_pad=0.6)  # type: ignore[attr-defined]


# ---- Pillow (without matplotlib) -----------------------------------------------------------
def _draw_pillow(panels: Sequence[Panel], size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img, "RGBA")
    ph = h // len(panels)
    for k, p in enumerate(panels):
        _pillow_panel(draw, p, (0, k * ph, w, (k + 1) * ph))
    return img


def _pillow_panel(draw: ImageDraw.ImageDraw, p: Panel, box: tuple[int, int, int, int]) -> None:
    font = canvas.pillow_font(12)
    bx, by, bw, bh = box
    x0, y0, x1, y1 = bx + 60, by + 30, bw - 16, bh - 36
    xs = [x for line in p.lines for x in line.xs] + [x for b in p.bars for x in b.edges]
    ys = [y for line in p.lines for y in line.ys] + [y for b in p.bars for y in b.heights]
    xs += [p.marker.x] if p.marker else []
    if not xs:
        draw.text((x0, by + 8), p.title, fill="black", font=font)
        return
    lo, hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    bottom, top = (0.0 if p.bars else min(ys)), max(ys)
    pad = 0.05 * (top - bottom) if top > bottom else 0.5
    bottom, top = (bottom, top + pad) if p.bars else (bottom - pad, top + pad)

    def at(x: float, y: float) -> tuple[float, float]:
        return (x0 + (x - lo) / (hi - lo) * (x1 - x0),
                y1 - (y - bottom) / (top - bottom) * (y1 - y0))

    for bar in p.bars:
        fill = _rgba(bar.color, bar.alpha)
        for i, v in enumerate(bar.heights):
            if v > 0:
                draw.rectangle([*at(bar.edges[i], v), at(bar.edges[i + 1], bottom)[0], y1],
                               fill=fill)
    for line in p.lines:
        pts = [at(x, y) for x, y in zip(line.xs, line.ys, strict=True)]
        if len(pts) > 1:
            draw.line(pts, fill=line.color, width=2)
        for q in pts if len(pts) < MAX_DOTS else pts[-1:]:
            draw.ellipse([q[0] - 3, q[1] - 3, q[0] + 3, q[1] + 3], fill=line.color)
    if p.marker is not None:
        mx = at(p.marker.x, bottom)[0]
        draw.line([mx, y0, mx, y1], fill=MARKER_COLOR, width=3)
        draw.text((min(max(x0, mx - 60), x1 - 140), y1 + 18), p.marker.label,
                  fill=MARKER_COLOR, font=font)
    _pillow_axes(draw, p, (x0, y0, x1, y1), (lo, hi, bottom, top), by, font)


def _pillow_axes(draw: ImageDraw.ImageDraw, p: Panel, box: tuple[float, float, float, float],
                 ranges: tuple[float, float, float, float], by: int, font: Any) -> None:
    x0, y0, x1, y1 = box
    lo, hi, bottom, top = ranges
    draw.rectangle([x0, y0, x1, y1], outline="black")
    for frac in (0.0, 0.5, 1.0):
        y = y1 - frac * (y1 - y0)
        draw.text((4, y - 6), f"{bottom + frac * (top - bottom):.3g}", fill="black", font=font)
        tick = f"{lo + frac * (hi - lo):.4g}"
        x = x0 + frac * (x1 - x0) - frac * draw.textlength(tick, font=font)
        draw.text((x, y1 + 4), tick, fill="black", font=font)
    heading = f"{p.title}   ({p.ylabel})" if p.ylabel else p.title
    draw.text((x0, by + 8), heading, fill="black", font=font)
    draw.text(((x0 + x1) / 2 - 30, y1 + 20), p.xlabel, fill="black", font=font)
    named: list[tuple[str, str | tuple[int, int, int, int]]] = [
        (b.name, _rgba(b.color, b.alpha)) for b in p.bars if b.name]
    named += [(line.name, line.color) for line in p.lines]
    for j, (name, color) in enumerate(named):
        lx, ly = x1 - 150, y0 + 6 + 14 * j
        draw.rectangle([lx, ly + 2, lx + 12, ly + 10], fill=color)
        draw.text((lx + 18, ly), name, fill="black", font=font)


def _rgba(color: str, alpha: float) -> tuple[int, int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), round(255 * alpha)
