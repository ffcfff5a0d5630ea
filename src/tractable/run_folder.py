"""A training run folder or a saved-model folder: opened by one function, `open_folder`,
and written by the trainer through `RunRecord.write`, `write_summary` and `prepare_new_run`.

    RUN/
      run.json         what was trained: family, data (absolute paths), training settings
      model/           the saved-model folder: config.json, model.safetensors (EMA weights),
                       raw.safetensors (the optimizer's weights)
      state.pt         the checkpoint a resume continues from (`tractable.training.checkpoint`)
      summary.json     step, best and last test bits/dim
      metrics.jsonl, metrics.csv, samples/, samples.gif, bpd.png
      state.good.pt    the last checkpoint the next step proved good (`training/last_good.py`)
      .tractable-files the manifest: the names of the files tractable writes here
      .lock            held by the run or resume working here (`tractable.folder_lock`)

`open_folder(path)` accepts either a run folder or a model folder (including `RUN/model`)
and returns a `Folder`: the model folder, the run folder it belongs to (if any), its
`run.json` migrated to the current format and its `summary.json`. A shipped model
(`pretrained:NAME`) has no run folder; its `pretrained.json` record stands in for both
(`shipped_run`): its dataset, optimizer, steps and measured test bits/dim. `tractable.load`,
every command of the command line and the bench scripts open folders through it; a resume
reads the typed `RunRecord` (`RunRecord.read`) through the same reader, `read_run`.

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
import fnmatch
import os
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tractable._io import atomic_write_json, read_json_file, remove_stale_temp_files
from tractable.config import CONFIG_NAME, __version__, check_field_value
from tractable.errors import CheckpointError, ConfigError
from tractable.folder_lock import LOCK_NAME, FolderLock
from tractable.pretrained import INFO_NAME as SHIPPED_RECORD_NAME  # a shipped model's record

MODEL_DIR = "model"
RUN_NAME = "run.json"
SUMMARY_NAME = "summary.json"
STATE_NAME = "state.pt"
WEIGHTS_NAME = "model.safetensors"  # EMA (Polyak) weights when saved by the trainer
RAW_WEIGHTS_NAME = "raw.safetensors"  # the optimizer's current weights
WEIGHT_FILES = {"ema": WEIGHTS_NAME, "raw": RAW_WEIGHTS_NAME}
RUN_FORMAT = 2  # 2: dataset paths absolute; 1 (no format_version): as given
FOLDER_PREFIX = "folder:"  # the data name of an image folder (`tractable.data.registry`)
SAMPLES_DIR = "samples"
GIF_NAME = "samples.gif"  # every sample grid of the run so far
CURVES_NAME = "bpd.png"  # train and test bits/dim against steps
METRICS_JSONL, METRICS_CSV = "metrics.jsonl", "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
# What a run writes at its top level and in model/ (never anything else: a new run with
# `overwrite` removes only these, plus samples/step_*.png).
GOOD_NAME = "state.good.pt"  # the last checkpoint proved good (`training/last_good.py`)
GOOD_LINK_NAME = f".{GOOD_NAME}.link"  # its next link, before it replaces it (bookkeeping)
RUN_FILES = frozenset({STATE_NAME, GOOD_NAME, RUN_NAME, SUMMARY_NAME, METRICS_JSONL,
                       METRICS_CSV, GIF_NAME, CURVES_NAME})
MODEL_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME, RAW_WEIGHTS_NAME})
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


def weights_file(weights: str) -> str:
    """The file of a model folder that `weights` names: "ema" (the Polyak-averaged weights,
    `model.safetensors`), "raw" (the optimizer's, `raw.safetensors`) or a file name."""
    return WEIGHT_FILES.get(weights, weights)


def open_folder(path: str | os.PathLike[str], *, weights: str = "ema") -> Folder:
    """Open a run folder or a saved-model folder, with one clear error if it is neither.

    `weights` ("ema", "raw" or a file name): the weights a Hub reference must fetch.
    """
    model_dir = model_dir_of(path, weights=weights)
    run_dir = run_dir_of(model_dir)
    run = read_run(run_dir) if run_dir else {}
    summary = read_json(run_dir / SUMMARY_NAME) if run_dir else {}
    if not run and (model_dir / SHIPPED_RECORD_NAME).is_file():
        run, summary = shipped_run(read_json(model_dir / SHIPPED_RECORD_NAME))
    return Folder(model_dir, run_dir, run, summary)


def shipped_run(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run.json, summary.json) as a shipped model's `pretrained.json` record tells them:
    the dataset it trained on (by name, default options), its optimizer, its steps and the
    test bits/dim measured for it."""
    data = record.get("data")
    if not isinstance(data, str) or not data:
        return {}, {}
    run = {"format_version": RUN_FORMAT, "data": data, "family": record.get("family"),
           "train": {"data": data, "data_options": {}}}
    if isinstance(record.get("optimizer"), dict):
        run["optimizer"] = dict(record["optimizer"])
    bpd = record.get("test_bits_per_dim")
    summary = {"step": record.get("steps"), "best_test_bpd": bpd, "last_test_bpd": bpd,
               "test_images": record.get("test_images")}
    return run, {k: v for k, v in summary.items() if v is not None}


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's `run.json` migrated to the current format; {} if it has none."""
    return migrate_run(read_json(run_dir / RUN_NAME), run_dir)


def model_dir_of(path: str | os.PathLike[str], *, weights: str = "ema") -> Path:
    """The saved-model folder of a run folder, or `path` itself if it is a model folder.

    `pretrained:NAME` and `hf:ORG/NAME[@REV]` resolve to their local folders (`tractable.hub`),
    a Hub repo fetching the `weights` file too.
    """
    from tractable.hub import resolve

    path = resolve(path, weights_file(weights))
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
    data = read_json_file(path, CheckpointError)
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


# ---- which files are tractable's, and a folder made ready for a new run ---------------------
MANIFEST_NAME = ".tractable-files"
GENERATED = (f"{SAMPLES_DIR}/step_*.png", f"{TENSORBOARD_DIR}/events.out.tfevents.*")
_BOOKKEEPING = {LOCK_NAME, MANIFEST_NAME, GOOD_LINK_NAME}
_RUN_DIRS = {MODEL_DIR, SAMPLES_DIR, TENSORBOARD_DIR}
_WRITTEN = tuple(sorted([*RUN_FILES, *(f"{MODEL_DIR}/{n}" for n in MODEL_FILES), *GENERATED]))


def written_names() -> list[str]:
    """Paths (relative, POSIX) and patterns of every file a run writes."""
    return list(_WRITTEN)


def is_run_file(relative: str, names: Sequence[str] | None = None) -> bool:
    """Whether the relative path `relative` is one of `names` (paths and patterns; default:
    the names a run of this tractable writes)."""
    return any(fnmatch.fnmatchcase(relative, p) for p in (_WRITTEN if names is None else names))


def files_in(run_dir: Path) -> list[str]:
    """What `run_dir` holds (relative POSIX paths), bookkeeping files aside: the files at its
    top and in the sub-folders a run writes to; any other sub-folder as one entry `NAME/`
    (never walked: `--out` may name a large folder by mistake)."""
    out = []
    for entry in sorted(os.scandir(run_dir), key=lambda e: e.name):
        if entry.name in _BOOKKEEPING:
            continue
        if not entry.is_dir(follow_symlinks=False):
            out.append(entry.name)
        elif entry.name in _RUN_DIRS:
            out += [f"{entry.name}/{sub.name}" for sub in
                    sorted(os.scandir(entry.path), key=lambda e: e.name)]
        else:
            out.append(entry.name + "/")
    return out


def tractable_files(run_dir: Path, present: list[str]) -> set[str]:
    """Which of the files `present` in `run_dir` an earlier run wrote: in a folder with a
    manifest, those of the names it lists (a name a later tractable added is the user's
    there); in one written before manifests, a run's names if its run.json is tractable's."""
    if (run_dir / MANIFEST_NAME).is_file():
        names = _manifest_names(run_dir)
    else:
        try:
            run = read_json(run_dir / RUN_NAME)
        except CheckpointError:
            return set()
        if not (isinstance(run.get("family"), str) and isinstance(run.get("train"), dict)):
            return set()
        names = _WRITTEN
    return {rel for rel in present if is_run_file(rel, names)}


def _manifest_names(run_dir: Path) -> Sequence[str]:
    """The names the folder's manifest lists (today's if it lists none or is unreadable)."""
    try:
        files = read_json(run_dir / MANIFEST_NAME).get("files")
    except CheckpointError:
        return _WRITTEN
    if not isinstance(files, list) or not all(isinstance(n, str) for n in files):
        return _WRITTEN
    return files


def prepare_new_run(run_dir: Path, overwrite: bool) -> list[str]:
    """Make the folder `run_dir` ready for a new run (call it holding the folder's lock,
    which made it a folder); returns the earlier run's files it deleted.

    A new run records in `.tractable-files` (its manifest) that it writes the names of
    `written_names()`; it starts only where none of them is someone else's file, so in a
    folder with a manifest every file of the names it lists is tractable's. Missing or empty
    (bookkeeping aside): start. Holding only the files of a run that saved neither a
    checkpoint nor weights (its first checkpoint failed on a full disk, say): they are
    replaced, since nothing in them can be resumed or used. A checkpoint, weights or any
    other file: refused unless `overwrite`, which deletes the earlier run's files, keeps
    every other file, and refuses if another file holds a name the new run writes.
    """
    present = files_in(run_dir)  # the folder exists: the lock's file is in it
    ours = tractable_files(run_dir, present)
    theirs = [rel for rel in present if rel not in ours]
    if not present:
        _write_manifest(run_dir)
        return []
    has_checkpoint = STATE_NAME in ours
    has_weights = any(rel.endswith(".safetensors") for rel in ours)
    if not overwrite and (has_checkpoint or has_weights or theirs):
        if has_checkpoint:
            raise ConfigError(f"{run_dir} already holds a training run; pass --resume to "
                              "continue it, --overwrite to replace it, or choose another --out")
        shown = ", ".join(theirs[:5] or sorted(ours)[:5]) + (" ..." if len(present) > 5 else "")
        raise ConfigError(f"{run_dir} is not empty ({shown}); a new run needs an empty "
                          "or new folder: choose another --out, or pass --overwrite to "
                          "write into it (files tractable did not write are kept)")
    clash = [rel for rel in theirs if is_run_file(rel)]
    if clash:
        shown = ", ".join(clash[:5]) + (" ..." if len(clash) > 5 else "")
        raise ConfigError(f"{run_dir} holds files tractable did not write under names a run "
                          f"writes ({shown}); --overwrite keeps such files, so move them "
                          "away or choose another --out")
    for rel in sorted(ours):
        with contextlib.suppress(FileNotFoundError):
            (run_dir / rel).unlink()
    for sub in sorted({str(Path(rel).parent) for rel in ours} - {"."}, key=len, reverse=True):
        with contextlib.suppress(OSError):
            (run_dir / sub).rmdir()  # only if now empty
    _write_manifest(run_dir)
    return sorted(ours)


def _write_manifest(run_dir: Path) -> None:
    atomic_write_json(run_dir / MANIFEST_NAME, {"format_version": 1, "files": written_names()})


def claim_run_folder(run_dir: Path, *, resume: bool, overwrite: bool,
                     quiet: bool = False) -> FolderLock:
    """Take `run_dir`'s lock for this process, then tidy it for training: delete what
    interrupted writes left and, for a new run, the earlier run's files (`prepare_new_run`).
    The lock is released again if tidying fails."""
    lock = FolderLock(run_dir).acquire()
    try:
        removed = remove_interrupted_writes(run_dir)
        if removed and not quiet:
            print(f"removed {len(removed)} temporary file(s) left in {run_dir} by an "
                  "interrupted write", file=sys.stderr)
        if not resume and prepare_new_run(run_dir, overwrite) and not overwrite and not quiet:
            print(f"{run_dir}: replacing the files of an earlier run that saved no checkpoint",
                  file=sys.stderr)
    except BaseException:
        lock.release()
        raise
    return lock
