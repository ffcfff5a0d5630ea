"""`--data hf:NAME`: a Hugging Face dataset by name on the command line, here a local
parquet folder the `datasets` library reads (no network), holding real digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_errors import fails
from tractable.cli import main
from tractable.data import load_dataset
from tractable.evaluation import evaluate_bpd

datasets = pytest.importorskip("datasets")
TRAIN, TEST = slice(0, 12), slice(12, 20)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder as the Hub holds one: data/{train,test}-*.parquet, an image column
    and a ClassLabel column, from the bundled mnist-mini test digits."""
    from PIL import Image

    digits = load_dataset("mnist-mini", "test")
    root = tmp_path_factory.mktemp("hf") / "digits"
    (root / "data").mkdir(parents=True)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=digits.class_names)})
    for split, rows in (("train", TRAIN), ("test", TEST)):
        table = datasets.Dataset.from_dict(
            {"image": [Image.fromarray(x[0].numpy()) for x in digits.images[rows]],
             "label": digits.labels[rows].tolist()}, features=features)
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def test_load_dataset_reads_both_splits_exactly(hf_folder: Path, tmp_path: Path) -> None:
    digits = load_dataset("mnist-mini", "test")
    for split, rows in (("train", TRAIN), ("test", TEST)):
        ds = load_dataset(f"hf:{hf_folder}", split, root=tmp_path / "cache")
        assert torch.equal(ds.images, digits.images[rows])
        assert torch.equal(ds.labels, digits.labels[rows])
        assert ds.class_names == digits.class_names


def test_eval_takes_hf_data_on_the_command_line(hf_folder: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "pretrained:pixelcnn++-mnist", "--data", f"hf:{hf_folder}",
                 "--root", str(tmp_path / "cache"), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    import tractable

    digits = load_dataset("mnist-mini", "test")
    same = type(digits)(digits.images[TEST], digits.labels[TEST], digits.class_names, "x")
    expected = evaluate_bpd(tractable.load("pretrained:pixelcnn++-mnist"), same).bits_per_dim
    assert out["num_images"] == 8 and out["bits_per_dim"] == pytest.approx(expected, rel=1e-6)


def test_a_missing_hf_dataset_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    fails(["data", "show", f"hf:{tmp_path / 'nothing-here'}", "--root", str(tmp_path / "c"),
           "--out", str(tmp_path / "g.png")], capsys, "hf:")
