"""Glow's exact round trip on a model trained at a high learning rate, on real digits and on
uniform noise; non-finite samples and decodes are reported, never turned into pixels."""

from __future__ import annotations

import math

import pytest
import torch

from tractable.data import load_dataset
from tractable.errors import NumericalError, ShapeError
from tractable.models import Glow, GlowConfig
from tractable.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def hot_glow() -> Glow:
    """A small Glow after 60 Adamax steps at lr 1e-2 on real digits: its affine couplings
    contract hard, which is what breaks float32 round trips."""
    train = load_dataset("mnist-mini", "train").subset(2048, seed=0)
    torch.manual_seed(0)
    model = Glow(GlowConfig(image_shape=(1, 28, 28), K=4, L=2, width=32))
    cfg = TrainConfig(max_steps=60, lr=1e-2, warmup_steps=10, batch_size=32,
                      samples_per_eval=0, eval_every=10_000, progress=False, quiet=True)
    Trainer(model, train, None, cfg).fit()
    return model.eval()


def noise_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)


def test_real_digits_round_trip_exactly_after_high_lr_training(hot_glow):
    x = load_dataset("mnist-mini", "test").images[:256]
    with torch.no_grad():
        latents = hot_glow.encode(x)
        assert all(z.dtype == torch.float64 for z in latents)
        assert torch.equal(hot_glow.decode(latents), x)


def test_noise_round_trips_exactly_or_encode_says_which_images_cannot(hot_glow):
    """Every image either comes back bit for bit or `encode` refuses it, counting it; how
    many noise images a model can invert depends on how hard its couplings contract."""
    x = noise_images(64)
    with torch.no_grad():
        back = hot_glow.decode(hot_glow.encode(x, check=False), check_finite=False)
        ok = (back == x).flatten(1).all(1)
        if ok.any():  # float64 convolutions run image by image: a sub-batch rounds the same
            assert torch.equal(hot_glow.decode(hot_glow.encode(x[ok])), x[ok])
        if not ok.all():
            with pytest.raises(NumericalError, match=r"would not decode back exactly"):
                hot_glow.encode(x[~ok])
            with pytest.raises(NumericalError, match=rf"^{int((~ok).sum())} of 64 images"):
                hot_glow.encode(x)


def test_encode_in_float64_leaves_the_model_float32_and_gradients_flow(hot_glow):
    x = noise_images(2, seed=1)
    x_c = ((x.double() + torch.rand(x.shape, dtype=torch.float64)) / 256 - 0.5).requires_grad_()
    latents = hot_glow.encode(x_c)
    sum(z.sum() for z in latents).backward()
    assert x_c.grad is not None and torch.isfinite(x_c.grad).all()
    assert all(p.dtype == torch.float32 for p in hot_glow.parameters())


def blown_up_glow() -> Glow:
    """A Glow whose inverse overflows even in float64: the first ActNorm's inverse
    multiplies by e^900."""
    torch.manual_seed(0)
    model = Glow(GlowConfig(image_shape=(1, 4, 4), K=1, L=1, width=8)).eval()
    with torch.no_grad():
        model.levels[0].steps[0].actnorm.logs.fill_(-300.0)  # stored / 3: scale e^-900
    return model


def test_non_finite_samples_are_reported_with_their_count():
    model = blown_up_glow()
    with pytest.raises(NumericalError, match=r"^5 of 5 decoded images came out of the flow's "
                                             r"inverse as NaN or inf.*lower the temperature"):
        model.sample(5)
    with pytest.raises(NumericalError, match=r"^2 of 2 decoded images") as edit:
        model.decode([torch.ones(2, 4, 2, 2, dtype=torch.float64)])
    # decoding moved latents (an edit, a blend) has no temperature to lower: name |alpha|
    assert "temperature" not in str(edit.value) and "|alpha|" in str(edit.value)
    assert model.decode([torch.ones(2, 4, 2, 2)], check_finite=False).dtype == torch.uint8


@pytest.mark.parametrize("t", [math.inf, math.nan, -1.0])
def test_temperature_must_be_finite_and_non_negative(t):
    model = Glow(GlowConfig(image_shape=(1, 4, 4), K=1, L=1, width=8))
    with pytest.raises(ShapeError, match="temperature"):
        model.sample(2, temperature=t)
