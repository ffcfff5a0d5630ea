"""One process per run folder: `FolderLock`, a lock file holding the owner's PID.

A training run (new or resumed) takes `RUN/.lock` before it writes anything there (and
before it reads the checkpoint it resumes), and keeps it until it ends; a second run into
the same folder is refused with "RUN is in use by PID N". The lock is an exclusive `flock`
on the file, which the kernel drops when its process ends however it ends (kill -9
included), so a lock file left by a dead process is stale by construction and simply taken
over; the PID written inside only names the owner in the message. A lock file is never
deleted while held: a process that found the path deleted or replaced between opening and
locking it retries on the new file; the owner deletes the file, still holding the lock,
when it ends normally.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from tractable.errors import ConfigError

LOCK_NAME = ".lock"


class FolderInUse(ConfigError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """The exclusive lock of `folder` (created if missing); `acquire` / `release`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise `FolderInUse` naming the process that holds it."""
        if self._fd is not None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"--out {self.folder} is a file, not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner(fd)
                os.close(fd)
                raise FolderInUse(
                    f"{self.folder} is in use by {owner} (another training run or resume "
                    "writing there); wait for it to end, stop it, or choose another --out"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the file was replaced while we waited: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file, then drop the lock (a process waiting on the deleted file
        sees it replaced and retries)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                self.path.unlink()
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def _owner(fd: int) -> str:
    """'PID N' (on host H if not this one) as written by the lock's holder."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if not text or not text[0].isdigit():
        return "another process"
    host = text[1] if len(text) > 1 else ""
    here = socket.gethostname()
    return f"PID {text[0]}" + (f" on {host}" if host and host != here else "")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
