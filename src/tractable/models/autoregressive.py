"""Shared behaviour of the autoregressive families (PixelCNN++, Gated PixelCNN).

An autoregressive model is a network `forward(x_scaled, y) -> params` whose output at pixel
i depends only on pixels before i in raster order, plus a `likelihood` object that turns
params into per-pixel log-probabilities and samples. Samplers (`tractable.sampling`) use
only this surface (typed as `tractable.sampling.protocol.AutoregressiveSampleable`):

    model.scale(x_uint8) -> network input
    model.targets(x_uint8) -> likelihood target (model.from_targets inverts it)
    model(x_scaled, y) -> params [B, P, H, W]
    model.likelihood.sample(params, temperature, generator) -> [B, C, H, W] long
    model.channel_sequential -> bool (True: channels of a pixel are sampled one at a time)
    model.cached_network(batch, y) -> the family's incremental network, or None

A family with a fast sampler overrides `cached_network` to return its cached network, kept
in a module beside the family (e.g. `pixelcnn_pp_cached`); the "cached" sampler then uses
it, and every family without one is sampled naively.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from tractable.compression import DEFAULT_BATCH, DEFAULT_THREADS, compress_images
from tractable.errors import ShapeError
from tractable.models.base import TractableModel
from tractable.sampling import (
    CachedNetwork,
    Callback,
    make_prefix,
    raster_prefix_length,
    sample_with,
)


class AutoregressiveModel(TractableModel):
    """Base for raster-order autoregressive models; subclasses set `self.likelihood`."""

    likelihood: Any
    channel_sequential: bool = False
    default_sampler: ClassVar[str] = "cached"

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

    def as_seen(self, x: Tensor) -> Tensor:
        """The images through `targets` and back: the values the likelihood scores."""
        return self.from_targets(self.targets(x))

    def log_prob_pixels(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Per-pixel log-probabilities in nats, `[B, H, W]` (for NLL heatmaps); no dropout."""
        self.check_images(x)
        params = self._params_without_dropout(self.scale(x), y)
        # Likelihoods run in fp32 even under bf16 autocast; float64 models stay exact.
        if params.dtype != torch.float64:
            params = params.float()
        return self.likelihood.log_prob(params, self.targets(x))

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Exact log-likelihood in nats, `[B]`; deterministic in every mode (no dropout)."""
        return self.log_prob_pixels(x, y).sum(dim=(1, 2))

    def _params_without_dropout(self, x_scaled: Tensor, y: Tensor | None) -> Tensor:
        """The network's params with the model in eval mode for this one pass.

        Inference (`log_prob`, `bits_per_dim`, scoring, sampling) never applies dropout,
        whatever mode the module is in: a likelihood is a property of the model, not of a
        random mask. Only `loss`, what training minimizes, follows the module's mode.
        Gradients still flow, so a caller may differentiate `log_prob`.
        """
        was_training = self.training
        if not was_training:
            return self(x_scaled, y)
        self.train(False)
        try:
            return self(x_scaled, y)
        finally:
            self.train(True)

    def compress(self, x: Tensor, y: Tensor | None = None, batch: int = DEFAULT_BATCH,
                 threads: int | None = DEFAULT_THREADS) -> bytes:
        """Code uint8 images `[N, C, H, W]` (and, for a conditional model, their labels)
        losslessly at about this model's bits/dim; `tractable.decompress(data, model)`
        gives them back bit for bit (`tractable.compression`: the cached network walks
        every sub-pixel, the likelihood's `channel_probs` gives its exact distribution).
        `batch`: images coded together (the decoder follows it); `threads`: torch's
        intra-op threads while coding (None: the current setting)."""
        return compress_images(self, x, y, batch=batch, threads=threads)

    def cached_network(self, batch: int, y: Tensor | None) -> CachedNetwork | None:
        """This model as a cached network for `batch` images (see `tractable.sampling.
        cached`), or None: the family has no incremental form and samples naively."""
        return None

    def complete(
        self,
        x: Tensor,
        rows: int,
        cols: int = 0,
        n: int = 1,
        y: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        callback: Callback | None = None,
    ) -> Tensor:
        """Image completion (van den Oord et al., 2016, PixelRNN Fig. 1): keep each image's
        first `rows` rows and `cols` pixels of the next row (raster order), sample the rest.

        `x`: uint8 `[B, C, H, W]`; `y`: labels of those B images (`[B]` or `[B, K]`).
        Returns `n` completions per image, uint8 `[B·n, C, H, W]`, image-major (those of
        image b at rows b·n … b·n + n − 1). Kept pixels come back as the model sees them
        (unchanged; quantized to its levels for an N-level Gated PixelCNN). The sampler
        starts at the first unknown pixel and draws exactly as `sample` does.
        """
        self.check_images(x)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ShapeError(f"completions per image must be a positive integer, got {n!r}")
        pixels = raster_prefix_length(self.config.image_shape, rows, cols)
        if y is not None:
            if not isinstance(y, Tensor) or y.dim() == 0 or y.shape[0] != x.shape[0]:
                raise ShapeError(f"{x.shape[0]} images need {x.shape[0]} labels, got "
                                 f"{list(y.shape) if isinstance(y, Tensor) else type(y)}")
            y = y.repeat_interleave(n, dim=0)
        device = next(self.parameters()).device
        targets = self.targets(x.to(device)).repeat_interleave(n, dim=0)
        return sample_with(self, len(targets), sampler=sampler or self.default_sampler, y=y,
                           temperature=temperature, generator=generator, callback=callback,
                           prefix=make_prefix(targets, pixels))
