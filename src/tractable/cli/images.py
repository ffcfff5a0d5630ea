"""The images a command is pointed at: `IMG_OR_INDEX` arguments.

An existing file is read as an image of the model's size; anything else is an index into
the `--split` of `--data` (else the dataset the run trained on, with its options), which is
loaded once, when first needed.
"""

from __future__ import annotations

import argparse
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from tractable.cli.common import dataset_for
from tractable.errors import DataError, ShapeError

if TYPE_CHECKING:
    from tractable.data import ImageDataset
    from tractable.run_folder import Folder


def image_files(paths: list[str], suffixes: tuple[str, ...], recursive: bool) -> list[Path]:
    """The image files named, in order, each folder replaced by the files in it (below it,
    when `recursive`) whose suffix is one of `suffixes`, sorted."""
    files: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in (path.rglob("*") if recursive else path.iterdir())
                           if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise DataError(f"{path} holds no image files ({', '.join(suffixes)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path} does not exist (expected an image file or a folder)")
    return files


def read_image(path: Path, shape: tuple[int, int, int]) -> Tensor:
    """An image file as uint8 [C, H, W] with the model's channels; its size must match."""
    c, h, w = shape
    try:
        with Image.open(path) as file:
            if file.size != (w, h):  # from the header, before decoding any pixel
                raise ShapeError(f"{path} is {file.size[0]}x{file.size[1]}; the model takes "
                                 f"{w}x{h} images: resize it first")
            img = file.convert("L" if c == 1 else "RGB")
    except ShapeError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError,
            Image.DecompressionBombError) as e:
        raise DataError(f"{path} is not a readable image: {e}") from None
    except Exception as e:  # a crafted file: each decoder has its own exceptions
        raise DataError(f"{path} is not a readable image ({type(e).__name__}: {e})") from None
    arr = np.asarray(img, dtype=np.uint8).reshape(h, w, c)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class ImageSource:
    """Images by file or dataset index for the model in `folder` (see the module doc)."""

    def __init__(self, args: argparse.Namespace, folder: Folder,
                 shape: tuple[int, int, int]) -> None:
        self.args, self.folder, self.shape = args, folder, shape

    @cached_property
    def dataset(self) -> ImageDataset:
        """The split of --data (else the run's own dataset, with its options)."""
        from tractable.data import load_dataset

        name, options = dataset_for(self.args, self.folder)
        return load_dataset(name, split=self.args.split, **options)

    def image(self, spec: str) -> Tensor:
        """IMG_OR_INDEX -> uint8 [C, H, W]: an existing file, else a checked dataset index."""
        if Path(spec).is_file():
            return read_image(Path(spec), self.shape)
        return self.dataset.images[self._index(spec)]

    def label(self, spec: str) -> int | None:
        """The dataset label of IMG_OR_INDEX (None for a file or an unlabelled dataset)."""
        if Path(spec).is_file() or not self.dataset.has_labels:
            return None
        return int(self.dataset.labels[self._index(spec)])

    def _index(self, spec: str) -> int:
        try:
            index = int(spec)
        except ValueError:
            raise DataError(f"{spec!r} is neither an image file nor a dataset index") from None
        ds = self.dataset
        if not 0 <= index < len(ds):
            raise DataError(f"index {index} out of range: {ds.name} {self.args.split} has "
                            f"{len(ds)} images")
        return index

    def endpoint(self, spec: str, is_index: bool | None = None) -> tuple[Tensor, str]:
        """(image, its label): `spec` read as a file (`is_index` False), as image N of the
        split (True: labelled with its class, so that an index is not mistaken for a
        digit), or as IMG_OR_INDEX (None)."""
        if is_index is False or (is_index is None and Path(spec).is_file()):
            return read_image(Path(spec), self.shape), Path(spec).name
        index = self._index(spec)
        ds = self.dataset
        label = int(ds.labels[index]) if ds.has_labels else None
        names = ds.class_names
        shown = f" (class {names[label]})" if label is not None and label < len(names) else ""
        return ds.images[index], f"#{index}{shown}"
