"""Model families. Importing this package registers each one (see `registry`)."""

from tractable.models.autoregressive import AutoregressiveModel
from tractable.models.base import TractableModel, load
from tractable.models.capabilities import (
    Completable,
    Compressible,
    Invertible,
    PixelScorable,
)
from tractable.models.gated_pixelcnn import GatedPixelCNN, GatedPixelCNNConfig
from tractable.models.glow import Glow, GlowConfig
from tractable.models.pixelcnn_pp import PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.models.registry import known_families, model_class, register_model
from tractable.models.tarflow import TarFlow, TarFlowConfig

__all__ = [
    "AutoregressiveModel",
    "Completable",
    "Compressible",
    "GatedPixelCNN",
    "GatedPixelCNNConfig",
    "Glow",
    "GlowConfig",
    "Invertible",
    "PixelScorable",
    "PixelCNNPlusPlus",
    "PixelCNNPlusPlusConfig",
    "TarFlow",
    "TarFlowConfig",
    "TractableModel",
    "known_families",
    "load",
    "model_class",
    "register_model",
]
