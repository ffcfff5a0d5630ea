"""A folder of images as a prepared-copy source: decoded and resized one image at a time.

The layouts, channel rule and resizing are those of `tractable.data.folder` (whose helpers
this reuses); only the order of work differs: headers are read first (sizes and modes, no
pixels), then each image is decoded, converted and written before the next is opened, so
preparing a folder needs memory for one image, not the folder. Every file's path, size and
mtime enters the copy's key, so adding, removing or editing an image rebuilds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tractable.data import folder as fl
from tractable.data.prepared import Chunk, PreparedSource
from tractable.errors import DataError

CHUNK = 256  # images per write


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and mode of an image, from its header alone."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} is not a readable PNG/JPEG image: {e}") from None


def folder_files(path: Path, split: str) -> tuple[Path, list[tuple[Path, int]], list[str]]:
    """(split folder, [(file, label)], class names) as `load_image_folder` finds them."""
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist")
    folder = fl._split_folder(path, split)
    classes = fl._class_names(path, folder)
    loose = fl._images_in(folder, recursive=False)
    if classes and loose:
        raise DataError(f"{folder} holds both class sub-folders ({', '.join(classes[:3])}...) "
                        f"and loose images (e.g. {loose[0].name}); move the loose images into "
                        f"a class folder, or the class folders out")
    if classes:
        files = [(p, k) for k, c in enumerate(classes) if (folder / c).is_dir()
                 for p in fl._images_in(folder / c, recursive=True)]
    else:
        files = [(p, -1) for p in loose]
    if not files:
        raise DataError(f"no PNG/JPEG images found in {folder}")
    return folder, files, classes


def folder_source(path: str | os.PathLike[str], split: str = "train",
                  size: int | Sequence[int] | None = None, channels: int | None = None,
                  name: str | None = None) -> PreparedSource:
    """The prepared-copy source of an image folder (same result as `load_image_folder`)."""
    path = Path(path).expanduser()
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    folder, files, classes = folder_files(path, split)
    headers = [_header(p) for p, _ in files]
    if channels is None:
        channels = 1 if all(mode in fl.GREY_MODES for _, mode in headers) else 3
    if size is None:
        sizes = {s for s, _ in headers}
        if len(sizes) > 1:
            (w0, h0), (w1, h1) = headers[0][0], next(s for s, _ in headers if s != headers[0][0])
            raise DataError(f"images in {folder} have {len(sizes)} different sizes (e.g. "
                            f"{w0}x{h0} and {w1}x{h1}, width x height); pass a target size, "
                            f"e.g. `--size 32`, to resize and center-crop them all")
        h, w = headers[0][0][1], headers[0][0][0]
    else:
        h, w = fl._size_hw(size)
    c = channels

    def chunks() -> Iterator[Chunk]:
        for start in range(0, len(files), CHUNK):
            part = files[start:start + CHUNK]
            out = np.empty((len(part), h, w, c), dtype=np.uint8)
            for j, (p, _) in enumerate(part):
                img = fl._to_mode(fl._decode(p), c)
                if img.size != (w, h):
                    img = ImageOps.fit(img, (w, h), method=Image.Resampling.LANCZOS)
                out[j] = np.asarray(img).reshape(h, w, c)
            yield out.transpose(0, 3, 1, 2), np.array([k for _, k in part], dtype=np.int64)

    return PreparedSource(name or f"folder:{path}", split, [p for p, _ in files], classes,
                          chunks, {"size": [h, w], "channels": c}, len(files),
                          location=str(path.resolve()))
