"""Opening a training run folder or a saved-model folder: one function, `open_folder`.

    RUN/
      run.json         what was trained: family, data (absolute paths), training settings
      model/           the saved-model folder: config.json, model.safetensors (EMA weights),
                       raw.safetensors (the optimizer's weights)
      state.pt         the checkpoint a resume continues from (`tractable.training.checkpoint`)
      summary.json     step, best and last test bits/dim
      metrics.jsonl, metrics.csv, samples/, samples.gif, bpd.png

`open_folder(path)` accepts either a run folder or a model folder (including `RUN/model`)
and returns a `Folder`: the model folder, the run folder it belongs to (if any), its
`run.json` migrated to the current format and its `summary.json`. A shipped model
(`pretrained:NAME`) has no run folder; its `pretrained.json` record stands in for both
(`shipped_run`): its dataset, optimizer, steps and measured test bits/dim. `tractable.load`, every
command of the command line and the bench scripts open folders through it.

Dataset paths (`folder:PATH` data and `data_options["root"]`) are stored absolute, so a run
evaluates from any working directory. `run.json` files written before that (no
`format_version`) are migrated on reading: a relative path is resolved against the
working directory, then against the run folder and each folder above it, and the first
that exists is taken.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tractable.config import CONFIG_NAME
from tractable.errors import CheckpointError

MODEL_DIR = "model"
RUN_NAME = "run.json"
SUMMARY_NAME = "summary.json"
SHIPPED_RECORD_NAME = "pretrained.json"  # a shipped model's record (`tractable.pretrained`)
STATE_NAME = "state.pt"
RUN_FORMAT = 2  # 2: dataset paths absolute; 1 (no format_version): as given
FOLDER_PREFIX = "folder:"  # the data name of an image folder (`tractable.data.registry`)


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


def open_folder(path: str | os.PathLike[str]) -> Folder:
    """Open a run folder or a saved-model folder, with one clear error if it is neither."""
    model_dir = model_dir_of(path)
    run_dir = run_dir_of(model_dir)
    run = read_json(run_dir / RUN_NAME) if run_dir else {}
    summary = read_json(run_dir / SUMMARY_NAME) if run_dir else {}
    if run and run_dir is not None:
        run = migrate_run(run, run_dir)
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
    train = dict(run.get("train", {}))
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
