"""Samplers by name, one signature, one argument check.

Every sampler is a function

    sampler(model, n, *, y, temperature, generator, callback) -> uint8 [n, C, H, W]

registered with `register_sampler(name, needs=Protocol, help=...)`; `callback`, if not
None, receives a `Progress(step, total, unit)` as the draw advances
(`tractable.sampling.progress`). `needs` is the typed
surface it draws through (`tractable.sampling.protocol`); a model that lacks it is refused
with a clear error. A sampler registered with `takes_prefix=True` also takes `prefix=`,
known leading pixels to keep (image completion, `tractable.sampling.prefix`); asking
another sampler for one is an error. Other keyword options a sampler declares (TarFlow's
guidance, say) pass through unchanged. Registration wraps the function so that a call by
name (`sample_with`) or directly (`sample_naive(model, ...)`) both go through
`check_sample_args` and run the model in eval mode (dropout off), restoring its mode
afterwards. A new sampler (a CUDA-graph one, say) is one decorated function; the command
line's `--sampler` choices and help come from `sampler_names()` / `sampler_help()`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tractable.checks import check_sample_count, check_temperature
from tractable.errors import ShapeError, TractableError
from tractable.nn.conditioning import class_weights
from tractable.sampling.prefix import Prefix, check_prefix
from tractable.sampling.progress import Callback
from tractable.sampling.protocol import SampleableModel

SamplerFn = Callable[..., Tensor]  # (model, n, *, y, temperature, generator, callback)


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its checked entry point and what it needs of a model."""

    name: str
    draw: SamplerFn  # the checked function (what `register_sampler` returns)
    needs: type
    help: str
    zero_temperature: bool  # True: temperature 0 is a defined, deterministic limit
    takes_prefix: bool = False  # True: takes `prefix=` (completion of known leading pixels)


_SAMPLERS: dict[str, SamplerSpec] = {}


def register_sampler(name: str, *, needs: type, help: str, zero_temperature: bool = False,
                     takes_prefix: bool = False) -> Callable[[SamplerFn], SamplerFn]:
    """Decorator: register `fn` under `name`; returns the checked, eval-mode version."""

    def wrap(fn: SamplerFn) -> SamplerFn:
        @functools.wraps(fn)
        def checked(model: SampleableModel, n: int, *, y: Tensor | None = None,
                    temperature: float = 1.0, generator: torch.Generator | None = None,
                    callback: Callback | None = None, prefix: Prefix | None = None,
                    **options: Any) -> Tensor:
            if not isinstance(model, needs):
                raise TractableError(
                    f"the {name!r} sampler draws from models with the {needs.__name__} "
                    f"surface; {type(model).__name__} has none (samplers: "
                    f"{', '.join(samplers_for(model)) or 'none'})")
            y, temperature = check_sample_args(model, n, y, temperature, generator,
                                               allow_zero_temperature=zero_temperature)
            extra = _prefix_argument(name, takes_prefix, model, n, prefix)
            was_training = model.training
            model.train(False)
            try:
                return fn(model, n, y=y, temperature=temperature, generator=generator,
                          callback=callback, **extra, **options)
            finally:
                model.train(was_training)

        if name in _SAMPLERS:
            raise TractableError(f"a sampler named {name!r} is already registered")
        _SAMPLERS[name] = SamplerSpec(name, checked, needs, help, zero_temperature,
                                      takes_prefix)
        return checked

    return wrap


def _prefix_argument(name: str, supported: bool, model: SampleableModel, n: int,
                     prefix: Prefix | None) -> dict[str, Prefix]:
    """`{"prefix": checked prefix}` for a sampler that takes one, `{}` when none is asked
    (so samplers without completion keep the plain signature)."""
    if prefix is None:
        return {}
    if not supported:
        able = [s.name for s in _SAMPLERS.values() if s.takes_prefix]
        raise TractableError(f"the {name!r} sampler cannot keep known pixels (completion "
                             f"needs one of {able})")
    return {"prefix": check_prefix(prefix, n, tuple(model.config.image_shape), name)}


def check_sample_args(model: SampleableModel, n: int, y: Tensor | None, temperature: float,
                      generator: torch.Generator | None,
                      allow_zero_temperature: bool = False) -> tuple[Tensor | None, float]:
    """The one argument check of every sampler; returns `(y on the model's device, T)`.

    `n` a positive int; `temperature` finite and > 0 (>= 0 where the sampler allows it);
    `y`, when given, class indices `[n]` or class weights `[n, K]` fitting the model's
    classes; `generator` on the model's device type.
    """
    n = check_sample_count(n)
    t = check_temperature(temperature, allow_zero=allow_zero_temperature)
    device = next(model.parameters()).device
    if generator is not None and generator.device.type != device.type:
        raise ShapeError(
            f"the generator is on {generator.device} but the model is on {device}; "
            f"create it with torch.Generator(device={str(device)!r})")
    if y is None:  # a conditional model's own forward asks for it (some ignore classes)
        return None, t
    if not isinstance(y, Tensor):
        raise ShapeError(f"y must be a tensor of class indices or weights, got "
                         f"{type(y).__name__}")
    class_weights(y, model.config.num_classes, n)  # raises ShapeError naming the problem
    return y.to(device), t


def get_sampler(name: str) -> SamplerSpec:
    """The sampler registered as `name`, or a `TractableError` listing the known ones."""
    if name not in _SAMPLERS:
        raise TractableError(f"unknown sampler {name!r}; choose one of {sampler_names()}")
    return _SAMPLERS[name]


def sampler_names() -> list[str]:
    """Registered sampler names, in registration order."""
    return list(_SAMPLERS)


def samplers_for(model: object) -> list[str]:
    """The names of the samplers whose surface `model` has."""
    return [s.name for s in _SAMPLERS.values() if isinstance(model, s.needs)]


def sampler_help() -> str:
    """One line per sampler, for command-line help."""
    return "; ".join(f"{s.name}: {s.help}" for s in _SAMPLERS.values())


def sample_with(model: SampleableModel, n: int, *, sampler: str, y: Tensor | None = None,
                temperature: float = 1.0, generator: torch.Generator | None = None,
                callback: Callback | None = None, prefix: Prefix | None = None) -> Tensor:
    """Draw `n` images `uint8 [n, C, H, W]` from `model` with the sampler named `sampler`
    (keeping `prefix`'s known pixels, if given)."""
    return get_sampler(sampler).draw(model, n, y=y, temperature=temperature,
                                     generator=generator, callback=callback, prefix=prefix)
