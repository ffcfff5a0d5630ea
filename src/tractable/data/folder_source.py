"""A folder of images as a prepared-copy source: decoded and resized one image at a time.

The layouts, split, channel rule, decoding and resizing are those of
`tractable.data.folder` (`plan_image_folder`, `decode_images`); only the order of work
differs: the plan is made from headers alone, then each chunk of images is decoded and
written before the next is opened, so preparing a folder needs memory for one chunk, not the
folder. Every file's path, size and mtime enters the copy's key, so adding, removing or
editing an image rebuilds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from tractable.data.folder import DEFAULT_HOLDOUT, decode_images, plan_image_folder
from tractable.data.prepared import Chunk, PreparedSource

CHUNK = 256  # images per write


def folder_source(path: str | os.PathLike[str], split: str = "train",
                  size: int | Sequence[int] | None = None, channels: int | None = None,
                  name: str | None = None, holdout: float | None = None) -> PreparedSource:
    """The prepared-copy source of an image folder (same result as `load_image_folder`)."""
    path = Path(path).expanduser()
    plan = plan_image_folder(path, split, size=size, channels=channels, holdout=holdout)

    def chunks() -> Iterator[Chunk]:
        for start in range(0, len(plan.files), CHUNK):
            part = plan.files[start:start + CHUNK]
            yield decode_images(plan, part), np.array([k for _, k in part], dtype=np.int64)

    options = {"size": list(plan.hw), "channels": plan.channels}
    if plan.note is not None:  # the held-out fraction decides which files are in the split
        options["holdout"] = DEFAULT_HOLDOUT if holdout is None else float(holdout)
    return PreparedSource(name or f"folder:{path}", split, [p for p, _ in plan.files],
                          plan.classes, chunks, options, len(plan.files),
                          location=str(path.resolve()), note=plan.note)
