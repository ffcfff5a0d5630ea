"""Edge-bias padding for Glow's 3×3 convolutions (openai/glow `tfops.add_edge_padding`).

A "same" convolution pads its input with zeros, so at the image border it cannot tell a
padded zero from a real zero activation. openai/glow pads explicitly and appends one extra
input channel that is 1 on the padded border and 0 inside, then runs the convolution
without padding: the weights on that channel act as a learned bias that depends on how
far into the border each output's receptive field reaches. Every 3×3 convolution of the
reference code (the coupling networks' first and last convolutions, the split priors and
the learned top prior) does this; 1×1 convolutions need no padding and are left alone.

`conv_with_border` computes the same thing without building the padded tensor: a
convolution is linear in its input channels, so conv(pad(x) ⊕ border, W) =
conv(x, W_x, padding=1) + conv(border, W_border), and the second term does not depend on the
batch (one 1-channel convolution, broadcast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def border_mask(height: int, width: int, pad_h: int, pad_w: int, like: Tensor) -> Tensor:
    """`[1, 1, H + 2·pad_h, W + 2·pad_w]`: 1 on the padded border, 0 over the image."""
    mask = torch.ones(1, 1, height + 2 * pad_h, width + 2 * pad_w, dtype=like.dtype,
                      device=like.device)
    mask[:, :, pad_h:pad_h + height, pad_w:pad_w + width] = 0
    return mask


def pad_with_border_channel(x: Tensor, kernel_size: int) -> Tensor:
    """Zero-pad `x` [B, C, H, W] by (k-1)/2 on each side and append the border channel:
    `[B, C + 1, H + k - 1, W + k - 1]`, ready for an unpadded k×k convolution."""
    p = (kernel_size - 1) // 2
    b, _, h, w = x.shape
    padded = F.pad(x, (p, p, p, p))
    mask = border_mask(h, w, p, p, padded).expand(b, 1, -1, -1)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        mask = mask.contiguous(memory_format=torch.channels_last)
    return torch.cat([padded, mask], dim=1)


def conv_with_border(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """`conv` (k×k, no padding, C + 1 input channels, the last one for the border) applied
    to `pad_with_border_channel(x, k)`, computed without the padded copy of `x`."""
    k = conv.kernel_size[0]
    p = (k - 1) // 2
    weight = conv.weight
    out = F.conv2d(x, weight[:, :-1], conv.bias, padding=p)
    mask = border_mask(x.shape[2], x.shape[3], p, p, out)
    return out + F.conv2d(mask, weight[:, -1:].to(out.dtype))
