"""Any folder of PNG/JPEG images as an `ImageDataset`.

Layouts, checked in this order:
- `path/train/` and `path/test/`: the two splits (each in one of the layouts below);
- `path/<class>/...`: one sub-folder per class -> labels 0..K-1 in sorted folder-name order
  (images anywhere below a class folder belong to it);
- `path/*.png|jpg|jpeg`: unlabelled images (label -1).

With `size` every image is resized so that it covers `size` and then center-cropped to it
(`PIL.ImageOps.fit`, Lanczos). Without `size` all images must already share one size.
Channels: 1 if every image is greyscale, else 3 (alpha is dropped); `channels` forces either.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from tractable.data.base import ImageDataset
from tractable.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and _images_in(d, recursive=True))


def _split_folder(path: Path, split: str) -> Path:
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path / split
    if split == "test":
        raise DataError(f"{path} has no train/ and test/ sub-folders, so it has no test split; "
                        f"put the images in {path / 'train'} and {path / 'test'}, or load "
                        f"split='train' and hold out a subset yourself")
    return path


def _class_names(path: Path, folder: Path) -> list[str]:
    """Class folder names; for split folders the union over both, so labels agree."""
    if folder != path:
        names = {d.name for s in ("train", "test") for d in _class_dirs(path / s)}
        return sorted(names)
    return [d.name for d in _class_dirs(folder)]


def _decode(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} is not a readable PNG/JPEG image: {e}") from None


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
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


def load_image_folder(path: str | os.PathLike[str], split: str = "train",
                      size: int | Sequence[int] | None = None, channels: int | None = None,
                      name: str | None = None) -> ImageDataset:
    """Load a folder of PNG/JPEG images (see the module docstring for the layouts)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    folder = _split_folder(path, split)
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

    imgs = [_decode(p) for p, _ in files]
    if channels is None:
        channels = 1 if all(i.mode in GREY_MODES for i in imgs) else 3
    if size is None:
        sizes = {i.size for i in imgs}
        if len(sizes) > 1:
            a = files[0][0]
            b, other = next((p, i.size) for (p, _), i in zip(files, imgs, strict=True)
                            if i.size != imgs[0].size)
            raise DataError(
                f"images in {folder} have {len(sizes)} different sizes, e.g. {a.name} is "
                f"{imgs[0].size[0]}x{imgs[0].size[1]} and {b.name} is {other[0]}x{other[1]} "
                f"(width x height); pass a target size, e.g. load_image_folder(path, "
                f"size=32) or `--size 32`, to resize and center-crop them all")
        h, w = imgs[0].size[1], imgs[0].size[0]
    else:
        h, w = _size_hw(size)
    out = np.empty((len(imgs), h, w, channels), dtype=np.uint8)
    for j, img in enumerate(imgs):
        img = _to_mode(img, channels)
        if img.size != (w, h):
            img = ImageOps.fit(img, (w, h), method=Image.Resampling.LANCZOS)
        out[j] = np.asarray(img).reshape(h, w, channels)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([k for _, k in files], dtype=torch.long)
    return ImageDataset(images, labels, classes, name or f"folder:{path}")
