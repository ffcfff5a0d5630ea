"""Reading batches from a dataset so that memory grows with the batch, not the dataset.

A memory-mapped `ImageDataset` reads the rows of a batch from the page cache into a new
tensor (`read_rows`, `read_range`) instead of touching its mapping, which would keep the
touched pages counted in the process's resident memory; other datasets are indexed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor
from torch.utils.data import Dataset


def row_reader(dataset: Dataset, images: Tensor) -> Callable[[Tensor], Tensor]:
    """`index -> images[index]`, read row by row when `dataset` is memory-mapped."""
    if getattr(dataset, "is_mapped", False):
        return dataset.read_rows  # type: ignore[attr-defined, no-any-return]
    return images.__getitem__


def stream_batches(images: Tensor, labels: Tensor, lo: int, hi: int, batch_size: int,
                   dataset: Dataset | None = None) -> Iterator[tuple[int, Tensor, Tensor]]:
    """`(start, images, labels)` of consecutive batches of rows `lo..hi-1`."""
    mapped = getattr(dataset, "is_mapped", False)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        x = dataset.read_range(start, stop) if mapped else images[start:stop]  # type: ignore[union-attr]
        yield start, x, labels[start:stop]
