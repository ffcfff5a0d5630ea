"""A model's identity for compressed files: a hash of its family, config and weights.

A file can be decoded only by the model that wrote it; the hash names that model without
storing it. Weights enter bit for bit (name, dtype, shape and bytes of every tensor of the
state dict, in name order), the config as canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def model_identity(model: Any) -> str:
    """sha256 (hex) of `model`'s family, config and weights."""
    digest = hashlib.sha256()
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config)
    digest.update(json.dumps({"family": model.family, "config": config}, sort_keys=True,
                             default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
