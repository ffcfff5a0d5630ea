"""The dataset contract (`docs/data.md`).

A dataset yields `(uint8 image [C, H, W], label)` with label -1 when the data has none, and
knows `num_classes`, `class_names` and `shape`. `ImageDataset` also exposes `images`
(`uint8 [N, C, H, W]`) and `labels` (`long [N]`) so the trainer can batch by indexing; the
images are either in memory or a memory-mapped prepared copy (`tractable.data.prepared`),
from which `read_rows` / `read_range` read batches without mapping them into the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tractable.errors import DataError


class Pages(Protocol):
    """Mapped storage read row by row (see `prepared.MappedPixels`)."""

    def rows(self, index: Tensor) -> Tensor: ...

    def range(self, lo: int, hi: int) -> Tensor: ...

    def release(self) -> None: ...


class ImageDataset(Dataset[tuple[Tensor, int]]):
    """A labelled (or unlabelled) image dataset, in memory or memory-mapped."""

    split_note: str | None = None  # how the split was made, when the source had none

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None,
        class_names: Sequence[str] = (),
        name: str = "",
        pages: Pages | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"{name}: images must be uint8 [N, C, H, W], got "
                            f"{images.dtype} {list(images.shape)}")
        if labels is None:
            labels = torch.full((len(images),), -1, dtype=torch.long)
        if len(labels) != len(images):
            raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
        if class_names and len(labels):
            lo, hi = int(labels.min()), int(labels.max())
            if lo < -1 or hi >= len(class_names):
                bad = hi if hi >= len(class_names) else lo
                raise DataError(f"{name}: label {bad} is outside -1..{len(class_names) - 1} "
                                f"for {len(class_names)} classes")
        self.images = images
        self.labels = labels.long()
        self.class_names = list(class_names)
        self.name = name
        self.pages = pages
        self.prepared_at: Path | None = None  # the prepared copy's folder, if mapped
        self._split_rows: Tensor | None = None  # set by `subset`; None: the whole split

    @property
    def split_rows(self) -> Tensor:
        """Which rows of its split these images are: a subset's rows, else `0..N-1`."""
        return self._split_rows if self._split_rows is not None else torch.arange(len(self))

    @property
    def is_mapped(self) -> bool:
        """Whether the images are a memory-mapped prepared copy (not held in memory)."""
        return self.pages is not None

    def read_rows(self, index: Tensor) -> Tensor:
        """`images[index]` as a new tensor; a mapped dataset reads just those rows."""
        return self.pages.rows(index) if self.pages is not None else self.images[index]

    def read_range(self, lo: int, hi: int) -> Tensor:
        """`images[lo:hi]`; for a mapped dataset a new tensor read in one go."""
        return self.pages.range(lo, hi) if self.pages is not None else self.images[lo:hi]

    def release_pages(self) -> None:
        """Drop the mapped pages this process has read (no-op for in-memory images)."""
        if self.pages is not None:
            self.pages.release()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0 and bool((self.labels >= 0).all())

    def class_counts(self) -> Tensor:
        """Images per class, `long [num_classes]` (unlabelled images are not counted)."""
        labelled = self.labels[self.labels >= 0]
        return torch.bincount(labelled, minlength=self.num_classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, n: int | None, seed: int = 0) -> ImageDataset:
        """A deterministic random subset of `n` images (same `seed` -> same subset), in the
        split's order; `split_rows` says which rows they are. `None` or `n >= len`: all."""
        if n is not None and n < 1:
            raise DataError(f"{self.name}: a subset needs at least 1 image, got {n}")
        if n is None or n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        sub = ImageDataset(self.read_rows(idx), self.labels[idx], self.class_names, self.name)
        sub.split_note = self.split_note
        sub._split_rows = self.split_rows[idx]
        return sub

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, n={len(self)}, shape={self.shape}, "
                f"classes={self.num_classes})")
