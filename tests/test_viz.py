"""Pictures: grids and GIFs hold exactly the images' pixels; `tractable data show` writes one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tractable import viz
from tractable.cli import main as cli_main
from tractable.data import load_dataset
from tractable.errors import ShapeError
from tractable.viz import (
    MARK_COLOR,
    PAD_VALUE,
    display_scale,
    grid_layout,
    heat_colors,
    make_grid,
    plot_curves,
    save_gif,
    save_grid,
    save_nll_heatmaps,
    tiles_of,
)


def _tile(grid: np.ndarray, i: int, nrow: int, h: int, w: int, pad: int = 2) -> np.ndarray:
    r, c = divmod(i, nrow)
    top, left = pad + r * (h + pad), pad + c * (w + pad)
    return grid[top:top + h, left:left + w]


def test_cli_data_show_writes_a_grid_of_the_real_images(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli_main(["data", "show", "mnist-mini", "--split", "test", "-n", "64",
                     "--out", str(out)]) == 0
    assert "wrote 64 mnist-mini test images" in capsys.readouterr().out
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "L"
    # 28x28 digits are enlarged 4x to 112 pixels, with 4 grey pixels between the tiles
    assert display_scale(28, 28) == 4
    side = 8 * (112 + 4) + 4
    assert img.size == (side, side)
    grid = np.asarray(img)
    test = load_dataset("mnist-mini", "test")
    for i in range(64):
        tile = _tile(grid, i, 8, 112, 112, pad=4)
        assert np.array_equal(tile, test.images[i, 0].numpy().repeat(4, 0).repeat(4, 1))
    padding = grid.copy()
    for i in range(64):
        _tile(padding, i, 8, 112, 112, pad=4)[:] = PAD_VALUE
    # everything outside the tiles is the grey separator, visible against black digits
    assert (padding == PAD_VALUE).all() and 100 <= PAD_VALUE <= 230


def test_rgb_grid_from_cifar_and_unknown_name_in_cli(shared_data, tmp_path, capsys):
    ds = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000", batches=[1])
    out = tmp_path / "c.png"
    save_grid(ds.images[:6], out, nrow=3, scale=1, padding=2)
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3)
    for i in range(6):
        assert np.array_equal(_tile(grid, i, 3, 32, 32), ds.images[i].permute(1, 2, 0).numpy())
    assert grid[2, 2].tolist() == [59, 62, 63]  # image 0's first pixel (R, G, B)
    assert cli_main(["data", "show", "cifar11", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'cifar11'" in err and "Traceback" not in err


def test_gif_frames_round_trip(tmp_path):
    digits = load_dataset("mnist-mini", "test").images[:8]
    frames = [make_grid(digits[i:i + 4], nrow=2, scale=2) for i in range(0, 8, 4)]
    path = tmp_path / "a.gif"
    save_gif(frames, path, duration_ms=100, scale=1)
    gif = Image.open(path)
    assert gif.n_frames == 2 and gif.info["loop"] == 0
    for k, frame in enumerate(frames):
        gif.seek(k)
        assert np.array_equal(np.asarray(gif.convert("L")), frame[..., 0])


def test_grid_input_errors(tmp_path):
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ShapeError, match="uint8"):
        make_grid(x.float())
    with pytest.raises(ShapeError, match=r"\[N, 1\|3, H, W\]"):
        make_grid(torch.zeros(2, 2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="at least one image"):
        make_grid(x[:0])
    with pytest.raises(ShapeError, match="one shape"):
        save_gif([make_grid(x), make_grid(x, nrow=1)], tmp_path / "b.gif")
    with pytest.raises(ShapeError, match="at least one frame"):
        save_gif([], tmp_path / "b.gif")
    assert not list(tmp_path.iterdir())


# ---- labelled pictures (matplotlib) ------------------------------------------------------
def _ink(arr: np.ndarray, top: int, left: int, bottom: int, right: int) -> int:
    """Dark (text) pixels in a box of an RGB picture."""
    box = arr[max(top, 0):bottom, max(left, 0):right]
    return int((box.min(axis=2) < 128).sum())


def test_row_labels_sit_left_of_their_rows_and_tiles_stay_exact(tmp_path):
    digits = load_dataset("mnist-mini", "test").images[:12]
    names = ["zero", "one", "a long class name"]
    path = tmp_path / "rows.png"
    layout = save_grid(digits, path, nrow=4, row_labels=names, title="samples")
    short = grid_layout(12, 4, (28, 28), row_labels=["0", "1", "2"], title="samples")
    assert layout.left > short.left > 0  # the margin grows with the longest label
    assert layout.top > 0 and layout.right > 0 and layout.rows == 3
    arr = np.asarray(Image.open(path).convert("RGB"))
    assert (arr.shape[1], arr.shape[0]) == layout.size
    for i, tile in enumerate(tiles_of(path, layout, 4)):
        assert np.array_equal(tile[..., 0], digits[i, 0].numpy())
    for r in range(3):  # each row's label is drawn in the margin beside that row
        top, _, h, _ = layout.tile_box(r * 4)
        assert _ink(arr, top, 0, top + h, layout.left) > 20, r
    assert _ink(arr, 0, 0, layout.top - 4, arr.shape[1]) > 20  # the title


def test_column_labels_rotate_when_wider_than_a_tile_and_marks_frame_tiles(tmp_path):
    digits = load_dataset("mnist-mini", "test").images[:3]
    narrow = grid_layout(3, 3, (28, 28), col_labels=["α=-1", "α=0", "α=+1"])
    wide = grid_layout(3, 3, (28, 28), col_labels=["a name wider than 112 pixels"])
    assert not narrow.rotate_columns and wide.rotate_columns and wide.top > narrow.top
    path = tmp_path / "cols.png"
    layout = save_grid(digits, path, nrow=3, col_labels=["α=-1", "α=0 (original)", "α=+1"],
                       marks=[1])
    arr = np.asarray(Image.open(path).convert("RGB"))
    for c in range(3):
        top, left, _, w = layout.tile_box(c)
        assert _ink(arr, 0, left, top - layout.padding, left + w) > 10, c
    top, left, h, w = layout.tile_box(1)
    assert tuple(arr[top - 1, left + w // 2]) == MARK_COLOR  # the original is framed
    assert tuple(arr[top + h // 2, left - 1]) == MARK_COLOR
    top, left, h, w = layout.tile_box(0)
    assert tuple(arr[top + h // 2, left - 1]) == (PAD_VALUE,) * 3


def test_heatmaps_get_a_colour_bar_of_the_shared_scale(tmp_path):
    digits = load_dataset("mnist-mini", "test").images[:4]
    maps = torch.linspace(0, 3, 4 * 28 * 28).view(4, 28, 28)
    path = tmp_path / "heat.png"
    layout = save_nll_heatmaps(digits, maps, path, nrow=2, vmax=3.0, title="first")
    assert layout.tile == (112, 224) and layout.right >= 90  # pairs at 4x, bar on the right
    arr = np.asarray(Image.open(path).convert("RGB"))
    gh, gw = layout.grid_size
    bar = arr[layout.top:layout.top + gh, layout.left + gw + 16:layout.left + gw + 26]
    column = bar[:, 5].astype(int)  # top: vmax (brightest), bottom: 0 (darkest)
    assert column[2].sum() > 600 and column[-3].sum() < 60
    ramp = heat_colors(np.linspace(0, 3, 5), 3.0).astype(int)
    assert np.abs(column[2] - ramp[-1]).max() < 12 and np.abs(column[-3] - ramp[0]).max() < 12
    assert _ink(arr, layout.top, layout.left + gw + 30, layout.top + gh, arr.shape[1]) > 50


def test_labelled_pictures_are_deterministic_and_labelled_by_pillow_without_matplotlib(
        tmp_path, monkeypatch):
    digits = load_dataset("mnist-mini", "test").images[:6]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    save_grid(digits, a, nrow=3, row_labels=["x", "y"], title="t")
    save_grid(digits, b, nrow=3, row_labels=["x", "y"], title="t")
    assert a.read_bytes() == b.read_bytes()
    monkeypatch.setattr(viz.canvas, "have_matplotlib", lambda: False)
    # without matplotlib the one Pillow fallback draws the same labels in the same layout
    layout = save_grid(digits, a, nrow=3, row_labels=["xx", "yy"], title="t")
    assert layout == grid_layout(6, 3, (28, 28), row_labels=["xx", "yy"], title="t")
    assert layout.left > 0 and layout.top > 0
    arr = np.asarray(Image.open(a).convert("RGB"))
    assert (arr.shape[1], arr.shape[0]) == layout.size
    for i, tile in enumerate(tiles_of(a, layout, 4)):
        assert np.array_equal(tile[..., 0], digits[i, 0].numpy())
    for r in range(2):
        top, _, h, _ = layout.tile_box(r * 3)
        assert _ink(arr, top, 0, top + h, layout.left) > 5, r  # the row label
    save_grid(digits, b, nrow=3, row_labels=["xx", "yy"], title="t")
    assert a.read_bytes() == b.read_bytes()


def test_the_bits_per_dim_curve_shows_train_and_test(tmp_path):
    path = tmp_path / "bpd.png"
    plot_curves({"train": ([10, 20, 30], [2.6, 2.1, 1.8]), "test": ([15, 30], [2.0, 1.7])},
                path, title="run", ylabel="bits/dim")
    arr = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert arr.shape == (420, 720, 3)
    blue = (np.abs(arr - [31, 119, 180]).sum(axis=2) < 40).sum()
    red = (np.abs(arr - [214, 39, 40]).sum(axis=2) < 40).sum()
    assert blue > 100 and red > 100  # both series drawn
    assert _ink(arr.astype(np.uint8), 0, 0, 420, 40) > 30  # the y-axis label and ticks
    assert _ink(arr.astype(np.uint8), 395, 200, 420, 520) > 30  # the x-axis label
    again = tmp_path / "again.png"
    plot_curves({"train": ([10, 20, 30], [2.6, 2.1, 1.8]), "test": ([15, 30], [2.0, 1.7])},
                again, title="run", ylabel="bits/dim")
    assert again.read_bytes() == path.read_bytes()


def test_charts_without_matplotlib_are_drawn_by_the_one_pillow_fallback(tmp_path, monkeypatch):
    """The same chart calls draw with Pillow where matplotlib is missing: same size, both
    series of a curve in their colours, both sets of a histogram, the marker line."""
    monkeypatch.setattr(viz.canvas, "have_matplotlib", lambda: False)
    path = tmp_path / "bpd.png"
    plot_curves({"train": ([10, 20, 30], [2.6, 2.1, 1.8]), "test": ([15, 30], [2.0, 1.7])},
                path, title="run", ylabel="bits/dim")
    arr = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert arr.shape == (420, 720, 3)
    assert (np.abs(arr - [31, 119, 180]).sum(axis=2) < 40).sum() > 100
    assert (np.abs(arr - [214, 39, 40]).sum(axis=2) < 40).sum() > 100
    hist = tmp_path / "h.png"
    viz.save_histograms({"a": (np.linspace(0, 1, 50), np.linspace(2, 3, 40))}, hist)
    arr = np.asarray(Image.open(hist).convert("RGB")).astype(int)
    assert arr.shape == (230, 420, 3)
    left, right = arr[:, :210], arr[:, 210:]  # "in" (blue) low, "out" (orange) high
    assert (np.abs(left - [142, 185, 216]).sum(axis=2) < 60).sum() > 100
    assert (np.abs(right - [255, 190, 134]).sum(axis=2) < 60).sum() > 100
    marked = np.asarray(viz.histogram_with_marker(np.linspace(0, 1, 30), 0.5, "t")).astype(int)
    assert marked.shape == (220, 420, 3)
    assert (np.abs(marked - [214, 39, 40]).sum(axis=2) < 40).sum() > 100  # the marker
