"""Sampling autoregressive flows (TarFlow: Zhai et al. 2025, §2.2 and §2.5–2.6).

A block maps x to z_i = (x_i - μ_i(x_<i))·exp(-α_i(x_<i)), so its inverse runs patch by
patch in the block's order: x_i = μ_i + z_i·exp(α_i), once x_<i is known. `invert_flow`
undoes the blocks last to first, each in one of two ways that give the same result:

* cached (`flow-cached`, the default): the block's incremental form (`FlowStepper`) keeps
  every layer's keys and values, so each step runs one token through the Transformer;
* naive (`flow-naive`): the block's full pass is recomputed for every patch (the
  reference; N full passes per block).

Options of `sample_flow`, which both registered samplers take as keywords (their defaults
when drawn by name):

* temperature T: the prior's latent is z ~ N(0, T²·I) (T = 0: z = 0);
* `denoise`: the score-based denoising step of §2.5, x ← x + σ²·∇ log p(x) (Tweedie),
  with σ the Gaussian noise the model was trained with; default: on exactly when the
  model was trained with noise (σ = 0 makes it the identity anyway);
* `guidance` w (§2.6): each (μ, α) becomes (1 + w)·strong - w·weak, per patch, where weak
  is the same block given the "no class" embedding (class-conditional models: classifier-
  free guidance) or attention logits divided by `attention_temperature` τ (unconditional
  models; τ is required there). The guided log-scale is bounded again like the model's.

The generator is consumed once, for the whole latent, before any block is inverted, so
cached and naive sampling give the same images from the same generator (exactly in
float64). This module sees models only through `AutoregressiveFlowSampleable`.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from tractable.errors import NonFiniteDecodeError, TractableError
from tractable.sampling.prior import sampling_remedy
from tractable.sampling.progress import Callback, report
from tractable.sampling.protocol import SampleableModel
from tractable.sampling.registry import register_sampler

Params = tuple[Tensor, Tensor]


class FlowStepper(Protocol):
    """One autoregressive flow block run position by position (keys/values cached).

        params_at(i) -> (mu, alpha)  shift and log-scale `[B, D]` of patch i, once
                                     patches 0..i-1 were observed
        observe(i, patch)            patch i `[B, D]` of the block's input
    """

    def params_at(self, i: int) -> tuple[Tensor, Tensor]: ...
    def observe(self, i: int, patch: Tensor) -> None: ...


@runtime_checkable
class AutoregressiveFlowSampleable(SampleableModel, Protocol):
    """A flow of `flow_blocks` blocks over a patch sequence `[B, N, D]`; block t maps its
    input x to z_i = (x_i - mu_i) * exp(-alpha_i) in its own patch order, with (mu_i,
    alpha_i) depending on x_<i only. `drop_class` asks for the "no class" conditioning and
    `attention_temperature` for the softened attention that guidance contrasts with.
    """

    @property
    def flow_blocks(self) -> int: ...
    @property
    def conditional(self) -> bool: ...
    def prior_sequence(self, n: int, temperature: float,
                       generator: torch.Generator | None) -> Tensor: ...
    def to_block_order(self, t: int, seq: Tensor) -> Tensor: ...
    def from_block_order(self, t: int, seq: Tensor) -> Tensor: ...
    def block_params(self, t: int, seq: Tensor, y: Tensor | None, *, drop_class: bool = False,
                     attention_temperature: float = 1.0) -> tuple[Tensor, Tensor]: ...
    def block_stepper(self, t: int, batch: int, y: Tensor | None, *, drop_class: bool = False,
                      attention_temperature: float = 1.0) -> FlowStepper: ...
    def bound_log_scale(self, alpha: Tensor) -> Tensor: ...
    def sequence_to_continuous(self, seq: Tensor) -> Tensor: ...
    def denoise(self, x_c: Tensor, y: Tensor | None) -> Tensor: ...
    def continuous_to_uint8(self, x_c: Tensor) -> Tensor: ...
    @property
    def trained_with_noise(self) -> bool: ...



def _streams(model: AutoregressiveFlowSampleable, guidance: float,
             attention_temperature: float | None) -> list[tuple[bool, float]]:
    """(drop_class, attention temperature) of the strong stream and, with guidance, the
    weak one."""
    strong = (False, 1.0)
    if guidance == 0.0:
        return [strong]
    if model.conditional:
        return [strong, (True, attention_temperature or 1.0)]
    if attention_temperature is None or attention_temperature == 1.0:
        raise TractableError("guidance of an unconditional model contrasts it with a softened "
                             "copy of itself: pass attention_temperature τ != 1 (e.g. 1.5)")
    return [strong, (False, attention_temperature)]


def _combine(model: AutoregressiveFlowSampleable, params: list[Params], w: float) -> Params:
    if len(params) == 1:
        return params[0]
    (mu_s, a_s), (mu_w, a_w) = params
    return mu_s + w * (mu_s - mu_w), model.bound_log_scale(a_s + w * (a_s - a_w))


def _at(params: Params, i: int) -> Params:
    return params[0][:, i], params[1][:, i]


def _invert_block(model: AutoregressiveFlowSampleable, t: int, z: Tensor, y: Tensor | None,
                  streams: list[tuple[bool, float]], w: float, cached: bool) -> Tensor:
    """Block t's input x from its output z (both `[B, N, D]`, in the block's order)."""
    b, n, _ = z.shape
    x = torch.zeros_like(z)
    steppers: list[FlowStepper] = [
        model.block_stepper(t, b, y, drop_class=drop, attention_temperature=tau)
        for drop, tau in streams] if cached else []
    for i in range(n):
        if cached:
            params = [s.params_at(i) for s in steppers]
        else:  # x_≥i are still zeros, which patch i's parameters do not read
            params = [_at(model.block_params(t, x, y, drop_class=drop,
                                             attention_temperature=tau), i)
                      for drop, tau in streams]
        mu, alpha = _combine(model, params, w)
        x[:, i] = mu + z[:, i] * torch.exp(alpha)
        for s in steppers:
            s.observe(i, x[:, i])
    return x


def invert_flow(model: AutoregressiveFlowSampleable, z: Tensor, y: Tensor | None = None, *,
                cached: bool = True, guidance: float = 0.0,
                attention_temperature: float | None = None,
                callback: Callback | None = None) -> Tensor:
    """The flow's input sequence from its latent sequence `z` `[B, N, D]`, blocks last to
    first (`cached`: incremental; else recomputed per patch), telling `callback` after
    each block (`unit="block"`). No gradients are needed."""
    if not math.isfinite(guidance) or guidance < 0:
        raise TractableError(f"guidance must be a finite number >= 0, got {guidance}")
    streams = _streams(model, guidance, attention_temperature)
    x = z
    for t in reversed(range(model.flow_blocks)):
        x = model.to_block_order(t, x)
        x = _invert_block(model, t, x, y, streams, guidance, cached)
        x = model.from_block_order(t, x)
        report(callback, model.flow_blocks - t, model.flow_blocks, "block")
    return x


def _draw(model: AutoregressiveFlowSampleable, n: int, y: Tensor | None, temperature: float,
          generator: torch.Generator | None, cached: bool, denoise: bool | None,
          guidance: float, attention_temperature: float | None,
          callback: Callback | None) -> Tensor:
    z = model.prior_sequence(n, temperature, generator)
    with torch.no_grad():
        x_c = model.sequence_to_continuous(invert_flow(
            model, z, y, cached=cached, guidance=guidance,
            attention_temperature=attention_temperature, callback=callback))
    if model.trained_with_noise if denoise is None else denoise:
        x_c = model.denoise(x_c, y)
    try:
        return model.continuous_to_uint8(x_c)
    except NonFiniteDecodeError as e:
        raise e.with_remedy(sampling_remedy(temperature)) from None


def sample_flow(model: AutoregressiveFlowSampleable, n: int, *, y: Tensor | None = None,
                temperature: float = 1.0, generator: torch.Generator | None = None,
                callback: Callback | None = None, cached: bool = True,
                denoise: bool | None = None, guidance: float = 0.0,
                attention_temperature: float | None = None) -> Tensor:
    """Draw `n` images `uint8 [n, C, H, W]` with the options of the module docstring:
    the registered sampler `flow-cached` (or `flow-naive`) given those options."""
    draw = sample_flow_cached if cached else sample_flow_naive
    return draw(model, n, y=y, temperature=temperature, generator=generator,
                callback=callback, denoise=denoise, guidance=guidance,
                attention_temperature=attention_temperature)


@register_sampler("flow-cached", needs=AutoregressiveFlowSampleable, zero_temperature=True,
                  help="autoregressive flows: inverse patch by patch, one token per step "
                       "from key/value caches (default of TarFlow)")
def sample_flow_cached(model: AutoregressiveFlowSampleable, n: int, *,
                       y: Tensor | None = None, temperature: float = 1.0,
                       generator: torch.Generator | None = None,
                       callback: Callback | None = None, denoise: bool | None = None,
                       guidance: float = 0.0, attention_temperature: float | None = None
                       ) -> Tensor:
    return _draw(model, n, y, temperature, generator, True, denoise, guidance,
                 attention_temperature, callback)


@register_sampler("flow-naive", needs=AutoregressiveFlowSampleable, zero_temperature=True,
                  help="autoregressive flows: inverse patch by patch, each block recomputed "
                       "in full per patch (reference)")
def sample_flow_naive(model: AutoregressiveFlowSampleable, n: int, *,
                      y: Tensor | None = None, temperature: float = 1.0,
                      generator: torch.Generator | None = None,
                      callback: Callback | None = None, denoise: bool | None = None,
                      guidance: float = 0.0, attention_temperature: float | None = None
                      ) -> Tensor:
    return _draw(model, n, y, temperature, generator, False, denoise, guidance,
                 attention_temperature, callback)
