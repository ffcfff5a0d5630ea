"""Autoregressive samplers. They see models only through `AutoregressiveModel`'s surface.

`sample_autoregressive` picks a sampler by name:

* "cached" (the default): the fast sampler of Ramachandran et al. (2017), which computes
  every activation once, when it becomes final, from cached activations
  (`tractable.sampling.cached`; hundreds of times faster, `docs/sampling.md`). Model
  families without a cached form (see `cached_network`) fall back to the naive sampler.
* "naive": one full forward pass per pixel (`tractable.sampling.naive`), the reference.

Both give the same samples from the same generator (exactly in float64).

Samplers run the model in eval mode without gradients and consume `generator` pixel by
pixel (see `tractable.sampling.naive`), so a fixed generator gives reproducible samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from tractable.errors import TractableError
from tractable.sampling.naive import sample_naive

SAMPLERS = ("naive", "cached")

__all__ = ["SAMPLERS", "sample_autoregressive", "sample_naive"]


def sample_autoregressive(
    model: Any,
    n: int,
    y: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    sampler: str = "cached",
    progress: bool = False,
) -> Tensor:
    """Draw `n` images `uint8 [n, C, H, W]` from an autoregressive model.

    `y`: class indices `[n]` or class weights `[n, K]` for conditional models;
    `temperature` > 0 is passed to the model's likelihood (1.0 = the model itself).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TractableError(f"number of samples must be a positive integer, got {n!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise TractableError(f"temperature must be a finite number > 0, got {temperature!r}")
    device = next(model.parameters()).device
    if generator is not None and generator.device.type != device.type:
        raise TractableError(
            f"the generator is on {generator.device} but the model is on {device}; "
            f"create it with torch.Generator(device={str(device)!r})"
        )
    if y is not None:
        y = y.to(device)
    draw = _sampler(sampler)
    return draw(model, n, y=y, temperature=float(temperature), generator=generator,
                progress=progress)


def _sampler(name: str) -> Callable[..., Tensor]:
    if name not in SAMPLERS:
        raise TractableError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")
    if name == "cached":
        from tractable.sampling.cached import sample_cached  # imports the model families

        return sample_cached
    return sample_naive
