"""From a model's distribution to the integer frequencies the entropy coder uses.

Encoder and decoder must agree on every frequency to the last count, or the decoder reads
garbage. Both sides call the functions here on params computed by the same code path
(`tractable.compression.codec`), so they agree whenever those params agree bit for bit.
Two steps make the frequencies robust to the last-bit differences that floating point may
still show between runs (another thread count, another batch partition of a reduction):

* `round_params`: float64 params are rounded to a grid of 2^-20 before any probability is
  computed, so a difference of a few ulps (~1e-16) changes the rounded params only when a
  value lies within that distance of a grid boundary (a chance of ~1e-10 per param);
* `frequencies`: probabilities are turned into integers by floor and a fixed remainder
  rule, in exact integer arithmetic after one float64 multiplication.

What is left (an exact tie at a boundary) is caught by the pixel checksum of the file.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tractable.errors import NumericalError

PRECISION_BITS = 24  # the coder's probability resolution: frequencies sum to 2^24
TOTAL = 1 << PRECISION_BITS
PARAM_GRID_BITS = 20  # params are rounded to multiples of 2^-20


def round_params(params: Tensor) -> Tensor:
    """Params in float64, rounded to the nearest multiple of 2^-PARAM_GRID_BITS (exact:
    scaling by a power of two loses nothing; ties round to even)."""
    scale = float(1 << PARAM_GRID_BITS)
    return torch.round(params.double() * scale) / scale


def frequencies(probs: Tensor) -> Tensor:
    """Probabilities `[B, K]` -> integer frequencies `[B, K]` (int64), each at least 1,
    every row summing to exactly `TOTAL`.

    f_k = ⌊p_k · (TOTAL − K)⌋ + 1 after normalizing the row; the few counts the floors
    leave over go to the row's most frequent symbol (the first one on a tie). Every symbol
    stays codable, and the loss against the exact distribution is below K / TOTAL
    (1.5e-5 for 256 levels) of probability mass per sub-pixel.
    """
    if probs.dim() != 2 or probs.shape[1] < 2 or probs.shape[1] >= TOTAL:
        raise ValueError(f"probabilities must be [B, K] with 2 <= K < {TOTAL}, "
                         f"got {list(probs.shape)}")
    if not bool(torch.isfinite(probs).all()):
        raise NumericalError("the model gave a non-finite probability; these images "
                             "cannot be coded with it")
    p = probs.double().clamp(min=0.0)
    p = p / p.sum(dim=1, keepdim=True)
    k = p.shape[1]
    f = torch.floor(p * float(TOTAL - k)).long() + 1
    left = TOTAL - f.sum(dim=1)  # in 0..K: the floors never add up to more than TOTAL - K
    rows = torch.arange(len(f), device=f.device)
    f[rows, f.argmax(dim=1)] += left
    return f


def code_length_bits(freqs: Tensor, symbols: Tensor) -> Tensor:
    """−log₂(f_s / TOTAL) of each coded symbol, `[B]` float64: the ideal cost of a code
    that uses these frequencies (what the coder achieves up to its own overhead)."""
    chosen = freqs.gather(1, symbols.long().unsqueeze(1)).squeeze(1).double()
    return PRECISION_BITS - torch.log2(chosen)
