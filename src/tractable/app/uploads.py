"""Images a user uploads to the app, validated like every other input.

An upload is read from bytes, never executed or kept: files larger than `MAX_BYTES`, images
with more than `MAX_PIXELS` pixels (checked from the header, before decoding: no
decompression bombs), anything Pillow cannot identify as PNG / JPEG / GIF / BMP / WebP,
and animations are refused with an `UploadError` naming the problem. Accepted images are
converted to the model's channels (greyscale or RGB; transparency is laid over black),
centre-cropped to the model's aspect ratio and resized to its size.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from tractable.errors import DataError

MAX_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


class UploadError(DataError):
    """An uploaded file is not an image the app accepts."""


def read_upload(data: bytes, shape: tuple[int, int, int]) -> tuple[Tensor, str]:
    """Upload bytes -> (uint8 `[C, H, W]` of the model's `shape`, a note on what was done)."""
    if len(data) > MAX_BYTES:
        raise UploadError(f"the file is {len(data) / 2**20:.1f} MiB; uploads are limited to "
                          f"{MAX_BYTES // 2**20} MiB")
    if not data:
        raise UploadError("the file is empty")
    try:
        img = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.DecompressionBombError:
        raise UploadError(f"the image has far more than {MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError):
        raise UploadError("the file is not an image (PNG, JPEG, GIF, BMP or WebP)") from None
    except Exception as e:  # a crafted header: each decoder has its own exceptions
        raise UploadError(f"the image is corrupt ({type(e).__name__}: {e})") from None
    try:
        return _decode(img, shape)
    except UploadError:
        raise
    except Exception as e:  # a crafted body: SyntaxError, struct.error, EOFError, ...
        raise UploadError(f"the image could not be decoded ({type(e).__name__}: {e})"
                          ) from None


def _decode(img: Image.Image, shape: tuple[int, int, int]) -> tuple[Tensor, str]:
    c, h, w = shape
    with img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise UploadError(f"the image is {width}x{height}; at most {MAX_PIXELS:,} pixels "
                              "are accepted")
        if getattr(img, "n_frames", 1) > 1:
            raise UploadError("animated images are not accepted: upload a single frame")
        if width < 1 or height < 1:
            raise UploadError(f"the image is {width}x{height}: empty")
        img.load()
        converted = _to_channels(img, c)
    note = "" if (width, height) == (w, h) else f"resized from {width}x{height} to {w}x{h}"
    if (width, height) != (w, h):
        converted = _crop_to_aspect(converted, w / h).resize((w, h), Image.Resampling.LANCZOS)
    arr = np.asarray(converted, dtype=np.uint8).reshape(h, w, c)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1), note


def _to_channels(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def _crop_to_aspect(img: Image.Image, aspect: float) -> Image.Image:
    """The largest centred crop of `img` with width / height = `aspect`."""
    width, height = img.size
    if width / height > aspect:
        new = round(height * aspect)
        left = (width - new) // 2
        return img.crop((left, 0, left + new, height))
    new = round(width / aspect)
    top = (height - new) // 2
    return img.crop((0, top, width, top + new))
