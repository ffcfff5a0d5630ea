"""Prepared, memory-mapped datasets: bit-for-bit equal to the in-memory loaders, built once
by one of several concurrent processes, rebuilt when corrupt or stale, and trainable from
your own `Dataset` or a Hugging Face `datasets` object. All data is real (shared data and the
bundled digits); formats without a shipped copy (ImageNet npz, SVHN .mat, folders) are
written from real CIFAR-10 images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.cli import main
from tractable.data import as_image_dataset, from_hf, load_dataset
from tractable.data.prepared import (
    IMAGES_FILE,
    META_FILE,
    open_prepared,
    problem_with,
    verify_prepared,
)
from tractable.data.registry import dataset_source
from tractable.errors import ConfigError, DataError
from tractable.evaluation import evaluate_bpd
from tractable.training import TrainConfig, make_model, train
from tractable.training.batches import BatchStream

TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.0}


def same(a, b) -> None:
    assert a.images.shape == b.images.shape and a.images.dtype == b.images.dtype
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert a.class_names == b.class_names and a.name == b.name


@pytest.fixture(scope="module")
def cifar(shared_data):
    return load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000",
                        batches=[1], prepared=False)


# ---- conversion == the in-memory loaders ---------------------------------------------------
@pytest.mark.parametrize("name,folder,opts", [
    ("fashion-mnist", "fashion-mnist", {}),
    ("mnist", "mnist", {}),
    ("cifar10", "cifar10-first4000", {"batches": [1]}),
])
def test_prepared_copy_equals_the_in_memory_data_bit_for_bit(shared_data, name, folder, opts):
    splits = ["train"] if name == "cifar10" else ["train", "test"]
    for split in splits:
        mem = load_dataset(name, split, root=shared_data / folder, prepared=False, **opts)
        mapped = load_dataset(name, split, root=shared_data / folder, **opts)
        assert mapped.is_mapped and not mem.is_mapped
        same(mapped, mem)


def test_bundled_digits_need_no_copy_but_prepare_identically():
    mem = load_dataset("mnist-mini", "train")
    assert not mem.is_mapped  # the 7 MB bundled subset stays in memory by default
    same(load_dataset("mnist-mini", "train", prepared=True), mem)


def test_imagenet_npz_and_svhn_mat_prepare_identically(tmp_path, cifar):
    x = cifar.images.numpy()
    for b, rows in ((1, slice(0, 300)), (2, slice(300, 500))):  # two official-format batches
        np.savez(tmp_path / f"train_data_batch_{b}.npz", data=x[rows].reshape(-1, 3072),
                 labels=cifar.labels.numpy()[rows] * 97 + 1)
    opts = {"root": tmp_path, "batches": [1, 2]}
    same(load_dataset("imagenet32", "train", **opts),
         load_dataset("imagenet32", "train", prepared=False, **opts))

    scipy_io = pytest.importorskip("scipy.io")
    svhn = tmp_path / "svhn"
    svhn.mkdir()
    scipy_io.savemat(svhn / "test_32x32.mat", {"X": x[:200].transpose(2, 3, 1, 0),
                                              "y": (cifar.labels.numpy()[:200] + 1)[:, None]})
    same(load_dataset("svhn", "test", root=svhn),
         load_dataset("svhn", "test", root=svhn, prepared=False))


def write_folder(root: Path, cifar, n: int = 60) -> Path:
    for i in range(n):
        split = "train" if i < 40 else "test"
        cls = cifar.class_names[int(cifar.labels[i])]
        d = root / split / cls
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(cifar.images[i].permute(1, 2, 0).numpy()).save(d / f"{i:03d}.png")
    return root


def test_image_folder_prepares_identically_with_size_and_channels(tmp_path, cifar):
    folder = write_folder(tmp_path / "pics", cifar)
    for opts in ({}, {"size": 20}, {"size": 16, "channels": 1}):
        for split in ("train", "test"):
            mem = load_dataset(f"folder:{folder}", split, prepared=False, **opts)
            same(load_dataset(f"folder:{folder}", split, **opts), mem)
    assert load_dataset(f"folder:{folder}", "train", size=16, channels=1).shape == (1, 16, 16)


def test_batches_and_bits_per_dim_from_the_mapped_copy_equal_in_memory(shared_data):
    root = shared_data / "fashion-mnist"
    mem = load_dataset("fashion-mnist", "test", root=root, prepared=False).subset(40)
    mapped = load_dataset("fashion-mnist", "test", root=root)
    mapped_sub = mapped.subset(40)
    same(mapped_sub, mem)  # a subset is read row by row into memory
    assert not mapped_sub.is_mapped
    idx = torch.tensor([5, -1, 5, 9999, 0])
    assert torch.equal(mapped.read_rows(idx), mapped.images[idx])
    assert torch.equal(mapped.read_range(9990, 10000), mapped.images[9990:])
    with pytest.raises(IndexError):
        mapped.read_rows(torch.tensor([10000]))
    for step in (0, 3, 40):
        a = BatchStream(mapped, 32, seed=5, rank=1, world_size=2).batch(step)
        b = BatchStream(load_dataset("fashion-mnist", "test", root=root, prepared=False), 32,
                        seed=5, rank=1, world_size=2).batch(step)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    model = make_model("pixelcnn++", mem, 0, overrides=TINY)
    mapped_head = as_image_dataset(mem)  # an ImageDataset passes through unchanged
    assert mapped_head is mem
    r_mem = evaluate_bpd(model, mem, batch_size=16)
    r_map = evaluate_bpd(model, mapped_sub, batch_size=16)
    assert r_mem.bits_per_dim == r_map.bits_per_dim and r_map.num_images == 40
    mapped.release_pages()  # handing pages back leaves the data readable and unchanged
    assert torch.equal(mapped.images[:300].clone().sum(), mapped.images[:300].sum())


# ---- one builder among concurrent processes ----------------------------------------------------
CONCURRENT = textwrap.dedent("""
    import hashlib, os, sys, time
    from tractable.data.prepared import open_prepared
    from tractable.data.registry import dataset_source

    src = dataset_source("fashion-mnist")("train", root=sys.argv[1])
    inner = src.chunks
    def slow_chunks():
        with open(sys.argv[2], "a") as log:
            log.write(f"build {os.getpid()}\\n")
        for x, y in inner():
            time.sleep(0.05)  # a slow conversion: the other process must wait, not read
            yield x, y
    src.chunks = slow_chunks
    ds = open_prepared(src, progress=False)
    print(hashlib.sha256(ds.images.numpy().tobytes() + ds.labels.numpy().tobytes()).hexdigest())
""")


def test_two_processes_preparing_together_build_once_and_read_the_same(tmp_path, shared_data):
    root = shared_data / "fashion-mnist"
    log = tmp_path / "builds.log"
    env = {**os.environ, "TRACTABLE_PREPARED": str(tmp_path / "prep"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(root), str(log)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    assert len(log.read_text().splitlines()) == 1  # exactly one process converted
    mem = load_dataset("fashion-mnist", "train", root=root, prepared=False)
    import hashlib
    want = hashlib.sha256(mem.images.numpy().tobytes() + mem.labels.numpy().tobytes())
    assert [o.strip() for o, _ in outs] == [want.hexdigest()] * 2
    assert any("waiting for another process" in e for _, e in outs)


# ---- corrupt and stale copies -------------------------------------------------------------------
def test_corrupt_or_stale_copies_are_detected_and_rebuilt(tmp_path, shared_data, capsys):
    src_dir = tmp_path / "fm"
    src_dir.mkdir()
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (src_dir / f).write_bytes((shared_data / "fashion-mnist" / f).read_bytes())
    mem = load_dataset("fashion-mnist", "test", root=src_dir, prepared=False)

    def reopen():
        ds = load_dataset("fashion-mnist", "test", root=src_dir)
        same(ds, mem)
        assert problem_with(ds.prepared_at) is None and verify_prepared(ds.prepared_at) is None
        return ds.prepared_at

    folder = reopen()
    with open(folder / IMAGES_FILE, "r+b") as f:  # truncated
        f.truncate(1000)
    assert "truncated" in problem_with(folder)
    assert reopen() == folder
    assert "rebuilding" in capsys.readouterr().err

    (folder / META_FILE).write_text("{not json")  # corrupt metadata
    assert reopen() == folder

    (folder / META_FILE).unlink()  # a half-written copy (meta.json is written last)
    assert reopen() == folder

    with open(folder / IMAGES_FILE, "r+b") as f:  # flipped bytes: the checksum notices
        f.seek(5000)
        f.write(b"\xff\x00\xff")
    assert problem_with(folder) is None and "checksum" in verify_prepared(folder)
    source = dataset_source("fashion-mnist")("test", root=src_dir)
    same(open_prepared(source, rebuild=True), mem)

    meta = json.loads((folder / META_FILE).read_text())
    os.utime(src_dir / "t10k-labels-idx1-ubyte.gz", ns=(1, 1))  # the source changed: stale
    assert "stale" in problem_with(folder, dataset_source("fashion-mnist")(
        "test", root=src_dir).key())
    assert reopen() == folder
    assert json.loads((folder / META_FILE).read_text())["key"] != meta["key"]

    (folder.parent / f".{folder.name}.tmp-99999").mkdir()  # left by a builder that died
    (folder / META_FILE).unlink()
    reopen()
    assert not (folder.parent / f".{folder.name}.tmp-99999").exists()


def test_a_corrupt_source_is_a_data_error_and_leaves_no_copy(tmp_path, shared_data):
    import gzip
    raw = gzip.decompress((shared_data / "fashion-mnist" / "t10k-images-idx3-ubyte.gz")
                          .read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-5000]))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (shared_data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    source = dataset_source("fashion-mnist")("test", root=tmp_path)
    from tractable.data.prepared import folder_for
    folder = folder_for(source)
    assert not folder.exists() and not list(folder.parent.glob(f".{folder.name}.tmp-*"))


# ---- bring your own data --------------------------------------------------------------------
class Items(torch.utils.data.Dataset):
    """A plain map-style dataset over real images, as a user would write one."""

    def __init__(self, images, labels, class_names):
        self.images, self.labels, self.class_names = images, labels, class_names

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i].clone(), int(self.labels[i])


def quick(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_steps=2, log_every=1, checkpoint_every=1000,
                samples_per_eval=0, progress=False, quiet=True, eval_batch_size=16)
    return TrainConfig(**{**base, **kw})


def final_weights(summary_run_dir=None, **train_kw):
    captured = {}

    def grab(trainer):
        captured["w"] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        captured["mapped"] = trainer.train_set.is_mapped

    train("pixelcnn++", callbacks=(grab,), overrides=TINY, **train_kw)
    return captured


def test_a_torch_dataset_trains_exactly_like_the_same_images_in_memory(shared_data):
    mem = load_dataset("fashion-mnist", "test", root=shared_data / "fashion-mnist",
                       prepared=False)
    tr = Items(mem.images[:48], mem.labels[:48], mem.class_names)
    te = Items(mem.images[48:56], mem.labels[48:56], mem.class_names)
    own = final_weights(config=quick(data="my-fashion"), train_set=tr, test_set=te)
    assert own["mapped"]
    ref_train = type(mem)(mem.images[:48].clone(), mem.labels[:48], mem.class_names, "ref")
    ref_test = type(mem)(mem.images[48:56].clone(), mem.labels[48:56], mem.class_names, "ref")
    ref = final_weights(config=quick(data="ref-fashion"), train_set=ref_train,
                        test_set=ref_test)
    assert not ref["mapped"]
    assert own["w"].keys() == ref["w"].keys()
    assert all(torch.equal(own["w"][k], ref["w"][k]) for k in own["w"])
    with pytest.raises(ConfigError, match="its own name"):
        train("pixelcnn++", quick(data="mnist-mini"), overrides=TINY, train_set=tr)


def test_items_that_break_the_contract_are_named():
    bad = Items(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), [])  # float pixels
    with pytest.raises(DataError, match="item 0 is a float32 image"):
        as_image_dataset(bad, "bad")


def test_a_hugging_face_dataset_trains(cifar):
    datasets = pytest.importorskip("datasets")
    n = 24
    pil = [Image.fromarray(cifar.images[i].permute(1, 2, 0).numpy()) for i in range(n)]
    features = datasets.Features({"img": datasets.Image(),
                                  "label": datasets.ClassLabel(names=cifar.class_names)})
    hf = datasets.Dataset.from_dict({"img": pil, "label": cifar.labels[:n].tolist()},
                                    features=features)
    wrapped = from_hf(hf, image="img")
    assert wrapped.class_names == cifar.class_names
    ds = as_image_dataset(wrapped, "hf-cifar")
    assert ds.is_mapped and torch.equal(ds.images, cifar.images[:n])
    assert torch.equal(ds.labels, cifar.labels[:n])
    grey = as_image_dataset(from_hf(hf, image="img", channels=1, size=16), "hf-grey")
    assert grey.shape == (1, 16, 16)
    out = final_weights(config=quick(data="hf-cifar", max_steps=2), train_set=wrapped,
                        test_set=from_hf(hf.select(range(8)), image="img"))
    assert out["mapped"] and all(torch.isfinite(v).all() for v in out["w"].values())
    with pytest.raises(DataError, match="no column 'image'"):
        from_hf(hf)


# ---- the command line -----------------------------------------------------------------------
def test_cli_prepare_info_and_remove(shared_data, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TRACTABLE_PREPARED", str(tmp_path / "prep"))
    root = str(shared_data / "fashion-mnist")
    assert main(["data", "prepare", "fashion-mnist", "--root", root, "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "10000 images of shape (1, 28, 28)" in out and str(tmp_path / "prep") in out
    assert main(["data", "info", "--verify"]) == 0
    info = capsys.readouterr().out
    assert "fashion-mnist test, 10000 images of 1x28x28" in info and ", ok" in info
    name = next(p.name for p in (tmp_path / "prep").iterdir() if p.is_dir())
    assert main(["data", "info", "--remove", name]) == 0
    assert not (tmp_path / "prep" / name).exists()
    assert main(["data", "info", "--remove", "nope"]) == 2
    assert main(["data", "prepare", "no-such-data"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["data", "prepare", "fashion-mnist", "--root", root, "--split", "test",
                 "--size", "8", "--rebuild"]) == 0
    assert "10000 images of shape (1, 8, 8)" in capsys.readouterr().out
    small = load_dataset("fashion-mnist", "test", root=root, size=8)
    assert small.is_mapped
    same(small, load_dataset("fashion-mnist", "test", root=root, size=8, prepared=False))
