"""Build a model from a family name, the data's shape, a preset and field overrides.

This is the one place that turns user input (`--model NAME --preset small --nr-filters 64`)
into a model config, for every registered family, without knowing any family:

- the family's config dataclass (`cls.config_class`) lists the settable fields; the fields
  every model shares (`image_shape`, `num_classes`, `class_names`) come from the data;
- presets are the named field-value tables a family declares in its class attribute
  `presets` (declared on `TractableModel`; e.g. PixelCNN++'s "small" and "paper");
- overrides are field values, given typed or as command-line text (converted with the
  dataclass field's type, see `parse_field_value`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

from tractable.config import ModelConfig
from tractable.errors import ConfigError
from tractable.models.base import TractableModel
from tractable.models.registry import model_class

SHARED_FIELDS = ("image_shape", "num_classes", "class_names")


def presets_of(cls: type[TractableModel]) -> dict[str, dict[str, Any]]:
    """The named presets a model class declares (`TractableModel.presets`)."""
    return dict(cls.presets)


def settable_fields(cls: type[TractableModel]) -> list[dataclasses.Field[Any]]:
    """The config fields a user may set (everything but what the data determines)."""
    return [f for f in dataclasses.fields(cls.config_class) if f.name not in SHARED_FIELDS]


def field_types(cls: type[TractableModel]) -> dict[str, Any]:
    return typing.get_type_hints(cls.config_class)


def model_config_for(
    family: str,
    image_shape: Sequence[int],
    num_classes: int = 0,
    class_names: Sequence[str] = (),
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ModelConfig:
    """The config of a `family` model for data of `image_shape` (C, H, W)."""
    cls = model_class(family)
    values: dict[str, Any] = {}
    if preset is not None:
        presets = presets_of(cls)
        if preset not in presets:
            have = ", ".join(sorted(presets)) or "none"
            raise ConfigError(f"{family} has no preset {preset!r} (presets: {have})")
        values.update(presets[preset])
    names = {f.name for f in settable_fields(cls)}
    hints = field_types(cls)
    for key, value in (overrides or {}).items():
        if key not in names:
            raise ConfigError(f"{family} models have no setting {key!r}; "
                              f"settings: {', '.join(sorted(names))}")
        values[key] = parse_field_value(hints[key], value, key) if isinstance(value, str) else value
    if num_classes and len(class_names) not in (0, num_classes):
        raise ConfigError(f"{len(class_names)} class names for {num_classes} classes")
    try:
        cfg = cls.config_class(image_shape=tuple(image_shape),  # type: ignore[arg-type]
                               num_classes=num_classes,
                               class_names=list(class_names) if num_classes else [],
                               **values)
    except TypeError as e:
        raise ConfigError(f"invalid {family} settings: {e}") from None
    cfg.validate()
    return cfg


def build_model(family: str, config: ModelConfig) -> TractableModel:
    """Instantiate the registered class of `family` with `config`."""
    return model_class(family)(config)


def parse_field_value(hint: Any, text: str, name: str = "value") -> Any:
    """Convert command-line `text` to a value of the dataclass field type `hint`.

    Handles bool, int, float, str, `X | None` ("none"), tuples and lists (comma-separated).
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if text.strip().lower() in ("none", "null", ""):
            return None
        return parse_field_value(args[0], text, name) if len(args) == 1 else text
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis] or [str]
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if origin is tuple and len(typing.get_args(hint)) > 1 and Ellipsis not in typing.get_args(
                hint) and len(parts) != len(args):
            raise ConfigError(f"{name} takes {len(args)} comma-separated values, got {text!r}")
        types_ = args if len(args) == len(parts) else [args[0]] * len(parts)
        vals = [parse_field_value(t, p, name) for t, p in zip(types_, parts, strict=True)]
        return tuple(vals) if origin is tuple else vals
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        if text not in choices:
            raise ConfigError(f"{name} must be one of {choices}, got {text!r}")
        return text
    try:
        if hint is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if hint in (int, float, str):
            return hint(text)
    except ValueError:
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{name} expects {kind}, got {text!r}") from None
    return text
