"""`tractable score MODEL my.png photos/`: exact bits/dim of image files and folders.

Each file is read like an app upload (`tractable.data.image_input`: size limits, no
decompression bombs) and brought to the model's input the way the model's data looks:
channels, polarity (inverted when the model's data is light on dark and the image dark on
light, or the other way round; `--invert` / `--no-invert` decide outright), padded to the
model's aspect with the image's own background, resized. Every change is said in one
`note:` line per file. A class-conditional model scores each image marginally over its
classes (uniform prior), since a file has no label.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tractable.data.image_input import MAX_BYTES, dataset_background, fit_image, open_image
from tractable.errors import DataError, TractableError

if TYPE_CHECKING:
    from tractable.run_folder import Folder

SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")


def model_background(args: argparse.Namespace, folder: Folder) -> bool | None:
    """Whether the model's data is light on dark, from its dataset's test images when they
    load here (None when they do not: polarity left as it is)."""
    from tractable.cli.common import dataset_for
    from tractable.data import load_dataset

    try:
        name, options = dataset_for(args, folder)
        ds = load_dataset(name, "test", limit=256, seed=0, **options)
    except TractableError:
        return None
    return dataset_background(ds.images)


def read_files(files: list[Path], shape: tuple[int, int, int], dark: bool | None,
               invert: bool | None) -> torch.Tensor:
    """uint8 `[N, C, H, W]` of the files, each fitted to `shape`; notes to stderr."""
    out = []
    for path in files:
        if path.stat().st_size > MAX_BYTES:
            raise DataError(f"{path} is {path.stat().st_size / 2**20:.1f} MiB; image files "
                            f"are limited to {MAX_BYTES // 2**20} MiB")
        try:
            with open_image(path.read_bytes()) as img:
                try:
                    x, notes = fit_image(img, shape, dark)
                except Exception as e:  # a crafted image that decodes but will not convert
                    raise DataError(f"the image could not be converted "
                                    f"({type(e).__name__}: {e})") from None
                if invert:  # asked outright (`dark` is then None: fit_image never inverts)
                    x = 255 - x
                    notes.append("inverted (--invert)")
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
        if notes:
            print(f"note: {path}: {'; '.join(notes)}", file=sys.stderr)
        out.append(x)
    return torch.stack(out)


def score_files(args: argparse.Namespace, model: Any, folder: Folder) -> tuple[list[Path], Any]:
    """Score the image files and folders in `args.images`, printing one line per file;
    returns the files and their `ImageScores`."""
    from tractable.cli.images import image_files
    from tractable.data import ImageDataset
    from tractable.evaluation.scoring import score_dataset

    files = image_files(args.images, SUFFIXES, recursive=True)
    c, h, w = (int(v) for v in model.config.image_shape)
    # Polarity is told from greyscale data only (`dataset_background`).
    dark = model_background(args, folder) if args.invert is None and c == 1 else None
    if dark is None and args.invert is None and c == 1:
        print("note: the model's data is not here to tell its polarity (light on dark or "
              "dark on light): images are taken as they are; --invert inverts them",
              file=sys.stderr)
    images = read_files(files, (c, h, w), dark, args.invert)
    s = score_dataset(model, ImageDataset(images, None, name="files"),
                      batch_size=args.batch_size, marginal=True)
    label = model.bits_per_dim_label
    how = " (marginal over its classes)" if model.config.num_classes else ""
    for path, bpd, nll in zip(files, s.bits_per_dim, s.nll_nats, strict=True):
        print(f"{path}: {bpd:.4f} {label} ({nll:.2f} nats){how}")
    return files, s
