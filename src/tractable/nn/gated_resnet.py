"""Gated residual block of PixelCNN++ (Salimans et al., 2017, §2.4 and Fig. 2).

    c1 = conv(concat_elu(x)) [+ nin(concat_elu(a))]     a: skip input (other stream / up pass)
    c2 = conv(dropout(concat_elu(c1))) [+ h·W]          h: class weights, W: [K, 2F], no bias
    out = x + c2[:F] · sigmoid(c2[F:])

Dropout is element-wise (`tractable.nn.dropout`); its 1/(1 − p) scale is folded into the
second convolution's weight, which is exact in expectation and, for p = 0.5 (a scale of 2),
bit for bit the same as scaling the activations.

`conv` is a shifted convolution (`tractable.nn.shifted`), so the block keeps its stream's
causal structure; the skip input is a 1×1 map of activations at the same position, which
must already be causal for that stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tractable.nn.dropout import ElementwiseDropout
from tractable.nn.weight_norm import NIN, NO_PAD, Padding, WeightNormLayer

COND_INIT_STD = 0.05  # openai/pixel-cnn `conditional_weights`: N(0, 0.05²), not weight-normed


def concat_elu(x: Tensor, pad: Padding = NO_PAD) -> Tensor:
    """ELU of `x` and of `−x`, concatenated over channels (doubles the channel count).

    The same values as `F.elu(torch.cat([x, -x], 1))` in fewer passes over memory: `[x, −x]`
    is written straight into the output, which ELU then overwrites in place; the gradient
    is one ELU backward over the output and one subtraction. With `pad` (F.pad's order:
    left, right, top, bottom) the output is that of `F.pad(concat_elu(x), pad)`, written
    into the padded buffer directly, so a shifted convolution can take it as it is
    (`padded=True`) instead of padding a copy, and its gradient needs no crop of a copy.
    """
    if x.dim() != 4 or torch.compiler.is_compiling():
        # Under torch.compile the plain form fuses into one kernel each way; the hand-written
        # eager version writes into slices (`out=`), which would break the graph.
        out = F.elu(torch.cat([x, -x], dim=1))
        return F.pad(out, pad) if any(pad) else out
    return cast(Tensor, _ConcatELU.apply(x, pad))


class _ConcatELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, pad: Padding) -> Tensor:
        b, c, h, w = x.shape
        left, right, top, bottom = pad
        layout = (torch.channels_last
                  if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
                  else torch.contiguous_format)
        size = (b, 2 * c, h + top + bottom, w + left + right)
        out = torch.empty(size, dtype=x.dtype, device=x.device, memory_format=layout)
        if any(pad):
            out.zero_()
        inner = out[:, :, top:top + h, left:left + w]
        inner[:, :c].copy_(x)
        torch.neg(x, out=inner[:, c:])
        F.elu_(out)  # elu(0) = 0: the border stays zero
        ctx.save_for_backward(out)
        ctx.window = (top, h, left, w)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (out,) = ctx.saved_tensors
        top, h, left, w = ctx.window
        c = out.shape[1] // 2
        g = torch.ops.aten.elu_backward(grad[:, :, top:top + h, left:left + w], 1.0, 1.0, 1.0,
                                        True, out[:, :, top:top + h, left:left + w])
        return g[:, :c] - g[:, c:], None


class GatedResNet(nn.Module):
    """One gated residual block with `channels` filters, in one stream.

    `conv_class` is `DownShiftedConv2d` (down stream) or `DownRightShiftedConv2d`
    (down-right stream); `skip_channels` is the channel count of the skip input `a`
    (0: none); `num_classes` > 0 adds the conditioning projection of §2.4.
    """

    def __init__(
        self,
        channels: int,
        conv_class: Callable[..., WeightNormLayer],
        skip_channels: int = 0,
        num_classes: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv_in = conv_class(2 * channels, channels)
        self.skip = NIN(2 * skip_channels, channels) if skip_channels else None
        self.dropout = ElementwiseDropout(dropout)
        self.conv_out = conv_class(2 * channels, 2 * channels, init_scale=0.1)
        self.cond: nn.Linear | None = None
        if num_classes:
            self.cond = nn.Linear(num_classes, 2 * channels, bias=False)
            nn.init.normal_(self.cond.weight, std=COND_INIT_STD)

    def forward(self, x: Tensor, a: Tensor | None = None, h: Tensor | None = None) -> Tensor:
        c1 = self.conv_in(concat_elu(x, self.conv_in.input_pad), padded=True)
        if self.skip is not None:
            if a is None:
                raise ValueError("this gated block has a skip connection: pass `a`")
            c1 = c1 + self.skip(concat_elu(a))
        c2 = self.conv_out(self.dropout.drop(concat_elu(c1, self.conv_out.input_pad)),
                           gain=self.dropout.gain, padded=True)
        if self.cond is not None:
            if h is None:
                raise ValueError("this gated block is class-conditional: pass `h`")
            c2 = c2 + self.cond(h.to(c2.dtype))[:, :, None, None]
        value, gate = c2.chunk(2, dim=1)
        return x + value * torch.sigmoid(gate)
