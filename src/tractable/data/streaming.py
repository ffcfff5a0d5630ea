"""Reading batches from a dataset so that memory grows with the batch, not the dataset.

For a memory-mapped dataset (`ImageDataset.is_mapped`) every page a process reads stays in its
resident set until released; `PageBudget` releases them after every `budget` bytes read, and
`stream_batches` hands out copies of contiguous slices (so a release never touches a batch in
use). For in-memory datasets both are plain slicing.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor
from torch.utils.data import Dataset

PAGE = 4096
DEFAULT_BUDGET = 64 << 20  # bytes of mapped pages a process keeps before releasing them


class PageBudget:
    """Calls `dataset.release_pages()` once about `budget` bytes of its pages were read."""

    def __init__(self, dataset: Dataset, budget: int = DEFAULT_BUDGET) -> None:
        self._release = getattr(dataset, "release_pages", None)
        self.mapped = bool(getattr(dataset, "is_mapped", False))
        self.budget = budget
        self._read = 0

    def read(self, batch: Tensor, rows: int | None = None) -> None:
        """Account for `batch` just read; a gather of `rows` scattered rows touches up to one
        extra page per row."""
        if not self.mapped or self._release is None:
            return
        self._read += batch.numel() * batch.element_size() + PAGE * (rows or 0)
        if self._read >= self.budget:
            self._release()
            self._read = 0


def stream_batches(images: Tensor, labels: Tensor, lo: int, hi: int, batch_size: int,
                   budget: PageBudget | None = None) -> Iterator[tuple[int, Tensor, Tensor]]:
    """`(start, images, labels)` of consecutive batches of rows `lo..hi-1`."""
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        x, y = images[start:stop], labels[start:stop]
        if budget is not None and budget.mapped:
            x = x.clone()
            budget.read(x)
        yield start, x, y
