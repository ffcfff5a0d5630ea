"""A training run folder or a saved-model folder: opened by one function, `open_folder`,
and written by the trainer through `RunRecord.write`, `write_summary` and `prepare_new_run`.

    RUN/
      run.json         what was trained: family, data (absolute paths), training settings
      model/           the saved-model folder: config.json, model.safetensors (EMA weights),
                       raw.safetensors (the optimizer's weights)
      state.pt         the checkpoint a resume continues from (`tractable.training.checkpoint`)
      summary.json     step, best and last test bits/dim
      metrics.jsonl, metrics.csv, samples/, samples.gif, bpd.png

`open_folder(path)` accepts either a run folder or a model folder (including `RUN/model`)
and returns a `Folder`: the model folder, the run folder it belongs to (if any), its
`run.json` migrated to the current format and its `summary.json`. `tractable.load`, every
command of the command line and the bench scripts open folders through it; a resume reads
the typed `RunRecord` (`RunRecord.read`) through the same reader, `read_run`.

Dataset paths (`folder:PATH` data and `data_options["root"]`) are stored absolute, so a run
evaluates from any working directory. `run.json` files written before that (no
`format_version`) are migrated on reading: a relative path is resolved against the
working directory, then against the run folder and each folder above it, and the first
that exists is taken.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tractable._io import atomic_write_json, remove_stale_temp_files
from tractable.config import CONFIG_NAME, __version__, check_field_value
from tractable.errors import CheckpointError, ConfigError

MODEL_DIR = "model"
RUN_NAME = "run.json"
SUMMARY_NAME = "summary.json"
STATE_NAME = "state.pt"
RUN_FORMAT = 2  # 2: dataset paths absolute; 1 (no format_version): as given
FOLDER_PREFIX = "folder:"  # the data name of an image folder (`tractable.data.registry`)
SAMPLES_DIR = "samples"
# What a run writes at its top level and in model/ (never anything else: a new run with
# `overwrite` removes only these, plus samples/step_*.png).
RUN_FILES = frozenset({STATE_NAME, RUN_NAME, SUMMARY_NAME, "metrics.jsonl", "metrics.csv",
                       "samples.gif", "bpd.png"})
MODEL_FILES = frozenset({CONFIG_NAME, "model.safetensors", "raw.safetensors"})
# The value of a run.json field that an older or hand-written run.json lacks (else None)
_ABSENT: dict[str, Any] = {"optimizer": {}, "model_config": {}, "world_size": 1}


@dataclass(frozen=True)
class Folder:
    """An opened run or model folder."""

    model_dir: Path  # holds config.json and the weights
    run_dir: Path | None  # the training run it belongs to, if any
    run: dict[str, Any] = field(default_factory=dict)  # run.json, migrated; {} if none
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json; {} if none

    @property
    def train_settings(self) -> dict[str, Any]:
        """The run's `TrainConfig` fields as saved ({} for a bare model folder)."""
        return dict(self.run.get("train", {}))

    @property
    def data(self) -> str | None:
        """The dataset the run trained on (absolute for image folders), if recorded."""
        name = self.run.get("data") or self.train_settings.get("data")
        return str(name) if name else None

    @property
    def data_options(self) -> dict[str, Any]:
        """The `load_dataset` options the run used (`root` absolute), if recorded."""
        return dict(self.train_settings.get("data_options", {}))


@dataclass(frozen=True)
class RunRecord:
    """`run.json`: what a run trains and how, written when a run starts or resumes."""

    format_version: int
    family: str
    data: str | None
    train: dict[str, Any]  # every `TrainConfig` field
    optimizer: dict[str, Any]  # the optimizer settings resolved against the family's
    model_config: dict[str, Any]
    world_size: int
    preset: str | None
    data_split: str | None  # how a flat image folder was split into train and test
    tractable_version: str | None

    def write(self, run_dir: str | os.PathLike[str]) -> None:
        """Write `RUN/run.json` atomically."""
        atomic_write_json(Path(run_dir) / RUN_NAME, dataclasses.asdict(self))

    @classmethod
    def new(cls, family: str, train: dict[str, Any], optimizer: dict[str, Any],
            model_config: dict[str, Any], world_size: int, preset: str | None,
            data_split: str | None) -> RunRecord:
        """The record of a run this tractable starts (current format and version)."""
        return cls(RUN_FORMAT, family, train.get("data"), train, optimizer, model_config,
                   world_size, preset, data_split, __version__)

    @classmethod
    def read(cls, run_dir: str | os.PathLike[str]) -> RunRecord | None:
        """The run's `run.json` (migrated, every field type-checked); None if it has none."""
        run = read_run(Path(run_dir))
        return cls.from_dict(run, Path(run_dir) / RUN_NAME) if run else None

    @classmethod
    def from_dict(cls, run: dict[str, Any], path: Path) -> RunRecord:
        """Check a migrated `run.json` (`family` and `train` required, other fields an older
        run may lack take their empty value, unknown keys are ignored)."""
        hints = typing.get_type_hints(cls)
        for name in ("family", "train"):
            if name not in run:
                raise CheckpointError(f"{path} is incomplete or corrupt: {name!r} is missing")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            values[f.name] = run[f.name] if f.name in run else copy.copy(_ABSENT.get(f.name))
            try:
                check_field_value("", f, hints[f.name], values[f.name], note="")
            except ConfigError as e:
                raise CheckpointError(f"{path} is incomplete or corrupt: {e}") from None
        return cls(**values)


def open_folder(path: str | os.PathLike[str]) -> Folder:
    """Open a run folder or a saved-model folder, with one clear error if it is neither."""
    model_dir = model_dir_of(path)
    run_dir = run_dir_of(model_dir)
    run = read_run(run_dir) if run_dir else {}
    summary = read_json(run_dir / SUMMARY_NAME) if run_dir else {}
    return Folder(model_dir, run_dir, run, summary)


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's `run.json` migrated to the current format; {} if it has none."""
    return migrate_run(read_json(run_dir / RUN_NAME), run_dir)


def model_dir_of(path: str | os.PathLike[str]) -> Path:
    """The saved-model folder of a run folder, or `path` itself if it is a model folder.

    `pretrained:NAME` and `hf:ORG/NAME[@REV]` resolve to their local folders (`tractable.hub`).
    """
    from tractable.hub import resolve

    path = resolve(path)
    if (path / CONFIG_NAME).is_file():
        return path
    if (path / MODEL_DIR / CONFIG_NAME).is_file():
        return path / MODEL_DIR
    if not path.exists():
        raise CheckpointError(f"{path} does not exist (expected a run or saved-model folder)")
    raise CheckpointError(
        f"{path} is neither a saved-model folder (no {CONFIG_NAME}) nor a training run "
        f"(no {MODEL_DIR}/{CONFIG_NAME}); has training saved a checkpoint yet?"
    )


def run_dir_of(path: str | os.PathLike[str]) -> Path | None:
    """The run folder `path` belongs to (itself or its parent), if any."""
    path = Path(path)
    for cand in (path, path.parent):
        if (cand / RUN_NAME).is_file():
            return cand
    return None


def read_json(path: Path) -> dict[str, Any]:
    """Read a run's JSON file (run.json, summary.json); {} if absent, error if corrupt."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt (expected a JSON object)")
    return data


# ---- dataset paths -----------------------------------------------------------------------
def absolute_data(data: str, options: dict[str, Any],
                  resolve: Callable[[Path], Path] | None = None) -> tuple[str, dict[str, Any]]:
    """`(data, options)` with the image-folder path and `root` made absolute.

    `resolve(relative) -> Path` chooses the base of a relative path (default: the working
    directory).
    """
    def absolute(p: str) -> str:
        path = Path(p).expanduser()
        if path.is_absolute():
            return str(path)
        return str(resolve(path) if resolve is not None else path.resolve())

    options = dict(options)
    if data.startswith(FOLDER_PREFIX):
        data = FOLDER_PREFIX + absolute(data[len(FOLDER_PREFIX):])
    if isinstance(options.get("root"), str):
        options["root"] = absolute(options["root"])
    return data, options


def migrate_run(run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`run.json` of any earlier format in the current one (see the module docstring)."""
    if not run:
        return run
    version = run.get("format_version", 1)
    if not isinstance(version, int) or version > RUN_FORMAT:
        raise CheckpointError(
            f"{run_dir / RUN_NAME} has format_version {version!r}; this tractable reads "
            f"{RUN_FORMAT} or older. Upgrade tractable to use this run.")
    if version >= RUN_FORMAT:
        return run
    train = run.get("train", {})
    if not isinstance(train, dict) or not isinstance(train.get("data_options", {}), dict):
        raise CheckpointError(f"{run_dir / RUN_NAME} is incomplete or corrupt: 'train' must "
                              "be an object of settings whose data_options is an object")
    train = dict(train)
    data = train.get("data", run.get("data"))
    if isinstance(data, str):
        bases = [Path.cwd(), run_dir.resolve(), *run_dir.resolve().parents]

        def first_existing(relative: Path) -> Path:
            for base in bases:
                if (base / relative).exists():
                    return (base / relative).resolve()
            return (Path.cwd() / relative).resolve()

        data, options = absolute_data(data, train.get("data_options", {}), first_existing)
        train["data"], train["data_options"] = data, options
        run = {**run, "data": data, "train": train}
    return {**run, "format_version": RUN_FORMAT}


# ---- the write side (the trainer, rank 0) ----------------------------------------------------
def write_summary(run_dir: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write `RUN/summary.json` atomically (step, best and last test bits/dim, ...)."""
    atomic_write_json(Path(run_dir) / SUMMARY_NAME, summary)


def remove_interrupted_writes(run_dir: Path) -> list[Path]:
    """Delete the temporary files that writes cut short by a kill left (`tractable._io`)."""
    return [*remove_stale_temp_files(run_dir, set(RUN_FILES)),
            *remove_stale_temp_files(run_dir / MODEL_DIR, set(MODEL_FILES)),
            *remove_stale_temp_files(run_dir / SAMPLES_DIR)]


def prepare_new_run(run_dir: Path, overwrite: bool) -> None:
    """A new run writes only into a missing or empty folder; with `overwrite`, what an
    earlier run wrote there is deleted first (files tractable did not write are kept)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a folder")
    if (run_dir / STATE_NAME).exists() and not overwrite:
        raise ConfigError(f"{run_dir} already holds a training run; pass --resume to "
                          "continue it, --overwrite to replace it, or choose another --out")
    entries = sorted(p.name for p in run_dir.iterdir())
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        raise ConfigError(f"{run_dir} is not empty ({shown}); a new run needs an empty "
                          "or new folder: choose another --out, or pass --overwrite to "
                          "write into it (files tractable did not write are kept)")
    _remove_previous_run_files(run_dir)


def _remove_previous_run_files(run_dir: Path) -> None:
    model_dir, samples = run_dir / MODEL_DIR, run_dir / SAMPLES_DIR
    doomed = [run_dir / n for n in RUN_FILES] + [model_dir / n for n in MODEL_FILES]
    if samples.is_dir():
        doomed += list(samples.glob("step_*.png"))
    for p in doomed:
        if p.is_file():
            p.unlink()
    for d in (model_dir, samples):
        with contextlib.suppress(OSError):
            d.rmdir()  # only if now empty
