"""PixelCNN++ (Salimans, Karpathy, Chen & Kingma, ICLR 2017), following openai/pixel-cnn.

The network (§2.3–2.5 and Fig. 2 of the paper):

    input x ⊕ ones (⊕ row/col coordinates with coord_conv)
    u  = down_shift(conv₂ₓ₃(x))                                 down stream: rows above
    ul = down_shift(conv₁ₓ₃(x)) + right_shift(conv₂ₓ₁(x))       down-right stream: above + left
    up pass, resolutions H, H/2, H/4:  nr_resnet gated blocks per stream per resolution
        (the ul block takes u as skip input), a stride-2 shifted conv between resolutions;
        every stream value is kept on a stack.
    down pass, resolutions H/4, H/2, H: nr_resnet, nr_resnet+1, nr_resnet+1 gated blocks;
        each pops the up pass's stacks as long shortcuts (u block: u_up; ul block:
        [u, ul_up]), a stride-2 transposed shifted conv between resolutions.
    params = nin(elu(ul))   -> discretized logistic mixture (`tractable.likelihoods`)

Every conv is weight-normed with data-dependent init; class weights `h` enter every gated
block (§2.4 conditional model). Options beyond the paper, all causal by construction:
`coord_conv` (two coordinate input channels) and `nonlocal_blocks` (causal self-attention
after the lower-resolution stages, see `tractable.nn.attention`); `focal_gamma` changes the
training loss only.

Layers are kept as explicit module lists (`up_u[level][block]`, `down_ul[stage][block]`,
`down_size_u[i]`, ...) so a per-layer incremental sampler can walk the same structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tractable.config import ModelConfig, TrainingDefaults, setting
from tractable.errors import ConfigError, ShapeError
from tractable.likelihoods.focal import focal_nll
from tractable.likelihoods.logistic_mixture import DiscretizedLogisticMixture
from tractable.limits import MAX_BLOCKS, MAX_MIXTURE, MAX_WIDTH
from tractable.models.autoregressive import AutoregressiveModel
from tractable.models.pixelcnn_pp_cached import CachedPixelCNNPlusPlus
from tractable.models.registry import register_model
from tractable.nn.attention import CausalNonLocalBlock
from tractable.nn.conditioning import class_weights
from tractable.nn.coordconv import add_coordinate_channels
from tractable.nn.gated_resnet import GatedResNet
from tractable.nn.precision import run_in_full_precision
from tractable.nn.shifted import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    down_shift,
    right_shift,
)
from tractable.nn.weight_norm import NIN, initialize_from_data

NUM_LEVELS = 3  # resolutions H, H/2, H/4
# Where `nonlocal_blocks = n` puts its n blocks: after the stage of the up ("up") or down
# ("down") pass at resolution level L (H / 2^L), lowest resolution first.
ATTENTION_SITES = ("up2", "down2", "up1", "down1")


@dataclass
class PixelCNNPlusPlusConfig(ModelConfig):
    """Hyperparameters; the defaults are the paper's CIFAR-10 model."""

    image_shape: tuple[int, int, int] = setting((3, 32, 32), "(C, H, W) of the images",
                                                minimum=1)
    nr_resnet: int = setting(5, "gated blocks per stream and stage (the down pass adds one "
                                "at H/2 and H)", minimum=0, maximum=MAX_BLOCKS)
    nr_filters: int = setting(160, "channels of every stream", minimum=1,
                             maximum=MAX_WIDTH)
    nr_logistic_mix: int = setting(10, "logistic mixture components per pixel", minimum=1,
                                   maximum=MAX_MIXTURE)
    dropout: float = setting(0.5, "dropout rate inside the gated blocks (training only)",
                             minimum=0.0, maximum=0.999)
    coord_conv: bool = setting(False, "concatenate row/col coordinate channels to the input")
    nonlocal_blocks: int = setting(0, "causal self-attention blocks at H/4 and H/2 (0..4)",
                                   aliases=["--nonlocal"], minimum=0,
                                   maximum=len(ATTENTION_SITES))
    focal_gamma: float = setting(0.0, "> 0: train on the per-pixel focal loss "
                                      "(1-p)^G·(-log p); evaluation stays true bits/dim",
                                 minimum=0.0)

    def validate(self) -> None:
        super().validate()
        _, h, w = self.image_shape
        if h % 4 or w % 4:
            raise ConfigError(
                f"PixelCNN++ halves the resolution twice: height and width must be "
                f"divisible by 4, got {h}x{w} (crop or pad the images)"
            )
        checks = [
            (self.nr_resnet >= 0, f"nr_resnet must be >= 0, got {self.nr_resnet}"),
            (self.nr_filters >= 1, f"nr_filters must be >= 1, got {self.nr_filters}"),
            (self.nr_logistic_mix >= 1,
             f"nr_logistic_mix must be >= 1, got {self.nr_logistic_mix}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.nonlocal_blocks <= len(ATTENTION_SITES),
             f"nonlocal_blocks must be 0..{len(ATTENTION_SITES)}, got {self.nonlocal_blocks}"),
            (self.focal_gamma >= 0.0, f"focal_gamma must be >= 0, got {self.focal_gamma}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@register_model("pixelcnn++")
class PixelCNNPlusPlus(AutoregressiveModel):
    """PixelCNN++ over `uint8 [B, C, H, W]` images; see the module docstring."""

    config_class = PixelCNNPlusPlusConfig
    config: PixelCNNPlusPlusConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # the small CPU configuration; no dropout for runs of a few minutes
        "small": {"nr_resnet": 1, "nr_filters": 32, "nr_logistic_mix": 5, "dropout": 0.0},
        "paper": {"nr_resnet": 5, "nr_filters": 160, "nr_logistic_mix": 10, "dropout": 0.5},
    }
    tiny_settings: ClassVar[dict[str, Any]] = {
        "nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.5,
        "nonlocal_blocks": 1}
    channel_sequential = False  # the mixture models whole pixels
    prefers_channels_last = True  # 1.2x both presets on CPU (bench/train_throughput.py)
    initialized: Tensor

    def compile_after_steps(self, device: torch.device) -> int | None:
        """On CPU, narrow networks (nr_filters <= 64) compile runs of 5,000+ steps: their
        step is mostly element-wise work that compiling fuses (measured 1.36x, warm-up ~3
        min, break-even ~2,000 steps for the small preset); the paper's 160 filters are
        convolution-bound, and there compiling measured slower (0.94x). Elsewhere (CUDA
        included, unmeasured here) only `--compile` compiles."""
        if device.type == "cpu" and self.config.nr_filters <= 64:
            return 5000
        return None

    def __init__(self, config: PixelCNNPlusPlusConfig) -> None:
        super().__init__(config)
        c = config.image_shape[0]
        f, nr, k, p = config.nr_filters, config.nr_resnet, config.num_classes, config.dropout
        self.likelihood = DiscretizedLogisticMixture(c, config.nr_logistic_mix)
        # True once data_dependent_init ran; saved with the weights so reloads skip it.
        self.register_buffer("initialized", torch.tensor(False))

        in_channels = c + 1 + (2 if config.coord_conv else 0)
        self.u_init = DownShiftedConv2d(in_channels, f, (2, 3))
        self.ul_init_down = DownShiftedConv2d(in_channels, f, (1, 3))
        self.ul_init_right = DownRightShiftedConv2d(in_channels, f, (2, 1))

        def u_block(skip: int) -> GatedResNet:
            return GatedResNet(f, DownShiftedConv2d, skip, k, p)

        def ul_block(skip: int) -> GatedResNet:
            return GatedResNet(f, DownRightShiftedConv2d, skip, k, p)

        def stages(counts: list[int], block: Callable[[int], GatedResNet],
                   skip: int) -> nn.ModuleList:
            return nn.ModuleList(nn.ModuleList(block(skip) for _ in range(n)) for n in counts)

        up_counts = [nr] * NUM_LEVELS
        down_counts = [nr] + [nr + 1] * (NUM_LEVELS - 1)
        self.up_u = stages(up_counts, u_block, 0)
        self.up_ul = stages(up_counts, ul_block, f)
        self.down_size_u = nn.ModuleList(
            DownShiftedConv2d(f, f, (2, 3), stride=2) for _ in range(NUM_LEVELS - 1))
        self.down_size_ul = nn.ModuleList(
            DownRightShiftedConv2d(f, f, (2, 2), stride=2) for _ in range(NUM_LEVELS - 1))
        self.down_u = stages(down_counts, u_block, f)
        self.down_ul = stages(down_counts, ul_block, 2 * f)
        self.up_size_u = nn.ModuleList(
            DownShiftedConvTranspose2d(f, f, (2, 3), stride=2) for _ in range(NUM_LEVELS - 1))
        self.up_size_ul = nn.ModuleList(
            DownRightShiftedConvTranspose2d(f, f, (2, 2), stride=2)
            for _ in range(NUM_LEVELS - 1))
        self.attention = nn.ModuleDict(
            {site: CausalNonLocalBlock(f) for site in ATTENTION_SITES[:config.nonlocal_blocks]})
        self.out = NIN(f, self.likelihood.num_params)

    # ---- the network -------------------------------------------------------------------
    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Mixture parameters `[B, P, H, W]` for scaled images `x` in [−1, 1], `[B, C, H, W]`.

        `y`: class indices `[B]` or class weights `[B, K]` (conditional models only).
        Params at pixel i depend only on pixels before i in raster order.
        """
        self._check_input(x)
        h = class_weights(y, self.config.num_classes, x.shape[0])
        if h is not None:
            h = h.to(x.dtype)
        u_stack, ul_stack = self.up_pass(self.network_input(x), h)
        ul = self.down_pass(u_stack, ul_stack, h)
        return run_in_full_precision(self.out, F.elu(ul))

    def network_input(self, x: Tensor) -> Tensor:
        """x ⊕ a channel of ones (tells image from zero padding) ⊕ coordinates if enabled."""
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        return add_coordinate_channels(x) if self.config.coord_conv else x

    def up_pass(self, x: Tensor, h: Tensor | None) -> tuple[list[Tensor], list[Tensor]]:
        """Run the up pass; return the stacks of every u / ul value (the long shortcuts)."""
        u_stack = [down_shift(self.u_init(x))]
        ul_stack = [down_shift(self.ul_init_down(x)) + right_shift(self.ul_init_right(x))]
        for level in range(NUM_LEVELS):
            if level > 0:
                u_stack.append(self.down_size_u[level - 1](u_stack[-1]))
                ul_stack.append(self.down_size_ul[level - 1](ul_stack[-1]))
            for block_u, block_ul in _block_pairs(self.up_u[level], self.up_ul[level]):
                u_stack.append(block_u(u_stack[-1], h=h))
                ul_stack.append(block_ul(ul_stack[-1], a=u_stack[-1], h=h))
            site = f"up{level}"
            if site in self.attention:
                u_stack[-1], ul_stack[-1] = self.attention[site](u_stack[-1], ul_stack[-1])
        return u_stack, ul_stack

    def down_pass(self, u_stack: list[Tensor], ul_stack: list[Tensor], h: Tensor | None) -> Tensor:
        """Run the down pass, consuming the up pass's stacks; return the final ul stream."""
        u, ul = u_stack.pop(), ul_stack.pop()
        for stage in range(NUM_LEVELS):
            level = NUM_LEVELS - 1 - stage
            if stage > 0:
                u = self.up_size_u[stage - 1](u)
                ul = self.up_size_ul[stage - 1](ul)
            for block_u, block_ul in _block_pairs(self.down_u[stage], self.down_ul[stage]):
                u = block_u(u, a=u_stack.pop(), h=h)
                ul = block_ul(ul, a=torch.cat([u, ul_stack.pop()], dim=1), h=h)
            site = f"down{level}"
            if site in self.attention:
                u, ul = self.attention[site](u, ul)
        assert not u_stack and not ul_stack, "every up-pass value is consumed once"
        return ul

    def cached_network(self, batch: int, y: Tensor | None) -> CachedPixelCNNPlusPlus:
        """The incremental form the "cached" sampler runs (`pixelcnn_pp_cached`)."""
        return CachedPixelCNNPlusPlus(self, batch, y)

    # ---- training ----------------------------------------------------------------------
    def loss(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean bits/dim, or with focal_gamma > 0 the per-pixel focal loss on the same scale.

        `metrics["bpd"]` is always the true bits/dim of this batch.
        """
        self.check_images(x)
        params = self(self.scale(x), y)
        log_p = self.likelihood.log_prob(params, self.targets(x))  # [B, H, W], nats
        per_dim = self.num_dims * math.log(2.0)
        bpd = -log_p.sum(dim=(1, 2)).mean() / per_dim
        if self.config.focal_gamma == 0:
            return bpd, {"bpd": bpd.detach()}
        focal = focal_nll(log_p, self.config.focal_gamma).sum(dim=(1, 2)).mean() / per_dim
        return focal, {"bpd": bpd.detach(), "focal": focal.detach()}

    def data_dependent_init(self, x: Tensor, y: Tensor | None = None, force: bool = False) -> None:
        """Weight-norm data-dependent init (Salimans & Kingma, 2016, §3) on one batch.

        Call on the bare model before wrapping it in DDP (DDP then broadcasts rank 0's
        result). Runs in training mode, as openai/pixel-cnn does (dropout active). Skipped
        if the model is already initialized (e.g. loaded from a checkpoint) unless `force`.
        """
        self.check_images(x)
        if bool(self.initialized) and not force:
            return
        was_training = self.training
        self.train()
        try:
            initialize_from_data(self, lambda: self(self.scale(x), y))
        finally:
            self.train(was_training)
        self.initialized.fill_(True)

    @classmethod
    def training_defaults(cls) -> TrainingDefaults:
        """openai/pixel-cnn train.py: Adam(0.95, 0.9995), lr 1e-3 × 0.999995^step, EMA 0.9995."""
        return TrainingDefaults(
            optimizer="adam", lr=1e-3, betas=(0.95, 0.9995), lr_decay=0.999995,
            ema_decay=0.9995, batch_size=16,
        )

    def _check_input(self, x: Tensor) -> None:
        c, h, w = self.config.image_shape
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise ShapeError(
                f"PixelCNN++ forward expects scaled images [B, {c}, {h}, {w}], "
                f"got {list(x.shape)}"
            )
        if not x.is_floating_point():
            raise ShapeError(
                f"PixelCNN++ forward expects images scaled to [-1, 1] (float), got {x.dtype}; "
                "use model.scale(x) or call log_prob/loss with uint8 images"
            )


def _block_pairs(u_stage: nn.Module, ul_stage: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """The (down stream, down-right stream) gated blocks of one stage, in order."""
    return list(zip(cast(nn.ModuleList, u_stage), cast(nn.ModuleList, ul_stage), strict=True))
