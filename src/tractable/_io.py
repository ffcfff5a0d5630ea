"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each writer writes to a temporary file `.NAME.XXXX.tmp` in the target's directory and
`os.replace`s it onto the target, which is atomic on POSIX and Windows when both lie on the
same filesystem. The finished file gets the mode the user's umask gives new files (set after
the writer is done, since some writers, e.g. safetensors', replace the file they are given).

Inside `atomic_group()` the renames wait until every write of the group has succeeded, so a
failed write (e.g. a full disk) leaves all of the group's targets as they were. A process
killed mid-write leaves its temporary files; `remove_stale_temp_files` clears them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tractable.errors import ConfigError

_UMASK = os.umask(0)
os.umask(_UMASK)
_TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp's 8 characters
# (temporary file, target) pairs of the open `atomic_group`, renamed when it closes
_GROUP: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "atomic_group", default=None)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it onto `path`.

    On any exception the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; expected the name of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        group = _GROUP.get()
        if group is None:
            os.replace(tmp, path)
        else:
            group.append((Path(tmp), path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Defer the renames of every `atomic_path` inside until all its writes succeeded.

    On an exception no target changes and every temporary file is removed. The renames run
    in the order the files were written, so write the file that commits the group last.
    A group opened inside another joins the outer one.
    """
    if _GROUP.get() is not None:
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _GROUP.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    finally:
        _GROUP.reset(token)
    for tmp, target in pending:
        os.replace(tmp, target)


def remove_stale_temp_files(directory: str | os.PathLike[str], names: set[str] | None = None,
                            ) -> list[Path]:
    """Delete the temporary files `atomic_path` left in `directory` (not recursive), e.g.
    after `kill -9`; only those of target names in `names` when given. Returns them."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        m = _TEMP_NAME.match(p.name)
        if m and p.is_file() and (names is None or m["target"] in names):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Call `write(fileobj)` on a temporary file, then move it onto `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


# ---- reading JSON written by tractable (or by anyone) ----------------------------------------
MAX_JSON_DEPTH = 100  # tractable's own files nest 4 deep
# tractable's largest, a config.json naming 100,000 classes (MAX_CLASSES), is a few MB
MAX_JSON_BYTES = 256 * 2**20


def json_depth(value: Any) -> int:
    """How deep the lists and dicts of a parsed JSON value nest (iterative: any depth)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_json_file(path: str | os.PathLike[str], error: type[Exception] = ConfigError) -> Any:
    """Parse the JSON file `path`, with one `error(message)` for every way it can be bad:
    unreadable, not UTF-8, not JSON, larger than `MAX_JSON_BYTES` or nested deeper than
    `MAX_JSON_DEPTH` (the standard parser stops at Python's recursion limit with a
    `RecursionError`, and code walking a deep value would too)."""
    path = Path(path)
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{name} is {size:,} bytes, more than any file tractable writes "
                        f"({MAX_JSON_BYTES:,}); it is corrupt or not tractable's")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{name} is corrupt (not UTF-8 text: {e.reason})") from None
    except OSError as e:
        raise error(f"cannot read {name} ({e.strerror or e})") from None
    return parse_json_text(text, error, name)


def parse_json_text(text: str, error: type[Exception] = ConfigError, name: str = "the JSON"
                    ) -> Any:
    """`json.loads(text)` refusing values nested deeper than `MAX_JSON_DEPTH`, with one
    error type for every problem."""
    too_deep = (f"{name} is corrupt (nested deeper than the {MAX_JSON_DEPTH} levels "
                "tractable reads; its own files nest a few levels)")
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(too_deep) from None
    except ValueError as e:
        raise error(f"{name} is corrupt (not valid JSON: {e})") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise error(too_deep)
    return value
