"""Hugging Face datasets by name: `--data hf:NAME[@REVISION]` or `load_dataset("hf:NAME")`.

    hf:ylecun/mnist                  a Hub dataset repo with an image (and label) column
    hf:ylecun/mnist@REVISION         one revision of it
    hf:/data/my_set                  a local folder the `datasets` library reads (parquet,
                                     image folders, ...), no network

The `datasets` library (`pip install 'tractable[datasets]'`) fetches a Hub dataset into its
own cache (`root`, `--root` on the command line, is its `cache_dir`; `HF_DATASETS_OFFLINE=1`
uses only the cache). The split "train" is the dataset's train split, "test" its test split
or, if it has none, its validation split. Columns `image` and `label` (a `ClassLabel` gives
the class names) are read through `tractable.data.custom.from_hf`, so `size` and `channels`
convert as for image folders, and the images go through a prepared copy like any dataset.
"""

from __future__ import annotations

import os
from typing import Any

from tractable.data.base import ImageDataset
from tractable.data.custom import HFImages, as_image_dataset, item_source
from tractable.data.prepared import PreparedSource
from tractable.errors import DataError

HF_DATA_PREFIX = "hf:"
SPLITS = {"train": ("train",), "test": ("test", "validation")}


def parse_reference(name: str) -> tuple[str, str | None]:
    """`hf:PATH[@REVISION]` -> (PATH, REVISION or None)."""
    body = name[len(HF_DATA_PREFIX):] if name.startswith(HF_DATA_PREFIX) else name
    path, _, revision = body.partition("@")
    if not path.strip():
        raise DataError(f"{name!r}: expected hf:NAME (a Hub dataset such as hf:ylecun/mnist, "
                        "or a local folder the datasets library reads)")
    return path.strip(), (revision.strip() or None)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("hf: datasets need the datasets library: "
                        "pip install 'tractable[datasets]'") from None
    return datasets


def hf_split(name: str, split: str, root: str | os.PathLike[str] | None = None) -> Any:
    """The `datasets.Dataset` of `split` of hf:`name` (its test split, else validation)."""
    datasets = _datasets()
    path, revision = parse_reference(name)
    cache = str(root) if root is not None else None
    tried = []
    for candidate in SPLITS[split]:
        try:
            return datasets.load_dataset(path, split=candidate, revision=revision,
                                         cache_dir=cache)
        except ValueError as e:  # the split does not exist: try the next name
            if "split" not in str(e).lower():
                raise DataError(f"{name}: {_first_line(e)}") from None
            tried.append(candidate)
        except Exception as e:  # noqa: BLE001 - the library raises many kinds; one line each
            raise DataError(f"{name}: could not load the dataset "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    raise DataError(f"{name} has no {' or '.join(tried)} split")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _images(name: str, split: str, root: str | os.PathLike[str] | None,
            size: int | tuple[int, int] | None, channels: int | None) -> HFImages:
    hf = hf_split(name, split, root)
    images = HFImages(hf, channels=channels, size=size)
    if len(images) == 0:
        raise DataError(f"{name} {split}: the split is empty")
    return images


def hf_source(name: str, split: str, root: str | os.PathLike[str] | None = None,
              download: bool = False, size: int | tuple[int, int] | None = None,
              channels: int | None = None) -> PreparedSource:
    """The prepared-copy source of hf:`name` (see the module docstring)."""
    return item_source(_images(name, split, root, size, channels), name, split)


def load_hf(name: str, split: str, root: str | os.PathLike[str] | None = None,
            download: bool = False, size: int | tuple[int, int] | None = None,
            channels: int | None = None) -> ImageDataset:
    """`split` of hf:`name` in memory (see the module docstring)."""
    return as_image_dataset(_images(name, split, root, size, channels), name, split,
                            prepared=False)
