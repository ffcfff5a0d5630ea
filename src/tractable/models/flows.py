"""What the flow families (Glow, TarFlow) share for exact round trips of `encode`/`decode`
(their input, `glow.quantize.continuous_input`, too).

* `in_float64`: run a function with the model's floating weights seen in float64 (a
  per-call cast through `torch.func.functional_call`; the module keeps its own tensors).
  A float32 inverse amplifies rounding past half a bin where a float64 one does not
  (`docs/glow.md`, "Exact round trips").
* `check_finite`: no pixel is made of NaN or inf; the `NonFiniteDecodeError` it raises
  carries a remedy that callers (the prior sampler) may retell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from tractable.errors import NonFiniteDecodeError

# The remedy for latents a user moved (edits, blends); a sampler tells its own.
MOVED_LATENTS_REMEDY = ("move the latents less far from encoded images: a smaller attribute "
                        "strength |alpha|, or a blend of more alike images")


def in_float64(model: nn.Module, ref: Tensor, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` with every floating parameter and buffer of `model` seen in float64.

    `ref` is one of the model's floating tensors (its dtype is the model's): a float64
    model runs `fn` as it is. Inside `fn` the model's tensors read as float64 copies, so a
    nested call runs directly too; the module's own tensors are untouched."""
    if ref.dtype == torch.float64:
        return fn(*args)
    tensors = {f"model.{k}": v.double() if v.is_floating_point() else v
               for k, v in [*model.named_parameters(), *model.named_buffers()]}
    return functional_call(_Call(model, fn), tensors, args)


class _Call(nn.Module):
    """Holds `model` as a submodule so `functional_call` can swap its tensors for `fn`."""

    def __init__(self, model: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def check_finite(x_c: Tensor, remedy: str = MOVED_LATENTS_REMEDY) -> None:
    """Raise `NonFiniteDecodeError` (with `remedy`) counting the images holding a NaN or
    ±inf: there is no bin to put them in."""
    bad = ~torch.isfinite(x_c).flatten(1).all(1)
    if bool(bad.any()):
        raise NonFiniteDecodeError(int(bad.sum()), len(x_c), remedy)
