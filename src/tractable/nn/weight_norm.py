"""Weight normalization with data-dependent initialization (Salimans & Kingma, 2016).

Every weight is reparametrized per output unit as `w = g · v / ‖v‖` (eq. 2 of the paper)
with a separate bias `b`. Before training, one batch of data is pushed through the network
in "init mode": each layer, in forward order, measures the mean `μ` and standard deviation
`σ` of its pre-activations `t = (v/‖v‖)·x` and sets `g = s/σ`, `b = −μ·s/σ` (§3), so its
outputs on that batch have zero mean and standard deviation `s` (the layer's `init_scale`:
1, or 0.1 for the last conv of a gated residual block as in openai/pixel-cnn). The next
layer then initializes from these normalized outputs.

Parameters are stored as `v`, `g` (one per output channel) and `b`, so the parameter count
equals the reference implementation's. Without data-dependent init, `g = init_scale` and
`b = 0`, which keeps activations roughly variance-preserving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Padding = tuple[int, int, int, int]  # F.pad's order: left, right, top, bottom
NO_PAD: Padding = (0, 0, 0, 0)
V_INIT_STD = 0.05  # openai/pixel-cnn draws v ~ N(0, 0.05²); only ‖v‖'s scale vs. lr depends on it


class WeightNormLayer(nn.Module):
    """A linear map `x ↦ (g · v/‖v‖) ⋆ x + b` whose `⋆` subclasses define in `linear_map`.

    `out_axis` is the axis of `v` indexing output channels (0 for convolutions, 1 for
    transposed convolutions); the norm is taken over every other axis. `input_pad`: the
    zero padding the map applies to its input first (subclasses set it), which `forward`
    skips for an input that arrives padded already (`padded=True`).
    """

    input_pad: Padding = NO_PAD

    def __init__(self, v_shape: tuple[int, ...], out_axis: int, init_scale: float = 1.0) -> None:
        super().__init__()
        out_channels = v_shape[out_axis]
        self.out_axis = out_axis
        self.init_scale = init_scale
        self.v = nn.Parameter(torch.randn(v_shape) * V_INIT_STD)
        self.g = nn.Parameter(torch.full((out_channels,), float(init_scale)))
        self.b = nn.Parameter(torch.zeros(out_channels))
        self._init_pending = False

    def linear_map(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """Apply `weight` (shaped like `v`) and `bias` to `x` (padded by `input_pad`).
        Subclasses implement."""
        raise NotImplementedError

    def direction(self) -> Tensor:
        """`v / ‖v‖`, normalized per output channel."""
        dims = [d for d in range(self.v.dim()) if d != self.out_axis]
        return self.v / torch.linalg.vector_norm(self.v, dim=dims, keepdim=True)

    def weight(self, gain: float = 1.0) -> Tensor:
        """The effective weight `g · v / ‖v‖` (times `gain`).

        Computed as `v · (g / ‖v‖)`: the division happens per output channel, so forward
        and backward make fewer passes over `v` than `g · (v / ‖v‖)` would.
        """
        shape = [1] * self.v.dim()
        shape[self.out_axis] = -1
        dims = [d for d in range(self.v.dim()) if d != self.out_axis]
        norm = torch.linalg.vector_norm(self.v, dim=dims)
        g = self.g * gain if gain != 1.0 else self.g
        return self.v * (g / norm).view(shape)

    def forward(self, x: Tensor, gain: float = 1.0, padded: bool = False) -> Tensor:
        """`(gain · g · v/‖v‖) ⋆ x + b`; `gain` folds a preceding scale (dropout's) in;
        `padded`: `x` already carries `input_pad` (e.g. from `concat_elu(x, pad)`)."""
        if any(self.input_pad) and not padded:
            x = F.pad(x, self.input_pad)
        if self._init_pending:
            return self._initialize_from(x * gain if gain != 1.0 else x)
        return self.linear_map(x, self.weight(gain), self.b)

    @torch.no_grad()
    def _initialize_from(self, x: Tensor) -> Tensor:
        """Set `g`, `b` so this batch's outputs have zero mean, std `init_scale` (§3)."""
        t = self.linear_map(x, self.direction()).float()
        mean = t.mean(dim=(0, 2, 3))
        std = torch.sqrt(t.var(dim=(0, 2, 3), unbiased=False) + 1e-10)
        scale = self.init_scale / std
        self.g.copy_(scale)
        self.b.copy_(-mean * scale)
        self._init_pending = False
        return ((t - mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)).to(x.dtype)


class NIN(WeightNormLayer):
    """Network-in-network layer: a weight-normed dense map over channels (a 1×1 conv)."""

    def __init__(self, in_channels: int, out_channels: int, init_scale: float = 1.0) -> None:
        super().__init__((out_channels, in_channels, 1, 1), out_axis=0, init_scale=init_scale)

    def linear_map(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
                memory_format=torch.channels_last):
            # NHWC: a 1×1 conv is a matmul over the channel axis of a contiguous view. On a
            # CPU thread PyTorch would run it through its slow conv path (measured 2.4× the
            # matmul's time, forward + backward, for 640 → 160 channels at 32×32).
            out = F.linear(x.permute(0, 2, 3, 1), weight.reshape(weight.shape[:2]), bias)
            return out.permute(0, 3, 1, 2)
        return F.conv2d(x, weight, bias)


def initialize_from_data(module: nn.Module, run_forward: Callable[[], Any]) -> None:
    """Data-dependent init of every `WeightNormLayer` in `module` with one forward pass.

    `run_forward` runs `module` on the init batch; each layer initializes itself when the
    pass reaches it, in forward order. Raises if some layer was never reached (it would
    silently keep its default init otherwise).
    """
    layers = [m for m in module.modules() if isinstance(m, WeightNormLayer)]
    for layer in layers:
        layer._init_pending = True
    try:
        with torch.no_grad():
            run_forward()
        missed = [name for name, m in module.named_modules() if getattr(m, "_init_pending", False)]
        if missed:
            raise RuntimeError(f"data-dependent init never reached layers {missed}")
    finally:
        for layer in layers:
            layer._init_pending = False
