"""Downsampled ImageNet 32x32 and 64x64, the official npz batches (Chrabaszcz, Loshchilov &
Hutter, 2017, "A Downsampled Variant of ImageNet as an Alternative to the CIFAR datasets";
the sets used by van den Oord et al., 2016, and PixelCNN/Glow papers).

Each `train_data_batch_{1..10}.npz` / `val_data.npz` holds `data`, uint8 [N, 3*S*S] with rows
laid out as CIFAR's (red, green, blue planes, row-major), and `labels`, 1-based class indices
1..1000 (this loader returns 0..999). Train: 1,281,167 images; val (our "test"): 50,000.
Class names are the indices "0".."999" (the npz files carry no names).

The 64x64 training set is 15.7 GB as uint8; `batches=[...]` loads only some of the ten.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from tractable.data.base import ImageDataset
from tractable.data.download import (
    RemoteFile,
    check_zip,
    default_root,
    extract,
    fetch,
    missing_error,
    resolve_mirrors,
)
from tractable.data.prepared import Chunk, PreparedSource
from tractable.errors import DataError

IMAGENET_MIRRORS = ("https://image-net.org/data/downsample/",)
IMAGENET_CLASSES = [str(i) for i in range(1000)]


def _zip(name: str, size: str) -> RemoteFile:
    # image-net.org publishes no checksums for these archives, so a download is verified by
    # format instead: it must be a zip whose every member passes its CRC-32 check.
    return RemoteFile(name, md5=None, check=check_zip, size_hint=size)


# side -> (archive per training batch, validation archive); sizes are the uncompressed data's
ARCHIVES: dict[int, tuple[dict[int, RemoteFile], RemoteFile]] = {
    32: ({b: _zip("Imagenet32_train_npz.zip", "up to 4 GB") for b in range(1, 11)},
         _zip("Imagenet32_val_npz.zip", "up to 160 MB")),
    64: ({b: _zip("Imagenet64_train_part1_npz.zip" if b <= 5 else
                  "Imagenet64_train_part2_npz.zip", "up to 8 GB each") for b in range(1, 11)},
         _zip("Imagenet64_val_npz.zip", "up to 620 MB")),
}


def _find(root: Path, fname: str) -> Path | None:
    """`fname` directly in `root` or in one of its sub-folders (the zips unpack into one)."""
    if (root / fname).is_file():
        return root / fname
    if root.is_dir():
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if (sub / fname).is_file():
                return sub / fname
    return None


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path} is truncated or not an npz file ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is a single .npy array, not an npz batch with data and labels")
    missing = [k for k in ("data", "labels") if k not in z.files]
    if missing:
        z.close()
        raise DataError(f"{path} lacks {' and '.join(missing)} (it holds {z.files}); "
                        f"expected a downsampled-ImageNet batch")
    return z


def _read_key(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(z[key])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read {key!r}, the file is corrupt or truncated "
                        f"({e})") from None


def _labels(z: np.lib.npyio.NpzFile, p: Path) -> np.ndarray:
    y = _read_key(z, "labels", p).astype(np.int64).reshape(-1)
    if len(y) and (y.min() < 1 or y.max() > 1000):
        raise DataError(f"{p}: labels span {y.min()}..{y.max()}, expected 1..1000 "
                        f"(the official files are 1-based)")
    return y - 1


def _check_data(x: np.ndarray, n: int, p: Path, side: int, name: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 2 or len(x) != n:
        raise DataError(f"{p}: data is {x.dtype} {list(x.shape)}, expected uint8 "
                        f"[{n}, {3 * side * side}]")
    if x.shape[1] != 3 * side * side:
        other = int(round((x.shape[1] / 3) ** 0.5))
        raise DataError(f"{p}: rows hold {x.shape[1]} values ({other}x{other} RGB), but "
                        f"{name} expects {side}x{side} ({3 * side * side}); use "
                        f"imagenet{other} for this file")


def npz_source(paths: Sequence[Path], side: int, name: str, split: str) -> PreparedSource:
    """Stream official npz batches into a prepared copy, one batch file at a time."""

    def chunks() -> Iterator[Chunk]:
        for p in paths:
            with _open_npz(p) as z:
                y = _labels(z, p)
                x = _read_key(z, "data", p)
            _check_data(x, len(y), p, side, name)
            yield x.reshape(-1, 3, side, side), y

    return PreparedSource(name, split, list(paths), IMAGENET_CLASSES, chunks)


def read_npz_batches(paths: Sequence[Path], side: int, name: str) -> ImageDataset:
    """Read official npz batches into one `ImageDataset` (labels shifted to 0-based).

    Labels are read first to size one uint8 tensor, which the pixel arrays are then copied
    into one file at a time: peak memory is the dataset plus one batch, not twice the set.
    """
    labels = []
    for p in paths:
        with _open_npz(p) as z:
            labels.append(_labels(z, p))
    n = sum(len(y) for y in labels)
    images = torch.empty((n, 3, side, side), dtype=torch.uint8)
    start = 0
    for p, y in zip(paths, labels, strict=True):
        with _open_npz(p) as z:
            x = _read_key(z, "data", p)
        _check_data(x, len(y), p, side, name)
        images[start:start + len(x)] = torch.from_numpy(x.reshape(-1, 3, side, side))
        start += len(x)
    return ImageDataset(images, torch.from_numpy(np.concatenate(labels)), IMAGENET_CLASSES, name)


def imagenet_files(side: int, split: str, root: str | os.PathLike[str] | None = None,
                   download: bool = False, mirrors: Sequence[str] | None = None,
                   progress: bool = True, batches: Sequence[int] | None = None) -> list[Path]:
    """The npz files of `split` at `side` x `side`, downloading missing ones if asked."""
    name = f"imagenet{side}"
    root = Path(root) if root is not None else default_root(name)
    train_zips, val_zip = ARCHIVES[side]
    if split == "train":
        chosen = list(batches) if batches is not None else list(range(1, 11))
        if not chosen or any(b not in range(1, 11) for b in chosen):
            raise DataError(f"{name}: batches must be a non-empty subset of 1..10, got {chosen}")
        wanted = {f"train_data_batch_{b}.npz": train_zips[b] for b in chosen}
    else:
        wanted = {"val_data.npz": val_zip}
    found = {f: _find(root, f) for f in wanted}
    missing = [f for f, p in found.items() if p is None]
    if missing and not download:
        raise missing_error(name, split, missing, [root],
                            " + ".join(sorted({r.size_hint for r in wanted.values()})),
                            " (image-net.org may ask you to log in; then download the npz zips "
                            "by hand and unzip them into that folder.)")
    if missing:
        urls = resolve_mirrors(IMAGENET_MIRRORS, mirrors)
        for archive in dict.fromkeys(wanted[f] for f in missing):
            extract(fetch(archive, root, urls, progress), root)
        found = {f: _find(root, f) for f in wanted}
        still = [f for f, p in found.items() if p is None]
        if still:
            raise DataError(f"{name}: the downloaded archives in {root} do not contain "
                            f"{', '.join(still)}")
    return [p for p in found.values() if p is not None]


def load_downsampled_imagenet(side: int, split: str, root: str | os.PathLike[str] | None = None,
                              download: bool = False, mirrors: Sequence[str] | None = None,
                              progress: bool = True,
                              batches: Sequence[int] | None = None) -> ImageDataset:
    """Downsampled ImageNet at `side` x `side` (32 or 64); "test" is the official val set."""
    paths = imagenet_files(side, split, root, download, mirrors, progress, batches)
    return read_npz_batches(paths, side, f"imagenet{side}")


def imagenet_source(side: int, split: str, root: str | os.PathLike[str] | None = None,
                    download: bool = False, mirrors: Sequence[str] | None = None,
                    progress: bool = True,
                    batches: Sequence[int] | None = None) -> PreparedSource:
    """Downsampled ImageNet at `side` x `side` as a prepared source (same files as
    `load_downsampled_imagenet`)."""
    paths = imagenet_files(side, split, root, download, mirrors, progress, batches)
    return npz_source(paths, side, f"imagenet{side}", split)


def load_imagenet32(split: str, root: str | os.PathLike[str] | None = None,
                    download: bool = False, mirrors: Sequence[str] | None = None,
                    progress: bool = True, batches: Sequence[int] | None = None) -> ImageDataset:
    """Downsampled ImageNet 32x32 (1,281,167 train / 50,000 val-as-test, 1000 classes)."""
    return load_downsampled_imagenet(32, split, root, download, mirrors, progress, batches)


def load_imagenet64(split: str, root: str | os.PathLike[str] | None = None,
                    download: bool = False, mirrors: Sequence[str] | None = None,
                    progress: bool = True, batches: Sequence[int] | None = None) -> ImageDataset:
    """Downsampled ImageNet 64x64 (1,281,167 train / 50,000 val-as-test, 1000 classes)."""
    return load_downsampled_imagenet(64, split, root, download, mirrors, progress, batches)
