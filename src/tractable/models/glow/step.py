"""One step of flow (Glow §3, Figure 2a): ActNorm → invertible 1×1 conv → coupling."""

from __future__ import annotations

from torch import Tensor, nn

from tractable.models.glow.actnorm import ActNorm
from tractable.models.glow.coupling import Coupling
from tractable.models.glow.invconv import InvConv2d, InvConv2dLU


class FlowStep(nn.Module):
    """x -> y with log|det dy/dx| summed over the three layers."""

    def __init__(self, channels: int, width: int, affine: bool = True, lu: bool = True,
                 edge_bias: bool = False, init_std: float | None = None,
                 scale_floor: float = 0.0) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv2dLU(channels) if lu else InvConv2d(channels)
        self.coupling = Coupling(channels, width, affine, edge_bias, init_std, scale_floor)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, ld_norm = self.actnorm(x)
        x, ld_conv = self.invconv(x)
        x, ld_coupling = self.coupling(x)
        return x, ld_norm + ld_conv + ld_coupling

    def inverse(self, y: Tensor) -> Tensor:
        return self.actnorm.inverse(self.invconv.inverse(self.coupling.inverse(y)))
