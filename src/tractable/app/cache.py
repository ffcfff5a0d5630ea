"""What the app computes at start-up, kept in the model folder for the next start.

The test-set bits/dim histogram and an invertible model's attribute vectors take minutes on
a loaded CPU, and depend only on the weights and the test images used. Each result is a
safetensors file in the model folder (`app-cache-<what>.safetensors`) whose metadata holds
its key: a SHA-256 over the model's weights (every tensor of its state dict), the images the
result was computed from, and the cache format. A result whose key differs (new weights
after more training, other test images) is recomputed and replaces the file. A folder that
cannot be written (a shipped model inside a read-only site-packages, a read-only mount) is
simply not cached: reading and writing never fail the app.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor

from tractable.compression.identity import weights_digest
from tractable.errors import TractableError

CACHE_FORMAT = 1
PREFIX = "app-cache-"


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor of the state dict
    (the weights part of a compressed file's model identity)."""
    return weights_digest(model)


def result_key(weights: str, images: Tensor, extra: object = None) -> str:
    """The key of a result computed by the model with `weights` hash from `images`."""
    h = hashlib.sha256(f"{CACHE_FORMAT}:{weights}:{list(images.shape)}".encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


class AppCache:
    """The cached results of one model folder (`folder` None: nothing is cached)."""

    def __init__(self, folder: str | os.PathLike[str] | None, model: torch.nn.Module) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.weights = weights_hash(model) if folder is not None else ""

    def path(self, what: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{PREFIX}{what}.safetensors"

    def load(self, what: str, key: str) -> dict[str, Tensor] | None:
        """The tensors saved under `what` with this `key`, or None (absent, stale, unreadable)."""
        from safetensors import SafetensorError, safe_open

        path = self.path(what)
        if path is None or not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("key") != key:
                    return None
                return {name: f.get_tensor(name) for name in f.keys()}
        except (OSError, SafetensorError, ValueError, RuntimeError):
            return None

    def save(self, what: str, key: str, tensors: dict[str, Tensor]) -> bool:
        """Write the result atomically; False (and nothing written) where the folder is
        read-only or the disk refuses."""
        from safetensors.torch import save

        from tractable._io import atomic_write_bytes

        path = self.path(what)
        if path is None:
            return False
        try:
            data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                        metadata={"key": key})
            atomic_write_bytes(path, data)
        except (OSError, TractableError):  # read-only, full, or not a folder: no cache
            return False
        return True
