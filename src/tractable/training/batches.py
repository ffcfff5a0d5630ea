"""Training batches as a pure function of the step: exact resume and exact data parallelism.

Epoch e visits the training set in the order `randperm(N)` drawn from a generator seeded
with (seed, e); step t is batch t mod S of epoch t div S, with S = N div B full batches per
epoch (the partial last batch of an epoch is left out of training; evaluation never drops
images). So the data position is the step, and a resumed run sees the same batches.

Under data parallelism every rank draws the same *global* batch, applies the batch
transform (augmentation, later OOD mutations) with randomness keyed by (seed, step), and
keeps its own contiguous shard of B / world images: the union over ranks is the global
batch of a single-process run, which is what makes DDP equal to one process.

A memory-mapped dataset is read row by row from the page cache (`ImageDataset.read_rows`),
so a process's resident memory grows with the batch, not with the dataset.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tractable.data.streaming import row_reader
from tractable.errors import ConfigError
from tractable.models.bpd import dataset_tensors

# (images uint8 [B, C, H, W], labels long [B], generator) -> (images, labels)
BatchTransform = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]

_EPOCH_SALT = 0x5EED_DA7A
_TRANSFORM_SALT = 0x7A25_F0E1


def mix_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from `seed` and integer keys (splitmix64 steps)."""
    z = seed & 0xFFFFFFFFFFFFFFFF
    for k in keys:
        z = (z + 0x9E3779B97F4A7C15 + (k & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z & 0x7FFFFFFFFFFFFFFF


class BatchStream:
    """The local shard of global batch `t`, for every step `t`, deterministically."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        transform: BatchTransform | None = None,
    ) -> None:
        self.images, self.labels = dataset_tensors(dataset)
        self.rows = row_reader(dataset, self.images)  # index -> images, read row by row
        n = len(self.images)
        if batch_size % world_size:
            raise ConfigError(
                f"batch size {batch_size} is the global batch and must divide evenly over "
                f"{world_size} processes; use a multiple of {world_size}"
            )
        if n < batch_size:
            raise ConfigError(f"the training set has {n} images, fewer than one batch of "
                              f"{batch_size}; lower --batch-size")
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.transform = transform
        self.steps_per_epoch = n // batch_size
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def move_images_to(self, device: torch.device) -> None:
        """Keep the whole uint8 set on `device` and gather batches there: no image copy
        per step, and only the batch's indices travel (without waiting for the device)."""
        self.images = self.images.to(device)
        self.rows = self._gather_on_device

    def _gather_on_device(self, idx: Tensor) -> Tensor:
        return self.images[idx.to(self.images.device, non_blocking=True)]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index inside the epoch) of global step `step`."""
        return divmod(step, self.steps_per_epoch)

    def permutation(self, epoch: int) -> Tensor:
        """The visiting order of epoch `epoch`."""
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, _EPOCH_SALT, epoch))
            self._perm = torch.randperm(len(self.images), generator=g)
            self._perm_epoch = epoch
        return self._perm

    def global_indices(self, step: int) -> Tensor:
        epoch, i = self.position(step)
        return self.permutation(epoch)[i * self.batch_size:(i + 1) * self.batch_size]

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """This rank's `(images, labels)` for `step`: global batch → transform → shard."""
        idx = self.global_indices(step)
        x, y = self.rows(idx), self.labels[idx]
        if self.transform is not None:
            g = torch.Generator().manual_seed(mix_seed(self.seed, _TRANSFORM_SALT, step))
            x, y = self.transform(x, y, g)
        local = self.batch_size // self.world_size
        lo, hi = self.rank * local, (self.rank + 1) * local
        return x[lo:hi], y[lo:hi]


AUGMENTATIONS = ("flip", "shift")


def augmentation(spec: str | None, mutation_rate: float = 0.0) -> BatchTransform | None:
    """The batch transform for a comma-separated list of `AUGMENTATIONS` (None: none).

    "flip": mirror left-right with probability 1/2; "shift": translate by up to 2 pixels
    (`tractable.data.transforms`). Labels pass through unchanged. `mutation_rate` > 0 then
    replaces sub-pixels at that rate by uniform values (`tractable.data.mutation`), which
    trains the background model of Ren et al. (2019) for likelihood-ratio OOD scores.
    """
    from tractable.data.mutation import mutate
    from tractable.data.transforms import random_hflip, random_shift

    names = [s.strip() for s in (spec or "").split(",") if s.strip()]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(f"unknown augmentation(s) {unknown}; use any of {AUGMENTATIONS}")
    if not names and not mutation_rate:
        return None
    ops = {"flip": random_hflip, "shift": random_shift}

    def transform(x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        for name in names:
            x = ops[name](x, g)
        if mutation_rate:
            x = mutate(x, mutation_rate, g)
        return x, y

    return transform
