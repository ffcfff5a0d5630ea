"""Image completion: the known raster prefix is kept, the rest is drawn exactly like a
sample (same per-pixel generator contract), and the cached sampler, started from the
prefix, gives the same completions as the naive one (exactly, in float64, where the two
sum orders differ by ~1e-16: too little to move a draw across a bin edge)."""

from __future__ import annotations

import pytest
import torch

from tractable.errors import ShapeError
from tractable.models import GatedPixelCNN, PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.models.gated_pixelcnn import GatedPixelCNNConfig
from tractable.sampling.prefix import raster_prefix_length


def pixelcnn(channels: int, **options) -> PixelCNNPlusPlus:
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(channels, 8, 8), nr_filters=8, nr_logistic_mix=3,
                                 **{"nr_resnet": 1, **options})
    model = PixelCNNPlusPlus(cfg)
    with torch.no_grad():  # fresh weight norm has b = 0, g = 1: make every term count
        for name, p in model.named_parameters():
            if name.endswith(".b"):
                p.copy_(torch.randn_like(p) * 0.3)
            elif name.endswith(".g"):
                p.copy_(1.0 + torch.randn_like(p) * 0.2)
    return model


def gated(channels: int, **options) -> GatedPixelCNN:
    torch.manual_seed(0)
    cfg = GatedPixelCNNConfig(image_shape=(channels, 8, 8), n_filters=12, head_filters=12,
                              **{"n_layers": 3, **options})
    return GatedPixelCNN(cfg)


def images(channels: int, count: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (count, channels, 8, 8),
                         generator=torch.Generator().manual_seed(3), dtype=torch.uint8)


def labels(model, soft: bool) -> torch.Tensor | None:
    k = model.config.num_classes
    if not k:
        return None
    if soft:
        return torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return torch.tensor([2, 0])


CASES = [
    pytest.param(lambda: pixelcnn(1), False, id="pixelcnn-grey"),
    pytest.param(lambda: pixelcnn(3, num_classes=3), True, id="pixelcnn-rgb-soft"),
    pytest.param(lambda: pixelcnn(1, nonlocal_blocks=2, coord_conv=True), False,
                 id="pixelcnn-attention-coordconv"),
    pytest.param(lambda: gated(1, n_levels=4, num_classes=3), False, id="gated-4-levels"),
    pytest.param(lambda: gated(3), False, id="gated-rgb-channel-sequential"),
]


@pytest.mark.parametrize("make,soft", CASES)
@pytest.mark.parametrize("rows,cols", [(3, 5), (0, 4), (7, 0)])
def test_cached_completion_equals_naive_in_float64(make, soft, rows, cols):
    model = make().double()
    x = images(model.config.image_shape[0])
    y = labels(model, soft)
    out = {s: model.complete(x, rows=rows, cols=cols, n=2, y=y,
                             generator=torch.Generator().manual_seed(11), sampler=s)
           for s in ("naive", "cached")}
    assert out["cached"].shape == (4, *model.config.image_shape)
    assert out["cached"].dtype == torch.uint8
    assert torch.equal(out["cached"], out["naive"])
    # the two completions of one image differ somewhere after the prefix
    assert not torch.equal(out["cached"][0], out["cached"][1])


@pytest.mark.parametrize("make", [lambda: pixelcnn(3, num_classes=3),
                                  lambda: gated(1, n_levels=4)])
def test_prefix_is_kept_and_the_rest_follows_the_per_pixel_generator_contract(make):
    """By causality, the params of each unknown pixel computed from the finished completion
    are those it was drawn from; replaying the draws in raster order from the same seed
    reproduces the completion, so it is a sample of p(rest | prefix). Bit for bit with the
    naive sampler (the same forward pass on the same earlier pixels); the cached one sums
    in another order, and equals it exactly only in float64 (above)."""
    model = make().eval()
    c, h, w = model.config.image_shape
    x = images(c)
    y = torch.tensor([1, 2]) if model.config.num_classes else None
    rows, cols = 2, 3
    done = model.complete(x, rows=rows, cols=cols, n=3, y=y,
                          generator=torch.Generator().manual_seed(5), sampler="naive")
    first = raster_prefix_length((c, h, w), rows, cols)
    kept = model.from_targets(model.targets(x)).repeat_interleave(3, dim=0)
    flat_done, flat_kept = done.flatten(2), kept.flatten(2)
    assert torch.equal(flat_done[:, :, :first], flat_kept[:, :, :first])
    assert not torch.equal(flat_done[:, :, first:], flat_kept[:, :, first:])
    with torch.no_grad():
        params = model(model.scale(done), None if y is None else y.repeat_interleave(3))
    g = torch.Generator().manual_seed(5)
    replay = model.targets(done).clone()
    for pos in range(first, h * w):
        r, col = divmod(pos, w)
        replay[:, :, r, col] = model.likelihood.sample(params[:, :, r:r + 1, col:col + 1],
                                                       1.0, g)[:, :, 0, 0]
    assert torch.equal(model.from_targets(replay), done)


def test_keeping_nothing_is_sampling_and_keeping_everything_returns_the_input():
    model = pixelcnn(1, num_classes=3)
    x = images(1)
    y = torch.tensor([0, 2])
    none_kept = model.complete(x, rows=0, n=1, y=y, generator=torch.Generator().manual_seed(2))
    sampled = model.sample(2, y=y, generator=torch.Generator().manual_seed(2))
    assert torch.equal(none_kept, sampled)
    assert torch.equal(model.complete(x, rows=8, n=2, y=y), x.repeat_interleave(2, dim=0))


def test_bad_completion_arguments_raise_shape_errors():
    model = pixelcnn(1)
    x = images(1)
    for kwargs in ({"rows": 9}, {"rows": -1}, {"rows": 2, "cols": 8}, {"rows": 8, "cols": 1},
                   {"rows": 2, "n": 0}, {"rows": 2.5}):
        with pytest.raises(ShapeError):
            model.complete(x, **kwargs)
    with pytest.raises(ShapeError, match="labels"):
        pixelcnn(1, num_classes=3).complete(x, rows=2, y=torch.tensor([1]))
    with pytest.raises(ShapeError, match="shape"):
        model.complete(images(3), rows=2)


def test_only_samplers_that_keep_pixels_take_a_prefix():
    from tractable.errors import TractableError
    from tractable.models import Glow, GlowConfig
    from tractable.sampling import Prefix, get_sampler, sample_with

    assert get_sampler("naive").takes_prefix and get_sampler("cached").takes_prefix
    assert not get_sampler("prior").takes_prefix
    glow = Glow(GlowConfig(image_shape=(1, 8, 8), K=1, L=1, width=4))
    with pytest.raises(TractableError, match="cannot keep known pixels"):
        sample_with(glow, 1, sampler="prior",
                    prefix=Prefix(torch.zeros(1, 1, 8, 8, dtype=torch.long), 3))
    model = pixelcnn(1)
    with pytest.raises(ShapeError, match="prefix images"):
        sample_with(model, 2, sampler="naive",
                    prefix=Prefix(torch.zeros(1, 1, 8, 8, dtype=torch.long), 3))
    with pytest.raises(ShapeError, match="prefix length"):
        sample_with(model, 1, sampler="cached",
                    prefix=Prefix(torch.zeros(1, 1, 8, 8, dtype=torch.long), 65))
