"""Per-image and per-pixel negative log-likelihoods of a model on a dataset.

`score_dataset` gives every image's exact NLL in nats and its bits/dim (the per-image terms
of `tractable.evaluation.bpd`, whose mean they reproduce). `pixel_nll` gives, for
autoregressive models, the NLL of each pixel given the pixels before it in raster order,
−log p(x_i | x_<i), in nats, summed over the pixel's channels: a map of where an image is
surprising. The maps sum to the image's NLL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from tractable.data.streaming import stream_batches
from tractable.errors import DataError, TractableError
from tractable.models.base import TractableModel
from tractable.models.bpd import autocast, check_data_fits_model, dataset_tensors, labels_for
from tractable.models.capabilities import PixelScorable, missing


@dataclass
class ImageScores:
    """Per-image NLLs of one model on one dataset, in dataset order."""

    nll_nats: np.ndarray  # float64 [N]
    bits_per_dim: np.ndarray  # float64 [N]
    labels: np.ndarray  # int64 [N], -1 = unlabelled

    def __len__(self) -> int:
        return len(self.nll_nats)

    @property
    def nll_bits(self) -> np.ndarray:
        return self.nll_nats / math.log(2.0)


def _batches(n: int, batch_size: int, progress: bool, desc: str) -> tqdm:
    if batch_size < 1:
        raise TractableError(f"batch size must be >= 1, got {batch_size}")
    if n == 0:
        raise DataError("cannot score an empty dataset")
    return tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False)


def marginal_log_prob(model: TractableModel, x: Tensor) -> Tensor:
    """log p(x) = log Σ_k p(x | k) p(k) of a class-conditional model, uniform p(k), `[B]`.

    What OOD scores need: the labels of an OOD set mean nothing to the model.
    """
    k = model.config.num_classes
    per_class = torch.stack([
        model.log_prob(x, torch.full((len(x),), c, dtype=torch.long, device=x.device))
        for c in range(k)])
    return torch.logsumexp(per_class.double(), dim=0) - math.log(k)


@torch.no_grad()
def score_dataset(
    model: TractableModel,
    dataset: Dataset,
    batch_size: int = 64,
    precision: str = "fp32",
    progress: bool = False,
    marginal: bool = False,
) -> ImageScores:
    """Exact NLL (nats) and bits/dim of every image of `dataset` under `model` (eval mode).

    A class-conditional model scores each image given its label, or with `marginal=True`
    without it (`marginal_log_prob`; K passes per image).
    """
    marginal = marginal and model.config.num_classes > 0
    images, labels = dataset_tensors(dataset)
    if marginal:
        model.check_images(images[:1])  # labels unused: only the shape must fit
    else:
        check_data_fits_model(model, dataset)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll = np.empty(len(images), dtype=np.float64)
    try:
        bar = _batches(len(images), batch_size, progress, "score")
        batches = stream_batches(images, labels, 0, len(images), batch_size, dataset)
        for (start, xb, yb), _ in zip(batches, bar, strict=True):
            x, y = xb.to(device), yb.to(device)
            with autocast(device, precision):
                lp = (marginal_log_prob(model, x) if marginal
                      else model.log_prob(x, labels_for(model, y)))
            nll[start:start + len(x)] = (-lp.double()).cpu().numpy()
    finally:
        model.train(was_training)
    bpd = nll / (model.num_dims * math.log(2.0))
    return ImageScores(nll_nats=nll, bits_per_dim=bpd, labels=labels.cpu().numpy().astype(np.int64))


def has_pixel_nll(model: TractableModel) -> bool:
    """Whether `model` gives per-pixel log-probabilities (`PixelScorable`)."""
    return isinstance(model, PixelScorable)


@torch.no_grad()
def pixel_nll(
    model: TractableModel,
    images: Tensor,
    labels: Tensor | None = None,
    batch_size: int = 64,
) -> Tensor:
    """−log p(x_i | x_<i) in nats for each pixel of `uint8 [N, C, H, W]` images: `[N, H, W]`."""
    if not isinstance(model, PixelScorable):
        raise TractableError(missing(PixelScorable, "per-pixel NLL maps", model.family)
                             + ", which gives whole-image likelihoods only")
    model.check_images(images)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    maps = []
    try:
        for start in _batches(len(images), batch_size, False, "pixel nll"):
            x = images[start:start + batch_size].to(device)
            y = None if labels is None else labels[start:start + batch_size].to(device)
            lp = model.log_prob_pixels(x, labels_for(model, y) if y is not None else None)
            maps.append(-lp.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(maps)
