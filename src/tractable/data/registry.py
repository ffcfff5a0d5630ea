"""Datasets by name: `load_dataset("cifar10", split="train", download=True)`.

Every loader takes `(split, root=None, download=False, **options)`. `root` is a folder that
holds the official files (default: the cache folder `$TRACTABLE_DATA/<name>`, or
~/.cache/tractable/<name>); `download=True` fetches missing files there first. A folder of
images loads by the name `folder:<path>`, a Hugging Face dataset by `hf:NAME`
(`tractable.data.hf_datasets`). Every dataset takes `size` (resize the shorter
side and center-crop to size x size) and `channels` (1: greyscale, 3: RGB), done the way an
image folder's loader does it (Lanczos, ITU-R 601 luma). Folders also take `holdout`
(the test fraction of a folder without train/ and test/).

`prepared=True` (the default for every dataset but the bundled 7 MB `mnist-mini`) returns
the memory-mapped prepared copy (`tractable.data.prepared`), converting the official files
(and any `size` / `channels` change) once; `prepared=False` reads them into memory as
before. Both give the same images.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import torch

from tractable.data.base import ImageDataset
from tractable.data.cifar import cifar10_source, cifar100_source, load_cifar10, load_cifar100
from tractable.data.folder import fit_image_array, load_image_folder
from tractable.data.folder_source import folder_source
from tractable.data.hf_datasets import HF_DATA_PREFIX, hf_source, load_hf
from tractable.data.imagenet import imagenet_source, load_imagenet32, load_imagenet64
from tractable.data.mnist import (
    fashion_mnist_source,
    load_fashion_mnist,
    load_mnist,
    load_mnist_mini,
    mnist_mini_source,
    mnist_source,
)
from tractable.data.prepared import Chunk, PreparedSource, open_prepared
from tractable.data.svhn import load_svhn, svhn_source
from tractable.errors import DataError
from tractable.limits import MAX_SIDE

FOLDER_PREFIX = "folder:"

_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "mnist-mini": load_mnist_mini,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagenet32": load_imagenet32,
    "imagenet64": load_imagenet64,
    "svhn": load_svhn,
}

_SOURCES: dict[str, Callable[..., PreparedSource]] = {
    "mnist-mini": mnist_mini_source,
    "mnist": mnist_source,
    "fashion-mnist": fashion_mnist_source,
    "cifar10": cifar10_source,
    "cifar100": cifar100_source,
    "imagenet32": partial(imagenet_source, 32),
    "imagenet64": partial(imagenet_source, 64),
    "svhn": svhn_source,
}

# Read into memory unless asked otherwise: bundled with the package, 7 MB decompressed in
# well under a second, so a prepared copy would only duplicate it.
IN_MEMORY_BY_DEFAULT = ("mnist-mini",)

DESCRIPTIONS = {
    "mnist-mini": "10,000 real MNIST digits bundled with the package (9,000 / 1,000), 1x28x28",
    "mnist": "MNIST, 60,000 / 10,000 digits, 1x28x28, IDX gz (12 MB)",
    "fashion-mnist": "Fashion-MNIST, 60,000 / 10,000 articles, 1x28x28, IDX gz (31 MB)",
    "cifar10": "CIFAR-10, 50,000 / 10,000, 3x32x32, python pickles (170 MB)",
    "cifar100": "CIFAR-100, 50,000 / 10,000, 3x32x32, 100 fine or 20 coarse classes (169 MB)",
    "imagenet32": "downsampled ImageNet, 1,281,167 / 50,000 (val), 3x32x32, npz batches",
    "imagenet64": "downsampled ImageNet, 1,281,167 / 50,000 (val), 3x64x64, npz batches",
    "svhn": "SVHN cropped digits, 73,257 / 26,032, 3x32x32, .mat (needs scipy; 246 MB)",
}


def known_datasets() -> list[str]:
    return sorted(_LOADERS)


def dataset_loader(name: str) -> Callable[..., ImageDataset]:
    """The loader function behind `name` (a registered name or `folder:<path>`)."""
    if name.startswith(FOLDER_PREFIX):
        return partial(_load_folder, name[len(FOLDER_PREFIX):])
    if name.startswith(HF_DATA_PREFIX):
        return partial(load_hf, name)
    if name not in _LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}, "
                        f"or {FOLDER_PREFIX}<path> for a folder of PNG/JPEG images, or "
                        f"{HF_DATA_PREFIX}NAME for a Hugging Face dataset")
    return _LOADERS[name]


def dataset_source(name: str) -> Callable[..., PreparedSource]:
    """The prepared-copy source builder behind `name` (same arguments as its loader)."""
    if name.startswith(FOLDER_PREFIX):
        return partial(_folder_source, name[len(FOLDER_PREFIX):])
    if name.startswith(HF_DATA_PREFIX):
        return partial(hf_source, name)
    dataset_loader(name)  # the unknown-name error
    return _SOURCES[name]


def _refuse_download(download: bool) -> None:
    if download:
        raise DataError("a folder of images cannot be downloaded; drop download=True")


def _folder_source(path: str, split: str, root: object = None, download: bool = False,
                   size: int | tuple[int, int] | None = None,
                   channels: int | None = None, holdout: float | None = None) -> PreparedSource:
    _refuse_download(download)
    return folder_source(path, split, size=size, channels=channels, holdout=holdout)


def _load_folder(path: str, split: str, root: object = None, download: bool = False,
                 size: int | tuple[int, int] | None = None,
                 channels: int | None = None, holdout: float | None = None) -> ImageDataset:
    _refuse_download(download)
    return load_image_folder(path, split, size=size, channels=channels, holdout=holdout)


def load_dataset(name: str, split: str = "train", root: str | os.PathLike[str] | None = None,
                 download: bool = False, prepared: bool | None = None, *,
                 limit: int | None = None, seed: int = 0,
                 **options: object) -> ImageDataset:
    """Load `split` ("train" or "test") of dataset `name` (see `known_datasets()`), or its
    fixed random subset of `limit` images (`ImageDataset.subset(limit, seed)`: the same
    rows for the same seed, named by the subset's `split_rows`).

    `root`: folder with the official files (default: the cache); `download`: fetch missing
    files from the official mirrors first (`mirrors=[...]` or `$TRACTABLE_MIRROR` replace
    them). Other options go to the loader, e.g. `batches=[1]` (cifar10, imagenet*),
    `label_type="coarse"` (cifar100), `size=32` (folders), `progress=False`.
    `prepared`: memory-map the prepared copy (default: every dataset but `mnist-mini`).
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    return _load_split(name, split, root, download, prepared, options).subset(limit, seed)


def _load_split(name: str, split: str, root: str | os.PathLike[str] | None,
                download: bool, prepared: bool | None, options: dict[str, object]
                ) -> ImageDataset:
    loader = dataset_loader(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    size = options.get("size")
    sides = size if isinstance(size, (tuple, list)) else [size]
    if size is not None and not all(isinstance(v, int) and not isinstance(v, bool)
                                    and 1 <= v <= MAX_SIDE for v in sides):
        raise DataError(f"size must be whole numbers of pixels in 1..{MAX_SIDE}, got {size!r}")
    params = inspect.signature(loader).parameters
    reshape = {k: options.pop(k) for k in ("size", "channels")
               if k not in params and k in options}
    if prepared is None:
        prepared = name not in IN_MEMORY_BY_DEFAULT
    if reshape and not prepared:
        ds = _load_split(name, split, root, download, False, options)
        return reshaped(ds, reshape.get("size"), reshape.get("channels"))  # type: ignore[arg-type]
    try:
        inspect.signature(loader).bind(split, root=root, download=download, **options)
    except TypeError:
        accepted = [p for p in inspect.signature(loader).parameters if p not in ("split", "_")]
        refused = sorted(k for k in options if k not in accepted) or sorted(options)
        raise DataError(f"{name} does not take option(s) {', '.join(refused)}; it takes "
                        f"{', '.join([*accepted, 'size', 'channels'])}") from None
    if not prepared:
        return loader(split, root=root, download=download, **options)
    source = dataset_source(name)(split, root=root, download=download, **options)
    if reshape:
        source = reshaped_source(source, reshape.get("size"),  # type: ignore[arg-type]
                                 reshape.get("channels"))  # type: ignore[arg-type]
    return open_prepared(source, progress=bool(options.get("progress", True)))


def reshaped(ds: ImageDataset, size: int | None = None,
             channels: int | None = None) -> ImageDataset:
    """`ds` with its images center-cropped and resized to `size` and converted to
    `channels` (None: as they are)."""
    if size is None and channels is None:
        return ds
    images = fit_image_array(ds.images, size, channels)
    return ImageDataset(images, ds.labels, ds.class_names, ds.name)


def reshaped_source(source: PreparedSource, size: int | None = None,
                    channels: int | None = None) -> PreparedSource:
    """`source` with every chunk brought to `size` and `channels` as `reshaped` does (the
    settings enter the prepared copy's key)."""
    if size is None and channels is None:
        return source
    inner = source.chunks

    def chunks() -> Iterator[Chunk]:
        for x, y in inner():
            pixels = torch.from_numpy(np.require(x, requirements=["C", "W"]))
            yield fit_image_array(pixels, size, channels).numpy(), y

    options = {**source.options, "reshape_size": size, "reshape_channels": channels}
    return dataclasses.replace(source, chunks=chunks, options=options)
