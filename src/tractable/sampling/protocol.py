"""What samplers see of a model: typed Protocols, so `tractable.sampling` imports no model.

Samplers sit *below* the model families: `model.sample(...)` calls into the sampler
registry, and a family's cached network (beside the family, e.g.
`tractable.models.pixelcnn_pp_cached`) builds on `tractable.sampling.planes`. The samplers
themselves only ever touch the surfaces declared here; any object that has them can be
sampled, which is also how the tests drive a sampler with a hand-made model.

* `SampleableModel`: what the shared argument check and the eval-mode switch need (every
  family);
* `AutoregressiveSampleable`: raster-order models drawn pixel by pixel (`naive`, `cached`);
* `CachedNetwork`: the incremental form of an autoregressive network, which a family
  returns from `cached_network(batch, y)` (Ramachandran et al., 2017);
* `LatentSampleable`: models drawn by decoding latents from their prior (Glow).

A sampler a family brings along declares what it needs beside itself (TarFlow's
`AutoregressiveFlowSampleable` in `tractable.sampling.flow`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


class ImageConfig(Protocol):
    """The config fields every sampler reads."""

    @property
    def image_shape(self) -> tuple[int, int, int]: ...  # (C, H, W)
    @property
    def num_classes(self) -> int: ...  # 0 = unconditional


@runtime_checkable
class SampleableModel(Protocol):
    """Any model: its images' shape, its device (from its parameters) and its mode."""

    @property
    def family(self) -> str: ...
    @property
    def config(self) -> ImageConfig: ...
    @property
    def training(self) -> bool: ...
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...
    def train(self, mode: bool = True) -> nn.Module: ...


class PixelLikelihood(Protocol):
    """Turns the network's params of some pixels into a draw of those pixels."""

    def sample(self, params: Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor: ...


class CachedNetwork(Protocol):
    """A network evaluated incrementally in raster order, from cached activations.

        start_row(r)              advance everything that becomes final when row r begins
        params_at(r, c) -> [P, B] the likelihood params of pixel (r, c)
        observe(r, c, x)          the (partly) sampled pixel, scaled like the input, [B, C]

    `reads_current_pixel`: True if `params_at` reads the current pixel with zero weight
    (masked kernels), so it must hold the same finite values as the naive sampler's input.
    """

    reads_current_pixel: bool

    def start_row(self, r: int) -> None: ...
    def params_at(self, r: int, c: int) -> Tensor: ...
    def observe(self, r: int, c: int, pixel: Tensor) -> None: ...


@runtime_checkable
class AutoregressiveSampleable(SampleableModel, Protocol):
    """A raster-order model `params = model(model.scale(x), y)` and its likelihood.

    Params at pixel i may depend only on pixels before i; with `channel_sequential`,
    channel k of a pixel also on channels < k of that pixel (sampled one at a time).
    """

    @property
    def likelihood(self) -> PixelLikelihood: ...
    @property
    def channel_sequential(self) -> bool: ...
    def __call__(self, x_scaled: Tensor, y: Tensor | None = None) -> Tensor: ...
    def scale(self, x: Tensor) -> Tensor: ...
    def from_targets(self, t: Tensor) -> Tensor: ...
    def cached_network(self, batch: int, y: Tensor | None) -> CachedNetwork | None: ...


@runtime_checkable
class LatentSampleable(SampleableModel, Protocol):
    """A model drawn by decoding latents from its prior, scaled by the temperature."""

    def prior_latents(self, n: int, y: Tensor | None, temperature: float,
                      generator: torch.Generator | None) -> list[Tensor]: ...
    def decode(self, latents: Sequence[Tensor], y: Tensor | None = None) -> Tensor: ...
