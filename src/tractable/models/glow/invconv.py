"""Invertible 1×1 convolution (Glow §3.2, Table 1 row 2), plain and LU-decomposed.

A learned channel mixing y = W x at every pixel, W ∈ R^{c×c} initialized as a random rotation.
log|det J| = H·W·log|det W|.

- `InvConv2d` (plain): log|det W| and W⁻¹ are computed in float64, as openai/glow does; in
  float32 they lose digits once W drifts from orthogonal.
- `InvConv2dLU` (Glow §3.2, "LU decomposition"): W = P·L·(U + diag(s)) with P a fixed
  permutation, L unit lower-triangular, U strictly upper-triangular, s = sign·exp(log_s);
  log|det W| = Σ log_s, exact and cheap in any precision.

The mixing itself runs outside autocast, in the parameters' precision, so the flow's main
stream stays float32 (or float64) under bf16 autocast and stays invertible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def random_rotation(channels: int) -> Tensor:
    """A random orthogonal matrix (QR of a Gaussian one), the paper's initialization."""
    q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
    return q.float()


def _mix(x: Tensor, weight: Tensor) -> Tensor:
    with torch.autocast(device_type=x.device.type, enabled=False):
        w = weight.to(x.dtype)
        return F.conv2d(x, w.view(*w.shape, 1, 1))


class InvConv2d(nn.Module):
    """y = W x per pixel with a free matrix W; log-det and inverse in float64."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(random_rotation(channels))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, w = x.shape[2:]
        logabsdet = torch.linalg.slogdet(self.weight.double())[1]
        logdet = (logabsdet * (h * w)).to(self.weight.dtype).expand(x.shape[0])
        return _mix(x, self.weight), logdet

    def inverse(self, y: Tensor) -> Tensor:
        return _mix(y, torch.linalg.inv(self.weight.double()))


class InvConv2dLU(nn.Module):
    """y = W x per pixel with W = P L (U + diag(sign · exp(log_s)))."""

    perm: Tensor
    sign_s: Tensor
    lower_mask: Tensor
    eye: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        p, lower, upper = torch.linalg.lu(random_rotation(channels))
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))
        eye = torch.eye(channels)
        self.register_buffer("lower_mask", torch.tril(torch.ones_like(eye), -1), persistent=False)
        self.register_buffer("eye", eye, persistent=False)

    def weight(self) -> Tensor:
        with torch.autocast(device_type=self.log_s.device.type, enabled=False):
            lower = self.lower * self.lower_mask + self.eye
            diag = torch.diag(self.sign_s * torch.exp(self.log_s))
            upper = self.upper * self.lower_mask.T + diag
            return self.perm @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, w = x.shape[2:]
        logdet = (self.log_s.sum() * (h * w)).expand(x.shape[0])
        return _mix(x, self.weight()), logdet

    def inverse(self, y: Tensor) -> Tensor:
        return _mix(y, torch.linalg.inv(self.weight().double()))
