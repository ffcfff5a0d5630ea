"""A training run's checkpoint, `RUN/state.pt` (the run folder: `tractable.run_folder`).

    state.pt         everything a resume needs: raw and EMA weights, optimizer, step, RNG
                     states, data position, metric history; `torch.load(weights_only=True)`

`state.pt` is self-contained and written last with an atomic rename: it is the commit
point of a checkpoint, so a kill at any moment leaves the previous one intact.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from tractable._io import atomic_write_with
from tractable.errors import CheckpointError
from tractable.run_folder import (
    MODEL_DIR,
    RUN_NAME,
    STATE_NAME,
    SUMMARY_NAME,
    model_dir_of,
    read_json,
    run_dir_of,
)

STATE_FORMAT = 1

__all__ = ["MODEL_DIR", "RUN_NAME", "STATE_FORMAT", "STATE_NAME", "SUMMARY_NAME", "load_state",
           "model_dir_of", "read_json", "run_dir_of", "save_state"]


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write a training state dict atomically (temp file, fsync, rename)."""
    state = {"format_version": STATE_FORMAT, **state}
    atomic_write_with(path, lambda f: torch.save(state, f))


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read `state.pt` with `weights_only=True`: tensors and plain containers, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint {path}; start a new run without --resume")
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickling_detail(str(e))
        if "GLOBAL" in detail:
            raise CheckpointError(
                f"refused to load {path}: it holds pickled objects that would run code when "
                f"loaded ({detail}). Checkpoints are read with weights_only=True, which allows "
                "tensors and plain containers only; load only files you trust"
            ) from None
        raise CheckpointError(f"{path} is corrupt or not a torch checkpoint ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated and cannot be read ({e})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a tractable training checkpoint (no 'step')")
    version = state.get("format_version")
    if not isinstance(version, int) or version > STATE_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this tractable reads format "
            f"{STATE_FORMAT} or older. Upgrade tractable to resume it."
        )
    _check_state_fields(state, path)
    return state


def _is_tensor_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor)
                                       for k, t in v.items())


def _is_number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


# What a resume reads from state.pt: field -> (check, what it must be, required)
_STATE_FIELDS: dict[str, tuple[Any, str, bool]] = {
    "step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
             "an integer >= 0", True),
    "model": (_is_tensor_dict, "a dict of named tensors", True),
    "ema": (_is_tensor_dict, "a dict of named tensors", True),
    "optimizer": (lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict)
                  and isinstance(v.get("param_groups"), list), "an optimizer state dict", True),
    "rng": (lambda v: isinstance(v, dict) and all(t is None or isinstance(t, torch.Tensor)
                                                   for t in v.values()),
            "a dict of RNG state tensors", False),
    "history": (lambda v: isinstance(v, list) and all(
        isinstance(r, dict) and isinstance(r.get("kind"), str) and isinstance(r.get("step"), int)
        for r in v), "a list of metric rows", False),
    "best_bpd": (_is_number_or_none, "a number or None", False),
    "consecutive_bad": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0", False),
    "elapsed_s": (lambda v: _is_number_or_none(v) and v is not None, "a number", False),
}


def _check_state_fields(state: dict[str, Any], path: Path) -> None:
    for name, (ok, what, required) in _STATE_FIELDS.items():
        if name not in state:
            if required:
                raise CheckpointError(f"{path} is incomplete: it has no {name!r} field; it "
                                      "cannot be resumed")
            continue
        if not ok(state[name]):
            raise CheckpointError(f"{path} is corrupt: its {name!r} field is "
                                  f"{type(state[name]).__name__}, expected {what}")


def read_run_json(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's run.json with the fields a resume needs checked: `family` (a string) and
    `train` (an object); {} if there is no run.json."""
    path = Path(run_dir) / RUN_NAME
    run = read_json(path)
    if not run:
        return run
    if not isinstance(run.get("family"), str):
        raise CheckpointError(f"{path} is incomplete or corrupt: 'family' is missing or not a "
                              "string")
    if not isinstance(run.get("train"), dict):
        raise CheckpointError(f"{path} is incomplete or corrupt: 'train' is missing or not an "
                              "object")
    return run


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's weights-only refusal message."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "Unsupported" in ln:
            return ln
    return lines[0] if lines else "unreadable pickle"
