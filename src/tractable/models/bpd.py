"""Exact bits/dim of a model on a dataset.

    bits/dim = Σ_n −log p(x_n) / (N · C·H·W · ln 2)

over every image of the split: the last, partial batch is evaluated too, and the sum is
accumulated in float64, so the number does not depend on the batch size. Under data
parallelism each rank scores a contiguous shard and the sums are added over ranks.

This sits on the models floor, beside the families, because both training (its eval
steps) and evaluation use it; `tractable.evaluation` re-exports it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from tractable.data.streaming import stream_batches
from tractable.errors import ConfigError, DataError, ShapeError
from tractable.models.base import TractableModel
from tractable.nn.conditioning import check_label_values

PRECISIONS = ("fp32", "bf16")


@dataclass
class BpdResult:
    """Test bits/dim and the totals it was computed from."""

    bits_per_dim: float
    nats_per_image: float
    num_images: int
    dims_per_image: int

    def to_dict(self) -> dict[str, Any]:
        return {"bits_per_dim": self.bits_per_dim, "nats_per_image": self.nats_per_image,
                "num_images": self.num_images, "dims_per_image": self.dims_per_image}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for `precision == "bf16"` (CPU or GPU), else nothing.

    Models compute their likelihood in float32 from the network's output (see
    `AutoregressiveModel.log_prob_pixels`), so only the network runs in bf16.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def check_data_fits_model(model: TractableModel, dataset: Dataset, data_name: str = "") -> None:
    """Raise `ShapeError` if the dataset's images or labels do not fit the model."""
    cfg = model.config
    shape = getattr(dataset, "shape", None)
    name = data_name or getattr(dataset, "name", "") or "the data"
    if shape is not None and tuple(shape) != tuple(cfg.image_shape):
        c, h, w = cfg.image_shape
        dc, dh, dw = shape
        raise ShapeError(
            f"{name} has {dc}×{dh}×{dw} images but this {model.family} model was built for "
            f"{c}×{h}×{w} (C×H×W); evaluate it on data of the shape it was trained on"
        )
    if cfg.num_classes:
        k = getattr(dataset, "num_classes", 0)
        if k != cfg.num_classes:
            raise DataError(
                f"this model is conditional on {cfg.num_classes} classes but {name} has "
                f"{k} classes" + (" (no labels)" if k == 0 else "")
            )
        labels = getattr(dataset, "labels", None)
        if labels is not None and bool((labels < 0).any()):
            raise DataError(f"{name} has unlabelled images; a class-conditional model needs "
                            "a label for every image")
        if isinstance(labels, Tensor):  # once here, so a compiled loss need not check
            check_label_values(labels, cfg.num_classes)


def dataset_tensors(ds: Dataset) -> tuple[Tensor, Tensor]:
    """`(images uint8 [N, C, H, W], labels long [N])` of an in-memory or item-wise dataset."""
    if hasattr(ds, "images") and hasattr(ds, "labels"):
        return ds.images, ds.labels  # type: ignore[attr-defined]
    items = [ds[i] for i in range(len(ds))]  # type: ignore[arg-type]
    if not items:
        raise DataError("the dataset is empty")
    images = torch.stack([torch.as_tensor(x) for x, _ in items])
    labels = torch.tensor([int(y) for _, y in items], dtype=torch.long)
    return images, labels


def labels_for(model: TractableModel, labels: Tensor) -> Tensor | None:
    """What the model is conditioned on: the labels if it is conditional, else None."""
    return labels if model.config.num_classes else None


@torch.no_grad()
def evaluate_bpd(
    model: TractableModel,
    dataset: Dataset,
    batch_size: int = 64,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> BpdResult:
    """Bits/dim of `model` over every image of `dataset` (in eval mode, no dropout)."""
    check_data_fits_model(model, dataset)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    images, labels = dataset_tensors(dataset)
    n = len(images)
    if n == 0:
        raise DataError("cannot evaluate on an empty dataset")
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)  # [Σ nats, #images]
    try:
        batches = stream_batches(images, labels, lo, hi, batch_size, dataset)
        bar = tqdm(batches, desc="eval", disable=not progress, leave=False,
                   total=-(-(hi - lo) // batch_size))
        for _, xb, yb in bar:
            x, y = xb.to(device), yb.to(device)
            with autocast(device, precision):
                lp = model.log_prob(x, labels_for(model, y))
            total[0] -= lp.double().sum().cpu()
            total[1] += len(x)
    finally:
        model.train(was_training)
    if world_size > 1:
        total = total.to(device)
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        total = total.cpu()
    nats, count = float(total[0]), int(total[1])
    dims = model.num_dims
    return BpdResult(bits_per_dim=nats / (count * dims * math.log(2.0)),
                     nats_per_image=nats / count, num_images=count, dims_per_image=dims)
