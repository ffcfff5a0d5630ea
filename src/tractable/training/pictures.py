"""The pictures a run makes: sample grids during training, their GIF, the bits/dim curve."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from tractable._io import atomic_path
from tractable.models.base import TractableModel
from tractable.sampling import Callback
from tractable.viz import DPI, font_context, have_matplotlib, save_gif


@torch.no_grad()
def draw_samples(
    model: TractableModel,
    n: int,
    y: Tensor | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    sampler: str | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """`n` samples as `uint8 [n, C, H, W]` on the CPU, reproducible from `seed`
    (`model.sample` with a generator seeded on the model's device)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    return model.sample(n, y=y, temperature=temperature, generator=g, sampler=sampler,
                        callback=callback).cpu()


def cycling_labels(model: TractableModel, n: int) -> Tensor | None:
    """Classes 0, 1, ..., K−1, 0, ... for a conditional model; None otherwise."""
    k = model.config.num_classes
    if not k:
        return None
    return torch.arange(n, device=next(model.parameters()).device) % k


def save_gif_of_pngs(pngs: Sequence[Path], path: str | os.PathLike[str],
                     duration_ms: int = 400) -> None:
    """An animated GIF (`viz.save_gif`) of same-size PNG grids, e.g. samples over training."""
    frames = []
    for p in pngs:
        a = np.asarray(Image.open(p))
        frames.append(a[..., None] if a.ndim == 2 else a[..., :3])
    if frames:
        save_gif(frames, path, duration_ms=duration_ms, scale=1)


def plot_curves(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike[str],
    title: str = "bits/dim",
    xlabel: str = "optimizer step",
    ylabel: str = "bits/dim",
    size: tuple[int, int] = (720, 420),
) -> None:
    """A line plot of named `(xs, ys)` series as a `size` PNG, with axis labels and a legend.

    Drawn with matplotlib when it is installed (`tractable[plots]`; Agg, fixed DPI and
    font, so the same numbers give the same PNG), else with Pillow. Series with fewer than
    40 points are drawn with markers, so a test curve of a few evaluations is readable.
    """
    lines = {k: (list(xs), list(ys)) for k, (xs, ys) in series.items() if len(xs)}
    if have_matplotlib():
        _plot_curves_matplotlib(lines, path, title, xlabel, ylabel, size)
    else:
        _plot_curves_pillow(lines, path, title, xlabel, ylabel, size)


def _plot_curves_matplotlib(series: dict[str, tuple[list[float], list[float]]],
                            path: str | os.PathLike[str], title: str, xlabel: str,
                            ylabel: str, size: tuple[int, int]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with font_context():
        fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for i, (name, (xs, ys)) in enumerate(series.items()):
            pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
            if not pts:
                continue
            px, py = zip(*pts, strict=True)
            ax.plot(px, py, color=_COLORS[i % len(_COLORS)], lw=1.6, label=name,
                    marker="o" if len(pts) < 40 else None, ms=4)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, color="#dddddd", lw=0.6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if series:
            ax.legend(loc="upper right", frameon=False)
        fig.tight_layout()
        canvas.draw()
        arr = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    _save_png(Image.fromarray(arr), path)


_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]


def _plot_curves_pillow(series: dict[str, tuple[list[float], list[float]]],
                        path: str | os.PathLike[str], title: str, xlabel: str, ylabel: str,
                        size: tuple[int, int]) -> None:
    w, h = size
    left, right, top, bottom = 70, 20, 36, 46
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text((left, 10), f"{title}   ({ylabel})", fill="black", font=font)
    if not series:
        _save_png(img, path)
        return
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys if math.isfinite(y)]
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = (min(ys_all), max(ys_all)) if ys_all else (0.0, 1.0)
    if x1 == x0:
        x1 = x0 + 1
    pad = 0.05 * (y1 - y0) if y1 > y0 else 0.5
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for i in range(6):
        yv = y0 + (y1 - y0) * i / 5
        _, yp = px(x0, yv)
        d.line([left - 4, yp, left, yp], fill="black")
        d.text((4, yp - 6), f"{yv:.3f}", fill="black", font=font)
        xv = x0 + (x1 - x0) * i / 5
        xp, _ = px(xv, y0)
        d.line([xp, h - bottom, xp, h - bottom + 4], fill="black")
        d.text((xp - 12, h - bottom + 8), f"{xv:.0f}", fill="black", font=font)
    d.text((w // 2 - 30, h - 18), xlabel, fill="black", font=font)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        pts = [px(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for p in pts if len(pts) < 40 else pts[-1:]:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=color)
        lx, ly = w - right - 170, top + 14 + 14 * i
        d.line([lx, ly, lx + 18, ly], fill=color, width=3)
        d.text((lx + 24, ly - 6), name, fill=color, font=font)
    _save_png(img, path)


def _save_png(img: Image.Image, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
