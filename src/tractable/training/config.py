"""Training settings: `TrainConfig`, saved in a run's `run.json` and in every checkpoint."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from tractable.errors import ConfigError

# Optimizer fields that default to the model family's paper settings when left None.
OPTIMIZER_FIELDS = ("optimizer", "lr", "betas", "lr_decay", "warmup_steps", "weight_decay",
                    "ema_decay", "grad_clip", "batch_size", "ema_warmup")

# Fields a resumed run may change: how long to train and how it reports, not what it computes.
RESUMABLE_FIELDS = ("epochs", "max_steps", "log_every", "checkpoint_every", "eval_every",
                    "samples_per_eval", "progress", "quiet", "tensorboard", "device",
                    "max_bad_steps")


@dataclass
class TrainConfig:
    """How to train. Optimizer fields left None use the model family's paper defaults."""

    data: str = "mnist-mini"
    data_options: dict[str, Any] = field(default_factory=dict)  # load_dataset(root=, batches=...)
    out: str | None = None  # run folder; None: write nothing (API use, tests)
    epochs: int | None = None  # default 1 epoch when neither epochs nor max_steps is set
    max_steps: int | None = None  # wins over epochs
    # optimizer (None -> model.training_defaults())
    optimizer: str | None = None
    lr: float | None = None
    betas: tuple[float, float] | None = None
    lr_decay: float | None = None
    warmup_steps: int | None = None
    weight_decay: float | None = None
    ema_decay: float | None = None
    grad_clip: float | None = None
    batch_size: int | None = None  # global batch, split over data-parallel processes
    ema_warmup: bool | None = None  # False: constant EMA decay from the first step (openai)
    recipe: str | None = None  # the `tractable.recipes` recipe these settings came from
    grad_accum: int = 1  # micro-batches per process per step (same global batch, less memory)
    # numerics
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; likelihood stays fp32)
    eval_precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    device: str = "auto"
    seed: int = 0
    # data
    limit_train: int | None = None  # train on a fixed random subset of this many images
    limit_test: int | None = None
    init_batch_size: int | None = None  # data-dependent init batch; default: batch_size
    augment: str | None = None  # comma-separated batch augmentations: "flip", "shift"
    mutation_rate: float = 0.0  # > 0: mutate pixels at this rate (OOD background model)
    # reporting and safety
    log_every: int = 50
    checkpoint_every: int = 1000
    eval_every: int | None = None  # steps; None: at the end of every epoch
    eval_batch_size: int | None = None
    samples_per_eval: int = 16  # 0: no sample grids
    sampler: str | None = None  # for the grids; autoregressive models default to "cached"
    max_bad_steps: int = 20  # consecutive NaN/inf steps before giving up
    tensorboard: bool = False
    progress: bool = True
    quiet: bool = False

    def validate(self) -> None:
        for name in ("epochs", "max_steps", "log_every", "checkpoint_every", "eval_every",
                     "batch_size", "eval_batch_size", "limit_train", "limit_test",
                     "init_batch_size", "max_bad_steps", "grad_accum"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if self.samples_per_eval < 0:
            raise ConfigError("samples_per_eval must be >= 0")
        if not 0.0 <= self.mutation_rate <= 1.0:
            raise ConfigError(f"mutation_rate must be in [0, 1], got {self.mutation_rate}")
        if self.precision not in ("fp32", "bf16") or self.eval_precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, got {self.precision!r}")

    def optimizer_overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in OPTIMIZER_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"training settings {unknown} are unknown to this tractable "
                              "version (run written by a newer one?)")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) and "tuple" in str(hints[k]) else v
            for k, v in data.items()}
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg
