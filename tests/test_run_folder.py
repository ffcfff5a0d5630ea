"""Run and model folders: one opener, absolute dataset paths, migration of old folders,
and the checks `config.json` passes before a model is built."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tractable
from tractable import config as config_module
from tractable.cli import main
from tractable.data import load_dataset
from tractable.data.registry import FOLDER_PREFIX as DATA_FOLDER_PREFIX
from tractable.errors import CheckpointError, ConfigError
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.run_folder import (
    FOLDER_PREFIX,
    RUN_FORMAT,
    RunRecord,
    absolute_data,
    migrate_run,
    open_folder,
)


def tiny_mnist_model() -> PixelCNNPlusPlus:
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(1, 28, 28), nr_resnet=0, nr_filters=4,
                                 nr_logistic_mix=2, dropout=0.5)
    return PixelCNNPlusPlus(cfg)


def write_digits(folder, n: int = 6) -> torch.Tensor:
    """Real MNIST digits as PNG files in `folder` (an unlabelled image folder)."""
    images = load_dataset("mnist-mini", "test").images[:n]
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(np.ascontiguousarray(img[0].numpy())).save(folder / f"{i}.png")
    return images


def test_the_run_folder_opener_takes_run_and_model_folders_alike(tmp_path):
    model = tiny_mnist_model()
    model.save_pretrained(tmp_path / "run" / "model")
    run = {"format_version": RUN_FORMAT, "family": "pixelcnn++", "data": "mnist-mini",
           "train": {"data": "mnist-mini", "data_options": {}}}
    (tmp_path / "run" / "run.json").write_text(json.dumps(run))
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"step": 3}))
    for path in (tmp_path / "run", tmp_path / "run" / "model"):
        folder = open_folder(path)
        assert folder.model_dir == tmp_path / "run" / "model"
        assert folder.run_dir == tmp_path / "run"
        assert folder.data == "mnist-mini" and folder.summary == {"step": 3}
    bare = tmp_path / "bare"
    model.save_pretrained(bare)
    assert open_folder(bare).run == {} and open_folder(bare).data is None
    with pytest.raises(CheckpointError, match="does not exist"):
        open_folder(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="neither a saved-model folder"):
        open_folder(tmp_path)
    assert FOLDER_PREFIX == DATA_FOLDER_PREFIX


def test_load_accepts_a_run_folder_returns_eval_mode_and_log_prob_is_repeatable(tmp_path):
    """On a model with dropout, two log_prob calls on a loaded model agree exactly."""
    model = tiny_mnist_model()
    model.save_pretrained(tmp_path / "run" / "model", raw_state=model.state_dict())
    (tmp_path / "run" / "run.json").write_text(json.dumps({"family": "pixelcnn++"}))
    x = load_dataset("mnist-mini", "test").images[:4]
    for weights in ("ema", "raw"):
        loaded = tractable.load(tmp_path / "run", weights=weights)
        assert not loaded.training
        a, b = loaded.log_prob(x), loaded.log_prob(x)
        assert torch.equal(a, b)
    default = PixelCNNPlusPlus.from_pretrained(tmp_path / "run")
    assert not default.training and default.config.dropout == 0.5
    assert torch.equal(default.log_prob(x), default.train().log_prob(x))


def test_dataset_paths_are_made_absolute():
    data, opts = absolute_data("folder:imgs", {"root": "cache", "size": 8})
    assert data == FOLDER_PREFIX + str((Path.cwd() / "imgs").resolve())
    assert opts["root"].startswith("/") and opts["size"] == 8
    assert absolute_data("mnist", {}) == ("mnist", {})


def test_an_old_run_with_relative_paths_evaluates_from_any_working_directory(
        tmp_path, monkeypatch, capsys):
    """run.json of the first format stored `folder:data/imgs` as given (relative to where
    training ran); reading it resolves the path, and `tractable eval RUN` works elsewhere."""
    digits = write_digits(tmp_path / "data" / "imgs")
    model = tiny_mnist_model()
    run_dir = tmp_path / "runs" / "old"
    model.save_pretrained(run_dir / "model")
    old = {"family": "pixelcnn++", "data": "folder:data/imgs",
           "train": {"data": "folder:data/imgs", "data_options": {}}}
    (run_dir / "run.json").write_text(json.dumps(old))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    folder = open_folder(run_dir)
    assert folder.data == FOLDER_PREFIX + str(tmp_path / "data" / "imgs")
    assert folder.run["format_version"] == RUN_FORMAT
    assert main(["eval", str(run_dir), "--split", "train", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    # a flat folder holds out a test fraction: the train split is the rest of the digits
    train = load_dataset(folder.data, "train", prepared=False).images
    assert 0 < len(train) < len(digits)
    assert out["data"] == folder.data and out["num_images"] == len(train)
    expected = -model.eval().log_prob(train).double().mean().item() / (784 * np.log(2))
    assert out["bits_per_dim"] == pytest.approx(expected, rel=1e-5)  # other batch sizes
    # the app reads the run through the same opener: its test images are found too
    from tractable.app.session import load_app_model

    app = load_app_model(run_dir, device="cpu")
    assert app.test is not None
    assert torch.equal(app.test.images, load_dataset(folder.data, "test", prepared=False).images)


def test_load_takes_weights_device_and_dtype_and_an_opened_folder(tmp_path):
    """`tractable.load` is the one loader: a Folder opened once loads like its path, dtype
    converts the weights (log_prob agrees with float32's), raw weights are the raw file,
    and `from_pretrained` is the same path with a family check."""
    model = tiny_mnist_model().eval()
    raw = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "m", raw_state=raw)
    x = load_dataset("mnist-mini", "test").images[:3]
    by_path = tractable.load(tmp_path / "m")
    by_folder = tractable.load(open_folder(tmp_path / "m"), device="cpu")
    assert torch.equal(by_path.log_prob(x), by_folder.log_prob(x))
    wide = tractable.load(tmp_path / "m", dtype="float64")
    assert all(p.dtype == torch.float64 for p in wide.parameters())
    assert torch.allclose(wide.log_prob(x).float(), by_path.log_prob(x), rtol=1e-4)
    loaded_raw = tractable.load(tmp_path / "m", weights="raw")
    assert all(torch.equal(loaded_raw.state_dict()[k], v) for k, v in raw.items())
    same = PixelCNNPlusPlus.from_pretrained(tmp_path / "m", torch_dtype=torch.float64,
                                            device="cpu")
    assert torch.equal(same.log_prob(x), wide.log_prob(x))
    from tractable.models import Glow

    with pytest.raises(ConfigError, match="not a 'glow' one"):
        Glow.from_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match="unknown device"):
        tractable.load(tmp_path / "m", device="tpu")
    with pytest.raises(ConfigError, match="unknown dtype"):
        tractable.load(tmp_path / "m", dtype="float7")


def test_run_json_is_one_typed_record_that_reads_back_as_written(tmp_path):
    """The trainer writes run.json through `RunRecord.write`; reading gives the same record
    and `open_folder` the same values. A field of the wrong type, or a missing family, is
    one `CheckpointError` naming the file; an old run's relative path is migrated."""
    model = tiny_mnist_model()
    model.save_pretrained(tmp_path / "run" / "model")
    train = {"data": "mnist-mini", "data_options": {}, "max_steps": 3}
    record = RunRecord.new("pixelcnn++", train, {"lr": 1e-3}, model.config.to_dict(), 2,
                           "small", None)
    record.write(tmp_path / "run")
    written = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(written) == {"format_version", "family", "data", "train", "optimizer",
                            "model_config", "world_size", "preset", "data_split",
                            "tractable_version"}
    back = RunRecord.read(tmp_path / "run")
    assert back is not None and dataclasses.asdict(back) == written  # JSON: tuples as lists
    assert (back.family, back.train, back.world_size, back.preset) == (
        "pixelcnn++", train, 2, "small")
    assert open_folder(tmp_path / "run").run == written
    for edit, problem in [(lambda r: r.update(world_size="2"), "world_size must be an integer"),
                          (lambda r: r.update(train=[1]), "train must be an object"),
                          (lambda r: r.pop("family"), "'family' is missing")]:
        bad = dict(written)
        edit(bad)
        (tmp_path / "run" / "run.json").write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=problem):
            RunRecord.read(tmp_path / "run")
    old = {"family": "pixelcnn++", "train": {"data": "folder:imgs", "data_options": {}}}
    (tmp_path / "run" / "run.json").write_text(json.dumps(old))
    (tmp_path / "imgs").mkdir()
    migrated = RunRecord.read(tmp_path / "run")
    assert migrated is not None and migrated.format_version == RUN_FORMAT
    assert migrated.train["data"] == FOLDER_PREFIX + str((tmp_path / "imgs").resolve())
    assert RunRecord.read(tmp_path / "nowhere") is None


def test_a_run_json_from_a_newer_format_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="format_version 99"):
        migrate_run({"format_version": 99, "family": "glow"}, tmp_path)


# ---- config.json ---------------------------------------------------------------------------
def test_config_json_of_an_older_format_is_migrated(tmp_path, monkeypatch):
    """A folder of today's format keeps loading when the format moves on: each migration
    turns a format-v payload into a format-(v+1) one (here: a renamed field)."""
    model = tiny_mnist_model()
    model.save_pretrained(tmp_path)
    payload = json.loads((tmp_path / "config.json").read_text())
    payload["config"]["filters_old_name"] = payload["config"].pop("nr_filters")
    (tmp_path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="filters_old_name"):
        tractable.load(tmp_path)

    current = config_module.FORMAT_VERSION
    assert payload["format_version"] == current

    def rename(p):
        cfg = dict(p["config"])
        cfg["nr_filters"] = cfg.pop("filters_old_name")
        return {**p, "config": cfg, "format_version": current + 1}

    monkeypatch.setattr(config_module, "FORMAT_VERSION", current + 1)
    monkeypatch.setitem(config_module.MIGRATIONS, current, rename)
    loaded = tractable.load(tmp_path)
    assert loaded.config == model.config


def test_an_absurdly_large_config_is_refused_with_a_memory_estimate(tmp_path):
    tiny_mnist_model().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    payload = json.loads(path.read_text())
    payload["config"]["nr_filters"] = 60_000  # within the field's bound, not in memory
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match=r"~[0-9.e+]+ parameters \([0-9,.]+ GiB of float32\)"):
        tractable.load(tmp_path)
    payload["config"]["nr_filters"] = 10**12  # past the bound: refused before any estimate
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="nr_filters must be <= 65536"):
        tractable.load(tmp_path)
    payload["config"]["nr_filters"] = 1e9  # JSON number with an exponent: not an int
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="nr_filters must be an integer"):
        tractable.load(tmp_path)
    payload["config"]["nr_filters"] = 4
    payload["config"]["dropout"] = "0.5"
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="dropout must be a number"):
        tractable.load(tmp_path)


def test_a_name_the_folders_manifest_does_not_list_is_the_users(tmp_path):
    """--overwrite deletes only the names the folder's own manifest lists: a file under a
    name a later tractable writes, in a folder an earlier one wrote, is the user's."""
    from tractable.run_folder import MANIFEST_NAME, prepare_new_run

    (tmp_path / "state.pt").write_bytes(b"an earlier run's checkpoint")
    (tmp_path / "bpd.png").write_text("my own plot")
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format_version": 1,
                                                      "files": ["state.pt"]}))
    with pytest.raises(ConfigError, match=r"did not write under names a run writes \(bpd.png\)"):
        prepare_new_run(tmp_path, overwrite=True)
    assert (tmp_path / "bpd.png").read_text() == "my own plot"
    (tmp_path / "bpd.png").rename(tmp_path / "notes.txt")
    assert prepare_new_run(tmp_path, overwrite=True) == ["state.pt"]
    assert (tmp_path / "notes.txt").read_text() == "my own plot"
    assert not (tmp_path / "state.pt").exists()
