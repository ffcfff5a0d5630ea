"""A training run's checkpoint: `RUN/model/` and `RUN/state.pt` (the run folder:
`tractable.run_folder`), saved and restored by `Checkpoints`.

    model/           the saved-model folder at the checkpoint's step (EMA and raw weights)
    state.pt         everything a resume needs: raw and EMA weights, optimizer, step, RNG
                     states, data position, metric history; `torch.load(weights_only=True)`

Every file is written to a temporary name first and renamed only when all are written,
`state.pt` last: it is the commit point of a checkpoint, so a kill or a full disk at any
moment leaves the previous one intact, and model/ and state.pt hold the same step (until
the NaN/inf guard puts an earlier, proved-good state.pt back: `last_good`; a resume then
brings model/ back to its step).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tractable._io import atomic_group, atomic_write_with
from tractable.errors import CheckpointError, ConfigError
from tractable.run_folder import (
    MODEL_DIR,
    RUN_NAME,
    STATE_NAME,
    SUMMARY_NAME,
    model_dir_of,
    read_json,
    run_dir_of,
    write_summary,
)
from tractable.training.ema import EMA
from tractable.training.last_good import LastGood
from tractable.training.startup import parameter_count

if TYPE_CHECKING:
    from tractable.training.trainer import Trainer

STATE_FORMAT = 1

__all__ = ["MODEL_DIR", "RUN_NAME", "STATE_FORMAT", "STATE_NAME", "SUMMARY_NAME", "Checkpoints",
           "load_state", "model_dir_of", "non_finite_weights", "read_json", "run_dir_of",
           "save_state"]


class Checkpoints:
    """The checkpoints of one run folder: saved by rank 0 from a trainer's state, restored
    into a trainer on resume."""

    def __init__(self, run_dir: Path | None, device: torch.device, writes: bool) -> None:
        """`writes`: this process saves checkpoints (rank 0 of a run with a folder)."""
        self.run_dir, self.device = run_dir, device
        # which checkpoint proved good (the next step finite), kept by the writer
        self.good = LastGood(run_dir / STATE_NAME) if writes and run_dir is not None else None
        self.writes = self.good is not None
        self.last: tuple[int, Path] | None = None  # (step, state.pt) of the last one saved

    def load(self) -> dict[str, Any]:
        """The run's `state.pt` (see `load_state`)."""
        if self.run_dir is None:
            raise ConfigError("resume needs the run folder (out=...)")
        return load_state(self.run_dir / STATE_NAME)

    def save(self, trainer: Trainer) -> Path | None:
        """Write model/ (EMA + raw weights) and state.pt as one group, then the metrics and
        summary.json; None if this process does not write or the weights are not finite
        (never saved: the last good checkpoint stays, and a "skip" row says why)."""
        if not self.writes:
            return None
        assert self.run_dir is not None
        step, raw = trainer.step, trainer.model.state_dict()
        bad = non_finite_weights(trainer.model, trainer.ema, raw=raw)
        if bad:
            self._refuse(trainer, bad)
            return None
        with self.failures_named(step), atomic_group():
            trainer.ema.model.save_pretrained(self.run_dir / MODEL_DIR, raw_state=raw)
            save_state(self.run_dir / STATE_NAME, {
                "step": step,
                "model": {k: v.detach().cpu() for k, v in raw.items()},
                "ema": {k: v.detach().cpu() for k, v in trainer.ema.state_dict().items()},
                "optimizer": trainer.optimizer.state_dict(),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(self.device)
                        if self.device.type == "cuda" else None},
                **_progress(trainer),
            })
        self.last = (step, self.run_dir / STATE_NAME)
        assert self.good is not None
        self.good.saved(step)
        with self.failures_named(step):
            trainer.log.write()
            write_summary(self.run_dir, _summary(trainer))
        return self.run_dir / STATE_NAME

    def restore(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Put a checkpoint's weights, optimizer, RNG states and progress into `trainer`,
        and bring model/ back to its step."""
        try:
            trainer.model.load_state_dict(state["model"])
            trainer.ema.load_state_dict(state["ema"])
            trainer.optimizer.load_state_dict(state["optimizer"])
            _match_state_layout(trainer.optimizer)
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
            raise CheckpointError(f"{self.run_dir} holds a training state that is incomplete "
                                  f"or from another model ({type(e).__name__}: {e})") from None
        trainer.step = int(state["step"])
        trainer.best_bpd = state.get("best_bpd")
        trainer.stats.consecutive_bad = int(state.get("consecutive_bad", 0))
        trainer.elapsed_before = float(state.get("elapsed_s", 0.0))
        trainer.log.rows = list(state.get("history", []))
        self._restore_rng(state.get("rng", {}))
        self.last = (trainer.step, self.run_dir / STATE_NAME)  # type: ignore[operator]
        if self.good is not None:
            self.good.saved(trainer.step)
        if self.writes:  # a kill between a checkpoint's last renames leaves model/ ahead
            with self.failures_named(trainer.step), atomic_group():
                trainer.ema.model.save_pretrained(self.run_dir / MODEL_DIR,  # type: ignore[operator]
                                                  raw_state=trainer.model.state_dict())

    def _restore_rng(self, rng: dict[str, Any]) -> None:
        if isinstance(rng.get("torch"), Tensor):
            try:
                torch.set_rng_state(rng["torch"])
            except (RuntimeError, TypeError) as e:
                raise CheckpointError(f"{self.run_dir}: the RNG state in {STATE_NAME} is "
                                      f"corrupt ({e})") from None
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def _refuse(self, trainer: Trainer, names: list[str]) -> None:
        trainer.log.add("skip", trainer.step, skipped=trainer.stats.consecutive_bad,
                        note=f"checkpoint not saved: non-finite weights ({names[0]})")
        if not trainer.cfg.quiet:
            tqdm.write(f"step {trainer.step}: {len(names)} weight tensor(s) are NaN/inf (e.g. "
                       f"{names[0]}); checkpoint not saved, {self.intact()}", file=sys.stderr)

    def intact(self) -> str:
        """Where the last complete checkpoint is, for a message."""
        if self.last is None:
            return "no checkpoint was saved yet"
        step, path = self.last
        return f"the last complete checkpoint is step {step} ({path} and {path.parent / MODEL_DIR})"

    @contextlib.contextmanager
    def failures_named(self, step: int) -> Iterator[None]:
        """Turn a failed write (disk full, ...) into one error naming the intact checkpoint."""
        try:
            yield
        except OSError as e:
            what = ("the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT)
                    else f"{e.strerror or e}")
            raise CheckpointError(
                f"could not write the checkpoint of step {step} to {self.run_dir}: {what}"
                f"{f' ({e.filename})' if e.filename else ''}; nothing of it was kept, "
                f"{self.intact()}. Free space, then continue with --resume") from None


def _progress(trainer: Trainer) -> dict[str, Any]:
    """What state.pt holds besides weights, optimizer and RNG: data position, history, ..."""
    epoch, index = trainer.stream.position(trainer.step)
    return {"data": {"epoch": epoch, "batch_in_epoch": index, "seed": trainer.cfg.seed,
                     "steps_per_epoch": trainer.stream.steps_per_epoch,
                     "permutation": trainer.stream.permutation(epoch).clone()},
            "train_config": trainer.cfg.to_dict(),
            "history": trainer.log.rows,
            "best_bpd": trainer.best_bpd,
            "consecutive_bad": trainer.stats.consecutive_bad,
            "elapsed_s": trainer.elapsed()}


def _summary(trainer: Trainer) -> dict[str, Any]:
    """summary.json: step, best and last test bits/dim, parameters, wall time."""
    evals = trainer.log.of_kind("eval")
    return {"family": trainer.model.family, "data": trainer.cfg.data, "step": trainer.step,
            "total_steps": trainer.total_steps, "best_test_bpd": trainer.best_bpd,
            "last_test_bpd": evals[-1]["test_bpd"] if evals else None,
            "parameters": parameter_count(trainer.model),
            "test_images": len(trainer.test_set)  # type: ignore[arg-type]
            if trainer.test_set is not None else 0,
            "elapsed_s": round(trainer.elapsed(), 1)}


def non_finite_weights(model: nn.Module, ema: EMA,
                       raw: dict[str, Tensor] | None = None) -> list[str]:
    """Names of the weights (raw, then `ema.`-prefixed EMA ones) that hold a NaN or ±inf;
    `raw`: `model.state_dict()` if the caller has it already."""
    raw = model.state_dict() if raw is None else raw
    return _non_finite(raw) + [f"ema.{k}" for k in _non_finite(ema.state_dict())]


def _non_finite(state: dict[str, Tensor]) -> list[str]:
    return [k for k, v in state.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give loaded optimizer state the memory layout of its parameter (channels_last).

    Checkpoints store contiguous tensors; a fused optimizer walks parameter and state
    memory in step, so a layout mismatch would silently mix up elements.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, t in optimizer.state.get(p, {}).items():
                if isinstance(t, Tensor) and t.shape == p.shape and t.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=t.dtype).copy_(t)


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


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's weights-only refusal message."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "Unsupported" in ln:
            return ln
    return lines[0] if lines else "unreadable pickle"
