"""Where a command writes its picture: never over an earlier one the user did not name.

`--out FILE` given: that file (replaced if it exists; an existing folder is refused).
`--out` left at its default: the default name if free, else the first free `NAME-1.png`,
`NAME-2.png`, ..., and the command says which it chose.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tractable.errors import ConfigError


def output_path(given: str | None, default: str, companions: tuple[str, ...] = ()) -> Path:
    """The file to write for `--out given` (None: not given). `companions` are suffixes of
    files written beside it (e.g. ".npy"), which must be free too for a default name."""
    if given is not None:
        path = Path(given)
        if path.is_dir():
            raise ConfigError(f"--out {given} is a folder; name a file, e.g. "
                              f"{path / Path(default).name}")
        return path
    path = Path(default)
    k = 0
    while _taken(path, companions):
        k += 1
        path = Path(default).with_name(f"{Path(default).stem}-{k}{Path(default).suffix}")
    if k:
        print(f"{default} exists: writing {path} instead (name the file with --out)",
              file=sys.stderr)
    return path


def _taken(path: Path, companions: tuple[str, ...]) -> bool:
    return path.exists() or any(path.with_suffix(s).exists() for s in companions)
