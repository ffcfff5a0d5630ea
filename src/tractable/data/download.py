"""Downloads into the cache: mirrors, progress bar, resume, checksums, atomic files.

A file is fetched to `<root>/<name>.part`, resumed with an HTTP `Range` request when a
previous attempt left a partial file (and the server honours ranges), verified, and only
then renamed onto `<root>/<name>`. So a file under its final name is always complete and
verified; a checksum failure deletes the `.part` file and raises `ChecksumError`.

Mirrors: each dataset lists its official base URLs. `mirrors=[...]` or the environment
variable `TRACTABLE_MIRROR` (one base URL, or several separated by spaces) replaces them,
e.g. for an institutional mirror or a local test server.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tractable.errors import ChecksumError, DataError

CHUNK = 1 << 20
USER_AGENT = "tractable-data/0.1"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name on the server and in the cache, and how to verify it.

    `md5` is the checksum the dataset's authors publish for the file as downloaded.
    `content_md5` (optional) is the md5 of a `.gz` file's decompressed bytes: a mirror that
    re-compressed the very same data (e.g. Debian's `dataset-fashion-mnist`) verifies by it.
    `check` verifies the format when no checksum is published (it raises `DataError`).
    """

    name: str
    md5: str | None
    content_md5: str | None = None
    check: Callable[[Path], None] | None = None
    size_hint: str = ""


def default_root(name: str) -> Path:
    """The cache folder of dataset `name`: `$TRACTABLE_DATA/<name>` or ~/.cache/tractable/<name>."""
    base = os.environ.get("TRACTABLE_DATA") or "~/.cache/tractable"
    return Path(base).expanduser() / name


def resolve_mirrors(official: Sequence[str], mirrors: Sequence[str] | None) -> list[str]:
    """`mirrors` if given, else `$TRACTABLE_MIRROR` if set, else the official base URLs.

    Each must be an http(s):// or file:// URL (`DataError` otherwise)."""
    if mirrors:
        chosen, source = [str(m) for m in mirrors], "mirror"
    else:
        chosen, source = os.environ.get("TRACTABLE_MIRROR", "").split(), "$TRACTABLE_MIRROR"
    for url in chosen:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "file") or (
                parts.scheme != "file" and not parts.netloc):
            raise DataError(f"{source} {url!r} is not a URL: use http://HOST/PATH, "
                            "https://HOST/PATH or file:///FOLDER")
    return chosen or list(official)


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _md5_gunzipped(path: Path) -> str | None:
    h = hashlib.md5(usedforsecurity=False)
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
    except (OSError, EOFError, zlib.error):
        return None
    return h.hexdigest()


def verify(path: Path, remote: RemoteFile, source: str) -> None:
    """Raise `ChecksumError` (or the format check's `DataError`) unless `path` is `remote`."""
    if remote.md5 is None:
        if remote.check is not None:
            try:
                remote.check(path)
            except DataError as e:
                raise DataError(f"{remote.name} (from {source}) is broken: {e}. The file was "
                                f"deleted; try again, or use another mirror.") from None
        return
    actual = md5_file(path)
    if actual == remote.md5:
        return
    if remote.content_md5 and _md5_gunzipped(path) == remote.content_md5:
        return
    raise ChecksumError(
        f"checksum mismatch for {remote.name} (from {source}): expected md5 {remote.md5}, "
        f"got {actual}. The file was deleted; try again, or use another mirror "
        f"(mirrors=[...] or $TRACTABLE_MIRROR)."
    )


def check_zip(path: Path) -> None:
    """Format check for archives without a published checksum: every member's CRC must match.

    Raises `DataError` saying what is wrong (the caller names the file).
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DataError(f"not a valid zip archive ({e})") from None
    if bad is not None:
        raise DataError(f"zip member {bad} fails its CRC check")


class _Incomplete(Exception):
    """The connection ended early; the `.part` file is kept for a resume."""


def _fetch_once(url: str, part: Path, desc: str, progress: bool) -> None:
    """Append the rest of `url` to `part` (from its current size), with a progress bar."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is no prefix the server knows
            part.unlink()
            _fetch_once(url, part, desc, progress)
            return
        raise
    with resp:
        resumed = resp.status == 206 and resp.headers.get("Content-Range", "").startswith(
            f"bytes {have}-")
        if not resumed:
            have = 0  # the server ignored the range: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, disable=not progress, leave=False,
        ) as bar:
            try:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as e:
                raise _Incomplete(f"connection lost: {e}") from None
            f.flush()
            os.fsync(f.fileno())
    got = part.stat().st_size
    if total is not None and got != total:
        raise _Incomplete(f"received {got} of {total} bytes")


def fetch(remote: RemoteFile, root: Path, mirrors: Sequence[str], progress: bool = True) -> Path:
    """Fetch `remote` into `root` from the first mirror that serves it; return its path.

    An existing `root/<name>` is trusted (it was verified when written). Network errors move
    on to the next mirror; a checksum mismatch deletes the download and raises.
    """
    root.mkdir(parents=True, exist_ok=True)
    dest = root / remote.name
    if dest.is_file():
        return dest
    part = root / (remote.name + ".part")
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + remote.name
        try:
            _fetch_once(url, part, remote.name, progress)
        except urllib.error.HTTPError as e:
            failures.append(f"{url}: HTTP {e.code} {e.reason}")
            continue
        except (urllib.error.URLError, OSError, http.client.HTTPException, _Incomplete) as e:
            reason = getattr(e, "reason", e)
            failures.append(f"{url}: {reason}")
            continue
        try:
            verify(part, remote, url)
        except DataError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        return dest
    kept = (f"\nThe partial file {part} ({part.stat().st_size} bytes) is kept; the next "
            f"attempt resumes it." if part.exists() else "")
    raise DataError(f"could not download {remote.name}:\n  " + "\n  ".join(failures) + kept)


def _safe_members(archive: Path, names: list[str]) -> None:
    for n in names:
        p = Path(n)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(f"{archive.name} holds an unsafe path {n!r}; refusing to extract it")


def extract(archive: Path, dest: Path) -> None:
    """Unpack a .tar.gz or .zip into `dest`; each file appears there only once complete."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=dest) as tmp:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    _safe_members(archive, z.namelist())
                    z.extractall(tmp)
            else:
                with tarfile.open(archive, "r:*") as t:
                    members = t.getmembers()
                    _safe_members(archive, [m.name for m in members])
                    files = [m for m in members if m.isfile() or m.isdir()]
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                        t.extractall(tmp, members=files, filter="data")
                    else:
                        t.extractall(tmp, members=files)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{archive} is corrupt or truncated: cannot extract ({e}); "
                            f"delete it and download again") from None
        for src in sorted(Path(tmp).rglob("*")):
            if src.is_file():
                target = dest / src.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, target)


def missing_error(name: str, split: str, missing: Sequence[str], looked: Sequence[Path],
                  size_hint: str = "", extra_hint: str = "") -> DataError:
    """The error for official files that are not there, naming where we looked and the fix."""
    where = " and ".join(str(p) for p in dict.fromkeys(looked))
    root = looked[0]
    size = f" ({size_hint})" if size_hint else ""
    missing_text = f"{name}: missing {', '.join(missing)} (looked in {where})."
    return DataError(
        f"{missing_text} Download the official "
        f"files{size} with load_dataset({name!r}, split={split!r}, root={str(root)!r}, "
        f"download=True) or `tractable data download {name} --root {root}`, or pass root= a "
        f"folder that holds them.{extra_hint}",
        command_line=f"{missing_text} Download the official files{size} by adding --download "
        f"(or with `tractable data download {name} --root {root}`), or pass --root DIR: a "
        f"folder that holds them.{extra_hint}")


def first_dir_with(names: Sequence[str], dirs: Sequence[Path]) -> Path | None:
    """The first of `dirs` that holds every file in `names`."""
    for d in dirs:
        if all((d / n).is_file() for n in names):
            return d
    return None
