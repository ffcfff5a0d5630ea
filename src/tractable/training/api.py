"""Train from names: `train("pixelcnn++", TrainConfig(data="mnist-mini", out="runs/x"))`.

Loads the data, builds the model config from the family, the data's shape, a preset and
overrides (see `factory`), seeds the initialization, and runs the `Trainer`. `resume(RUN)`
rebuilds everything from the run folder and continues from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from tractable.config import read_config_json
from tractable.data import as_image_dataset, load_dataset
from tractable.data.registry import FOLDER_PREFIX, known_datasets
from tractable.errors import CheckpointError, ConfigError, DataError
from tractable.models.base import TractableModel
from tractable.models.registry import model_class
from tractable.run_folder import MODEL_DIR, RUN_NAME, STATE_NAME, RunRecord, absolute_data
from tractable.training import distributed
from tractable.training.batches import BatchTransform, augmentation, mix_seed
from tractable.training.config import RESCUE_FIELDS, RESUMABLE_FIELDS, TrainConfig
from tractable.training.factory import build_model, model_config_for
from tractable.training.trainer import Callback, Trainer

_MODEL_INIT_SALT = 0x40DE1


def load_split(name: str, split: str, limit: int | None = None, seed: int = 0,
               options: dict[str, Any] | None = None) -> Dataset:
    """`load_dataset(name, split, limit=limit, seed=seed, **options)`, the name kept for
    scripts written against earlier versions."""
    return load_dataset(name, split, limit=limit, seed=seed, **(options or {}))


def load_splits(config: TrainConfig, train_set: Dataset | None = None,
                test_set: Dataset | None = None) -> tuple[Dataset, Dataset | None]:
    """The (train, test) datasets of a training config, with its limits and options.

    `train_set` / `test_set`: your own data instead of a named dataset, any map-style
    `Dataset` of `(uint8 [C, H, W], label)` (e.g. `tractable.data.from_hf(...)`); it is
    prepared once under the name `config.data` (which must then not be a registered name).
    """
    if train_set is None:
        opts = config.data_options
        return (load_dataset(config.data, "train", limit=config.limit_train, seed=config.seed,
                             **opts),
                load_dataset(config.data, "test", limit=config.limit_test, seed=config.seed,
                             **opts))
    if config.data in known_datasets() or config.data.startswith(FOLDER_PREFIX):
        raise ConfigError(f"your own train_set needs its own name: TrainConfig(data=...) is "
                          f"{config.data!r}, which names a registered dataset")
    progress = config.progress and not config.quiet
    train = as_image_dataset(train_set, config.data, "train", progress=progress)
    test = (as_image_dataset(test_set, config.data, "test", progress=progress)
            if test_set is not None else None)
    if config.limit_train is not None:
        train = train.subset(config.limit_train, seed=config.seed)
    if test is not None and config.limit_test is not None:
        test = test.subset(config.limit_test, seed=config.seed)
    return train, test


def make_model(family: str, train_set: Dataset, seed: int, preset: str | None = None,
               overrides: dict[str, Any] | None = None, conditional: bool = False,
               ) -> TractableModel:
    """A freshly initialized `family` model for the shape (and classes) of `train_set`."""
    num_classes = 0
    names: list[str] = []
    if conditional:
        num_classes = getattr(train_set, "num_classes", 0)
        has_labels = getattr(train_set, "has_labels", num_classes > 0)
        if not num_classes or not has_labels:
            raise DataError(f"{getattr(train_set, 'name', 'the data')} has no class labels; "
                            "train an unconditional model (drop --conditional)")
        names = list(getattr(train_set, "class_names", []))
    cfg = model_config_for(family, train_set.shape, num_classes, names,  # type: ignore[attr-defined]
                           preset=preset, overrides=overrides)
    torch.manual_seed(mix_seed(seed, _MODEL_INIT_SALT))
    return build_model(family, cfg)


def train(
    family: str,
    config: TrainConfig,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    conditional: bool = False,
    transform: BatchTransform | None = None,
    callbacks: tuple[Callback, ...] = (),
    train_set: Dataset | None = None,
    test_set: Dataset | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a new `family` model on `config.data`, or on your own `train_set` / `test_set`
    (see `load_splits`); returns the trainer's summary.


    `config.out` must be a new or empty folder unless `overwrite` (see `Trainer`).
    Dataset paths (an image folder, `data_options["root"]`) are made absolute first, so
    the run's `run.json` names the same files from any working directory.
    """
    data, options = absolute_data(config.data, config.data_options)
    config = dataclasses.replace(config, data=data, data_options=options)
    train_set, test_set = load_splits(config, train_set, test_set)
    model = make_model(family, train_set, config.seed, preset, overrides, conditional)
    trainer = Trainer(model, train_set, test_set, config,
                      transform=transform or augmentation(config.augment, config.mutation_rate),
                      callbacks=callbacks, preset=preset, overwrite=overwrite)
    return _fit(trainer)


def saved_train_config(run_dir: str | os.PathLike[str]) -> tuple[str, TrainConfig]:
    """(family, TrainConfig) a run was started with, from its run.json."""
    family, config, _ = _saved_run(Path(run_dir))
    return family, config


def _saved_run(run_dir: Path) -> tuple[str, TrainConfig, str | None]:
    """(family, TrainConfig, preset) of a run, from its run.json (`RunRecord`)."""
    record = RunRecord.read(run_dir)
    if record is None:
        raise CheckpointError(f"{run_dir} is not a training run (no {RUN_NAME}); "
                              "start a new run without --resume")
    try:
        return record.family, TrainConfig.from_dict(record.train), record.preset
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / RUN_NAME} holds invalid training settings "
                              f"({e})") from None


def resume(
    run_dir: str | os.PathLike[str],
    changes: dict[str, Any] | None = None,
    transform: BatchTransform | None = None,
    callbacks: tuple[Callback, ...] = (),
    train_set: Dataset | None = None,
    test_set: Dataset | None = None,
) -> dict[str, Any]:
    """Continue the run in `run_dir` from its checkpoint, exactly as if never stopped.

    A run trained on your own data resumes when given the same `train_set` / `test_set`.

    `changes` may extend or re-schedule the run (max_steps, epochs, log/eval/checkpoint
    intervals, device) and change the learning rate, warm-up and gradient clipping (to
    rescue a run that diverged; logged as a "resume" row of the run's history, and the run
    then differs from an uninterrupted one from here on); other settings are kept.
    """
    run_dir = Path(run_dir)
    if not (run_dir / STATE_NAME).is_file():
        raise CheckpointError(f"no checkpoint {run_dir / STATE_NAME} to resume from; start a "
                              "new run without --resume")
    family, config, preset = _saved_run(run_dir)
    ignored = sorted(k for k, v in (changes or {}).items()
                     if k not in (*RESUMABLE_FIELDS, "out") and v != getattr(config, k, v))
    if ignored:
        print(f"resume: keeping the run's own {', '.join(ignored)} (only "
              f"{', '.join(RESUMABLE_FIELDS)} can change)", file=sys.stderr)
    allowed = {k: v for k, v in (changes or {}).items() if k in RESUMABLE_FIELDS}
    rescued = {k: (getattr(config, k), v) for k, v in allowed.items()
               if k in RESCUE_FIELDS and v != getattr(config, k)}
    config = dataclasses.replace(config, out=str(run_dir), **allowed)
    saved_family, cfg_dict = read_config_json(run_dir / MODEL_DIR)
    if saved_family != family:
        raise CheckpointError(f"{run_dir}: run.json says {family!r} but model/ holds "
                              f"{saved_family!r}; the run folder is inconsistent")
    klass = model_class(family)
    model = klass(klass.config_class.from_dict(cfg_dict))
    train_set, test_set = load_splits(config, train_set, test_set)
    trainer = Trainer(model, train_set, test_set, config, resume=True,
                      transform=transform or augmentation(config.augment, config.mutation_rate),
                      callbacks=callbacks, preset=preset)
    if rescued:
        trainer.log.add("resume", trainer.step, **{k: new for k, (_, new) in rescued.items()},
                        **{f"{k}_before": old for k, (old, _) in rescued.items()})
        if not config.quiet:
            print("resume: from step {} with {}".format(trainer.step, ", ".join(
                f"{k} {old} -> {new}" for k, (old, new) in rescued.items())), file=sys.stderr)
    return _fit(trainer)


def _fit(trainer: Trainer) -> dict[str, Any]:
    try:
        return trainer.fit()
    finally:
        distributed.teardown(trainer.env)
