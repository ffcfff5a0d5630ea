"""Input complexity (Serrà et al., "Input complexity and out-of-distribution detection with
likelihood-based generative models", ICLR 2020).

A lossless compressor's code length L(x) in bits estimates the Kolmogorov
complexity of x, i.e. how much of the likelihood is explained by *any* simple model. The
OOD score is

    S(x) = −log₂ p_M(x) − L(x),

the model's NLL in bits minus the compressed length in bits: large when the model finds x
surprising relative to how simple x is. `tractable.evaluation.ood` reports both terms per
dimension (divided by C·H·W), which only rescales S for images of one shape.

Codecs (all lossless, through Pillow): "png" at maximum zlib compression with the encoder's
filter search (`optimize=True`), the paper's first choice; "jpeg2000", the paper's second,
in its reversible (5/3 wavelet, lossless) mode as a bare codestream (no JP2 boxes); and
"webp" in lossless mode (slower, ~10 ms per small image). Header bytes are included: they
are constant for a fixed image shape and so shift S without changing the ranking.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, features
from torch import Tensor

from tractable.errors import ShapeError, TractableError


def _png(img: Image.Image, buf: io.BytesIO) -> None:
    img.save(buf, format="PNG", optimize=True, compress_level=9)


def _jpeg2000(img: Image.Image, buf: io.BytesIO) -> None:
    img.save(buf, format="JPEG2000", irreversible=False, no_jp2=True)


def _webp(img: Image.Image, buf: io.BytesIO) -> None:
    img.save(buf, format="WEBP", lossless=True, quality=100, method=6)


CODECS: dict[str, Callable[[Image.Image, io.BytesIO], None]] = {
    "png": _png,
    "jpeg2000": _jpeg2000,
    "webp": _webp,
}
_PILLOW_FEATURE = {"png": "zlib", "jpeg2000": "jpg_2000", "webp": "webp"}
DEFAULT_CODECS = ("png", "jpeg2000")


def available_codecs() -> list[str]:
    """The codecs this Pillow build can write."""
    return [name for name in CODECS if features.check(_PILLOW_FEATURE[name])]


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise TractableError(f"unknown codec {codec!r}; choose from {sorted(CODECS)}")
    if codec not in available_codecs():
        raise TractableError(f"this Pillow build cannot write {codec} (missing "
                             f"{_PILLOW_FEATURE[codec]} support); use one of "
                             f"{available_codecs()}")


def _to_pil(image: np.ndarray) -> Image.Image:
    """[C, H, W] uint8 with C in {1, 3} -> a Pillow image (mode L or RGB)."""
    return Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


def _check_images(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ShapeError(f"compression needs uint8 images [B, 1|3, H, W], got {images.dtype} "
                         f"{list(images.shape)}")


def encode(image: Tensor, codec: str = "png") -> bytes:
    """The lossless `codec` file of one `uint8 [C, H, W]` image (C in {1, 3})."""
    _check_codec(codec)
    _check_images(image.unsqueeze(0))
    buf = io.BytesIO()
    CODECS[codec](_to_pil(image.cpu().numpy()), buf)
    return buf.getvalue()


def compressed_bits(images: Tensor, codec: str = "png") -> np.ndarray:
    """Lossless compressed length L(x) in bits of each `uint8 [B, C, H, W]` image, `[B]`."""
    _check_codec(codec)
    _check_images(images)
    return np.array([8.0 * len(encode(image, codec)) for image in images], dtype=np.float64)

