"""CIFAR-10 and CIFAR-100, "python version" pickles (Krizhevsky, 2009, "Learning Multiple
Layers of Features from Tiny Images"; https://www.cs.toronto.edu/~kriz/cifar.html).

Each pickle (protocol 2, written by Python 2) holds `b'data'`, a uint8 array [N, 3072] whose
rows are the red, then green, then blue 32x32 planes in row-major order, and the labels
(`b'labels'` for CIFAR-10; `b'fine_labels'` / `b'coarse_labels'` for CIFAR-100). CIFAR-10
splits its training set into `data_batch_1..5` (10,000 rows each); `test_batch` has 10,000.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tractable.data.base import ImageDataset
from tractable.data.download import (
    RemoteFile,
    default_root,
    extract,
    fetch,
    first_dir_with,
    missing_error,
    resolve_mirrors,
)
from tractable.data.prepared import Chunk, PreparedSource
from tractable.errors import DataError

CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_ARCHIVE = RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                             size_hint="170 MB")
CIFAR100_ARCHIVE = RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                              size_hint="169 MB")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]

# A pickle may name any Python callable; these are the only ones a CIFAR pickle needs
# (`_codecs.encode` rebuilds bytes in protocol-2 pickles written by Python 3).
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which no CIFAR pickle "
                                         f"needs (refusing to run it)")
        return super().find_class(module, name)


def read_cifar_pickle(path: Path) -> dict[bytes, Any]:
    """Unpickle one official CIFAR file safely (numpy arrays, lists, bytes only)."""
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError) as e:
        raise DataError(f"{path} is truncated or not a CIFAR pickle: {e or type(e).__name__}"
                        ) from None
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR pickle: it holds a {type(d).__name__}, not a dict")
    return d


def _images_labels(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = read_cifar_pickle(path)
    if b"data" not in d or label_key not in d:
        raise DataError(f"{path} is not a CIFAR pickle of this kind: it lacks {b'data'!r} or "
                        f"{label_key!r} (keys: {sorted(d)})")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: {b'data'!r} is {data.dtype} {list(data.shape)}, expected "
                        f"uint8 [N, 3072]")
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _meta_names(path: Path, key: bytes, fallback: Sequence[str]) -> list[str]:
    if not path.is_file():
        return list(fallback)
    d = read_cifar_pickle(path)
    if key not in d:
        raise DataError(f"{path} lacks {key!r} (keys: {sorted(d)})")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in d[key]]


def _locate(name: str, split: str, root: Path, subdir: str, files: list[str],
            archive: RemoteFile, download: bool, mirrors: Sequence[str] | None,
            progress: bool, hint: str = "") -> Path:
    """The folder holding `files` (root or root/subdir), downloading the archive if asked."""
    candidates = [root / subdir, root]
    folder = first_dir_with(files, candidates)
    if folder is not None:
        return folder
    if not download:
        missing = [f for f in files if not (root / subdir / f).is_file()
                   and not (root / f).is_file()]
        raise missing_error(name, split, missing, [root, root / subdir], archive.size_hint, hint)
    tar = fetch(archive, root, resolve_mirrors(CIFAR_MIRRORS, mirrors), progress)
    extract(tar, root)
    folder = first_dir_with(files, candidates)
    if folder is None:
        raise DataError(f"{tar} does not contain {', '.join(files)} under {subdir}/")
    return folder


def _cifar10_files(split: str, root: str | os.PathLike[str] | None, download: bool,
                   mirrors: Sequence[str] | None, progress: bool,
                   batches: Sequence[int] | None) -> tuple[Path, list[str]]:
    root = Path(root) if root is not None else default_root("cifar10")
    if split == "train":
        chosen = list(batches) if batches is not None else [1, 2, 3, 4, 5]
        if not chosen or any(b not in range(1, 6) for b in chosen):
            raise DataError(f"cifar10: batches must be a non-empty subset of 1..5, got {chosen}")
        files = [f"data_batch_{b}" for b in chosen]
    else:
        files = ["test_batch"]
    present = [f"data_batch_{b}" for b in range(1, 6)
               if (root / "cifar-10-batches-py" / f"data_batch_{b}").is_file()
               or (root / f"data_batch_{b}").is_file()]
    hint = ""
    if split == "train" and batches is None and present:
        ks = [int(p.rsplit("_", 1)[1]) for p in present]
        hint = (f" Or load only the batches present with batches={ks} "
                f"(CLI: --batches {' '.join(map(str, ks))}).")
    folder = _locate("cifar10", split, root, "cifar-10-batches-py", files,
                     CIFAR10_ARCHIVE, download, mirrors, progress, hint)
    return folder, files


def load_cifar10(split: str, root: str | os.PathLike[str] | None = None, download: bool = False,
                 mirrors: Sequence[str] | None = None, progress: bool = True,
                 batches: Sequence[int] | None = None) -> ImageDataset:
    """CIFAR-10: 50,000 train / 10,000 test RGB 32x32 images, 10 classes.

    `batches` picks which of `data_batch_1..5` form the training split (default all five),
    e.g. `batches=[1]` for a folder that holds only the first batch.
    """
    folder, files = _cifar10_files(split, root, download, mirrors, progress, batches)
    parts = [_images_labels(folder / f, b"labels") for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    names = _meta_names(folder / "batches.meta", b"label_names", CIFAR10_CLASSES)
    return _dataset(x, y, names, "cifar10", folder / files[0])


def _cifar100_files(split: str, root: str | os.PathLike[str] | None, download: bool,
                    mirrors: Sequence[str] | None, progress: bool,
                    label_type: str) -> tuple[Path, list[str]]:
    if label_type not in ("fine", "coarse"):
        raise DataError(f"cifar100: label_type must be 'fine' or 'coarse', got {label_type!r}")
    root = Path(root) if root is not None else default_root("cifar100")
    files = ["train" if split == "train" else "test"]
    folder = _locate("cifar100", split, root, "cifar-100-python", files,
                     CIFAR100_ARCHIVE, download, mirrors, progress)
    if not (folder / "meta").is_file():
        raise missing_error("cifar100", split, ["meta"], [folder], CIFAR100_ARCHIVE.size_hint)
    return folder, files


def load_cifar100(split: str, root: str | os.PathLike[str] | None = None,
                  download: bool = False, mirrors: Sequence[str] | None = None,
                  progress: bool = True, label_type: str = "fine") -> ImageDataset:
    """CIFAR-100: 50,000 train / 10,000 test RGB 32x32 images; `label_type` "fine" (100
    classes) or "coarse" (20 superclasses)."""
    folder, files = _cifar100_files(split, root, download, mirrors, progress, label_type)
    x, y = _images_labels(folder / files[0], f"{label_type}_labels".encode())
    names = _meta_names(folder / "meta", f"{label_type}_label_names".encode(), [])
    return _dataset(x, y, names, "cifar100", folder / files[0])


def _pickle_source(name: str, split: str, folder: Path, files: list[str], label_key: bytes,
                   names: list[str], meta: Path, options: dict[str, Any]) -> PreparedSource:
    """Stream CIFAR pickles into a prepared copy, one official file at a time."""

    def chunks() -> Iterator[Chunk]:
        for f in files:
            x, y = _images_labels(folder / f, label_key)
            _check_labels(y, names, folder / f)
            yield x, y

    sources = [folder / f for f in files] + ([meta] if meta.is_file() else [])
    return PreparedSource(name, split, sources, names, chunks, options)


def cifar10_source(split: str, root: str | os.PathLike[str] | None = None,
                   download: bool = False, mirrors: Sequence[str] | None = None,
                   progress: bool = True, batches: Sequence[int] | None = None) -> PreparedSource:
    folder, files = _cifar10_files(split, root, download, mirrors, progress, batches)
    meta = folder / "batches.meta"
    names = _meta_names(meta, b"label_names", CIFAR10_CLASSES)
    return _pickle_source("cifar10", split, folder, files, b"labels", names, meta, {})


def cifar100_source(split: str, root: str | os.PathLike[str] | None = None,
                    download: bool = False, mirrors: Sequence[str] | None = None,
                    progress: bool = True, label_type: str = "fine") -> PreparedSource:
    folder, files = _cifar100_files(split, root, download, mirrors, progress, label_type)
    names = _meta_names(folder / "meta", f"{label_type}_label_names".encode(), [])
    return _pickle_source("cifar100", split, folder, files, f"{label_type}_labels".encode(),
                          names, folder / "meta", {"label_type": label_type})


def _check_labels(y: np.ndarray, names: list[str], path: Path) -> None:
    if len(y) and (y.min() < 0 or y.max() >= len(names)):
        raise DataError(f"{path}: labels span {y.min()}..{y.max()} but there are "
                        f"{len(names)} class names")


def _dataset(x: np.ndarray, y: np.ndarray, names: list[str], name: str,
             path: Path) -> ImageDataset:
    _check_labels(y, names, path)
    return ImageDataset(torch.from_numpy(x.copy()), torch.from_numpy(y), names, name)
