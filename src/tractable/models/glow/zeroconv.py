"""The zero-initialized convolution that ends every Glow sub-network (Glow §3.3).

"We initialize the last convolution of each NN() with zeros, such that each affine coupling
layer initially performs an identity function." As in openai/glow (`conv2d_zeros`), the
output is also scaled by a learned per-channel exp(3·logs), zero at initialization.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LOGSCALE_FACTOR = 3.0


class ZeroConv2d(nn.Module):
    """3×3 convolution (with bias) whose weights, bias and output log-scale start at zero."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        for p in self.conv.parameters():
            nn.init.zeros_(p)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(self.logs * LOGSCALE_FACTOR)
