"""Stopping a run cleanly on Ctrl-C: finish the step, save a checkpoint, stop.

The trainer enters one `Interrupt` around its loop. The first SIGINT only sets
`requested`; the trainer reads it into the step statistics, so under torchrun every rank
stops after the same step, then saves and raises `TrainingInterrupted` (`--resume`
continues the run exactly). A second SIGINT stops at once, without saving. Leaving the
context restores the previous handler.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

from tractable.errors import TrainingError


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint was saved and training stopped; `--resume` continues it."""


class Interrupt:
    """A context that turns the first Ctrl-C into a request to stop after this step."""

    def __init__(self, announce: bool = True) -> None:
        """`announce`: say on stderr that a checkpoint follows (rank 0 only)."""
        self.announce = announce
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Interrupt:
        # signal handlers can only be set from the main thread (e.g. not in the app's worker)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._installed and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to "
                  "quit without saving)", file=sys.stderr, flush=True)
