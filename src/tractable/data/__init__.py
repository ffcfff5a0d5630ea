"""Datasets in their official formats, behind one contract (see `base.ImageDataset`)."""

from tractable.data.base import ImageDataset
from tractable.data.registry import known_datasets, load_dataset

__all__ = ["ImageDataset", "known_datasets", "load_dataset"]
