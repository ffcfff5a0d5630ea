"""The entropy coder: a range coder from `constriction` (Bamler, 2022, "Understanding
Entropy Coding With Asymmetric Numeral Systems (ANS): a Statistician's Perspective").

Why this library: it is made for exactly this (entropy coding with learned models), is
maintained, ships binary wheels (Rust, no compiler needed), and codes a whole batch of
symbols, each with its own categorical distribution, in one call. Why a range coder rather
than its ANS coder: a range coder is first-in first-out, so the encoder can code each
sub-pixel as soon as the model gives its distribution, in the same raster order the
decoder must follow; ANS is last-in first-out and would need every distribution of an
image kept until the end.

The distributions handed over are the integer frequencies of
`tractable.compression.frequencies` (summing to 2^24), as floats: constriction maps them
onto its own 24-bit fixed-point model by a deterministic rule ("perfect=False"), so equal
frequencies on both sides give equal coder models; the extra cost measured is ~0.02%.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from tractable.errors import ConfigError


def _constriction() -> Any:
    try:
        import constriction
    except ImportError:
        raise ConfigError("compression needs the constriction package: pip install "
                          "'tractable[compress]'") from None
    return constriction


def coder_name() -> str:
    """The coder and its version, recorded in every file."""
    from importlib.metadata import version

    _constriction()
    return f"constriction-{version('constriction')} range"


def _table(freqs: Tensor) -> np.ndarray:
    # float32 holds every count up to 2^24 exactly, and every partial sum of a row too.
    return freqs.cpu().numpy().astype(np.float32)


class Encoder:
    """Codes batches of symbols, each with its own frequencies, into one stream."""

    def __init__(self) -> None:
        c = _constriction()
        self._coder = c.stream.queue.RangeEncoder()
        self._family = c.stream.model.Categorical(perfect=False)

    def code(self, symbols: Tensor | None, freqs: Tensor) -> Tensor:
        """Append `symbols` `[B]` (each coded with its row of `freqs` `[B, K]`)."""
        if symbols is None:
            raise ValueError("the encoder codes known symbols")
        self._coder.encode(symbols.cpu().numpy().astype(np.int32), self._family, _table(freqs))
        return symbols

    def finish(self) -> bytes:
        """The stream so far, as little-endian 32-bit words."""
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Reads back, batch by batch, what an `Encoder` wrote with the same frequencies."""

    def __init__(self, stream: bytes) -> None:
        c = _constriction()
        if len(stream) % 4:
            raise ValueError("a coded stream is a whole number of 32-bit words")
        words = np.frombuffer(stream, dtype="<u4").astype(np.uint32)
        self._coder = c.stream.queue.RangeDecoder(words)
        self._family = c.stream.model.Categorical(perfect=False)

    def code(self, symbols: Tensor | None, freqs: Tensor) -> Tensor:
        """The next `[B]` symbols (`symbols` is ignored: the decoder does not know them)."""
        out = self._coder.decode(self._family, _table(freqs))
        return torch.from_numpy(np.asarray(out, dtype=np.int64)).to(freqs.device)
