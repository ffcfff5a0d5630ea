"""Optimizers and the learning-rate schedule, from a family's paper defaults.

Each model family states its paper's settings in `training_defaults()` (a
`tractable.config.TrainingDefaults`); the user overrides single fields. The schedule is a
pure function of the step, so a resumed run needs no scheduler state:

    lr(t) = lr · lr_decay^t · min(1, (t + 1) / warmup_steps)

PixelCNN++ (Salimans et al., 2017, Sec. 3 and the reference code): Adam, lr 1e-3,
betas (0.95, 0.9995), lr × 0.999995 per step. Glow (Kingma & Dhariwal, 2018, Sec. 5):
Adamax, lr 1e-3 with linear warm-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from tractable.config import TrainingDefaults
from tractable.errors import ConfigError

OPTIMIZERS = ("adam", "adamax")


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
    if not d.lr > 0:
        raise ConfigError(f"learning rate must be > 0, got {d.lr}")
    if len(d.betas) != 2 or not all(0.0 <= b < 1.0 for b in d.betas):
        raise ConfigError(f"betas must be two numbers in [0, 1), got {d.betas}")
    if not 0.0 < d.lr_decay <= 1.0:
        raise ConfigError(f"lr_decay is a per-step factor in (0, 1], got {d.lr_decay}")
    if d.warmup_steps < 0 or d.batch_size < 1:
        raise ConfigError("warmup_steps must be >= 0 and batch_size >= 1")
    if not 0.0 <= d.ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {d.ema_decay}")
    if d.grad_clip is not None and not d.grad_clip > 0:
        raise ConfigError(f"grad_clip must be > 0 (or unset), got {d.grad_clip}")


def build_optimizer(params: Iterable[nn.Parameter], d: TrainingDefaults) -> torch.optim.Optimizer:
    """Adam or Adamax with the settings of `d` (the lr is set per step by `lr_at`)."""
    params = [p for p in params if p.requires_grad]
    if d.optimizer == "adam":
        return torch.optim.Adam(params, lr=d.lr, betas=d.betas, weight_decay=d.weight_decay)
    if d.optimizer == "adamax":
        return torch.optim.Adamax(params, lr=d.lr, betas=d.betas, weight_decay=d.weight_decay)
    raise ConfigError(f"unknown optimizer {d.optimizer!r}; use one of {OPTIMIZERS}")


def lr_at(step: int, d: TrainingDefaults) -> float:
    """Learning rate for optimizer step `step` (0-based): decay times linear warm-up."""
    warm = min(1.0, (step + 1) / d.warmup_steps) if d.warmup_steps > 0 else 1.0
    return d.lr * (d.lr_decay**step) * warm


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
