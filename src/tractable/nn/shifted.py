"""Shifted convolutions: the causal building blocks of PixelCNN++ (Salimans et al., 2017, §2.5).

Two streams keep the network autoregressive without a blind spot (van den Oord et al.,
2016): the *down* stream at (i, j) sees only rows above i, through convolutions whose
kernel covers rows i−kh+1..i and columns centred on j; the *down-right* stream at (i, j)
sees the rows above and the pixels to the left on row i, through kernels covering rows
i−kh+1..i and columns j−kw+1..j. The input is shifted once (`down_shift`, `right_shift`)
so that each stream starts strictly before the pixel it predicts; every later layer keeps
that property. Strided versions halve the resolution and transposed versions double it
(then crop) without breaking it, as in openai/pixel-cnn `nn.py`.

All layers are weight-normed (`tractable.nn.weight_norm`); `v` has the PyTorch layout
`[out, in, kh, kw]` for convolutions and `[in, out, kh, kw]` for transposed ones.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tractable.nn.weight_norm import WeightNormLayer


def down_shift(x: Tensor) -> Tensor:
    """Move every row one down, filling the top row with zeros: row i shows row i−1.

    Cropped before padding, so the result is a fresh tensor in `x`'s memory format
    (a crop after padding would be a strided view, which channels_last layers copy)."""
    return F.pad(x[:, :, :-1, :], (0, 0, 1, 0))


def right_shift(x: Tensor) -> Tensor:
    """Move every column one right, filling the left column with zeros (as `down_shift`)."""
    return F.pad(x[:, :, :, :-1], (1, 0, 0, 0))


class DownShiftedConv2d(WeightNormLayer):
    """Conv whose output (i, j) reads rows i−kh+1..i and columns j−(kw−1)/2..j+(kw−1)/2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int] = (2, 3),
        stride: int = 1,
        init_scale: float = 1.0,
    ) -> None:
        kh, kw = kernel_size
        if kw % 2 != 1:
            raise ValueError(f"down-shifted conv needs an odd kernel width, got {kw}")
        super().__init__((out_channels, in_channels, kh, kw), out_axis=0, init_scale=init_scale)
        self.kernel_size = (kh, kw)
        self.stride = stride
        self.input_pad = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)

    def linear_map(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        return F.conv2d(x, weight, bias, stride=self.stride)


class DownRightShiftedConv2d(WeightNormLayer):
    """Conv whose output (i, j) reads rows i−kh+1..i and columns j−kw+1..j."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int] = (2, 2),
        stride: int = 1,
        init_scale: float = 1.0,
    ) -> None:
        kh, kw = kernel_size
        super().__init__((out_channels, in_channels, kh, kw), out_axis=0, init_scale=init_scale)
        self.kernel_size = (kh, kw)
        self.stride = stride
        self.input_pad = (kw - 1, 0, kh - 1, 0)

    def linear_map(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        return F.conv2d(x, weight, bias, stride=self.stride)


class DownShiftedConvTranspose2d(WeightNormLayer):
    """Transposed conv (×stride resolution); output row r reads input rows ≤ r/stride.

    The full transposed-conv output is cropped to the first H·stride rows and to the
    columns centred like `DownShiftedConv2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int] = (2, 3),
        stride: int = 2,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__((in_channels, out_channels, *kernel_size), out_axis=1,
                         init_scale=init_scale)
        self.kernel_size = kernel_size
        self.stride = stride

    def linear_map(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        h, w = x.shape[-2] * self.stride, x.shape[-1] * self.stride
        kh, kw = self.kernel_size
        left = (kw - 1) // 2
        extra = 2 * left + self.stride - kw  # columns to add back on the right after `left`
        if kh == self.stride and left + self.stride <= kw and 0 <= extra < self.stride:
            # The crop done by the convolution itself (`padding` trims `left` columns off
            # both sides, `output_padding` restores the right ones): one contiguous output
            # in the input's memory format instead of a strided view of a bigger one.
            return F.conv_transpose2d(x, weight, bias, stride=self.stride, padding=(0, left),
                                      output_padding=(self.stride - kh, extra))
        return F.conv_transpose2d(x, weight, bias, stride=self.stride)[:, :, :h, left:left + w]


class DownRightShiftedConvTranspose2d(WeightNormLayer):
    """Transposed conv (×stride); output (r, c) reads inputs (≤ r/stride, ≤ c/stride)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int] = (2, 2),
        stride: int = 2,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__((in_channels, out_channels, *kernel_size), out_axis=1,
                         init_scale=init_scale)
        self.kernel_size = kernel_size
        self.stride = stride

    def linear_map(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        h, w = x.shape[-2] * self.stride, x.shape[-1] * self.stride
        return F.conv_transpose2d(x, weight, bias, stride=self.stride)[:, :, :h, :w]
