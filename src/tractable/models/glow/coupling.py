"""Affine and additive coupling layers (Glow §3.3, Table 1 row 3; RealNVP §3.3).

Split channels x = [x_a, x_b]; the kept half x_a passes unchanged and parameterizes a map of
the other half:

    additive:  y_b = x_b + NN(x_a)                                    log|det| = 0
    affine:    (shift, h) = NN(x_a),  scale = f + (1 − f)·sigmoid(h + 2),
               y_b = (x_b + shift) ⊙ scale                             log|det| = Σ log scale

(the `sigmoid(h + 2)` scale and add-then-scale order are openai/glow's, more stable than
the paper's exp). The floor f ∈ [0, 1) bounds the scale to (f, 1), so log scale ∈ (log f, 0)
and the inverse divides by at most 1/f per coupling: with openai's f = 0 a network output
far off the data (h → −∞) makes 1/scale overflow, which is why new models default to a
floor (Behrmann et al., "Understanding and mitigating exploding inverses in invertible
neural networks", AISTATS 2021: bounded scales keep the inverse stable off the data).
f = 0 computes exactly openai's form. docs/glow.md derives the bounds and the choice.
NN() is conv3×3 → ActNorm → ReLU → conv1×1 → ActNorm → ReLU → zero conv3×3,
so each coupling starts as (nearly) the identity. Options of openai/glow: `edge_bias` gives
both 3×3 convolutions the border channel (see `edgepad`), and `init_std` draws the two hidden
convolutions' weights from N(0, init_std²) (openai: 0.05) instead of PyTorch's default.

Under autocast only NN() runs in reduced precision: its output is cast back to the stream's
dtype before it touches x_b, and the log-determinant is summed in that dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tractable.models.glow.actnorm import ActNorm
from tractable.models.glow.edgepad import conv_with_border
from tractable.models.glow.zeroconv import ZeroConv2d

COUPLINGS = ("affine", "additive")


def bounded_log_scale(h: Tensor, floor: float) -> Tensor:
    """log(f + (1 − f)·sigmoid(h + 2)), in (log f, 0); f = 0 is openai's logsigmoid(h + 2).

    Computed as logaddexp(log f, log(1 − f) + logsigmoid(h + 2)): finite for every finite h
    and every dtype, with no cancellation near either bound."""
    log_sig = F.logsigmoid(h + 2.0)
    if floor == 0.0:
        return log_sig
    return torch.logaddexp(torch.full_like(h, math.log(floor)), log_sig + math.log1p(-floor))


class CouplingNet(nn.Module):
    """NN(): conv3×3 → ActNorm → ReLU → conv1×1 → ActNorm → ReLU → ZeroConv2d."""

    def __init__(self, in_channels: int, width: int, out_channels: int, edge_bias: bool = False,
                 init_std: float | None = None) -> None:
        super().__init__()
        self.edge_bias = edge_bias
        self.conv1 = nn.Conv2d(in_channels + int(edge_bias), width, 3,
                               padding=0 if edge_bias else 1, bias=False)
        self.norm1 = ActNorm(width)
        self.conv2 = nn.Conv2d(width, width, 1, bias=False)
        self.norm2 = ActNorm(width)
        self.out = ZeroConv2d(width, out_channels, edge_bias)
        if init_std is not None:
            for conv in (self.conv1, self.conv2):
                nn.init.normal_(conv.weight, 0.0, init_std)

    def forward(self, x: Tensor) -> Tensor:
        h = conv_with_border(x, self.conv1) if self.edge_bias else self.conv1(x)
        h = F.relu(self.norm1(h)[0])
        h = F.relu(self.norm2(self.conv2(h))[0])
        return self.out(h)


class Coupling(nn.Module):
    """Affine (`affine=True`) or additive coupling over the channel halves of x; the affine
    scale lies in (scale_floor, 1)."""

    def __init__(self, channels: int, width: int, affine: bool = True, edge_bias: bool = False,
                 init_std: float | None = None, scale_floor: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= scale_floor < 1.0:
            raise ValueError(f"scale_floor must be in [0, 1), got {scale_floor}")
        self.keep = channels // 2
        changed = channels - self.keep
        self.affine = affine
        self.scale_floor = scale_floor
        self.net = CouplingNet(self.keep, width, 2 * changed if affine else changed,
                               edge_bias, init_std)

    def _params(self, x_a: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.net(x_a).to(x_a.dtype)
        if not self.affine:
            return h, None
        return h[:, 0::2], bounded_log_scale(h[:, 1::2], self.scale_floor)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, : self.keep], x[:, self.keep :]
        shift, log_scale = self._params(x_a)
        if log_scale is None:
            return torch.cat([x_a, x_b + shift], dim=1), x.new_zeros(x.shape[0])
        y_b = (x_b + shift) * log_scale.exp()
        return torch.cat([x_a, y_b], dim=1), log_scale.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        y_a, y_b = y[:, : self.keep], y[:, self.keep :]
        shift, log_scale = self._params(y_a)
        if log_scale is None:
            return torch.cat([y_a, y_b - shift], dim=1)
        return torch.cat([y_a, y_b * (-log_scale).exp() - shift], dim=1)
