"""Optimizers and the learning-rate schedule, from a family's paper defaults.

Each model family states its paper's settings in `training_defaults()` (a
`tractable.config.TrainingDefaults`); the user overrides single fields. The schedule is a
pure function of the step, so a resumed run needs no scheduler state:

    lr(t) = lr · lr_decay^t · min(1, (t + 1) / warmup_steps)

PixelCNN++ (Salimans et al., 2017, Sec. 3 and the reference code): Adam, lr 1e-3,
betas (0.95, 0.9995), lr × 0.999995 per step. Glow (Kingma & Dhariwal, 2018, Sec. 5):
Adamax, lr 1e-3 with linear warm-up.

"openai-adamax" is the Adamax of openai/glow's `optim.adamax`, which differs from
`torch.optim.Adamax` (Kingma & Ba 2015, Algorithm 2) in two places:

    m_t = β1·m + (1 − β1)·g,   u_t = max(β2·u, |g|)
    θ  -= lr · sqrt(1 − β2^t) / (1 − β1^t) · m_t / (u_t + ε)        (ε = 1e-8)

i.e. the step also carries Adam's second-moment bias correction sqrt(1 − β2^t), and ε is
added at the division instead of to |g| inside the max. With openai's β2 = 1 − 1/(iterations
per epoch) the extra factor keeps the first epoch's steps small.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from tractable.config import TrainingDefaults
from tractable.errors import ConfigError

OPTIMIZERS: tuple[str, ...] = next(
    f for f in dataclasses.fields(TrainingDefaults) if f.name == "optimizer").metadata["choices"]


def resolve_defaults(defaults: TrainingDefaults, overrides: dict[str, Any]) -> TrainingDefaults:
    """The family's defaults with the user's non-None `overrides` applied and checked."""
    known = {f.name for f in dataclasses.fields(TrainingDefaults)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown optimizer setting(s) {unknown}; known: {sorted(known)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if "betas" in given:
        given["betas"] = tuple(float(b) for b in given["betas"])
    d = dataclasses.replace(defaults, **given)
    check_defaults(d)
    return d


def check_defaults(d: TrainingDefaults) -> None:
    """Raise `ConfigError` for settings no optimizer can run with."""
    if d.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {d.optimizer!r}; use one of {OPTIMIZERS}")
    if not 0 < d.lr < math.inf:
        raise ConfigError(f"learning rate must be > 0 and finite, got {d.lr}")
    if len(d.betas) != 2 or not all(0.0 <= b < 1.0 for b in d.betas):
        raise ConfigError(f"betas must be two numbers in [0, 1), got {d.betas}")
    if not 0.0 < d.lr_decay <= 1.0:
        raise ConfigError(f"lr_decay is a per-step factor in (0, 1], got {d.lr_decay}")
    if d.warmup_steps < 0 or d.batch_size < 1:
        raise ConfigError("warmup_steps must be >= 0 and batch_size >= 1")
    if not 0.0 <= d.ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {d.ema_decay}")
    if d.grad_clip is not None and not d.grad_clip >= 0:
        raise ConfigError(f"grad_clip must be > 0 (or 0 / unset: no clipping), got "
                          f"{d.grad_clip}")
    if not 0.0 <= d.weight_decay < math.inf:
        raise ConfigError(f"weight_decay must be >= 0 and finite, got {d.weight_decay}")


def build_optimizer(params: Iterable[nn.Parameter], d: TrainingDefaults,
                    fused: bool = False) -> torch.optim.Optimizer:
    """Adam or Adamax with the settings of `d` (the lr is set per step by `lr_at`).

    `fused`: Adam's update as one kernel per parameter (same algorithm; on CPU the default
    implementation makes about ten passes over every parameter, which at small batches
    costs as much as the network).
    """
    params = [p for p in params if p.requires_grad]
    if d.optimizer == "adam":
        fused = fused and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                              for p in params)
        return torch.optim.Adam(params, lr=d.lr, betas=d.betas, weight_decay=d.weight_decay,
                                fused=fused or None)
    if d.optimizer == "adamax":
        return torch.optim.Adamax(params, lr=d.lr, betas=d.betas, weight_decay=d.weight_decay)
    if d.optimizer == "openai-adamax":
        return OpenAIAdamax(params, lr=d.lr, betas=d.betas, weight_decay=d.weight_decay)
    raise ConfigError(f"unknown optimizer {d.optimizer!r}; use one of {OPTIMIZERS}")


class OpenAIAdamax(torch.optim.Optimizer):
    """Adamax as openai/glow `optim.adamax` computes it (see the module docstring).

    `weight_decay` adds weight_decay·θ to the gradient, as `torch.optim.Adamax` does
    (openai's own `weight_decay` is a multiplicative factor, 1 = off, which is 0 here).
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            grads: list[Tensor] = [p.grad for p in params if p.grad is not None]
            if group["weight_decay"]:
                grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
            for p in params:
                if not self.state[p]:
                    self.state[p]["step"] = torch.zeros((), dtype=torch.float64)
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
                    self.state[p]["exp_inf"] = torch.zeros_like(p)
            states = [self.state[p] for p in params]
            m = [st["exp_avg"] for st in states]
            u = [st["exp_inf"] for st in states]
            torch._foreach_lerp_(m, grads, 1.0 - beta1)
            torch._foreach_mul_(u, beta2)
            torch._foreach_maximum_(u, torch._foreach_abs(grads))
            denom = torch._foreach_add(u, group["eps"])
            # One step count per parameter (as torch's optimizers keep it), all equal here.
            by_step: dict[float, list[int]] = {}
            for i, st in enumerate(states):
                st["step"] = st["step"] + 1  # a new tensor: never shared with a state_dict
                by_step.setdefault(float(st["step"]), []).append(i)
            for t, idx in by_step.items():
                alpha = group["lr"] * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
                torch._foreach_addcdiv_([params[i] for i in idx], [m[i] for i in idx],
                                        [denom[i] for i in idx], value=-alpha)
        return loss


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.step()` can leave everything unchanged on a device-side flag.

    torch's fused optimizers (here: fused Adam) read a `found_inf` tensor, GradScaler's
    mechanism: when it is 1 the kernel returns before touching weights or moments and the
    step count's increment is subtracted again. torch.optim.Adamax, `OpenAIAdamax` and the
    plain (foreach) Adam have no such input, so the host must decide whether to call them.
    """
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


def step_unless_skipped(optimizer: torch.optim.Optimizer, ok: Tensor) -> None:
    """`optimizer.step()` if the 0-dim bool tensor `ok` is true, else no change at all
    (weights, moments, step counts), decided on `ok`'s device: no host read."""
    if not skips_on_device(optimizer):
        raise TypeError(f"{type(optimizer).__name__} cannot skip a step on the device")
    optimizer.found_inf = (~ok).float()  # type: ignore[attr-defined]
    try:
        optimizer.step()
    finally:
        optimizer.found_inf = None  # type: ignore[attr-defined]


def lr_at(step: int, d: TrainingDefaults) -> float:
    """Learning rate for optimizer step `step` (0-based): decay times linear warm-up."""
    warm = min(1.0, (step + 1) / d.warmup_steps) if d.warmup_steps > 0 else 1.0
    return d.lr * (d.lr_decay**step) * warm


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
