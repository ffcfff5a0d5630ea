"""Activation planes and convolutions evaluated at selected positions, for cached sampling.

A cached sampler (Ramachandran et al., 2017, "Fast Generation for Convolutional
Autoregressive Models", §3) computes every activation of a convolutional autoregressive
network exactly once, at the raster step where all the pixels it depends on are known,
from cached activations of the layer below. Two pieces serve every model:

* `Plane`: one layer's activation map, of which only the last `depth` rows are kept (a ring
  buffer; `depth` = the kernel height of the layer reading it), laid out
  `[row slot, padded column, channel, batch]`. One position is then a contiguous
  `[C, B]` matrix and neighbouring positions of a row form one contiguous block, so the
  taps of a kernel along the current row are a free view (`taps`) and a layer can write
  its output straight into the plane (`torch.addmm(..., out=plane.at(i, j))`). The
  zero border stands for the convolutions' zero padding. A row's slot is filled with NaN
  when the row begins, so reading an activation before it was computed poisons every
  result that depends on it, instead of silently reading a stale row.
* `conv_row`: a convolution evaluated at every position of one output row from the kernel
  rows of input it reads — how whole rows of activations that do not depend on the
  current image row are advanced at once.

Activations are kept transposed (`[C, B]` per position), so per-position layers are
`W @ x + b` with `W` the `[out, in]` matrix of the layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        return self.data[(i + self.top) % self.depth, self.left + j]

    def taps(self, i: int, j: int, n: int) -> Tensor:
        """Positions `(i, j−n+1 .. j)` flattened to `[n·C, B]` (a view; border included)."""
        start = self.left + j - n + 1
        return self.data[(i + self.top) % self.depth, start:start + n].view(-1, self.data.shape[-1])

    def rows(self, last: int, n: int) -> Tensor:
        """Rows `last−n+1 .. last` with their border, `[n, padded W, C, B]`."""
        return torch.stack([self.slot(i) for i in range(last - n + 1, last + 1)])


def conv_row(rows: Tensor, weight: Tensor, bias: Tensor | None, start: int, n_out: int,
             stride: int = 1) -> Tensor:
    """One output row of a convolution, `[n_out, out, B]`.

    `rows`: the `kh` padded input rows it reads, `[kh, padded W, C, B]`; `weight`:
    `[out, C, kh, kw]`; output column q reads padded input columns `start + stride·q ..
    start + stride·q + kw − 1`.
    """
    x = rows[:, start:].permute(3, 2, 0, 1)  # [B, C, kh, W']
    y = F.conv2d(x, weight, bias, stride=(1, stride))
    return y[:, :, 0, :n_out].permute(2, 1, 0)


def tap_matrix(weight: Tensor, kernel_row: int) -> Tensor:
    """The `[out, kw·in]` matrix of one kernel row, matching `Plane.taps`' `[kw, C]` order."""
    w = weight[:, :, kernel_row]  # [out, in, kw]
    return w.permute(0, 2, 1).reshape(w.shape[0], -1).contiguous()


def column(bias: Tensor) -> Tensor:
    """A bias `[out]` as `[out, 1]`, to broadcast over the batch in `[out, B]` layouts."""
    return bias.reshape(-1, 1)


def concat_elu_rows(x: Tensor) -> Tensor:
    """concat_elu over the channel axis of `[..., C, B]` activations: `[..., 2C, B]`."""
    return F.elu(torch.cat([x, -x], dim=-2))
