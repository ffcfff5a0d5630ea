"""Dataclass configs and their `config.json` form.

A saved model folder holds `config.json`:

    {"family": "pixelcnn++", "format_version": 1, "tractable_version": "0.1.0",
     "config": {...the model's dataclass fields...}}

`family` picks the model class (see `tractable.models.registry`), so a model reloads from
its folder alone. Unknown keys, unknown families and newer format versions are refused with
a clear `ConfigError` rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tractable._io import atomic_write_json
from tractable.errors import ConfigError

__version__ = "0.1.0"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"

C = TypeVar("C", bound="ModelConfig")


@dataclass
class ModelConfig:
    """Fields every model family shares: the data it models and its labels."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    num_classes: int = 0  # 0 = unconditional
    class_names: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Raise `ConfigError` if fields are inconsistent. Subclasses extend this."""
        c, h, w = self.image_shape
        if c < 1 or h < 1 or w < 1:
            raise ConfigError(f"image_shape must be positive (C, H, W), got {self.image_shape}")
        if self.num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {self.num_classes}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"{len(self.class_names)} class_names given for num_classes={self.num_classes}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build a config from its JSON dict, refusing keys this version does not know."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field(s) {unknown}; the config was written by a "
                f"different tractable version or is corrupt. Known fields: {sorted(known)}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(hints[k], v) for k, v in data.items()}
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg


def _coerce(hint: Any, value: Any) -> Any:
    """JSON has no tuples: turn lists back into tuples where the field is a tuple."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return value if value is None or not args else _coerce(args[0], value)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


@dataclass
class TrainingDefaults:
    """Per-family optimizer defaults (the paper's), used unless the user overrides them."""

    optimizer: str = "adam"  # "adam" | "adamax"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    lr_decay: float = 1.0  # multiplicative per step
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    weight_decay: float = 0.0
    ema_decay: float = 0.9995  # Polyak averaging
    grad_clip: float | None = None  # max global grad norm (None or 0: no clipping)
    batch_size: int = 16
    ema_warmup: bool = True  # cap the EMA decay at (1 + t) / (10 + t) early in training


def save_config(directory: str | os.PathLike[str], family: str, config: ModelConfig) -> None:
    """Write `config.json` for `family` into `directory` atomically."""
    payload = {
        "family": family,
        "format_version": FORMAT_VERSION,
        "tractable_version": __version__,
        "config": config.to_dict(),
    }
    atomic_write_json(Path(directory) / CONFIG_NAME, payload)


def read_config_json(directory: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """Read `config.json` and return `(family, config_dict)`, with clear errors."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise ConfigError(f"{directory} is not a directory (expected a saved model folder)")
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_NAME} in {directory}: not a saved tractable model/run")
    try:
        payload = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); the file is corrupt") from None
    if not isinstance(payload, dict) or "family" not in payload or "config" not in payload:
        raise ConfigError(f"{path} lacks 'family'/'config': not a tractable config")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(
            f"{path} has format_version {version!r}, written by tractable "
            f"{payload.get('tractable_version', '?')}; this is tractable {__version__} "
            f"(format {FORMAT_VERSION}). Upgrade tractable to load it."
        )
    return payload["family"], payload["config"]
