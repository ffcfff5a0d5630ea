"""Folders of PNG/JPEG images, written here from real CIFAR-10 and MNIST images."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.data import load_dataset, load_image_folder
from tractable.errors import DataError


@pytest.fixture(scope="module")
def cifar(shared_data):
    with open(shared_data / "cifar10-first4000/cifar-10-batches-py/data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    return d[b"data"][:12].reshape(12, 3, 32, 32), d[b"labels"][:12]


def _png(path, chw):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = chw.transpose(1, 2, 0) if chw.shape[0] == 3 else chw[0]
    Image.fromarray(np.ascontiguousarray(arr)).save(path)


def test_class_subfolders_become_labels_losslessly(tmp_path, cifar):
    x, y = cifar
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    for i in range(12):
        _png(tmp_path / names[y[i]] / f"{i:03d}.png", x[i])
    ds = load_dataset(f"folder:{tmp_path}", "train", holdout=0)  # every image
    present = sorted({names[k] for k in y})
    assert ds.class_names == present and ds.shape == (3, 32, 32)
    # Files are read in sorted (class, file name) order; every pixel survives the PNG trip.
    order = sorted(range(12), key=lambda i: (names[y[i]], i))
    assert torch.equal(ds.images, torch.from_numpy(x[order]))
    assert [ds.class_names[k] for k in ds.labels.tolist()] == [names[y[i]] for i in order]


def test_train_test_folders_share_class_indices(tmp_path, cifar):
    x, _ = cifar
    _png(tmp_path / "train" / "cat" / "a.png", x[0])
    _png(tmp_path / "train" / "dog" / "b.png", x[1])
    _png(tmp_path / "test" / "dog" / "c.png", x[2])
    train = load_image_folder(tmp_path, "train")
    test = load_image_folder(tmp_path, "test")
    assert train.class_names == test.class_names == ["cat", "dog"]
    assert train.labels.tolist() == [0, 1] and test.labels.tolist() == [1]


def test_unlabelled_grey_folder_is_split_by_a_held_out_fraction(tmp_path):
    mnist = load_dataset("mnist-mini", "test").images[:20]
    for i in range(20):
        _png(tmp_path / f"{i:02d}.png", mnist[i].numpy())
    train, test = load_image_folder(tmp_path), load_image_folder(tmp_path, "test")
    assert train.shape == (1, 28, 28) and train.num_classes == 0
    assert (len(train), len(test)) == (18, 2)  # holdout 0.1
    assert (train.labels == -1).all() and (test.labels == -1).all()
    # the two splits partition the real images, in file order
    both = torch.cat([train.images, test.images])
    assert sorted(map(bytes, both.flatten(1).numpy())) == sorted(
        map(bytes, mnist.flatten(1).numpy()))
    assert "2 images (holdout=0.1, chosen by path hash) are its test split" in test.split_note
    assert load_image_folder(tmp_path, channels=3).shape == (3, 28, 28)
    # deterministic, and changeable
    assert torch.equal(load_image_folder(tmp_path, "test").images, test.images)
    assert len(load_image_folder(tmp_path, "test", holdout=0.25)) == 5
    with pytest.raises(DataError, match=r"holdout must be a fraction in \[0, 1\]"):
        load_image_folder(tmp_path, holdout=1.5)


def test_resize_and_center_crop_to_target_size(tmp_path, cifar):
    x, _ = cifar
    # A 64x32 (W x H) image: two real CIFAR images side by side; plus a 32x32 one.
    _png(tmp_path / "wide.png", np.concatenate([x[0], x[1]], axis=2))
    _png(tmp_path / "square.png", x[2])
    with pytest.raises(DataError, match=r"2 different sizes.*square.png is 32x32.*"
                                        r"wide.png is 64x32.*size=32"):
        load_image_folder(tmp_path, holdout=0)
    ds = load_image_folder(tmp_path, size=32, holdout=0)
    assert ds.shape == (3, 32, 32)
    assert torch.equal(ds.images[0], torch.from_numpy(x[2]))  # square.png sorts first: kept as is
    # The wide image is already 32 high, so it is center-cropped without scaling: columns 16..47.
    both = np.concatenate([x[0], x[1]], axis=2)
    assert torch.equal(ds.images[1], torch.from_numpy(both[:, :, 16:48]))
    small = load_image_folder(tmp_path, size=(8, 16), holdout=0)
    assert small.shape == (3, 8, 16)


def test_jpeg_and_bad_images(tmp_path, cifar):
    x, _ = cifar
    Image.fromarray(x[0].transpose(1, 2, 0)).save(tmp_path / "a.jpg", quality=95)
    ds = load_image_folder(tmp_path)
    err = (ds.images[0].int() - torch.from_numpy(x[0]).int()).abs().float().mean()
    assert ds.shape == (3, 32, 32) and err < 8  # lossy, but the same picture
    _png(tmp_path / "b.png", x[1])
    raw = (tmp_path / "b.png").read_bytes()
    (tmp_path / "b.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"b\.png is not a readable PNG/JPEG image"):
        load_image_folder(tmp_path, holdout=0)
    (tmp_path / "b.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"b\.png is not a readable"):
        load_image_folder(tmp_path, holdout=0)


def test_folder_layout_errors(tmp_path, cifar):
    x, _ = cifar
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no PNG/JPEG images found"):
        load_image_folder(tmp_path)
    _png(tmp_path / "cat" / "a.png", x[0])
    _png(tmp_path / "loose.png", x[1])
    with pytest.raises(DataError, match="both class sub-folders.*loose images"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match="cannot be downloaded"):
        load_dataset(f"folder:{tmp_path}", download=True)
