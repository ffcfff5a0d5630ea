"""The zero-initialized convolution that ends every Glow sub-network (Glow §3.3).

"We initialize the last convolution of each NN() with zeros, such that each affine coupling
layer initially performs an identity function." As in openai/glow (`conv2d_zeros`), the
output is also scaled by a learned per-channel exp(3·logs), zero at initialization. With
`edge_bias` the input gets openai's border channel (see `edgepad`) and is padded explicitly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tractable.models.glow.edgepad import conv_with_border

LOGSCALE_FACTOR = 3.0


class ZeroConv2d(nn.Module):
    """3×3 convolution (with bias) whose weights, bias and output log-scale start at zero."""

    def __init__(self, in_channels: int, out_channels: int, edge_bias: bool = False) -> None:
        super().__init__()
        self.edge_bias = edge_bias
        self.conv = nn.Conv2d(in_channels + int(edge_bias), out_channels, 3,
                              padding=0 if edge_bias else 1)
        for p in self.conv.parameters():
            nn.init.zeros_(p)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = conv_with_border(x, self.conv) if self.edge_bias else self.conv(x)
        return h * torch.exp(self.logs * LOGSCALE_FACTOR)
