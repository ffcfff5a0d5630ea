"""Gated PixelCNN as a cached network (van den Oord et al., 2016, Fig. 2; Ramachandran et
al., 2017, §3).

The two stacks become final at different times (`tractable.models.gated_pixelcnn`):

* the vertical stack at row i reads image rows ≤ i, so every layer's row i becomes final
  once image row i is sampled: `start_row(i + 1)` advances all vertical layers by one row,
  and also evaluates the vertical→horizontal links `v_to_h(v_pre)` that the horizontal
  stack reads from the row above (plus biases and class terms) for the whole new row;
* the horizontal stack at (i, j) reads pixels (i, < j) and, through channel-group masks,
  the earlier channels of pixel (i, j) itself: `params_at` runs every layer at that one
  position (once per channel step for RGB, each pass seeing the channels drawn so far),
  one small matrix product per layer for its 1×(k//2+1) kernel.

Masked weights are taken once from `masked_weight()`, so channel masks act exactly as in
the full network; masked taps read the current pixel with zero weight, so the sampler
keeps it at the naive sampler's input values (`reads_current_pixel`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tractable.nn.conditioning import class_weights
from tractable.nn.masked import MaskedConv2d
from tractable.sampling.planes import Plane, column, conv_matrix, conv_row, tap_matrix

if TYPE_CHECKING:  # the model module imports this one: no import back at run time
    from tractable.models.gated_pixelcnn import GatedLayer, GatedPixelCNN

def _matrix(conv: nn.Conv2d) -> Tensor:
    """A (masked) 1×1 convolution as an `[out, in]` matrix."""
    w = conv.masked_weight() if isinstance(conv, MaskedConv2d) else conv.weight
    return w[:, :, 0, 0].contiguous()


def _bias(conv: nn.Conv2d) -> Tensor:
    assert conv.bias is not None, "Gated PixelCNN convolutions carry biases"
    return conv.bias


def _gate_rows(x: Tensor) -> Tensor:
    """tanh(first half) ⊙ σ(second half) over the channel axis of `[W, 2F, B]`."""
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class _Layer:
    """One GatedLayer's weights in matrix form, and its vertical/horizontal planes."""

    def __init__(self, layer: GatedLayer, w: Tensor | None, v_in: Plane, h_in: Plane) -> None:
        self.add_input = layer.add_input
        self.v_in, self.h_in = v_in, h_in
        v_weight = layer.v_conv.masked_weight()
        self.v_matrix, self.v_bias = conv_matrix(v_weight), column(_bias(layer.v_conv))
        self.v_height, self.v_width = v_weight.shape[2:]
        self.v_start = v_in.left - self.v_width // 2
        h_weight = layer.h_conv.masked_weight()
        self.h_taps = h_weight.shape[-1]
        self.h_matrix = tap_matrix(h_weight, 0)
        self.link = _matrix(layer.v_to_h)
        f2 = self.h_matrix.shape[0]
        self.f = f2 // 2
        batch = v_in.data.shape[-1]
        cond_h = _class_term(layer.cond_h, w, f2, batch, v_in.data)
        # Everything added to the horizontal pre-activation except h_conv's own taps.
        self.h_constant = column(_bias(layer.v_to_h) + _bias(layer.h_conv)) + cond_h
        self.cond_v = _class_term(layer.cond_v, w, f2, batch, v_in.data)
        self.skip, self.skip_bias = _matrix(layer.skip), column(_bias(layer.skip))
        if layer.residual is not None:
            self.residual = _matrix(layer.residual)
            self.residual_bias = column(_bias(layer.residual))
        self.row_bias = v_in.data.new_zeros(v_in.width, f2, batch)
        self.row_bias_at = list(self.row_bias.unbind(0))
        self.v_out: Plane | None = None
        self.h_out: Plane | None = None

    def vertical_row(self, i: int) -> None:
        """Row i of v_pre: the next layer's v input, and the link for image row i + 1."""
        v_pre = conv_row(self.v_in.rows(i, self.v_height), self.v_matrix, self.v_bias,
                         self.v_width, self.v_start, self.v_in.width)
        self.row_bias.copy_(torch.matmul(self.link, v_pre) + self.h_constant)
        if self.v_out is not None:
            self.v_out.begin_row(i)
            self.v_out.interior(i).copy_(_gate_rows(v_pre + self.cond_v))

    def first_row(self) -> None:
        """Image row 0: the link reads shift_down's zero row, leaving its bias."""
        self.row_bias.copy_(self.h_constant.expand_as(self.row_bias))

    def horizontal(self, i: int, j: int, skip: Tensor | None) -> Tensor:
        """Run the layer at (i, j); return the skip sum so far, `[F, B]`."""
        f = self.f
        pre = torch.addmm(self.row_bias_at[j], self.h_matrix, self.h_in.taps(i, j, self.h_taps))
        g = pre[:f].tanh_().mul_(pre[f:].sigmoid_())
        # The first layer starts the skip sum with all layers' skip biases (CachedGatedPixelCNN).
        skip = (torch.addmm(self.skip_bias, self.skip, g) if skip is None
                else skip.addmm_(self.skip, g))
        if self.h_out is not None:
            out = self.h_out.at(i, j)
            torch.addmm(self.residual_bias, self.residual, g, out=out)
            if self.add_input:
                out.add_(self.h_in.at(i, j))
        return skip


def _class_term(cond: nn.Linear | None, w: Tensor | None, channels: int, batch: int,
                like: Tensor) -> Tensor:
    """V·y for every image, `[2F, B]` (zero for unconditional layers)."""
    if cond is None or w is None:
        return like.new_zeros(channels, batch)
    return F.linear(w.to(cond.weight.dtype), cond.weight).t().contiguous()


class CachedGatedPixelCNN:
    """Per-row / per-pixel evaluation of a Gated PixelCNN (the cached network protocol
    of `tractable.sampling.protocol`)."""

    reads_current_pixel = True

    @torch.inference_mode()
    def __init__(self, model: GatedPixelCNN, batch: int, y: Tensor | None) -> None:
        cfg = model.config
        c, height, width = cfg.image_shape
        like = next(model.parameters()).detach()
        self.channels = c
        w = class_weights(y, cfg.num_classes, batch)
        if w is not None:
            w = w.to(like.device)

        # The whole input image; pixels not yet sampled are NaN, coordinates are constant.
        k0 = cfg.first_kernel_size // 2
        const = model.network_input(like.new_zeros(1, c, height, width))[0, c:]
        self.x = Plane(width, c + const.shape[0], batch, like, depth=height + k0,
                       pad_left=k0, pad_right=k0, top=k0)
        self.x.data[k0:, k0:k0 + width, :c] = float("nan")
        self.x.data[k0:, k0:k0 + width, c:] = const.permute(1, 2, 0)[..., None]

        layers = cast("list[GatedLayer]", list(model.layers))
        self.layers: list[_Layer] = []
        v_in, h_in = self.x, self.x
        for k, layer in enumerate(layers):
            last = k == len(layers) - 1
            stack = _Layer(layer, w, v_in, h_in)
            if not last:
                kn = cfg.kernel_size // 2
                v_in = Plane(width, stack.f, batch, like, depth=kn + 1, pad_left=kn,
                             pad_right=kn)
                h_in = Plane(width, stack.f, batch, like, depth=1, pad_left=kn, pad_right=0)
                stack.v_out, stack.h_out = v_in, h_in
            self.layers.append(stack)
        head = model.head
        self.hidden, self.hidden_bias = _matrix(head.hidden), column(_bias(head.hidden))
        self.out, self.out_bias = _matrix(head.out), column(_bias(head.out))
        self.layers[0].skip_bias = torch.stack([s.skip_bias for s in self.layers]).sum(0)

    def start_row(self, r: int) -> None:
        for stack in self.layers:
            if stack.h_out is not None:
                stack.h_out.begin_row(r)
            if r == 0:
                stack.first_row()
            else:
                stack.vertical_row(r - 1)

    def params_at(self, r: int, c: int) -> Tensor:
        skip: Tensor | None = None
        for stack in self.layers:
            skip = stack.horizontal(r, c, skip)
        assert skip is not None
        hidden = torch.addmm(self.hidden_bias, self.hidden, skip.relu_()).relu_()
        return torch.addmm(self.out_bias, self.out, hidden)

    def observe(self, r: int, c: int, pixel: Tensor) -> None:
        self.x.at(r, c)[:self.channels].copy_(pixel.t())
