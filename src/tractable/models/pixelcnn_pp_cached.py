"""PixelCNN++ as a cached network: every activation computed once, when it becomes final.

Ramachandran et al. (2017, §3–4) observe that in a convolutional autoregressive network
each activation depends on a known set of input pixels, so it can be computed once, as
soon as they are all sampled, from cached activations of the layer below. For PixelCNN++
(`tractable.models.pixelcnn_pp`; streams as in `tractable.nn.shifted`) with stride
s = 2^L at resolution level L:

* the *down* stream u at level-L position (p, q) depends only on image rows < s·p (and
  u never reads ul), so a whole level-L row of every u layer becomes final when image
  row s·p begins: `RowOp.row(p)` advances it, one row per layer;
* the *down-right* stream ul at (p, q) depends only on pixels before (s·p, s·q) in raster
  order, so it becomes final exactly at the step that samples pixel (s·p, s·q):
  `PixelOp.pixel(p, q)` computes that one position per layer. Its kernels' upper rows
  read the previous, already final, row: `PixelOp.prepare_row(p)` evaluates those taps
  (and the skip inputs from u) for the whole row at once when the row begins, leaving one
  small matrix product per layer and pixel for the current-row taps.

Each image row thus runs, per level whose rows start there, the u layers of one row then
`prepare_row`; each pixel runs the ul layers of the levels whose grid it lies on. The
params of pixel (r, c) come out of the last ul layer at the step that samples it, from
pixels < (r, c) only. Causal attention blocks cache the keys/values of final positions:
u queries a whole row against all rows ≤ p, ul one position against positions ≤ (p, q).

Activations are stored as `[x; −x]` (`Act`), so the concat_elu every gated block applies
to its inputs is one ELU of the window it reads. Caches start as NaN (`planes.Plane`): a
value read before it is computed would show up in the params.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tractable.nn.attention import CausalNonLocalBlock
from tractable.nn.conditioning import class_weights
from tractable.nn.gated_resnet import GatedResNet
from tractable.nn.weight_norm import WeightNormLayer
from tractable.sampling.planes import (
    Plane,
    column,
    conv_matrix,
    conv_row,
    im2col,
    position_columns,
    row_view,
    tap_matrix,
)

if TYPE_CHECKING:  # the model module imports this one: no import back at run time
    from tractable.models.pixelcnn_pp import PixelCNNPlusPlus

Size = tuple[int, int]  # (height, width) of one resolution level


class Act(Plane):
    """An activation at one level, stored as the pair `[x; −x]` (2C channels).

    The raw value is the first half (a view), and the ELU of any window of the plane is
    concat_elu of that window (§2.4's nonlinearity), computed by the layer reading it.
    """

    def __init__(self, level: int, width: int, channels: int, batch: int, like: Tensor) -> None:
        super().__init__(width, 2 * channels, batch, like)
        self.level, self.half = level, channels

    def raw(self, p: int, q: int) -> Tensor:
        """x at (p, q), `[C, B]` (a view, also the `out=` target of the layer making it)."""
        return self.halves(p, q)[0]

    def mirror(self, p: int, q: int) -> None:
        """Complete position (p, q) after its raw value was written: set −x."""
        x, negative = self.halves(p, q)
        torch.neg(x, out=negative)

    def write_row(self, p: int, values: Tensor) -> None:
        """Set row p from raw values `[W, C, B]`."""
        self.interior(p).copy_(torch.cat([values, -values], dim=1))

    def raw_row(self, p: int) -> Tensor:
        """x on row p, `[W, C, B]` (a view)."""
        return self.interior(p)[:, :self.half]

    def raw_rows(self, last: int, n: int) -> Tensor:
        """x on rows last−n+1..last with the border, `[n, padded W, C, B]` (a view of a copy)."""
        return self.rows(last, n)[:, :, :self.half]


def _matrix(layer: WeightNormLayer) -> Tensor:
    """A weight-normed 1×1 layer's effective weight as an `[out, in]` matrix."""
    return layer.weight()[:, :, 0, 0].contiguous()


def _stream_halves(w: Tensor, f: int) -> tuple[Tensor, Tensor]:
    """Split a map of concat_elu(cat[a, b]) (columns [a, b, −a, −b], f each) into the maps
    of concat_elu(a) and concat_elu(b) (columns [a, −a] and [b, −b])."""
    return (torch.cat([w[:, :f], w[:, 2 * f:3 * f]], 1).contiguous(),
            torch.cat([w[:, f:2 * f], w[:, 3 * f:]], 1).contiguous())


def _row_bias(bias: Tensor, width: int, batch: int) -> Tensor:
    """A bias `[out, 1]` or per-image `[out, B]` repeated for a row result `[out, W·B]`."""
    return bias.expand(bias.shape[0], batch).repeat(1, width)


class _RowBuffer:
    """A preallocated `[W, C, B]` row with a view per position (the prepared upper taps)."""

    def __init__(self, width: int, channels: int, like: Tensor) -> None:
        self.data = like.new_zeros(width, channels, like.shape[-1])
        self.at = list(self.data.unbind(0))


class RowOp:
    """A layer of the down stream, advanced one whole row of its level at a time."""

    level: int
    outputs: list[Plane]

    def row(self, p: int) -> None:
        raise NotImplementedError


class PixelOp:
    """A layer of the down-right stream, evaluated one position at a time."""

    level: int
    outputs: list[Plane]

    def prepare_row(self, p: int) -> None:
        """Work on values final when level row p begins (done then, for the whole row):
        the kernel taps on row p − 1, and skip inputs from the down stream's row p."""

    def pixel(self, p: int, q: int) -> None:
        raise NotImplementedError


# ---- the first layers -----------------------------------------------------------------
class InputU(RowOp):
    """u = down_shift(conv₂ₓ₃(x)): row r is the conv at row r − 1 (zero for r = 0)."""

    def __init__(self, model: PixelCNNPlusPlus, x: Plane, out: Act) -> None:
        self.level, self.x, self.out, self.outputs = 0, x, out, [out]
        self.matrix, self.bias = conv_matrix(model.u_init.weight()), column(model.u_init.b)

    def row(self, p: int) -> None:
        if p == 0:
            self.out.write_row(0, torch.zeros_like(self.out.raw_row(0)))
            return
        self.out.write_row(p, conv_row(self.x.rows(p - 1, 2), self.matrix, self.bias, 3, 0,
                                       self.x.width))


class InputUL(PixelOp):
    """ul = down_shift(conv₁ₓ₃(x)) + right_shift(conv₂ₓ₁(x)).

    At (r, c): the 1×3 conv of x row r−1 around c, plus the 2×1 conv at (r, c−1), whose
    upper tap reads row r−1 and lower tap the pixel just sampled, (r, c−1).
    """

    def __init__(self, model: PixelCNNPlusPlus, x: Plane, out: Act) -> None:
        self.level, self.x, self.out, self.outputs = 0, x, out, [out]
        down, right = model.ul_init_down, model.ul_init_right
        self.down, self.down_bias = conv_matrix(down.weight()), column(down.b)
        w = right.weight()
        self.right_top, self.right_bias = tap_matrix(w, 0), column(right.b)
        self.right_bottom = tap_matrix(w, 1)
        self.top = _RowBuffer(x.width, out.half, x.data)

    def prepare_row(self, p: int) -> None:
        width, top = self.x.width, self.top.data
        above = self.x.rows(p - 1, 1)
        if p == 0:
            top.zero_()  # down_shift's zero row
        else:
            top.copy_(conv_row(above, self.down, self.down_bias, 3, 0, width))
        # the 2×1 conv at (p, c−1), upper tap: row p−1, column c−1, for c ≥ 1
        top[1:] += conv_row(above, self.right_top, self.right_bias, 1, self.x.left, width - 1)

    def pixel(self, p: int, q: int) -> None:
        out = self.out.raw(p, q)
        if q == 0:
            out.copy_(self.top.at[0])
        else:
            torch.addmm(self.top.at[q], self.right_bottom, self.x.at(p, q - 1), out=out)
        self.out.mirror(p, q)


# ---- gated residual blocks (§2.4) ------------------------------------------------------
class _Gated:
    """Weights of a GatedResNet in matrix form; `cond` [2F, B] is h·W for this batch."""

    def __init__(self, block: GatedResNet, cond: Tensor | None) -> None:
        w_in, w_out = block.conv_in.weight(), block.conv_out.weight()
        self.f = w_in.shape[0]
        self.w_in, self.w_out = w_in, w_out
        b_in = block.conv_in.b if block.skip is None else block.conv_in.b + block.skip.b
        self.b_in, self.b_out = column(b_in), column(block.conv_out.b)
        self.skip = _matrix(block.skip) if block.skip is not None else None
        if block.cond is not None and cond is not None:
            self.b_out = self.b_out + cond  # [2F, B]: the class term is a per-image bias


class RowBlock(RowOp, _Gated):
    """A down-stream gated block (2×3 down-shifted convs), one row at a time."""

    def __init__(self, level: int, block: GatedResNet, x: Act, skip: Act | None, out: Act,
                 cond: Tensor | None, batch: int) -> None:
        _Gated.__init__(self, block, cond)
        self.level, self.x, self.a, self.out = level, x, skip, out
        self.c1 = Act(level, x.width, self.f, batch, x.data)
        self.outputs = [self.c1, out]
        self.m_in, self.m_out = conv_matrix(self.w_in), conv_matrix(self.w_out)
        self.b_out_row = _row_bias(self.b_out, x.width, batch)

    def row(self, p: int) -> None:
        width, f = self.x.width, self.f
        c1 = torch.addmm(self.b_in, self.m_in, im2col(F.elu(self.x.rows(p, 2)), 3, 0, width))
        if self.skip is not None:
            assert self.a is not None
            c1.addmm_(self.skip, position_columns(F.elu(self.a.interior(p))))
        self.c1.write_row(p, row_view(c1, width))
        c2 = torch.addmm(self.b_out_row, self.m_out,
                         im2col(F.elu(self.c1.rows(p, 2)), 3, 0, width))
        value, gate = row_view(c2, width).split(f, dim=1)
        self.out.write_row(p, torch.addcmul(self.x.raw_row(p), value, torch.sigmoid(gate)))


class PixelBlock(PixelOp, _Gated):
    """A down-right-stream gated block (2×2 down-right convs), one position at a time.

    Skip inputs: `skip_row` is read at the same position from a down-stream value (final
    for the whole row, so its term is prepared with the upper taps), `skip_pixel` from a
    down-right-stream one (the up pass's ul).
    """

    def __init__(self, level: int, block: GatedResNet, x: Act, skip_row: Act | None,
                 skip_pixel: Act | None, out: Act, cond: Tensor | None, batch: int) -> None:
        _Gated.__init__(self, block, cond)
        f, width = self.f, x.width
        self.level, self.x, self.out = level, x, out
        self.a_row, self.a_pixel = skip_row, skip_pixel
        self.c1 = Act(level, width, f, batch, x.data)
        self.outputs = [self.c1, out]
        self.skip_row: Tensor | None = None
        self.skip_pixel: Tensor | None = None
        if self.skip is not None and skip_pixel is not None:
            self.skip_row, self.skip_pixel = _stream_halves(self.skip, f)
        elif self.skip is not None:
            self.skip_row = self.skip
        self.in_top, self.in_bottom = tap_matrix(self.w_in, 0), tap_matrix(self.w_in, 1)
        self.out_top, self.out_bottom = tap_matrix(self.w_out, 0), tap_matrix(self.w_out, 1)
        self.b_out_row = _row_bias(self.b_out, width, batch)
        self.top_in = _RowBuffer(width, f, x.data)
        self.top_out = _RowBuffer(width, 2 * f, x.data)
        self.c2 = x.data.new_zeros(2 * f, batch)
        self.value, self.gate = self.c2[:f], self.c2[f:]

    def prepare_row(self, p: int) -> None:
        width = self.x.width
        top = torch.addmm(self.b_in, self.in_top,
                          im2col(F.elu(self.x.rows(p - 1, 1)), 2, 0, width))
        if self.skip_row is not None:
            assert self.a_row is not None
            top.addmm_(self.skip_row, position_columns(F.elu(self.a_row.interior(p))))
        self.top_in.data.copy_(row_view(top, width))
        top = torch.addmm(self.b_out_row, self.out_top,
                          im2col(F.elu(self.c1.rows(p - 1, 1)), 2, 0, width))
        self.top_out.data.copy_(row_view(top, width))

    def pixel(self, p: int, q: int) -> None:
        c1 = self.c1.raw(p, q)
        torch.addmm(self.top_in.at[q], self.in_bottom, F.elu(self.x.taps(p, q, 2)), out=c1)
        if self.skip_pixel is not None:
            assert self.a_pixel is not None
            c1.addmm_(self.skip_pixel, F.elu(self.a_pixel.at(p, q)))
        self.c1.mirror(p, q)
        torch.addmm(self.top_out.at[q], self.out_bottom, F.elu(self.c1.taps(p, q, 2)),
                    out=self.c2)
        torch.addcmul(self.x.raw(p, q), self.value, self.gate.sigmoid_(),
                      out=self.out.raw(p, q))
        self.out.mirror(p, q)


# ---- changes of resolution ---------------------------------------------------------------
class DownSizeU(RowOp):
    """Stride-2 down-shifted 2×3 conv: level row p reads rows 2p−1, 2p of the level below."""

    def __init__(self, level: int, layer: WeightNormLayer, x: Act, out: Act) -> None:
        self.level, self.x, self.out, self.outputs = level, x, out, [out]
        self.matrix, self.bias = conv_matrix(layer.weight()), column(layer.b)

    def row(self, p: int) -> None:
        self.out.write_row(p, conv_row(self.x.raw_rows(2 * p, 2), self.matrix, self.bias, 3, 0,
                                       self.out.width, stride=2))


class DownSizeUL(PixelOp):
    """Stride-2 down-right 2×2 conv: (p, q) reads (2p−1..2p, 2q−1..2q) of the level below."""

    def __init__(self, level: int, layer: WeightNormLayer, x: Act, out: Act) -> None:
        self.level, self.x, self.out, self.outputs = level, x, out, [out]
        w = layer.weight()
        self.w_top, self.bias = tap_matrix(w, 0), column(layer.b)
        # The lower taps read x of two positions stored as [x; −x]: zero weight on −x.
        bottom = tap_matrix(w, 1).view(w.shape[0], 2, 1, -1)
        self.bottom = torch.cat([bottom, torch.zeros_like(bottom)], 2).view(w.shape[0], -1)
        self.top = _RowBuffer(out.width, out.half, x.data)

    def prepare_row(self, p: int) -> None:
        self.top.data.copy_(conv_row(self.x.raw_rows(2 * p - 1, 1), self.w_top, self.bias, 2, 0,
                                     self.out.width, stride=2))

    def pixel(self, p: int, q: int) -> None:
        torch.addmm(self.top.at[q], self.bottom, self.x.taps(2 * p, 2 * q, 2),
                    out=self.out.raw(p, q))
        self.out.mirror(p, q)


class UpSizeU(RowOp):
    """Stride-2 transposed 2×3 conv: row p is kernel row p % 2 applied to row p // 2."""

    def __init__(self, level: int, layer: WeightNormLayer, x: Act, out: Act) -> None:
        self.level, self.x, self.out, self.outputs = level, x, out, [out]
        self.weight, self.bias = layer.weight(), layer.b  # [in, out, 2, 3]

    def row(self, p: int) -> None:
        width = self.out.width
        x = self.x.raw_row(p // 2).permute(2, 1, 0).unsqueeze(2)  # [B, C, 1, W/2]
        a = p % 2
        y = F.conv_transpose2d(x, self.weight[:, :, a:a + 1], self.bias, stride=(1, 2))
        self.out.write_row(p, y[:, :, 0, 1:1 + width].permute(2, 1, 0))  # crop as the layer


class UpSizeUL(PixelOp):
    """Stride-2 transposed 2×2 conv: (p, q) is tap (p % 2, q % 2) applied to (p//2, q//2)."""

    def __init__(self, level: int, layer: WeightNormLayer, x: Act, out: Act) -> None:
        self.level, self.x, self.out, self.outputs = level, x, out, [out]
        w = layer.weight()  # [in, out, 2, 2]
        self.taps = [[w[:, :, a, b].t().contiguous() for b in range(2)] for a in range(2)]
        self.bias = column(layer.b)

    def pixel(self, p: int, q: int) -> None:
        torch.addmm(self.bias, self.taps[p % 2][q % 2], self.x.raw(p // 2, q // 2),
                    out=self.out.raw(p, q))
        self.out.mirror(p, q)


# ---- causal attention (tractable.nn.attention) ------------------------------------------
class AttentionU(RowOp):
    """u' = u + out(attend(q(u), k(u), v(u))) over keys in rows ≤ p: one row of queries."""

    def __init__(self, level: int, block: CausalNonLocalBlock, x: Act, out: Act, size: Size,
                 batch: int) -> None:
        self.level, self.x, self.out, self.outputs = level, x, out, [out]
        self.maps = [(_matrix(m), m.b) for m in (block.u_query, block.u_key, block.u_value,
                                                 block.u_out)]
        dk, n = self.maps[0][0].shape[0], size[0] * size[1]
        like = x.data
        self.keys = like.new_full((batch, n, dk), float("nan"))
        self.values = like.new_full((batch, n, x.half), float("nan"))
        self.scale = math.sqrt(dk)

    def row(self, p: int) -> None:
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = self.maps
        e = F.elu(self.x.interior(p)).permute(2, 0, 1)  # concat_elu(u), [B, W, 2F]
        width = e.shape[1]
        end = (p + 1) * width
        self.keys[:, p * width:end] = F.linear(e, wk, bk)
        self.values[:, p * width:end] = F.linear(e, wv, bv)
        scores = F.linear(e, wq, bq) @ self.keys[:, :end].transpose(1, 2) / self.scale
        att = torch.softmax(scores, dim=-1) @ self.values[:, :end]
        update = F.linear(att, wo, bo).permute(1, 2, 0)  # [W, F, B]
        self.out.write_row(p, self.x.raw_row(p) + update)


class AttentionUL(PixelOp):
    """ul' = ul + out(attend(q(ul), k(u', ul), v(u', ul))) over positions ≤ (p, q)."""

    def __init__(self, level: int, block: CausalNonLocalBlock, u: Act, x: Act, out: Act,
                 size: Size, batch: int) -> None:
        self.level, self.u, self.x, self.out, self.outputs = level, u, x, out, [out]
        f = x.half
        self.wq, self.bq = _matrix(block.ul_query), column(block.ul_query.b)
        # keys/values read concat_elu(cat[u', ul]); we feed [concat_elu(u'), concat_elu(ul)].
        self.wkv = torch.cat([torch.cat(_stream_halves(_matrix(m), f), 1)
                              for m in (block.ul_key, block.ul_value)])
        self.bkv = column(torch.cat([block.ul_key.b, block.ul_value.b]))
        self.wo, self.bo = _matrix(block.ul_out), column(block.ul_out.b)
        self.dk, self.width = self.wq.shape[0], size[1]
        like = x.data
        self.keys = like.new_full((batch, size[0] * size[1], self.dk), float("nan"))
        self.values = like.new_full((batch, size[0] * size[1], f), float("nan"))
        self.scale = math.sqrt(self.dk)

    def pixel(self, p: int, q: int) -> None:
        n = p * self.width + q
        both = F.elu(torch.cat([self.u.at(p, q), self.x.at(p, q)]))
        query = torch.addmm(self.bq, self.wq, both[2 * self.x.half:])  # [dk, B]
        kv = torch.addmm(self.bkv, self.wkv, both)
        self.keys[:, n] = kv[:self.dk].t()
        self.values[:, n] = kv[self.dk:].t()
        scores = torch.bmm(self.keys[:, :n + 1], query.t().unsqueeze(2)) / self.scale
        weights = torch.softmax(scores, dim=1)  # [B, n + 1, 1]
        att = torch.bmm(weights.transpose(1, 2), self.values[:, :n + 1])[:, 0].t()  # [F, B]
        torch.add(self.x.raw(p, q), torch.addmm(self.bo, self.wo, att), out=self.out.raw(p, q))
        self.out.mirror(p, q)


# ---- the whole network ---------------------------------------------------------------------
class CachedPixelCNNPlusPlus:
    """Per-row / per-pixel evaluation of a PixelCNN++ for a batch of `batch` images.

    The `CachedNetwork` protocol of `tractable.sampling.protocol`: `start_row(r)` before
    the pixels of row r; `params_at(r, c)` -> mixture params `[P, B]` of pixel (r, c);
    `observe(r, c, x)` with the sampled pixel scaled like the model's input, `[B, C]`.
    """

    reads_current_pixel = False

    @torch.inference_mode()
    def __init__(self, model: PixelCNNPlusPlus, batch: int, y: Tensor | None) -> None:
        cfg = model.config
        c, height, width = cfg.image_shape
        like = next(model.parameters())
        self.channels = c
        h = class_weights(y, cfg.num_classes, batch)
        self.h = None if h is None else h.to(device=like.device, dtype=like.dtype)
        self.levels = len(model.up_u)  # resolutions H, H/2, H/4 (the model's NUM_LEVELS)
        self.sizes = [(height >> level, width >> level) for level in range(self.levels)]
        self.batch, self.like, self.f = batch, like.detach(), cfg.nr_filters

        # The input plane holds the whole image: x ⊕ ones (⊕ coordinates); pixels not yet
        # sampled are NaN, the zero border is the convolutions' padding.
        const = model.network_input(like.new_zeros(1, c, height, width))[0, c:]
        self.x = Plane(width, const.shape[0] + c, batch, like, depth=height + 1, top=1)
        self.x.data[1:, 1:width + 1, :c] = float("nan")
        self.x.data[1:, 1:width + 1, c:] = const.permute(1, 2, 0)[..., None]

        self.row_ops: list[RowOp] = []
        self.pixel_ops: list[PixelOp] = []
        self.final = self._build(model)
        self.out_w, self.out_b = _matrix(model.out), column(model.out.b)
        # Ops (and planes) active at a row / pixel whose coarsest level is m (0, 1, 2).
        levels = range(self.levels)
        self.row_ops_upto = [[o for o in self.row_ops if o.level <= m] for m in levels]
        self.pixel_ops_upto = [[o for o in self.pixel_ops if o.level <= m] for m in levels]
        ops: list[RowOp | PixelOp] = [*self.row_ops, *self.pixel_ops]
        planes = [(o.level, pl) for o in ops for pl in o.outputs]
        self.planes_upto = [[(lv, pl) for lv, pl in planes if lv <= m] for m in levels]

    def _act(self, level: int) -> Act:
        return Act(level, self.sizes[level][1], self.f, self.batch, self.like)

    def _cond(self, block: GatedResNet) -> Tensor | None:
        if block.cond is None or self.h is None:
            return None
        return F.linear(self.h, block.cond.weight).t().contiguous()  # [2F, B]

    def _build(self, model: PixelCNNPlusPlus) -> Act:
        """Walk `up_pass` / `down_pass` of the model, creating one op per layer; return the
        activation the output layer reads."""
        b = self.batch
        u, ul = self._act(0), self._act(0)
        self.row_ops.append(InputU(model, self.x, u))
        self.pixel_ops.append(InputUL(model, self.x, ul))
        u_stack, ul_stack = [u], [ul]
        for level in range(self.levels):
            if level > 0:
                u, ul = self._act(level), self._act(level)
                self.row_ops.append(DownSizeU(level, _layer(model.down_size_u, level - 1),
                                              u_stack[-1], u))
                self.pixel_ops.append(DownSizeUL(level, _layer(model.down_size_ul, level - 1),
                                                 ul_stack[-1], ul))
                u_stack.append(u)
                ul_stack.append(ul)
            for block_u, block_ul in _pairs(model.up_u[level], model.up_ul[level]):
                u, ul = self._act(level), self._act(level)
                self.row_ops.append(RowBlock(level, block_u, u_stack[-1], None, u,
                                             self._cond(block_u), b))
                self.pixel_ops.append(PixelBlock(level, block_ul, ul_stack[-1], u, None, ul,
                                                 self._cond(block_ul), b))
                u_stack.append(u)
                ul_stack.append(ul)
            u_stack[-1], ul_stack[-1] = self._attention(model, f"up{level}", level,
                                                        u_stack[-1], ul_stack[-1])
        u, ul = u_stack.pop(), ul_stack.pop()
        for stage in range(self.levels):
            level = self.levels - 1 - stage
            if stage > 0:
                up_u, up_ul = self._act(level), self._act(level)
                up_size_u, up_size_ul = (_layer(model.up_size_u, stage - 1),
                                         _layer(model.up_size_ul, stage - 1))
                self.row_ops.append(UpSizeU(level, up_size_u, u, up_u))
                self.pixel_ops.append(UpSizeUL(level, up_size_ul, ul, up_ul))
                u, ul = up_u, up_ul
            for block_u, block_ul in _pairs(model.down_u[stage], model.down_ul[stage]):
                next_u, next_ul = self._act(level), self._act(level)
                self.row_ops.append(RowBlock(level, block_u, u, u_stack.pop(), next_u,
                                             self._cond(block_u), b))
                self.pixel_ops.append(PixelBlock(level, block_ul, ul, next_u, ul_stack.pop(),
                                                 next_ul, self._cond(block_ul), b))
                u, ul = next_u, next_ul
            u, ul = self._attention(model, f"down{level}", level, u, ul)
        assert not u_stack and not ul_stack, "every up-pass value is consumed once"
        return ul

    def _attention(self, model: PixelCNNPlusPlus, site: str, level: int, u: Act,
                   ul: Act) -> tuple[Act, Act]:
        if site not in model.attention:
            return u, ul
        block = cast(CausalNonLocalBlock, model.attention[site])
        new_u, new_ul = self._act(level), self._act(level)
        size = self.sizes[level]
        self.row_ops.append(AttentionU(level, block, u, new_u, size, self.batch))
        self.pixel_ops.append(AttentionUL(level, block, new_u, ul, new_ul, size, self.batch))
        return new_u, new_ul

    # ---- the sampler protocol -------------------------------------------------------------
    def start_row(self, r: int) -> None:
        m = _coarsest_level(r)
        for level, plane in self.planes_upto[m]:
            plane.begin_row(r >> level)
        for op in self.row_ops_upto[m]:
            op.row(r >> op.level)
        for pop in self.pixel_ops_upto[m]:
            pop.prepare_row(r >> pop.level)

    def params_at(self, r: int, c: int) -> Tensor:
        for op in self.pixel_ops_upto[min(_coarsest_level(r), _coarsest_level(c))]:
            op.pixel(r >> op.level, c >> op.level)
        return torch.addmm(self.out_b, self.out_w, F.elu(self.final.raw(r, c)))  # nin(elu(ul))

    def observe(self, r: int, c: int, pixel: Tensor) -> None:
        self.x.at(r, c)[:self.channels].copy_(pixel.t())


def _coarsest_level(i: int) -> int:
    """The coarsest level whose grid contains index i: 2 if 4 | i, 1 if 2 | i, else 0."""
    return 2 if i % 4 == 0 else (1 if i % 2 == 0 else 0)


def _pairs(u_stage: nn.Module, ul_stage: nn.Module) -> list[tuple[GatedResNet, GatedResNet]]:
    """The (down stream, down-right stream) gated blocks of one stage, in order."""
    u_blocks = cast(list[GatedResNet], list(cast(nn.ModuleList, u_stage)))
    ul_blocks = cast(list[GatedResNet], list(cast(nn.ModuleList, ul_stage)))
    return list(zip(u_blocks, ul_blocks, strict=True))


def _layer(layers: nn.Module, index: int) -> WeightNormLayer:
    return cast(WeightNormLayer, cast(nn.ModuleList, layers)[index])
