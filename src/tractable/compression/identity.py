"""A model's identity for compressed files: a hash of its family, config and weights.

A file can be decoded only by the model that wrote it; the hash names that model without
storing it. Weights enter bit for bit (name, dtype, shape and bytes of every tensor of the
state dict, in name order), the config as canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def model_identity(model: Any) -> str:
    """sha256 (hex) of `model`'s family, config and weights."""
    digest = hashlib.sha256()
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config)
    digest.update(json.dumps({"family": model.family, "config": config}, sort_keys=True,
                             default=str).encode())
    update_with_state(digest, model.state_dict())
    return digest.hexdigest()


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 (hex) of `model`'s weights alone (its state dict, as `model_identity` reads it)."""
    digest = hashlib.sha256()
    update_with_state(digest, model.state_dict())
    return digest.hexdigest()


def update_with_state(digest: Any, state: Mapping[str, Tensor]) -> None:
    """Feed `digest` every tensor of `state` in name order: its name, dtype, shape and bytes
    (the byte format compressed files' model hashes depend on: keep it)."""
    for name, tensor in sorted(state.items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
