"""Loaders on the real files of ../shared/data: facts of the data, not just shapes.

Formats that have no copy in ../shared/data (CIFAR-100, downsampled ImageNet, SVHN) are read
from small files built here in their official layouts out of real CIFAR-10 rows.
"""

from __future__ import annotations

import gzip
import pickle
import shutil

import numpy as np
import pytest
import torch

from tractable.data import ImageDataset, known_datasets, load_dataset
from tractable.data.download import default_root
from tractable.errors import DataError

# The first 10,000 MNIST training digits per class (mnist-mini = train 9,000 + test 1,000).
MNIST_MINI_TRAIN_COUNTS = [901, 1014, 892, 929, 882, 777, 912, 963, 850, 880]
MNIST_MINI_TEST_COUNTS = [100, 113, 99, 103, 98, 86, 102, 107, 94, 98]
CIFAR10_FIRST4000_COUNTS = [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]


def _counts(ds: ImageDataset) -> list[int]:
    return torch.bincount(ds.labels, minlength=ds.num_classes).tolist()


@pytest.fixture(scope="module")
def cifar_rows(shared_data):
    """The real CIFAR-10 rows of ../shared/data: (data uint8 [4000, 3072], labels list)."""
    with open(shared_data / "cifar10-first4000/cifar-10-batches-py/data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    return d[b"data"], d[b"labels"]


# --- the bundled default ----------------------------------------------------------------


def test_mnist_mini_class_counts_and_split_sources(shared_data):
    train, test = load_dataset("mnist-mini", "train"), load_dataset("mnist-mini", "test")
    assert _counts(train) == MNIST_MINI_TRAIN_COUNTS
    assert _counts(test) == MNIST_MINI_TEST_COUNTS
    assert train.class_names == [str(i) for i in range(10)]
    # The two splits partition MNIST training rows 0..9999 (PROVENANCE.md).
    idx = [int(v) for f in ("train", "t10k")
           for v in (shared_data / f"mnist/split_source_indices_{f}.txt").read_text().split()]
    assert sorted(idx) == list(range(10000))
    # The bundled files are byte-identical to the shared copy.
    shared = load_dataset("mnist", "test", root=shared_data / "mnist")
    assert torch.equal(shared.images, test.images) and torch.equal(shared.labels, test.labels)


def test_mnist_mini_known_digit_row():
    train = load_dataset("mnist-mini", "train")
    # Row 14 of MNIST training image 0 (a 5).
    assert train.images[0, 0, 14, 12:20].tolist() == [0, 81, 240, 253, 253, 119, 25, 0]
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255


# --- Fashion-MNIST (full official set) ------------------------------------------------


def test_fashion_mnist_real_files(shared_data):
    root = shared_data / "fashion-mnist"
    train = load_dataset("fashion-mnist", "train", root=root)
    test = load_dataset("fashion-mnist", "test", root=root)
    assert (len(train), len(test)) == (60000, 10000)
    assert _counts(train) == [6000] * 10 and _counts(test) == [1000] * 10
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert train.class_names[9] == "Ankle boot" and train.shape == (1, 28, 28)
    assert train.images[0, 0, 14, 12:18].tolist() == [237, 226, 217, 223, 222, 219]
    assert train[0][1] == 9 and train[0][0].shape == (1, 28, 28)


# --- CIFAR-10 ---------------------------------------------------------------------------


def test_cifar10_first_batch_facts(shared_data):
    root = shared_data / "cifar10-first4000"
    ds = load_dataset("cifar10", "train", root=root, batches=[1])
    assert len(ds) == 4000 and ds.shape == (3, 32, 32)
    assert ds.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert _counts(ds) == CIFAR10_FIRST4000_COUNTS
    assert ds.images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]  # first red row
    assert ds.class_names[6] == "frog" and ds.class_names[9] == "truck"
    # root may also be the folder that holds the pickles directly.
    direct = load_dataset("cifar10", "train", root=root / "cifar-10-batches-py", batches=[1])
    assert torch.equal(direct.images, ds.images)


def test_cifar10_missing_batches_say_where_and_how(shared_data):
    root = shared_data / "cifar10-first4000"
    with pytest.raises(DataError, match=r"missing data_batch_2.*download=True.*batches=\[1\]"):
        load_dataset("cifar10", "train", root=root)
    with pytest.raises(DataError, match=r"missing test_batch \(looked in .*cifar10-first4000"):
        load_dataset("cifar10", "test", root=root)


def test_cifar100_pickles_fine_and_coarse(tmp_path, cifar_rows):
    data, labels = cifar_rows
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = [(7 * y + i) % 100 for i, y in enumerate(labels[:50])]
    coarse = [f % 20 for f in fine]
    with open(folder / "test", "wb") as f:
        pickle.dump({b"data": data[:50], b"fine_labels": fine, b"coarse_labels": coarse}, f,
                    protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, f, protocol=2)
    ds = load_dataset("cifar100", "test", root=tmp_path)
    assert ds.num_classes == 100 and ds.labels.tolist() == fine and ds.class_names[3] == "f3"
    assert ds.images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]
    coarse_ds = load_dataset("cifar100", "test", root=tmp_path, label_type="coarse")
    assert coarse_ds.num_classes == 20 and coarse_ds.labels.tolist() == coarse


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": shutil.rmtree}, protocol=2))
    with pytest.raises(DataError, match="test_batch.*shutil.rmtree.*refusing"):
        load_dataset("cifar10", "test", root=tmp_path)


# --- downsampled ImageNet -------------------------------------------------------------


def _imagenet_npz(path, rows, labels_1based):
    np.savez(path, data=rows, labels=np.asarray(labels_1based, dtype=np.int64))


def test_imagenet32_npz_batches(tmp_path, cifar_rows):
    data, labels = cifar_rows
    sub = tmp_path / "Imagenet32_train_npz"
    sub.mkdir()
    _imagenet_npz(sub / "train_data_batch_1.npz", data[:30], [y + 1 for y in labels[:30]])
    _imagenet_npz(sub / "train_data_batch_2.npz", data[30:50], [1000] * 20)
    ds = load_dataset("imagenet32", "train", root=tmp_path, batches=[1, 2])
    assert len(ds) == 50 and ds.shape == (3, 32, 32) and ds.num_classes == 1000
    assert ds.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # 1-based -> 0-based
    assert ds.labels[30:].tolist() == [999] * 20
    assert ds.images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]
    assert torch.equal(ds.images[30:], torch.from_numpy(data[30:50]).view(-1, 3, 32, 32))
    with pytest.raises(DataError, match=r"missing train_data_batch_3\.npz.*download=True"):
        load_dataset("imagenet32", "train", root=tmp_path)


def test_imagenet64_val_and_wrong_resolution(tmp_path, cifar_rows):
    data, labels = cifar_rows
    # A 64x64 image tiled from four real 32x32 CIFAR images, in the official row layout.
    quads = data[:8].reshape(2, 4, 3, 32, 32)
    top = np.concatenate([quads[:, 0], quads[:, 1]], axis=3)
    bottom = np.concatenate([quads[:, 2], quads[:, 3]], axis=3)
    rows64 = np.concatenate([top, bottom], axis=2).reshape(2, -1)
    _imagenet_npz(tmp_path / "val_data.npz", rows64, [5, 17])
    ds = load_dataset("imagenet64", "test", root=tmp_path)
    assert ds.shape == (3, 64, 64) and ds.labels.tolist() == [4, 16]
    assert ds.images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]
    assert torch.equal(ds.images[1, :, 32:, 32:], torch.from_numpy(quads[1, 3]))
    with pytest.raises(DataError, match=r"64x64 RGB.*use imagenet64"):
        load_dataset("imagenet32", "test", root=tmp_path)


def test_imagenet_corrupt_npz_is_named(tmp_path, cifar_rows):
    data, _ = cifar_rows
    good = tmp_path / "good.npz"
    _imagenet_npz(good, data[:20], [1] * 20)
    raw = good.read_bytes()
    (tmp_path / "val_data.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"val_data\.npz is truncated or not an npz"):
        load_dataset("imagenet32", "test", root=tmp_path)
    np.savez(tmp_path / "val_data.npz", data=data[:2])
    with pytest.raises(DataError, match=r"val_data\.npz lacks labels"):
        load_dataset("imagenet32", "test", root=tmp_path)
    _imagenet_npz(tmp_path / "val_data.npz", data[:2], [0, 3])
    with pytest.raises(DataError, match=r"labels span 0\.\.3, expected 1\.\.1000"):
        load_dataset("imagenet32", "test", root=tmp_path)


# --- SVHN -------------------------------------------------------------------------------


def test_svhn_mat_layout_and_label_ten_is_zero(tmp_path, cifar_rows):
    scipy_io = pytest.importorskip("scipy.io")
    data, _ = cifar_rows
    x = data[:6].reshape(6, 3, 32, 32).transpose(2, 3, 1, 0)  # official [32, 32, 3, N]
    y = np.array([[10], [1], [2], [9], [10], [5]], dtype=np.uint8)
    scipy_io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    ds = load_dataset("svhn", "test", root=tmp_path)
    assert ds.shape == (3, 32, 32) and ds.labels.tolist() == [0, 1, 2, 9, 0, 5]
    assert ds.images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]
    assert torch.equal(ds.images, torch.from_numpy(data[:6]).view(6, 3, 32, 32))
    raw = (tmp_path / "test_32x32.mat").read_bytes()
    (tmp_path / "test_32x32.mat").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match=r"test_32x32\.mat"):
        load_dataset("svhn", "test", root=tmp_path)
    with pytest.raises(DataError, match=r"svhn: missing train_32x32\.mat.*download=True"):
        load_dataset("svhn", "train", root=tmp_path)


# --- errors: names, missing files, corrupt IDX ------------------------------------------


def test_unknown_dataset_split_and_option():
    with pytest.raises(DataError, match="unknown dataset 'cifar11'; known: .*cifar10.*folder:"):
        load_dataset("cifar11")
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_dataset("mnist-mini", "val")
    with pytest.raises(DataError, match="does not take option.*batchs.*takes .*batches"):
        load_dataset("cifar10", "train", batchs=[1])
    assert {"mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet32", "imagenet64",
            "svhn", "mnist-mini"} == set(known_datasets())


def test_missing_files_name_the_cache_and_the_download_call(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACTABLE_DATA", str(tmp_path / "cache"))
    assert default_root("mnist") == tmp_path / "cache" / "mnist"
    with pytest.raises(DataError) as e:
        load_dataset("mnist", "train")
    msg = str(e.value)
    assert str(tmp_path / "cache" / "mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "load_dataset('mnist', split='train'" in msg and "download=True" in msg
    assert "tractable data download mnist" in msg
    assert not (tmp_path / "cache").exists()  # looking does not create folders


def test_corrupt_and_truncated_idx_files_are_named(tmp_path, shared_data):
    src = shared_data / "fashion-mnist"
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(src / f, tmp_path / f)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = images.read_bytes()
    images.write_bytes(raw[: len(raw) // 2])  # truncated gzip stream
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is corrupt or truncated"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    full = gzip.decompress(raw)
    # A valid gzip stream whose IDX data is cut short:
    images.write_bytes(gzip.compress(full[:-100], compresslevel=1))
    with pytest.raises(DataError, match=r"header says \(10000, 28, 28\).*holds 7839900"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    images.write_bytes(gzip.compress(b"\x01\x02" + full[2:], compresslevel=1))
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    images.write_bytes(gzip.compress(full[:16 + 28 * 28 * 5].replace(
        b"\x00\x00\x27\x10", b"\x00\x00\x00\x05", 1)))  # 5 images, 10,000 labels
    with pytest.raises(DataError, match=r"shape \(5, 28, 28\).*shape \(10000,\)"):
        load_dataset("fashion-mnist", "test", root=tmp_path)


def test_corrupt_cifar_pickle_is_named(tmp_path, shared_data):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    raw = (shared_data / "cifar10-first4000/cifar-10-batches-py/data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(raw[:5000])
    with pytest.raises(DataError, match=r"data_batch_1 is truncated or not a CIFAR pickle"):
        load_dataset("cifar10", "train", root=tmp_path, batches=[1])
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR pickle of this kind"):
        load_dataset("cifar10", "train", root=tmp_path, batches=[1])
