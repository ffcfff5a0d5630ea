"""TarFlow: a normalizing flow of causal Transformer blocks over image patches.

Zhai et al., "Normalizing Flows are Capable Generative Models" (ICML 2025), §2: a
Transformer form of Masked Autoregressive Flows. The image (on the [-1, 1] scale) is cut
into N patches of D = C·P² values; T flow blocks (`block.FlowBlock`) each map the patch
sequence autoregressively, the order reversed between consecutive blocks (π^t, §2.2), and
the result has a standard normal prior. The class, when there is one, enters every block
as an embedding (soft labels mix the embeddings).

What `log_prob` returns (the same convention as tractable's Glow)
---------------------------------------------------------------
uint8 values are dequantized uniformly, x_c = (x + u)/256 - 0.5 with u ~ U[0, 1)^D, and
the flow runs on 2·x_c ∈ [-1, 1) (the factor 2 adds D·log 2 to the log-determinant). So

    log_prob(x) = log p_c(x_c) - D·log 256,   u drawn fresh on each call,

a single-sample estimate of the dequantization lower bound on log P(x) (Theis et al.
2016), in nats; `bits_per_dim` is exactly comparable with Glow's. Gaussian noise
augmentation (§2.4, `noise_std`) only changes what training fits: in training mode `loss`
adds N(0, σ²) noise on the [-1, 1] scale to the dequantized images, and its "bpd" metric is
then that of the noised images; `log_prob`, `bits_per_dim` and every evaluation never add it.

Latents and round trips
-----------------------
`encode` gives one latent `[B, C, H, W]` (the final sequence, laid back out as an image),
in a list like Glow's; `decode` inverts it (`tractable.sampling.flow.invert_flow`). The
flow sees the class: `y` selects the blocks' class embedding, and without `y` a
class-conditional model uses its "no class" embedding (what label dropout trained). Both
run in float64 whatever the model's dtype (a float64 view of the weights per call,
`models.flows.in_float64`), and `encode` of uint8 images checks that its latents decode
back to the same images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from tractable.config import TrainingDefaults
from tractable.errors import NumericalError, ShapeError
from tractable.models import flows
from tractable.models.base import TractableModel
from tractable.models.glow.quantize import continuous_input, to_continuous, to_uint8
from tractable.models.registry import register_model
from tractable.models.tarflow.block import BlockStepper, FlowBlock, bounded
from tractable.models.tarflow.config import TarFlowConfig
from tractable.nn.conditioning import class_weights
from tractable.sampling.flow import invert_flow

N_BITS = 8
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def patchify(x: Tensor, p: int) -> Tensor:
    """[B, C, H, W] -> [B, N, C·p²], patches in raster order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(seq: Tensor, p: int, shape: Sequence[int]) -> Tensor:
    """Inverse of `patchify` for images of `shape` (C, H, W)."""
    c, h, w = shape
    b = seq.shape[0]
    x = seq.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


@register_model("tarflow")
class TarFlow(TractableModel):
    """TarFlow over `uint8 [B, C, H, W]` images; see the module docstring."""

    config_class = TarFlowConfig
    config: TarFlowConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # minutes on a CPU for 28×28 (49 patches of 16) and 32×32×3 (64 patches of 48)
        "small": {"patch_size": 4, "width": 128, "blocks": 4, "layers": 2, "heads": 4},
        # the ImageNet 64×64 likelihood model, TarFlow [2-768-8-8] (§3.1)
        "paper": {"patch_size": 2, "width": 768, "blocks": 8, "layers": 8, "heads": 12},
    }
    tiny_settings: ClassVar[dict[str, Any]] = {"patch_size": 2, "width": 16, "blocks": 2,
                                               "layers": 1, "heads": 2}
    default_sampler: ClassVar[str] = "flow-cached"

    def __init__(self, config: TarFlowConfig) -> None:
        super().__init__(config)
        c, h, w = config.image_shape
        p = config.patch_size
        self.length, self.dim = (h // p) * (w // p), c * p * p
        self.blocks = nn.ModuleList(
            FlowBlock(self.length, self.dim, config.width, config.layers, config.heads,
                      config.mlp_ratio, config.num_classes, config.log_scale_bound)
            for _ in range(config.blocks))

    # ---- small facts -----------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        return self.config.num_classes > 0

    @property
    def flow_blocks(self) -> int:
        return self.config.blocks

    @property
    def trained_with_noise(self) -> bool:
        return self.config.noise_std > 0

    def _blocks(self) -> list[FlowBlock]:
        return cast(list[FlowBlock], list(self.blocks))

    def _ref(self) -> Tensor:
        return self._blocks()[0].pos

    def _labels(self, y: Tensor | None, batch: int, optional: bool = False) -> Tensor | None:
        """Class weights `[B, K]`; None for an unconditional model (labels refused) or,
        with `optional`, when a conditional model is given no y (its "no class")."""
        if optional and y is None:
            return None
        return class_weights(y, self.config.num_classes, batch)

    # ---- the bijection ---------------------------------------------------------------
    def to_block_order(self, t: int, seq: Tensor) -> Tensor:
        """Block t's patch order π^t: raster order for even t, reversed for odd t (§2.2)."""
        return seq.flip(1) if t % 2 else seq

    def from_block_order(self, t: int, seq: Tensor) -> Tensor:
        """The inverse of `to_block_order`: a reversal undoes itself."""
        return self.to_block_order(t, seq)

    def bound_log_scale(self, alpha: Tensor) -> Tensor:
        return bounded(alpha, self.config.log_scale_bound)

    def flow(self, x: Tensor, y_w: Tensor | None, drop: Tensor | None = None
             ) -> tuple[Tensor, Tensor]:
        """Patch sequence x `[B, N, D]` (the [-1, 1] scale) -> latent sequence and
        log|det dz/dx| `[B]`."""
        logdet = x.new_zeros(x.shape[0])
        for t, block in enumerate(self._blocks()):
            cond = block.condition(y_w, x.shape[0], drop)
            z, ld = block(self.to_block_order(t, x), cond)
            x = self.from_block_order(t, z)
            logdet = logdet + ld
        return x, logdet

    def _to_sequence(self, x_c: Tensor) -> Tensor:
        return patchify(2.0 * x_c, self.config.patch_size)

    def sequence_to_continuous(self, seq: Tensor) -> Tensor:
        """The flow's input sequence -> images x_c on the [-0.5, 0.5) scale."""
        return unpatchify(seq, self.config.patch_size, self.config.image_shape) / 2.0

    def continuous_to_uint8(self, x_c: Tensor, check_finite: bool = True) -> Tensor:
        """x_c -> uint8 images (the bins holding x_c); `NonFiniteDecodeError` for an image
        holding NaN or inf, unless `check_finite=False` (those sub-pixels become 0)."""
        if check_finite:
            flows.check_finite(x_c)
        return to_uint8(x_c, N_BITS)

    # ---- likelihood ------------------------------------------------------------------
    def _log_density(self, x_c: Tensor, y_w: Tensor | None, drop: Tensor | None = None,
                     noise_std: float = 0.0) -> Tensor:
        """log p_c(x_c) in nats `[B]` (the density on the [-0.5, 0.5) scale)."""
        x = self._to_sequence(x_c)
        if noise_std > 0:
            x = x + noise_std * torch.randn_like(x)
        z, logdet = self.flow(x, y_w, drop)
        log_pz = (-HALF_LOG_2PI - 0.5 * z**2).flatten(1).sum(1)
        return log_pz + logdet + self.num_dims * math.log(2.0)

    def continuous_log_prob(self, x_c: Tensor, y: Tensor | None = None) -> Tensor:
        """log p_c(x_c) in nats, `[B]`: the flow's density at continuous images (y may be
        omitted for a conditional model: its "no class" density)."""
        return self._log_density(x_c, self._labels(y, x_c.shape[0], optional=True))

    def _dequantized(self, x: Tensor, y: Tensor | None,
                     generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        self.check_images(x)
        y_w = self._labels(y, x.shape[0])
        return to_continuous(x, N_BITS, self._ref().dtype, generator=generator), y_w

    def log_prob(self, x: Tensor, y: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """log p_c(x_c) - D·log 256 with fresh uniform noise u: nats per image, `[B]`."""
        x_c, y_w = self._dequantized(x, y, generator)
        return self._log_density(x_c, y_w) - self.num_dims * math.log(2**N_BITS)

    def loss(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean bits/dim. In training mode a conditional model replaces each label by "no
        class" with probability `label_drop`, and `noise_std` > 0 adds the Gaussian noise
        of §2.4 (the metric is then the noised images' bits/dim, not a test number)."""
        x_c, y_w = self._dequantized(x, y, None)
        drop = None
        if self.training and y_w is not None and self.config.label_drop > 0:
            drop = torch.rand(x.shape[0], device=x.device) < self.config.label_drop
        noise = self.config.noise_std if self.training else 0.0
        log_px = self._log_density(x_c, y_w, drop, noise) - self.num_dims * math.log(2**N_BITS)
        bpd = (-log_px / (self.num_dims * math.log(2.0))).mean()
        return bpd, {"bpd": bpd.detach()}

    # ---- denoising (§2.5) ------------------------------------------------------------
    def denoise(self, x_c: Tensor, y: Tensor | None) -> Tensor:
        """One score step, x ← x + σ²·∇_x log p(x) (Tweedie's formula) on the scale the
        noise was added ([-1, 1]; σ = noise_std), returned on the x_c scale."""
        sigma_c = self.config.noise_std / 2.0  # the same noise on the x_c = x/2 scale
        if sigma_c == 0:
            return x_c
        y_w = self._labels(y, x_c.shape[0], optional=True)
        with torch.enable_grad():
            v = x_c.detach().requires_grad_(True)
            (score,) = torch.autograd.grad(self._log_density(v, y_w).sum(), v)
        return (x_c + sigma_c**2 * score).detach()

    # ---- sampling through `tractable.sampling.flow` ----------------------------------
    def prior_sequence(self, n: int, temperature: float,
                       generator: torch.Generator | None) -> Tensor:
        """z ~ N(0, T²·I), `[n, N, D]`."""
        ref = self._ref()
        z = torch.randn((n, self.length, self.dim), generator=generator, dtype=ref.dtype,
                        device=ref.device)
        return z * temperature

    def _condition(self, t: int, batch: int, y: Tensor | None, drop_class: bool
                   ) -> Tensor | None:
        y_w = None if drop_class else self._labels(y, batch, optional=True)
        return self._blocks()[t].condition(y_w, batch)

    def block_params(self, t: int, seq: Tensor, y: Tensor | None, *, drop_class: bool = False,
                     attention_temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """(μ, α) `[B, N, D]` of block t over `seq` (in the block's order), one full pass."""
        cond = self._condition(t, seq.shape[0], y, drop_class)
        return self._blocks()[t].params(seq, cond, attention_temperature)

    def block_stepper(self, t: int, batch: int, y: Tensor | None, *, drop_class: bool = False,
                      attention_temperature: float = 1.0) -> BlockStepper:
        """Block t run one patch at a time from key/value caches."""
        cond = self._condition(t, batch, y, drop_class)
        return self._blocks()[t].stepper(batch, cond, attention_temperature)

    # ---- latents (the Glow interface) ------------------------------------------------
    def _in_float64(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` with the weights seen in float64 (`flows.in_float64`)."""
        return flows.in_float64(self, self._ref(), fn, *args)

    def encode(self, x: Tensor, y: Tensor | None = None, check: bool = True) -> list[Tensor]:
        """Images -> `[z]`, z `[B, C, H, W]` float64: the latent sequence laid out as the image.

        uint8 images sit at their bins' centres (deterministic); a float tensor is taken as
        x_c. With `check` (uint8 input), the latents are decoded again (with the same
        float64 view of the weights) and `NumericalError` names any image that would not
        come back exactly."""
        x_c = continuous_input(self, x, N_BITS, torch.float64)
        y_w = self._labels(y, x_c.shape[0], optional=True)
        check = check and x.dtype == torch.uint8

        def encode_and_decode() -> tuple[list[Tensor], Tensor | None]:
            z, _ = self.flow(self._to_sequence(x_c), y_w)
            latents = [unpatchify(z, self.config.patch_size, self.config.image_shape)]
            return latents, self.decode(latents, y, check_finite=False) if check else None

        with torch.no_grad():
            latents, back = self._in_float64(encode_and_decode)
        if back is not None:
            bad = (back != x).flatten(1).any(1).nonzero().flatten().tolist()
            if bad:
                raise NumericalError(
                    f"{len(bad)} of {len(x)} images (batch indices {bad[:10]}) would not "
                    "decode back exactly; encode(..., check=False) returns their latents "
                    "anyway")
        return latents

    def _check_latents(self, latents: Sequence[Tensor]) -> Tensor:
        shape = list(self.config.image_shape)
        if not isinstance(latents, (list, tuple)) or len(latents) != 1 or \
                list(latents[0].shape[1:]) != shape:
            got = [list(z.shape) for z in latents] if isinstance(latents, (list, tuple)) \
                else type(latents).__name__
            raise ShapeError(f"latents must be a list of one tensor [B, {shape}] (as "
                             f"`encode` returns), got {got}")
        return latents[0]

    def decode_continuous(self, latents: Sequence[Tensor], y: Tensor | None = None) -> Tensor:
        """Exact inverse of `encode` on the continuous scale: latents -> x_c (float64 for
        float64 latents, else the model's dtype)."""
        z = self._check_latents(latents)

        def inverse() -> Tensor:
            seq = patchify(z.to(self._ref().dtype), self.config.patch_size)
            return self.sequence_to_continuous(invert_flow(self, seq, y))

        with torch.no_grad():
            return cast(Tensor, self._in_float64(inverse) if z.dtype == torch.float64
                        else inverse())

    def decode(self, latents: Sequence[Tensor], y: Tensor | None = None,
               check_finite: bool = True) -> Tensor:
        """Latents -> uint8 images (the bin containing `decode_continuous(latents)`)."""
        return self.continuous_to_uint8(self.decode_continuous(latents, y), check_finite)

    def prior_latents(self, n: int, y: Tensor | None, temperature: float,
                      generator: torch.Generator | None) -> list[Tensor]:
        """`[z]` for `decode`, z ~ N(0, T²·I) laid out as an image."""
        self._labels(y, n, optional=True)
        seq = self.prior_sequence(n, temperature, generator)
        return [unpatchify(seq, self.config.patch_size, self.config.image_shape)]

    @classmethod
    def training_defaults(cls) -> TrainingDefaults:
        """The paper trains with AdamW, betas (0.9, 0.95), a cosine schedule to a 1e-4 peak
        at large batches (§3); for the small batches of a CPU: Adam (0.9, 0.95) at 5e-4 with
        a warm-up, gradient clipping and Polyak averaging."""
        return TrainingDefaults(optimizer="adam", lr=5e-4, betas=(0.9, 0.95), warmup_steps=200,
                                ema_decay=0.999, grad_clip=1.0, batch_size=16)
