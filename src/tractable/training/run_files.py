"""Which files of a run folder tractable wrote, and making a folder ready for a new run.

A new run records in `RUN/.tractable-files` (its manifest) the files it writes: the fixed
names of `RUN_FILES` and `MODEL_FILES` and the patterns of `GENERATED` (sample grids,
TensorBoard events). Only a run that found none of these names taken by someone else's
file starts, so in a folder with a manifest every file of those names is tractable's.

`prepare_run_folder(run_dir, overwrite)` decides what a new run may do with its folder:

- missing or empty (the lock and the manifest aside): start;
- only tractable's files of an earlier run that saved neither a checkpoint nor weights
  (e.g. its first checkpoint failed on a full disk): they are replaced without
  `--overwrite`, since there is nothing in them to resume or use;
- a run with a checkpoint, or any other file: refuse unless `overwrite`;
- with `overwrite`: delete the earlier run's files, keep every other file, and refuse if
  another file holds a name the new run would write (it would be replaced).

A folder written before manifests existed counts as tractable's when its `run.json` is a
readable tractable run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from pathlib import Path

from tractable._io import atomic_write_json, read_json_file
from tractable.errors import CheckpointError, ConfigError
from tractable.folder_lock import LOCK_NAME
from tractable.run_folder import MODEL_DIR, RUN_NAME, STATE_NAME, SUMMARY_NAME
from tractable.training.last_good import GOOD_NAME, LINK_NAME

MANIFEST_NAME = ".tractable-files"
RUN_FILES = frozenset({STATE_NAME, GOOD_NAME, RUN_NAME, SUMMARY_NAME, "metrics.jsonl",
                       "metrics.csv", "samples.gif", "bpd.png"})
MODEL_FILES = frozenset({"config.json", "model.safetensors", "raw.safetensors"})
GENERATED = ("samples/step_*.png", "tensorboard/events.out.tfevents.*")
_BOOKKEEPING = {LOCK_NAME, MANIFEST_NAME, LINK_NAME}
_RUN_DIRS = {MODEL_DIR, "samples", "tensorboard"}


def written_names() -> list[str]:
    """Paths (relative, POSIX) and patterns of every file a run writes."""
    return sorted([*RUN_FILES, *(f"{MODEL_DIR}/{n}" for n in MODEL_FILES), *GENERATED])


def is_run_file(relative: str) -> bool:
    """Whether the relative path `relative` is a name a run writes."""
    return any(fnmatch.fnmatchcase(relative, p) for p in written_names())


def write_manifest(run_dir: Path) -> None:
    """Record that the files of `written_names()` in `run_dir` are tractable's."""
    atomic_write_json(run_dir / MANIFEST_NAME, {"format_version": 1,
                                                "files": written_names()})


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
    """Which of the files `present` in `run_dir` an earlier run wrote (module docstring)."""
    if not _written_by_tractable(run_dir):
        return set()
    return {rel for rel in present if is_run_file(rel)}


def _written_by_tractable(run_dir: Path) -> bool:
    if (run_dir / MANIFEST_NAME).is_file():
        return True
    try:  # a run from before manifests: its run.json says so
        run = read_json_file(run_dir / RUN_NAME, CheckpointError)
    except CheckpointError:
        return False
    return isinstance(run, dict) and isinstance(run.get("family"), str) and isinstance(
        run.get("train"), dict)


def prepare_run_folder(run_dir: Path, overwrite: bool) -> list[str]:
    """Make `run_dir` ready for a new run (see the module docstring); returns the earlier
    run's files it deleted. Call it holding the folder's lock."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a folder")
    present = files_in(run_dir) if run_dir.is_dir() else []
    ours = tractable_files(run_dir, present)
    theirs = [rel for rel in present if rel not in ours]
    if not present:
        write_manifest(run_dir)
        return []
    has_checkpoint = STATE_NAME in ours
    has_weights = any(rel.endswith(".safetensors") for rel in ours)
    if not overwrite and (has_checkpoint or has_weights or theirs):
        if has_checkpoint:
            raise ConfigError(f"{run_dir} already holds a training run; pass --resume to "
                              "continue it, --overwrite to replace it, or choose another --out")
        shown = ", ".join(theirs[:5]) + (" ..." if len(theirs) > 5 else "")
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
    write_manifest(run_dir)
    return sorted(ours)


__all__ = ["GENERATED", "MANIFEST_NAME", "MODEL_FILES", "RUN_FILES", "files_in", "is_run_file",
           "prepare_run_folder", "tractable_files", "write_manifest"]
