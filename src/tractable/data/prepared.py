"""Prepared copies: every dataset once on disk as raw uint8 pixels, memory-mapped by every process.

A *source* (`PreparedSource`) says what a dataset is built from (its files, with size and
modification time, and the options that change the pixels: size, channels, batches, ...) and
streams it as `(uint8 [n, C, H, W], int64 [n])` chunks, one source file or image at a time.
`open_prepared(source)` converts it once into a folder

    <prepared root>/<name>-<split>-<id>/images.u8    N*C*H*W bytes, C order
                                        labels.i64   N little-endian int64
                                        meta.json    shape, class names, sources, checksums

and maps `images.u8` into the process (`mmap`, copy-on-write), so all processes of a node share
one copy through the page cache; batches are read row by row (`MappedPixels.rows`), so a
process holds its batch, not the dataset. The prepared root is
`$TRACTABLE_PREPARED`, else `$TRACTABLE_DATA/prepared`, else ~/.cache/tractable/prepared.

Safety: the copy is written into a temporary folder and renamed into place after it is
complete (meta.json last), under an exclusive `flock` on `<folder>.lock` that every process
also takes while it checks and opens the copy. So when several ranks start together one
builds and the others wait, and no process reads a half-written copy. `<id>` hashes the
dataset's identity (name, split, options, source paths); `meta.json` records the full key
(format version and each source file's size and mtime): a copy whose key differs (stale),
whose files are missing or of the wrong size, or whose meta.json is unreadable (corrupt) is
rebuilt. `verify_prepared` re-reads the pixels against their stored CRC-32, on every open
for copies up to `VERIFY_ON_OPEN_BYTES` (so bit rot is rebuilt, never used silently); larger
copies are checked by `tractable data info --verify` only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tractable._io import atomic_write_json, read_json_file
from tractable.data.base import ImageDataset
from tractable.errors import DataError

FORMAT_VERSION = 1
IMAGES_FILE = "images.u8"
LABELS_FILE = "labels.i64"
META_FILE = "meta.json"
VERIFY_ON_OPEN_BYTES = 512 * 2**20  # CRC-32 runs at GB/s: well under a second per open

Chunk = tuple[np.ndarray, np.ndarray]  # (uint8 [n, C, H, W], int64 [n])


def prepared_root() -> Path:
    """Where prepared copies live (see the module docstring)."""
    env = os.environ.get("TRACTABLE_PREPARED")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("TRACTABLE_DATA") or "~/.cache/tractable"
    return Path(base).expanduser() / "prepared"


@dataclass
class PreparedSource:
    """What a prepared copy is built from, and how to stream it.

    `files`: the source files (their absolute path, size and mtime key the copy); `options`:
    JSON-able settings that change the pixels; `chunks()`: the images in order, one source
    file or image at a time; `count`: the number of images if known (progress bar);
    `fingerprint`: extra identity for sources without files (e.g. an in-memory dataset);
    `location`: names the copy instead of the file list (a folder of images: so that adding
    an image makes the same copy stale rather than a new one); `note`: the opened dataset's
    `split_note`.
    """

    name: str
    split: str
    files: Sequence[Path]
    class_names: Sequence[str]
    chunks: Callable[[], Iterator[Chunk]]
    options: dict[str, Any] = field(default_factory=dict)
    count: int | None = None
    fingerprint: str = ""
    location: str = ""
    note: str | None = None  # how the split was made (an image folder without train/ test/)

    def identity(self) -> dict[str, Any]:
        """What names the copy's folder: the dataset, not the state of its files."""
        where: Any = self.location or [str(Path(f).resolve()) for f in self.files]
        return {"name": self.name, "split": self.split, "options": self.options,
                "files": where}

    def key(self) -> dict[str, Any]:
        """The full key: identity + format version + each file's size and mtime."""
        stats = []
        for f in self.files:
            try:
                st = Path(f).stat()
            except OSError as e:
                raise DataError(f"{self.name}: cannot read source file {f} ({e})") from None
            stats.append([st.st_size, st.st_mtime_ns])
        return {**self.identity(), "format_version": FORMAT_VERSION,
                "fingerprint": self.fingerprint, "file_stats": stats,
                "sources": [str(Path(f).resolve()) for f in self.files]}


def folder_for(source: PreparedSource, root: Path | None = None) -> Path:
    """The folder of `source`'s prepared copy (whether or not it exists yet)."""
    ident = json.dumps(source.identity(), sort_keys=True, default=str).encode()
    digest = hashlib.sha256(ident).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.name)[:60]
    return (root or prepared_root()) / f"{safe}-{source.split}-{digest}"


# ---- the lock ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(folder: Path, quiet: bool) -> Iterator[None]:
    """Hold the exclusive lock of `folder` (a sibling `.lock` file), waiting if need be."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.with_name(folder.name + ".lock")
    with open(lock_path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"waiting for another process preparing {folder.name} ...",
                      file=sys.stderr, flush=True)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ---- checking a copy --------------------------------------------------------------------------
def read_meta(folder: Path) -> dict[str, Any] | None:
    """meta.json of a prepared copy, or None if it is missing or unreadable."""
    try:
        meta = read_json_file(folder / META_FILE, DataError)
    except DataError:
        return None
    return meta if isinstance(meta, dict) else None


def problem_with(folder: Path, key: dict[str, Any] | None = None) -> str | None:
    """Why the copy in `folder` cannot be used (None: it can). Cheap: no pixel is read."""
    if not folder.is_dir():
        return "not prepared yet"
    meta = read_meta(folder)
    if meta is None:
        return f"{META_FILE} is missing or corrupt"
    if meta.get("format_version") != FORMAT_VERSION:
        return f"format version {meta.get('format_version')} (this version writes {FORMAT_VERSION})"
    if key is not None and meta.get("key") != json.loads(json.dumps(key, default=str)):
        return "stale: its source files or options changed"
    try:
        n, shape = int(meta["count"]), [int(s) for s in meta["shape"]]
        if n < 1 or len(shape) != 3 or min(shape) < 1:
            return f"{META_FILE} has an impossible count/shape ({n}, {shape})"
        want = {IMAGES_FILE: n * int(np.prod(shape)), LABELS_FILE: 8 * n}
        for name, size in want.items():
            have = (folder / name).stat().st_size
            if have != size:
                return f"{name} holds {have} bytes, expected {size} (truncated or corrupt)"
    except (KeyError, TypeError, ValueError):
        return f"{META_FILE} lacks count/shape"
    except OSError as e:
        return f"missing file ({e.filename})"
    return None


def verify_prepared(folder: Path, block: int = 1 << 24) -> str | None:
    """Re-read the pixels and labels against their stored CRC-32s (None: they match)."""
    return problem_with(folder) or _checksum_problem(folder, block)


def _checksum_problem(folder: Path, block: int = 1 << 24) -> str | None:
    """Why the files of a copy whose sizes are right do not match their CRC-32s (or None)."""
    meta = read_meta(folder) or {}
    for name, key in ((IMAGES_FILE, "images_crc32"), (LABELS_FILE, "labels_crc32")):
        crc = 0
        with open(folder / name, "rb") as f:
            while chunk := f.read(block):
                crc = zlib.crc32(chunk, crc)
        if crc != meta.get(key):
            return f"{name} does not match its checksum (corrupt)"
    return None


# ---- building a copy --------------------------------------------------------------------------
def _build(source: PreparedSource, key: dict[str, Any], folder: Path, progress: bool) -> None:
    """Stream `source` into a temporary folder, then rename it to `folder` (lock held)."""
    for stale in folder.parent.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a builder that died
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        meta = _write_arrays(source, tmp, progress)
        meta.update(key=key, format_version=FORMAT_VERSION, name=source.name,
                    split=source.split, class_names=list(source.class_names),
                    build_seconds=round(time.perf_counter() - t0, 2))
        atomic_write_json(tmp / META_FILE, json.loads(json.dumps(meta, default=str)))
        if folder.exists():  # stale or corrupt: move aside, then swap in the new one
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_arrays(source: PreparedSource, tmp: Path, progress: bool) -> dict[str, Any]:
    n, shape, crc_x, crc_y = 0, None, 0, 0
    bar = tqdm(total=source.count, desc=f"preparing {source.name} {source.split}",
               unit="img", disable=not progress, leave=False, dynamic_ncols=True)
    with open(tmp / IMAGES_FILE, "wb") as fx, open(tmp / LABELS_FILE, "wb") as fy, bar:
        for x, y in source.chunks():
            x = np.ascontiguousarray(x)
            y = np.ascontiguousarray(y, dtype="<i8").reshape(-1)
            if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y):
                raise DataError(f"{source.name}: a source chunk is {x.dtype} {list(x.shape)} "
                                f"with {len(y)} labels; expected uint8 [n, C, H, W] and n labels")
            if shape is None:
                shape = tuple(int(s) for s in x.shape[1:])
            elif tuple(x.shape[1:]) != shape:
                raise DataError(f"{source.name}: images of shape {list(x.shape[1:])} after "
                                f"{n} images of shape {list(shape)}; all must share one shape")
            bx, by = x.reshape(-1).data, y.data  # contiguous: no copy
            fx.write(bx)
            fy.write(by)
            crc_x = zlib.crc32(bx, crc_x)
            crc_y = zlib.crc32(by, crc_y)
            n += len(x)
            bar.update(len(x))
        for f in (fx, fy):
            f.flush()
            os.fsync(f.fileno())
    if shape is None or n == 0:
        raise DataError(f"{source.name} {source.split}: the source holds no images")
    return {"count": n, "shape": list(shape), "images_crc32": crc_x, "labels_crc32": crc_y,
            "images_bytes": n * int(np.prod(shape))}


# ---- opening a copy ---------------------------------------------------------------------------
class MappedPixels:
    """`images.u8` mapped copy-on-write as a `uint8 [N, C, H, W]` tensor, plus row reads.

    Indexing the mapped tensor maps the page-cache pages it touches into the process, and
    they stay counted in its resident memory (on kernels with large page-cache folios, about
    2 MB per randomly touched row). So batches are read with `pread` into a fresh tensor
    instead (`rows`, `range`): the data comes from the page cache, shared by every process,
    and the process holds only the batch. `release()` drops pages that direct indexing of the
    tensor mapped (they stay in the page cache).
    """

    def __init__(self, path: Path, shape: Sequence[int]) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        need = int(np.prod(shape))
        have = os.fstat(self._fd).st_size
        if have != need:  # mapping past the end would crash the process (SIGBUS) on reading
            os.close(self._fd)
            raise DataError(f"{path} holds {have} bytes, expected {need} (truncated or "
                            "corrupt); open the dataset again to rebuild its prepared copy")
        self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_COPY)
        self.shape = tuple(int(s) for s in shape)
        self.row = int(np.prod(self.shape[1:]))
        arr = np.frombuffer(self._map, dtype=np.uint8).reshape(self.shape)
        self.tensor = torch.from_numpy(arr)
        self.path = path

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self._fd)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """The images at `index` (any order, repeats allowed), read from the page cache."""
        idx = index.reshape(-1).tolist()
        n = self.shape[0]
        out = torch.empty((len(idx), *self.shape[1:]), dtype=torch.uint8)
        view = out.numpy().reshape(-1).data
        r = self.row
        for j, i in enumerate(idx):
            i = i + n if i < 0 else i
            if not 0 <= i < n:
                raise IndexError(f"index {i} is out of range for {n} images")
            self._read(view[j * r:(j + 1) * r], i * r)
        return out

    def range(self, lo: int, hi: int) -> torch.Tensor:
        """Images `lo..hi-1` in one read."""
        lo, hi = max(0, lo), min(hi, self.shape[0])
        out = torch.empty((max(0, hi - lo), *self.shape[1:]), dtype=torch.uint8)
        if hi > lo:
            self._read(out.numpy().reshape(-1).data, lo * self.row)
        return out

    def _read(self, buf: memoryview, offset: int) -> None:
        while len(buf):
            got = os.preadv(self._fd, [buf], offset)
            if got <= 0:
                raise DataError(f"{self.path} ends early (truncated while in use?)")
            buf, offset = buf[got:], offset + got

    def release(self) -> None:
        """Drop this process's mapped pages (the data stays on disk and in the page cache)."""
        self._map.madvise(mmap.MADV_DONTNEED)


def _open(folder: Path) -> ImageDataset:
    meta = read_meta(folder) or {}
    n, shape = int(meta["count"]), [int(s) for s in meta["shape"]]
    pixels = MappedPixels(folder / IMAGES_FILE, [n, *shape])
    labels = torch.from_numpy(np.fromfile(folder / LABELS_FILE, dtype="<i8")
                              .astype(np.int64, copy=False))
    ds = ImageDataset(pixels.tensor, labels, meta.get("class_names", []), meta.get("name", ""),
                      pages=pixels)
    ds.prepared_at = folder
    return ds


def open_prepared(source: PreparedSource, root: Path | None = None, progress: bool = True,
                  rebuild: bool = False, quiet: bool = False) -> ImageDataset:
    """The memory-mapped `ImageDataset` of `source`, converting it first if needed (once).

    A copy of at most `VERIFY_ON_OPEN_BYTES` is checked against its CRC-32s on every open
    (bit rot is rebuilt, not used); larger copies only by `verify_prepared`
    (`tractable data info --verify`), since reading them whole would slow every start.
    """
    folder = folder_for(source, root)
    key = source.key()
    try:
        with _locked(folder, quiet):
            problem = "rebuild requested" if rebuild else problem_with(folder, key)
            if problem is None and _images_bytes(folder) <= VERIFY_ON_OPEN_BYTES:
                problem = _checksum_problem(folder)
            if problem is not None:
                if folder.exists() and not quiet:
                    print(f"{folder}: {problem}; rebuilding", file=sys.stderr, flush=True)
                _build(source, key, folder, progress and sys.stderr.isatty())
            ds = _open(folder)
    except OSError as e:
        raise DataError(
            f"cannot use the prepared copy {folder} ({e.strerror or e}"
            f"{f': {e.filename}' if e.filename else ''}); point $TRACTABLE_PREPARED at a "
            "writable folder") from None
    ds.split_note = source.note
    return ds


def _images_bytes(folder: Path) -> int:
    try:
        return (folder / IMAGES_FILE).stat().st_size
    except OSError:
        return 0


def prepared_copies(root: Path | None = None) -> list[tuple[Path, dict[str, Any] | None, int]]:
    """(folder, meta or None, bytes on disk) of every prepared copy under `root`."""
    root = root or prepared_root()
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        out.append((folder, read_meta(folder), size))
    return out


def remove_prepared(folder: Path) -> None:
    """Delete one prepared copy (under its lock, so no process is building or opening it)."""
    with _locked(folder, quiet=True):
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        folder.with_name(folder.name + ".lock").unlink()


def array_source(name: str, split: str, images: np.ndarray, labels: np.ndarray,
                 class_names: Sequence[str], files: Sequence[Path] = (),
                 options: dict[str, Any] | None = None, chunk: int = 10_000) -> PreparedSource:
    """A source over arrays already read (e.g. one .mat file), written `chunk` images at a time."""

    def chunks() -> Iterator[Chunk]:
        for i in range(0, len(images), chunk):
            yield images[i:i + chunk], labels[i:i + chunk]

    return PreparedSource(name, split, list(files), list(class_names), chunks,
                          dict(options or {}), len(images))
