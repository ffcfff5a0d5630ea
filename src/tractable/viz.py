"""Pictures: image grids (PNG), animated GIFs, NLL heatmaps and score histograms.

Grids are built with numpy and written with Pillow: small images are enlarged with
nearest-neighbour (a 28×28 digit becomes 112×112) and tiles are separated by light grey
lines, visible against black backgrounds (MNIST) as well as white ones. Labels (class names
on rows, α or t on columns, titles) and colour bars are drawn with matplotlib, an optional
dependency (`pip install 'tractable[plots]'`): without it a grid is written unlabelled. The
tiles are placed pixel for pixel (no resampling), and labelled pictures are deterministic:
Agg renderer, a fixed DPI and the DejaVu Sans font matplotlib ships.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from tractable._io import atomic_path
from tractable.errors import ShapeError

PAD_VALUE = 200  # grey of the lines between tiles
MARK_COLOR = (255, 127, 14)  # frame around marked tiles (an original, interpolation ends)
TILE_TARGET = 112  # small images are enlarged to about this many pixels
DPI = 100
MAX_GRID_PIXELS = 2**28  # 268 M pixels: 0.8 GB of RGB, far past any screen or paper
FONT: dict[str, Any] = {"font.family": "DejaVu Sans", "font.size": 10.0}
CHAR_W, LINE_H = 7, 16  # generous pixel size of a 10 pt DejaVu Sans character at 100 dpi


def font_context(size: float | None = None) -> Any:
    """matplotlib settings of every labelled picture (fixed font and size)."""
    import matplotlib

    rc = {**FONT, **({"font.size": size} if size else {})}
    return matplotlib.rc_context(rc)  # type: ignore[arg-type]


def display_scale(height: int, width: int) -> int:
    """The nearest-neighbour enlargement that makes a tile about `TILE_TARGET` pixels."""
    return max(1, math.ceil(TILE_TARGET / max(height, width, 1)))


def _check_images(images: Tensor, what: str = "grid") -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"{what} needs uint8 [N, 1|3, H, W] images, got {images.dtype} "
                         f"{list(images.shape)}")
    if images.shape[0] == 0:
        raise ShapeError(f"{what} needs at least one image")


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1,
              pad_value: int = PAD_VALUE, marks: Sequence[int] = ()) -> np.ndarray:
    """Tile `uint8 [N, C, H, W]` images into one `uint8 [H', W', C]` array (C in {1, 3}).

    Each image is enlarged `scale`× (nearest neighbour) and sits at row i // nrow, column
    i % nrow, with `padding` pixels of grey `pad_value` around it. The padding around the
    tiles in `marks` is drawn in `MARK_COLOR` (the grid is then RGB).
    """
    _check_images(images)
    n, c, h, w = images.shape
    if nrow is not None and nrow < 1:
        raise ShapeError(f"nrow must be at least 1, got {nrow}")
    if scale < 1 or padding < 0:
        raise ShapeError(f"scale must be >= 1 and padding >= 0, got {scale}, {padding}")
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    th, tw = h * scale, w * scale
    out_c = 3 if marks else c
    grid = np.full((rows * (th + padding) + padding, nrow * (tw + padding) + padding, out_c),
                   pad_value, np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    for i in marks:
        if not 0 <= i < n:
            raise ShapeError(f"mark {i} is not a tile of this {n}-image grid")
        top, left = _tile_origin(i, nrow, th, tw, padding)
        grid[top - padding:top + th + padding, left - padding:left + tw + padding] = MARK_COLOR
    for i in range(n):
        top, left = _tile_origin(i, nrow, th, tw, padding)
        grid[top:top + th, left:left + tw] = arr[i]
    return grid


def _tile_origin(i: int, nrow: int, th: int, tw: int, padding: int) -> tuple[int, int]:
    r, col = divmod(i, nrow)
    return padding + r * (th + padding), padding + col * (tw + padding)


@dataclass(frozen=True)
class ColorBar:
    """A colour bar beside a grid: the heat ramp from 0 to `vmax`, labelled with `label`."""

    vmax: float
    label: str = "NLL (nats per pixel)"


@dataclass(frozen=True)
class GridLayout:
    """Where everything of a (labelled) grid picture lands, in pixels of the PNG."""

    n: int
    nrow: int
    tile: tuple[int, int]  # enlarged tile (height, width)
    padding: int
    left: int  # margins around the tile grid: row labels, title and column labels, bar
    top: int
    right: int
    bottom: int
    rotate_columns: bool = False

    @property
    def rows(self) -> int:
        return math.ceil(self.n / self.nrow)

    @property
    def grid_size(self) -> tuple[int, int]:
        th, tw = self.tile
        return (self.rows * (th + self.padding) + self.padding,
                self.nrow * (tw + self.padding) + self.padding)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture, as PIL reports it."""
        gh, gw = self.grid_size
        return self.left + gw + self.right, self.top + gh + self.bottom

    def tile_box(self, i: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of tile i."""
        th, tw = self.tile
        top, left = _tile_origin(i, self.nrow, th, tw, self.padding)
        return self.top + top, self.left + left, th, tw


def grid_layout(n: int, nrow: int | None, image_hw: tuple[int, int], scale: int | None = None,
                padding: int | None = None, row_labels: Sequence[str] | None = None,
                col_labels: Sequence[str] | None = None, title: str | None = None,
                colorbar: ColorBar | None = None) -> GridLayout:
    """The layout `save_grid` draws `n` images of `image_hw` with (see `save_grid`)."""
    scale = scale or display_scale(*image_hw)
    padding = max(2, scale) if padding is None else padding
    nrow = nrow or math.ceil(math.sqrt(n))
    th, tw = image_hw[0] * scale, image_hw[1] * scale
    labelled = _labels_drawn(row_labels, col_labels, title, colorbar)
    left = top = right = bottom = 0
    rotate = False
    if labelled:
        bottom = 6
        left = 6 + (CHAR_W * max((len(t) for t in row_labels or []), default=0) + 8
                    if row_labels else 0)
        widest = max((len(t) for t in col_labels or []), default=0)
        rotate = CHAR_W * widest > tw + padding
        top = 6 + (LINE_H + 8 if title else 0) + (
            (CHAR_W * widest + 8 if rotate else LINE_H + 4) if col_labels else 0)
        right = 6 + (96 if colorbar else 0)
    return GridLayout(n, nrow, (th, tw), padding, left, top, right, bottom, rotate)


def tiles_of(path: str | os.PathLike[str], layout: GridLayout, scale: int) -> list[np.ndarray]:
    """Cut a grid picture back into its images, `uint8 [h, w, 3]` each (undoing `scale`)."""
    arr = np.asarray(Image.open(path).convert("RGB"))
    out = []
    for i in range(layout.n):
        top, left, th, tw = layout.tile_box(i)
        out.append(arr[top:top + th:scale, left:left + tw:scale])
    return out


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _labels_drawn(*labels: object) -> bool:
    return any(x for x in labels) and have_matplotlib()


def _to_pil(grid: np.ndarray) -> Image.Image:
    return Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)


def save_grid(images: Tensor, path: str | os.PathLike[str], nrow: int | None = None,
              scale: int | None = None, *, padding: int | None = None,
              row_labels: Sequence[str] | None = None,
              col_labels: Sequence[str] | None = None, title: str | None = None,
              marks: Sequence[int] = (), colorbar: ColorBar | None = None) -> GridLayout:
    """Write a PNG grid of `uint8 [N, C, H, W]` images; returns where its tiles are.

    `scale` (default `display_scale`) enlarges each image by nearest neighbour; `padding`
    (default max(2, scale)) grey pixels separate the tiles; `marks` frames tiles. With
    matplotlib installed, `row_labels` name the rows, `col_labels` the columns, `title`
    heads the picture and `colorbar` adds the heat ramp's scale; without it they are
    left out (with a warning).
    """
    _check_images(images)
    n, _, h, w = images.shape
    if row_labels is not None and len(row_labels) != math.ceil(n / (nrow or n)):
        raise ShapeError(f"{len(row_labels)} row labels for {math.ceil(n / (nrow or n))} rows")
    layout = grid_layout(n, nrow, (h, w), scale, padding, row_labels, col_labels, title,
                         colorbar)
    width, height = layout.size
    if width * height > MAX_GRID_PIXELS:  # before allocating it
        raise ShapeError(f"the grid would be {width:,}x{height:,} pixels (more than "
                         f"{MAX_GRID_PIXELS:,}); draw fewer images or a smaller --scale")
    grid = make_grid(images, layout.nrow, layout.padding, layout.tile[0] // h, marks=marks)
    if any((row_labels, col_labels, title, colorbar)) and not have_matplotlib():
        warnings.warn("labels and colour bars need matplotlib (pip install 'tractable[plots]')"
                      f"; writing {path} without them", stacklevel=2)
    if layout.left or layout.top or layout.right or layout.bottom:
        img = Image.fromarray(_labelled(grid, layout, row_labels, col_labels, title, colorbar))
    else:
        img = _to_pil(grid)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return layout


def _labelled(grid: np.ndarray, layout: GridLayout, row_labels: Sequence[str] | None,
              col_labels: Sequence[str] | None, title: str | None,
              colorbar: ColorBar | None) -> np.ndarray:
    """The grid on a white canvas with its labels and colour bar: `uint8 [H, W, 3]`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    W, H = layout.size
    gh, gw = layout.grid_size
    th, tw = layout.tile
    pad = layout.padding
    rgb = grid if grid.shape[2] == 3 else grid.repeat(3, axis=2)
    with font_context():
        fig = Figure(figsize=(W / DPI, H / DPI), dpi=DPI, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        fig.figimage(rgb, xo=layout.left, yo=layout.bottom, origin="upper")

        def text(x: float, y_from_top: float, s: str, **kw: object) -> None:
            fig.text(x / W, 1 - y_from_top / H, s, color="black", **kw)  # type: ignore[arg-type]

        for r, label in enumerate(row_labels or []):
            text(layout.left - 6, layout.top + pad + r * (th + pad) + th / 2, label,
                 ha="right", va="center")
        for c, label in enumerate(col_labels or []):
            x = layout.left + pad + c * (tw + pad) + tw / 2
            text(x, layout.top - 4, label, ha="center", va="bottom",
                 rotation=90 if layout.rotate_columns else 0)
        if title:
            text(W / 2, 6, title, ha="center", va="top", fontsize=11)
        if colorbar is not None:
            _draw_colorbar(fig, colorbar, (layout.left + gw + 14, layout.bottom, 14, gh), W, H)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _draw_colorbar(fig: object, bar: ColorBar, box: tuple[int, int, int, int], W: int,
                   H: int) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    x, y, w, h = box
    ax = fig.add_axes((x / W, y / H, w / W, h / H))  # type: ignore[attr-defined]
    ramp = ListedColormap(heat_colors(np.linspace(0, 1, 256), 1.0) / 255.0)
    cb = fig.colorbar(ScalarMappable(Normalize(0, bar.vmax), ramp), cax=ax)  # type: ignore[attr-defined]
    cb.set_label(bar.label)


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


def save_histograms(panels: dict[str, tuple[np.ndarray, np.ndarray]],
                    path: str | os.PathLike[str], labels: tuple[str, str] = ("in", "out"),
                    titles: dict[str, str] | None = None, bins: int = 50,
                    xlabel: str = "score (bits/dim; higher = more OOD)") -> None:
    """Write one PNG with a panel per entry `name: (values_a, values_b)`: two overlaid
    histograms (fractions of each set over shared bins; blue = `labels[0]`, orange =
    `labels[1]`), 420 × 230 pixels per panel, with axis labels when matplotlib is there."""
    if not panels:
        raise ShapeError("save_histograms needs at least one panel")
    for name, (a, b) in panels.items():
        both = np.concatenate([np.asarray(a, np.float64), np.asarray(b, np.float64)])
        if both.size == 0 or not np.isfinite(both).all():
            raise ShapeError(f"histogram {name!r} needs finite values in both sets")
    if have_matplotlib():
        _histograms_matplotlib(panels, path, labels, titles or {}, bins, xlabel)
    else:
        _histograms_pillow(panels, path, labels, titles, bins)


def _histograms_matplotlib(panels: dict[str, tuple[np.ndarray, np.ndarray]],
                           path: str | os.PathLike[str], labels: tuple[str, str],
                           titles: dict[str, str], bins: int, xlabel: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colors = ("#1f77b4", "#ff7f0e")
    with font_context(9.0):
        fig = Figure(figsize=(420 / DPI, 230 * len(panels) / DPI), dpi=DPI, facecolor="white")
        canvas = FigureCanvasAgg(fig)
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (name, (a, b)) in zip(axes, panels.items(), strict=True):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
            for v, color, label in zip((a, b), colors, labels, strict=True):
                ax.hist(v, edges, weights=np.full(len(v), 1 / max(len(v), 1)), color=color,
                        alpha=0.55, label=f"{label} ({len(v):,})")
            ax.set_title(titles.get(name, name), loc="left", fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("fraction of images")
            ax.legend(loc="upper right", frameon=False, fontsize=8)
        fig.tight_layout(h_pad=0.6)
        canvas.draw()
        arr = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _histograms_pillow(panels: dict[str, tuple[np.ndarray, np.ndarray]],
                       path: str | os.PathLike[str], labels: tuple[str, str],
                       titles: dict[str, str] | None, bins: int) -> None:
    from PIL import ImageDraw, ImageFont

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


def _font(size: int = 12):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def labelled_grid(rows: Tensor, labels: Sequence[str], scale: int = 4,
                  padding: int = 4) -> Image.Image:
    """`uint8 [R, N, C, H, W]` images as R rows of N tiles, with `labels[j]` above column j.

    Tiles are upscaled `scale`× (nearest neighbour) and separated by white `padding`.
    """
    from PIL import ImageDraw

    if rows.dtype != torch.uint8 or rows.dim() != 5 or rows.shape[2] not in (1, 3):
        raise ShapeError(f"labelled grid needs uint8 [R, N, 1|3, H, W] images, got "
                         f"{rows.dtype} {list(rows.shape)}")
    r, n, _, h, w = rows.shape
    if len(labels) != n:
        raise ShapeError(f"{n} columns but {len(labels)} labels")
    th, tw = h * scale, w * scale
    font = _font(12)
    head = 18
    canvas = Image.new("RGB", (n * (tw + padding) + padding, head + r * (th + padding) + padding),
                       "white")
    draw = ImageDraw.Draw(canvas)
    rgb = rows.expand(-1, -1, 3, -1, -1) if rows.shape[2] == 1 else rows
    for i in range(r):
        for j in range(n):
            tile = Image.fromarray(rgb[i, j].permute(1, 2, 0).cpu().numpy())
            tile = tile.resize((tw, th), Image.Resampling.NEAREST)
            canvas.paste(tile, (padding + j * (tw + padding), head + padding + i * (th + padding)))
    for j, text in enumerate(labels):
        left = padding + j * (tw + padding)
        x = left + max(0.0, (tw - draw.textlength(text, font=font)) / 2)
        draw.text((x, 3), text, fill="black", font=font)
    return canvas


def save_labelled_grid(rows: Tensor, labels: Sequence[str], path: str | os.PathLike[str],
                       scale: int = 4) -> None:
    """Write `labelled_grid(rows, labels, scale)` as a PNG."""
    img = labelled_grid(rows, labels, scale)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def occlude(images: Tensor, pixels: int, fill: int = 110) -> Tensor:
    """`uint8 [N, C, H, W]` with every raster position from `pixels` on set to `fill` (the
    part a completion does not see)."""
    n, c, h, w = images.shape
    flat = images.clone().flatten(2)
    flat[:, :, pixels:] = fill
    return flat.view(n, c, h, w)


def heatmap_with_colorbar(values: Tensor, scale: int = 8, vmax: float | None = None,
                          unit: str = "nats") -> Image.Image:
    """A `[H, W]` map of values ≥ 0 (e.g. per-pixel NLL) coloured 0..`vmax` (default: its
    maximum), upscaled `scale`×, with a labelled colour bar on its right."""
    from PIL import ImageDraw

    m = values.detach().double().cpu().numpy()
    if m.ndim != 2 or not np.isfinite(m).all():
        raise ShapeError(f"heatmap needs a finite [H, W] map, got shape {list(m.shape)}")
    vmax = float(m.max()) if vmax is None else vmax
    vmax = vmax if vmax > 0 else 1.0
    h, w = m.shape
    heat = Image.fromarray(heat_colors(m, vmax)).resize((w * scale, h * scale),
                                                         Image.Resampling.NEAREST)
    bar_w, gap, text_w, pad = 16, 8, 64, 8
    canvas = Image.new("RGB", (heat.width + gap + bar_w + text_w, heat.height + 2 * pad), "white")
    canvas.paste(heat, (0, pad))
    ramp = np.linspace(vmax, 0.0, heat.height)[:, None].repeat(bar_w, axis=1)
    canvas.paste(Image.fromarray(heat_colors(ramp, vmax)), (heat.width + gap, pad))
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    x_text = heat.width + gap + bar_w + 4
    for frac in (0.0, 0.5, 1.0):
        y = pad + round((1 - frac) * (heat.height - 1))
        draw.line([heat.width + gap + bar_w, y, x_text - 1, y], fill="black")
        draw.text((x_text, max(0, y - 6)), f"{frac * vmax:.3g}", fill="black", font=font)
    draw.text((x_text, heat.height + pad - 26), unit, fill="black", font=font)
    return canvas


def histogram_with_marker(values: np.ndarray, marker: float, title: str,
                          marker_label: str = "this image", bins: int = 30) -> Image.Image:
    """A histogram of `values` (e.g. a test set's bits/dim) with a red line at `marker`."""
    from PIL import ImageDraw

    v = np.asarray(values, np.float64)
    if v.size == 0 or not np.isfinite(v).all() or not math.isfinite(marker):
        raise ShapeError("histogram needs finite values and a finite marker")
    lo, hi = min(float(v.min()), marker), max(float(v.max()), marker)
    span = hi - lo if hi > lo else 1.0
    lo, hi = lo - 0.03 * span, hi + 0.03 * span
    counts, edges = np.histogram(v, np.linspace(lo, hi, bins + 1))
    pw, ph, left, top, bottom = 420, 220, 36, 34, 34
    canvas = Image.new("RGB", (pw, ph), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    x0, y0, x1, y1 = left, top, pw - 12, ph - bottom
    peak = max(int(counts.max()), 1)
    bw = (x1 - x0) / bins
    for i, cnt in enumerate(counts):
        if cnt:
            draw.rectangle([x0 + i * bw, y1 - (y1 - y0) * cnt / peak, x0 + (i + 1) * bw - 1, y1],
                           fill=(31, 119, 180))
    draw.line([x0, y1, x1, y1], fill="black")
    draw.line([x0, y0, x0, y1], fill="black")
    draw.text((4, y0 - 2), str(peak), fill="black", font=font)
    draw.text((x1 - draw.textlength(title, font=font), 5), title, fill="black", font=font)
    for value in (edges[0], edges[-1]):
        text = f"{value:.3g}"
        x = x0 if value == edges[0] else x1 - draw.textlength(text, font=font)
        draw.text((x, y1 + 4), text, fill="black", font=font)
    mx = x0 + (marker - lo) / (hi - lo) * (x1 - x0)
    draw.line([mx, y0, mx, y1], fill=(214, 39, 40), width=3)
    label = f"{marker_label}: {marker:.3f}"
    lx = min(max(x0, mx - draw.textlength(label, font=font) / 2),
             x1 - draw.textlength(label, font=font))
    draw.text((lx, y1 + 18), label, fill=(214, 39, 40), font=font)
    return canvas


def grid_image(images: Tensor, nrow: int | None = None, scale: int = 4) -> Image.Image:
    """`make_grid` as a Pillow image upscaled `scale`× (nearest neighbour)."""
    img = _to_pil(make_grid(images, nrow))
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
