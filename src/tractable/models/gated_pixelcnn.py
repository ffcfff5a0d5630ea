"""Gated PixelCNN (van den Oord et al., 2016, "Conditional Image Generation with PixelCNN
Decoders"), with a categorical output over N levels per sub-pixel.

Network, per layer k (Sec. 2.2-2.3, Fig. 2), with y the class weights (the paper's h):

    v_pre = VerticalConv_k(v)                         (sees rows <= i)
    h_pre = HorizontalConv_k(h) + Link_k(shift_down(v_pre))
    v     = tanh(v_pre_f + V_f y) ⊙ σ(v_pre_g + V_g y)             (eq. 4, both stacks)
    g     = tanh(h_pre_f + V_f y) ⊙ σ(h_pre_g + V_g y)
    h     = h + Residual_k(g)        (1×1; layer 0 has no residual: its input is the image)
    skip += Skip_k(g)                (1×1; the last layer only adds its skip)

then `params = Out2(ReLU(Out1(ReLU(skip))))` (1×1 convolutions). Layer 0 uses mask A, the
others mask B. For C=3 every horizontal-stack tensor is split into R, G, B channel groups and
all its convolutions are channel-group masked (PixelRNN Sec. 3.4), so the logits of R at
pixel i read only pixels < i, those of G also R of pixel i, those of B also R and G. The
vertical stack needs no channel masks: everything it passes on comes from rows above.

Levels: with `n_levels = N` an image is modelled at N evenly spaced grey values
`round(k·255/(N-1))`, k = 0..N-1 (see `quantize_levels`). `log_prob` and bits/dim are those of
the N-level image — exact for N-level data, and not comparable to 256-level numbers when N <
256; `loss` reports N as `metrics["levels"]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from tractable.config import ModelConfig, TrainingDefaults, setting
from tractable.errors import ConfigError, ShapeError
from tractable.likelihoods.categorical import Categorical
from tractable.likelihoods.focal import focal_nll
from tractable.limits import MAX_KERNEL, MAX_LAYERS, MAX_WIDTH
from tractable.models.autoregressive import AutoregressiveModel
from tractable.models.gated_pixelcnn_cached import CachedGatedPixelCNN
from tractable.models.registry import register_model
from tractable.nn.conditioning import class_weights
from tractable.nn.coordconv import add_coordinate_channels
from tractable.nn.masked import (
    HorizontalStackConv,
    MaskedConv2d,
    VerticalStackConv,
    channel_groups,
    shift_down,
)
from tractable.nn.precision import run_in_full_precision

COORD_CHANNELS = 2  # rows and columns, each in [-1, 1]


@dataclass
class GatedPixelCNNConfig(ModelConfig):
    """Gated PixelCNN hyperparameters (each becomes a `--flag` of `tractable train`)."""

    n_layers: int = setting(12, "gated layers (the first uses mask A)", minimum=1,
                            maximum=MAX_LAYERS)
    n_filters: int = setting(64, "feature maps per stack, split into C channel groups",
                             minimum=1, maximum=MAX_WIDTH)
    kernel_size: int = setting(3, "odd kernel size of layers 1..n_layers-1", minimum=3,
                              maximum=MAX_KERNEL)
    first_kernel_size: int = setting(7, "odd kernel size of layer 0", minimum=3,
                                    maximum=MAX_KERNEL)
    head_filters: int = setting(128, "hidden feature maps of the ReLU-1x1 output head",
                                minimum=1, maximum=MAX_WIDTH)
    n_levels: int = setting(256, "levels per sub-pixel (2..256; e.g. 4 grey levels for "
                                 "MNIST); bits/dim are those of the N-level data",
                            minimum=2, maximum=256)
    coord_conv: bool = setting(False, "concatenate row/column coordinate input channels")
    focal_gamma: float = setting(0.0, "focal loss exponent per sub-pixel (0 = plain NLL)",
                                 minimum=0.0)

    def validate(self) -> None:
        super().validate()
        c = self.image_shape[0]
        if self.n_layers < 1:
            raise ConfigError(f"n_layers must be >= 1, got {self.n_layers}")
        for name in ("kernel_size", "first_kernel_size"):
            k = getattr(self, name)
            if k < 3 or k % 2 == 0:
                raise ConfigError(f"{name} must be an odd number >= 3, got {k}")
        for name in ("n_filters", "head_filters"):
            n = getattr(self, name)
            if n < c:
                raise ConfigError(f"{name}={n} must be at least the {c} image channels (the "
                                  f"feature maps are split into one channel group per colour)")
        if not 2 <= self.n_levels <= 256:
            raise ConfigError(f"n_levels must lie in 2..256, got {self.n_levels}")
        if not self.focal_gamma >= 0:
            raise ConfigError(f"focal_gamma must be >= 0, got {self.focal_gamma}")


def gate(x: Tensor) -> Tensor:
    """tanh(first half) ⊙ σ(second half) over channels (eq. 2 / 4)."""
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One layer of both stacks (Fig. 2). Attributes, in the order `forward` uses them:

    - `v_conv`: vertical stack conv, `in -> 2F`, output row i reads input rows <= i;
    - `v_to_h`: 1×1 link, `2F -> 2F`, applied to `shift_down(v_conv(v))`;
    - `h_conv`: horizontal stack conv, `in -> 2F`, mask A (layer 0) or B;
    - `cond_v`, `cond_h`: `Linear(K, 2F)`, the V_f h and V_g h terms of each stack's gate
      (None when unconditional);
    - `residual`: 1×1 masked-B conv `F -> F` giving the next horizontal input, added to this
      layer's input when `add_input` (mask-B layers);
    - `skip`: 1×1 masked-B conv `F -> F` into the skip sum.

    The last layer (`last=True`) feeds only the skip sum, so it has no `cond_v` and no
    `residual` and passes `v`, `h` through unchanged. A cached sampler can run a layer one
    position at a time from these pieces.
    """

    def __init__(self, in_channels: int, n_filters: int, kernel_size: int, mask_type: str,
                 in_groups: Tensor, groups: Tensor, num_classes: int, last: bool = False) -> None:
        super().__init__()
        f2 = 2 * n_filters
        gate_groups = torch.cat([groups, groups])  # the tanh half and the σ half
        self.v_conv = VerticalStackConv(in_channels, f2, kernel_size)
        self.v_to_h = nn.Conv2d(f2, f2, 1)
        self.h_conv = HorizontalStackConv(in_channels, f2, kernel_size, mask_type, in_groups,
                                          gate_groups)
        conditional = num_classes > 0
        self.cond_v = nn.Linear(num_classes, f2, bias=False) if conditional and not last else None
        self.cond_h = nn.Linear(num_classes, f2, bias=False) if conditional else None
        self.residual = None if last else MaskedConv2d(n_filters, n_filters, 1, "B", groups, groups)
        self.add_input = mask_type == "B" and in_channels == n_filters
        self.skip = MaskedConv2d(n_filters, n_filters, 1, "B", groups, groups)

    @staticmethod
    def _bias(cond: nn.Linear | None, w: Tensor | None) -> Tensor | int:
        """Per-image gate bias `[B, 2F, 1, 1]` from class weights (0 when unconditional)."""
        if cond is None or w is None:
            return 0
        return cond(w.to(cond.weight.dtype))[:, :, None, None]

    def forward(self, v: Tensor, h: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """`(v, h, class weights [B, K] or None) -> (v', h', skip contribution)`."""
        v_pre = self.v_conv(v)
        h_pre = self.h_conv(h) + self.v_to_h(shift_down(v_pre))
        g = gate(h_pre + self._bias(self.cond_h, w))
        skip = self.skip(g)
        if self.residual is None:
            return v, h, skip
        h_next = self.residual(g)
        if self.add_input:
            h_next = h + h_next
        return gate(v_pre + self._bias(self.cond_v, w)), h_next, skip


class OutputHead(nn.Module):
    """ReLU → 1×1 → ReLU → 1×1 from the skip sum to `C·N` logits, channel-group masked (B)."""

    def __init__(self, n_filters: int, head_filters: int, channels: int, n_levels: int) -> None:
        super().__init__()
        self.hidden = MaskedConv2d(n_filters, head_filters, 1, "B",
                                   channel_groups(n_filters, channels),
                                   channel_groups(head_filters, channels))
        self.out = MaskedConv2d(head_filters, channels * n_levels, 1, "B",
                                channel_groups(head_filters, channels),
                                channel_groups(channels * n_levels, channels))

    def forward(self, skip: Tensor) -> Tensor:
        return run_in_full_precision(self.out, torch.relu(self.hidden(torch.relu(skip))))


def quantize_levels(x: Tensor, n_levels: int) -> Tensor:
    """uint8 0..255 -> the nearest of `n_levels` evenly spaced grey values, as its index k.

    k = round(x·(N-1)/255), in exact integer arithmetic (no ties occur for integer x).
    """
    return (x.long() * (2 * (n_levels - 1)) + 255) // 510


def dequantize_levels(k: Tensor, n_levels: int) -> Tensor:
    """Level index k -> uint8 grey value round(k·255/(N-1)); inverse of `quantize_levels`."""
    return ((k.long() * 510 + (n_levels - 1)) // (2 * (n_levels - 1))).to(torch.uint8)


@register_model("gated-pixelcnn")
class GatedPixelCNN(AutoregressiveModel):
    """Gated PixelCNN: vertical + horizontal gated stacks, categorical over N levels."""

    config_class = GatedPixelCNNConfig
    config: GatedPixelCNNConfig
    # Named settings for `tractable train --preset` (see `tractable.training.factory`).
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"n_layers": 8, "n_filters": 32, "head_filters": 64},  # MNIST on a CPU
    }
    tiny_settings: ClassVar[dict[str, Any]] = {
        "n_layers": 3, "n_filters": 12, "head_filters": 12, "n_levels": 16}

    def __init__(self, config: GatedPixelCNNConfig) -> None:
        super().__init__(config)
        c = config.image_shape[0]
        n_levels, f = config.n_levels, config.n_filters
        self.likelihood = Categorical(n_levels)
        self.channel_sequential = c > 1  # sample R, then G, then B within a pixel
        extra = COORD_CHANNELS if config.coord_conv else 0
        # Image channel c is group c; coordinate channels (group -1) are visible to all.
        in_groups = torch.cat([torch.arange(c), torch.full((extra,), -1)])
        groups = channel_groups(f, c)
        n = config.n_layers
        self.layers = nn.ModuleList(
            [GatedLayer(c + extra, f, config.first_kernel_size, "A", in_groups, groups,
                        config.num_classes, last=n == 1)]
            + [GatedLayer(f, f, config.kernel_size, "B", groups, groups, config.num_classes,
                          last=k == n - 1) for k in range(1, n)]
        )
        self.head = OutputHead(f, config.head_filters, c, n_levels)

    @classmethod
    def training_defaults(cls) -> TrainingDefaults:
        return TrainingDefaults(optimizer="adam", lr=1e-3, ema_decay=0.9995, batch_size=16)

    # ---- levels: uint8 <-> likelihood values <-> network input ------------------------
    def targets(self, x: Tensor) -> Tensor:
        """uint8 images -> level indices 0..N-1 (nearest of N evenly spaced grey values)."""
        return quantize_levels(x, self.config.n_levels)

    def from_targets(self, t: Tensor) -> Tensor:
        """Level indices -> uint8 grey values round(k·255/(N-1))."""
        return dequantize_levels(t, self.config.n_levels)

    def scale(self, x: Tensor) -> Tensor:
        """uint8 images -> their N-level quantization, mapped linearly onto [-1, 1]."""
        dtype = next(self.parameters()).dtype
        return self.targets(x).to(dtype) * (2.0 / (self.config.n_levels - 1)) - 1.0

    @property
    def bits_per_dim_label(self) -> str:
        """How to label this model's bits/dim in logs and tables (they are N-level numbers)."""
        n = self.config.n_levels
        return "bits/dim" if n == 256 else f"bits/dim ({n}-level data)"

    # ---- network ----------------------------------------------------------------------
    def network_input(self, x_scaled: Tensor) -> Tensor:
        """The first layer's input: the scaled image, plus coordinate channels if enabled."""
        c, h, w = self.config.image_shape
        if x_scaled.dim() != 4 or tuple(x_scaled.shape[1:]) != (c, h, w):
            raise ShapeError(f"network input must be [B, {c}, {h}, {w}] (scaled images), got "
                             f"{list(x_scaled.shape)}")
        return add_coordinate_channels(x_scaled) if self.config.coord_conv else x_scaled

    def forward(self, x_scaled: Tensor, y: Tensor | None = None) -> Tensor:
        """Scaled images `[B, C, H, W]` -> categorical logits `[B, C·N, H, W]`."""
        w = class_weights(y, self.config.num_classes, x_scaled.shape[0])
        v = h = self.network_input(x_scaled)
        skip: Tensor | int = 0
        for layer in self.layers:
            v, h, s = layer(v, h, w)
            skip = skip + s
        assert isinstance(skip, Tensor)
        return self.head(skip)

    def cached_network(self, batch: int, y: Tensor | None) -> CachedGatedPixelCNN:
        """The incremental form the "cached" sampler runs (`gated_pixelcnn_cached`)."""
        return CachedGatedPixelCNN(self, batch, y)

    # ---- training objective -----------------------------------------------------------
    def loss(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean bits/dim of the N-level images, or its focal version when focal_gamma > 0.

        The focal loss weighs each sub-pixel's -log p by (1-p)^gamma; metrics["bpd"]
        stays the true bits/dim and metrics["levels"] says for how many levels it holds.
        """
        self.check_images(x)
        params = self(self.scale(x), y)
        terms = self.likelihood.log_prob_terms(params, self.targets(x))  # [B, C, H, W]
        per_nat = 1.0 / (self.num_dims * math.log(2.0))
        bpd = -terms.sum(dim=(1, 2, 3)).mean() * per_nat
        loss = focal_nll(terms, self.config.focal_gamma).sum(dim=(1, 2, 3)).mean() * per_nat
        metrics = {"bpd": bpd.detach(),
                   "levels": torch.tensor(float(self.config.n_levels), device=bpd.device)}
        if self.config.focal_gamma > 0:
            metrics["focal"] = loss.detach()
        return loss, metrics
