"""Which classes a command draws: the `--class` argument of `tractable sample` and
`tractable complete` (and `latent manipulate --attribute`); a class name is matched in any
case, so `--class trouser` finds `Trouser`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tractable.errors import ConfigError


def parse_class_spec(spec: str, n: int, num_classes: int,
                     class_names: list[str]) -> tuple[torch.Tensor, int, int | None]:
    """`--class` text -> (y, n, grid row length): LongTensor [n] or soft FloatTensor [n, K].

    "3" or a class name (any case): every sample of that class; "4:0.5,9:0.5": class weights
    (normalized to sum 1); "all": one grid row per class, n // K samples each.
    """
    if num_classes == 0:
        raise ConfigError("this model is unconditional (trained without class labels): "
                          "drop --class")

    spec = spec.strip()
    if spec == "all":
        per = max(1, n // num_classes)
        y = torch.arange(num_classes).repeat_interleave(per)
        return y, len(y), per
    if ":" in spec:
        w = torch.zeros(num_classes)
        for part in spec.split(","):
            name, _, weight = part.rpartition(":")
            try:
                value = float(weight)
            except ValueError:
                raise ConfigError(f"bad class weight {part!r}; use e.g. 4:0.5,9:0.5") from None
            if value < 0 or not math.isfinite(value):
                raise ConfigError(f"class weights must be >= 0, got {part!r}")
            w[class_index(name, class_names, num_classes)] += value
        if w.sum() <= 0:
            raise ConfigError("class weights sum to 0")
        return (w / w.sum()).expand(n, num_classes).clone(), n, None
    return torch.full((n,), class_index(spec, class_names, num_classes), dtype=torch.long), n, None


def class_labels(cfg: Any) -> list[str]:
    """A conditional model's class names, or its class indices when it has none."""
    names = list(cfg.class_names)
    return names if len(names) == cfg.num_classes else [str(k) for k in range(cfg.num_classes)]




def class_index(token: str, class_names: Sequence[str], num_classes: int,
                what: str = "class") -> int:
    """The class that `token` names: a class name (any case) or an index in range; a
    `ConfigError` naming the `what` (class, attribute) and listing the classes otherwise."""
    token = token.strip()
    named = class_by_name(token, class_names)
    if named is not None:
        return named
    try:
        k = int(token)
    except ValueError:
        raise ConfigError(f"unknown {what} {token!r}; classes: "
                          f"{', '.join(class_names) or f'0..{num_classes - 1}'}") from None
    if not 0 <= k < num_classes:
        raise ConfigError(f"{what} {k} out of range 0..{num_classes - 1}")
    return k


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
