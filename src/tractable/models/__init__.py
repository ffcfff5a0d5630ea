"""Model families. Importing this package registers each one (see `registry`)."""

from tractable.models.autoregressive import AutoregressiveModel
from tractable.models.base import TractableModel, load
from tractable.models.registry import known_families, model_class, register_model

__all__ = [
    "AutoregressiveModel",
    "TractableModel",
    "known_families",
    "load",
    "model_class",
    "register_model",
]
