"""OOD ingredients on real images: mutations, codecs, per-image and per-pixel NLLs, scores."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tractable.data import load_dataset
from tractable.data.mutation import mutate, mutation_transform
from tractable.errors import ConfigError, ShapeError, TractableError
from tractable.evaluation import evaluate_bpd
from tractable.evaluation.complexity import available_codecs, compressed_bits, encode
from tractable.evaluation.ood import (
    Measurements,
    compare_scores,
    evaluate_ood,
    format_table,
    measure,
    ood_scores,
)
from tractable.evaluation.scoring import marginal_log_prob, pixel_nll, score_dataset
from tractable.models import Glow, GlowConfig, PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.training import TrainConfig
from tractable.training.batches import BatchStream, augmentation
from tractable.viz import heat_colors, nll_overlays, save_histograms


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-mini", split="test").subset(24, seed=0)


@pytest.fixture(scope="module")
def tiny_pcnn(digits):
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(1, 28, 28), nr_resnet=0, nr_filters=8,
                                 nr_logistic_mix=2, dropout=0.0)
    model = PixelCNNPlusPlus(cfg)
    model.data_dependent_init(digits.images[:16])
    return model.eval()


# ---- mutations (Ren et al. 2019) -----------------------------------------------------------
def test_mutation_rate_0_is_identity_and_rate_1_redraws_everything(digits):
    x = digits.images
    g = torch.Generator().manual_seed(0)
    assert torch.equal(mutate(x, 0.0, g), x)
    y = mutate(x, 1.0, g, levels=2)  # every value redrawn from {0, 1}
    assert set(y.unique().tolist()) == {0, 1}
    assert x.max() > 1  # the real digits had other values


def test_mutation_changes_the_expected_fraction_reproducibly(digits):
    x = digits.images.repeat(20, 1, 1, 1)  # 480 real digits, 376k sub-pixels
    a = mutate(x, 0.2, torch.Generator().manual_seed(5))
    b = mutate(x, 0.2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == x.shape
    # A replaced value equals the old one with probability 1/256.
    changed = (a != x).float().mean().item()
    assert changed == pytest.approx(0.2 * 255 / 256, abs=0.003)
    # Ren et al.'s point: the corruption keeps population statistics only roughly.
    assert not torch.equal(a, mutate(x, 0.2, torch.Generator().manual_seed(6)))


def test_pixel_mutation_redraws_all_channels_of_a_pixel_together():
    x = torch.full((64, 3, 8, 8), 7, dtype=torch.uint8)
    per_pixel = mutate(x, 0.3, torch.Generator().manual_seed(0), per="pixel")
    per_sub = mutate(x, 0.3, torch.Generator().manual_seed(0), per="subpixel")
    n_changed = lambda y: (y != x).sum(dim=1)  # noqa: E731 - changed channels per pixel
    partial = lambda y: ((n_changed(y) > 0) & (n_changed(y) < 3)).float().mean()  # noqa: E731
    assert partial(per_pixel) < 0.01  # only chance collisions with the old value
    assert partial(per_sub) > 0.3


def test_mutation_transform_fits_the_batch_hook_and_keeps_labels(digits):
    t = mutation_transform(0.5)
    x, y = t(digits.images, digits.labels, torch.Generator().manual_seed(1))
    assert torch.equal(y, digits.labels) and not torch.equal(x, digits.images)


def test_trainer_batches_are_mutated_reproducibly_when_asked(digits):
    clean = BatchStream(digits, 8, seed=0)
    mutated = BatchStream(digits, 8, seed=0, transform=augmentation(None, mutation_rate=0.5))
    x, y = clean.batch(2)
    m1, y1 = mutated.batch(2)
    assert torch.equal(y1, y)  # same images and labels, ...
    assert 0.4 < (m1 != x).float().mean() < 0.6  # ... about half the sub-pixels redrawn,
    assert torch.equal(mutated.batch(2)[0], m1)  # ... the same way again (exact resume)
    assert augmentation(None) is None
    with pytest.raises(ConfigError, match="mutation_rate"):
        TrainConfig(mutation_rate=1.5).validate()


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.2", True])
def test_mutation_refuses_bad_rates(digits, rate):
    with pytest.raises(ShapeError, match="mutation rate"):
        mutate(digits.images, rate, torch.Generator())


def test_mutation_refuses_non_uint8_images():
    with pytest.raises(ShapeError, match="uint8"):
        mutate(torch.zeros(2, 1, 4, 4), 0.1, torch.Generator())


# ---- compressed length (Serrà et al. 2020) --------------------------------------------------
@pytest.mark.parametrize("codec", available_codecs())
def test_codecs_are_lossless_on_real_images(digits, codec):
    cifar_like = torch.randint(0, 256, (3, 8, 8), generator=torch.Generator().manual_seed(0),
                               dtype=torch.uint8)
    for image in [*digits.images[:4], cifar_like]:
        back = np.asarray(Image.open(io.BytesIO(encode(image, codec))))
        back = back[..., :image.shape[0]] if back.ndim == 3 else back[..., None]
        np.testing.assert_array_equal(back.transpose(2, 0, 1), image.numpy())


@pytest.mark.parametrize("codec", available_codecs())
def test_compressed_length_orders_blank_digit_noise(digits, codec):
    blank = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    noise = torch.randint(0, 256, (1, 1, 28, 28), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    bits = compressed_bits(torch.cat([blank, digits.images[:1], noise]), codec)
    assert bits[0] < bits[1] < bits[2]
    assert bits[2] > 0.9 * 8 * 784  # incompressible noise costs about 8 bits a pixel


def test_compression_refuses_bad_input(digits):
    with pytest.raises(TractableError, match="unknown codec"):
        compressed_bits(digits.images[:1], "flif")
    with pytest.raises(ShapeError, match="uint8"):
        compressed_bits(digits.images[:1].float(), "png")


# ---- per-image and per-pixel NLL ------------------------------------------------------------
def test_per_image_scores_reproduce_bits_per_dim(tiny_pcnn, digits):
    s = score_dataset(tiny_pcnn, digits, batch_size=7)  # a partial last batch
    with torch.no_grad():
        lp = tiny_pcnn.log_prob(digits.images).double().numpy()
    # float32 convolutions round differently at another batch size: 1e-5, not 1e-6
    np.testing.assert_allclose(s.nll_nats, -lp, rtol=1e-5)
    np.testing.assert_allclose(s.bits_per_dim, -lp / (784 * math.log(2)), rtol=1e-5)
    assert s.bits_per_dim.mean() == pytest.approx(
        evaluate_bpd(tiny_pcnn, digits).bits_per_dim, rel=1e-5)
    np.testing.assert_array_equal(s.labels, digits.labels.numpy())


def test_pixel_nll_maps_sum_to_the_image_nll_and_are_causal(tiny_pcnn, digits):
    x = digits.images[:4]
    maps = pixel_nll(tiny_pcnn, x, batch_size=3)
    assert maps.shape == (4, 28, 28) and bool((maps > 0).all())
    with torch.no_grad():
        np.testing.assert_allclose(maps.sum(dim=(1, 2)).numpy(),
                                   -tiny_pcnn.log_prob(x).numpy(), rtol=1e-5)
    # Changing pixel (14, 10) changes no NLL of a pixel before it in raster order.
    y = x.clone()
    y[:, 0, 14, 10] = 255 - y[:, 0, 14, 10]
    diff = (pixel_nll(tiny_pcnn, y, batch_size=3) - maps).abs().flatten(1)
    first = 14 * 28 + 10
    assert diff[:, :first].max() == 0 and diff[:, first].min() > 0


def test_conditional_models_are_scored_by_their_marginal_likelihood(digits):
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(1, 28, 28), nr_resnet=0, nr_filters=8,
                                 nr_logistic_mix=2, dropout=0.0, num_classes=3)
    model = PixelCNNPlusPlus(cfg)
    model.data_dependent_init(digits.images[:8], torch.arange(8) % 3)
    model.eval()
    x = digits.images[:5]
    with torch.no_grad():
        per_class = torch.stack([model.log_prob(x, torch.full((5,), k)) for k in range(3)])
    assert not torch.allclose(per_class[0], per_class[1])  # the classes matter
    marginal = marginal_log_prob(model, x)
    # log of the mean of p(x | k), computed relative to the largest term to avoid underflow.
    top = per_class.double().max(0).values
    torch.testing.assert_close(marginal, top + (per_class.double() - top).exp().mean(0).log())
    assert bool((marginal <= per_class.max(0).values + 1e-6).all())
    assert bool((marginal >= per_class.min(0).values - 1e-6).all())
    # Digits carry labels 0..9, which this 3-class model could not take: marginal ignores them.
    s = score_dataset(model, digits.subset(5, seed=1), marginal=True)
    assert s.nll_nats.shape == (5,) and np.isfinite(s.nll_nats).all()


def test_pixel_nll_needs_an_autoregressive_model(digits):
    glow = Glow(GlowConfig(image_shape=(1, 28, 28), K=1, L=1, width=8))
    with pytest.raises(TractableError, match="autoregressive"):
        pixel_nll(glow, digits.images[:2])


# ---- scores and the report ------------------------------------------------------------------
def test_measure_and_scores_combine_the_ingredients(tiny_pcnn, digits):
    torch.manual_seed(1)
    bg = PixelCNNPlusPlus(tiny_pcnn.config)
    bg.data_dependent_init(digits.images[:16])
    m = measure(tiny_pcnn, digits, background=bg.eval(), codecs=("png",))
    nll = score_dataset(tiny_pcnn, digits).bits_per_dim
    bg_nll = score_dataset(bg, digits).bits_per_dim
    np.testing.assert_allclose(m.nll, nll)
    s = ood_scores(m, entropy=2.0)
    np.testing.assert_allclose(s["likelihood_ratio"], nll - bg_nll)  # -LLR per dim
    np.testing.assert_allclose(s["complexity_png"],
                               nll - compressed_bits(digits.images, "png") / 784)
    np.testing.assert_allclose(s["typicality"], np.abs(nll - 2.0))
    assert set(ood_scores(Measurements(nll=m.nll))) == {"nll"}


def test_evaluate_ood_reports_each_score_the_right_way_round():
    rng = np.random.default_rng(0)
    # The known failure in miniature: OOD inputs have *lower* NLL, but a background model
    # explains them even better, so the ratio separates the sets.
    nll_in, nll_out = rng.normal(3.0, 0.3, 400), rng.normal(1.5, 0.3, 300)
    m_in = Measurements(nll=nll_in, background_nll=nll_in + rng.normal(0.0, 0.1, 400))
    m_out = Measurements(nll=nll_out, background_nll=nll_out - 1 + rng.normal(0.0, 0.1, 300))
    report = evaluate_ood(m_in, m_out, heldout_nll=rng.normal(3.0, 0.3, 1000), typicality_m=5,
                          num_bootstrap=2000)
    assert report.metrics["nll"].auroc < 0.01
    assert report.metrics["likelihood_ratio"].auroc > 0.99
    assert report.metrics["typicality"].auroc > 0.99
    assert report.typicality["detection_rate"] == 1.0
    assert report.typicality["false_alarm_rate"] < 0.1
    table = format_table(report, "fashion", "mnist")
    assert "likelihood_ratio" in table and "typicality M=5 (batch)" in table
    d = report.to_dict()
    assert d["metrics"]["nll"]["num_out"] == 300 and d["entropy_bits_per_dim"] == report.entropy
    assert compare_scores({"a": [1.0, 2.0]}, {"b": [1.0]}) == {}


# ---- pictures -------------------------------------------------------------------------------
def test_nll_overlays_keep_the_image_and_brighten_with_nll(digits):
    maps = torch.zeros(2, 28, 28)
    maps[:, :, 14:] = 5.0  # right half surprising
    over = nll_overlays(digits.images[:2], maps, vmax=5.0)
    assert over.shape == (2, 3, 28, 56) and over.dtype == torch.uint8
    assert torch.equal(over[:, 0, :, :28], digits.images[:2, 0])  # the image itself, grey
    blank = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    o = nll_overlays(blank, maps[:1], vmax=5.0)[0, :, :, 28:].int().sum(0)
    assert o[:, 14:].min() > o[:, :14].max()
    assert np.all(np.diff(heat_colors(np.linspace(0, 1, 11), 1.0).astype(int).sum(1)) > 0)
    with pytest.raises(ShapeError):
        nll_overlays(digits.images[:2], maps[:1])


def test_histograms_write_one_panel_per_score(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "h.png"
    save_histograms({"a": (rng.normal(size=50), rng.normal(size=40)),
                     "b": (np.ones(3), np.ones(3))}, path, labels=("in", "out"))
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (420, 2 * 230)
