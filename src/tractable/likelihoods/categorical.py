"""Categorical distribution over N levels per sub-pixel (PixelRNN, Sec. 5.3: a 256-way softmax).

Params layout: `[B, C·N, H, W]`, channel c's N logits in rows `c·N .. c·N+N-1`. The number
of channels is read from the params (`P // N`), so a slice `params[:, c*N:(c+1)*N]` is the
distribution of channel c alone and a spatial slice `params[..., i:i+1, j:j+1]` that of one
pixel; samplers that go channel by channel or pixel by pixel pass such slices.

All arithmetic is in float32 at least (half/bfloat16 params are promoted; float64 stays
float64, so an exact float64 sampler stays exact).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tractable.checks import check_temperature
from tractable.errors import ShapeError


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32)


class Categorical:
    """A softmax over `n_levels` values for each sub-pixel; the values are 0..n_levels-1."""

    def __init__(self, n_levels: int) -> None:
        if n_levels < 2:
            raise ShapeError(f"a categorical needs at least 2 levels, got {n_levels}")
        self.n_levels = n_levels

    def num_params(self, channels: int) -> int:
        """Params per pixel for `channels` channels."""
        return channels * self.n_levels

    def logits(self, params: Tensor) -> Tensor:
        """`[B, C·N, H, W]` -> `[B, C, H, W, N]` logits in the compute dtype."""
        if params.dim() != 4 or params.shape[1] % self.n_levels:
            raise ShapeError(f"categorical params must be [B, C*{self.n_levels}, H, W], got "
                             f"{list(params.shape)}")
        b, p, h, w = params.shape
        c = p // self.n_levels
        return (params.to(_compute_dtype(params))
                .view(b, c, self.n_levels, h, w).permute(0, 1, 3, 4, 2))

    def log_probs(self, params: Tensor, temperature: float = 1.0) -> Tensor:
        """Log-probabilities of every level, `[B, C, H, W, N]` (logits divided by temperature)."""
        return torch.log_softmax(self.logits(params) / temperature, dim=-1)

    def log_prob_terms(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x) of each sub-pixel in nats, `[B, C, H, W]`; `x` holds integer levels."""
        lp = self.log_probs(params)
        if x.shape != lp.shape[:-1]:
            raise ShapeError(f"targets {list(x.shape)} do not match params for "
                             f"{list(lp.shape[:-1])} sub-pixels")
        if x.is_floating_point():
            raise ShapeError(f"categorical targets must be integer levels, got {x.dtype}")
        if bool((x < 0).any()) or bool((x >= self.n_levels).any()):
            raise ShapeError(f"categorical targets must lie in 0..{self.n_levels - 1}")
        return lp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x) per pixel in nats, `[B, H, W]`: the sum over its channels."""
        return self.log_prob_terms(params, x).sum(dim=1)

    def channel_probs(self, params: Tensor, channel: int, earlier: Tensor) -> Tensor:
        """P(x_c = k) of one sub-pixel for every level k, `[B, N]` float64: the softmax of
        channel c's logits in `params` `[B, C·N]` (one pixel per image). `earlier` (the
        pixel's channels < c) is unused: the network already read them (channel masks)."""
        n = self.n_levels
        if params.dim() != 2 or params.shape[1] < (channel + 1) * n or params.shape[1] % n:
            raise ShapeError(f"one pixel's categorical params must be [B, C*{n}] with C > "
                             f"{channel}, got {list(params.shape)}")
        return torch.softmax(params[:, channel * n:(channel + 1) * n].double(), dim=1)

    def mean(self, params: Tensor) -> Tensor:
        """Expected level of each sub-pixel, `[B, C, H, W]` (float)."""
        p = self.log_probs(params).exp()
        levels = torch.arange(self.n_levels, dtype=p.dtype, device=p.device)
        return (p * levels).sum(-1)

    def sample(self, params: Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw one level per sub-pixel, `[B, C, H, W]` long, by inverse CDF.

        Consumes exactly one float64 uniform per sub-pixel in `params`, drawn as
        `torch.rand([B, C, H, W], dtype=float64, generator=generator)`; the logits are
        divided by `temperature` (> 0).
        """
        temperature = check_temperature(temperature)
        cdf = self.log_probs(params, temperature).exp().cumsum(-1)
        u = torch.rand(cdf.shape[:-1], dtype=torch.float64, device=cdf.device,
                       generator=generator)
        # The first level whose CDF exceeds u; the clamp absorbs a final CDF of 1 - eps.
        k = (cdf.to(torch.float64) <= u.unsqueeze(-1)).sum(-1)
        return k.clamp_(max=self.n_levels - 1)
