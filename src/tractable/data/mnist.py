"""MNIST, Fashion-MNIST (official IDX gz files) and the bundled MNIST subset `mnist-mini`.

MNIST: LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/ (CC BY-SA 3.0).
Fashion-MNIST: Xiao, Rasul & Vollgraf (2017), https://github.com/zalandoresearch/fashion-mnist
(MIT). Both: 60,000 train / 10,000 test grey 28x28 images, 10 classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tractable.data.base import ImageDataset
from tractable.data.download import (
    RemoteFile,
    default_root,
    fetch,
    first_dir_with,
    missing_error,
    resolve_mirrors,
)
from tractable.data.idx import iter_idx, read_idx
from tractable.data.prepared import Chunk, PreparedSource
from tractable.errors import DataError

BUNDLED_MNIST = Path(__file__).parent / "bundled" / "mnist"
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


@dataclass(frozen=True)
class IdxSpec:
    """An IDX dataset: its official files per split, where to get them, its class names."""

    name: str
    files: dict[str, tuple[RemoteFile, RemoteFile]]  # split -> (images, labels)
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    size_hint: str


# md5s of the .gz files as published (MNIST: the values torchvision and the ossci mirror use;
# yann.lecun.com itself publishes none).
MNIST = IdxSpec(
    name="mnist",
    files={
        "train": (RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                  RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
        "test": (RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                 RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    classes=tuple(MNIST_CLASSES),
    size_hint="12 MB",
)

# md5s from Zalando's README; content_md5 is the md5 of the decompressed IDX bytes, so a
# mirror that re-gzipped the identical data (Debian's dataset-fashion-mnist) also verifies.
FASHION_MNIST = IdxSpec(
    name="fashion-mnist",
    files={
        "train": (RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                             "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
                  RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                             "9018921c3c673c538a1fc5bad174d6f9")),
        "test": (RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                            "8181f5470baa50b63fa0f6fddb340f0a"),
                 RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                            "15d484375f8d13e6eb1aabb0c3f46965")),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    classes=tuple(FASHION_CLASSES),
    size_hint="31 MB",
)


def read_idx_pair(images: Path, labels: Path, classes: Sequence[str], name: str) -> ImageDataset:
    """An `ImageDataset` from an IDX image file `[N, H, W]` and its label file `[N]`."""
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{name}: {images.name} has shape {x.shape} and {labels.name} has "
                        f"shape {y.shape}; expected [N, H, W] images and N labels")
    if len(y) and int(y.max()) >= len(classes):
        raise DataError(f"{name}: {labels.name} holds label {int(y.max())}, but there are only "
                        f"{len(classes)} classes")
    return ImageDataset(torch.from_numpy(x.copy()).unsqueeze(1),
                        torch.from_numpy(y.astype("int64")), classes, name)


def idx_files(spec: IdxSpec, split: str, root: str | os.PathLike[str] | None = None,
              download: bool = False, mirrors: Sequence[str] | None = None,
              progress: bool = True) -> tuple[Path, Path]:
    """(images, labels) files of `split` in `root` (default: the cache folder), downloading
    the official files first when `download=True`."""
    root = Path(root) if root is not None else default_root(spec.name)
    remotes = spec.files[split]
    names = [r.name for r in remotes]
    folder = first_dir_with(names, [root])
    if folder is None:
        if not download:
            missing = [n for n in names if not (root / n).is_file()]
            raise missing_error(spec.name, split, missing, [root], spec.size_hint)
        urls = resolve_mirrors(spec.mirrors, mirrors)
        for r in remotes:
            fetch(r, root, urls, progress)
        folder = root
    return folder / names[0], folder / names[1]


def load_idx_dataset(spec: IdxSpec, split: str, root: str | os.PathLike[str] | None = None,
                     download: bool = False, mirrors: Sequence[str] | None = None,
                     progress: bool = True) -> ImageDataset:
    """Load `split` of an IDX dataset from `root` (default: its cache folder), downloading
    the official files first when `download=True`."""
    images, labels = idx_files(spec, split, root, download, mirrors, progress)
    return read_idx_pair(images, labels, spec.classes, spec.name)


def idx_source(images: Path, labels: Path, classes: Sequence[str], name: str,
               split: str) -> PreparedSource:
    """The prepared-copy source of an IDX pair: the image file streamed 10,000 rows at a time."""
    y_all = read_idx(labels)
    if y_all.ndim != 1:
        raise DataError(f"{name}: {labels.name} has shape {y_all.shape}; expected N labels")
    if len(y_all) and int(y_all.max()) >= len(classes):
        raise DataError(f"{name}: {labels.name} holds label {int(y_all.max())}, but there are "
                        f"only {len(classes)} classes")

    def mismatch(n: int, hw: tuple[int, ...]) -> DataError:
        return DataError(f"{name}: {images.name} has shape {(n, *hw)} and {labels.name} has "
                         f"shape {y_all.shape}; expected [N, H, W] images and N labels")

    def chunks() -> Iterator[Chunk]:
        start = 0
        for x in iter_idx(images):
            if x.ndim != 3 or start + len(x) > len(y_all):
                raise mismatch(start + len(x), x.shape[1:])
            yield x[:, None], y_all[start:start + len(x)].astype(np.int64)
            start += len(x)
            hw = x.shape[1:]
        if start != len(y_all):
            raise mismatch(start, hw if start else ())

    return PreparedSource(name, split, [images, labels], list(classes), chunks,
                          count=len(y_all))


def mnist_source(split: str, root: str | os.PathLike[str] | None = None,
                 download: bool = False, mirrors: Sequence[str] | None = None,
                 progress: bool = True) -> PreparedSource:
    return idx_source(*idx_files(MNIST, split, root, download, mirrors, progress),
                      MNIST.classes, "mnist", split)


def fashion_mnist_source(split: str, root: str | os.PathLike[str] | None = None,
                         download: bool = False, mirrors: Sequence[str] | None = None,
                         progress: bool = True) -> PreparedSource:
    return idx_source(*idx_files(FASHION_MNIST, split, root, download, mirrors, progress),
                      FASHION_MNIST.classes, "fashion-mnist", split)


def load_mnist(split: str, root: str | os.PathLike[str] | None = None, download: bool = False,
               mirrors: Sequence[str] | None = None, progress: bool = True) -> ImageDataset:
    """Full MNIST (60,000 train / 10,000 test) from its official IDX gz files."""
    return load_idx_dataset(MNIST, split, root, download, mirrors, progress)


def load_fashion_mnist(split: str, root: str | os.PathLike[str] | None = None,
                       download: bool = False, mirrors: Sequence[str] | None = None,
                       progress: bool = True) -> ImageDataset:
    """Fashion-MNIST (60,000 train / 10,000 test) from its official IDX gz files."""
    return load_idx_dataset(FASHION_MNIST, split, root, download, mirrors, progress)


def mnist_mini_files(split: str, root: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """(images, labels) of the bundled subset (or of another copy in `root`)."""
    folder = Path(root) if root is not None else BUNDLED_MNIST
    prefix = {"train": "train", "test": "t10k"}[split]
    images = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels = folder / f"{prefix}-labels-idx1-ubyte.gz"
    missing = [p.name for p in (images, labels) if not p.is_file()]
    if missing:
        raise DataError(f"mnist-mini: missing {', '.join(missing)} in {folder}; the package's "
                        f"bundled copy is {BUNDLED_MNIST} (reinstall tractable if it is gone)")
    return images, labels


def load_mnist_mini(split: str, root: str | os.PathLike[str] | None = None,
                    download: bool = False, progress: bool = True) -> ImageDataset:
    """The embedded 10,000-digit MNIST subset (train 9,000 / test 1,000), no network needed.

    Its "t10k" files are held-out digits of the official *training* set (see docs/data.md).
    `root` may point at another copy in the same layout; `download` has nothing to do.
    Any other option is refused (`load_dataset` names the ones it takes), never ignored.
    """
    return read_idx_pair(*mnist_mini_files(split, root), MNIST_CLASSES, "mnist-mini")


def mnist_mini_source(split: str, root: str | os.PathLike[str] | None = None,
                      download: bool = False, progress: bool = True) -> PreparedSource:
    return idx_source(*mnist_mini_files(split, root), MNIST_CLASSES, "mnist-mini", split)
