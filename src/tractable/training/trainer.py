"""The training loop: one model-agnostic trainer for every family.

It uses only the `TractableModel` contract: `loss(x, y) -> (scalar, {"bpd": ...})`,
`data_dependent_init`, `training_defaults()`, `sample`, `save_pretrained`. `fit` runs,
for every step:

    batch(step) → [batch transform] → shard → autocast(loss) → backward → global grad norm
    → NaN/inf guard → clip → optimizer step → EMA update                  (`_train_step`)
    → read the step statistics when due                        (`step_stats.StepStats`)
    → callbacks: train row, evaluation and pictures, checkpoint, yours        (`callbacks`)
    → stop after Ctrl-C                                             (`interrupt.Interrupt`)

The run folder's files live in `tractable.run_folder`, the checkpoint in `checkpoint`.

On CUDA with fused Adam the step never waits for the device (`step_runs_on_device`): the
guard is a device-side flag that the optimizer and the EMA update obey, and the host reads
the steps' statistics only at log, evaluation and checkpoint steps, at the end, and often
enough that `max_bad_steps` bad steps in a row are seen at the step they happen
(`StepStats.read_due`). Everything else, the CPU included, reads them after every step.

Everything random in a step is a function of (seed, rank, step): batches (see `batches`),
augmentation, and the global torch RNG (dropout), reseeded before each step. Together with
the checkpoint (weights, EMA, optimizer, step) this makes a resumed run continue exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tractable.errors import ConfigError
from tractable.models.base import TractableModel
from tractable.models.bpd import autocast, check_data_fits_model, labels_for
from tractable.run_folder import RunRecord, claim_run_folder
from tractable.training import distributed
from tractable.training.batches import BatchStream, BatchTransform, mix_seed
from tractable.training.callbacks import Callback, Checkpointing, Evaluation, Periodic, TrainLog
from tractable.training.checkpoint import Checkpoints
from tractable.training.compilation import should_compile
from tractable.training.config import TrainConfig
from tractable.training.ema import EMA
from tractable.training.interrupt import Interrupt, TrainingInterrupted, signal_name
from tractable.training.metrics import MetricsLog
from tractable.training.optim import (
    build_optimizer,
    lr_at,
    resolve_defaults,
    set_lr,
    skips_on_device,
    step_unless_skipped,
)
from tractable.training.placement import to_channels_last, wrap_loss
from tractable.training.startup import announce
from tractable.training.step_stats import StepStats

__all__ = ["Callback", "Trainer", "TrainingInterrupted", "step_runs_on_device"]

_INIT_SALT = 0x1A17
_STEP_SALT = 0x57E9


def step_runs_on_device(device: torch.device, optimizer: torch.optim.Optimizer) -> bool:
    """Whether training steps on `device` skip the per-step host read of loss and grad norm.

    On CUDA that read waits for the step to finish and drains the launch queue; on the
    CPU it costs nothing, so the CPU keeps the simpler synchronous step. Needs an
    optimizer that can skip a non-finite step on the device (`skips_on_device`: fused
    Adam, not Adamax or openai-adamax, which keep the synchronous step).
    """
    return device.type == "cuda" and skips_on_device(optimizer)


def _release_lock_on_failure(init: Callable[..., None]) -> Callable[..., None]:
    """A `Trainer.__init__` that fails after taking the run folder's lock releases it at
    once (not when the half-built trainer is garbage-collected)."""
    @functools.wraps(init)
    def wrapper(self: Trainer, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            lock = getattr(self, "lock", None)
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
        run's files are replaced; files tractable did not write are kept). `callbacks` run
        after every step, after the trainer's own (see `callbacks`)."""
        config.validate()
        self.cfg, self.preset, self.train_set, self.test_set = config, preset, train_set, test_set
        self.env = distributed.setup(config.device)
        self.run_dir = Path(config.out) if config.out else None
        self.opt_cfg = resolve_defaults(model.training_defaults(), config.optimizer_overrides())
        self.model = self._place(model)
        self.stream = self._batch_stream(transform)
        self.total_steps = config.max_steps or (config.epochs or 1) * self.stream.steps_per_epoch
        self.step = 0
        self.best_bpd: float | None = None  # best test bits/dim so far (`Evaluation`)
        self.train_s = 0.0  # seconds spent in the steps of this session (not callbacks)
        self.elapsed_before, self._t_start = 0.0, time.perf_counter()
        self.optimizer = build_optimizer(self.model.parameters(), self.opt_cfg,
                                         fused=config.fused_optimizer)
        self.sync_free = step_runs_on_device(self.env.device, self.optimizer)
        self.checkpoints = Checkpoints(self.run_dir, self.env.device, writes=self.env.is_main)
        state = self._open_run_folder(resume, overwrite)
        start = int(state["step"]) if state is not None else 0
        self.compiled = should_compile(model, config.compile, self.total_steps - start,
                                       self.env.device)
        announce(self, start)
        self.log = MetricsLog(self.run_dir if self.env.is_main else None,
                              tensorboard=config.tensorboard and self.env.is_main)
        self.stats = StepStats(self.env, config.max_bad_steps, self.log,
                               verbose=self.env.is_main and not config.quiet,
                               last_checkpoint=lambda: self.checkpoints.last,
                               good=self.checkpoints.good)
        self.interrupt = Interrupt(announce=self.env.is_main)
        self._start_or_restore(state)
        self.wrapped, self._ddp = wrap_loss(self.model, self.env, self.compiled)
        evaluated = [r["step"] for r in self.log.of_kind("eval")]
        self.callbacks: list[Callback] = [
            TrainLog(), Evaluation(max(evaluated, default=-1)),
            Checkpointing(self.step if state is not None else -1), *callbacks]
        self._record_run(fresh=state is None)

    # ---- set-up ------------------------------------------------------------------------
    def _place(self, model: TractableModel) -> TractableModel:
        """The model, checked against the data, on the device in its memory format."""
        for data in (self.train_set, self.test_set):
            if data is not None:
                check_data_fits_model(model, data, self.cfg.data)
        model = model.to(self.env.device)
        self.channels_last = (model.prefers_channels_last if self.cfg.channels_last is None
                              else self.cfg.channels_last)
        if self.channels_last:
            to_channels_last(model)
        return model

    def _batch_stream(self, transform: BatchTransform | None) -> BatchStream:
        stream = BatchStream(self.train_set, self.opt_cfg.batch_size, self.cfg.seed,
                             self.env.rank, self.env.world_size, transform)
        if (self.opt_cfg.batch_size // self.env.world_size) % self.cfg.grad_accum:
            raise ConfigError(
                f"batch size {self.opt_cfg.batch_size} over {self.env.world_size} process(es) "
                f"does not split into {self.cfg.grad_accum} equal micro-batches (--grad-accum)")
        if self.env.device.type == "cuda" and transform is None:
            stream.move_images_to(self.env.device)
        return stream

    def _open_run_folder(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """The checkpoint to resume from, or None for a new run. Rank 0 holds the folder's
        lock from before its first write (and its read of state.pt) to the end of `fit`
        (`claim_run_folder`)."""
        folder = self.run_dir if self.env.is_main else None
        self.lock = None if folder is None else claim_run_folder(
            folder, resume=resume, overwrite=overwrite, quiet=self.cfg.quiet)
        return self.checkpoints.load() if resume else None

    def _start_or_restore(self, state: dict[str, Any] | None) -> None:
        """A new run's data-dependent init, or a checkpoint's weights and progress."""
        if state is None:
            self._data_dependent_init()
        self.ema = EMA(self.model, self.opt_cfg.ema_decay, self.opt_cfg.ema_warmup)
        if state is not None:
            self.checkpoints.restore(self, state)

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

    def _record_run(self, fresh: bool) -> None:
        """Write run.json (rank 0), saying first how a flat image folder was split."""
        note = getattr(self.train_set, "split_note", None)
        if note and fresh and self.env.is_main and not self.cfg.quiet:
            print(f"data: {note}", file=sys.stderr)
        if self.env.is_main and self.run_dir is not None:
            RunRecord.new(self.model.family, self.cfg.to_dict(), dataclasses.asdict(self.opt_cfg),
                          self.model.config.to_dict(), self.env.world_size, self.preset,
                          note).write(self.run_dir)

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to `total_steps`; returns a summary (final/best test bits/dim)."""
        if self.sync_free and not skips_on_device(self.optimizer):
            raise ConfigError(f"{type(self.optimizer).__name__} cannot skip a non-finite step "
                              "on the device; this run needs the synchronous step")
        periodic = [cb for cb in self.callbacks if isinstance(cb, Periodic)]
        self.stats.unread.clear()
        self.stats.window.clear()
        if self.lock is not None:
            self.lock.acquire()  # again, if an earlier `fit` released it
        try:
            with self.interrupt:
                for hooks in periodic:
                    hooks.start(self)
                while self.step < self.total_steps:
                    began = time.perf_counter()
                    self._train_step()
                    if self.stats.read_due(self.step, self.total_steps, self.sync_free,
                                           any(cb.due(self) for cb in periodic),
                                           self.interrupt.requested):
                        self.read_stats()
                    self.train_s += time.perf_counter() - began
                    for callback in self.callbacks:
                        callback(self)
                    if self.stats.stop_seen:  # Ctrl-C on any rank: all stop after this step
                        self._stop_interrupted()
                for hooks in periodic:
                    hooks.finish(self)
        finally:
            for hooks in periodic:
                hooks.close()
            self.log.close()
            if self.lock is not None:
                self.lock.release()
        return {"step": self.step, "best_test_bpd": self.best_bpd, "rank": self.env.rank,
                "run_dir": str(self.run_dir) if self.run_dir else None}

    def _train_step(self) -> None:
        """One optimizer step on batch `self.step`; its statistics join `self.stats`.

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
        stats = self.stats.measure(loss, bpd, gnorm, stop=self.interrupt.requested)
        if self.sync_free:
            ok = self.stats.finite(stats)
            self._clip(gnorm)  # a non-finite norm makes the gradients NaN: skipped below
            step_unless_skipped(self.optimizer, ok)
            self.ema.update(self.model, self.step, ok)
        else:
            stats = stats.cpu()
            loss_v, _, gnorm_v, _ = stats.tolist()
            if math.isfinite(loss_v) and math.isfinite(gnorm_v):
                self._clip(gnorm)
                self.optimizer.step()
                self.ema.update(self.model, self.step)
            else:
                self.optimizer.zero_grad(set_to_none=True)
        self.stats.keep(stats)
        self.step += 1
        if not self.sync_free:
            self.read_stats()  # the guard's count and error within the step, as always

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

    def _clip(self, gnorm: Tensor) -> None:
        if self.opt_cfg.grad_clip:  # None or 0: no clipping
            torch.nn.utils.clip_grads_with_norm_(self.model.parameters(),
                                                 self.opt_cfg.grad_clip, gnorm)

    @property
    def consecutive_bad(self) -> int:
        """Non-finite steps in a row so far (as of the last read of the statistics)."""
        return self.stats.consecutive_bad

    def read_stats(self) -> None:
        """Read the statistics of the steps run so far (`StepStats.catch_up`)."""
        self.stats.catch_up(self.step)

    def _stop_interrupted(self) -> None:
        path = self.save_checkpoint()
        self.log.write()
        what = f"{signal_name(self.interrupt.signum)}: interrupted at step {self.step}/" \
               f"{self.total_steps}"
        raise TrainingInterrupted(
            f"{what}; checkpoint saved to {path}. Continue with the same command plus --resume"
            if path else what, exit_status=self.interrupt.exit_status)

    # ---- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Save a checkpoint of this step (`Checkpoints.save`); its state.pt, or None."""
        self.read_stats()
        return self.checkpoints.save(self)

    def elapsed(self) -> float:
        """Wall-clock seconds this run has trained, over all its sessions."""
        return self.elapsed_before + time.perf_counter() - self._t_start
