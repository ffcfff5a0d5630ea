"""The samples a run draws: reproducible from the run's seed, one class per column for a
conditional model. The pictures themselves (grids, their GIF, the bits/dim curve) are
`tractable.viz`'s, drawn at each evaluation by `training.callbacks`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tractable.models.base import TractableModel

__all__ = ["cycling_labels", "draw_samples"]


@torch.no_grad()
def draw_samples(model: TractableModel, n: int, *, seed: int = 0, **options: Any) -> Tensor:
    """`n` samples as `uint8 [n, C, H, W]` on the CPU, reproducible from `seed`: `model.
    sample(n, generator=<seeded on the model's device>, **options)` (`y`, `temperature`,
    `sampler`, `callback`)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    return model.sample(n, generator=g, **options).cpu()


def cycling_labels(model: TractableModel, n: int) -> Tensor | None:
    """Classes 0, 1, ..., K−1, 0, ... for a conditional model; None otherwise."""
    k = model.config.num_classes
    if not k:
        return None
    return torch.arange(n, device=next(model.parameters()).device) % k
