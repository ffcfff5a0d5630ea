"""Samplers, registered by name; they see models only through `tractable.sampling.protocol`.

This package sits *below* the model families (it imports none of them): a family's
`sample` method calls `sample_with(model, n, sampler=NAME, ...)`, and a family with a fast
autoregressive form builds its cached network from `tractable.sampling.planes`.

* "cached" (the default of the autoregressive families): the fast sampler of Ramachandran
  et al. (2017), which computes every activation once, when it becomes final, from cached
  activations (`tractable.sampling.cached`; hundreds of times faster, `docs/sampling.md`).
  Families without a cached network (`model.cached_network(...)` is None) fall back to the
  naive sampler.
* "naive": one full forward pass per pixel (`tractable.sampling.naive`), the reference.
  Both give the same samples from the same generator (exactly in float64).
* "prior": latents drawn from a flow's prior and decoded (`tractable.sampling.prior`).
* "flow-cached" / "flow-naive": autoregressive flows (TarFlow) inverted patch by patch,
  with key/value caches or by recomputation (`tractable.sampling.flow`; its `sample_flow`
  adds denoising and guidance).

Every sampler has one signature, `(model, n, *, y, temperature, generator, progress)`
(the autoregressive ones also take `prefix=`, the known pixels of an image completion:
`tractable.sampling.prefix`),
passes the one argument check (`registry.check_sample_args`) and runs the model in eval
mode without gradients, restoring its mode afterwards. Autoregressive samplers consume
`generator` pixel by pixel (see `tractable.sampling.naive`), so a fixed generator gives
reproducible samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tractable.sampling import cached, flow, naive, prior  # noqa: F401  (registers the samplers)
from tractable.sampling.naive import sample_naive
from tractable.sampling.prefix import Prefix, make_prefix, raster_prefix_length
from tractable.sampling.protocol import (
    AutoregressiveFlowSampleable,
    AutoregressiveSampleable,
    CachedNetwork,
    LatentSampleable,
    SampleableModel,
)
from tractable.sampling.registry import (
    check_sample_args,
    get_sampler,
    register_sampler,
    sample_with,
    sampler_help,
    sampler_names,
    samplers_for,
)

__all__ = [
    "SAMPLERS", "AutoregressiveFlowSampleable", "AutoregressiveSampleable", "CachedNetwork",
    "LatentSampleable", "Prefix",
    "make_prefix", "raster_prefix_length",
    "SampleableModel", "check_sample_args", "get_sampler", "register_sampler",
    "sample_autoregressive", "sample_naive", "sample_with", "sampler_help", "sampler_names",
    "samplers_for",
]

SAMPLERS = tuple(sampler_names())  # the built-in samplers' names


def sample_autoregressive(
    model: AutoregressiveSampleable,
    n: int,
    y: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    sampler: str = "cached",
    progress: bool = False,
    prefix: Prefix | None = None,
) -> Tensor:
    """Draw `n` images `uint8 [n, C, H, W]` from an autoregressive model (`sample_with`).

    `y`: class indices `[n]` or class weights `[n, K]` for conditional models;
    `temperature` > 0 is passed to the model's likelihood (1.0 = the model itself);
    `prefix`: known leading pixels to keep (image completion).
    """
    return sample_with(model, n, sampler=sampler, y=y, temperature=temperature,
                       generator=generator, progress=progress, prefix=prefix)
