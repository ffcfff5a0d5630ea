"""What a model can do beyond the family contract, as runtime-checkable Protocols.

Code above the models floor asks `isinstance(model, Invertible)`, never which family a
model is, so a new family gets every tool its capabilities admit without being named:

* `Invertible`: an exact bijection between images and latents (a flow: Glow, Kingma &
  Dhariwal 2018 §3): `encode`, `decode`. Latent interpolation and attribute edits
  (`tractable.models.latents`, `tractable latent ...`, the app's Edit tab) need only this.
* `Completable`: keeps known leading pixels and draws the rest (PixelRNN Fig. 1):
  `complete`. `tractable complete` and the app's Complete tab need only this.
* `PixelScorable`: per-pixel conditional log-probabilities log p(x_i | x_<i) that sum to
  `log_prob`: `log_prob_pixels`. NLL heatmaps need only this.
* `Compressible`: lossless coding at the model's bits/dim (`tractable.compression`):
  `compress`; `tractable compress` / `decompress` need only this.

A family has a capability by having the methods (structural typing, no registration);
`families_with(capability)` names the registered ones, for messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from tractable.compression import DEFAULT_BATCH, DEFAULT_THREADS
from tractable.sampling import Callback


@runtime_checkable
class Invertible(Protocol):
    """Images <-> latents exactly: `decode(encode(x)) == x` for uint8 images.

    Latents are a list of tensors `[B, ...]` (one per level of a multi-scale flow; a list
    of one for a single-scale one). `encode(..., check=True)` raises `NumericalError` for
    images that would not come back exactly.
    """

    def encode(self, x: Tensor, y: Tensor | None = None, check: bool = True) -> list[Tensor]: ...
    def decode(self, latents: Sequence[Tensor], y: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class Completable(Protocol):
    """Image completion: `n` draws per image of everything after its first `rows` rows and
    `cols` pixels (raster order), the kept pixels unchanged; uint8 `[B·n, C, H, W]`."""

    def complete(self, x: Tensor, rows: int, cols: int = 0, n: int = 1,
                 y: Tensor | None = None, temperature: float = 1.0,
                 generator: torch.Generator | None = None, sampler: str | None = None,
                 callback: Callback | None = None) -> Tensor: ...


@runtime_checkable
class PixelScorable(Protocol):
    """Per-pixel log-probabilities in nats, `[B, H, W]`, summing to `log_prob`."""

    def log_prob_pixels(self, x: Tensor, y: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class Compressible(Protocol):
    """Lossless coding: `compress(x, y) -> bytes` that `tractable.decompress(data, model)`
    reads back bit for bit, at about the model's bits/dim."""

    def compress(self, x: Tensor, y: Tensor | None = None, batch: int = DEFAULT_BATCH,
                 threads: int | None = DEFAULT_THREADS) -> bytes: ...


def families_with(capability: type) -> list[str]:
    """The registered families whose models have `capability` (for error messages)."""
    from tractable.models.registry import known_families, model_class

    return [f for f in known_families() if issubclass(model_class(f), capability)]


KINDS: dict[type, str] = {Invertible: "an invertible model (a flow with exact encode/decode)",
                          Completable: "an autoregressive model that completes images in "
                          "raster order",
                          PixelScorable: "an autoregressive model with per-pixel "
                          "log-probabilities",
                          Compressible: "an autoregressive model with per-sub-pixel "
                          "distributions and a cached network"}


def missing(capability: type, what: str, family: str) -> str:
    """One message for a model without `capability`: what needs it and who has it."""
    able = ", ".join(families_with(capability)) or "none registered"
    return (f"{what} needs {KINDS.get(capability, capability.__name__)} "
            f"({capability.__name__}: {able}); this is a {family} model")
