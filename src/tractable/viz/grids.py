"""Image grids (PNG) and animated GIFs: sample grids, completions, interpolation strips.

Grids are built with numpy and written with Pillow: small images are enlarged with
nearest-neighbour (a 28×28 digit becomes 112×112) and tiles are separated by light grey
lines, visible against black backgrounds (MNIST) as well as white ones. Labels (class names
on rows, α or t on columns, titles) and colour bars are drawn with matplotlib, an optional
dependency (`pip install 'tractable[plots]'`), or without it with the one Pillow fallback
(plainer text, the same layout). The tiles are placed pixel for pixel (no resampling), and
labelled pictures are deterministic: Agg renderer, a fixed DPI and the DejaVu Sans font
matplotlib ships.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from tractable._io import atomic_path
from tractable.errors import ShapeError
from tractable.viz import canvas
from tractable.viz.canvas import CHAR_W, LINE_H, heat_colors, pillow_font, save_png, to_pil

PAD_VALUE = 200  # grey of the lines between tiles
MARK_COLOR = (255, 127, 14)  # frame around marked tiles (an original, interpolation ends)
TILE_TARGET = 112  # small images are enlarged to about this many pixels
MAX_GRID_PIXELS = 2**28  # 268 M pixels: 0.8 GB of RGB, far past any screen or paper

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
    labelled = any(x for x in (row_labels, col_labels, title, colorbar))
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



def save_grid(images: Tensor, path: str | os.PathLike[str], nrow: int | None = None,
              scale: int | None = None, *, padding: int | None = None,
              row_labels: Sequence[str] | None = None,
              col_labels: Sequence[str] | None = None, title: str | None = None,
              marks: Sequence[int] = (), colorbar: ColorBar | None = None) -> GridLayout:
    """Write `render_grid(...)` as a PNG; returns where its tiles are."""
    img, layout = render_grid(images, nrow, scale, padding=padding, row_labels=row_labels,
                              col_labels=col_labels, title=title, marks=marks,
                              colorbar=colorbar)
    save_png(img, path)
    return layout


def render_grid(images: Tensor, nrow: int | None = None, scale: int | None = None, *,
                padding: int | None = None, row_labels: Sequence[str] | None = None,
                col_labels: Sequence[str] | None = None, title: str | None = None,
                marks: Sequence[int] = (), colorbar: ColorBar | None = None
                ) -> tuple[Image.Image, GridLayout]:
    """A grid picture of `uint8 [N, C, H, W]` images and where its tiles are.

    `scale` (default `display_scale`) enlarges each image by nearest neighbour; `padding`
    (default max(2, scale)) grey pixels separate the tiles; `marks` frames tiles.
    `row_labels` name the rows, `col_labels` the columns, `title` heads the picture and
    `colorbar` adds the heat ramp's scale: drawn with matplotlib where it is installed,
    else with Pillow. The tiles hold the images' pixels exactly either way.
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
    if not (layout.left or layout.top or layout.right or layout.bottom):
        return to_pil(grid), layout
    labels = _Labels(row_labels or [], col_labels or [], title, colorbar)
    if canvas.have_matplotlib():
        return Image.fromarray(_labelled(grid, layout, labels)), layout
    return _labelled_pillow(grid, layout, labels), layout


@dataclass(frozen=True)
class _Labels:
    rows: Sequence[str]
    columns: Sequence[str]
    title: str | None
    colorbar: ColorBar | None


def _labelled(grid: np.ndarray, layout: GridLayout, labels: _Labels) -> np.ndarray:
    """The grid on a white canvas with its labels and colour bar (matplotlib):
    `uint8 [H, W, 3]`."""
    W, H = layout.size
    gh, gw = layout.grid_size
    th, tw = layout.tile
    pad = layout.padding
    rgb = grid if grid.shape[2] == 3 else grid.repeat(3, axis=2)

    def draw(fig: Any) -> None:
        fig.figimage(rgb, xo=layout.left, yo=layout.bottom, origin="upper")

        def text(x: float, y_from_top: float, s: str, **kw: object) -> None:
            fig.text(x / W, 1 - y_from_top / H, s, color="black", **kw)

        for r, label in enumerate(labels.rows):
            text(layout.left - 6, layout.top + pad + r * (th + pad) + th / 2, label,
                 ha="right", va="center")
        for c, label in enumerate(labels.columns):
            x = layout.left + pad + c * (tw + pad) + tw / 2
            text(x, layout.top - 4, label, ha="center", va="bottom",
                 rotation=90 if layout.rotate_columns else 0)
        if labels.title:
            text(W / 2, 6, labels.title, ha="center", va="top", fontsize=11)
        if labels.colorbar is not None:
            _draw_colorbar(fig, labels.colorbar, (layout.left + gw + 14, layout.bottom, 14, gh),
                           W, H)

    return canvas.figure_pixels((W, H), draw)


def _draw_colorbar(fig: object, bar: ColorBar, box: tuple[int, int, int, int], W: int,
                   H: int) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    x, y, w, h = box
    ax = fig.add_axes((x / W, y / H, w / W, h / H))  # type: ignore[attr-defined]
    ramp = ListedColormap(heat_colors(np.linspace(0, 1, 256), 1.0) / 255.0)
    cb = fig.colorbar(ScalarMappable(Normalize(0, bar.vmax), ramp), cax=ax)  # type: ignore[attr-defined]
    cb.set_label(bar.label)


def _labelled_pillow(grid: np.ndarray, layout: GridLayout, labels: _Labels) -> Image.Image:
    """The grid on a white canvas with its labels and colour bar, drawn with Pillow (no
    matplotlib): the same layout, a plainer font."""
    img = Image.new("RGB", layout.size, "white")
    img.paste(to_pil(grid).convert("RGB"), (layout.left, layout.top))
    draw = ImageDraw.Draw(img)
    font = pillow_font(12)
    th, tw = layout.tile
    pad = layout.padding
    for r, label in enumerate(labels.rows):
        y = layout.top + pad + r * (th + pad) + th // 2 - 6
        draw.text((layout.left - 6 - draw.textlength(label, font=font), y), label,
                  fill="black", font=font)
    for c, label in enumerate(labels.columns):
        x = layout.left + pad + c * (tw + pad) + tw // 2
        if layout.rotate_columns:  # written upwards, ending just above its column
            width = round(draw.textlength(label, font=font)) + 2
            strip = Image.new("RGB", (width, LINE_H), "white")
            ImageDraw.Draw(strip).text((0, 1), label, fill="black", font=font)
            up = strip.rotate(90, expand=True)
            img.paste(up, (x - up.width // 2, layout.top - 4 - up.height))
        else:
            draw.text((x - draw.textlength(label, font=font) / 2, layout.top - 4 - LINE_H),
                      label, fill="black", font=font)
    if labels.title:
        draw.text(((layout.size[0] - draw.textlength(labels.title, font=font)) / 2, 6),
                  labels.title, fill="black", font=font)
    if labels.colorbar is not None:
        gh, gw = layout.grid_size
        colorbar_pillow(img, labels.colorbar, (layout.left + gw + 14, layout.top, 14, gh))
    return img


def colorbar_pillow(img: Image.Image, bar: ColorBar, box: tuple[int, int, int, int]) -> None:
    """Draw the heat ramp 0..`bar.vmax` (bright at the top) in `box` (left, top, width,
    height) of `img`, with ticks at 0, half and vmax and the bar's label beside them."""
    left, top, width, height = box
    ramp = np.linspace(bar.vmax, 0.0, height)[:, None].repeat(width, axis=1)
    img.paste(Image.fromarray(heat_colors(ramp, bar.vmax)), (left, top))
    draw = ImageDraw.Draw(img)
    font = pillow_font(11)
    x_text = left + width + 4
    for frac in (0.0, 0.5, 1.0):
        y = top + round((1 - frac) * (height - 1))
        draw.line([left + width, y, x_text - 1, y], fill="black")
        draw.text((x_text, max(0, y - 6)), f"{frac * bar.vmax:.3g}", fill="black", font=font)
    draw.text((x_text, top + height - 26), bar.label, fill="black", font=font)


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
    pil = [to_pil(f) for f in frames]
    if scale > 1:
        pil = [p.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST) for p in pil]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:],
                    duration=duration_ms, loop=0)


def save_gif_of_pngs(pngs: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str],
                     duration_ms: int = 400) -> None:
    """An animated GIF (`save_gif`) of same-size PNG grids, e.g. samples over training."""
    frames = []
    for p in pngs:
        a = np.asarray(Image.open(p))
        frames.append(a[..., None] if a.ndim == 2 else a[..., :3])
    if frames:
        save_gif(frames, path, duration_ms=duration_ms, scale=1)


def labelled_grid(rows: Tensor, labels: Sequence[str], scale: int = 4,
                  padding: int = 4) -> Image.Image:
    """`uint8 [R, N, C, H, W]` images as R rows of N tiles, with `labels[j]` above column j
    (`render_grid`; tiles enlarged `scale`×, `padding` pixels apart)."""
    return _labelled_rows(rows, labels, scale, padding)[0]


def save_labelled_grid(rows: Tensor, labels: Sequence[str], path: str | os.PathLike[str],
                       scale: int = 4) -> GridLayout:
    """Write `labelled_grid(rows, labels, scale)` as a PNG; returns where its tiles are."""
    img, layout = _labelled_rows(rows, labels, scale, 4)
    save_png(img, path)
    return layout


def _labelled_rows(rows: Tensor, labels: Sequence[str], scale: int,
                   padding: int) -> tuple[Image.Image, GridLayout]:
    if rows.dtype != torch.uint8 or rows.dim() != 5 or rows.shape[2] not in (1, 3):
        raise ShapeError(f"labelled grid needs uint8 [R, N, 1|3, H, W] images, got "
                         f"{rows.dtype} {list(rows.shape)}")
    if len(labels) != rows.shape[1]:
        raise ShapeError(f"{rows.shape[1]} columns but {len(labels)} labels")
    return render_grid(rows.flatten(0, 1), nrow=rows.shape[1], scale=scale, padding=padding,
                       col_labels=labels)


def occlude(images: Tensor, pixels: int, fill: int = 110) -> Tensor:
    """`uint8 [N, C, H, W]` with every raster position from `pixels` on set to `fill` (the
    part a completion does not see)."""
    n, c, h, w = images.shape
    flat = images.clone().flatten(2)
    flat[:, :, pixels:] = fill
    return flat.view(n, c, h, w)


def grid_image(images: Tensor, nrow: int | None = None, scale: int = 4) -> Image.Image:
    """`make_grid` as a Pillow image upscaled `scale`× (nearest neighbour)."""
    img = to_pil(make_grid(images, nrow))
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
