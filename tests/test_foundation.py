"""The seams: config round trip, conditioning input, atomic writes, bundled MNIST facts."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from tractable._io import atomic_write_with
from tractable.config import ModelConfig, read_config_json, save_config
from tractable.data import load_dataset
from tractable.errors import ConfigError, DataError, ShapeError
from tractable.nn.conditioning import class_weights


@dataclass
class _Cfg(ModelConfig):
    width: int = 3
    pair: tuple[int, int] = (1, 2)


def test_config_round_trip_restores_tuples(tmp_path):
    cfg = _Cfg(image_shape=(3, 8, 8), num_classes=2, class_names=["a", "b"], pair=(4, 5))
    save_config(tmp_path, "toy", cfg)
    family, d = read_config_json(tmp_path)
    assert family == "toy"
    assert _Cfg.from_dict(d) == cfg


def test_config_refuses_unknown_field_and_newer_format(tmp_path):
    with pytest.raises(ConfigError, match="no field"):
        _Cfg.from_dict({"widht": 3})
    save_config(tmp_path, "toy", _Cfg())
    payload = json.loads((tmp_path / "config.json").read_text())
    payload["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="format_version 99"):
        read_config_json(tmp_path)


def test_class_weights_accepts_indices_and_soft_labels():
    w = class_weights(torch.tensor([2, 0]), 3, 2)
    assert torch.equal(w, torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    soft = torch.tensor([[0.5, 0.5, 0.0]])
    assert class_weights(soft, 3, 1) is soft
    with pytest.raises(ShapeError, match="out of range"):
        class_weights(torch.tensor([3]), 3, 1)
    with pytest.raises(ShapeError, match="sum to 1"):
        class_weights(torch.tensor([[0.5, 0.6, 0.0]]), 3, 1)
    with pytest.raises(ShapeError, match="conditional"):
        class_weights(None, 3, 1)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def explode(f):
        f.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, explode)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_bundled_mnist_mini_matches_shared_copy(shared_data):
    train, test = load_dataset("mnist-mini", "train"), load_dataset("mnist-mini", "test")
    assert (len(train), len(test)) == (9000, 1000)
    assert train.shape == (1, 28, 28) and train.num_classes == 10
    # MNIST training set's first labels (the subset keeps the original order).
    assert train.labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    with pytest.raises(DataError, match="unknown dataset 'nope'.*mnist-mini"):
        load_dataset("nope")


def test_the_built_in_families_are_registered_with_their_capabilities():
    """The family contract names no family; here the built-in ones and what they can do."""
    from tractable.models import (
        Completable,
        Compressible,
        Invertible,
        PixelScorable,
        known_families,
    )
    from tractable.models.capabilities import families_with

    assert {"pixelcnn++", "gated-pixelcnn", "glow", "tarflow"} <= set(known_families())
    assert families_with(Invertible) == ["glow", "tarflow"]
    assert set(families_with(Completable)) == {"pixelcnn++", "gated-pixelcnn"}
    assert set(families_with(PixelScorable)) == {"pixelcnn++", "gated-pixelcnn"}
    assert set(families_with(Compressible)) == {"pixelcnn++", "gated-pixelcnn"}
