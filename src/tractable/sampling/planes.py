"""Activation planes and convolutions evaluated at selected positions, for cached sampling.

A cached sampler (Ramachandran et al., 2017, "Fast Generation for Convolutional
Autoregressive Models", §3) computes every activation of a convolutional autoregressive
network exactly once, at the raster step where all the pixels it depends on are known,
from cached activations of the layer below. Two pieces serve every model:

* `Plane`: one layer's activation map, of which only the last `depth` rows are kept (a ring
  buffer; `depth` = the kernel height of the layer reading it), laid out
  `[row slot, padded column, channel, batch]`. One position is then a contiguous
  `[C, B]` matrix and neighbouring positions of a row form one contiguous block, so the
  taps of a kernel along the current row are a view (`taps`) and a layer writes its
  output straight into the plane (`torch.addmm(..., out=plane.at(i, j))`). The zero
  border stands for the convolutions' zero padding. A row's slot is filled with NaN when
  the row begins, so reading an activation before it was computed poisons every result
  that depends on it instead of silently reading a stale row.
* `conv_row` / `im2col`: a convolution evaluated at every position of one output row,
  from the kernel rows of input it reads, as one matrix product — how whole rows of
  activations that do not depend on the current image row are advanced at once.

Activations are kept transposed (`[C, B]` per position), so a layer at one position is
`W @ x + b` with `W` the layer's `[out, in]` matrix. The per-position views are made once:
indexing a tensor costs about as much as a small matrix product, and a sampler makes
dozens of such accesses per pixel.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Plane:
    """The last `depth` rows of a `[B, C, H, W]` activation map, zero-padded left/right.

    Row `i` lives in slot `(i + top) % depth`. With `top = 0` this is a ring buffer whose
    untouched slots read as the zero rows above the image (rows −1, −2, ...); a whole map
    is kept with `depth = H + top`, `top` zero rows above it.
    """

    def __init__(self, width: int, channels: int, batch: int, like: Tensor, depth: int = 2,
                 pad_left: int = 1, pad_right: int = 1, top: int = 0) -> None:
        self.width, self.channels, self.depth, self.top = width, channels, depth, top
        self.left = pad_left
        self.data = like.new_zeros(depth, pad_left + width + pad_right, channels, batch)
        self.begin_row(0)  # the other slots are the zero rows above the image
        self._positions = [list(slot.unbind(0)) for slot in self.data.unbind(0)]
        self._taps: dict[int, list[list[Tensor]]] = {}
        self._halves: list[list[tuple[Tensor, Tensor]]] | None = None

    def slot(self, i: int) -> Tensor:
        """Row `i` with its zero border, `[pad_left + W + pad_right, C, B]`."""
        return self.data[(i + self.top) % self.depth]

    def begin_row(self, i: int) -> None:
        """Make row `i` current: its slot (row i − depth until now) becomes not-yet-computed."""
        self.interior(i).fill_(float("nan"))

    def interior(self, i: int) -> Tensor:
        """Row `i` without the border, `[W, C, B]`."""
        return self.slot(i)[self.left:self.left + self.width]

    def at(self, i: int, j: int) -> Tensor:
        """Position `(i, j)`, a contiguous `[C, B]` view."""
        return self._positions[(i + self.top) % self.depth][self.left + j]

    def halves(self, i: int, j: int) -> tuple[Tensor, Tensor]:
        """Position `(i, j)` split into its first and second half of channels (views)."""
        if self._halves is None:
            h = self.channels // 2
            self._halves = [[(p[:h], p[h:]) for p in slot] for slot in self._positions]
        return self._halves[(i + self.top) % self.depth][self.left + j]

    def taps(self, i: int, j: int, n: int) -> Tensor:
        """Positions `(i, j−n+1 .. j)` flattened to `[n·C, B]` (a view; border included)."""
        if n not in self._taps:
            d, wp, c, b = self.data.shape
            s0, s1 = self.data.stride()[:2]
            windows = self.data.as_strided((d, wp - n + 1, n * c, b), (s0, s1, b, 1))
            self._taps[n] = [list(slot.unbind(0)) for slot in windows.unbind(0)]
        return self._taps[n][(i + self.top) % self.depth][self.left + j - n + 1]

    def rows(self, last: int, n: int) -> Tensor:
        """Rows `last−n+1 .. last` with their border, `[n, padded W, C, B]` (contiguous)."""
        return torch.stack([self.slot(i) for i in range(last - n + 1, last + 1)])


def conv_matrix(weight: Tensor) -> Tensor:
    """A conv weight `[out, in, kh, kw]` as the `[out, kh·kw·in]` matrix of `conv_row`."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1).contiguous()


def im2col(rows: Tensor, kw: int, start: int, n_out: int, stride: int = 1) -> Tensor:
    """The `[kh·kw·C, n_out·B]` input matrix of one output row of a convolution (a copy).

    `rows`: the `kh` contiguous padded input rows it reads, `[kh, padded W, C, B]`;
    output column q reads padded input columns `start + stride·q .. + kw − 1`.
    """
    kh, _, c, b = rows.shape
    s_row, s_col = rows.stride()[:2]
    windows = rows.as_strided((kh, kw, c, n_out, b), (s_row, s_col, b, stride * s_col, 1),
                              rows.storage_offset() + start * s_col)
    return windows.reshape(kh * kw * c, n_out * b)


def row_view(y: Tensor, n_out: int) -> Tensor:
    """A row result `[out, n_out·B]` seen as `[n_out, out, B]` (a view)."""
    return y.view(y.shape[0], n_out, -1).permute(1, 0, 2)


def conv_row(rows: Tensor, matrix: Tensor, bias: Tensor, kw: int, start: int, n_out: int,
             stride: int = 1) -> Tensor:
    """One output row of a convolution, `[n_out, out, B]`: `matrix` is `conv_matrix(w)`,
    `bias` `[out, 1]`; see `im2col` for the other arguments."""
    return row_view(torch.addmm(bias, matrix, im2col(rows, kw, start, n_out, stride)), n_out)


def tap_matrix(weight: Tensor, kernel_row: int) -> Tensor:
    """The `[out, kw·in]` matrix of one kernel row, matching `Plane.taps`' `[kw, C]` order."""
    w = weight[:, :, kernel_row]  # [out, in, kw]
    return w.permute(0, 2, 1).reshape(w.shape[0], -1).contiguous()


def column(bias: Tensor) -> Tensor:
    """A bias `[out]` as `[out, 1]`, to broadcast over the batch in `[out, B]` layouts."""
    return bias.reshape(-1, 1)


def concat_elu_rows(x: Tensor) -> Tensor:
    """concat_elu over the channel axis of `[..., C, B]` activations: `[..., 2C, B]`."""
    return torch.nn.functional.elu(torch.cat([x, -x], dim=-2))


def position_columns(x: Tensor) -> Tensor:
    """A row `[W, C, B]` as the `[C, W·B]` matrix `conv_row` multiplies (a copy)."""
    w, c, b = x.shape
    return x.permute(1, 0, 2).reshape(c, w * b)
