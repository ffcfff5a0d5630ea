"""Malformed files fed to every data loader and every run-folder parser: only
`TractableError` subclasses escape (property-based, hypothesis), plus the named cases.

Each strategy starts from a real, valid file (real MNIST digits, real CIFAR-10 images, a
real training checkpoint) and corrupts it: truncation, byte changes (biased to the header),
insertions; the JSON and checkpoint parsers also get fields deleted or of the wrong type.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tractable.config import read_config_json
from tractable.data import load_dataset, load_image_folder
from tractable.data.cifar import load_cifar10
from tractable.data.idx import read_idx
from tractable.data.imagenet import read_npz_batches
from tractable.data.mnist import read_idx_pair
from tractable.errors import DataError, TractableError
from tractable.training import TrainConfig, train
from tractable.training.api import saved_train_config
from tractable.training.checkpoint import load_state

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
DIGITS = load_dataset("mnist-mini", "test")


def idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


@st.composite
def mutated(draw, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not b:
            break
        i = draw(st.one_of(st.integers(0, min(len(b), 64) - 1), st.integers(0, len(b) - 1)))
        op = draw(st.sampled_from(["truncate", "set", "insert", "delete"]))
        if op == "truncate":
            b = b[:i]
        elif op == "set":
            b[i] = draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            del b[i:i + draw(st.integers(1, 16))]
    return bytes(b)


def only_tractable_errors(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except TractableError:
        return None


# ---- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------
VALID_IDX = idx_bytes(DIGITS.images[:3, 0].numpy())
VALID_LABELS = idx_bytes(DIGITS.labels[:3].numpy().astype(np.uint8))


@FUZZ
@given(images=mutated(VALID_IDX), labels=mutated(VALID_LABELS), gz=st.booleans())
def test_idx_files(tmp_path, images, labels, gz):
    pi, pl = tmp_path / "img.idx", tmp_path / "lab.idx"
    if gz:
        pi, pl = pi.with_suffix(".gz"), pl.with_suffix(".gz")
        images, labels = gzip.compress(images), gzip.compress(labels)
    pi.write_bytes(images)
    pl.write_bytes(labels)
    only_tractable_errors(read_idx_pair, pi, pl, [str(k) for k in range(10)], "mnist")


@FUZZ
@given(data=mutated(gzip.compress(VALID_IDX)))
def test_corrupt_gzip_idx(tmp_path, data):
    (tmp_path / "x.gz").write_bytes(data)
    only_tractable_errors(read_idx, tmp_path / "x.gz")


def test_idx_header_whose_dimensions_overflow(tmp_path):
    # 2^16 * 2^16 * 2^16 * 2^16 = 2^64 wraps to 0 in int64: it must not pass for "no data"
    (tmp_path / "x.idx").write_bytes(bytes([0, 0, 8, 4]) + struct.pack(">4I", *[65536] * 4))
    with pytest.raises(DataError, match="header says"):
        read_idx(tmp_path / "x.idx")


# ---- CIFAR pickles -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_pickle(shared_data) -> bytes:
    path = shared_data / "cifar10-first4000" / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # the test's own trusted file
    small = {b"batch_label": b"x", b"data": batch[b"data"][:4], b"labels": batch[b"labels"][:4],
             b"filenames": batch[b"filenames"][:4]}
    return pickle.dumps(small, protocol=2)


@FUZZ
@given(data=st.data())
def test_cifar_pickles(tmp_path, cifar_pickle, data):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    (folder / "data_batch_1").write_bytes(data.draw(mutated(cifar_pickle)))
    meta = pickle.dumps({b"label_names": [b"a"] * 10}, protocol=2)
    (folder / "batches.meta").write_bytes(data.draw(st.sampled_from([meta, meta[:20]])))
    only_tractable_errors(load_cifar10, "train", root=tmp_path, batches=[1])


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"refers to \w+\.print, which no CIFAR pickle needs"):
        load_cifar10("train", root=tmp_path, batches=[1])


# ---- downsampled ImageNet npz --------------------------------------------------------------
def npz_bytes() -> bytes:
    buf = io.BytesIO()
    x = DIGITS.images[:4].repeat(1, 3, 1, 1)[:, :, :32 // 2 * 2][..., :28].numpy()
    rows = np.zeros((4, 3 * 32 * 32), dtype=np.uint8)
    rows[:, : x[0].size] = x.reshape(4, -1)
    np.savez(buf, data=rows, labels=np.arange(1, 5))
    return buf.getvalue()


@FUZZ
@given(data=mutated(npz_bytes()))
def test_imagenet_npz(tmp_path, data):
    (tmp_path / "train_data_batch_1.npz").write_bytes(data)
    only_tractable_errors(read_npz_batches, [tmp_path / "train_data_batch_1.npz"], 32,
                          "imagenet32")


# ---- SVHN .mat -----------------------------------------------------------------------------
def mat_bytes() -> bytes:
    scipy_io = pytest.importorskip("scipy.io")
    buf = io.BytesIO()
    x = np.zeros((32, 32, 3, 3), dtype=np.uint8)
    x[2:30, 2:30] = DIGITS.images[:3, 0].permute(1, 2, 0).numpy()[:, :, None, :]
    scipy_io.savemat(buf, {"X": x, "y": np.array([[1], [2], [10]], dtype=np.uint8)})
    return buf.getvalue()


@FUZZ
@given(data=st.data())
def test_svhn_mat(tmp_path, data):
    from tractable.data.svhn import read_svhn_mat

    (tmp_path / "train_32x32.mat").write_bytes(data.draw(mutated(mat_bytes())))
    only_tractable_errors(read_svhn_mat, tmp_path / "train_32x32.mat")


# ---- image folders -------------------------------------------------------------------------
def png_bytes(k: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(DIGITS.images[k, 0].numpy()).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(data=mutated(png_bytes(0)), split=st.sampled_from(["train", "test"]),
       size=st.sampled_from([None, 16]))
def test_image_folders(tmp_path, data, split, size):
    folder = tmp_path / "imgs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "a.png").write_bytes(data)
    (folder / "b.png").write_bytes(png_bytes(1))
    (folder / "c.png").write_bytes(png_bytes(2))
    only_tractable_errors(load_image_folder, folder, split, size=size)


# ---- run folders: state.pt, run.json, config.json ------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train("pixelcnn++", TrainConfig(out=str(out), max_steps=1, batch_size=8, limit_train=16,
                                    limit_test=8, samples_per_eval=0, progress=False,
                                    quiet=True),
          overrides={"nr_resnet": 1, "nr_filters": 4, "nr_logistic_mix": 1, "dropout": 0.0})
    return out


ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(),
                       st.text(max_size=5), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@FUZZ
@given(data=st.data())
def test_state_pt_with_fields_missing_or_of_the_wrong_type(tmp_path, run, data):
    state = torch.load(run / "state.pt", weights_only=True)
    keys = sorted(state)
    for key in data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3)):
        if data.draw(st.booleans()):
            state.pop(key, None)
        else:
            state[key] = data.draw(st.one_of(ODD_VALUES, st.just(torch.zeros(3))))
    torch.save(state, tmp_path / "state.pt")
    only_tractable_errors(load_state, tmp_path / "state.pt")


@FUZZ
@given(data=st.data())
def test_state_pt_bytes(tmp_path, run, data):
    raw = (run / "state.pt").read_bytes()
    (tmp_path / "state.pt").write_bytes(data.draw(mutated(raw)))
    only_tractable_errors(load_state, tmp_path / "state.pt")


@FUZZ
@given(data=st.data())
def test_run_json_with_fields_missing_or_of_the_wrong_type(tmp_path, run, data):
    payload = json.loads((run / "run.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        target = payload
        if data.draw(st.booleans()) and isinstance(payload.get("train"), dict):
            target = payload["train"]
        key = data.draw(st.sampled_from(sorted(target) or ["x"]))
        if data.draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = data.draw(ODD_VALUES)
    (tmp_path / "run.json").write_text(json.dumps(payload))
    only_tractable_errors(saved_train_config, tmp_path)


@FUZZ
@given(data=st.data())
def test_json_bytes_of_run_and_config(tmp_path, run, data):
    (tmp_path / "run.json").write_bytes(data.draw(mutated((run / "run.json").read_bytes())))
    only_tractable_errors(saved_train_config, tmp_path)
    (tmp_path / "config.json").write_bytes(
        data.draw(mutated((run / "model" / "config.json").read_bytes())))
    only_tractable_errors(read_config_json, tmp_path)


def test_a_resume_with_a_field_missing_is_one_clear_error(run, tmp_path):
    from tractable.cli import main

    for name, edit in [("run.json", lambda p: p.pop("family")),
                       ("run.json", lambda p: p["train"].update(max_steps="ten"))]:
        shutil.copytree(run, tmp_path / "r", dirs_exist_ok=True)
        payload = json.loads((tmp_path / "r" / name).read_text())
        edit(payload)
        (tmp_path / "r" / name).write_text(json.dumps(payload))
        assert main(["train", "--out", str(tmp_path / "r"), "--resume"]) == 2
    state = torch.load(run / "state.pt", weights_only=True)
    del state["optimizer"]
    shutil.copytree(run, tmp_path / "s")
    torch.save(state, tmp_path / "s" / "state.pt")
    assert main(["train", "--out", str(tmp_path / "s"), "--resume"]) == 2
