"""The training loop: one model-agnostic trainer for every family.

It uses only the `TractableModel` contract: `loss(x, y) -> (scalar, {"bpd": ...})`,
`data_dependent_init`, `training_defaults()`, `sample`, `save_pretrained`. Per step:

    batch(step) → [batch transform] → shard → autocast(loss) → backward → global grad norm
    → NaN/inf guard → clip → optimizer step → EMA update

On CUDA with fused Adam the step never waits for the device (`step_runs_on_device`): the
guard is a device-side flag that the optimizer and the EMA update obey, and the host reads
the steps' statistics only at log, evaluation and checkpoint steps, at the end, and often
enough that `max_bad_steps` bad steps in a row are seen at the step they happen
(`Trainer._read_due`). Everything else, the CPU included, reads them after every step.

Everything random in a step is a function of (seed, rank, step): batches (see `batches`),
augmentation, and the global torch RNG (dropout), reseeded before each step. Together with
the checkpoint (weights, EMA, optimizer, step) this makes a resumed run continue exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from tractable._io import atomic_group, atomic_write_json, remove_stale_temp_files
from tractable.config import __version__
from tractable.errors import CheckpointError, ConfigError, NumericalError, TrainingError
from tractable.folder_lock import FolderLock
from tractable.models.base import TractableModel
from tractable.models.bpd import autocast, check_data_fits_model, evaluate_bpd, labels_for
from tractable.run_folder import RUN_FORMAT
from tractable.training import distributed
from tractable.training.batches import BatchStream, BatchTransform, mix_seed
from tractable.training.checkpoint import (
    MODEL_DIR,
    RUN_NAME,
    STATE_NAME,
    SUMMARY_NAME,
    load_state,
    save_state,
)
from tractable.training.compilation import should_compile
from tractable.training.config import TrainConfig
from tractable.training.ema import EMA
from tractable.training.last_good import LastGood
from tractable.training.metrics import MetricsLog
from tractable.training.optim import (
    build_optimizer,
    lr_at,
    resolve_defaults,
    set_lr,
    skips_on_device,
    step_unless_skipped,
)
from tractable.training.pictures import cycling_labels, draw_samples, plot_curves, save_gif_of_pngs
from tractable.training.run_files import MODEL_FILES, RUN_FILES, prepare_run_folder
from tractable.training.signals import install_stop_handlers, signal_name
from tractable.training.startup import EtaClock, parameter_count, size_warning, startup_line
from tractable.viz import save_grid

_INIT_SALT = 0x1A17
_STEP_SALT = 0x57E9


class TrainingInterrupted(TrainingError):
    """Ctrl-C, SIGTERM or SIGHUP: a checkpoint was saved and training stopped; `--resume`
    continues it. `exit_status`: 128 + the signal's number, as shells report it."""

    def __init__(self, message: str, exit_status: int = 130) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class _LossOf(nn.Module):
    """`forward = model.loss`, so DDP and torch.compile see the whole training objective."""

    def __init__(self, model: TractableModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        return self.model.loss(x, y)


Callback = Callable[["Trainer"], None]


def step_runs_on_device(device: torch.device, optimizer: torch.optim.Optimizer) -> bool:
    """Whether training steps on `device` skip the per-step host read of loss and grad norm.

    On CUDA that read waits for the step to finish and drains the launch queue; on the
    CPU it costs nothing, so the CPU keeps the simpler synchronous step. Needs an
    optimizer that can skip a non-finite step on the device (`skips_on_device`: fused
    Adam, not Adamax or openai-adamax, which keep the synchronous step).
    """
    return device.type == "cuda" and skips_on_device(optimizer)


def _to_channels_last(model: nn.Module) -> None:
    """NHWC weights for the convolutions, except 1×1 kernels: their NHWC and NCHW strides
    describe the same memory, and they keep the NCHW ones that the gradients of their
    matmul form come back with (DDP's buckets expect a gradient's strides to be its
    parameter's)."""
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 4 and p.shape[2:] == (1, 1):
                p.data = p.data.clone(memory_format=torch.contiguous_format)


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


def _release_lock_on_failure(init: Callable[..., None]) -> Callable[..., None]:
    """A `Trainer.__init__` that fails after taking the run folder's lock releases it at
    once (not when the half-built trainer is garbage-collected)."""
    @functools.wraps(init)
    def wrapper(self: Trainer, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            lock = getattr(self, "_lock", None)
            if lock is not None:
                lock.release()
            raise

    return wrapper


class Trainer:
    """Trains `model` on `train_set`, evaluating on `test_set` (may be None)."""

    @_release_lock_on_failure
    def __init__(
        self,
        model: TractableModel,
        train_set: Dataset,
        test_set: Dataset | None,
        config: TrainConfig,
        resume: bool = False,
        transform: BatchTransform | None = None,
        callbacks: Sequence[Callback] = (),
        preset: str | None = None,
        overwrite: bool = False,
    ) -> None:
        """`overwrite`: start a new run in a folder that holds other files (the previous
        run's files are replaced; files tractable did not write are kept)."""
        config.validate()
        self.cfg = config
        self.env = distributed.setup(config.device)
        self.run_dir = Path(config.out) if config.out else None
        self.callbacks = list(callbacks)
        self.opt_cfg = resolve_defaults(model.training_defaults(), config.optimizer_overrides())
        check_data_fits_model(model, train_set, config.data)
        if test_set is not None:
            check_data_fits_model(model, test_set, config.data)
        self.model = model.to(self.env.device)
        self.train_set, self.test_set = train_set, test_set
        self.stream = BatchStream(train_set, self.opt_cfg.batch_size, config.seed,
                                  self.env.rank, self.env.world_size, transform)
        if (self.opt_cfg.batch_size // self.env.world_size) % config.grad_accum:
            raise ConfigError(
                f"batch size {self.opt_cfg.batch_size} over {self.env.world_size} process(es) "
                f"does not split into {config.grad_accum} equal micro-batches (--grad-accum)")
        if self.env.device.type == "cuda" and transform is None:
            self.stream.move_images_to(self.env.device)
        self.total_steps = self._total_steps()
        self.preset = preset
        self.step = 0
        self.best_bpd: float | None = None
        self.consecutive_bad = 0
        # per-step [loss, bpd, grad norm, stop] not read by the host yet (see `_catch_up`)
        self._unread: list[Tensor] = []
        self._window: list[tuple[float, float]] = []  # (loss, bpd) of good steps since a log
        self._last_gnorm = math.nan
        self._stop_seen = False
        self.last_checkpoint: tuple[int, Path] | None = None
        self._good = LastGood(self.run_dir / STATE_NAME
                              if self.run_dir is not None and self.env.is_main else None)
        self._stop_requested = False
        self._last_eval_step = -1
        self._last_ckpt_step = -1
        self._elapsed_before = 0.0  # wall time of earlier sessions of this run
        self._t_start = time.perf_counter()

        self.channels_last = (model.prefers_channels_last if config.channels_last is None
                              else config.channels_last)
        if self.channels_last:
            _to_channels_last(self.model)
        self.optimizer = build_optimizer(self.model.parameters(), self.opt_cfg,
                                         fused=config.fused_optimizer)
        self.sync_free = step_runs_on_device(self.env.device, self.optimizer)
        # one process per run folder, from before the first read to the end of `fit`
        self._lock = FolderLock(self.run_dir) if self.env.is_main and self.run_dir else None
        if self._lock is not None:
            self._lock.acquire()
        if self.env.is_main:
            self._remove_stale_temp_files()
        state = self._load_resume_state() if resume else None
        if state is None:
            self._check_fresh_run_dir(overwrite)
        start = int(state.get("step", 0)) if state is not None else 0
        self.compiled = should_compile(model, config.compile, self.total_steps - start,
                                       self.env.device)
        self._announce(start)
        if self.compiled and config.compile is None and self.env.is_main and not config.quiet:
            after = model.compile_after_steps(self.env.device)
            print(f"compile: on by default for this {model.family} model's runs of at least "
                  f"{after:,} steps; the first steps compile (warm-up), --no-compile skips it",
                  file=sys.stderr)
        self.log = MetricsLog(self.run_dir if self.env.is_main else None,
                              tensorboard=config.tensorboard and self.env.is_main)
        if state is None:
            self._data_dependent_init()
        self.ema = EMA(self.model, self.opt_cfg.ema_decay, self.opt_cfg.ema_warmup)
        if state is not None:
            self._restore(state)
            self._rewrite_model_folder()
        self.wrapped = self._wrap()
        note = getattr(train_set, "split_note", None)
        if note and self.env.is_main and not config.quiet and state is None:
            print(f"data: {note}", file=sys.stderr)
        if self.env.is_main and self.run_dir is not None:
            self._write_run_json()

    # ---- set-up ------------------------------------------------------------------------
    def _total_steps(self) -> int:
        if self.cfg.max_steps is not None:
            return self.cfg.max_steps
        return (self.cfg.epochs or 1) * self.stream.steps_per_epoch

    def _announce(self, step: int) -> None:
        """The start-up line (and a size warning) before the slow parts: init, steps."""
        if not self.env.is_main:
            return
        params = parameter_count(self.model)
        shape = tuple(self.model.config.image_shape)
        n_train = len(self.stream.images)
        n_test = len(self.test_set) if self.test_set is not None else None  # type: ignore[arg-type]
        print(startup_line(self.model, self.preset, params, self.env.device,
                           self.env.world_size,
                           dataclasses.replace(self.cfg, channels_last=self.channels_last,
                                               compile=self.compiled),
                           self.opt_cfg.batch_size,
                           self.cfg.data, shape, n_train, n_test, self.total_steps,
                           self.stream.steps_per_epoch, step, self.cfg.out), flush=True)
        warning = size_warning(self.model, params, self.env.device, shape, n_train)
        if warning:
            print(warning, file=sys.stderr, flush=True)

    def _remove_stale_temp_files(self) -> None:
        """Temporary files of writes cut short by a kill (see `tractable._io`)."""
        if self.run_dir is None:
            return
        removed = [*remove_stale_temp_files(self.run_dir, set(RUN_FILES)),
                   *remove_stale_temp_files(self.run_dir / MODEL_DIR, set(MODEL_FILES)),
                   *remove_stale_temp_files(self.run_dir / "samples")]
        if removed and not self.cfg.quiet:
            print(f"removed {len(removed)} temporary file(s) left in {self.run_dir} by an "
                  "interrupted write", file=sys.stderr)

    def _check_fresh_run_dir(self, overwrite: bool) -> None:
        """A new run writes only into a missing or empty folder, unless `overwrite`; only
        files tractable wrote are ever replaced (`run_files.prepare_run_folder`)."""
        if self.run_dir is None or not self.env.is_main:
            return  # rank 0 decides: other ranks could already see its first files
        removed = prepare_run_folder(self.run_dir, overwrite)
        if removed and not overwrite and not self.cfg.quiet:
            print(f"{self.run_dir}: replacing the files of an earlier run that saved no "
                  "checkpoint", file=sys.stderr)

    def _data_dependent_init(self) -> None:
        """Rank 0 initializes from a data batch (weight norm, ActNorm), then broadcasts."""
        if self.env.is_main:
            n = min(self.cfg.init_batch_size or self.opt_cfg.batch_size, len(self.stream.images))
            g = torch.Generator().manual_seed(mix_seed(self.cfg.seed, _INIT_SALT))
            idx = torch.randperm(len(self.stream.images), generator=g)[:n]
            x = self.stream.rows(idx).to(self.env.device)
            y = self.stream.labels[idx].to(self.env.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            torch.manual_seed(mix_seed(self.cfg.seed, _INIT_SALT, 1))
            with torch.no_grad():
                self.model.data_dependent_init(x, labels_for(self.model, y))
        distributed.broadcast_module(self.model, self.env)

    def _wrap(self) -> nn.Module:
        wrapped: nn.Module = _LossOf(self.model)
        self._ddp: Any = None
        if self.env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            # static_graph: parameters a family leaves unused (the same ones every step)
            # are found in the first step, with no per-step graph traversal afterwards.
            wrapped = self._ddp = DDP(wrapped, device_ids=ids, static_graph=True)
        if self.compiled:
            wrapped = torch.compile(wrapped)  # type: ignore[assignment]
        return wrapped

    def _write_run_json(self) -> None:
        assert self.run_dir is not None
        atomic_write_json(self.run_dir / RUN_NAME, {
            "format_version": RUN_FORMAT,
            "family": self.model.family,
            "data": self.cfg.data,
            "train": self.cfg.to_dict(),
            "optimizer": asdict(self.opt_cfg),
            "model_config": self.model.config.to_dict(),
            "world_size": self.env.world_size,
            "preset": self.preset,
            "data_split": getattr(self.train_set, "split_note", None),
            "tractable_version": __version__,
        })

    # ---- checkpoints -------------------------------------------------------------------
    def _load_resume_state(self) -> dict[str, Any]:
        if self.run_dir is None:
            raise ConfigError("resume needs the run folder (out=...)")
        return load_state(self.run_dir / STATE_NAME)

    def _rewrite_model_folder(self) -> None:
        """Make model/ hold state.pt's step again: a kill between the checkpoint's final
        renames can leave model/ one checkpoint ahead of state.pt (rank 0)."""
        if not self.env.is_main or self.run_dir is None:
            return
        try:
            with atomic_group():
                self.ema.model.save_pretrained(self.run_dir / MODEL_DIR,
                                               raw_state=self.model.state_dict())
        except OSError as e:
            raise self._write_failure(e) from None

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            _match_state_layout(self.optimizer)
            self.step = int(state["step"])
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
            raise CheckpointError(f"{self.run_dir} holds a training state that is incomplete "
                                  f"or from another model ({type(e).__name__}: {e})") from None
        self.best_bpd = state.get("best_bpd")
        self.consecutive_bad = int(state.get("consecutive_bad", 0))
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        self.log.rows = list(state.get("history", []))
        rng = state.get("rng", {})
        if isinstance(rng.get("torch"), Tensor):
            try:
                torch.set_rng_state(rng["torch"])
            except (RuntimeError, TypeError) as e:
                raise CheckpointError(f"{self.run_dir}: the RNG state in {STATE_NAME} is "
                                      f"corrupt ({e})") from None
        if self.env.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.env.device)
        self._last_ckpt_step = self.step
        self._last_eval_step = max([r["step"] for r in self.log.of_kind("eval")], default=-1)
        self.last_checkpoint = (self.step, self.run_dir / STATE_NAME)  # type: ignore[operator]
        self._good.saved(self.step)

    def save_checkpoint(self, periodic: bool = False) -> Path | None:
        """Write model/ (EMA + raw weights) and state.pt as one group (rank 0).

        Every file is written to a temporary name first and renamed only when all are
        written, state.pt last: a failed write (disk full) changes nothing, so model/ and
        state.pt always hold the same step. Non-finite weights are never saved: the last
        good checkpoint stays, as it does for a `periodic` one during a run of NaN/inf
        steps (`last_good`)."""
        self._catch_up()
        if periodic and self.consecutive_bad:
            return None
        self._last_ckpt_step = self.step
        if not self.env.is_main or self.run_dir is None:
            return None
        raw = self.model.state_dict()
        bad = _non_finite_tensors(raw) + [f"ema.{k}" for k in
                                          _non_finite_tensors(self.ema.state_dict())]
        if bad:
            self._refuse_non_finite_checkpoint(bad)
            return None
        epoch, index = self.stream.position(self.step)
        try:
            with atomic_group():
                self.ema.model.save_pretrained(self.run_dir / MODEL_DIR, raw_state=raw)
                save_state(self.run_dir / STATE_NAME, {
                    "step": self.step,
                    "model": {k: v.detach().cpu() for k, v in raw.items()},
                    "ema": {k: v.detach().cpu() for k, v in self.ema.state_dict().items()},
                    "optimizer": self.optimizer.state_dict(),
                    "rng": {"torch": torch.get_rng_state(),
                            "cuda": torch.cuda.get_rng_state(self.env.device)
                            if self.env.device.type == "cuda" else None},
                    "data": {"epoch": epoch, "batch_in_epoch": index, "seed": self.cfg.seed,
                             "steps_per_epoch": self.stream.steps_per_epoch,
                             "permutation": self.stream.permutation(epoch).clone()},
                    "train_config": self.cfg.to_dict(),
                    "history": self.log.rows,
                    "best_bpd": self.best_bpd,
                    "consecutive_bad": self.consecutive_bad,
                    "elapsed_s": self.elapsed(),
                })
            self.last_checkpoint = (self.step, self.run_dir / STATE_NAME)
            self._good.saved(self.step)
            self.log.write()
            self._write_summary()
        except OSError as e:
            raise self._write_failure(e) from None
        return self.run_dir / STATE_NAME

    def _intact_checkpoint(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint was saved yet"
        step, path = self.last_checkpoint
        return f"the last complete checkpoint is step {step} ({path} and {path.parent / MODEL_DIR})"

    def _write_failure(self, e: OSError) -> CheckpointError:
        """A one-line error for a failed checkpoint write, naming the intact checkpoint."""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "the disk is full"
        else:
            what = f"{e.strerror or e}"
        return CheckpointError(
            f"could not write the checkpoint of step {self.step} to {self.run_dir}: {what}"
            f"{f' ({e.filename})' if e.filename else ''}; nothing of it was kept, "
            f"{self._intact_checkpoint()}. Free space, then continue with --resume")

    def _refuse_non_finite_checkpoint(self, names: list[str]) -> None:
        self.log.add("skip", self.step, skipped=self.consecutive_bad,
                     note=f"checkpoint not saved: non-finite weights ({names[0]})")
        if not self.cfg.quiet:
            tqdm.write(f"step {self.step}: {len(names)} weight tensor(s) are NaN/inf (e.g. "
                       f"{names[0]}); checkpoint not saved, {self._intact_checkpoint()}",
                       file=sys.stderr)

    def elapsed(self) -> float:
        """Wall-clock seconds this run has trained, over all its sessions."""
        return self._elapsed_before + time.perf_counter() - self._t_start

    def _write_summary(self) -> None:
        assert self.run_dir is not None
        evals = self.log.of_kind("eval")
        atomic_write_json(self.run_dir / SUMMARY_NAME, {
            "family": self.model.family, "data": self.cfg.data, "step": self.step,
            "total_steps": self.total_steps, "best_test_bpd": self.best_bpd,
            "last_test_bpd": evals[-1]["test_bpd"] if evals else None,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "test_images": len(self.test_set)  # type: ignore[arg-type]
            if self.test_set is not None else 0,
            "elapsed_s": round(self.elapsed(), 1),
        })

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to `total_steps`; returns a summary (final/best test bits/dim)."""
        if self._lock is not None:
            self._lock.acquire()  # again, if an earlier `fit` released it
        restore_sigint = self._install_sigint()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (self.cfg.progress and self.env.is_main and sys.stderr.isatty()))
        if self.sync_free and not skips_on_device(self.optimizer):
            raise ConfigError(f"{type(self.optimizer).__name__} cannot skip a non-finite step "
                              "on the device; this run needs the synchronous step")
        self._window, self._unread = [], []
        t_window = time.perf_counter()
        eta = EtaClock(self.step, self.total_steps)
        try:
            while self.step < self.total_steps:
                eta.start_step()
                self._train_step()
                eta_line = eta.end_step(self.step)
                if eta_line and self.env.is_main and not self.cfg.quiet:
                    tqdm.write(eta_line)
                bar.update(1)
                log_due = self.step % self.cfg.log_every == 0 or self.step == self.total_steps
                eval_due = self._eval_due()
                checkpoint_due = self.step % self.cfg.checkpoint_every == 0
                if self._read_due(log_due or eval_due or checkpoint_due):
                    self._catch_up()
                if log_due:
                    dt = time.perf_counter() - t_window
                    self._log_train(dt, bar)
                    self._window, t_window = [], time.perf_counter()
                t_side = time.perf_counter()
                if eval_due:
                    self.evaluate_and_draw()
                if checkpoint_due:
                    self.save_checkpoint(periodic=True)
                t_window += time.perf_counter() - t_side  # img/s counts training only
                for cb in self.callbacks:
                    cb(self)
                if self._stop_seen:  # Ctrl-C on any rank: every rank stops after this step
                    self._interrupt()
            if self._last_eval_step != self.step:
                self.evaluate_and_draw()
            if self._last_ckpt_step != self.step:
                self.save_checkpoint()
        finally:
            bar.close()
            restore_sigint()
            self.log.close()
            if self._lock is not None:
                self._lock.release()
        return {"step": self.step, "best_test_bpd": self.best_bpd, "rank": self.env.rank,
                "run_dir": str(self.run_dir) if self.run_dir else None}

    def _train_step(self) -> None:
        """One optimizer step on batch `self.step`; its statistics join `_unread`.

        Synchronous: the host reads (loss, grad norm) and applies the update only if both
        are finite. `sync_free`: the same decision as a device tensor that the optimizer
        (`found_inf`) and the EMA obey, with nothing read back here.
        """
        torch.manual_seed(mix_seed(self.cfg.seed, _STEP_SALT, self.env.rank, self.step))
        x, y = self.stream.batch(self.step)
        x, y = x.to(self.env.device, non_blocking=True), y.to(self.env.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        set_lr(self.optimizer, lr_at(self.step, self.opt_cfg))
        self.optimizer.zero_grad(set_to_none=True)
        loss, bpd = self._accumulate_gradients(x, y)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        gnorm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=x.device)
        # torch.full, not torch.tensor: a fill kernel, no copy from the host (which waits)
        stats = torch.stack([loss, bpd,
                             gnorm.float().to(x.device),
                             torch.full((), float(self._stop_requested), device=x.device)])
        if self.env.distributed:
            distributed.all_reduce_sum(stats, self.env)
            stats[:3] /= self.env.world_size
        if self.sync_free:
            ok = torch.isfinite(stats[0]) & torch.isfinite(stats[2])
            self._clip(gnorm)  # a non-finite norm makes the gradients NaN: skipped below
            step_unless_skipped(self.optimizer, ok)
            self.ema.update(self.model, self.step, ok)
            self._unread.append(stats)
        else:
            host = stats.cpu()
            loss_v, _, gnorm_v, _ = host.tolist()
            if math.isfinite(loss_v) and math.isfinite(gnorm_v):
                self._clip(gnorm)
                self.optimizer.step()
                self.ema.update(self.model, self.step)
            else:
                self.optimizer.zero_grad(set_to_none=True)
            self._unread.append(host)
        self.step += 1
        if not self.sync_free:
            self._catch_up()  # the guard's count and error within the step, as always

    def _clip(self, gnorm: Tensor) -> None:
        if self.opt_cfg.grad_clip:  # None or 0: no clipping
            torch.nn.utils.clip_grads_with_norm_(self.model.parameters(),
                                                 self.opt_cfg.grad_clip, gnorm)

    def _read_due(self, needed: bool) -> bool:
        """Whether the host reads the unread step statistics now (`needed`: a log,
        evaluation or checkpoint step). A sync-free run also reads when the unread steps,
        if all bad, would reach `max_bad_steps` in a row: the run then stops at the step
        where the synchronous one does, with no update after it. Ctrl-C in one process is
        seen at once; in a distributed run it travels in the statistics and takes effect
        at the next read, on every rank at the same step."""
        if not self.sync_free or needed or self.step >= self.total_steps:
            return True
        if self._stop_requested and not self.env.distributed:
            return True
        return len(self._unread) >= self.cfg.max_bad_steps - self.consecutive_bad

    def _catch_up(self) -> None:
        """Read the statistics of the steps since the last read (on CUDA one host sync)
        and account for them in step order: the NaN/inf guard's count, its "skip" rows and
        its error, the (loss, bpd) window of the next train row, the last grad norm and
        the stop flag."""
        if not self._unread:
            return
        rows = torch.stack(self._unread).tolist()
        self._unread.clear()
        first = self.step - len(rows) + 1
        for i, (loss, bpd, gnorm, stop) in enumerate(rows):
            self._last_gnorm = gnorm
            self._stop_seen = self._stop_seen or stop > 0
            self._good.observed(first + i, math.isfinite(loss) and math.isfinite(gnorm))
            if math.isfinite(loss) and math.isfinite(gnorm):
                self.consecutive_bad = 0
                self._window.append((loss, bpd))
            else:
                self._bad_step(first + i, loss, gnorm)

    def _accumulate_gradients(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Backward over `grad_accum` equal micro-batches; (mean loss, mean bpd), detached.

        Each micro-batch's loss is divided by their number, so the gradient is that of the
        mean over this rank's batch; DDP synchronizes only on the last micro-batch.
        """
        k = self.cfg.grad_accum
        size = len(x) // k
        total_loss = torch.zeros((), device=x.device)
        total_bpd = torch.zeros((), device=x.device)
        for i in range(k):
            xs, ys = x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]
            sync = i == k - 1 or self._ddp is None
            with contextlib.nullcontext() if sync else self._ddp.no_sync():  # type: ignore[union-attr]
                with autocast(self.env.device, self.cfg.precision):
                    loss, metrics = self.wrapped(xs, labels_for(self.model, ys))
                (loss / k if k > 1 else loss).backward()
            total_loss += loss.detach().float()
            total_bpd += metrics.get("bpd", loss).detach().float().mean()
        return total_loss / k, total_bpd / k

    def _bad_step(self, step: int, loss: float, gnorm: float) -> None:
        """NaN/inf guard for step `step` (1-based), whose update was skipped: log it; give
        up after `max_bad_steps` in a row."""
        self.consecutive_bad += 1
        self.log.add("skip", step, loss=loss, grad_norm=gnorm, skipped=self.consecutive_bad)
        if self.env.is_main and not self.cfg.quiet:
            tqdm.write(f"step {step}: non-finite loss {loss} / grad norm {gnorm}; "
                       f"update skipped ({self.consecutive_bad} in a row)", file=sys.stderr)
        if self.consecutive_bad >= self.cfg.max_bad_steps:
            self.log.write()
            good, good_step = self._good.roll_back() if self.env.is_main else (False, None)
            if self.last_checkpoint is not None and good:
                at = f" (step {good_step})" if good_step is not None else ""
                where = (f"the last good checkpoint is {self.last_checkpoint[1]}{at}; continue "
                         "from it with --resume plus a lower --lr, more --warmup-steps or a "
                         "--grad-clip (a resumed run may change these)")
            elif self.last_checkpoint is not None:
                where = (f"the checkpoint in {self.last_checkpoint[1]} (step "
                         f"{self.last_checkpoint[0]}) gave a non-finite loss at once, so "
                         "resuming it cannot help; start again with a lower --lr, more "
                         "--warmup-steps or a --grad-clip")
            else:
                where = ("no checkpoint was saved yet; start again with a lower --lr, more "
                         "--warmup-steps or a --grad-clip")
            raise TrainingError(
                f"{self.consecutive_bad} consecutive steps had a non-finite loss or gradient "
                f"(last at step {step}); training stopped. {where}"
            )

    def _log_train(self, dt: float, bar: Any) -> None:
        window, gnorm = self._window, self._last_gnorm
        if not window:
            return
        loss = sum(w[0] for w in window) / len(window)
        bpd = sum(w[1] for w in window) / len(window)
        img_s = len(window) * self.opt_cfg.batch_size / max(dt, 1e-9)
        epoch = self.step / self.stream.steps_per_epoch
        self.log.add("train", self.step, epoch=epoch, loss=loss, bpd=bpd,
                     lr=lr_at(self.step - 1, self.opt_cfg), grad_norm=gnorm, img_per_s=img_s,
                     elapsed_s=self.elapsed())
        self.log.write()
        bar.set_postfix(loss=f"{loss:.4f}", bpd=f"{bpd:.4f}", img_s=f"{img_s:.1f}")
        if self.env.is_main and not self.cfg.quiet and bar.disable:
            print(f"step {self.step}/{self.total_steps} epoch {epoch:.2f} loss {loss:.4f} "
                  f"bpd {bpd:.4f} {img_s:.1f} img/s", flush=True)

    def _eval_due(self) -> bool:
        if self.cfg.eval_every is not None:
            return self.step % self.cfg.eval_every == 0
        return self.step % self.stream.steps_per_epoch == 0

    # ---- evaluation and pictures ---------------------------------------------------------
    def evaluate_and_draw(self) -> float | None:
        """Test bits/dim with the EMA weights (every rank scores a shard); rank 0 draws."""
        self._catch_up()  # skip rows of earlier steps come before this step's eval row
        self._last_eval_step = self.step
        bpd = None
        if self.test_set is not None:
            res = evaluate_bpd(self.ema.model, self.test_set,
                               batch_size=self.cfg.eval_batch_size or self.opt_cfg.batch_size,
                               precision=self.cfg.eval_precision, device=self.env.device,
                               rank=self.env.rank, world_size=self.env.world_size)
            bpd = res.bits_per_dim
            self.best_bpd = bpd if self.best_bpd is None else min(self.best_bpd, bpd)
        if not self.env.is_main:
            return bpd
        grid = self._draw_grid()
        epoch = self.step / self.stream.steps_per_epoch
        self.log.add("eval", self.step, epoch=epoch, test_bpd=bpd, grid=grid)
        if not self.cfg.quiet:
            msg = f"step {self.step} epoch {epoch:.2f}: test {self.model.bits_per_dim_label} (EMA) "
            tqdm.write(msg + (f"{bpd:.4f}" if bpd is not None else "n/a"))
        if self.run_dir is not None:
            self.log.write()
            self._draw_curves()
        return bpd

    def _draw_grid(self) -> str | None:
        n = self.cfg.samples_per_eval
        if self.run_dir is None or n == 0:
            return None
        model = self.ema.model
        y = cycling_labels(model, n)
        try:
            x = draw_samples(model, n, y=y, seed=self.cfg.seed, sampler=self.cfg.sampler)
        except NumericalError as e:  # e.g. an early Glow whose inverse overflows
            if not self.cfg.quiet:
                tqdm.write(f"step {self.step}: no sample grid: {e}", file=sys.stderr)
            return None
        name = f"samples/step_{self.step:08d}.png"
        k = model.config.num_classes
        names = list(model.config.class_names)
        save_grid(x, self.run_dir / name, nrow=k if k else None,
                  col_labels=(names if len(names) == k else [str(j) for j in range(k)])
                  if k else None, title=f"step {self.step:,}")
        frames = [self.run_dir / r["grid"] for r in self.log.of_kind("eval") if r.get("grid")]
        save_gif_of_pngs(frames + [self.run_dir / name], self.run_dir / "samples.gif")
        return name

    def _draw_curves(self) -> None:
        assert self.run_dir is not None
        train = self.log.of_kind("train")
        evals = [r for r in self.log.of_kind("eval") if r.get("test_bpd") is not None]
        plot_curves({"train (batch mean)": ([r["step"] for r in train],
                                            [r["bpd"] for r in train]),
                     "test (EMA weights)": ([r["step"] for r in evals],
                                            [r["test_bpd"] for r in evals])},
                    self.run_dir / "bpd.png", title=f"{self.model.family} on {self.cfg.data}",
                    xlabel="optimizer step", ylabel=self.model.bits_per_dim_label)

    # ---- Ctrl-C ------------------------------------------------------------------------
    def _install_sigint(self) -> Callable[[], None]:
        """First Ctrl-C, SIGTERM or SIGHUP: finish the step, save, stop. A second one stops
        at once (`tractable.training.signals`)."""
        def first(signum: int) -> None:
            self._stop_requested = True
            self._stop_signal = signum
            if self.env.is_main:
                with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
                    print(f"\n{signal_name(signum)}: saving a checkpoint after this step "
                          "(Ctrl-C again to quit without saving)", file=sys.stderr, flush=True)

        return install_stop_handlers(first)

    def _interrupt(self) -> None:
        path = self.save_checkpoint()
        self.log.write()
        signum = getattr(self, "_stop_signal", signal.SIGINT)
        raise TrainingInterrupted(
            f"{signal_name(signum)}: interrupted at step {self.step}/{self.total_steps}; "
            f"checkpoint saved to {path}. Continue with the same command plus --resume"
            if path else f"interrupted at step {self.step}/{self.total_steps}",
            exit_status=128 + int(signum))


def _non_finite_tensors(state: dict[str, Tensor]) -> list[str]:
    """Names of the floating tensors of a state dict that hold a NaN or ±inf."""
    return [k for k, v in state.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]
