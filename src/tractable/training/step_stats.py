"""The statistics of the training steps and the NaN/inf guard over them.

Each step yields one tensor `[loss, bpd, grad norm, stop]` (averaged over processes, the
stop flag summed). The synchronous step reads it at once and updates only if loss and
grad norm are finite; the sync-free step (CUDA, fused Adam) keeps the decision on the
device (`finite`) and leaves the tensor unread. `StepStats.catch_up` reads every unread
step in one go, in step order: the guard's count of bad steps in a row, its "skip" rows
and its error after `max_bad_steps`, the (loss, bpd) window of the next train row, the
last grad norm and the stop flag. `read_due` says when a sync-free run must read so that
it stops at the step where the synchronous one does.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tractable.errors import TrainingError
from tractable.run_folder import MODEL_DIR
from tractable.training import distributed
from tractable.training.last_good import LastGood
from tractable.training.metrics import MetricsLog


class StepStats:
    """The unread step statistics and what reading them found."""

    def __init__(self, env: distributed.DistEnv, max_bad_steps: int, log: MetricsLog,
                 verbose: bool, last_checkpoint: Callable[[], tuple[int, Path] | None],
                 good: LastGood | None = None) -> None:
        """`verbose`: print each skipped step; `last_checkpoint()`: (step, state.pt) of the
        last checkpoint saved, named by the guard's error; `good`: which checkpoint proved
        good, told of every step and rolled back to by the guard (`last_good`)."""
        self.env, self.max_bad_steps, self.log, self.verbose = env, max_bad_steps, log, verbose
        self.last_checkpoint = last_checkpoint
        self.good = good
        self.consecutive_bad = 0
        self.unread: list[Tensor] = []  # per step [loss, bpd, grad norm, stop]
        self.window: list[tuple[float, float]] = []  # (loss, bpd) of good steps since a log
        self.last_grad_norm = math.nan
        self.stop_seen = False

    def measure(self, loss: Tensor, bpd: Tensor, grad_norm: Tensor, stop: bool) -> Tensor:
        """This step's `[loss, bpd, grad norm, stop]` on the device, over every process."""
        device = loss.device
        # torch.full, not torch.tensor: a fill kernel, no copy from the host (which waits)
        stats = torch.stack([loss, bpd, grad_norm.float().to(device),
                             torch.full((), float(stop), device=device)])
        if self.env.distributed:
            distributed.all_reduce_sum(stats, self.env)
            stats[:3] /= self.env.world_size
        return stats

    @staticmethod
    def finite(stats: Tensor) -> Tensor:
        """The guard on the device: loss and grad norm both finite (a bool tensor)."""
        return torch.isfinite(stats[0]) & torch.isfinite(stats[2])

    def keep(self, stats: Tensor) -> None:
        """Queue a step's statistics for the next read (in step order)."""
        self.unread.append(stats)

    def read_due(self, step: int, total_steps: int, sync_free: bool, needed: bool,
                 stop_requested: bool) -> bool:
        """Whether the host reads the unread statistics after step `step` (`needed`: a
        log, evaluation or checkpoint step). A sync-free run also reads when the unread
        steps, if all bad, would reach `max_bad_steps` in a row: the run then stops at the
        step where the synchronous one does, with no update after it. Ctrl-C in one
        process is seen at once; in a distributed run it travels in the statistics and
        takes effect at the next read, on every rank at the same step."""
        if not sync_free or needed or step >= total_steps:
            return True
        if stop_requested and not self.env.distributed:
            return True
        return len(self.unread) >= self.max_bad_steps - self.consecutive_bad

    def catch_up(self, step: int) -> None:
        """Read the statistics of the steps up to `step` (on CUDA one host sync) and
        account for them in step order."""
        if not self.unread:
            return
        rows = torch.stack(self.unread).tolist()
        self.unread.clear()
        first = step - len(rows) + 1
        for i, (loss, bpd, grad_norm, stop) in enumerate(rows):
            self.last_grad_norm = grad_norm
            self.stop_seen = self.stop_seen or stop > 0
            if self.good is not None:
                self.good.observed(first + i, math.isfinite(loss) and math.isfinite(grad_norm))
            if math.isfinite(loss) and math.isfinite(grad_norm):
                self.consecutive_bad = 0
                self.window.append((loss, bpd))
            else:
                self._bad_step(first + i, loss, grad_norm)

    def take_window(self) -> list[tuple[float, float]]:
        """The (loss, bpd) of the good steps since the last call (for a train row)."""
        window, self.window = self.window, []
        return window

    def _bad_step(self, step: int, loss: float, grad_norm: float) -> None:
        """Step `step` (1-based) was skipped: log it; give up after `max_bad_steps` in a row."""
        self.consecutive_bad += 1
        self.log.add("skip", step, loss=loss, grad_norm=grad_norm, skipped=self.consecutive_bad)
        if self.verbose:
            tqdm.write(f"step {step}: non-finite loss {loss} / grad norm {grad_norm}; "
                       f"update skipped ({self.consecutive_bad} in a row)", file=sys.stderr)
        if self.consecutive_bad < self.max_bad_steps:
            return
        self.log.write()
        last = self.last_checkpoint()
        good, good_step = (self.good.roll_back() if self.good is not None
                           else (True, last[0] if last is not None else None))
        if last is not None and good:
            at = f" (step {good_step})" if good_step is not None else ""  # from an earlier session
            behind = (f"; {last[1].parent / MODEL_DIR} still holds step {last[0]} until then"
                      if good_step is not None and good_step != last[0] else "")
            where = (f"the last good checkpoint is {last[1]}{at}; continue from it with "
                     "--resume plus a lower --lr, more --warmup-steps or a --grad-clip (a "
                     f"resumed run may change these){behind}")
        elif last is not None:
            where = (f"the checkpoint in {last[1]} (step {last[0]}) gave a non-finite loss "
                     "at once, so resuming it cannot help; start again with a lower --lr, "
                     "more --warmup-steps or a --grad-clip")
        else:
            where = ("no checkpoint was saved yet; start again with a lower --lr, more "
                     "--warmup-steps or a --grad-clip")
        raise TrainingError(
            f"{self.consecutive_bad} consecutive steps had a non-finite loss or gradient "
            f"(last at step {step}); training stopped. {where}")
