"""Images a user uploads to the app, validated like every other input.

An upload is read from bytes, never executed or kept (`tractable.data.image_input`:
files larger than `MAX_BYTES`, images with more than `MAX_PIXELS` pixels, non-images and
animations are refused with an `UploadError` naming the problem). Accepted images are
brought to the model's input as the model's data looks (`fit_image`): its channels, the
polarity of its data (a dark-on-light drawing is inverted for a light-on-dark model),
padded to its aspect with the image's own background colour, resized to its size; the
note says each change.
"""

from __future__ import annotations

from torch import Tensor

from tractable.data.image_input import FORMATS, MAX_BYTES, MAX_PIXELS, fit_image, open_image
from tractable.errors import DataError

__all__ = ["FORMATS", "MAX_BYTES", "MAX_PIXELS", "UploadError", "read_upload"]


class UploadError(DataError):
    """An uploaded file is not an image the app accepts."""


def read_upload(data: bytes, shape: tuple[int, int, int],
                dark_background: bool | None = None) -> tuple[Tensor, str]:
    """Upload bytes -> (uint8 `[C, H, W]` of the model's `shape`, a note on what was done).

    `dark_background`: whether the model's data is light on dark (None: unknown, the
    polarity is left as it is)."""
    with open_image(data, UploadError) as img:
        try:
            x, notes = fit_image(img, shape, dark_background)
        except Exception as e:  # a crafted image that decodes but cannot be converted
            raise UploadError(f"the image could not be converted ({type(e).__name__}: {e})"
                              ) from None
    return x, "; ".join(notes)
