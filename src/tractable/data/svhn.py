"""SVHN cropped digits, the official MATLAB files (Netzer et al., 2011, "Reading Digits in
Natural Images with Unsupervised Feature Learning"; http://ufldl.stanford.edu/housenumbers/).

`train_32x32.mat` (73,257 images) and `test_32x32.mat` (26,032) hold `X`, uint8
[32, 32, 3, N], and `y`, [N, 1] labels 1..10 where 10 stands for the digit 0; this loader
returns labels 0..9 (10 -> 0) so that label k is digit k. Reading .mat files needs scipy
(`pip install 'tractable[svhn]'`), imported only when SVHN is loaded.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from tractable.data.base import ImageDataset
from tractable.data.download import (
    RemoteFile,
    default_root,
    fetch,
    missing_error,
    resolve_mirrors,
)
from tractable.data.prepared import Chunk, PreparedSource
from tractable.errors import DataError

SVHN_MIRRORS = ("http://ufldl.stanford.edu/housenumbers/",)
SVHN_FILES = {
    "train": RemoteFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373",
                        size_hint="182 MB"),
    "test": RemoteFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", size_hint="64 MB"),
}
SVHN_CLASSES = [str(i) for i in range(10)]


def _loadmat(path: Path) -> dict[str, object]:
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise DataError("SVHN's .mat files need scipy: pip install 'tractable[svhn]'") from None
    try:
        return loadmat(path)
    except (MatReadError, ValueError, TypeError, OSError, EOFError, IndexError, KeyError,
            AttributeError, NotImplementedError, UnicodeDecodeError, MemoryError,
            zlib.error, struct.error) as e:
        raise DataError(f"{path} is truncated or not a MATLAB v5 file ({e})") from None


def read_svhn_mat(path: Path) -> ImageDataset:
    """An `ImageDataset` from one official SVHN `*_32x32.mat` file."""
    d = _loadmat(path)
    if "X" not in d or "y" not in d:
        raise DataError(f"{path} lacks 'X' or 'y' (it holds {sorted(k for k in d if k[0] != '_')})")
    x, y = np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path}: X is {x.dtype} {list(x.shape)} and y has {len(y)} labels; "
                        f"expected uint8 [32, 32, 3, N] and N labels")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels span {y.min()}..{y.max()}, expected 1..10")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    return ImageDataset(images, torch.from_numpy(y % 10), SVHN_CLASSES, "svhn")


def load_svhn(split: str, root: str | os.PathLike[str] | None = None, download: bool = False,
              mirrors: Sequence[str] | None = None, progress: bool = True) -> ImageDataset:
    """SVHN cropped digits (73,257 train / 26,032 test RGB 32x32, labels 0..9)."""
    return read_svhn_mat(svhn_file(split, root, download, mirrors, progress))


def svhn_file(split: str, root: str | os.PathLike[str] | None = None, download: bool = False,
              mirrors: Sequence[str] | None = None, progress: bool = True) -> Path:
    root = Path(root) if root is not None else default_root("svhn")
    remote = SVHN_FILES[split]
    path = root / remote.name
    if not path.is_file():
        if not download:
            raise missing_error("svhn", split, [remote.name], [root], remote.size_hint)
        path = fetch(remote, root, resolve_mirrors(SVHN_MIRRORS, mirrors), progress)
    return path


def svhn_source(split: str, root: str | os.PathLike[str] | None = None, download: bool = False,
                mirrors: Sequence[str] | None = None, progress: bool = True) -> PreparedSource:
    """The prepared-copy source of one .mat file (read whole: it is a single official file)."""
    path = svhn_file(split, root, download, mirrors, progress)

    def chunks() -> Iterator[Chunk]:
        ds = read_svhn_mat(path)
        yield ds.images.numpy(), ds.labels.numpy()

    return PreparedSource("svhn", split, [path], SVHN_CLASSES, chunks)
