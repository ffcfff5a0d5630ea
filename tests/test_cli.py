"""`tractable train / eval / sample / info` end to end on the bundled real MNIST digits.

A tiny class-conditional PixelCNN++ is trained through the command line; the run folder
must hold everything promised, eval must give exact bits/dim over every image, and sample
must route --class (hard, soft, all), --seed, --npy, --sampler and --dtype to the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tractable import load
from tractable.cli import main
from tractable.cli.classes import parse_class_spec
from tractable.data import load_dataset
from tractable.errors import ConfigError
from tractable.evaluation import evaluate_bpd
from tractable.viz import display_scale, grid_layout, tiles_of

TINY = ["--nr-resnet", "1", "--nr-filters", "8", "--nr-logistic-mix", "2", "--dropout", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", "--model", "pixelcnn++", *TINY, "--set", "coord_conv=true",
            "--conditional", "--limit-train", "64", "--limit-test", "20", "--batch-size", "8",
            "--epochs", "2", "--samples-per-eval", "10", "--sampler", "cached",
            "--no-progress", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


def json_out(argv, capsys):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_run_folder_holds_model_state_logs_and_pictures(run):
    cfg = load(run / "model").config
    assert (cfg.nr_filters, cfg.coord_conv, cfg.num_classes) == (8, True, 10)
    assert {"run.json", "state.pt", "metrics.jsonl", "metrics.csv", "summary.json",
            "samples.gif", "bpd.png"} <= {p.name for p in run.iterdir()}
    assert {p.name for p in (run / "model").iterdir()} == {
        "config.json", "model.safetensors", "raw.safetensors"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [8, 16]  # every epoch of 8 steps
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("kind,step,epoch")
    gif = Image.open(run / "samples.gif")
    assert gif.n_frames == 2 and gif.size == Image.open(run / evals[0]["grid"]).size
    assert Image.open(run / "bpd.png").size == (720, 420)


def test_eval_is_exact_over_every_image(run, capsys):
    full = json_out(["eval", str(run), "--json"], capsys)
    assert full["num_images"] == 1000 and full["data"] == "mnist-mini"
    a = json_out(["eval", str(run), "--json", "--limit", "50", "--batch-size", "7"], capsys)
    b = json_out(["eval", str(run / "model"), "--json", "--limit", "50"], capsys)
    # --limit N: the fixed random subset of N images (seed --seed), as --limit-test takes it
    test = load_dataset("mnist-mini", "test").subset(50, seed=0)
    direct = evaluate_bpd(load(run / "model"), test, batch_size=50)
    other = json_out(["eval", str(run), "--json", "--limit", "50", "--seed", "1"], capsys)
    assert other["num_images"] == 50 and other["bits_per_dim"] != a["bits_per_dim"]
    assert a["num_images"] == 50
    # other batch sizes: float32 convolutions round differently, up to 1e-5 relative (a
    # lost or doubled image would move the mean by orders of magnitude more)
    assert a["bits_per_dim"] == pytest.approx(direct.bits_per_dim, rel=1e-5)
    assert a["bits_per_dim"] == pytest.approx(b["bits_per_dim"], rel=1e-5)
    raw = json_out(["eval", str(run), "--json", "--limit", "50", "--weights", "raw"], capsys)
    assert raw["bits_per_dim"] != a["bits_per_dim"]  # EMA weights are the default


def test_info_reports_config_parameters_data_and_best_bpd(run, capsys):
    info = json_out(["info", str(run), "--json"], capsys)
    model = load(run / "model")
    summary = json.loads((run / "summary.json").read_text())
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["data"] == "mnist-mini" and info["step"] == 16
    assert info["best_test_bpd"] == summary["best_test_bpd"] is not None
    assert info["config"]["nr_filters"] == 8 and info["optimizer"]["betas"] == [0.95, 0.9995]
    # over how many images the best bits/dim was measured: the run's --limit-test 20
    assert info["test_images"] == summary["test_images"] == 20
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    best = f"{summary['best_test_bpd']:.4f}"
    assert f"best test bits/dim (EMA): {best} over 20 mnist-mini test images" in (
        capsys.readouterr().out)


def test_sample_class_seed_npy(run, tmp_path, capsys):
    def sample(*extra):
        out = tmp_path / "s.png"
        assert main(["sample", str(run), "--sampler", "cached", "--out", str(out), "--npy",
                     *extra]) == 0
        return np.load(tmp_path / "s.npy"), Image.open(out)

    x3, png = sample("-n", "4", "--class", "3", "--seed", "1")
    assert x3.dtype == np.uint8 and x3.shape == (4, 1, 28, 28)
    assert np.array_equal(sample("-n", "4", "--class", "3", "--seed", "1")[0], x3)
    assert not np.array_equal(sample("-n", "4", "--class", "3", "--seed", "2")[0], x3)
    assert not np.array_equal(sample("-n", "4", "--class", "7", "--seed", "1")[0], x3)
    blend, _ = sample("-n", "2", "--class", "4:0.5,9:0.5", "--temperature", "0.8")
    assert blend.shape == (2, 1, 28, 28)
    everyone, grid = sample("-n", "20", "--class", "all")
    assert everyone.shape == (20, 1, 28, 28)
    # one row per class, 2 per row, each row named by its class on the left
    layout = grid_layout(20, 2, (28, 28), row_labels=[str(k) for k in range(10)])
    assert layout.rows == 10 and layout.left > 0 and grid.size == layout.size
    tiles = tiles_of(tmp_path / "s.png", layout, display_scale(28, 28))
    assert all(np.array_equal(t[..., 0], x[0]) for t, x in zip(tiles, everyone, strict=True))


def test_float64_naive_and_cached_samplers_agree_through_the_cli(run, tmp_path):
    outs = []
    for sampler in ("naive", "cached"):
        out = tmp_path / f"{sampler}.png"
        assert main(["sample", str(run), "-n", "1", "--class", "5", "--sampler", sampler,
                     "--dtype", "float64", "--npy", "--out", str(out)]) == 0
        outs.append(np.load(out.with_suffix(".npy")))
    assert np.array_equal(outs[0], outs[1])


def test_parse_class_spec():
    names = [str(i) for i in range(10)]
    y, n, row = parse_class_spec("3", 4, 10, names)
    assert y.tolist() == [3] * 4 and (n, row) == (4, None)
    y, n, row = parse_class_spec("4:1,9:3", 2, 10, names)
    assert y.dtype == torch.float32 and y.shape == (2, 10)
    assert y[0, 4] == pytest.approx(0.25) and y[0, 9] == pytest.approx(0.75)
    y, n, row = parse_class_spec("all", 25, 10, names)
    assert (n, row) == (20, 2) and y.tolist()[:4] == [0, 0, 1, 1]
    y, _, _ = parse_class_spec("cat", 1, 3, ["dog", "cat", "bird"])
    assert y.tolist() == [1]
    for bad, match in [("10", "out of range"), ("4:x", "bad class weight"),
                       ("4:-1", ">= 0"), ("horse", "unknown class")]:
        with pytest.raises(ConfigError, match=match):
            parse_class_spec(bad, 1, 10, names)
    with pytest.raises(ConfigError, match="unconditional"):
        parse_class_spec("3", 1, 0, [])


def test_glow_trains_and_samples_through_the_same_cli(tmp_path, capsys):
    out = tmp_path / "glow"
    assert main(["train", "--model", "glow", "--K", "1", "--L", "1", "--width", "8",
                 "--max-steps", "2", "--batch-size", "8", "--limit-train", "16",
                 "--limit-test", "8", "--samples-per-eval", "4", "--no-progress", "--quiet",
                 "--out", str(out)]) == 0
    assert main(["sample", str(out), "-n", "2", "--temperature", "0.7", "--out",
                 str(tmp_path / "g.png")]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "-n", "2", "--sampler", "cached", "--out",
                 str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "the 'cached' sampler draws from models with the AutoregressiveSampleable" in err
    assert "samplers: prior" in err
