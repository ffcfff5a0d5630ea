"""Dataclass configs and their `config.json` form.

A saved model folder holds `config.json`:

    {"family": "pixelcnn++", "format_version": 2, "tractable_version": "0.1.0",
     "config": {...the model's dataclass fields...}}

`family` picks the model class (see `tractable.models.registry`), so a model reloads from
its folder alone. Unknown keys, unknown families and newer format versions are refused with
a clear `ConfigError` rather than silently ignored. Every value is type- and range-checked
on loading (`from_dict`), before any model is built: a field declared with `setting(...,
minimum=1)` refuses `0`, an `int` field refuses `"160"` and `1e9` (a float).

Older formats are migrated on reading: `MIGRATIONS[v]` turns a format-`v` payload into a
format-`v + 1` one, applied in turn up to `FORMAT_VERSION` (format 2 is current). Format 1
to 2: a Glow config without `coupling_scale_floor` / `split_max_log_std` was saved when
every affine coupling and split prior used openai's unbounded forms, so it reads as
`coupling_scale_floor = 0`, `split_max_log_std = None` (new models default to bounds): the
folder keeps its old behaviour exactly.

`setting(default, help, ...)` is the one way to declare a config field with command-line
help, extra flag names, choices and a range; `tractable train` turns every such field of
every family into a flag.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tractable._io import atomic_write_json, read_json_file
from tractable.errors import ConfigError
from tractable.limits import MAX_BATCH, MAX_CHANNELS, MAX_CLASSES, MAX_SIDE, MAX_STEPS

__version__ = "0.1.0"
FORMAT_VERSION = 2
CONFIG_NAME = "config.json"

J = TypeVar("J", bound="JsonConfig")


# what a Glow saved before these fields existed computed: openai's unbounded forms
_GLOW_FORMAT_1 = {"coupling_scale_floor": 0.0, "split_max_log_std": None}


def _unbounded_glow_scale(payload: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: a Glow saved before the coupling scale floor and the split-prior cap
    existed had neither."""
    config = payload.get("config")
    if payload.get("family") != "glow" or not isinstance(config, dict):
        return {**payload, "format_version": 2}
    return {**payload, "format_version": 2, "config": {**_GLOW_FORMAT_1, **config}}


# format v -> a function turning a format-v payload into a format-(v + 1) payload
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _unbounded_glow_scale}


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            default_factory: Any = dataclasses.MISSING, aliases: Sequence[str] = (),
            choices: Sequence[Any] = (), minimum: float | None = None,
            maximum: float | None = None, group: str = "", flag: str = "",
            metavar: str = "") -> Any:
    """A dataclass field with its command-line help, extra flag names, allowed values and
    inclusive range (checked on loading a config.json and by the command line).

    `group`, `flag` and `metavar` shape the generated command-line flag: its help section,
    its name when not `--field-name` (e.g. "--no-progress" for a True-by-default bool) and
    its value's name.
    """
    metadata: dict[str, Any] = {"help": help}
    for key, value in (("group", group), ("flag", flag), ("metavar", metavar)):
        if value:
            metadata[key] = value
    if aliases:
        metadata["aliases"] = list(aliases)
    if choices:
        metadata["choices"] = tuple(choices)
    if minimum is not None:
        metadata["minimum"] = minimum
    if maximum is not None:
        metadata["maximum"] = maximum
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class JsonConfig:
    """A dataclass config with a checked JSON form, the one `from_dict` of every config
    (`ModelConfig` and its families' configs, `TrainConfig`).

    `from_dict` refuses keys the class does not know, checks every value against its
    field's type and `setting(...)` range before anything is built (`check_field_value`),
    turns JSON lists back into tuples where a field is a tuple, and runs `validate`.
    """

    # whether a field's error names the class ("GlowConfig.K must be ...") or the field only
    NAME_CLASS_IN_ERRORS: ClassVar[bool] = True

    def validate(self) -> None:
        """Raise `ConfigError` if a field is out of its type or declared range (`setting`:
        non-finite numbers included), for values set in code or on the command line as for
        JSON ones. Subclasses extend this with checks across fields, calling it first."""
        owner = type(self).__name__ if self.NAME_CLASS_IN_ERRORS else ""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            check_field_value(owner, f, hints[f.name],
                              list(value) if isinstance(value, tuple) else value, note="")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls: type[J], data: dict[str, Any]) -> J:
        """Build a config from its JSON dict, refusing keys this version does not know."""
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field(s) {unknown}; the config was written by a "
                f"different tractable version or is corrupt. Known fields: {sorted(known)}"
            )
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            check_field_value(cls.__name__, known[name], hints[name], value)
        cfg = cls(**{k: _coerce(hints[k], v) for k, v in data.items()})
        cfg.validate()
        return cfg


@dataclass
class ModelConfig(JsonConfig):
    """Fields every model family shares: the data it models and its labels."""

    image_shape: tuple[int, int, int] = setting((1, 28, 28), "(C, H, W) of the images",
                                                minimum=1, maximum=MAX_SIDE)
    num_classes: int = setting(0, "classes the model is conditioned on (0: unconditional)",
                               minimum=0, maximum=MAX_CLASSES)
    class_names: list[str] = setting(default_factory=list, help="a name per class")

    def validate(self) -> None:
        """Raise `ConfigError` if a field is out of its range or fields are inconsistent."""
        super().validate()
        c = self.image_shape[0]
        if c > MAX_CHANNELS:
            raise ConfigError(f"image_shape has {c} channels; at most {MAX_CHANNELS} are "
                              "supported")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"{len(self.class_names)} class_names given for num_classes={self.num_classes}"
            )


def check_field_value(owner: str, f: dataclasses.Field[Any], hint: Any, value: Any,
                      note: str = "; the config is corrupt or hand-edited") -> None:
    """Raise `ConfigError` unless `value` (as read from JSON) fits the field's type, its
    `choices` and its `minimum` / `maximum` (see `setting`)."""
    problem = _type_problem(hint, value)
    if problem is None:
        problem = _range_problem(f.metadata, value)
    if problem is not None:
        name = f"{owner}.{f.name}" if owner else f.name
        raise ConfigError(f"{name} {problem}, got {value!r} ({type(value).__name__}){note}")


def _type_problem(hint: Any, value: Any) -> str | None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and type(None) in typing.get_args(hint):
            return None
        problems = [_type_problem(a, value) for a in args]
        return None if any(p is None for p in problems) else problems[0]
    if origin in (tuple, list):
        kind = "a list" if origin is list else "a list (tuple)"
        if not isinstance(value, (list, tuple)):
            return f"must be {kind}"
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin is tuple and args and Ellipsis not in typing.get_args(hint):
            if len(value) != len(args):
                return f"must be a list of {len(args)} values"
        else:
            args = args[:1] * len(value)
        for a, v in zip(args, value, strict=False):
            inner = _type_problem(a, v)
            if inner is not None:
                return f"{inner.replace('must be', 'must hold only')}"
        return None
    if origin is dict:
        return None if isinstance(value, dict) else "must be an object"
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    return None


def _range_problem(metadata: Any, value: Any) -> str | None:
    if value is None:  # an optional field left unset
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    choices = metadata.get("choices")
    if choices and value not in choices:
        return f"must be one of {list(choices)}"
    lo, hi = metadata.get("minimum"), metadata.get("maximum")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if not math.isfinite(v):
            return "must be finite"
        if lo is not None and v < lo:
            return f"must be >= {lo}"
        if hi is not None and v > hi:
            return f"must be <= {hi}"
    return None


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
    """Per-family optimizer defaults (the paper's), used unless the user overrides them.

    This is the one list of optimizer settings: `TrainConfig` gets one `X | None` field per
    field here (None: the family's value) and `tractable train` one flag per field.
    """

    optimizer: str = setting("adam", "the optimizer",
                             choices=("adam", "adamax", "openai-adamax"))
    lr: float = setting(1e-3, "peak learning rate", minimum=0.0)
    betas: tuple[float, float] = setting((0.9, 0.999), "Adam betas", metavar="B1 B2",
                                         minimum=0.0, maximum=1.0)
    lr_decay: float = setting(1.0, "multiplicative lr decay per step", minimum=0.0,
                              metavar="FACTOR")
    warmup_steps: int = setting(0, "linear lr warm-up, in steps", minimum=0,
                                maximum=MAX_STEPS, metavar="STEPS")
    weight_decay: float = setting(0.0, "L2 coefficient", minimum=0.0)
    ema_decay: float = setting(0.9995, "Polyak averaging decay per step", minimum=0.0,
                               maximum=1.0)
    grad_clip: float | None = setting(None, "max global gradient norm, 0: none",
                                      minimum=0.0, metavar="NORM")
    batch_size: int = setting(16, "global batch, split over processes", minimum=1,
                                maximum=MAX_BATCH,
                              metavar="IMAGES")
    ema_warmup: bool = setting(True, "cap the EMA decay at (1+t)/(10+t) early on (off: "
                                     "constant decay from the first step, as openai; "
                                     "default: on)")


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
    payload = read_json_file(path, ConfigError)
    if not isinstance(payload, dict) or "family" not in payload or "config" not in payload:
        raise ConfigError(f"{path} lacks 'family'/'config': not a tractable config")
    if not isinstance(payload["family"], str):
        raise ConfigError(f"{path}: 'family' must be a family name, got "
                          f"{type(payload['family']).__name__}; the config is corrupt")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not (
            1 <= version <= FORMAT_VERSION):
        raise ConfigError(
            f"{path} has format_version {version!r}, written by tractable "
            f"{payload.get('tractable_version', '?')}; this is tractable {__version__} "
            f"(format {FORMAT_VERSION}). Upgrade tractable to load it."
        )
    for v in range(version, FORMAT_VERSION):
        payload = MIGRATIONS[v](payload)
    if not isinstance(payload["config"], dict):
        raise ConfigError(f"{path}: 'config' must be an object of field values")
    return payload["family"], payload["config"]
