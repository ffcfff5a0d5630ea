"""Latent arithmetic (interpolation, attribute vectors) and the `tractable glow` commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.cli import main
from tractable.data import load_dataset
from tractable.errors import ShapeError
from tractable.models import Glow, GlowConfig
from tractable.models.glow.latents import (
    attribute_vector,
    encode_batched,
    interpolate,
    manipulate,
    shift,
)
from tractable.viz import MARK_COLOR, display_scale, grid_layout, tiles_of


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-mini", "test")
    return ds


@pytest.fixture(scope="module", params=[0, 10], ids=["unconditional", "class-conditional"])
def model(digits, request) -> Glow:
    """A small Glow, unconditional or with a class-conditional prior (the tools need no y)."""
    torch.manual_seed(0)
    m = Glow(GlowConfig(image_shape=(1, 28, 28), K=2, L=2, width=16, num_classes=request.param))
    m.data_dependent_init(digits.images[:64])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return m.eval()


def test_interpolation_starts_and_ends_at_the_real_images(model, digits):
    a, b = digits.images[:2], digits.images[2:4]
    strip = model.decode(interpolate(model.encode(a), model.encode(b), steps=5))
    assert strip.shape == (10, 1, 28, 28)
    assert torch.equal(strip[0], a[0]) and torch.equal(strip[4], b[0])
    assert torch.equal(strip[5], a[1]) and torch.equal(strip[9], b[1])
    assert not torch.equal(strip[2], a[0]) and not torch.equal(strip[2], b[0])


def test_latents_of_a_class_conditional_model_need_no_label(digits):
    torch.manual_seed(0)
    m = Glow(GlowConfig(image_shape=(1, 28, 28), K=2, L=2, width=16, num_classes=10)).eval()
    x, y = digits.images[:3], digits.labels[:3]
    with torch.no_grad():
        z = m.encode(x)
        for a, b in zip(z, m.encode(x, y), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(m.decode(z), x) and torch.equal(m.decode(z, y), x)
    with pytest.raises(ShapeError, match=r"must have shape \[3\]"):
        m.encode(x, y[:2])


def test_interpolation_is_linear_on_every_level():
    za = [torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 1, 1)]
    zb = [torch.ones(1, 2, 3, 3), torch.full((1, 4, 1, 1), 4.0)]
    path = interpolate(za, zb, steps=5)
    torch.testing.assert_close(path[0][:, 0, 0, 0], torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(path[1][:, 0, 0, 0], torch.tensor([0, 1.0, 2.0, 3.0, 4.0]))


def test_attribute_vector_is_difference_of_group_means_on_every_level():
    z = [torch.tensor([[1.0], [3.0], [10.0], [20.0]]), torch.tensor([[0.0], [0.0], [4.0], [8.0]])]
    has = torch.tensor([False, False, True, True])
    v = attribute_vector(z, has)
    torch.testing.assert_close(v[0], torch.tensor([[13.0]]))  # 15 - 2
    torch.testing.assert_close(v[1], torch.tensor([[6.0]]))  # 6 - 0
    torch.testing.assert_close(shift(z, v, 0.5)[0], z[0] + 6.5)
    with pytest.raises(Exception, match="with and without"):
        attribute_vector(z, torch.ones(4, dtype=torch.bool))


def test_manipulation_with_alpha_zero_returns_the_images_exactly(model, digits):
    latents = encode_batched(model, digits.images[:200], batch_size=64)
    assert latents[0].shape[0] == 200
    v = attribute_vector(latents, digits.labels[:200] == 1)
    x = digits.images[200:203]
    grid = model.decode(manipulate(model.encode(x), v, [-1.0, 0.0, 1.0]))
    assert grid.shape == (9, 1, 28, 28)
    assert torch.equal(grid[1::3], x)  # image-major rows, α = 0 in the middle
    assert not torch.equal(grid[0::3], x)


# ---- command line --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(model, tmp_path_factory):
    run = tmp_path_factory.mktemp("glowrun")
    model.save_pretrained(run / "model")  # the trainer's layout: RUN/model/config.json
    return run


def tiles(png, layout) -> list[np.ndarray]:
    """Cut a `save_grid` PNG back into uint8 [28, 28] images."""
    return [t[..., 0] for t in tiles_of(png, layout, display_scale(28, 28))]


def marked(png, layout, i: int) -> bool:
    """Whether tile i is framed in the mark colour (the pixels just outside it)."""
    arr = np.asarray(Image.open(png).convert("RGB"))
    top, left, h, w = layout.tile_box(i)
    frame = [arr[top - 1, left + w // 2], arr[top + h, left + w // 2],
             arr[top + h // 2, left - 1], arr[top + h // 2, left + w]]
    return all(tuple(p) == MARK_COLOR for p in frame)


def test_cli_interpolate_strip_ends_at_the_two_images(run_dir, digits, tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(digits.images[5, 0].numpy()).save(img)
    out = tmp_path / "strip.png"
    rc = main(["glow", "interpolate", str(run_dir), "--a", str(img), "--b", "7",
               "--data", "mnist-mini", "--steps", "6", "--out", str(out)])
    assert rc == 0 and "6-image interpolation" in capsys.readouterr().out
    # columns labelled a: a.png, t=0.20 ... t=0.80, b: #7; both ends framed
    layout = grid_layout(6, 6, (28, 28), col_labels=["a: a.png", "t=0.20", "b: #7"])
    assert Image.open(out).size == layout.size and layout.top > 0
    strip = tiles(out, layout)
    assert np.array_equal(strip[0], digits.images[5, 0].numpy())
    assert np.array_equal(strip[5], digits.images[7, 0].numpy())
    assert [marked(out, layout, i) for i in range(6)] == [True] + [False] * 4 + [True]


def test_cli_manipulate_writes_rows_of_alphas_with_the_original_at_zero(run_dir, digits,
                                                                        tmp_path):
    out = tmp_path / "grid.png"
    rc = main(["latent", "manipulate", str(run_dir), "--data", "mnist-mini", "--attribute",
               "1", "--alpha", "-1..1", "--columns", "3", "-n", "1", "--attr-images", "300",
               "--out", str(out)])  # `latent` is the generic name of `glow`
    assert rc == 0
    # columns α=-1, α=0 (original), α=+1 under a title; the original column framed
    layout = grid_layout(3, 3, (28, 28), col_labels=["α=0 (original)"], title="attribute")
    assert Image.open(out).size == layout.size
    left, middle, right = tiles(out, layout)
    assert [marked(out, layout, i) for i in range(3)] == [False, True, False]
    assert any(np.array_equal(middle, x[0].numpy()) for x in digits.images[digits.labels != 1])
    assert not np.array_equal(left, middle) and not np.array_equal(right, middle)


def test_cli_errors_are_one_line_messages(run_dir, tmp_path, capsys):
    assert main(["glow", "manipulate", str(run_dir), "--data", "mnist-mini",
                 "--attribute", "zebra", "--out", str(tmp_path / "g.png")]) == 2
    assert "unknown attribute 'zebra'" in capsys.readouterr().err
    big = tmp_path / "big.png"
    Image.new("L", (32, 32)).save(big)
    assert main(["glow", "interpolate", str(run_dir), "--a", str(big), "--b", str(big)]) == 2
    assert "takes 28x28" in capsys.readouterr().err
    assert main(["glow", "interpolate", str(run_dir), "--a", "3", "--b", "4"]) == 2
    assert "pass --data" in capsys.readouterr().err


def test_latent_tools_refuse_a_model_that_is_not_invertible(tmp_path, capsys):
    from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig

    PixelCNNPlusPlus(PixelCNNPlusPlusConfig(image_shape=(1, 28, 28), nr_resnet=0, nr_filters=4,
                                            nr_logistic_mix=2)).save_pretrained(tmp_path / "m")
    assert main(["latent", "interpolate", str(tmp_path / "m"), "--a", "1", "--b", "2",
                 "--data", "mnist-mini"]) == 2
    err = capsys.readouterr().err
    assert "needs an invertible model" in err and "glow" in err and "pixelcnn++ model" in err
