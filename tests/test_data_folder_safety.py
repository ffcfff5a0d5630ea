"""Image folders: a held-out split per class, recorded by training; 16-bit PNGs scaled;
images resized as they are decoded; decompression bombs refused with one clear line."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.cli import main
from tractable.data import load_dataset, load_image_folder
from tractable.errors import DataError
from tractable.training import TrainConfig, train
from tractable.training.checkpoint import read_json

DIGITS = load_dataset("mnist-mini", "test")


def write_digits(folder, n, per_class=False):
    for i in range(n):
        sub = folder / str(int(DIGITS.labels[i])) if per_class else folder
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(DIGITS.images[i, 0].numpy()).save(sub / f"{i:03d}.png")


def test_class_folders_are_held_out_per_class(tmp_path):
    write_digits(tmp_path, 60, per_class=True)
    train_ds = load_image_folder(tmp_path, holdout=0.2)
    test_ds = load_image_folder(tmp_path, "test", holdout=0.2)
    digits = [int(name) for name in test_ds.class_names]  # folder "3" -> class of digit 3
    counts = torch.bincount(DIGITS.labels[:60], minlength=10)[digits]
    expected = torch.ceil(counts.double() * 0.2).long().clamp(min=1) * (counts >= 2)
    assert torch.equal(test_ds.class_counts(), expected)
    assert len(train_ds) + len(test_ds) == 60
    assert torch.equal(train_ds.class_counts() + test_ds.class_counts(), counts)


def test_training_on_a_flat_folder_records_the_split(tmp_path, capsys):
    write_digits(tmp_path / "imgs", 40)
    out = tmp_path / "run"
    train("pixelcnn++", TrainConfig(data=f"folder:{tmp_path / 'imgs'}", out=str(out),
                                    data_options={"holdout": 0.25}, max_steps=1,
                                    batch_size=8, samples_per_eval=0, progress=False),
          overrides={"nr_resnet": 1, "nr_filters": 4, "nr_logistic_mix": 1, "dropout": 0.0})
    note = read_json(out / "run.json")["data_split"]
    assert "10 images (holdout=0.25, chosen by path hash) are its test split" in note
    assert f"data: {note}" in capsys.readouterr().err


def test_16_bit_pngs_are_scaled_not_clipped(tmp_path):
    digit = DIGITS.images[0, 0].numpy().astype(np.uint16)
    Image.fromarray(digit * 257).save(tmp_path / "wide.png")  # 0..255 -> 0..65535
    with Image.open(tmp_path / "wide.png") as img:
        assert img.mode.startswith("I")
    ds = load_image_folder(tmp_path, holdout=0)
    assert torch.equal(ds.images[0, 0], DIGITS.images[0, 0])


def test_images_are_resized_as_they_are_decoded(tmp_path, monkeypatch):
    """At most one full-size decoded image is alive at a time (memory ~ the target size)."""
    big = np.kron(DIGITS.images[0, 0].numpy(), np.ones((20, 20), dtype=np.uint8))  # 560x560
    for i in range(6):
        Image.fromarray(big).save(tmp_path / f"{i}.png")
    alive: set[int] = set()
    peak = [0]
    real_load = Image.Image.load

    def load(self):
        if self.size == (560, 560) and id(self) not in alive:
            alive.add(id(self))
            weakref.finalize(self, alive.discard, id(self))
            peak[0] = max(peak[0], len(alive))
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", load)
    ds = load_image_folder(tmp_path, size=28, holdout=0)
    assert ds.shape == (1, 28, 28) and len(ds) == 6
    assert peak[0] <= 2, peak[0]


def test_decompression_bomb_is_one_clear_error(tmp_path, monkeypatch, capsys):
    write_digits(tmp_path, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 28x28 = 784 > 2 x 100
    with pytest.raises(DataError, match="decompression bomb"):
        load_image_folder(tmp_path)
    assert main(["data", "show", f"folder:{tmp_path}", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tractable: error: ") and "decompression bomb" in err
    assert err.count("\n") == 1
