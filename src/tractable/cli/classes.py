"""Class names as a user types them: `--class trouser` finds `Trouser`."""

from __future__ import annotations

from collections.abc import Sequence

from tractable.errors import ConfigError


def class_by_name(token: str, class_names: Sequence[str]) -> int | None:
    """The index of class `token`: its exact name, else the one name equal to it ignoring
    case and surrounding spaces; None when no name matches (the caller may try a number)."""
    token = token.strip()
    if token in class_names:
        return list(class_names).index(token)
    folded = [k for k, name in enumerate(class_names)
              if name.strip().casefold() == token.casefold()]
    if len(folded) > 1:
        raise ConfigError(f"class {token!r} is ambiguous: "
                          + ", ".join(repr(class_names[k]) for k in folded))
    return folded[0] if folded else None
