"""Activation normalization (Glow §3.1, Table 1 row 1).

A per-channel affine map y = (x + b) ⊙ exp(logs) whose parameters are set from the first
batch so that the output has zero mean and unit variance per channel ("data-dependent
initialization"), then trained as ordinary parameters. log|det J| = H·W·Σ logs.

The `initialized` buffer records that the data-dependent initialization happened; it is part
of the state dict, so a saved and reloaded model is not initialized a second time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-6  # added to the batch std, as in openai/glow
# The log-scale is stored divided by this (openai/glow `logscale_factor`): the optimizer's
# steps on it are 3× larger, so the scales can reach the sharp densities of e.g. MNIST's
# constant background in far fewer steps.
LOGSCALE_FACTOR = 3.0


class ActNorm(nn.Module):
    """y = (x + bias) * exp(3 · logs), per channel of an NCHW tensor."""

    initialized: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        self.init_pending = False  # set by the model to initialize on the next forward

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias = -mean and log-scale = -log(std + EPS) of `x` per channel."""
        x = x.detach().to(self.logs.dtype)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std + EPS) / LOGSCALE_FACTOR)
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return y and log|det dy/dx| per example, `[B]`."""
        if self.init_pending:
            self.initialize(x)
            self.init_pending = False
        logs = self.logs * LOGSCALE_FACTOR
        y = (x + self.bias) * torch.exp(logs)
        h, w = x.shape[2:]
        logdet = (logs.sum() * (h * w)).expand(x.shape[0])
        return y, logdet

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.logs * LOGSCALE_FACTOR) - self.bias
