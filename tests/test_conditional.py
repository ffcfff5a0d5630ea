"""Class-conditional generation and the issue-5 model options, end to end through the CLI.

Tiny conditional PixelCNN++ and Gated PixelCNN models are trained with `tractable train` on
the bundled real MNIST digits (and on folders of real digits), then sampled with
`tractable sample --class ...`. A spy on `AutoregressiveModel.sample` records the `y` each
command hands the model, so the tests check what reaches the network, not just that a
picture was written: class indices for `--class 3`, the exact weights [0.5 at 4, 0.5 at 9]
for `--class 4:0.5,9:0.5`, one grid row per class for `--class all`.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tractable import load
from tractable.cli import main
from tractable.data import load_dataset
from tractable.evaluation import evaluate_bpd
from tractable.models.autoregressive import AutoregressiveModel
from tractable.viz import display_scale, grid_layout, tiles_of

# Tiny networks of each family (a few seconds to train 3 steps on one thread).
FAMILIES = {
    "pixelcnn++": ["--model", "pixelcnn++", "--nr-resnet", "1", "--nr-filters", "8",
                   "--nr-logistic-mix", "2", "--dropout", "0"],
    "gated-pixelcnn": ["--model", "gated-pixelcnn", "--n-layers", "3", "--n-filters", "8",
                       "--head-filters", "16"],
}
# The issue-5 options of each family, as command-line flags -> the config values they set.
OPTIONS = {
    "pixelcnn++": (["--coord-conv", "--nonlocal", "2", "--focal-gamma", "2"],
                   {"coord_conv": True, "nonlocal_blocks": 2, "focal_gamma": 2.0}),
    "gated-pixelcnn": (["--coord-conv", "--n-levels", "4", "--focal-gamma", "1.5"],
                       {"coord_conv": True, "n_levels": 4, "focal_gamma": 1.5}),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two shared cores: intra-op threads only add contention for models this small."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_cli(out, *args) -> None:
    argv = ["train", *args, "--max-steps", "3", "--batch-size", "8", "--samples-per-eval", "0",
            "--no-progress", "--quiet", "--out", str(out)]
    assert main(argv) == 0


def train_on_digits(out, family, *extra) -> None:
    train_cli(out, *FAMILIES[family], "--limit-train", "32", "--limit-test", "16", *extra)


@pytest.fixture(scope="module", params=list(FAMILIES))
def conditional_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("conditional") / request.param
    train_on_digits(out, request.param, "--conditional")
    return out


@pytest.fixture(scope="module", params=list(FAMILIES))
def options_run(request, tmp_path_factory):
    """An unconditional run of each family with all its issue-5 options switched on."""
    out = tmp_path_factory.mktemp("options") / request.param
    train_on_digits(out, request.param, *OPTIONS[request.param][0])
    return request.param, out


@pytest.fixture
def seen_y(monkeypatch):
    """The `y` of every `model.sample` call (a spy that keeps the method's signature)."""
    seen: list[torch.Tensor | None] = []
    original = AutoregressiveModel.sample

    @functools.wraps(original)
    def spy(self, n, *, y=None, **kwargs):
        seen.append(None if y is None else y.detach().cpu().clone())
        return original(self, n, y=y, **kwargs)

    monkeypatch.setattr(AutoregressiveModel, "sample", spy)
    return seen


def sample_cli(run, png, *args) -> np.ndarray:
    """`tractable sample RUN ... --npy` with the cached sampler and seed 0; the uint8 array."""
    assert main(["sample", str(run), "--sampler", "cached", "--seed", "0", "--npy",
                 "--out", str(png), *args]) == 0
    return np.load(png.with_suffix(".npy"))


def sample_api(run, n, y) -> np.ndarray:
    """The same draw through the Python API: the saved (EMA) model, seed 0."""
    model = load(run / "model").eval()
    return model.sample(n, y=y, generator=torch.Generator().manual_seed(0),
                        sampler="cached").numpy()


def fails(argv, capsys, *needles) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tractable: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


# ---- --class: hard, soft, all ------------------------------------------------------------
def test_one_class_reaches_the_model_as_class_indices(conditional_run, seen_y, tmp_path):
    x = sample_cli(conditional_run, tmp_path / "c3.png", "-n", "3", "--class", "3")
    y = seen_y[-1]
    assert y.dtype == torch.long and y.tolist() == [3, 3, 3]
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.uint8
    assert np.array_equal(x, sample_api(conditional_run, 3, torch.full((3,), 3)))
    # One-hot weights are the special case of soft labels: "3:1" draws the same images.
    assert np.array_equal(sample_cli(conditional_run, tmp_path / "s.png", "-n", "3",
                                     "--class", "3:1"), x)
    assert seen_y[-1].dtype == torch.float32


def test_soft_blend_reaches_the_model_as_class_weights(conditional_run, seen_y, tmp_path):
    blend = sample_cli(conditional_run, tmp_path / "b.png", "-n", "2", "--class", "4:0.5,9:0.5")
    expected = torch.zeros(2, 10)
    expected[:, [4, 9]] = 0.5
    assert seen_y[-1].dtype == torch.float32 and torch.equal(seen_y[-1], expected)
    assert np.array_equal(blend, sample_api(conditional_run, 2, expected))
    # Weights are normalized, and the blend is neither of its two classes.
    assert np.array_equal(sample_cli(conditional_run, tmp_path / "n.png", "-n", "2",
                                     "--class", "4:1,9:1"), blend)
    assert torch.equal(seen_y[-1], expected)
    for pure in ("4", "9"):
        x = sample_cli(conditional_run, tmp_path / f"{pure}.png", "-n", "2", "--class", pure)
        assert not np.array_equal(x, blend)


def test_class_all_writes_one_grid_row_per_class(conditional_run, seen_y, tmp_path):
    png = tmp_path / "all.png"
    x = sample_cli(conditional_run, png, "-n", "25", "--class", "all")  # 25 // 10 = 2 a class
    assert seen_y[-1].tolist() == [k for k in range(10) for _ in range(2)]
    assert x.shape == (20, 1, 28, 28)
    layout = grid_layout(20, 2, (28, 28), row_labels=[str(k) for k in range(10)])
    assert Image.open(png).size == layout.size and layout.rows == 10
    # row r of the grid holds exactly the samples of class r
    for i, shown in enumerate(tiles_of(png, layout, display_scale(28, 28))):
        assert np.array_equal(shown[..., 0], x[i, 0])


def test_without_class_a_conditional_model_cycles_through_the_classes(
        conditional_run, seen_y, tmp_path, capsys):
    sample_cli(conditional_run, tmp_path / "cycle.png", "-n", "12")
    assert seen_y[-1].tolist() == [k % 10 for k in range(12)]
    assert "choose with --class" in capsys.readouterr().err


def test_labels_condition_the_likelihood(conditional_run):
    """The trained conditional model's bits/dim depend on the labels it is given."""
    model = load(conditional_run / "model").eval()
    test = load_dataset("mnist-mini", "test")
    x, y = test.images[:8], test.labels[:8]
    with torch.no_grad():
        right, wrong = model.log_prob(x, y), model.log_prob(x, (y + 1) % 10)
    assert not torch.equal(right, wrong)


# ---- errors ------------------------------------------------------------------------------
def test_class_on_an_unconditional_model_is_a_clear_error(options_run, tmp_path, capsys):
    _, run = options_run
    for spec in ("3", "4:0.5,9:0.5", "all"):
        fails(["sample", str(run), "-n", "1", "--class", spec, "--out", str(tmp_path / "x.png")],
              capsys, "unconditional", "drop --class")


def write_pngs(folder, images) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    """Real MNIST 4s and 9s as PNG folders: with class sub-folders, and loose (no labels)."""
    root = tmp_path_factory.mktemp("folders")
    test = load_dataset("mnist-mini", "test")
    by_class = {k: test.images[test.labels == k] for k in (4, 9)}
    for split, part in (("train", slice(0, 16)), ("test", slice(16, 20))):
        for name, k in (("four", 4), ("nine", 9)):
            write_pngs(root / "labelled" / split / name, by_class[k][part])
        write_pngs(root / "loose" / split, torch.cat([by_class[4][part], by_class[9][part]]))
    return root / "labelled", root / "loose"


def test_conditional_training_needs_labels(digit_folders, tmp_path, capsys):
    _, loose = digit_folders
    for family in FAMILIES:
        fails(["train", *FAMILIES[family], "--conditional", "--data", f"folder:{loose}",
               "--max-steps", "1", "--batch-size", "8", "--out", str(tmp_path / family)],
              capsys, "has no class labels", "drop --conditional")
        assert not (tmp_path / family / "state.pt").exists()


def test_class_sub_folders_train_a_conditional_model(digit_folders, seen_y, tmp_path, capsys):
    labelled, loose = digit_folders
    run = tmp_path / "folder-run"
    train_cli(run, *FAMILIES["gated-pixelcnn"], "--conditional", "--data", f"folder:{labelled}")
    cfg = load(run / "model").config
    assert (cfg.num_classes, cfg.class_names) == (2, ["four", "nine"])
    sample_cli(run, tmp_path / "nine.png", "-n", "2", "--class", "nine")
    assert seen_y[-1].tolist() == [1, 1]
    sample_cli(run, tmp_path / "blend.png", "-n", "2", "--class", "four:0.25,nine:0.75")
    assert torch.equal(seen_y[-1], torch.tensor([[0.25, 0.75], [0.25, 0.75]]))
    fails(["sample", str(run), "--class", "4", "--out", str(tmp_path / "x.png")], capsys,
          "class 4 out of range 0..1")
    fails(["eval", str(run), "--data", f"folder:{loose}"], capsys,
          "conditional on 2 classes", "no labels")


# ---- options saved in config.json and reloaded ---------------------------------------------
def test_options_are_saved_and_reloaded(options_run, capsys):
    family, run = options_run
    expected = OPTIONS[family][1]
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["family"] == family
    assert {k: saved["config"][k] for k in expected} == expected
    model = load(run / "model")
    assert {k: getattr(model.config, k) for k in expected} == expected
    capsys.readouterr()
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {k: info["config"][k] for k in expected} == expected
    # The reloaded EMA model is the very function the trainer evaluated at its last step.
    run_cfg = json.loads((run / "run.json").read_text())["train"]
    test = load_dataset("mnist-mini", "test", limit=run_cfg["limit_test"],
                        seed=run_cfg["seed"])
    summary = json.loads((run / "summary.json").read_text())
    # (the trainer evaluated at its own batch size and memory layout: rounding differs)
    assert evaluate_bpd(model, test, batch_size=16).bits_per_dim == pytest.approx(
        summary["last_test_bpd"], rel=1e-5)
    # ... and it still trains on the focal loss, while reporting true bits/dim.
    _, metrics = model.loss(test.images[:4])
    assert "focal" in metrics and float(metrics["focal"]) != float(metrics["bpd"])


def test_bits_per_dim_of_fewer_levels_are_labelled(options_run, capsys):
    family, run = options_run
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "8"]) == 0
    line = capsys.readouterr().out
    levels = OPTIONS[family][1].get("n_levels", 256)
    assert ("bits/dim (4-level data) over 8 images" in line) == (levels == 4), line
    assert main(["eval", str(run), "--limit", "8", "--json"]) == 0
    label = json.loads(capsys.readouterr().out)["bits_per_dim_label"]
    assert label == ("bits/dim (4-level data)" if levels == 4 else "bits/dim")
