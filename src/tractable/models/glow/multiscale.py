"""Multi-scale architecture (Glow §3 / Figure 2b, from RealNVP §3.6).

Each level squeezes (2×2 space -> channels), runs K flow steps, then — except the last
level — splits off half of the channels. The split-off half z_i is modelled by a learned
prior conditioned on the kept half h_i:  p(z_i | h_i) = N(mean(h_i), exp(logs(h_i))²) with
(mean, logs) = ZeroConv2d(h_i) (openai/glow `split2d_prior`). The kept half goes on to the
next level. With `max_log_std` = c the log-std is capped, logs = min(logs, c): decoding
multiplies the standardized latent by exp(logs), an exponential of a linear function of
the kept half, which a latent moved off the data (an edit) can make overflow; capped, it
multiplies by at most e^c. None (openai/glow, models saved before the cap existed): no cap.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from tractable.models.glow.step import FlowStep
from tractable.models.glow.zeroconv import ZeroConv2d
from tractable.nn.precision import run_in_full_precision


def squeeze2d(x: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, 4C, H/2, W/2]: each 2×2 patch becomes 4 channels (a permutation)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze2d(x: Tensor) -> Tensor:
    """Inverse of `squeeze2d`."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, 2 * h, 2 * w)


class Split(nn.Module):
    """Split channels into (kept, factored-out) and model the latter given the former."""

    def __init__(self, channels: int, edge_bias: bool = False,
                 max_log_std: float | None = None) -> None:
        super().__init__()
        self.keep = channels - channels // 2
        self.prior = ZeroConv2d(self.keep, 2 * (channels // 2), edge_bias)
        self.max_log_std = max_log_std

    def divide(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z[:, : self.keep], z[:, self.keep :]

    def join(self, kept: Tensor, out: Tensor) -> Tensor:
        return torch.cat([kept, out], dim=1)

    def prior_params(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logs) of p(z_out | kept), computed in the stream's precision even under
        autocast (distribution parameters, like the PixelCNNs' output layers)."""
        h = run_in_full_precision(self.prior, kept).to(kept.dtype)
        logs = h[:, 1::2]
        if self.max_log_std is not None:
            logs = logs.clamp(max=self.max_log_std)
        return h[:, 0::2], logs


class Level(nn.Module):
    """K flow steps on a squeezed input, then a `Split` (None on the last level)."""

    split: Split | None

    def __init__(self, channels: int, K: int, width: int, affine: bool, lu: bool,
                 split: bool, edge_bias: bool = False, init_std: float | None = None,
                 scale_floor: float = 0.0, max_log_std: float | None = None) -> None:
        super().__init__()
        self.steps = nn.ModuleList(FlowStep(channels, width, affine, lu, edge_bias, init_std,
                                            scale_floor)
                                   for _ in range(K))
        self.split = Split(channels, edge_bias, max_log_std) if split else None

    def flow_steps(self) -> list[FlowStep]:
        return cast(list[FlowStep], list(self.steps))
