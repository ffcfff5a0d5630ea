"""Model families by name, so a saved folder's `config.json` finds its class."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from tractable.errors import ConfigError

if TYPE_CHECKING:
    from tractable.models.base import TractableModel

M = TypeVar("M", bound="type[TractableModel]")
_FAMILIES: dict[str, type[TractableModel]] = {}


def register_model(family: str):  # type: ignore[no-untyped-def]
    """Class decorator: register a `TractableModel` subclass under `family`."""

    def wrap(cls: M) -> M:
        cls.family = family
        _FAMILIES[family] = cls
        return cls

    return wrap


def model_class(family: str) -> type[TractableModel]:
    """The class registered under `family`, or a `ConfigError` listing the known ones."""
    import tractable.models  # noqa: F401  (importing the package registers every family)

    if family not in _FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[family]


def known_families() -> list[str]:
    import tractable.models  # noqa: F401

    return sorted(_FAMILIES)
