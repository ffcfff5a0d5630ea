"""`tractable score` and `tractable ood` end to end: tiny PixelCNN++ runs trained a few steps
on real Fashion-MNIST, scored against real MNIST digits."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.cli import build_parser
from tractable.cli import main as cli_main
from tractable.data import load_dataset
from tractable.data.subsets import heldout_train_images, subset_rows
from tractable.errors import DataError
from tractable.evaluation.metrics import auprc, auroc, fpr_at_tpr
from tractable.models import load
from tractable.viz import ColorBar, grid_layout

TINY = ["--model", "pixelcnn++", "--nr-resnet", "0", "--nr-filters", "8",
        "--nr-logistic-mix", "2", "--dropout", "0", "--batch-size", "8", "--max-steps", "3",
        "--limit-train", "64", "--limit-test", "16", "--samples-per-eval", "0",
        "--no-progress", "--quiet"]


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    """A model and a background model (inputs mutated at rate 0.3, weight decay) of
    Fashion-MNIST, trained 3 steps each through `tractable train`."""
    root = tmp_path_factory.mktemp("ood_runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACTABLE_DATA", str(shared_data))
        assert cli_main(["train", *TINY, "--data", "fashion-mnist",
                         "--out", str(root / "model")]) == 0
        assert cli_main(["train", *TINY, "--data", "fashion-mnist", "--seed", "1",
                         "--mutation-rate", "0.3", "--weight-decay", "0.001",
                         "--out", str(root / "bg")]) == 0
    return root


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_score_writes_every_images_nll_and_heatmaps(runs, shared_data, tmp_path, capsys):
    out, maps_dir = tmp_path / "scores.csv", tmp_path / "maps"
    fashion = str(shared_data / "fashion-mnist")
    assert cli_main(["score", str(runs / "model"), "--data", "fashion-mnist", "--root", fashion,
                     "--limit", "20", "--out", str(out), "--heatmap", str(maps_dir),
                     "--heatmap-count", "4"]) == 0
    assert "fashion-mnist test: 20 images" in capsys.readouterr().out
    rows = _read_csv(out)
    assert len(rows) == 20 and list(rows[0]) == ["index", "label", "nll_nats", "bits_per_dim"]
    # Each row is the exact NLL of the test image it names.
    test = load_dataset("fashion-mnist", "test", root=fashion)
    idx = torch.tensor([int(r["index"]) for r in rows])
    model = load(runs / "model" / "model").eval()
    with torch.no_grad():
        nll = -model.log_prob(test.images[idx]).double().numpy()
    np.testing.assert_allclose([float(r["nll_nats"]) for r in rows], nll, rtol=1e-5)
    np.testing.assert_allclose([float(r["bits_per_dim"]) for r in rows],
                               nll / (784 * math.log(2)), rtol=1e-5)
    assert [int(r["label"]) for r in rows] == test.labels[idx].tolist()
    # Heatmaps: 4 image | overlay pairs per grid; the saved maps sum to the images' NLLs.
    for name in ("first", "most_surprising", "least_surprising"):
        img = Image.open(maps_dir / f"{name}.png")
        # 2 x 2 pairs enlarged 4x, under a title, beside a colour bar in nats per pixel
        layout = grid_layout(4, None, (28, 56), scale=4, title=name, colorbar=ColorBar(1.0))
        assert layout.grid_size == (2 * 116 + 4, 2 * 228 + 4) and layout.right > 90
        assert img.size == layout.size
    npz = np.load(maps_dir / "pixel_nll.npz")
    worst = np.argsort(-np.array([float(r["bits_per_dim"]) for r in rows]), kind="stable")[:4]
    np.testing.assert_array_equal(npz["most_surprising_index"], idx.numpy()[worst])
    np.testing.assert_allclose(npz["most_surprising_maps"].sum(axis=(1, 2)), nll[worst],
                               rtol=1e-4)


def test_ood_prints_and_saves_every_score(runs, shared_data, tmp_path, capsys):
    report_dir = tmp_path / "report"
    assert cli_main([
        "ood", "--model", str(runs / "model"), "--background", str(runs / "bg"),
        "--in", "fashion-mnist", "--ood", "mnist",
        "--in-root", str(shared_data / "fashion-mnist"), "--ood-root", str(shared_data / "mnist"),
        "--limit", "30", "--fit-limit", "40", "--typicality-m", "5", "--bootstrap", "500",
        "--codecs", "png,jpeg2000", "--out", str(report_dir)]) == 0
    text = capsys.readouterr().out
    scores = ["nll", "likelihood_ratio", "complexity_png", "complexity_jpeg2000", "typicality"]
    for name in [*scores, "typicality M=5 (batch)", "AUROC", "AUPRC", "FPR@80"]:
        assert name in text
    assert "outside the run's 64-image training subset" in text
    report = json.loads((report_dir / "report.json").read_text())
    assert sorted(report["metrics"]) == sorted(scores)
    assert report["in"]["num_images"] == 30 and report["out"]["num_images"] == 30
    # The saved metrics are those of the saved per-image scores.
    rows = _read_csv(report_dir / "scores.csv")
    assert len(rows) == 60
    for name in scores:
        s_in = [float(r[name]) for r in rows if r["set"] == "in"]
        s_out = [float(r[name]) for r in rows if r["set"] == "out"]
        m = report["metrics"][name]
        assert m["auroc"] == pytest.approx(auroc(s_in, s_out))
        assert m["auprc"] == pytest.approx(auprc(s_in, s_out))
        assert m["fpr_at_80_tpr"] == pytest.approx(fpr_at_tpr(s_in, s_out, 0.8))
    t = report["typicality_batches"]
    assert t["batch_size"] == 5 and 0.0 <= t["detection_rate"] <= 1.0
    img = Image.open(report_dir / "histograms.png")
    assert img.format == "PNG" and img.size[1] == 230 * len(scores)


def test_heldout_images_are_the_ones_the_run_did_not_train_on(runs, shared_data):
    root = str(shared_data / "fashion-mnist")
    run = json.loads((runs / "model" / "run.json").read_text())
    fit, note = heldout_train_images("fashion-mnist", {"root": root}, run, 5000, seed=0)
    train = load_dataset("fashion-mnist", "train", root=root)
    used = train.subset(64, seed=run["train"]["seed"]).images  # what the run trained on
    assert "64-image training subset" in note and len(fit) == 5000
    # No held-out image is one of the 64 training images.
    flat_fit = fit.images.flatten(1)
    for image in used.flatten(1):
        assert not bool((flat_fit == image).all(dim=1).any())


def test_subset_rows_name_the_rows_of_the_subset(shared_data):
    ds = load_dataset("mnist", "test", root=str(shared_data / "mnist"))
    rows = subset_rows(len(ds), 50, seed=3)
    assert torch.equal(ds.images[rows], ds.subset(50, seed=3).images)
    sub = load_dataset("mnist", "test", root=str(shared_data / "mnist"), limit=50, seed=3)
    assert torch.equal(sub.split_rows, rows)
    assert torch.equal(sub.images, ds.images[rows])
    assert torch.equal(sub.labels, ds.labels[rows])
    # A subset of a subset still names rows of the split.
    inner = sub.subset(7, seed=1)
    assert torch.equal(inner.images, ds.images[inner.split_rows])
    assert torch.equal(load_dataset("mnist", "test", root=str(shared_data / "mnist"),
                                    limit=10**6).split_rows, torch.arange(len(ds)))
    with pytest.raises(DataError, match="limit must be >= 1, got 0"):
        load_dataset("mnist", "test", root=str(shared_data / "mnist"), limit=0)


def test_mutation_rate_is_a_recorded_training_setting(runs):
    train_cfg = json.loads((runs / "bg" / "run.json").read_text())["train"]
    assert train_cfg["mutation_rate"] == 0.3 and train_cfg["weight_decay"] == 0.001
    assert json.loads((runs / "model" / "run.json").read_text())["train"]["mutation_rate"] == 0.0


@pytest.mark.parametrize("argv, message", [
    (["--codecs", "flif"], "unknown codec"),
    (["--typicality-m", "0"], "--typicality-m"),
])
def test_ood_refuses_bad_options_with_a_clear_message(runs, shared_data, tmp_path, capsys,
                                                      argv, message):
    code = cli_main(["ood", "--model", str(runs / "model"), "--in", "fashion-mnist",
                     "--ood", "mnist", "--in-root", str(shared_data / "fashion-mnist"),
                     "--ood-root", str(shared_data / "mnist"), "--limit", "10",
                     "--out", str(tmp_path / "r"), *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_ood_names_the_ood_set_with_ood_and_explains_the_old_out(runs, tmp_path, capsys):
    """`--out` is where output goes on every command; the OOD set moved to `--ood`."""
    code = cli_main(["ood", "--model", str(runs / "model"), "--in", "fashion-mnist",
                     "--out", "mnist"])
    err = capsys.readouterr().err
    assert code == 2 and "--ood NAME" in err and "did you mean --ood mnist?" in err
    assert "Traceback" not in err and not (tmp_path / "mnist").exists()
    args = build_parser().parse_args([
        "ood", "--model", "m", "--in", "fashion-mnist", "--ood", "mnist", "--out-root", "R",
        "--out-split", "train", "--report", "DIR"])
    assert (args.ood_data, args.ood_root, args.ood_split, args.out) == ("mnist", "R", "train",
                                                                        "DIR")
    err = capsys.readouterr().err
    for old, new in (("--out-root", "--ood-root"), ("--out-split", "--ood-split"),
                     ("--report", "--out")):
        assert f"{old} is deprecated; use {new}" in err


def test_score_refuses_a_folder_that_is_no_model(tmp_path, capsys):
    assert cli_main(["score", str(tmp_path), "--data", "mnist-mini", "--out",
                     str(tmp_path / "s.csv")]) == 2
    assert "neither a saved-model folder" in capsys.readouterr().err
