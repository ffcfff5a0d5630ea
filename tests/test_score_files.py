"""`tractable score MODEL FILES...`: image files and folders scored as the model's data
looks (polarity, aspect, size, each change noted), and folders too small to split say
what to pass, which then works."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tractable
from cli_errors import fails
from tractable.cli import main
from tractable.data import ImageDataset, load_dataset
from tractable.data.image_input import dataset_background, fit_image
from tractable.evaluation.scoring import score_dataset

MODEL = "pretrained:pixelcnn++-mnist"


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("mnist-mini", "test")


def photo_of(digit: np.ndarray) -> Image.Image:
    """A 300x400 photo-like page: the digit drawn dark on white, 300 px square, centred."""
    big = Image.fromarray(255 - digit).resize((300, 300), Image.Resampling.LANCZOS)
    page = Image.new("L", (300, 400), 255)
    page.paste(big, (0, 50))
    return page.convert("RGB")


def test_a_dark_on_light_page_becomes_the_digit_the_model_knows(digits) -> None:
    digit = digits.images[0, 0].numpy()
    x, notes = fit_image(photo_of(digit), (1, 28, 28), dark_background=True)
    assert notes == ["inverted: dark on light, the model's data is light on dark",
                     "padded from 300x400 to 400x400 with its background colour",
                     "resized from 400x400 to 28x28"]
    # light on dark like MNIST: the padding is black background, the digit bright
    assert x[0, :3].float().mean() < 10 and x.float().max() > 200
    assert dataset_background(digits.images) is True
    kept, _ = fit_image(photo_of(digit), (1, 28, 28), dark_background=None)
    assert kept[0, :3].float().mean() > 245  # unknown polarity: left dark on light


def test_score_prints_each_file_with_its_notes_and_writes_csv(digits, tmp_path: Path,
                                                              capsys) -> None:
    (tmp_path / "more").mkdir()
    photo_of(digits.images[0, 0].numpy()).save(tmp_path / "page.jpg", quality=95)
    Image.fromarray(digits.images[1, 0].numpy()).save(tmp_path / "more" / "plain.png")
    out = tmp_path / "s.csv"
    assert main(["score", MODEL, str(tmp_path / "page.jpg"), str(tmp_path / "more"),
                 "--out", str(out)]) == 0
    cap = capsys.readouterr()
    notes = [line for line in cap.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "page.jpg: inverted" in notes[0] and "padded" in notes[0]
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["file"]).name for r in rows] == ["page.jpg", "plain.png"]
    # the plain 28x28 digit is scored as it is: its marginal bits/dim from the Python API
    model = tractable.load(MODEL)
    one = ImageDataset(digits.images[1:2], None, name="x")
    expected = score_dataset(model, one, marginal=True).bits_per_dim[0]
    assert float(rows[1]["bits_per_dim"]) == pytest.approx(expected, rel=1e-6)
    assert f"plain.png: {float(rows[1]['bits_per_dim']):.4f} bits/dim" in cap.out


def test_a_non_image_and_a_missing_path_are_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.png").write_text("hello")
    fails(["score", MODEL, str(tmp_path / "notes.png")], capsys, "not an image")
    fails(["score", MODEL, str(tmp_path / "nope.png")], capsys, "does not exist")
    fails(["score", MODEL], capsys, "tractable score MODEL my.png")


def test_a_one_image_folder_names_the_holdout_that_works(digits, tmp_path: Path,
                                                         capsys) -> None:
    from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig

    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(digits.images[2, 0].numpy()).save(folder / "digit.png")
    unconditional = tmp_path / "model"  # the folder's image has no label
    PixelCNNPlusPlus(PixelCNNPlusPlusConfig(image_shape=(1, 28, 28), nr_resnet=1,
                                            nr_filters=8, nr_logistic_mix=2)
                     ).save_pretrained(unconditional)
    model = str(unconditional)
    err = fails(["eval", model, "--data", f"folder:{folder}"], capsys, "--holdout 1")
    assert "holdout > 0" not in err and "holdout=0.1" in err
    assert main(["eval", model, "--data", f"folder:{folder}", "--holdout", "1",
                 "--json", "--no-progress"]) == 0
    assert '"num_images": 1' in capsys.readouterr().out
    fails(["eval", model, "--data", f"folder:{folder}", "--holdout", "0"], capsys,
          "--holdout 0.1")
    fails(["eval", model, "--data", f"folder:{folder}", "--holdout", "1", "--split",
           "train"], capsys, "leaves no train split")


def test_only_greyscale_drawings_have_a_polarity(shared_data: Path) -> None:
    """Fashion-MNIST is light on dark like MNIST; CIFAR photographs have no polarity, so
    their uploads are never inverted."""
    fashion = load_dataset("fashion-mnist", "test", root=shared_data / "fashion-mnist")
    assert dataset_background(fashion.images) is True
    cifar = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000",
                         batches=[1])
    assert dataset_background(cifar.images) is None
    grey_cifar = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000",
                              batches=[1], channels=1)
    assert dataset_background(grey_cifar.images) is None
    assert dataset_background(255 - load_dataset("mnist-mini", "test").images) is False
