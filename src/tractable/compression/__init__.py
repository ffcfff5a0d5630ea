"""Lossless image compression with the autoregressive families' exact likelihoods.

    data = model.compress(x, y)              # bytes, at the model's bits/dim
    x, y = tractable.decompress(data, model)  # the same pixels, bit for bit

This package sits beside the samplers, below the model families: it drives a model only
through `protocol.CodableModel` (its cached network and its likelihood's per-sub-pixel
distributions), so a new autoregressive family is compressible without a line here.
`codec` holds the one coding path, `frequencies` the shared quantization, `coder` the
range coder, `container` the file format, `identity` the model hash.
"""

from __future__ import annotations

from tractable.compression.codec import (
    DEFAULT_BATCH,
    DEFAULT_THREADS,
    check_codable,
    compress_images,
    decompress_images,
    decompress_unpacked,
    read_header,
)
from tractable.compression.container import Header, unpack

decompress = decompress_images  # tractable.decompress(data, model) -> (x, y)

__all__ = ["DEFAULT_BATCH", "DEFAULT_THREADS", "Header", "check_codable", "compress_images",
           "decompress", "decompress_images", "decompress_unpacked", "read_header", "unpack"]
