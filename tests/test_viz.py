"""Pictures: grids and GIFs hold exactly the images' pixels; `tractable data show` writes one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.cli import main as cli_main
from tractable.data import load_dataset
from tractable.errors import ShapeError
from tractable.viz import make_grid, save_gif, save_grid


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
    side = 8 * (28 + 2) + 2
    assert img.size == (2 * side, 2 * side)  # 8x8 tiles, upscaled 2x
    grid = np.asarray(img)[::2, ::2]  # undo the nearest-neighbour upscaling
    assert np.array_equal(np.asarray(img), grid.repeat(2, 0).repeat(2, 1))
    test = load_dataset("mnist-mini", "test")
    for i in range(64):
        assert np.array_equal(_tile(grid, i, 8, 28, 28), test.images[i, 0].numpy())
    padding = grid.copy()
    for i in range(64):
        _tile(padding, i, 8, 28, 28)[:] = 0
    assert not padding.any()  # everything outside the tiles is black padding


def test_rgb_grid_from_cifar_and_unknown_name_in_cli(shared_data, tmp_path, capsys):
    ds = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000", batches=[1])
    out = tmp_path / "c.png"
    save_grid(ds.images[:6], out, nrow=3, scale=1)
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
    frames = [make_grid(digits[i:i + 4], nrow=2) for i in range(0, 8, 4)]
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
