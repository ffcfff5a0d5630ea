"""Element-wise dropout (Srivastava et al., 2014) with cheap masks, as PixelCNN++ uses it.

PixelCNN++ (Salimans et al., 2017, §2.6) drops every activation of the gated block's
second convolution's input independently with probability p (0.5 on CIFAR-10), scaling the
kept ones by 1/(1 − p) so the expectation is unchanged. `torch.bernoulli_` draws one random
number per element through a slow per-element path on CPU; here the mask comes from bulk
random bits instead: one 64-bit draw gives four 16-bit uniform integers r ∈ [−2¹⁵, 2¹⁵),
and an element is kept when r < round((1 − p)·2¹⁶) − 2¹⁵. The keep probability is thus
exact for rates that are multiples of 2⁻¹⁶ (0.5, 0.25, 0.125, ...) and otherwise off by at
most 2⁻¹⁷.

A layer that applies dropout right before a linear map can fold the 1/(1 − p) scale into
that map's weight (`drop` + `gain`), which saves a pass over the activations; `forward`
applies mask and scale itself.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LEVELS = 1 << 16  # 16-bit uniform integers per element


def keep_threshold(keep_prob: float) -> int:
    """The int16 threshold t with P(r < t) = round(keep_prob · 2¹⁶) / 2¹⁶ for uniform r."""
    return round(keep_prob * _LEVELS) - _LEVELS // 2


def bernoulli_keep_mask(like: Tensor, keep_prob: float,
                        generator: torch.Generator | None = None) -> Tensor:
    """A bool tensor shaped and laid out like `like`: each element True with `keep_prob`.

    The bits come from one `random_` over int64 words (a quarter as many draws as elements),
    viewed as int16; the mask has `like`'s memory format (NCHW or channels_last). Under
    torch.compile, which cannot trace `random_`, it is `rand_like(like) < keep_prob`
    instead: the compiler fuses that draw into the kernels around it.
    """
    if torch.compiler.is_compiling():
        return torch.rand_like(like, generator=generator) < keep_prob
    n = like.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device)
    words.random_(-(2**63), None, generator=generator)  # the full 64-bit range
    r = words.view(torch.int16)[:n]
    keep = r < keep_threshold(keep_prob)
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(
            memory_format=torch.channels_last):
        b, c, h, w = like.shape
        return keep.view(b, h, w, c).permute(0, 3, 1, 2)
    return keep.view(like.shape)


class ElementwiseDropout(nn.Module):
    """Drop each element independently with probability `p` in training; identity in eval."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p

    @property
    def active(self) -> bool:
        return self.training and self.p > 0.0

    @property
    def gain(self) -> float:
        """The scale 1/(1 − p) that `drop`'s output still needs (1 when inactive)."""
        return 1.0 / (1.0 - self.p) if self.active else 1.0

    def drop(self, x: Tensor) -> Tensor:
        """`x` with dropped elements zeroed, not yet scaled by `gain`."""
        if not self.active:
            return x
        return x * bernoulli_keep_mask(x, 1.0 - self.p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        return torch.where(bernoulli_keep_mask(x, 1.0 - self.p), x * self.gain, 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"
