"""Bad input to the pipeline gives one clear error line (exit status 2), never a traceback.

Missing and corrupt checkpoints, a config from an unknown version, a pickle with code in
it, data that does not fit the model. Each case starts from a real (tiny) trained run.
"""

from __future__ import annotations

import io
import json
import os

import pytest
import torch

from cli_errors import fails
from tractable.errors import CheckpointError
from tractable.training import TrainConfig, train
from tractable.training.checkpoint import load_state

TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train("pixelcnn++", TrainConfig(out=str(out), max_steps=2, batch_size=8, limit_train=32,
                                    limit_test=16, samples_per_eval=0, progress=False,
                                    quiet=True), overrides=TINY)
    return out



def test_missing_run_folder_and_missing_checkpoint(tmp_path, capsys, copy):
    fails(["eval", str(tmp_path / "nope")], capsys, "does not exist")
    (copy / "model" / "model.safetensors").unlink()
    fails(["eval", str(copy)], capsys, "missing weights file")
    (copy / "state.pt").unlink()
    fails(["train", "--out", str(copy), "--resume"], capsys, "no checkpoint")


def test_corrupt_weights_and_corrupt_state(copy, capsys):
    w = copy / "model" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    fails(["sample", str(copy), "-n", "1", "--out", str(copy / "s.png")], capsys,
          "not a readable safetensors file")
    s = copy / "state.pt"
    s.write_bytes(s.read_bytes()[: len(s.read_bytes()) // 2])
    fails(["train", "--out", str(copy), "--resume"], capsys, "corrupt or truncated")


def test_config_from_an_unknown_version_or_corrupt(copy, capsys):
    cfg = copy / "model" / "config.json"
    payload = json.loads(cfg.read_text())
    payload["format_version"] = 99
    payload["tractable_version"] = "9.0.0"
    cfg.write_text(json.dumps(payload))
    fails(["info", str(copy)], capsys, "format_version 99, written by tractable 9.0.0")
    payload["format_version"] = 1
    payload["config"]["nr_filters_v2"] = 3
    cfg.write_text(json.dumps(payload))
    fails(["eval", str(copy)], capsys, "no field(s) ['nr_filters_v2']")
    cfg.write_text("{not json")
    fails(["eval", str(copy)], capsys, "not valid JSON")


def test_checkpoint_from_a_newer_format_is_refused(copy, capsys):
    state = load_state(copy / "state.pt")
    state["format_version"] = 7
    torch.save(state, copy / "state.pt")
    fails(["train", "--out", str(copy), "--resume"], capsys, "checkpoint format 7")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_checkpoint_with_code_is_refused(copy, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = load_state(copy / "state.pt")
    state["optimizer"] = _RunsCode()
    buf = io.BytesIO()
    torch.save(state, buf)
    (copy / "state.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="would run code"):
        load_state(copy / "state.pt")
    fails(["train", "--out", str(copy), "--resume"], capsys, "posix.system")
    assert not (tmp_path / "PWNED").exists()


def test_data_that_does_not_fit_the_model(run, capsys, shared_data):
    err = fails(["eval", str(run), "--data", "cifar10", "--split", "train", "--batches", "1",
                 "--root", str(shared_data / "cifar10-first4000")], capsys,
                "cifar10 has 3×32×32 images but this pixelcnn++ model was built for 1×28×28")
    assert "evaluate it on data of the shape it was trained on" in err


def test_unconditional_model_refuses_class_and_unknown_flags(run, capsys, tmp_path):
    fails(["sample", str(run), "-n", "1", "--class", "3", "--out", str(tmp_path / "s.png")],
          capsys, "unconditional")
    fails(["sample", str(run), "-n", "1", "--sampler", "magic", "--out",
           str(tmp_path / "s.png")], capsys, "unknown sampler 'magic'")
    fails(["train", "--model", "pixelcnn++", "--out", str(tmp_path / "g"), "--K", "4"], capsys,
          "pixelcnn++ models have no setting 'K'")
    fails(["train", "--model", "nope", "--out", str(tmp_path / "g")], capsys,
          "unknown model family 'nope'")


def test_tensorboard_without_the_package_says_how_to_install(tmp_path, capsys):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorboard is installed")
    fails(["train", "--model", "pixelcnn++", "--nr-resnet", "0", "--nr-filters", "4",
           "--tensorboard", "--max-steps", "1", "--out", str(tmp_path / "tb")], capsys,
          "pip install 'tractable[tensorboard]'")
