"""Small ready models shipped inside the package: `tractable.load("pretrained:NAME")`.

Each sub-folder is a saved model (`config.json`, `model.safetensors`: the Polyak-averaged
weights) plus `pretrained.json`: what it was trained on, how long, with which settings, and
its measured test bits/dim (with the fixed test subset it was measured on, so a test can
re-evaluate it exactly). They were trained on this project's 2-core CPU for minutes, not the
papers' GPU-days: they load and sample instantly, they are not state of the art.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from tractable._io import read_json_file
from tractable.errors import ConfigError

PREFIX = "pretrained:"
INFO_NAME = "pretrained.json"


def _root() -> Path:
    return Path(str(resources.files(__name__)))


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.name for p in _root().iterdir() if (p / INFO_NAME).is_file())


def path_of(name: str) -> Path:
    """The folder of shipped model `name` (with or without the `pretrained:` prefix)."""
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if name not in available():  # a name, never a path (`pretrained:../x`)
        raise ConfigError(f"no shipped model {name!r}; available: {', '.join(available())} "
                          "(see `tractable models`)")
    folder = _root() / name
    if not (folder / INFO_NAME).is_file():
        raise ConfigError(f"no shipped model {name!r}; available: {', '.join(available())} "
                          "(see `tractable models`)")
    return folder


def info(name: str) -> dict[str, Any]:
    """The `pretrained.json` record of shipped model `name`."""
    return dict(read_json_file(path_of(name) / INFO_NAME, ConfigError))
