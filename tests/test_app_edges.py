"""The app's edges, without a browser: uploads brought to the model's data (padded with
their background, inverted to its polarity, said in the caption), a refused upload shown
once and clearing what was shown for the previous image, one terminal line per refused
input, no label badge over grids with their own headers, and a model without test images
offering none."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.app.session import AppModel
from tractable.data import load_dataset
from tractable.errors import ShapeError
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig

gr = pytest.importorskip("gradio", reason="the app needs the app extra")


@pytest.fixture(scope="module")
def page():
    from tractable.app.ui import build_app

    digits = load_dataset("mnist-mini", "test")
    digits = type(digits)(digits.images[:40], digits.labels[:40], digits.class_names, "mnist")
    torch.manual_seed(0)
    model = PixelCNNPlusPlus(PixelCNNPlusPlusConfig(
        image_shape=(1, 28, 28), nr_resnet=1, nr_filters=8, nr_logistic_mix=2)).eval()
    with_test = AppModel("digits", model, digits, histogram_images=10)
    without = AppModel("no-data", model, None, no_test_reason="fashion-mnist is not here")
    return build_app([with_test, without]), with_test, without, digits


def handlers(demo, name: str) -> list:
    return [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name]


def by_id(demo, elem_id: str):
    (block,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    return block


def upload(tmp_path, img: Image.Image | bytes, name: str = "up.png") -> str:
    path = tmp_path / name
    if isinstance(img, bytes):
        path.write_bytes(img)
    else:
        img.save(path)
    return str(path)


def test_a_dark_on_light_tall_upload_is_inverted_and_padded(page, tmp_path, capsys):
    demo, m, _, digits = page
    assert m.dark_background is True
    page_img = Image.new("L", (300, 400), 255)
    page_img.paste(Image.fromarray(255 - digits.images[0, 0].numpy()).resize((300, 300)),
                   (0, 50))
    take = handlers(demo, "take_upload")[0].fn
    state, preview, caption, cleared = take("digits", upload(tmp_path, page_img))
    assert "inverted: dark on light" in caption and "padded from 300x400 to 400x400" in caption
    x = np.asarray(state["image"])
    assert x.shape == (1, 28, 28) and x[0, :2].max() < 10  # black padding, no grey bars
    assert x.max() > 200 and cleared is None and preview is not None


def test_a_refused_upload_is_said_once_and_clears_the_image(page, tmp_path, capsys):
    demo, *_ = page
    take = handlers(demo, "take_upload")[0].fn
    result = take("digits", upload(tmp_path, b"not an image at all", "bad.png"))
    assert result[0] is None and result[1] is None and result[3] is None  # nothing kept
    assert result[2].startswith("**upload refused:**") and "not an image" in result[2]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "refused" in err


def test_a_new_or_refused_image_clears_the_results_of_the_last_one(page):
    demo, *_ = page
    clearers = {tuple(getattr(o, "elem_id", None) for o in f.outputs): f.fn
                for f in demo.fns.values()
                if any(event == "change" for _, event in f.targets)
                and getattr(f.fn, "__name__", "") == "<lambda>"}
    assert ("score", "heatmap", "histogram") in clearers
    assert ("completions-out", None) in clearers
    assert ("edited", "blended", "blend-strip") in clearers
    for outputs, clear in clearers.items():
        values = clear()
        assert len(values) == len(outputs), outputs
        assert all(v is None or v == "" for v in values), (outputs, values)


def test_refused_input_is_one_terminal_line_and_no_traceback(capsys):
    from tractable.app.ui import _errors_shown

    def do_sample():
        raise ShapeError("temperature must be in (0, 2],\ngot 7")

    with pytest.raises(gr.Error) as caught:
        _errors_shown(do_sample)()
    assert caught.value.print_exception is False  # Gradio prints no traceback
    err = capsys.readouterr().err
    assert err == "tractable app: do sample: refused: temperature must be in (0, 2], got 7\n"


def test_grids_with_their_own_headers_have_no_label_badge(page):
    demo, *_ = page
    assert by_id(demo, "completions-out").show_label is False
    assert by_id(demo, "histogram").show_label is False


def test_a_model_without_test_images_offers_none_and_says_why(page):
    demo, _, without, _ = page
    assert "no test images (fashion-mnist is not here)" in without.describe()
    switch = handlers(demo, "switch")[0].fn
    updates = switch("no-data")
    pickers = updates[-8:]  # (index, "Use test image") of the four pickers
    assert all(u.get("visible") is False for u in pickers)
    assert all(u.get("visible") is True for u in switch("digits")[-8:])
    score = handlers(demo, "do_score")[0].fn
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    text, _, hist = score("no-data", {"image": image.numpy(), "label": None})
    assert hist is None and "No test-set histogram: no test images (fashion-mnist" in text
