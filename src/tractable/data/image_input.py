"""One image from outside a dataset (a file, an upload) brought to a model's input shape.

`open_image(data)` decodes bytes safely: files larger than `MAX_BYTES`, images with more
than `MAX_PIXELS` pixels (checked from the header, before decoding: no decompression
bombs), anything Pillow cannot identify as PNG / JPEG / GIF / BMP / WebP, and animations
are refused with a `DataError` naming the problem.

`fit_image(img, shape, dark_background)` then makes it what the model saw in training, and
says what it did, one short note per change:

* channels: greyscale or RGB (transparency laid over black);
* polarity: when the model's data is light-on-dark (`dark_background=True`, e.g. MNIST) and
  the image is dark-on-light (its border is light, e.g. a digit drawn on white paper), the
  image is inverted, and the other way round; `dark_background=None` (unknown) leaves it;
* aspect: a non-square image (for a square model) is padded to the model's aspect with its
  own background colour (the median of its border pixels) rather than cropped, so a tall
  drawing is kept whole and no bars of another colour appear;
* size: resized with Lanczos.

`dataset_background(images)` tells whether a greyscale dataset's images are drawings light
on dark (or dark on light) from their border pixels; for photographs and colour images it
says nothing, so their uploads are never inverted.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from tractable.errors import DataError

MAX_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
DARK = 128  # a border median below this is a dark background
UNIFORM = 0.9  # share of a dataset's border pixels that must agree to call its background


def open_image(data: bytes, error: type[DataError] = DataError) -> Image.Image:
    """Decoded image bytes (see the module docstring for what is refused, as `error`)."""
    if len(data) > MAX_BYTES:
        raise error(f"the file is {len(data) / 2**20:.1f} MiB; images are limited to "
                    f"{MAX_BYTES // 2**20} MiB")
    if not data:
        raise error("the file is empty")
    try:
        img = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.DecompressionBombError:
        raise error(f"the image has far more than {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError):
        raise error("the file is not an image (PNG, JPEG, GIF, BMP or WebP)") from None
    except Exception as e:  # a crafted header: each decoder has its own exceptions
        raise error(f"the image is corrupt ({type(e).__name__}: {e})") from None
    try:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise error(f"the image is {width}x{height}; at most {MAX_PIXELS:,} pixels are "
                        "accepted")
        if getattr(img, "n_frames", 1) > 1:
            raise error("animated images are not accepted: use a single frame")
        if width < 1 or height < 1:
            raise error(f"the image is {width}x{height}: empty")
        img.load()
    except DataError:
        img.close()
        raise
    except Exception as e:  # a crafted body: SyntaxError, struct.error, EOFError, ...
        img.close()
        raise error(f"the image could not be decoded ({type(e).__name__}: {e})") from None
    return img


def fit_image(img: Image.Image, shape: tuple[int, int, int],
              dark_background: bool | None = None) -> tuple[Tensor, list[str]]:
    """`img` as uint8 `[C, H, W]` of the model's `shape`, and notes on what was changed."""
    c, h, w = shape
    notes: list[str] = []
    img = to_channels(img, c)
    border = border_colour(img)
    light = float(np.mean(border)) >= DARK
    if dark_background is not None and light == dark_background:
        img = ImageOps.invert(img)
        border = tuple(255 - v for v in border)
        notes.append("inverted: dark on light, the model's data is light on dark"
                     if dark_background else
                     "inverted: light on dark, the model's data is dark on light")
    width, height = img.size
    if width * h != height * w:
        img = pad_to_aspect(img, w / h, border)
        notes.append(f"padded from {width}x{height} to {img.size[0]}x{img.size[1]} with its "
                     "background colour")
    if img.size != (w, h):
        notes.append(f"resized from {img.size[0]}x{img.size[1]} to {w}x{h}")
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8).reshape(h, w, c)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1), notes


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Greyscale (1) or RGB (3); transparency is laid over black."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def border_colour(img: Image.Image) -> tuple[int, ...]:
    """The median of the outermost pixels, per channel: the image's background."""
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
    edge = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return tuple(int(v) for v in np.median(edge, axis=0))


def pad_to_aspect(img: Image.Image, aspect: float, fill: tuple[int, ...]) -> Image.Image:
    """`img` centred on the smallest canvas of width / height = `aspect`, filled with `fill`."""
    width, height = img.size
    if width / height > aspect:
        size = (width, max(height, round(width / aspect)))
    else:
        size = (max(width, round(height * aspect)), height)
    canvas = Image.new(img.mode, size, fill[0] if img.mode == "L" else fill)
    canvas.paste(img, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def dataset_background(images: Tensor) -> bool | None:
    """True if greyscale images (uint8 `[N, 1, H, W]`) are drawings light on a dark
    background (MNIST, Fashion-MNIST: at least `UNIFORM` of their border pixels below 64),
    False if dark on light (at least that share above 191); None for anything else
    (photographs, colour images, no images), whose uploads are never inverted."""
    if images.numel() == 0 or images.shape[1] != 1:
        return None
    x = images[:256, 0]
    edge = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1).float()
    if float((edge < 64).float().mean()) >= UNIFORM:
        return True
    if float((edge > 191).float().mean()) >= UNIFORM:
        return False
    return None
