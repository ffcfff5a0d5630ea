"""How a draw reports its progress: one callback argument for every sampler.

`model.sample(..., callback=fn)` calls `fn(Progress(step, total, unit))` as the sampler
advances: after each image row for the autoregressive samplers (`unit="row"`), after each
inverted block for the autoregressive flow samplers (`unit="block"`), once after the decode
for a flow's prior sampler (`unit="decode"`). The command line's progress bar
and the app's progress indicator are such callbacks (k-diffusion's sampler `callback`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """`step` of `total` steps done (1 ≤ step ≤ total), each one `unit` of the draw."""

    step: int
    total: int
    unit: str = "row"


Callback = Callable[[Progress], None]


def report(callback: Callback | None, step: int, total: int, unit: str = "row") -> None:
    """Tell `callback` (if any) that `step` of `total` steps are done."""
    if callback is not None:
        callback(Progress(step, total, unit))
