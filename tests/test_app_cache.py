"""The app's start-up work: a progress bar, results kept in the model folder keyed by the
weights (recomputed when they change, never failing on a read-only folder), and a model
whose dataset is absent says why it has no test images."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tractable import pretrained
from tractable.app.cache import AppCache, weights_hash
from tractable.app.session import AppModel, load_app_model
from tractable.data import load_dataset
from tractable.errors import DataError
from tractable.models import Glow, GlowConfig, PixelCNNPlusPlus, PixelCNNPlusPlusConfig


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-mini", "test")
    return type(ds)(ds.images[:60], ds.labels[:60], ds.class_names, ds.name)


def pixelcnn() -> PixelCNNPlusPlus:
    torch.manual_seed(0)
    return PixelCNNPlusPlus(PixelCNNPlusPlusConfig(
        image_shape=(1, 28, 28), nr_resnet=1, nr_filters=8, nr_logistic_mix=2)).eval()


def served(model, digits, folder: Path, **kw) -> AppModel:
    return AppModel("m", model, digits, histogram_images=20, cache=AppCache(folder, model),
                    **kw)


def test_the_histogram_is_cached_and_read_back_exactly(digits, tmp_path: Path, capsys):
    model = pixelcnn()
    first = served(model, digits, tmp_path, progress=True)
    computed = first.test_bpd()
    assert first.cached == {"test-bpd": "saved"}
    assert "m: bits/dim of 20 test images (histogram)" in capsys.readouterr().err
    again = served(model, digits, tmp_path, progress=True)
    assert np.array_equal(again.test_bpd(), computed) and again.cached == {"test-bpd": "read"}
    assert "bits/dim of 20" not in capsys.readouterr().err  # nothing recomputed
    uncached = AppModel("m", model, digits, histogram_images=20).test_bpd()
    assert np.array_equal(uncached, computed)


def test_new_weights_or_other_images_invalidate_the_cache(digits, tmp_path: Path):
    model = pixelcnn()
    before = served(model, digits, tmp_path).test_bpd()
    old_hash = weights_hash(model)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # more training changed the weights
    assert weights_hash(model) != old_hash
    after = served(model, digits, tmp_path)
    assert not np.array_equal(after.test_bpd(), before) and after.cached["test-bpd"] == "saved"
    other = type(digits)(digits.images[30:], digits.labels[30:], digits.class_names, "x")
    moved = served(model, other, tmp_path)
    moved.test_bpd()
    assert moved.cached["test-bpd"] == "saved"  # other test images: computed again


def test_a_read_only_folder_is_simply_not_cached(digits, tmp_path: Path, monkeypatch):
    """As root a chmod does not stop writes, so the file system's refusal is simulated
    where the cache writes: the atomic rename."""
    import tractable._io as io

    def refuse(src, dst):  # noqa: ARG001
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr(io.os, "replace", refuse)
    m = served(pixelcnn(), digits, tmp_path)
    assert m.test_bpd().shape == (20,) and m.cached == {"test-bpd": "unsaved"}
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file left
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    m = served(pixelcnn(), digits, not_a_folder)
    assert m.test_bpd().shape == (20,) and m.cached == {"test-bpd": "unsaved"}


def test_glow_attribute_vectors_are_cached_per_class_and_level(digits, tmp_path: Path):
    torch.manual_seed(0)
    glow = Glow(GlowConfig(image_shape=(1, 28, 28), K=2, L=2, width=16))
    glow.data_dependent_init(digits.images[:32])
    glow.eval()
    first = AppModel("g", glow, digits, attribute_images=60, cache=AppCache(tmp_path, glow))
    vectors = first.attribute_vectors()
    assert first.cached == {"attributes": "saved"}
    again = AppModel("g", glow, digits, attribute_images=60, cache=AppCache(tmp_path, glow))
    read = again.attribute_vectors()
    assert again.cached == {"attributes": "read"}
    assert len(read) == len(vectors) == 10
    for a, b in zip(read, vectors, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_start_up_says_what_it_did(digits, tmp_path: Path, capsys):
    from tractable.cli.app import prepare

    model = pixelcnn()
    prepare(served(model, digits, tmp_path))
    assert "m: test-set histogram computed and cached in" in capsys.readouterr().err
    prepare(served(model, digits, tmp_path))
    assert "m: test-set histogram read from the cache" in capsys.readouterr().err


def test_a_model_whose_dataset_is_absent_says_why(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("TRACTABLE_DATA", str(tmp_path / "empty"))
    folder = tmp_path / "fashion"
    shutil.copytree(pretrained.path_of("pixelcnn++-fashion-mnist"), folder)
    m = load_app_model(folder)
    assert m.test is None and "fashion-mnist is not on this machine" in m.no_test_reason
    assert "--root" in m.no_test_reason  # worded for the command line
    assert "no test images (fashion-mnist is not on this machine" in m.describe()
    assert "no test-set histogram" in m.describe()
    with pytest.raises(DataError, match="fashion-mnist is not on this machine"):
        m.test_image(0)
    from tractable.cli.app import prepare

    prepare(m)
    assert "no test images, no histogram (fashion-mnist is not" in capsys.readouterr().err
    with pytest.raises(DataError):  # asked for by name: still an error
        load_app_model(folder, data="fashion-mnist")
