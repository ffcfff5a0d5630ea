"""Any folder of PNG/JPEG images as an `ImageDataset`.

Layouts, checked in this order:
- `path/train/` and `path/test/`: the two splits (each in one of the layouts below);
- `path/<class>/...`: one sub-folder per class -> labels 0..K-1 in sorted folder-name order
  (images anywhere below a class folder belong to it);
- `path/*.png|jpg|jpeg`: unlabelled images (label -1).

Without `train/` and `test/`, a `holdout` fraction (default 0.1) of the images is the test
split, the rest the train split: within each class, the images ordered by the SHA-256 of
their path relative to `path`, the first ceil(holdout · n) (at least one when n >= 2) are
held out; a class of one image stays in train. `holdout=0`: every image is in train and
there is no test split; `holdout=1`: every image is in the test split and there is no train
split (a folder to evaluate or score, however few images it holds). The split is
deterministic, the same on every machine, and adding images moves few others. The dataset's
`split_note` says what was done (training records it).

Images are decoded one at a time and resized straight away (JPEGs are decoded at a reduced
scale when that still covers the target), so memory holds the target-size array only. With
`size` every image is resized so that it covers `size` and then center-cropped to it
(`PIL.ImageOps.fit`, Lanczos). Without `size` all images must already share one size.
Channels: 1 if every image is greyscale, else 3 (alpha is dropped); `channels` forces either.
16-bit greyscale PNGs are scaled to 0..255 (v · 255 / 65535, rounded), not clipped. An image
over Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`) is refused with a
`DataError`.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from tractable.data.base import ImageDataset
from tractable.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # 16-bit PNG greyscale, as Pillow opens it
DEFAULT_HOLDOUT = 0.1


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and _images_in(d, recursive=True))


def _has_split_folders(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _no_test_split(path: Path, count: int, fraction: float) -> DataError:
    """The error for a folder whose holdout leaves no test images, with the fix that works."""
    if fraction == 0:
        why, fix, flag = "holdout=0 holds out none", "a holdout > 0", "--holdout 0.1"
    else:
        why = (f"at holdout={fraction:g} only classes of two or more images give one, and "
               f"its {count} image(s) form no such class")
        fix, flag = "holdout=1 (every image is the test split)", "--holdout 1"
    text = f"{path} has no train/ and test/ folders and no test images: {why}"
    return DataError(f"{text}; pass {fix} or add train/ and test/ folders",
                     command_line=f"{text}; pass {flag}, or add train/ and test/ folders "
                     "(to score single image files: tractable score MODEL FILE_OR_FOLDER)")


def _held_out(files: list[tuple[Path, int]], path: Path, holdout: float) -> set[Path]:
    """The test images of a folder without train/ and test/ (see the module docstring);
    `holdout=1`: all of them."""
    if holdout <= 0:
        return set()
    if holdout >= 1:
        return {p for p, _ in files}
    by_class: dict[int, list[Path]] = {}
    for p, k in files:
        by_class.setdefault(k, []).append(p)
    out: set[Path] = set()
    for group in by_class.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda p: hashlib.sha256(p.relative_to(path).as_posix().encode())
                   .hexdigest())
        out.update(group[:max(1, math.ceil(holdout * len(group)))])
    return out


def _class_names(path: Path, folder: Path) -> list[str]:
    """Class folder names; for split folders the union over both, so labels agree."""
    if folder != path:
        names = {d.name for s in ("train", "test") for d in _class_dirs(path / s)}
        return sorted(names)
    return [d.name for d in _class_dirs(folder)]


_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError,
                  MemoryError, Image.DecompressionBombError)


def _unreadable(path: Path, e: BaseException) -> DataError:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return DataError(f"{path} is refused as a possible decompression bomb: {e}")
    return DataError(f"{path} is not a readable PNG/JPEG image: {e}")


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the file's header, without decoding its pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.mode, img.size
    except (*_DECODE_ERRORS, Image.DecompressionBombWarning) as e:
        raise _unreadable(path, e) from None


def _load_one(path: Path, channels: int, hw: tuple[int, int]) -> np.ndarray:
    """One image as uint8 [H, W, channels], resized (cover + center crop) to `hw`."""
    h, w = hw
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format == "JPEG":
                    img.draft("L" if channels == 1 else "RGB", (w, h))  # scale >= target
                img.load()
                out = _to_mode(img, channels)
    except (*_DECODE_ERRORS, Image.DecompressionBombWarning) as e:
        raise _unreadable(path, e) from None
    if out.size != (w, h):
        out = ImageOps.fit(out, (w, h), method=Image.Resampling.LANCZOS)
    return np.asarray(out).reshape(h, w, channels)


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in WIDE_MODES:  # 16-bit values: scale to 0..255 (convert("L") would clip)
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(wide * (255 / 65535)), 0, 255).astype(np.uint8))
    if channels == 1:
        return img.convert("L")
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
    return img.convert("RGB")


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise DataError(f"size must be an int or (height, width) of positive ints, got {size!r}")
    return hw  # type: ignore[return-value]


def fit_image_array(images: torch.Tensor, size: int | Sequence[int] | None = None,
                    channels: int | None = None) -> torch.Tensor:
    """uint8 `[N, C, H, W]` images brought to `channels` (1 or 3) and `size` (resize and
    center-crop), exactly as the folder loader brings decoded images there."""
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    n, c, h, w = images.shape
    channels = channels or c
    oh, ow = (h, w) if size is None else _size_hw(size)
    if (channels, oh, ow) == (c, h, w):
        return images
    arr = images.permute(0, 2, 3, 1).numpy()
    out = np.empty((n, oh, ow, channels), dtype=np.uint8)
    for j in range(n):
        img = _to_mode(Image.fromarray(arr[j, ..., 0] if c == 1 else arr[j]), channels)
        if img.size != (ow, oh):
            img = ImageOps.fit(img, (ow, oh), method=Image.Resampling.LANCZOS)
        out[j] = np.asarray(img).reshape(oh, ow, channels)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class FolderPlan:
    """What a folder's split holds, found from file names and headers (no pixels decoded):
    the images with their labels, the class names, the target (height, width) and channels,
    and a note saying how the split was made when the folder had no train/ and test/."""

    folder: Path
    files: list[tuple[Path, int]]
    classes: list[str]
    hw: tuple[int, int]
    channels: int
    note: str | None


def plan_image_folder(path: str | os.PathLike[str], split: str = "train",
                      size: int | Sequence[int] | None = None, channels: int | None = None,
                      holdout: float | None = None) -> FolderPlan:
    """The `FolderPlan` of `split` of a folder of images (layouts: the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    split_folders = _has_split_folders(path)
    if holdout is not None:
        if split_folders:
            raise DataError(f"{path} has its own train/ and test/ folders; drop holdout")
        if not (isinstance(holdout, (int, float)) and 0 <= holdout <= 1):
            raise DataError(f"holdout must be a fraction in [0, 1], got {holdout!r}")
    folder = path / split if split_folders else path
    classes, files = _labelled_files(folder, path)
    note = None
    if not split_folders:
        fraction = DEFAULT_HOLDOUT if holdout is None else float(holdout)
        files, note = _split_by_holdout(path, files, split, fraction)
    headers = [_header(p) for p, _ in files]
    if channels is None:
        channels = 1 if all(mode in GREY_MODES for mode, _ in headers) else 3
    hw = _common_size(folder, files, headers) if size is None else _size_hw(size)
    return FolderPlan(folder, files, classes, hw, channels, note)


def _labelled_files(folder: Path, path: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image file, class index or -1)]) of one split's folder."""
    classes = _class_names(path, folder)
    loose = _images_in(folder, recursive=False)
    if classes and loose:
        raise DataError(f"{folder} holds both class sub-folders ({', '.join(classes[:3])}...) "
                        f"and loose images (e.g. {loose[0].name}); move the loose images into "
                        f"a class folder, or the class folders out")
    if classes:
        files = [(p, k) for k, c in enumerate(classes) if (folder / c).is_dir()
                 for p in _images_in(folder / c, recursive=True)]
    else:
        files = [(p, -1) for p in loose]
    if not files:
        raise DataError(f"no PNG/JPEG images found in {folder}")
    return classes, files


def _split_by_holdout(path: Path, files: list[tuple[Path, int]], split: str,
                      fraction: float) -> tuple[list[tuple[Path, int]], str]:
    """The files of `split` of a folder without train/ and test/ folders, and the note
    saying how its test split was chosen."""
    test = _held_out(files, path, fraction)
    if not test and split == "test":
        raise _no_test_split(path, len(files), fraction)
    if len(test) == len(files) and split == "train":
        raise DataError(f"{path}: holdout={fraction:g} holds out every image, which "
                        "leaves no train split; use a holdout below 1 to train",
                        command_line=f"{path}: --holdout {fraction:g} holds out every "
                        "image, which leaves no train split; use a --holdout below 1 "
                        "to train")
    files = [(p, k) for p, k in files if (p in test) == (split == "test")]
    note = (f"{path} has no train/ and test/ folders: {len(test)} images "
            f"(holdout={fraction:g}, chosen by path hash) are its test split")
    return files, note


def _common_size(folder: Path, files: list[tuple[Path, int]],
                 headers: list[tuple[str, tuple[int, int]]]) -> tuple[int, int]:
    """(height, width) shared by every image, or a `DataError` naming two that differ."""
    sizes = {sz for _, sz in headers}
    if len(sizes) > 1:
        a, first = files[0][0], headers[0][1]
        b, other = next((p, sz) for (p, _), (_, sz) in zip(files, headers, strict=True)
                        if sz != first)
        raise DataError(
            f"images in {folder} have {len(sizes)} different sizes, e.g. {a.name} is "
            f"{first[0]}x{first[1]} and {b.name} is {other[0]}x{other[1]} "
            f"(width x height); pass a target size, e.g. load_image_folder(path, "
            f"size=32) or `--size 32`, to resize and center-crop them all")
    return headers[0][1][1], headers[0][1][0]


def decode_images(plan: FolderPlan, files: Sequence[tuple[Path, int]]) -> np.ndarray:
    """`files` of `plan` decoded one at a time into uint8 `[N, C, H, W]` at the plan's size."""
    h, w = plan.hw
    out = np.empty((len(files), h, w, plan.channels), dtype=np.uint8)
    for j, (p, _) in enumerate(files):
        out[j] = _load_one(p, plan.channels, plan.hw)
    return out.transpose(0, 3, 1, 2)


def load_image_folder(path: str | os.PathLike[str], split: str = "train",
                      size: int | Sequence[int] | None = None, channels: int | None = None,
                      name: str | None = None, holdout: float | None = None) -> ImageDataset:
    """Load a folder of PNG/JPEG images (see the module docstring for the layouts).

    `holdout`: the fraction of a folder without train/ and test/ that forms its test split
    (default 0.1)."""
    plan = plan_image_folder(path, split, size=size, channels=channels, holdout=holdout)
    images = torch.from_numpy(np.ascontiguousarray(decode_images(plan, plan.files)))
    labels = torch.tensor([k for _, k in plan.files], dtype=torch.long)
    ds = ImageDataset(images, labels, plan.classes,
                      name or f"folder:{Path(path).expanduser()}")
    ds.split_note = plan.note
    return ds
