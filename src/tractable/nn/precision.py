"""Output layers that stay in full precision under bf16/fp16 autocast.

A distribution's parameters need more precision than bf16's 8-bit mantissa: a logistic
mean near 0.5 on the [−1, 1] pixel scale would be rounded in steps of 2⁻⁹ ≈ ¼ of a pixel
bin (2/255), and a categorical logit near 10 in steps of 1/16. The networks' last layer is
cheap (a 1×1 convolution), so it runs in float32 while the body keeps autocast's speed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def run_in_full_precision(layer: nn.Module, x: Tensor) -> Tensor:
    """`layer(x)` with autocast off and a half-precision `x` cast to float32."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return layer(x)
    with torch.autocast(device, enabled=False):
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return layer(x)
