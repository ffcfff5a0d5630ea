"""Focal loss on per-pixel log-likelihoods (Lin et al., 2017, "Focal Loss for Dense Object
Detection", eq. 4), applied to density modelling.

For each likelihood term with probability p of the observed value (one whole pixel for the
logistic mixture, one sub-pixel for a per-channel categorical), the loss is

    FL(p) = (1 − p)^γ · (−log p),

which down-weights terms the model already predicts well. γ = 0 is exactly the negative
log-likelihood. It must be applied per term: exponentiating a whole image's (or batch's)
log-probability gives p ≈ 0 and makes the factor ≈ 1, a no-op.
"""

from __future__ import annotations

import torch
from torch import Tensor


def focal_nll(log_p: Tensor, gamma: float) -> Tensor:
    """Elementwise `(1 − p)^γ · (−log p)` from `log p`; returns `−log p` itself for γ = 0."""
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    if gamma == 0:
        return -log_p
    # 1 − p = −expm1(log p) without cancellation; the floor keeps the factor's gradient
    # finite when p rounds to 1 (γ < 1 would give an infinite slope there).
    one_minus_p = (-torch.expm1(log_p)).clamp(min=torch.finfo(log_p.dtype).tiny)
    return one_minus_p.pow(gamma) * -log_p
