"""Stopping a training run from outside: Ctrl-C, SIGTERM and SIGHUP mean the same.

The first of SIGINT (Ctrl-C), SIGTERM (what `kill` and cluster schedulers send before
killing a job) or SIGHUP (the terminal went away) asks the run to stop: it finishes the
step it is in, saves a checkpoint and exits (`--resume` continues it exactly). A second
one of them stops at once without saving (the previous checkpoint stays intact: every
write is atomic), as `KeyboardInterrupt`, which the command line reports in one line with
exit status 130. SIGKILL cannot be caught: the run then continues from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


def signal_name(signum: int) -> str:
    """"SIGTERM" for 15, and so on."""
    with contextlib.suppress(ValueError):
        return signal.Signals(signum).name
    return f"signal {signum}"


def install_stop_handlers(on_first: Callable[[int], None]) -> Callable[[], None]:
    """Route the stop signals to `on_first(signum)` once, then to `KeyboardInterrupt`;
    returns the function that puts the previous handlers back. Outside the main thread
    (where Python cannot set handlers) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)
        on_first(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    return restore
