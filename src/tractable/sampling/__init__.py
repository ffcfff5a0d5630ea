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

A family may bring its own sampler, registered when the family is imported: TarFlow's
"flow-cached" / "flow-naive" invert its blocks patch by patch, with key/value caches or by
recomputation (`tractable.sampling.flow`; its `sample_flow` adds denoising and guidance).

Every sampler has one signature, `(model, n, *, y, temperature, generator, callback)`
(`callback` hears a `Progress(step, total, unit)` as the draw advances:
`tractable.sampling.progress`; the autoregressive ones also take `prefix=`, the known
pixels of an image completion: `tractable.sampling.prefix`),
passes the one argument check (`registry.check_sample_args`) and runs the model in eval
mode without gradients, restoring its mode afterwards. Autoregressive samplers consume
`generator` pixel by pixel (see `tractable.sampling.naive`), so a fixed generator gives
reproducible samples.
"""

from __future__ import annotations

from tractable.sampling import cached, naive, prior  # noqa: F401  (registers the samplers)
from tractable.sampling.naive import sample_naive
from tractable.sampling.prefix import Prefix, make_prefix, raster_prefix_length
from tractable.sampling.progress import Callback, Progress
from tractable.sampling.protocol import (
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
    "AutoregressiveSampleable", "CachedNetwork",
    "Callback", "LatentSampleable", "Prefix", "Progress", "make_prefix", "raster_prefix_length",
    "SampleableModel", "check_sample_args", "get_sampler", "register_sampler",
    "sample_naive", "sample_with", "sampler_help", "sampler_names", "samplers_for",
]


def __getattr__(name: str) -> object:
    """`SAMPLERS`, the registered samplers' names as they are now (kept for scripts written
    against 0.1.0, which exported it; `sampler_names()` is the same list)."""
    if name == "SAMPLERS":
        return tuple(sampler_names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
