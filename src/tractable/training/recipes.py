"""Training recipes: the complete published setup of a result, by name (`--recipe paper`).

A recipe fixes a model family's architecture and its whole training setup for one dataset,
as the reference code ran it. Sizes the reference code states per GPU stay per process here:
the global batch is `per_process_batch × world_size`, and whatever the reference derives from
the global batch (Glow's Adamax β2, warm-up and Polyak decay) is derived from it again, so an
8-GPU run computes what openai's 8-GPU run computed and a 1-GPU run what its 1-GPU run did.

Sources (read line by line; see docs/reproduce.md for what still differs):

- PixelCNN++ (Salimans et al. 2017), openai/pixel-cnn `train.py` defaults: batch 16 per GPU
  on 8 GPUs, init batch 16, Adam(lr 1e-3, β = (0.95, 0.9995)), `lr *= 0.999995` before every
  step, Polyak averaging `ExponentialMovingAverage(0.9995)` (no `num_updates`, so no warm-up
  cap), dropout 0.5, nr_resnet 5, nr_filters 160, 10 logistics, no clipping, no augmentation.
- Glow (Kingma & Dhariwal 2018), openai/glow README commands ("CIFAR-10 / ImageNet 32x32
  Quantitative result") and `train.py`/`optim.py`/`tfops.py`: depth 32 (ImageNet 32: 48),
  3 levels, width 512, affine coupling, invertible 1×1 conv as a plain matrix, `--learntop`,
  edge-bias padding, hidden convs N(0, 0.05); batch 64 per GPU, init batch 256; Adamax with
  β1 = 0.9, β2 = 1 − 1/its and openai's bias correction, its = ⌈n_train / global batch⌉
  with n_train = 50,000 (`--n_train`, an "epoch" of 50,000 images whatever the dataset);
  lr 1e-3 warmed up linearly over 10 such epochs of images; Polyak decay β2; no clipping;
  random shifts of up to 10% for MNIST/CIFAR-10 (`--dal 1`), none for ImageNet.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from tractable.errors import ConfigError

RECIPES = ("paper",)
PIXELCNN_LR_DECAY = 0.999995
GLOW_EPOCH_IMAGES = 50_000  # openai/glow `--n_train`: the images of one "epoch"
GLOW_WARMUP_EPOCHS = 10  # openai/glow `--epochs_warmup`


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe: model config fields and `TrainConfig` fields for `world_size`."""

    name: str
    family: str
    data: str
    world_size: int
    per_process_batch: int
    model: dict[str, Any]
    train: dict[str, Any]
    source: str
    notes: tuple[str, ...] = field(default=())


def world_size_from_env() -> int:
    """The number of data-parallel processes this run will have (torchrun's WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def _pixelcnn_pp(data: str, world_size: int, batch: int | None) -> Recipe:
    if data != "cifar10":
        raise ConfigError(f"the pixelcnn++ paper recipe is for cifar10 (its published 2.92 "
                          f"bits/dim), not {data!r}")
    per_gpu = 16
    batch = batch or per_gpu * world_size
    return Recipe(
        name="paper", family="pixelcnn++", data=data, world_size=world_size,
        per_process_batch=per_gpu,
        model={"nr_resnet": 5, "nr_filters": 160, "nr_logistic_mix": 10, "dropout": 0.5,
               "coord_conv": False, "nonlocal_blocks": 0, "focal_gamma": 0.0},
        train={
            "optimizer": "adam",
            # openai decays before each step (lr_t = lr·d^(t+1)); tractable's schedule is
            # lr·d^t, so the base rate carries the first factor and every step matches.
            "lr": 1e-3 * PIXELCNN_LR_DECAY,
            "betas": (0.95, 0.9995),
            "lr_decay": PIXELCNN_LR_DECAY,
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "ema_decay": 0.9995,
            "ema_warmup": False,
            "grad_clip": 0.0,
            "batch_size": batch,
            "init_batch_size": 16,
        },
        source="openai/pixel-cnn train.py (defaults, --nr_gpu 8)",
    )


def _glow(data: str, world_size: int, batch: int | None) -> Recipe:
    depth = {"cifar10": 32, "imagenet32": 48, "mnist": 32, "mnist-mini": 32}
    if data not in depth:
        raise ConfigError(f"the glow paper recipe covers {', '.join(sorted(depth))}, "
                          f"not {data!r}")
    per_gpu = 64
    batch = batch or per_gpu * world_size
    its = math.ceil(GLOW_EPOCH_IMAGES / batch)  # openai/glow `get_its`: train_its
    beta2 = 1.0 - 1.0 / its
    digits = data.startswith("mnist")
    notes: tuple[str, ...] = ()
    if digits:
        notes = ("openai/glow publishes no MNIST command: this uses the CIFAR-10 command's "
                 "settings with 2 levels, as 28x28 halves only twice",)
    return Recipe(
        name="paper", family="glow", data=data, world_size=world_size,
        per_process_batch=per_gpu,
        model={"K": depth[data], "L": 2 if digits else 3, "width": 512, "coupling": "affine",
               "n_bits": 8, "lu": False, "learn_top": True, "edge_bias": True,
               "border_top_prior": True, "hidden_init_std": 0.05},
        train={
            "optimizer": "openai-adamax",
            "lr": 1e-3,
            "betas": (0.9, beta2),
            "lr_decay": 1.0,
            "warmup_steps": round(GLOW_WARMUP_EPOCHS * GLOW_EPOCH_IMAGES / batch),
            "weight_decay": 0.0,
            "ema_decay": beta2,
            "ema_warmup": False,
            "grad_clip": 0.0,
            "batch_size": batch,
            "init_batch_size": 256,
            "augment": None if data == "imagenet32" else "shift",
        },
        source="openai/glow README (Quantitative results), train.py, optim.py, tfops.py",
        notes=notes,
    )


_BUILDERS = {"pixelcnn++": _pixelcnn_pp, "glow": _glow}


def get_recipe(name: str, family: str, data: str, world_size: int | None = None,
               batch_size: int | None = None) -> Recipe:
    """Recipe `name` of `family` on `data` for `world_size` processes (default: from env).

    `batch_size` (global) replaces the recipe's per-process batch × world_size; what the
    reference derives from the batch (Glow's β2, warm-up steps, Polyak decay) follows it.
    """
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    if family not in _BUILDERS:
        raise ConfigError(f"no {name} recipe for {family!r}; families with one: "
                          f"{', '.join(sorted(_BUILDERS))}")
    ws = world_size_from_env() if world_size is None else world_size
    if ws < 1:
        raise ConfigError(f"world_size must be >= 1, got {ws}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return _BUILDERS[family](data, ws, batch_size)


def apply_recipe(recipe: Recipe, train_values: dict[str, Any],
                 model_values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields, model overrides): the recipe's, with the user's given values on
    top (an explicit flag always wins), and `recipe` recorded."""
    train = {**recipe.train, "data": recipe.data, **train_values, "recipe": recipe.name}
    return train, {**recipe.model, **model_values}
