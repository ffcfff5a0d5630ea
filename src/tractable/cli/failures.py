"""How a command's failure reaches the user: one line on stderr and an exit status.

Errors meant for the user (`TractableError`) and every failure of the environment (a full
or read-only disk, a missing permission, a path under a file, an unreachable server: all
`OSError`s; memory exhausted, as Python or torch reports it; input nested too deeply to
parse) print one line without a
traceback and exit with status 2. An interrupt (a second Ctrl-C, SIGTERM or SIGHUP while
training saves its checkpoint: `tractable.training.interrupt`) prints one line and exits
with 130. Anything else is a bug in tractable and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable

from tractable.errors import TractableError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

_OS_PROBLEMS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENAMETOOLONG: "the file name is too long",
}


def os_error_line(e: OSError) -> str:
    """One line naming what went wrong with the file system (or the network) and where."""
    what = _OS_PROBLEMS.get(e.errno or 0) or e.strerror or str(e) or type(e).__name__
    where = f" ({e.filename})" if e.filename else ""
    fix = "; free space and run the command again" if e.errno in (errno.ENOSPC,
                                                                   errno.EDQUOT) else ""
    return f"{what}{where}{fix}"


def run_guarded(func: Callable[[argparse.Namespace], int | None],
                args: argparse.Namespace) -> int:
    """`func(args)`'s exit status, or the one-line report and status of its failure."""
    try:
        return int(func(args) or 0)
    except TractableError as e:
        if e.exit_status != EXIT_BAD_INPUT:  # a stop that was asked for, not a failure
            print(f"tractable: {e.for_command_line()}", file=sys.stderr)
            return e.exit_status
        return _fail(e.for_command_line())
    except KeyboardInterrupt:
        print("\ntractable: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        return _fail(os_error_line(e))
    except RecursionError:  # before RuntimeError, whose subclass it is
        return _fail("the input is nested too deeply to read (a corrupt or crafted file?)")
    except MemoryError:
        return _fail(_OUT_OF_MEMORY)
    except RuntimeError as e:  # torch reports a failed allocation as a RuntimeError
        if not _is_out_of_memory(e):
            raise
        return _fail(_OUT_OF_MEMORY)


_OUT_OF_MEMORY = ("out of memory; use smaller settings (--batch-size, -n, --size) or a "
                  "machine with more memory")


def _is_out_of_memory(e: RuntimeError) -> bool:
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text


def _fail(message: str) -> int:
    print(f"tractable: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
