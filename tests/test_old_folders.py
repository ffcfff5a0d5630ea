"""Run folders written by tractable 0.1.0 load, score the same and sample with today's code.

The folders and the scores 0.1.0 computed for them are in `tests/fixtures/tractable-0.1.0`
(its README says how they were made). Config formats have moved on since (Glow's bounded
scales, for one); a folder keeps loading through the migrations and scoring as it did.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tractable
from tractable.data import ImageDataset, load_dataset
from tractable.evaluation import evaluate_bpd
from tractable.run_folder import open_folder

FIXTURES = Path(__file__).parent / "fixtures" / "tractable-0.1.0"
RECORDED = json.loads((FIXTURES / "scores.json").read_text())["bits_per_dim"]
# Today's code computes the same sums by other paths (fused kernels, channels_last, a
# different batch split of the dequantization noise for Glow): equal to float32 rounding,
# far below what any change of meaning would move.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def first_200() -> ImageDataset:
    test = load_dataset("mnist-mini", "test")
    return ImageDataset(test.images[:200], test.labels[:200], test.class_names, test.name)


@pytest.fixture
def old_run(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of one 0.1.0 run folder (loading must not need to write into it)."""
    return Path(shutil.copytree(FIXTURES / request.param, tmp_path / request.param))


@pytest.mark.parametrize("old_run", sorted(RECORDED), indirect=True)
@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_an_old_run_folder_scores_what_0_1_0_computed(old_run: Path, weights: str,
                                                      first_200: ImageDataset) -> None:
    folder = open_folder(old_run)
    assert folder.data == "mnist-mini" and folder.model_dir == old_run / "model"
    torch.manual_seed(0)
    model = tractable.load(old_run, weights=weights)
    assert model.family == old_run.name
    bpd = evaluate_bpd(model, first_200, batch_size=100).bits_per_dim
    assert abs(bpd - RECORDED[old_run.name][weights]) < TOLERANCE


@pytest.mark.parametrize("old_run", sorted(RECORDED), indirect=True)
def test_an_old_run_folder_samples_every_class(old_run: Path) -> None:
    model = tractable.load(old_run)
    k = model.config.num_classes
    y = torch.arange(k) if k else None
    x = model.sample(k or 2, y=y, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (k or 2, *model.config.image_shape)
    with torch.no_grad():
        assert torch.isfinite(model.log_prob(x, y)).all()  # in the model's support
    again = model.sample(k or 2, y=y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, x)  # the generator alone decides the samples
