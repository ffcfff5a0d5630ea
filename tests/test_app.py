"""The app without a browser: upload validation, and what each tab computes
(`tractable.app.session`), on the bundled real MNIST digits."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.app.session import AppModel
from tractable.app.uploads import MAX_BYTES, UploadError, read_upload
from tractable.data import load_dataset
from tractable.errors import DataError, ShapeError
from tractable.models import Glow, GlowConfig, PixelCNNPlusPlus, PixelCNNPlusPlusConfig


def png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-mini", "test")
    return type(ds)(ds.images[:120], ds.labels[:120], ds.class_names, ds.name)


# ---- uploads -----------------------------------------------------------------------------
def test_an_image_of_the_right_size_is_taken_as_it_is(digits):
    arr = digits.images[0, 0].numpy()
    x, note = read_upload(png(Image.fromarray(arr)), (1, 28, 28))
    assert x.dtype == torch.uint8 and x.shape == (1, 28, 28)
    assert torch.equal(x[0], digits.images[0, 0]) and note == ""


def test_other_sizes_and_modes_are_padded_resized_and_converted():
    wide = Image.new("RGB", (90, 30), (255, 0, 0))
    wide.paste((0, 0, 255), (30, 0, 60, 30))  # a blue centre square on a red background
    x, note = read_upload(png(wide, "JPEG", quality=95), (3, 9, 9))
    assert x.shape == (3, 9, 9)
    assert note == "padded from 90x30 to 90x90 with its background colour; resized from " \
        "90x90 to 9x9"
    # padded with the background (red), not grey bars: the blue square is the middle third
    assert x[0, 0].float().mean() > 200 and x[2, 0].float().mean() < 60  # top row: red
    assert x[2, 4, 4] > 200 and x[0, 4, 4] < 60  # centre: blue
    grey_levels = x.permute(1, 2, 0).reshape(-1, 3).float()
    assert not ((grey_levels - grey_levels.mean(1, keepdim=True)).abs().max(1).values
                < 20).any()  # no grey pixel anywhere
    grey, _ = read_upload(png(wide), (1, 8, 8))
    assert grey.shape == (1, 8, 8)
    clear = Image.new("RGBA", (8, 8), (255, 255, 255, 0))  # transparent white: over black
    assert int(read_upload(png(clear), (1, 8, 8))[0].max()) == 0


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"hello, I am text", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not an image"),
    (b"0" * (MAX_BYTES + 1), "MiB"),
])
def test_non_images_and_oversized_files_are_refused(data, message):
    with pytest.raises(UploadError, match=message):
        read_upload(data, (1, 28, 28))


def test_huge_images_are_refused_before_decoding():
    huge = png(Image.new("1", (5000, 4000)))  # 20 M pixels in a few kB
    assert len(huge) < MAX_BYTES
    with pytest.raises(UploadError, match="5000x4000"):
        read_upload(huge, (1, 28, 28))


def test_animations_are_refused():
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(UploadError, match="animated"):
        read_upload(buf.getvalue(), (1, 8, 8))


# ---- what the tabs compute -------------------------------------------------------------------
@pytest.fixture(scope="module")
def pixelcnn(digits) -> AppModel:
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(1, 28, 28), nr_resnet=1, nr_filters=8,
                                 nr_logistic_mix=2, num_classes=10,
                                 class_names=tuple(digits.class_names))
    model = PixelCNNPlusPlus(cfg)
    model.data_dependent_init(digits.images[:32], digits.labels[:32])
    return AppModel("pcnn", model.eval(), digits, histogram_images=20)


@pytest.fixture(scope="module")
def glow(digits) -> AppModel:
    torch.manual_seed(0)
    model = Glow(GlowConfig(image_shape=(1, 28, 28), K=2, L=2, width=16))
    model.data_dependent_init(digits.images[:32])
    return AppModel("glow", model.eval(), digits, attribute_images=120)


def test_likelihood_is_the_marginal_and_the_map_sums_to_the_best_class_nll(pixelcnn, digits):
    x = digits.images[7]
    res = pixelcnn.likelihood(x)
    model, d = pixelcnn.model, pixelcnn.model.num_dims
    with torch.no_grad():
        per_class = torch.stack([model.log_prob(x[None], torch.tensor([k]))[0]
                                 for k in range(10)]).double()
    best = int(per_class.argmax())
    best_bpd = float(-per_class[best] / (d * math.log(2)))
    # log p(x) = logsumexp_k log p(x|k) − log K lies between max_k − log K and max_k
    assert best_bpd - 1e-6 <= res.bits_per_dim
    assert res.bits_per_dim <= best_bpd + math.log(10) / (d * math.log(2)) + 1e-6
    assert res.pixel_nll.shape == (28, 28)
    assert float(res.pixel_nll.sum()) == pytest.approx(float(-per_class[best]), rel=1e-5)
    assert str(best) in res.scored_as
    assert len(res.test_bpd) == 20
    assert res.percentile == pytest.approx(100 * float((res.test_bpd < res.bits_per_dim).mean()))


def test_sample_labels_blend_two_classes(pixelcnn):
    y = pixelcnn.labels(2, 7, 0.25, 3)
    assert y.shape == (3, 10) and y[0, 2] == pytest.approx(0.75) and y[0, 7] == pytest.approx(0.25)
    assert torch.equal(pixelcnn.labels(2, None, 0.5, 2), torch.tensor([2, 2]))
    a = pixelcnn.sample(2, 1.0, seed=3, class_a=2, class_b=7, weight_b=0.25)
    b = pixelcnn.sample(2, 1.0, seed=3, class_a=2, class_b=7, weight_b=0.25)
    assert a.shape == (2, 1, 28, 28) and torch.equal(a, b)
    with pytest.raises(ShapeError):
        pixelcnn.sample(0, 1.0, seed=0, class_a=1)
    with pytest.raises(ShapeError):
        pixelcnn.sample(1, 0.0, seed=0, class_a=1)
    with pytest.raises(ShapeError):
        pixelcnn.sample(1, 1.0, seed=0, class_a=10)


def test_completion_keeps_the_rows(pixelcnn, digits):
    x = digits.images[3]
    done = pixelcnn.complete(x, rows=14, n=3, seed=0, label=int(digits.labels[3]))
    assert done.shape == (3, 1, 28, 28)
    assert torch.equal(done[:, :, :14], x[None, :, :14].expand(3, -1, -1, -1))
    with pytest.raises(DataError, match="0..119"):
        pixelcnn.test_image(120)


def test_glow_edits_are_exact_at_zero_and_blends_end_at_both_images(glow, digits):
    a, b = digits.images[0], digits.images[1]
    assert len(glow.attribute_vectors()) == 10
    assert torch.equal(glow.edit(a, [0.0] * 10), a)  # exact encode/decode
    assert not torch.equal(glow.edit(a, [0.0, 0.0, 0.0, 2.0] + [0.0] * 6), a)
    start, path = glow.blend(a, b, 0.0)
    end, _ = glow.blend(a, b, 1.0)
    assert torch.equal(start, a) and torch.equal(end, b)
    assert path.shape == (8, 1, 28, 28) and torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert glow.likelihood(a).pixel_nll is None
    with pytest.raises(Exception, match="autoregressive"):
        glow.complete(a, rows=3, n=1, seed=0)


def test_the_page_builds_for_both_families(pixelcnn, glow):
    pytest.importorskip("gradio", reason="the app needs the app extra")
    from tractable.app.ui import build_app

    demo = build_app([pixelcnn, glow])
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert {"Sample", "Complete", "Likelihood", "Edit", "temperature", "rows to keep"} <= labels
    with pytest.raises(Exception, match="same name"):
        build_app([pixelcnn, pixelcnn])


def test_uploaded_numpy_images_stay_uint8():
    x, _ = read_upload(png(Image.fromarray(np.full((4, 4), 7, np.uint8))), (1, 4, 4))
    assert x.dtype == torch.uint8 and int(x.max()) == 7


# ---- the command line --------------------------------------------------------------------
def test_without_models_the_app_serves_the_shipped_ones(monkeypatch, capsys):
    from tractable import pretrained
    from tractable.app import main_models
    from tractable.cli import main

    served = main_models([], data="mnist-mini")
    assert [m.name for m in served] == pretrained.available() and len(served) >= 3
    assert main(["app", "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err
    monkeypatch.setattr(pretrained, "available", lambda: [])
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert "no model given" in err and len(err.strip().splitlines()) == 1


def test_the_edit_tab_serves_any_invertible_family(digits):
    """Edits and blends ask only for `Invertible` (encode/decode): a TarFlow gets them too,
    exact at α = 0 and at both ends of a blend."""
    from tractable.models.tarflow import TarFlow, TarFlowConfig

    torch.manual_seed(0)
    model = TarFlow(TarFlowConfig(image_shape=(1, 28, 28), num_classes=10,
                                  **TarFlow.tiny_settings))
    with torch.no_grad():  # output layers start at zero: without this the flow is the identity
        for block in model.blocks:
            block.out.weight.normal_(0.0, 0.05)
            block.out.bias.normal_(0.0, 0.05)
    flow = AppModel("tarflow", model.eval(), digits, attribute_images=60)
    a, b = digits.images[0], digits.images[1]
    assert len(flow.attribute_vectors()) == 10
    assert torch.equal(flow.edit(a, [0.0] * 10), a)
    assert not torch.equal(flow.edit(a, [0.0, 2.0] + [0.0] * 8), a)  # decodes, and moves
    start, path = flow.blend(a, b, 0.0)
    end, _ = flow.blend(a, b, 1.0)
    assert torch.equal(start, a) and torch.equal(end, b)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
