"""Naive autoregressive sampler: output contract, reproducibility, the per-pixel generator
contract a cached sampler must match, channel-sequential stepping, dispatch and errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from tractable.config import ModelConfig
from tractable.errors import ShapeError, TractableError
from tractable.models import AutoregressiveModel, PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.sampling import sample_with
from tractable.sampling.cached import sample_cached_with_params


def tiny(channels: int, **options) -> PixelCNNPlusPlus:
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(channels, 4, 4), nr_resnet=1, nr_filters=8,
                                 nr_logistic_mix=2, dropout=0.5, **options)
    return PixelCNNPlusPlus(cfg)


def test_samples_are_uint8_in_shape_and_reproducible():
    model = tiny(3, coord_conv=True, nonlocal_blocks=2)
    model.train()
    a = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 3, 4, 4) and a.dtype == torch.uint8
    assert model.training  # the sampler's eval mode (no dropout) is undone afterwards
    b = model.sample(3, generator=torch.Generator().manual_seed(0))
    c = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len(torch.unique(a)) > 10  # not a constant image


@pytest.mark.parametrize("channels,num_classes", [(1, 0), (3, 4)])
def test_each_pixel_is_the_likelihoods_draw_from_its_own_params(channels, num_classes):
    """Replaying the documented generator contract reproduces the sample exactly.

    By causality the params at pixel i computed from the finished image equal those the
    sampler saw when it drew pixel i; drawing each pixel from them in raster order with
    a fresh generator of the same seed must give back the same image. Bit for bit with the
    naive sampler (the same forward pass on the same earlier pixels; later ones are never
    read); the cached one sums in another order (see test_sampling_cached).
    """
    model = tiny(channels, num_classes=num_classes).eval()
    y = torch.tensor([0.2, 0.8, 0.0, 0.0]).expand(2, -1) if num_classes else None
    images = model.sample(2, y=y, generator=torch.Generator().manual_seed(5), sampler="naive")
    with torch.no_grad():
        params = model(model.scale(images), y)
    g = torch.Generator().manual_seed(5)
    replay = torch.zeros(2, channels, 4, 4, dtype=torch.long)
    for r in range(4):
        for c in range(4):
            pixel = params[:, :, r:r + 1, c:c + 1]
            replay[:, :, r, c] = model.likelihood.sample(pixel, 1.0, g)[:, :, 0, 0]
    assert torch.equal(replay.to(torch.uint8), images)


def test_temperature_one_is_the_default_and_low_temperature_changes_samples():
    model = tiny(1).eval()
    base = model.sample(2, generator=torch.Generator().manual_seed(2))
    same = model.sample(2, temperature=1.0, generator=torch.Generator().manual_seed(2))
    cold = model.sample(2, temperature=0.05, generator=torch.Generator().manual_seed(2))
    assert torch.equal(base, same)
    assert not torch.equal(base, cold)


def test_float32_cached_sampler_draws_from_the_naive_params_on_a_tiny_model():
    """In float32 the cached network sums in another order than the full forward pass, so
    the two samplers' images could differ where a draw lands within rounding of a bin edge
    (float64 equality: test_sampling_cached); what must hold is that each pixel is drawn
    from the params the naive sampler computes for it, to rounding."""
    model = tiny(1).eval()
    cached = sample_with(model, 2, sampler="cached", generator=torch.Generator().manual_seed(3))
    images, params = sample_cached_with_params(model, 2,
                                               generator=torch.Generator().manual_seed(3))
    assert torch.equal(images, cached)  # the same sampling loop, the same draws
    with torch.no_grad():
        naive = model(model.scale(images))  # by causality: what the naive sampler saw
    torch.testing.assert_close(params, naive, rtol=0, atol=1e-6)
    assert naive.std() > 0.01  # 10^4 times the tolerance: not near-constant maps


def test_bad_arguments_raise_tractable_errors():
    model = tiny(1)
    with pytest.raises(TractableError, match="positive integer"):
        model.sample(0)
    with pytest.raises(TractableError, match="temperature"):
        model.sample(1, temperature=0.0)
    with pytest.raises(TractableError, match="unknown sampler 'fast'"):
        model.sample(1, sampler="fast")
    with pytest.raises(ShapeError, match="unconditional"):
        model.sample(1, y=torch.tensor([1]))


# ---- channel-sequential models -----------------------------------------------------------
class _Passthrough:
    """A 'likelihood' whose sample is its params: makes the sampler's bookkeeping visible."""

    def sample(self, params: Tensor, temperature: float, generator) -> Tensor:
        return params.round().long()


@dataclass
class _CounterConfig(ModelConfig):
    pass


class _CountingModel(AutoregressiveModel):
    """Predicts each sub-pixel as (the previous sub-pixel in R,G,B raster order) + 1.

    Channel k of a pixel depends on channel k-1 of the same pixel, so only a sampler that
    steps channel by channel produces the sequence 0, 1, 2, ... over all sub-pixels.
    """

    channel_sequential = True

    def __init__(self, config: _CounterConfig | None = None) -> None:
        super().__init__(_CounterConfig(image_shape=(3, 2, 3)))
        self.likelihood = _Passthrough()
        self.dummy = nn.Parameter(torch.zeros(()))

    def scale(self, x: Tensor) -> Tensor:
        return x.float()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        flat = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # raster order, RGB inside
        previous = torch.cat([torch.full_like(flat[:, :1], -1), flat[:, :-1]], dim=1)
        return (previous + 1).view(x.shape[0], 2, 3, 3).permute(0, 3, 1, 2)


def test_channel_sequential_models_are_sampled_one_channel_at_a_time():
    out = _CountingModel().sample(2)
    want = torch.arange(18).view(2, 3, 3).permute(2, 0, 1).expand(2, -1, -1, -1)
    assert torch.equal(out, want.to(torch.uint8))
