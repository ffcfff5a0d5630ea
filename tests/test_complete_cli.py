"""`tractable complete` end to end on a tiny PixelCNN++ trained on the bundled digits: the
grid holds original | occluded | completions per image, the kept rows are the image's own,
and bad input is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tractable.cli import main
from tractable.data import load_dataset
from tractable.viz import grid_layout

SCALE, PAD = 4, 4  # tractable.viz.labelled_grid's tiles: enlarged 4x, 4 pixels apart
LABELS = ["original", "occluded", "#1", "#2", "#3"]
LAYOUT = grid_layout(10, 5, (28, 28), SCALE, PAD, col_labels=LABELS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("complete") / "run"
    assert main(["train", "--model", "pixelcnn++", "--nr-resnet", "1", "--nr-filters", "8",
                 "--nr-logistic-mix", "2", "--conditional", "--limit-train", "32",
                 "--limit-test", "16", "--batch-size", "8", "--max-steps", "4",
                 "--samples-per-eval", "2", "--no-progress", "--quiet", "--out", str(out)]) == 0
    return out


def tile(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """Tile (row, col) of the grid, downscaled back to 28x28 (nearest: exact)."""
    top, left, _, _ = LAYOUT.tile_box(row * 5 + col)
    return grid[top:top + 28 * SCALE:SCALE, left:left + 28 * SCALE:SCALE]


def test_grid_of_originals_occluded_inputs_and_completions(run, tmp_path, capsys):
    test = load_dataset("mnist-mini", "test")
    own = tmp_path / "digit.png"
    Image.fromarray(test.images[5, 0].numpy()).save(own)
    out = tmp_path / "grid.png"
    assert main(["complete", str(run), "--image", "3", "--image", str(own), "--class", "2",
                 "--rows", "14", "--cols", "3", "-n", "3", "--out", str(out)]) == 0
    assert "wrote 3 completions of 2 image(s)" in capsys.readouterr().out
    grid = np.asarray(Image.open(out).convert("L"))
    assert (grid.shape[1], grid.shape[0]) == LAYOUT.size and LAYOUT.top > 0  # labelled
    assert LAYOUT.grid_size == (2 * (28 * SCALE + PAD) + PAD, 5 * (28 * SCALE + PAD) + PAD)
    for row, original in enumerate([test.images[3, 0].numpy(), test.images[5, 0].numpy()]):
        assert np.array_equal(tile(grid, row, 0), original)
        occluded = tile(grid, row, 1).flatten()
        assert np.array_equal(occluded[:14 * 28 + 3], original.flatten()[:14 * 28 + 3])
        assert (occluded[14 * 28 + 3:] == 110).all()
        for k in range(3):
            done = tile(grid, row, 2 + k).flatten()
            assert np.array_equal(done[:14 * 28 + 3], original.flatten()[:14 * 28 + 3])
        assert not np.array_equal(tile(grid, row, 2), tile(grid, row, 3))


@pytest.mark.parametrize("argv,message", [
    (["--image", "5000", "--rows", "3"], "out of range"),
    (["--image", "3", "--rows", "29"], "rows to keep"),
    (["--image", "nope.png", "--rows", "3"], "neither an image file nor a dataset index"),
    (["--image", "3", "--rows", "3", "-n", "0"], "-n must be"),
    (["--image", "3", "--rows", "3", "--class", "all"], "--class all draws a row per class"),
])
def test_bad_input_is_a_one_line_error(run, argv, message, capsys):
    assert main(["complete", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_image_file_on_a_conditional_model_needs_a_class(run, tmp_path, capsys):
    own = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(own)
    assert main(["complete", str(run), "--image", str(own), "--rows", "3"]) == 2
    assert "pass --class" in capsys.readouterr().err


def test_a_class_that_overrides_dataset_labels_says_so(run, tmp_path, capsys):
    test = load_dataset("mnist-mini", "test")
    own = int(test.labels[3])
    other = (own + 1) % 10
    out = tmp_path / "grid.png"
    assert main(["complete", str(run), "--image", "3", "--class", str(other), "--rows", "27",
                 "-n", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"--class {other} conditions every row" in err and f"({own})" in err
    assert main(["complete", str(run), "--image", "3", "--class", str(own), "--rows", "27",
                 "-n", "1", "--out", str(out)]) == 0
    assert "overriding" not in capsys.readouterr().err  # nothing overridden: no note
