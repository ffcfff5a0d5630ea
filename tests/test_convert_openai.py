"""The openai/pixel-cnn checkpoint converter against checkpoints written by real TensorFlow.

The fixtures (tests/fixtures/openai_pixelcnn, written by tools/make_openai_pixelcnn_fixture.py)
hold small checkpoints with openai's variable names, EMA shadows and Adam slots, every value
as TensorFlow held it, TF's network outputs and per-image NLLs on a fixed batch, and the
name -> shape table of every variable the paper-size graph saves.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tractable.cli import main as cli_main
from tractable.convert.openai_pixelcnn import (
    EMA_SUFFIX,
    PAPER_PARAMETERS,
    UNNAMED_VARIABLE,
    convert_checkpoint,
    variable_mappings,
    variable_table,
)
from tractable.convert.tf_bundle import TFCheckpoint, checkpoint_prefix
from tractable.errors import CheckpointError
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig, load

FIXTURES = Path(__file__).parent / "fixtures" / "openai_pixelcnn"
SMALL = ["small", "small_conditional"]


def _expected(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / "expected.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", SMALL)
def test_reader_returns_what_tensorflow_wrote(name: str) -> None:
    ckpt = TFCheckpoint(FIXTURES / name / "params.ckpt")
    expected = {k[4:]: v for k, v in _expected(name).items() if k.startswith("var:")}
    assert ckpt.names() == sorted(expected)
    for var, value in expected.items():
        got = ckpt.read(var)
        assert got.dtype == value.dtype and got.shape == value.shape, var
        np.testing.assert_array_equal(got, value, err_msg=var)


@pytest.mark.parametrize("name", SMALL)
def test_converted_model_computes_what_tensorflow_computed(name: str, tmp_path: Path) -> None:
    """Network outputs and per-image NLLs of both weight sets equal TF's (float32 noise)."""
    exp = _expected(name)
    conv = convert_checkpoint(FIXTURES / name / "params.ckpt", image_size=8)
    model = conv.model
    images = torch.from_numpy(exp["images"]).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(exp["labels"]).long() if model.config.num_classes else None
    order = torch.from_numpy(_openai_to_tractable_order(model))
    for weights, state in (("ema", conv.ema_state), ("raw", conv.raw_state)):
        model.load_state_dict(state)
        with torch.no_grad():
            params = model(model.scale(images), labels)
            nll = -model.log_prob(images, labels)
        tf_params = torch.from_numpy(exp[f"{weights}_out"]).permute(0, 3, 1, 2)[:, order]
        torch.testing.assert_close(params, tf_params, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(nll, torch.from_numpy(exp[f"{weights}_nll"]).float(),
                                   rtol=1e-5, atol=1e-3)
    assert not torch.equal(conv.ema_state["out.v"], conv.raw_state["out.v"])


def _openai_to_tractable_order(model: PixelCNNPlusPlus) -> np.ndarray:
    from tractable.convert.openai_pixelcnn import mixture_unit_order

    return mixture_unit_order(3, model.config.nr_logistic_mix)


@pytest.mark.parametrize("name", SMALL)
def test_every_variable_accounted_for(name: str) -> None:
    ckpt = TFCheckpoint(FIXTURES / name / "params.ckpt")
    conv = convert_checkpoint(ckpt.prefix, image_size=8)
    mapped = {m.tf_name for m in variable_mappings(conv.model)}
    params = {n for n in ckpt.names() if not UNNAMED_VARIABLE.match(n)
              and not n.endswith(EMA_SUFFIX)}
    assert params == mapped
    assert conv.num_parameters == sum(p.numel() for p in conv.model.parameters())
    n_params = len(mapped)
    extra = 1 if conv.model.config.num_classes else 0  # the sampler's label variable
    # openai's Adam: one step counter, two slots per parameter, all unnamed
    assert len(conv.skipped) == 1 + 2 * n_params + extra


def test_paper_table_matches_the_mapping() -> None:
    """Every variable the paper-size openai graph saves, by name and shape."""
    table = json.loads((FIXTURES / "paper_variables.json").read_text())
    params = {n: s for n, s in table.items()
              if not UNNAMED_VARIABLE.match(n) and not n.endswith(EMA_SUFFIX)}
    config = PixelCNNPlusPlusConfig(image_shape=(3, 32, 32), **PixelCNNPlusPlus.presets["paper"])
    assert variable_table(config) == params
    assert {n + EMA_SUFFIX: s for n, s in params.items()} == {
        n: s for n, s in table.items() if n.endswith(EMA_SUFFIX)}
    assert sum(math.prod(s) for s in params.values()) == PAPER_PARAMETERS
    model = PixelCNNPlusPlus(config)
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMETERS
    state = model.state_dict()
    for m in variable_mappings(model):
        converted = m.to_torch(np.zeros(m.tf_shape, dtype=np.float32))
        assert tuple(converted.shape) == tuple(state[m.torch_name].shape), m.tf_name


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst)
    return dst / "params.ckpt"


def test_missing_and_unmapped_variables_are_named() -> None:
    ckpt = TFCheckpoint(FIXTURES / "small" / "params.ckpt")
    ckpt.entries["model/extra_0/V"] = ckpt.entries["model/conv2d_0/V"]
    del ckpt.entries["model/dense_3/g/ExponentialMovingAverage"]
    with pytest.raises(CheckpointError) as e:
        convert_checkpoint(ckpt, image_size=8)
    msg = str(e.value)
    assert "missing: model/dense_3/g/ExponentialMovingAverage" in msg
    assert "not mapped: model/extra_0/V" in msg


def test_wrong_shape_is_named() -> None:
    ckpt = TFCheckpoint(FIXTURES / "small" / "params.ckpt")
    ckpt.entries["model/dense_1/b"] = ckpt.entries["model/conv2d_0/V"]
    expected = r"model/dense_1/b has shape \[2, 3, 4, 4\], expected \[4\]"
    with pytest.raises(CheckpointError, match=expected):
        convert_checkpoint(ckpt, image_size=8)


def test_corrupt_data_is_detected(tmp_path: Path) -> None:
    prefix = _copy("small", tmp_path)
    data = prefix.with_name("params.ckpt.data-00000-of-00001")
    ckpt = TFCheckpoint(prefix)
    entry = ckpt.entries["model/conv2d_0/V"]
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 5] ^= 0x10
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="conv2d_0/V.*checksum"):
        TFCheckpoint(prefix).read("model/conv2d_0/V")


def test_path_forms_and_v1_message(tmp_path: Path) -> None:
    prefix = FIXTURES / "small" / "params.ckpt"
    for given in (prefix, prefix.with_name("params.ckpt.index"),
                  prefix.with_name("params.ckpt.data-00000-of-00001"), prefix.parent):
        assert checkpoint_prefix(given) == prefix
    v1 = tmp_path / "model.ckpt-1000"
    v1.write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="V1 checkpoint"):
        checkpoint_prefix(v1)
    with pytest.raises(CheckpointError, match="no TensorFlow checkpoint"):
        checkpoint_prefix(tmp_path / "nothing")
    bad = tmp_path / "bad.ckpt.index"
    bad.write_bytes(b"x" * 60)
    with pytest.raises(CheckpointError, match="bad table magic"):
        TFCheckpoint(bad)


def test_cli_convert_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "converted"
    prefix = FIXTURES / "small_conditional" / "params.ckpt"
    assert cli_main(["convert", "openai-pixelcnn", str(prefix), "--out", str(out),
                     "--image-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed
    model = load(out).eval()  # the paper config trains with dropout 0.5
    exp = _expected("small_conditional")
    images = torch.from_numpy(exp["images"]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        nll = -model.log_prob(images, torch.from_numpy(exp["labels"]).long())
    torch.testing.assert_close(nll, torch.from_numpy(exp["ema_nll"]).float(),
                               rtol=1e-5, atol=1e-3)
    raw = load(out, weights="raw.safetensors")
    assert not torch.equal(raw.state_dict()["out.b"], model.state_dict()["out.b"])
    # refuses to overwrite an existing model folder
    assert cli_main(["convert", "openai-pixelcnn", str(prefix), "--out", str(out),
                     "--image-size", "8"]) == 2
    assert "already" in capsys.readouterr().err
