"""Polyak averaging: an exponential moving average of the weights, used for eval and sampling.

PixelCNN++ (Salimans et al., 2017) and Glow evaluate with Polyak-averaged weights (decay
0.9995 in the PixelCNN++ code). Like TensorFlow's `ExponentialMovingAverage(num_updates=t)`
the decay is capped at (1 + t) / (10 + t), so early in training (and in short runs) the
average follows the weights instead of remembering the random initialization.

openai's own training scripts (pixel-cnn `train.py`, glow `optim.polyak`) build the average
without `num_updates`, so their decay is constant from the first step: `warmup=False`.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from tractable.models.base import TractableModel


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """The decay used for the update after optimizer step `step` (0-based)."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class EMA:
    """A frozen copy of `model` whose parameters track an EMA of `model`'s parameters."""

    def __init__(self, model: TractableModel, decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.model: TractableModel = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: TractableModel, step: int, ok: Tensor | None = None) -> None:
        """ema ← d·ema + (1 − d)·θ for parameters; buffers (e.g. init flags) are copied.

        `ok` (a 0-dim bool tensor): update only where it is true, decided on its device
        (no host read); the average is then left exactly as it was, even if θ holds NaN.
        """
        d = ema_decay_at(step, self.decay, self.warmup)
        ema_p: list[Tensor] = list(self.model.parameters())
        src_p: list[Tensor] = [p.detach() for p in model.parameters()]
        if ok is None:
            torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
        else:
            # the same lerp as above into new tensors, then a select: a weight of 0 would
            # not keep the average when θ is non-finite (0·NaN = NaN)
            for e, new in zip(ema_p, torch._foreach_lerp(ema_p, src_p, 1.0 - d), strict=True):
                torch.where(ok, new, e, out=e)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    @torch.no_grad()
    def copy_from(self, model: TractableModel) -> None:
        """Reset the average to `model`'s current weights (after data-dependent init)."""
        self.model.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)
