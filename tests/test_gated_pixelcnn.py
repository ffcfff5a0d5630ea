"""Gated PixelCNN: causality without a blind spot, normalization, levels, conditioning,
focal loss, save/load, sampling, and a short training run on real MNIST."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import tractable
from tractable.data.idx import read_idx
from tractable.errors import ConfigError, ShapeError
from tractable.models.gated_pixelcnn import (
    GatedPixelCNN,
    GatedPixelCNNConfig,
    dequantize_levels,
    quantize_levels,
)
from tractable.nn.masked import HorizontalStackConv, MaskedConv2d, channel_groups


def _model(c=1, size=8, classes=0, seed=0, **kw) -> GatedPixelCNN:
    torch.manual_seed(seed)
    cfg = dict(image_shape=(c, size, size), n_layers=5, n_filters=6, head_filters=6,
               kernel_size=3, first_kernel_size=7, n_levels=4, num_classes=classes)
    cfg.update(kw)
    return GatedPixelCNN(GatedPixelCNNConfig(**cfg))


def _labels(classes: int, n: int) -> torch.Tensor | None:
    return torch.arange(n) % classes if classes else None


# ---- causality -------------------------------------------------------------------------
def dependencies(net, c: int, h: int, w: int, n_out: int) -> torch.Tensor:
    """`dep[i, j, k] -> bool [C, H, W]`: which inputs the output of channel k at (i, j) reads.

    One backward pass: copy q of the input batch backpropagates from output (i, j, k) only.
    `net` maps `[B, C, H, W] -> [B, C*n_out, H, W]`; outputs of channel k are rows
    k*n_out .. (k+1)*n_out-1. A random projection of each output keeps gradients generic.
    """
    g = torch.Generator().manual_seed(0)
    q = h * w * c
    x = (torch.rand(1, c, h, w, generator=g) * 2 - 1).repeat(q, 1, 1, 1).requires_grad_()
    out = net(x).view(q, c, n_out, h, w)
    idx = torch.arange(q)
    i, j, k = idx // (w * c), (idx // c) % w, idx % c
    picked = out[idx, k, :, i, j]  # [q, n_out]
    (picked * torch.randn(picked.shape, generator=g)).sum().backward()
    assert x.grad is not None
    return (x.grad != 0).view(h, w, c, c, h, w)


def expected_dependencies(c: int, h: int, w: int) -> torch.Tensor:
    """Raster order, then channel order inside a pixel: (i, j, k) reads (r, s, m) iff
    (r, s) is before (i, j), or it is (i, j) and m < k."""
    i, j, k, m, r, s = torch.meshgrid(*[torch.arange(n) for n in (h, w, c, c, h, w)],
                                      indexing="ij")
    before = (r * w + s) < (i * w + j)
    return before | (((r * w + s) == (i * w + j)) & (m < k))


@pytest.mark.parametrize("c,classes,coord,filters", [
    (1, 0, False, 48), (1, 3, True, 48), (3, 0, True, 48),
    (3, 3, False, 50),  # 50 feature maps: R, G, B groups of 17, 17, 16
])
def test_output_reads_exactly_the_past_no_blind_spot(c, classes, coord, filters):
    """At init, pixel i's logits depend on every j < i (incl. sub-pixels of i before its
    channel) and on no j >= i. Pixels up-right of i (the original PixelCNN's blind spot) are
    checked explicitly, so are the current pixel and the next one."""
    # Wide enough that, at some pixel, no output group has all its ReLU units at zero.
    model = _model(c, classes=classes, coord_conv=coord, n_filters=filters, head_filters=filters)
    n, size = model.config.n_levels, 8
    y = _labels(classes, size * size * c)
    dep = dependencies(lambda x: model(x, y), c, size, size, n)
    want = expected_dependencies(c, size, size)
    assert torch.equal(dep, want)
    for i, j in [(3, 2), (7, 0), (5, 6)]:  # up-right of (i, j) lies in the blind spot
        for k in range(c):
            here = dep[i, j, k]  # [C, H, W]
            assert bool(here[:, i - 1, j + 1:].all()) and bool(here[:, 0, j:].all())
            assert not bool(here[k:, i, j].any())  # its own channel and those after
            assert not bool(here[:, i, j + 1:].any()) and not bool(here[:, i + 1:].any())
    if c == 3:  # R reads nothing of its pixel, G reads R only, B reads R and G
        assert [dep[4, 4, k, :, 4, 4].tolist() for k in range(3)] == [
            [False, False, False], [True, False, False], [True, True, False]]


def test_the_check_finds_the_plain_pixelcnn_blind_spot():
    """A stack of mask A/B n×n convolutions (the 2016 PixelRNN's PixelCNN) misses pixels
    up-right of i; the same dependency check sees it, so it can fail."""
    torch.manual_seed(0)
    g1, g2 = channel_groups(3, 3), channel_groups(6, 3)
    net = nn.Sequential(MaskedConv2d(3, 6, 3, "A", g1, g2), nn.Tanh(),
                        *[m for _ in range(6) for m in (MaskedConv2d(6, 6, 3, "B", g2, g2),
                                                        nn.Tanh())],
                        MaskedConv2d(6, 6, 1, "B", g2, g2))
    dep = dependencies(net, 3, 8, 8, 2)
    want = expected_dependencies(3, 8, 8)
    assert not bool((dep & ~want).any())  # still causal ...
    # ... but a 3×3 mask reaches right only by going up: from (5, 2) it sees (4, 3) and
    # (3, 4), not (4, 4) or (4, 7).
    assert bool(dep[5, 2, 0, :, 4, 3].all()) and bool(dep[5, 2, 0, :, 3, 4].all())
    assert not bool(dep[5, 2, 0, :, 4, 4:].any())


def test_horizontal_stack_conv_mask_a_hides_the_current_pixel():
    torch.manual_seed(0)
    conv = HorizontalStackConv(1, 2, 5, "A")
    dep = dependencies(conv, 1, 1, 6, 2)[0, 3, 0, 0, 0]
    assert dep.tolist() == [False, True, True, False, False, False]


# ---- normalization ---------------------------------------------------------------------
def _all_images(model: GatedPixelCNN) -> torch.Tensor:
    c, h, w = model.config.image_shape
    n = model.config.n_levels
    levels = torch.cartesian_prod(*[torch.arange(n)] * (c * h * w)).view(-1, c, h, w)
    return model.from_targets(levels)


@pytest.mark.parametrize("c,n_levels,classes,coord", [(1, 3, 0, False), (1, 2, 3, True),
                                                       (3, 2, 0, True), (3, 2, 2, False)])
def test_probabilities_of_all_images_sum_to_one(c, n_levels, classes, coord):
    """Enumerate every N-level 2×2 image: exp(log_prob) sums to 1 (for C=3, only if the
    channel ordering inside each pixel is respected)."""
    model = _model(c, size=2, classes=classes, n_levels=n_levels, coord_conv=coord,
                   n_layers=2, first_kernel_size=3).double()
    x = _all_images(model)
    y = None
    if classes:  # a soft label: a blend of the classes
        y = torch.full((len(x), classes), 1.0 / classes, dtype=torch.float64)
    with torch.no_grad():
        params = model(model.scale(x), y)
        total = model.likelihood.log_prob(params, model.targets(x)).sum((1, 2)).logsumexp(0)
    assert len(x) == n_levels ** (c * 4)
    assert abs(total.item()) < 1e-10


# ---- levels ----------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 4, 7, 16, 100, 255, 256])
def test_levels_are_nearest_of_n_evenly_spaced_greys(n):
    k = torch.arange(n)
    greys = dequantize_levels(k, n)
    assert greys[0] == 0 and greys[-1] == 255
    assert torch.equal(quantize_levels(greys, n), k)  # round trip
    x = torch.arange(256)
    q = quantize_levels(x.to(torch.uint8), n)
    dist = (x[:, None] * (n - 1) - k[None, :] * 255).abs()  # |x - k·255/(N-1)| · (N-1)
    assert torch.equal(q, dist.argmin(1))
    if n == 256:
        assert torch.equal(q, x)


def test_model_scores_the_level_of_each_pixel():
    model = _model(1, n_levels=4)
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    xq = model.from_targets(model.targets(x))
    assert set(xq.unique().tolist()) <= {0, 85, 170, 255}
    torch.testing.assert_close(model.log_prob(x), model.log_prob(xq))
    torch.testing.assert_close(model.scale(x), xq.float() / 127.5 - 1)
    loss, metrics = model.loss(x)
    assert metrics["levels"].item() == 4
    assert model.bits_per_dim_label == "bits/dim (4-level data)"
    assert _model(1, n_levels=256).bits_per_dim_label == "bits/dim"
    torch.testing.assert_close(metrics["bpd"], model.bits_per_dim(x).mean())


# ---- conditioning ----------------------------------------------------------------------
def test_conditioning_changes_the_output_and_accepts_soft_labels():
    model = _model(3, classes=3)
    x = model.scale(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8))
    with torch.no_grad():
        by_index = model(x, torch.tensor([0, 0]))
        other = model(x, torch.tensor([2, 2]))
        one_hot = model(x, torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]))
        soft = model(x, torch.tensor([[0.5, 0, 0.5], [0.5, 0, 0.5]]))
    assert torch.equal(by_index, one_hot)
    assert (by_index - other).abs().max() > 1e-3
    assert (soft - by_index).abs().max() > 1e-4 and (soft - other).abs().max() > 1e-4
    with pytest.raises(ShapeError, match="conditional"):
        model(x)
    with pytest.raises(ShapeError, match="unconditional"):
        _model(1)(torch.zeros(1, 1, 8, 8), torch.tensor([1]))


# ---- focal loss ------------------------------------------------------------------------
def test_focal_gamma_zero_is_exactly_the_nll_and_positive_changes_the_gradient():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))

    def grad_of_loss(gamma: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
        model = _model(3, focal_gamma=gamma)
        loss, metrics = model.loss(x)
        loss.backward()
        return loss, torch.cat([p.grad.flatten() for p in model.parameters()]), metrics

    l0, g0, m0 = grad_of_loss(0.0)
    assert torch.equal(l0.detach(), m0["bpd"])  # one sum of the same terms (negation is exact)
    l2, g2, m2 = grad_of_loss(2.0)
    assert torch.equal(m2["bpd"], m0["bpd"])  # same weights: the metric is the true bpd
    # the focal loss weighs each sub-pixel's -log p by (1 - p)^2
    model = _model(3)
    terms = model.likelihood.log_prob_terms(model(model.scale(x)), model.targets(x))
    want = ((1 - terms.exp()) ** 2 * -terms).sum((1, 2, 3)).mean() / (3 * 64 * math.log(2))
    torch.testing.assert_close(l2, want)
    assert l2 < l0
    cos = torch.nn.functional.cosine_similarity(g0, g2, dim=0)
    assert cos < 0.999  # a different direction, not a rescaled NLL gradient


# ---- config, errors, save/load ---------------------------------------------------------
@pytest.mark.parametrize("kw,msg", [
    (dict(image_shape=(3, 8, 8), n_filters=2), "at least the 3"),
    (dict(n_levels=1), "n_levels"), (dict(n_levels=257), "n_levels"),
    (dict(kernel_size=4), "odd"), (dict(n_layers=0), "n_layers"),
    (dict(focal_gamma=-1.0), "focal_gamma"),
])
def test_bad_configs_are_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        GatedPixelCNNConfig(**kw).validate()


def test_bad_images_are_refused():
    model = _model(1)
    with pytest.raises(ShapeError, match="uint8"):
        model.log_prob(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ShapeError, match="channels=1"):
        model.log_prob(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="network input"):
        model(torch.zeros(1, 1, 6, 6))


def test_save_load_round_trip(tmp_path):
    model = _model(3, classes=2, coord_conv=True, focal_gamma=1.5, n_levels=8)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["family"] == "gated-pixelcnn"
    assert saved["config"]["coord_conv"] is True and saved["config"]["focal_gamma"] == 1.5
    loaded = tractable.load(tmp_path)
    assert isinstance(loaded, GatedPixelCNN) and loaded.config == model.config
    assert loaded.channel_sequential
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1])
    assert torch.equal(loaded.log_prob(x, y), model.log_prob(x, y))


# ---- sampling --------------------------------------------------------------------------
@pytest.mark.parametrize("c,classes", [(1, 0), (3, 2)])
def test_sample_is_uint8_on_the_levels_and_reproducible(c, classes):
    model = _model(c, size=4, classes=classes, n_layers=2, first_kernel_size=3)
    y = _labels(classes, 3)
    a = model.sample(3, y=y, generator=torch.Generator().manual_seed(0))
    b = model.sample(3, y=y, generator=torch.Generator().manual_seed(0))
    other = model.sample(3, y=y, generator=torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8 and a.shape == (3, c, 4, 4)
    assert set(a.unique().tolist()) <= {0, 85, 170, 255}
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert model.channel_sequential == (c == 3)


def test_samples_follow_the_models_own_probabilities():
    """Over all 2^6 two-level RGB images of 1×2 pixels, sample frequencies match
    exp(log_prob): the sampler and the channel ordering agree with the likelihood."""
    model = _model(3, image_shape=(3, 1, 2), n_layers=2, first_kernel_size=3, n_levels=2)
    with torch.no_grad():
        for p in model.parameters():  # sharpen the distribution away from uniform
            p.mul_(3.0)
    outcomes = model.from_targets(
        torch.cartesian_prod(*[torch.arange(2)] * 6).view(64, 3, 1, 2))
    with torch.no_grad():
        p = model.log_prob(outcomes).exp()
    draws = model.sample(100_000, generator=torch.Generator().manual_seed(0))
    code = (model.targets(draws).view(-1, 6) * (2 ** torch.arange(5, -1, -1))).sum(1)
    freq = torch.bincount(code, minlength=64) / 100_000
    assert abs(p.sum().item() - 1) < 1e-5 and p.max() > 0.1  # normalized, not near-uniform
    assert 0.5 * (freq - p).abs().sum() < 0.025  # total variation (sampling noise ~0.01)


# ---- training on real data -------------------------------------------------------------
def test_short_training_on_real_mnist_lowers_test_bits_per_dim(shared_data):
    """A few Adam steps on 4-level MNIST crops (the digit's central 12×12) lower held-out
    bits/dim of the 4-level data from about log2(4) = 2."""
    def crops(split: str, n: int) -> torch.Tensor:
        x = read_idx(shared_data / "mnist" / f"{split}-images-idx3-ubyte.gz")[:n]
        return torch.from_numpy(x[:, None, 8:20, 8:20].copy())

    train, test = crops("train", 512), crops("t10k", 128)
    model = _model(1, size=12, n_layers=4, n_filters=16, head_filters=16, n_levels=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = model.bits_per_dim(test).mean().item()
    for step in range(60):
        batch = train[(step * 32) % 512:][:32]
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = model.bits_per_dim(test).mean().item()
    assert 1.5 < before < 2.5
    assert after < 0.65 * before, (before, after)  # measured: 1.91 -> 0.90
