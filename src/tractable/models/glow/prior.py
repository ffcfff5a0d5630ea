"""Diagonal Gaussian priors: the density, and the learned top-level prior (Glow §3, §5).

The top latent z_L has p(z_L | y) = N(mean, diag(exp(logs))²) with (mean, logs) a learned
per-channel constant (openai/glow `learntop`: a zero conv applied to zeros, i.e. a bias) plus,
for a class-conditional model, a zero-initialized linear embedding of the class weights
(openai/glow `ycond`). With neither, the prior is N(0, I).

With `border=True` the learned part is what openai/glow actually computes: a zero-initialized
3×3 convolution with edge-bias padding applied to zeros, (mean, logs) = ZeroConv2d(0). Over
zeros the convolution reduces to its bias plus the weights on the border channel, so the
prior is a per-channel constant with learned per-position offsets at the latent's border.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tractable.models.glow.zeroconv import ZeroConv2d
from tractable.nn.precision import run_in_full_precision

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(x: Tensor, mean: Tensor, logs: Tensor) -> Tensor:
    """log N(x; mean, exp(logs)²) summed over all but the batch dimension, `[B]`."""
    per_dim = -HALF_LOG_2PI - logs - 0.5 * ((x - mean) * torch.exp(-logs)) ** 2
    return per_dim.flatten(1).sum(1)


class TopPrior(nn.Module):
    """(mean, logs) of p(z_L | y) for a latent of shape `(C, H, W)`."""

    def __init__(self, shape: tuple[int, int, int], learn_top: bool, num_classes: int,
                 border: bool = False) -> None:
        super().__init__()
        self.shape = shape
        zeros = torch.zeros(1, 2 * shape[0], 1, 1)
        self.conv = ZeroConv2d(2 * shape[0], 2 * shape[0], edge_bias=True) \
            if learn_top and border else None
        if learn_top and self.conv is None:
            self.learned = nn.Parameter(zeros)
        else:
            self.register_buffer("learned", zeros, persistent=False)
        self.embed = nn.Linear(num_classes, 2 * shape[0]) if num_classes > 0 else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)
            nn.init.zeros_(self.embed.bias)

    def forward(self, batch: int, y: Tensor | None) -> tuple[Tensor, Tensor]:
        """Prior parameters, each `[batch, C, H, W]`; `y` is class weights `[batch, K]`."""
        c, h, w = self.shape
        params = self.learned.expand(batch, -1, -1, -1)
        if self.conv is not None:
            zeros = self.learned.expand(1, 2 * c, h, w)
            params = run_in_full_precision(self.conv, zeros).to(self.learned.dtype)
            params = params.expand(batch, -1, -1, -1)
        if self.embed is not None and y is not None:
            params = params + self.embed(y.to(params.dtype)).view(batch, 2 * c, 1, 1)
        params = params.to(self.learned.dtype).expand(batch, 2 * c, h, w)
        mean, logs = params.chunk(2, dim=1)
        return mean, logs
