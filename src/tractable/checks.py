"""Argument checks shared by every floor: one rule each, one error type, one message.

The sampler registry (`tractable.sampling.registry`) and the likelihoods' own `sample`
methods both validate `temperature` here, so a value is accepted or refused the same way
whichever entry point it reaches first.
"""

from __future__ import annotations

import math

from tractable.errors import ShapeError


def check_temperature(temperature: object, allow_zero: bool = False) -> float:
    """`temperature` as a float: finite and > 0 (>= 0 with `allow_zero`), else `ShapeError`.

    The one temperature rule: every sampler checks here (so the command line's
    `--temperature` and the app's slider reach it through `model.sample`), and the
    likelihoods' own `sample` methods too; the app's slider range is a choice of the page,
    not a second rule. Zero is the deterministic limit, defined only where a
    sampler says so (a flow decodes its prior's mean); a likelihood's per-pixel draw has
    no T -> 0 limit it could return.
    """
    ok = (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
          and math.isfinite(temperature)
          and (temperature >= 0 if allow_zero else temperature > 0))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ShapeError(f"temperature must be a finite number {bound}, got {temperature!r}")
    return float(temperature)  # type: ignore[arg-type]


def check_sample_count(n: object) -> int:
    """`n` as an int >= 1 (not a bool, not a float), else `ShapeError`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ShapeError(f"number of samples must be a positive integer, got {n!r}")
    return n
