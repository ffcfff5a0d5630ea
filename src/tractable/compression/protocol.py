"""What the coder needs of a model: the sampler's surface plus exact per-sub-pixel
distributions, typed as Protocols so `tractable.compression` imports no model family.

A family becomes compressible by meeting `CodableModel`: an autoregressive model with a
cached network (`tractable.sampling.protocol`), a likelihood with `channel_probs`, and
the `targets` / `from_targets` maps between uint8 pixels and the likelihood's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from tractable.sampling.protocol import AutoregressiveSampleable, PixelLikelihood


class CodableLikelihood(PixelLikelihood, Protocol):
    """The exact discrete distribution of one sub-pixel given what precedes it."""

    def channel_probs(self, params: Tensor, channel: int, earlier: Tensor) -> Tensor:
        """`params` `[B, P]` of one pixel, its channels < `channel` `[B, channel]` ->
        P(x_channel = k) for every value k, `[B, K]` float64."""
        ...


@runtime_checkable
class CodableModel(AutoregressiveSampleable, Protocol):
    """An autoregressive model the range coder can drive sub-pixel by sub-pixel."""

    @property
    def likelihood(self) -> CodableLikelihood: ...
    def targets(self, x: Tensor) -> Tensor: ...
    def check_images(self, x: Tensor) -> None: ...
    def state_dict(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]: ...
