"""Shared behaviour of the autoregressive families (PixelCNN++, Gated PixelCNN).

An autoregressive model is a network `forward(x_scaled, y) -> params` whose output at pixel
i depends only on pixels before i in raster order, plus a `likelihood` object that turns
params into per-pixel log-probabilities and samples. Samplers (`tractable.sampling`) use
only this surface:

    model.scale(x_uint8) -> network input
    model.targets(x_uint8) -> likelihood target (model.from_targets inverts it)
    model(x_scaled, y) -> params [B, P, H, W]
    model.likelihood.sample(params, temperature, generator) -> [B, C, H, W] long
    model.channel_sequential -> bool (True: channels of a pixel are sampled one at a time)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tractable.models.base import TractableModel


class AutoregressiveModel(TractableModel):
    """Base for raster-order autoregressive models; subclasses set `self.likelihood`."""

    likelihood: Any
    channel_sequential: bool = False

    def scale(self, x: Tensor) -> Tensor:
        """uint8 images -> network input in [-1, 1], in the model's parameter dtype."""
        dtype = next(self.parameters()).dtype
        return x.to(dtype) / 127.5 - 1.0

    def targets(self, x: Tensor) -> Tensor:
        """uint8 images -> the integer values the likelihood scores (identity by default)."""
        return x.long()

    def from_targets(self, t: Tensor) -> Tensor:
        """Inverse of `targets`: likelihood values -> uint8 images."""
        return t.to(torch.uint8)

    def log_prob_pixels(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Per-pixel log-probabilities in nats, `[B, H, W]` (for NLL heatmaps)."""
        self.check_images(x)
        params = self(self.scale(x), y)
        # Likelihoods run in fp32 even under bf16 autocast; float64 models stay exact.
        if params.dtype != torch.float64:
            params = params.float()
        return self.likelihood.log_prob(params, self.targets(x))

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.log_prob_pixels(x, y).sum(dim=(1, 2))

    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        sampler: str = "cached",
        progress: bool = False,
    ) -> Tensor:
        """Draw `n` images pixel by pixel (see `tractable.sampling`)."""
        # sampling sits beside the models: it knows them only through the surface above.
        from tractable.sampling import sample_autoregressive

        return sample_autoregressive(
            self, n, y=y, temperature=temperature, generator=generator,
            sampler=sampler, progress=progress,
        )
