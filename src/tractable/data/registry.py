"""Datasets by name: `load_dataset("mnist-mini", split="train")`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from tractable.data.base import ImageDataset
from tractable.data.idx import read_idx
from tractable.errors import DataError

BUNDLED = Path(__file__).parent / "bundled"
MNIST_CLASSES = [str(i) for i in range(10)]


def _idx_pair(images: Path, labels: Path, classes: list[str], name: str) -> ImageDataset:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{name}: {images.name} {x.shape} and {labels.name} {y.shape} disagree")
    return ImageDataset(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype("int64")),
                        classes, name)


def load_mnist_mini(split: str, root: str | os.PathLike[str] | None = None) -> ImageDataset:
    """The embedded 10,000-digit MNIST subset (train 9,000 / test 1,000), no network needed."""
    prefix = {"train": "train", "test": "t10k"}[split]
    d = BUNDLED / "mnist"
    return _idx_pair(d / f"{prefix}-images-idx3-ubyte.gz", d / f"{prefix}-labels-idx1-ubyte.gz",
                     MNIST_CLASSES, "mnist-mini")


_LOADERS: dict[str, Callable[..., ImageDataset]] = {"mnist-mini": load_mnist_mini}


def known_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, split: str = "train", **kwargs: object) -> ImageDataset:
    """Load dataset `name` (see `known_datasets()`) for `split` ("train" or "test")."""
    if name not in _LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    return _LOADERS[name](split, **kwargs)
