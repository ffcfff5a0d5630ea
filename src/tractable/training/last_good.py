"""Which checkpoint of a run is good: one whose weights trained on without a NaN/inf.

A checkpoint at step s holds the weights after update s. Whether they are good shows only
at step s + 1: a run diverging under a too-large learning rate can take finite steps into
weights that give a non-finite loss at once, and resuming those fails however the rescue
settings change. So when step s + 1 is finite, `state.pt` is kept as `state.good.pt` too
(a hard link, no copy: the next checkpoint writes a new file); when the NaN/inf guard
stops a run whose latest checkpoint was never confirmed, `state.good.pt` is put back in
its place, and the advice to resume names that step; model/ and summary.json stay at the
later step until `--resume` rewrites model/ from state.pt. The periodic checkpoint is
skipped while the guard is counting bad steps (its weights just gave a non-finite loss:
`callbacks.Checkpointing`); the one at the end of a run or on a stop is still saved, if its
weights are finite.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tractable.run_folder import GOOD_LINK_NAME, GOOD_NAME

__all__ = ["GOOD_NAME", "LastGood"]


class LastGood:
    """Tracks the run's checkpoints: the latest (`saved`), and whether it proved good."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.latest: int | None = None  # step of state.pt
        self.confirmed: int | None = None  # step of state.good.pt

    @property
    def good_path(self) -> Path:
        return self.state_path.with_name(GOOD_NAME)

    def saved(self, step: int) -> None:
        """A checkpoint of step `step` is now `state.pt` (confirmed by the next step)."""
        self.latest = step

    def observed(self, step: int, finite: bool) -> None:
        """Step `step` (1-based) was finite or not; confirms the checkpoint of step - 1."""
        if (not finite or self.latest is None or step != self.latest + 1
                or self.confirmed == self.latest):
            return
        good = self.good_path
        tmp = good.with_name(GOOD_LINK_NAME)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.link(self.state_path, tmp)
            os.replace(tmp, good)
        except OSError:  # no hard links here: the guard then only advises a new run
            return
        self.confirmed = self.latest

    def roll_back(self) -> tuple[bool, int | None]:
        """Make `state.pt` a checkpoint that proved good, if there is one: the latest if it
        was confirmed, else `state.good.pt` put back in its place (model/ and summary.json
        stay at the later step until a resume rewrites model/). Returns (whether state.pt
        is now good, its step if known)."""
        if self.latest is not None and self.confirmed == self.latest:
            return True, self.latest
        good = self.good_path
        if not good.is_file():
            return False, None
        os.replace(good, self.state_path)
        self.latest = self.confirmed
        return True, self.confirmed
