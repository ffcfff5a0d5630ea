"""The training images a run held out.

A subset of `n` images is `ImageDataset.subset(n, seed)` (`load_dataset(..., limit=n,
seed=seed)`): the same rows for the same seed, which is how training picks `limit_train` /
`limit_test` and how every command's `--limit` picks its images. So the rows a run trained
on can be recomputed, and an OOD evaluation can use only training images it never saw.
"""

from __future__ import annotations

from typing import Any

import torch

from tractable.data.base import ImageDataset
from tractable.data.registry import load_dataset
from tractable.errors import DataError


def subset_rows(n: int, limit: int, seed: int) -> torch.Tensor:
    """The rows `ImageDataset.subset(limit, seed)` takes from a dataset of `n` images."""
    blank = ImageDataset(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), None)
    return blank.subset(limit, seed=seed).split_rows


def heldout_train_images(name: str, options: dict[str, Any], run: dict[str, Any], count: int,
                         seed: int) -> tuple[ImageDataset, str]:
    """Up to `count` training images of `name` the run did not train on, and a note saying
    which images they are.

    `run` is the run's `run.json` ({} for a bare model). A run that trained on `limit_train`
    images of `name` took them with `ImageDataset.subset(limit_train, seed)`; the rest of
    the split is held out. Otherwise held-out images do not exist and the training images
    are used, which the note says.
    """
    train = load_dataset(name, split="train", **options)
    cfg = run.get("train", {}) if run.get("data") == name else {}
    limit = cfg.get("limit_train")
    held = torch.ones(len(train), dtype=torch.bool)
    if limit is not None and limit < len(train):
        held[subset_rows(len(train), limit, int(cfg.get("seed", 0)))] = False
        note = f"{name} train images outside the run's {limit}-image training subset"
    elif cfg:
        note = (f"{name} train images (the run trained on the whole split, so the entropy "
                f"estimate uses seen images)")
    else:
        note = (f"{name} train images (the model's run.json does not name {name} as its "
                f"data, so which images it saw is unknown)")
    idx = torch.nonzero(held).flatten()
    g = torch.Generator().manual_seed(seed)
    idx = idx[torch.randperm(len(idx), generator=g)[:count]].sort().values
    if len(idx) == 0:
        raise DataError(f"no held-out {name} training images for the typicality test; "
                        "pass --fit-limit 0 to skip it")
    return ImageDataset(train.read_rows(idx), train.labels[idx], train.class_names, name), note
