"""Bounds of the command line's numbers, checked right after parsing (`check_flag_values`).

Every integer flag is bounded, so a value past 64 bits or a typo such as `-n 1000000000000`
is refused with one line naming the flag, before any model is built or image allocated;
every float flag must be finite. Flags of `TrainConfig` fields take the bound their field
declares; the others are listed in `FLAG_MAXIMA` by destination (a flag means the same on
every command; `--ood-size` is bounded like `--size`), and any other integer flag by
`MAX_INT_FLAG`. A new numeric flag needs a line here only if it sizes something.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

from tractable import limits
from tractable.errors import ConfigError
from tractable.training.config import TrainConfig

FLAG_MAXIMA: dict[str, int] = {
    "n": limits.MAX_IMAGES, "nrow": limits.MAX_IMAGES, "columns": 1000, "steps": 1000,
    "heatmap_count": limits.MAX_IMAGES,
    "size": limits.MAX_SIDE, "rows": limits.MAX_SIDE, "cols": limits.MAX_SIDE,
    "image_size": limits.MAX_SIDE, "scale": 256,
    "limit": limits.MAX_DATASET_IMAGES, "fit_limit": limits.MAX_DATASET_IMAGES,
    "attr_images": limits.MAX_DATASET_IMAGES, "histogram_images": limits.MAX_DATASET_IMAGES,
    "batch_size": limits.MAX_BATCH, "batches": 10_000,
    "bootstrap": limits.MAX_BOOTSTRAP, "typicality_m": limits.MAX_BATCH,
    "port": 65_535, "seed": limits.MAX_SEED,
}
_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# float flags whose command checks them with a fuller message (the allowed range too)
_CHECKED_BY_COMMAND = {"temperature"}


def flag_maximum(dest: str) -> int:
    """The largest value the flag stored in `dest` accepts."""
    field = _TRAIN_FIELDS.get(dest)
    if field is not None and isinstance(field.metadata.get("maximum"), int):
        return int(field.metadata["maximum"])
    if dest in FLAG_MAXIMA:
        return FLAG_MAXIMA[dest]
    for name, bound in FLAG_MAXIMA.items():  # a prefixed copy: ood_size, bg_limit, ...
        if dest.endswith("_" + name):
            return bound
    return limits.MAX_INT_FLAG


def flag_name(dest: str) -> str:
    return f"-{dest}" if len(dest) == 1 else "--" + dest.replace("_", "-")


def check_flag_values(args: argparse.Namespace) -> None:
    """Raise `ConfigError` naming the first flag whose number is out of bounds."""
    for dest, value in vars(args).items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            _check_one(dest, v)


def _check_one(dest: str, v: Any) -> None:
    if isinstance(v, bool):
        return
    if isinstance(v, int):
        bound = flag_maximum(dest)
        if abs(v) > bound:
            got = f"{v:,}" if abs(v) < 10**20 else f"a {len(str(abs(v)))}-digit number"
            raise ConfigError(f"{flag_name(dest)} must be at most {bound:,} in size, got {got}")
    elif isinstance(v, float) and not math.isfinite(v) and dest not in _CHECKED_BY_COMMAND:
        raise ConfigError(f"{flag_name(dest)} must be a finite number, got {v}")
