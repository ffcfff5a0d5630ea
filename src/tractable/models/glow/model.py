"""Glow: a multi-scale flow of ActNorm, invertible 1×1 convolutions and couplings.

Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions" (NeurIPS 2018);
layout and details follow the reference code openai/glow.

What `log_prob` returns
-----------------------
The flow is a density p_c on the continuous scale x_c = (x_q + u)/n_bins - 0.5 (see
`quantize`). `log_prob(x)` is the single-sample estimate

    log_prob(x) = log p_c(x_c) - D·log(n_bins),   u ~ U[0, 1)^D drawn fresh on each call,

of the dequantization lower bound E_u[log p_c(x_c)] - D·log(n_bins) <= log P(x_q): nats per
image, in expectation a lower bound on the exact discrete log-likelihood (Theis et al. 2016).
Pass a seeded `generator` to repeat the same u. `bits_per_dim = -log_prob / (D·ln 2)` is
then exactly the paper's (and openai/glow's) `bits_x`, including the -log(n_bins)·D term;
with n_bits < 8 it is bits per n_bits-bit sub-pixel, as in the paper's 5-bit results.

Latents
-------
`encode` maps images to one latent per level, nothing thrown away: for each split level i the
factored-out half expressed in its prior's standard form eps_i = (z_i - mean_i)/exp(logs_i)
(mean_i, logs_i computed from the kept half), and the raw top latent z_L last. The flow and
the split priors do not see y, so the latents do not depend on y; only the top prior does.
`sample` is `decode` of eps_i ~ N(0, T²) and z_L ~ N(mean_y, (T·exp(logs_y))²): temperature T
scales the prior's std at every level.

Exact round trips
-----------------
`decode(encode(x)) == x` needs the inverse to land within half a bin (1/(2·n_bins)) of the
bin centre. Floating-point error in the latents is amplified on the way back by the inverse
of every contraction the flow applies; the strong ones are affine couplings whose scale
is near 0 (with openai's unbounded sigmoid(h + 2), after training at a high learning rate,
1e-5..1e-10 on uniform noise images, versus 1e-2 on digits; the default scale floor keeps
every scale above 0.05), so the error at the image is about eps · Π 1/scale along a
sub-pixel's path. float32 (eps 6e-8) fails once that product passes
~1e4, which a trained model reaches on noise and occasionally on real images; float64
(eps 1e-16) holds to ~1e13. `encode` and `decode` therefore compute in float64 whatever the
model's dtype (a float64 view of the weights per call) and return float64 latents; and
`encode` of uint8 images decodes its own result and raises `NumericalError` for images the
flow compresses beyond even float64 (`check=False` skips that), so every latent `encode`
returns decodes back to its image bit for bit. `decode` runs in float64 for float64 latents
and in the model's dtype otherwise: sampling (the prior's latents, in the model's dtype)
needs no exact round trip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from tractable.config import TrainingDefaults
from tractable.errors import NumericalError, ShapeError
from tractable.models.base import TractableModel
from tractable.models.flows import MOVED_LATENTS_REMEDY, check_finite, in_float64
from tractable.models.glow.actnorm import ActNorm
from tractable.models.glow.config import GlowConfig
from tractable.models.glow.multiscale import Level, squeeze2d, unsqueeze2d
from tractable.models.glow.prior import TopPrior, gaussian_log_prob
from tractable.models.glow.quantize import continuous_input, to_continuous, to_uint8
from tractable.models.glow.step import FlowStep
from tractable.models.registry import register_model
from tractable.nn.conditioning import class_weights


@register_model("glow")
class Glow(TractableModel):
    """Glow over `uint8 [B, C, H, W]` images; see the module docstring for what it computes."""

    config_class = GlowConfig
    config: GlowConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"K": 8, "L": 2, "width": 128},
        "paper": {"K": 32, "L": 3, "width": 512},  # the CIFAR-10 / ImageNet 32×32 model
    }
    tiny_settings: ClassVar[dict[str, Any]] = {"K": 2, "L": 2, "width": 8}

    def __init__(self, config: GlowConfig) -> None:
        super().__init__(config)
        c, h, w = config.image_shape
        self.levels = nn.ModuleList()
        self.latent_shapes: list[tuple[int, int, int]] = []
        for i in range(config.L):
            c, h, w = 4 * c, h // 2, w // 2
            last = i == config.L - 1
            self.levels.append(Level(c, config.K, config.width, config.coupling == "affine",
                                     config.lu, split=not last, edge_bias=config.edge_bias,
                                     init_std=config.hidden_init_std,
                                     scale_floor=config.coupling_scale_floor,
                                     max_log_std=config.split_max_log_std))
            if not last:
                self.latent_shapes.append((c // 2, h, w))
                c -= c // 2
        self.latent_shapes.append((c, h, w))
        n_y = config.num_classes if self.conditional else 0
        self.top_prior = TopPrior((c, h, w), config.learn_top, n_y, config.border_top_prior)
        self.classifier = nn.Linear(c, n_y) if n_y else None  # openai/glow `ycond` head
        if self.classifier is not None:
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)
        self._initialized: bool | None = None  # cache of all ActNorms' `initialized` buffers

    # ---- small facts -----------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        """True when the top prior depends on the class (y_condition and num_classes > 0)."""
        return self.config.y_condition and self.config.num_classes > 0

    @property
    def n_bins(self) -> int:
        return 2**self.config.n_bits

    def _levels(self) -> list[Level]:
        return cast(list[Level], list(self.levels))

    def _ref(self) -> Tensor:
        return self.top_prior.learned  # a parameter or buffer: the model's dtype and device

    def _labels(self, y: Tensor | None, batch: int) -> Tensor | None:
        """Class weights `[B, K]` for a conditional model; None otherwise (y is ignored when
        y_condition is off, refused when the model has no classes)."""
        if self.conditional:
            return class_weights(y, self.config.num_classes, batch)
        if self.config.num_classes == 0:
            class_weights(y, 0, batch)
        return None

    # ---- the bijection ---------------------------------------------------------------
    def _run_step(self, step: FlowStep, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.config.checkpoint_grads and torch.is_grad_enabled():
            # Store only the step's input; recompute its insides during backward.
            return checkpoint(step, z, use_reentrant=False)  # type: ignore[return-value]
        return step(z)

    def _forward(self, x_c: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
        """x_c -> (raw latents, latents in encode's form, log|det J| of x_c -> raw latents,
        Σ log p(z_i | kept_i) over split levels)."""
        z = x_c
        logdet = x_c.new_zeros(x_c.shape[0])
        log_p_splits = x_c.new_zeros(x_c.shape[0])
        raw: list[Tensor] = []
        eps: list[Tensor] = []
        for level in self._levels():
            z = squeeze2d(z)
            for step in level.flow_steps():
                z, ld = self._run_step(step, z)
                logdet = logdet + ld
            if level.split is not None:
                z, z_out = level.split.divide(z)
                mean, logs = level.split.prior_params(z)
                log_p_splits = log_p_splits + gaussian_log_prob(z_out, mean, logs)
                raw.append(z_out)
                eps.append((z_out - mean) * torch.exp(-logs))
        raw.append(z)
        eps.append(z)
        return raw, eps, logdet, log_p_splits

    def flow(self, x_c: Tensor) -> tuple[list[Tensor], Tensor]:
        """The bijection alone: x_c -> raw latents (z_1, …, z_L) and log|det dz/dx_c|, `[B]`."""
        raw, _, logdet, _ = self._forward(x_c)
        return raw, logdet

    def _in_float64(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` with the weights seen in float64 (`flows.in_float64`; see "Exact
        round trips" above)."""
        return in_float64(self, self._ref(), fn, *args)

    def encode(self, x: Tensor, y: Tensor | None = None, check: bool = True) -> list[Tensor]:
        """Images -> one latent per level (split levels standardized, raw top last), float64.

        uint8 images are placed at their bins' centres, x_c = (x_q + 0.5)/n_bins - 0.5, so
        encoding is deterministic; a float tensor is taken as x_c itself (e.g. dequantized).
        For uint8 images with `check` (default), the latents are decoded again and
        `NumericalError` is raised, naming the images, if any pixel would not come back
        exactly (see "Exact round trips"). `y` is optional even for a class-conditional
        model, and checked but unused when given: the flow does not see the class.
        """
        x_c = continuous_input(self, x, self.config.n_bits, torch.float64)
        if y is not None:
            self._labels(y, x_c.shape[0])
        latents: list[Tensor] = self._in_float64(lambda v: self._forward(v)[1], x_c)
        if check and x.dtype == torch.uint8:
            self._check_round_trip(x, latents)
        return latents

    def _check_round_trip(self, x: Tensor, latents: list[Tensor]) -> None:
        with torch.no_grad():
            back = self.decode([z.detach() for z in latents], check_finite=False)
        wrong = (back != x).flatten(1).sum(1)
        bad = wrong.nonzero().flatten().tolist()
        if bad:
            raise NumericalError(
                f"{len(bad)} of {len(x)} images (batch indices {bad[:10]}"
                f"{' ...' if len(bad) > 10 else ''}; {int(wrong.sum())} sub-pixels) would not "
                "decode back exactly: the flow contracts them beyond float64 precision "
                "(typical of images far from the training data, e.g. noise, for a model "
                "trained at a high learning rate). encode(..., check=False) returns their "
                "latents anyway"
            )

    def _check_latents(self, latents: Sequence[Tensor]) -> int:
        expected = [list(s) for s in self.latent_shapes]
        got = [list(z.shape[1:]) for z in latents] if isinstance(latents, (list, tuple)) else None
        batch = {z.shape[0] for z in latents} if got is not None else set()
        if got != expected or len(batch) != 1:
            raise ShapeError(
                f"latents must be a list of {len(expected)} tensors [B, *shape] with shapes "
                f"{expected} (one per level, as `encode` returns), got "
                f"{[list(z.shape) for z in latents] if got is not None else type(latents)}"
            )
        return batch.pop()

    def _inverse(self, latents: Sequence[Tensor]) -> Tensor:
        """latents -> x_c in the dtype of the model's tensors as currently seen."""
        z = latents[-1].to(self._ref().dtype)
        for i, level in reversed(list(enumerate(self._levels()))):
            if level.split is not None:
                mean, logs = level.split.prior_params(z)
                z = level.split.join(z, mean + torch.exp(logs) * latents[i].to(z.dtype))
            for step in reversed(level.flow_steps()):
                z = step.inverse(z)
            z = unsqueeze2d(z)
        return z

    def decode_continuous(self, latents: Sequence[Tensor], y: Tensor | None = None) -> Tensor:
        """Exact inverse of `encode` on the continuous scale: latents -> x_c.

        Computed in float64 when the latents are float64 (as `encode` returns them), else
        in the model's dtype (e.g. the prior's latents when sampling, which need no exact
        round trip). `y`, as for `encode`, is optional and does not change the result."""
        batch = self._check_latents(latents)
        if y is not None:
            self._labels(y, batch)
        if all(z.dtype == torch.float64 for z in latents):
            return cast(Tensor, self._in_float64(self._inverse, list(latents)))
        return self._inverse(latents)

    def decode(self, latents: Sequence[Tensor], y: Tensor | None = None,
               check_finite: bool = True) -> Tensor:
        """Latents -> uint8 images (the bin containing `decode_continuous(latents)`).

        Raises `NonFiniteDecodeError` (a `NumericalError`) if an image decodes to non-finite
        values (there is no bin to put them in), unless `check_finite=False` (those
        sub-pixels then become 0). With the default bounds (a coupling scale floor, a cap
        on the split priors' log-std) no step of the inverse is an exponential of the
        latent, so only gains beyond float range can overflow (docs/glow.md)."""
        x_c = self.decode_continuous(latents, y)
        if check_finite:
            _check_finite(x_c, bounded=self.config.coupling_scale_floor > 0
                          and self.config.split_max_log_std is not None)
        return to_uint8(x_c, self.config.n_bits)

    # ---- likelihood ------------------------------------------------------------------
    def continuous_log_prob(self, x_c: Tensor, y: Tensor | None = None) -> Tensor:
        """log p_c(x_c) in nats, `[B]`: the flow's density at continuous inputs."""
        return self._log_density(x_c, self._labels(y, x_c.shape[0]))[0]

    def _log_density(self, x_c: Tensor, y_w: Tensor | None) -> tuple[Tensor, Tensor]:
        _, eps, logdet, log_p_splits = self._forward(x_c)
        z_top = eps[-1]
        mean, logs = self.top_prior(x_c.shape[0], y_w)
        return log_p_splits + gaussian_log_prob(z_top, mean, logs) + logdet, z_top

    def _evaluate(
        self, x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        self.check_images(x)
        y_w = self._labels(y, x.shape[0])
        x_c = to_continuous(x, self.config.n_bits, self._ref().dtype, generator=generator)
        if self.training and not self.is_initialized():
            self._initialize_actnorms(x_c)
        log_pc, z_top = self._log_density(x_c, y_w)
        return log_pc - self.num_dims * math.log(self.n_bins), z_top, y_w

    def log_prob(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """log p_c(x_c) - D·log(n_bins) with fresh uniform noise u: nats per image, `[B]`."""
        return self._evaluate(x, y, generator)[0]

    def loss(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean bits/dim, plus weight_y × classification bits on the top latent (ycond)."""
        log_px, z_top, y_w = self._evaluate(x, y, None)
        bpd = -log_px / (self.num_dims * math.log(2.0))
        total = bpd.mean()
        metrics = {"bpd": total.detach()}
        if self.classifier is not None and y_w is not None:
            logits = self.classifier(z_top.mean(dim=(2, 3))).float()
            bits_y = -(y_w.float() * F.log_softmax(logits, dim=1)).sum(1) / math.log(2.0)
            total = total + self.config.weight_y * bits_y.mean()
            metrics["bits_y"] = bits_y.mean().detach()
            metrics["acc_y"] = (logits.argmax(1) == y_w.argmax(1)).float().mean().detach()
        return total, metrics

    # ---- sampling --------------------------------------------------------------------
    default_sampler: ClassVar[str] = "prior"  # `tractable.sampling.prior`: decode(latents)

    def prior_latents(self, n: int, y: Tensor | None, temperature: float,
                      generator: torch.Generator | None) -> list[Tensor]:
        """Latents for `decode`: eps_i ~ N(0, T²) per split level, z_L ~ N(mean_y, (T·std_y)²)."""
        y_w = self._labels(y, n)
        ref = self._ref()

        def noise(shape: tuple[int, int, int]) -> Tensor:
            e = torch.randn((n, *shape), generator=generator, dtype=ref.dtype, device=ref.device)
            return e * temperature

        mean, logs = self.top_prior(n, y_w)
        top = mean + torch.exp(logs) * noise(self.latent_shapes[-1])
        return [noise(s) for s in self.latent_shapes[:-1]] + [top]

    # ---- ActNorm data-dependent initialization ---------------------------------------
    def _actnorms(self) -> list[ActNorm]:
        return [m for m in self.modules() if isinstance(m, ActNorm)]

    def is_initialized(self) -> bool:
        """True once every ActNorm had its data-dependent initialization."""
        if self._initialized is None:
            self._initialized = all(bool(m.initialized) for m in self._actnorms())
        return self._initialized

    @torch.no_grad()
    def _initialize_actnorms(self, x_c: Tensor) -> None:
        pending = [m for m in self._actnorms() if not bool(m.initialized)]
        for m in pending:
            m.init_pending = True
        try:
            self._forward(x_c)
        finally:
            for m in pending:
                m.init_pending = False
        self._initialized = None

    def data_dependent_init(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> None:
        """Initialize every not-yet-initialized ActNorm from one dequantized batch (Glow §3.1).

        Each ActNorm is set in turn, in forward order, so that its output on this batch has
        zero mean and unit variance per channel. Already initialized ActNorms (e.g. of a
        loaded model) are kept. A model put in training mode without this call initializes
        itself on its first training batch, as openai/glow does. `y` is optional (checked
        when given): no ActNorm sees the class.
        """
        self.check_images(x)
        if y is not None:
            self._labels(y, x.shape[0])
        x_c = to_continuous(x, self.config.n_bits, self._ref().dtype, generator=generator)
        self._initialize_actnorms(x_c)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[no-untyped-def, override]
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._initialized = None
        return result

    @classmethod
    def training_defaults(cls) -> TrainingDefaults:
        """openai/glow: Adamax, lr 1e-3 with linear warm-up, Polyak averaging, batch 64 per
        process; plus gradient clipping, since Glow is prone to early NaNs."""
        return TrainingDefaults(optimizer="adamax", lr=1e-3, warmup_steps=500, ema_decay=0.999,
                                grad_clip=50.0, batch_size=64)


def _check_finite(x_c: Tensor, bounded: bool) -> None:
    """Raise `NonFiniteDecodeError` with the count of images holding a NaN or ±inf.

    The remedy named is for latents a user moved (edits, blends); the prior sampler
    replaces it with its own (the temperature)."""
    remedy = MOVED_LATENTS_REMEDY
    if not bounded:
        remedy += (", or use a model trained with a bounded inverse (coupling_scale_floor > 0 "
                   "and split_max_log_std set, the defaults for new models; this one lacks "
                   "them, as models saved before they existed)")
    check_finite(x_c, remedy)
