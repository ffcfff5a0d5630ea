"""Batch transforms (flip, shift, bit depth) and the dataset contract, on real MNIST digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tractable.data import (
    ImageDataset,
    expand_bits,
    load_dataset,
    random_hflip,
    random_shift,
    reduce_bits,
)
from tractable.errors import DataError, ShapeError


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_dataset("mnist-mini", "test").images[:64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_hflip_mirrors_some_images_reproducibly(digits):
    out = random_hflip(digits, _gen(0))
    flipped = [torch.equal(o, x.flip(-1)) for o, x in zip(out, digits, strict=True)]
    kept = [torch.equal(o, x) for o, x in zip(out, digits, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54 and sum(kept) > 10
    assert torch.equal(out, random_hflip(digits, _gen(0)))
    assert not torch.equal(out, random_hflip(digits, _gen(1)))
    assert torch.equal(random_hflip(digits, _gen(0), p=0.0), digits)
    assert torch.equal(random_hflip(digits, _gen(0), p=1.0), digits.flip(-1))


def _shifted_reference(img: np.ndarray, dy: int, dx: int, m: int) -> np.ndarray:
    """img moved by (dy, dx) with edge pixels repeated, via numpy's edge padding."""
    pad = np.pad(img, ((0, 0), (m, m), (m, m)), mode="edge")
    h, w = img.shape[1:]
    return pad[:, m - dy:m - dy + h, m - dx:m - dx + w]


def test_shift_is_an_edge_padded_translation_within_range(digits):
    m = 2
    out = random_shift(digits, _gen(0), max_shift=m)
    assert out.dtype == torch.uint8 and out.shape == digits.shape
    seen = set()
    for o, x in zip(out.numpy(), digits.numpy(), strict=True):
        matches = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)
                   if np.array_equal(o, _shifted_reference(x, dy, dx, m))]
        assert matches, "output is no edge-padded shift of its input"
        seen.update(matches)
    assert len(seen) > 10  # images get different offsets
    assert torch.equal(out, random_shift(digits, _gen(0), max_shift=m))
    assert torch.equal(random_shift(digits, _gen(0), max_shift=0), digits)


def test_shift_and_flip_on_rgb_batch_keep_channels_together(shared_data):
    rgb = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000",
                       batches=[1]).images[:16]
    out = random_shift(rgb, _gen(3), max_shift=1)
    for o, x in zip(out.numpy(), rgb.numpy(), strict=True):
        assert any(np.array_equal(o, _shifted_reference(x, dy, dx, 1))
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_reduce_bits_keeps_the_top_bits_exhaustively():
    v = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    for n in range(1, 9):
        r = reduce_bits(v, n)
        assert r.dtype == torch.uint8
        assert r.flatten().tolist() == [i // 2 ** (8 - n) for i in range(256)]
        assert int(r.max()) == 2**n - 1
        e = expand_bits(r, n)
        top = 2**n - 1
        assert e.flatten().tolist() == [round((i // 2 ** (8 - n)) * 255 / top) for i in range(256)]
        assert int(e.min()) == 0 and int(e.max()) == 255
    assert torch.equal(reduce_bits(v, 8), v) and torch.equal(expand_bits(v, 8), v)


def test_transform_input_errors(digits):
    with pytest.raises(ShapeError, match="uint8"):
        random_hflip(digits.float(), _gen(0))
    with pytest.raises(ShapeError, match=r"\[B, C, H, W\]"):
        random_shift(digits[0], _gen(0))
    with pytest.raises(ShapeError, match="n_bits must be an int in 1..8"):
        reduce_bits(digits, 0)
    with pytest.raises(ShapeError, match="do not fit in 5 bits"):
        expand_bits(digits, 5)


def test_subset_is_deterministic_and_keeps_the_contract():
    ds = load_dataset("mnist-mini", "train")
    a, b, c = ds.subset(500, seed=1), ds.subset(500, seed=1), ds.subset(500, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    assert len(a) == 500 and a.class_names == ds.class_names and a.shape == ds.shape
    # Every subset image is the dataset image it claims to be (same order as the source).
    rows = {bytes(img.numpy()): int(y) for img, y in zip(ds.images, ds.labels, strict=True)}
    assert all(rows[bytes(img.numpy())] == int(y) for img, y in zip(a.images, a.labels,
                                                                      strict=True))
    assert ds.class_counts().tolist() == torch.bincount(ds.labels).tolist()


def test_dataset_contract_errors():
    x = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(DataError, match="uint8"):
        ImageDataset(x.float(), None)
    with pytest.raises(DataError, match="3 images but 2 labels"):
        ImageDataset(x, torch.tensor([0, 1]))
    with pytest.raises(DataError, match="label 5 is outside -1..1 for 2 classes"):
        ImageDataset(x, torch.tensor([0, 1, 5]), ["a", "b"])
    unlabelled = ImageDataset(x, None)
    assert unlabelled[2][1] == -1 and not unlabelled.has_labels
