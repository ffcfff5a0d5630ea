"""Gated residual block of PixelCNN++ (Salimans et al., 2017, §2.4 and Fig. 2).

    c1 = conv(concat_elu(x)) [+ nin(concat_elu(a))]     a: skip input (other stream / up pass)
    c2 = conv(dropout(concat_elu(c1))) [+ h·W]          h: class weights, W: [K, 2F], no bias
    out = x + c2[:F] · sigmoid(c2[F:])

`conv` is a shifted convolution (`tractable.nn.shifted`), so the block keeps its stream's
causal structure; the skip input is a 1×1 map of activations at the same position, which
must already be causal for that stream.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tractable.nn.weight_norm import NIN, WeightNormLayer

COND_INIT_STD = 0.05  # openai/pixel-cnn `conditional_weights`: N(0, 0.05²), not weight-normed


def concat_elu(x: Tensor) -> Tensor:
    """ELU of `x` and of `−x`, concatenated over channels (doubles the channel count)."""
    return F.elu(torch.cat([x, -x], dim=1))


class GatedResNet(nn.Module):
    """One gated residual block with `channels` filters, in one stream.

    `conv_class` is `DownShiftedConv2d` (down stream) or `DownRightShiftedConv2d`
    (down-right stream); `skip_channels` is the channel count of the skip input `a`
    (0: none); `num_classes` > 0 adds the conditioning projection of §2.4.
    """

    def __init__(
        self,
        channels: int,
        conv_class: Callable[..., WeightNormLayer],
        skip_channels: int = 0,
        num_classes: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv_in = conv_class(2 * channels, channels)
        self.skip = NIN(2 * skip_channels, channels) if skip_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = conv_class(2 * channels, 2 * channels, init_scale=0.1)
        self.cond: nn.Linear | None = None
        if num_classes:
            self.cond = nn.Linear(num_classes, 2 * channels, bias=False)
            nn.init.normal_(self.cond.weight, std=COND_INIT_STD)

    def forward(self, x: Tensor, a: Tensor | None = None, h: Tensor | None = None) -> Tensor:
        c1 = self.conv_in(concat_elu(x))
        if self.skip is not None:
            if a is None:
                raise ValueError("this gated block has a skip connection: pass `a`")
            c1 = c1 + self.skip(concat_elu(a))
        c2 = self.conv_out(self.dropout(concat_elu(c1)))
        if self.cond is not None:
            if h is None:
                raise ValueError("this gated block is class-conditional: pass `h`")
            c2 = c2 + self.cond(h.to(c2.dtype))[:, :, None, None]
        value, gate = c2.chunk(2, dim=1)
        return x + value * torch.sigmoid(gate)
