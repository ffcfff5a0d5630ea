"""CoordConv input channels (Liu et al., 2018, "An intriguing failing of convolutional
neural networks and the CoordConv solution", §3).

Two extra input channels hold each position's row and column, scaled linearly to [−1, 1].
They do not depend on pixel values, so concatenating them to an autoregressive model's
input keeps it causal.
"""

from __future__ import annotations

import torch
from torch import Tensor


def coordinate_channels(x: Tensor) -> Tensor:
    """`[B, 2, H, W]` row and column coordinates in [−1, 1] for a batch shaped like `x`."""
    b, _, h, w = x.shape
    rows = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
    cols = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
    return grid.unsqueeze(0).expand(b, 2, h, w)


def add_coordinate_channels(x: Tensor) -> Tensor:
    """Concatenate `coordinate_channels(x)` after the channels of `x`."""
    return torch.cat([x, coordinate_channels(x)], dim=1)
