"""Stopping a run from outside: Ctrl-C, SIGTERM and SIGHUP mean the same.

The trainer enters one `Interrupt` around its loop. The first SIGINT (Ctrl-C), SIGTERM
(what `kill` and cluster schedulers send before they kill a job) or SIGHUP (the terminal
went away) only sets `requested`; the trainer reads it into the step statistics, so under
torchrun every rank stops after the same step, then saves and raises `TrainingInterrupted`
(`--resume` continues the run exactly; the exit status is 128 + the signal's number). A
second one of them stops at once, without saving, as `KeyboardInterrupt` (the command line
prints one line and exits with 130; the previous checkpoint stays intact, every write
being atomic). SIGKILL cannot be caught: the run then continues from its last checkpoint.
Leaving the context restores the previous handlers.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

from tractable.errors import TrainingError

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class TrainingInterrupted(TrainingError):
    """Ctrl-C, SIGTERM or SIGHUP: a checkpoint was saved and training stopped; `--resume`
    continues it. `exit_status`: 128 + the signal's number, as shells report it."""

    def __init__(self, message: str, exit_status: int = 130) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def signal_name(signum: int) -> str:
    """"SIGTERM" for 15, and so on."""
    with contextlib.suppress(ValueError):
        return signal.Signals(signum).name
    return f"signal {signum}"


class Interrupt:
    """A context that turns the first stop signal into a request to stop after this step."""

    def __init__(self, announce: bool = True) -> None:
        """`announce`: say on stderr that a checkpoint follows (rank 0 only)."""
        self.announce = announce
        self.requested = False
        self.signum = int(signal.SIGINT)  # the first signal received
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        # signal handlers can only be set from the main thread (e.g. not in the app's worker)
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        if self.announce:
            with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
                print(f"\n{signal_name(signum)}: saving a checkpoint after this step (Ctrl-C "
                      "again to quit without saving)", file=sys.stderr, flush=True)
