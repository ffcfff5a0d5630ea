"""Bring your own data: any map-style `Dataset` of `(uint8 [C, H, W], label)`, or a Hugging
Face `datasets.Dataset` with an image column, as an `ImageDataset`.

`as_image_dataset(ds, name)` streams the items one at a time into a prepared copy (see
`tractable.data.prepared`) and returns it memory-mapped, so it trains, evaluates and scores
like any named dataset; `prepared=False` stacks the items in memory instead. Labels are ints
(-1: unlabelled); `class_names` (or the dataset's own `class_names`) gives K classes.

A plain `Dataset` has no files to key its copy by, so the key is `name`, the length, and a
hash of 16 items spread over the dataset (for Hugging Face datasets also their own
`_fingerprint`): give different datasets different names, or `rebuild=True` after editing
items the sample does not cover.

`from_hf(hf_dataset, image="image", label="label")` wraps a Hugging Face dataset (optional
extra: `pip install 'tractable[datasets]'`): PIL images or arrays become uint8 `[C, H, W]`
(`channels`, `size` convert and center-crop as image folders do), a `ClassLabel` column gives
the class names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tractable.data.base import ImageDataset
from tractable.data.prepared import Chunk, PreparedSource, open_prepared
from tractable.errors import DataError

CHUNK = 1024
_SAMPLED_ITEMS = 16


def _item(ds: Dataset, i: int, name: str) -> tuple[np.ndarray, int]:
    item = ds[i]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise DataError(f"{name}: item {i} is a {type(item).__name__}; a dataset must yield "
                        f"(uint8 image [C, H, W], label) pairs")
    x, y = item
    arr = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise DataError(f"{name}: item {i} is a {arr.dtype} image of shape {list(arr.shape)}; "
                        f"expected uint8 [C, H, W] (values 0..255)")
    try:
        label = int(y)
    except (TypeError, ValueError):
        raise DataError(f"{name}: item {i} has label {y!r}; expected an int (-1: none)") from None
    return arr, label


def fingerprint(ds: Dataset, name: str) -> str:
    """Hash of the length and 16 evenly spread items (plus a Hugging Face fingerprint)."""
    n = len(ds)  # type: ignore[arg-type]
    h = hashlib.sha256(f"{n}".encode())
    inner = getattr(ds, "hf", ds)
    h.update(str(getattr(inner, "_fingerprint", "")).encode())
    for i in sorted({int(k) for k in np.linspace(0, n - 1, min(n, _SAMPLED_ITEMS))}):
        x, y = _item(ds, i, name)
        h.update(f"{i}:{y}:{x.shape}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def item_source(ds: Dataset, name: str, split: str = "train",
                class_names: Sequence[str] | None = None) -> PreparedSource:
    """Stream a map-style dataset's items into a prepared copy, `CHUNK` at a time."""
    n = len(ds)  # type: ignore[arg-type]
    if n == 0:
        raise DataError(f"{name}: the dataset is empty")
    names = list(class_names if class_names is not None else getattr(ds, "class_names", []))

    def chunks() -> Iterator[Chunk]:
        for start in range(0, n, CHUNK):
            items = [_item(ds, i, name) for i in range(start, min(start + CHUNK, n))]
            shapes = {x.shape for x, _ in items}
            if len(shapes) > 1:
                raise DataError(f"{name}: images of shapes {sorted(shapes)} among items "
                                f"{start}..{start + len(items) - 1}; all must share one shape")
            labels = np.array([y for _, y in items], dtype=np.int64)
            if names and (labels.min() < -1 or labels.max() >= len(names)):
                raise DataError(f"{name}: labels span {labels.min()}..{labels.max()}, outside "
                                f"-1..{len(names) - 1} for {len(names)} classes")
            yield np.stack([x for x, _ in items]), labels

    return PreparedSource(name, split, [], names, chunks, count=n,
                          fingerprint=fingerprint(ds, name))


def as_image_dataset(ds: Dataset, name: str = "custom", split: str = "train",
                     class_names: Sequence[str] | None = None, prepared: bool = True,
                     rebuild: bool = False, progress: bool = True) -> ImageDataset:
    """`ds` as an `ImageDataset` (returned unchanged if it is one)."""
    if isinstance(ds, ImageDataset):
        return ds
    source = item_source(ds, name, split, class_names)
    if prepared:
        return open_prepared(source, progress=progress, rebuild=rebuild)
    parts = list(source.chunks())
    return ImageDataset(torch.from_numpy(np.concatenate([x for x, _ in parts])),
                        torch.from_numpy(np.concatenate([y for _, y in parts])),
                        source.class_names, name)


class HFImages(Dataset[tuple[Tensor, int]]):
    """A Hugging Face dataset's image (and label) column as `(uint8 [C, H, W], label)`."""

    def __init__(self, hf: Any, image: str = "image", label: str | None = "label",
                 channels: int | None = None, size: int | Sequence[int] | None = None) -> None:
        columns = list(getattr(hf, "column_names", []))
        if image not in columns:
            raise DataError(f"the Hugging Face dataset has no column {image!r} (columns: "
                            f"{', '.join(columns)}); pass image=<column>")
        if label is not None and label not in columns:
            label = None
        if channels not in (None, 1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        self.hf, self.image, self.label = hf, image, label
        self.channels, self.size = channels, size
        feature = hf.features.get(label) if label is not None else None
        self.class_names: list[str] = list(getattr(feature, "names", None) or [])

    def __len__(self) -> int:
        return len(self.hf)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        row = self.hf[int(index)]
        x = self._pixels(row[self.image])
        y = int(row[self.label]) if self.label is not None else -1
        return torch.from_numpy(x), y

    def _pixels(self, value: Any) -> np.ndarray:
        from PIL import Image, ImageOps

        from tractable.data import folder as fl

        img = value if isinstance(value, Image.Image) else Image.fromarray(np.asarray(value))
        channels = self.channels or (1 if img.mode in fl.GREY_MODES else 3)
        img = fl._to_mode(img, channels)
        if self.size is not None:
            h, w = fl._size_hw(self.size)
            if img.size != (w, h):
                img = ImageOps.fit(img, (w, h), method=Image.Resampling.LANCZOS)
        arr = np.asarray(img, dtype=np.uint8)
        return arr.reshape(arr.shape[0], arr.shape[1], channels).transpose(2, 0, 1).copy()


def from_hf(hf: Any, image: str = "image", label: str | None = "label",
            channels: int | None = None, size: int | Sequence[int] | None = None) -> HFImages:
    """Wrap a Hugging Face `datasets.Dataset` (see the module docstring)."""
    return HFImages(hf, image, label, channels, size)
