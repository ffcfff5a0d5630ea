"""Masked convolutions for raster-order autoregressive models.

Two ways to hide the future from a convolution (van den Oord et al., 2016):

* `MaskedConv2d`: the PixelCNN n×n kernel with mask A (first layer: the centre pixel is
  hidden) or mask B (later layers: the centre pixel's own features are visible). Stacking
  these leaves a blind spot up-right of each pixel ("Pixel Recurrent Neural Networks",
  Sec. 3.4 and Fig. 2; "Conditional Image Generation with PixelCNN Decoders", Sec. 2.2).
  With `kernel_size=1` it is the channel-masked 1×1 convolution used inside gated blocks.
* `VerticalStackConv` + `shift_down` and `HorizontalStackConv`: the two stacks of the
  Gated PixelCNN (Conditional PixelCNN, Sec. 2.2, Fig. 2), which together have no blind
  spot. The vertical stack sees whole rows at and above the current one; shifted down by
  one row it only holds information from rows strictly above. The horizontal stack sees
  the current row up to and including the current pixel.

Channel groups (PixelRNN, Sec. 3.4, Fig. 4): for an RGB image the features of every layer
are split into R, G and B groups. At the centre pixel, a group-`c` output may read input
groups `< c` (mask A) or `<= c` (mask B), so the R value is predicted from the past only,
G from the past and R, B from the past, R and G. Groups are contiguous blocks of channels
(`channel_groups`); group -1 marks inputs that are not data (e.g. coordinate channels) and
are visible to every output. Taps strictly before the centre are never channel-masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tractable.errors import ConfigError


def channel_groups(n_channels: int, n_groups: int) -> Tensor:
    """Group id of each of `n_channels` channels split into `n_groups` contiguous blocks
    whose sizes differ by at most one (equal when `n_groups` divides `n_channels`)."""
    if n_groups < 1 or n_channels < n_groups:
        raise ConfigError(f"{n_channels} channels cannot be split into {n_groups} channel "
                          f"groups; use at least {n_groups} channels")
    return torch.arange(n_channels) * n_groups // n_channels


def channel_group_mask(in_groups: Tensor, out_groups: Tensor, mask_type: str) -> Tensor:
    """`[out, in]` 0/1 mask for the centre tap: A lets group c read groups < c, B groups <= c."""
    if mask_type not in ("A", "B"):
        raise ConfigError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    o, i = out_groups[:, None], in_groups[None, :]
    visible = (i < o) if mask_type == "A" else (i <= o)
    return visible.float()


class _MaskedConv(nn.Conv2d):
    """A bias-carrying convolution whose weight is multiplied by a fixed 0/1 mask."""

    mask: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int]) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=0)
        # Not persistent: masks follow from the config, so saved weights stay minimal.
        self.register_buffer("mask", torch.ones_like(self.weight), persistent=False)

    def masked_weight(self) -> Tensor:
        return self.weight * self.mask

    def _pad(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self._pad(x), self.masked_weight(), self.bias)


def _check_odd(kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size must be a positive odd number, got {kernel_size}")


def _centre_groups(in_groups: Tensor | None, out_groups: Tensor | None,
                   in_channels: int, out_channels: int) -> tuple[Tensor, Tensor]:
    """Default: one group for everything (a single-channel image)."""
    ig = torch.zeros(in_channels, dtype=torch.long) if in_groups is None else in_groups
    og = torch.zeros(out_channels, dtype=torch.long) if out_groups is None else out_groups
    if len(ig) != in_channels or len(og) != out_channels:
        raise ConfigError(f"channel groups ({len(ig)} in, {len(og)} out) do not match the "
                          f"convolution ({in_channels} in, {out_channels} out)")
    return ig, og


class MaskedConv2d(_MaskedConv):
    """PixelCNN masked n×n convolution, 'same' padding (PixelRNN Sec. 3.4, Fig. 2).

    Output (i, j) reads rows above i, pixels left of j in row i, and at (i, j) itself the
    input channel groups allowed by `mask_type` (see `channel_group_mask`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 in_groups: Tensor | None = None, out_groups: Tensor | None = None) -> None:
        _check_odd(kernel_size)
        super().__init__(in_channels, out_channels, (kernel_size, kernel_size))
        ig, og = _centre_groups(in_groups, out_groups, in_channels, out_channels)
        k = kernel_size // 2
        self.mask[:, :, k + 1:, :] = 0  # rows below
        self.mask[:, :, k, k + 1:] = 0  # right of centre in the current row
        self.mask[:, :, k, k] = channel_group_mask(ig, og, mask_type)

    def _pad(self, x: Tensor) -> Tensor:
        k = self.kernel_size[0] // 2
        return F.pad(x, (k, k, k, k))


class VerticalStackConv(_MaskedConv):
    """Vertical stack: a (k//2+1)×k kernel whose output at (i, j) reads rows i-k//2 .. i.

    Its output includes row i itself (current pixel and those right of it), so it must
    reach the horizontal stack only through `shift_down` (Conditional PixelCNN, Sec. 2.2).
    No mask is needed: the kernel shape is the mask.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        _check_odd(kernel_size)
        super().__init__(in_channels, out_channels, (kernel_size // 2 + 1, kernel_size))

    def _pad(self, x: Tensor) -> Tensor:
        k = self.kernel_size[1] // 2
        return F.pad(x, (k, k, k, 0))  # (left, right, top, bottom)


def shift_down(x: Tensor) -> Tensor:
    """Move every row one down (zeros enter at the top): row i then holds rows < i only."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


class HorizontalStackConv(_MaskedConv):
    """Horizontal stack: a 1×(k//2+1) kernel reading columns j-k//2 .. j of row i.

    The last tap is the current pixel, masked by channel groups (A in the first layer, B
    after); earlier taps are past pixels and fully visible.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 in_groups: Tensor | None = None, out_groups: Tensor | None = None) -> None:
        _check_odd(kernel_size)
        super().__init__(in_channels, out_channels, (1, kernel_size // 2 + 1))
        ig, og = _centre_groups(in_groups, out_groups, in_channels, out_channels)
        self.mask[:, :, 0, -1] = channel_group_mask(ig, og, mask_type)

    def _pad(self, x: Tensor) -> Tensor:
        return F.pad(x, (self.kernel_size[1] - 1, 0, 0, 0))
