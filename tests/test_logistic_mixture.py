"""Discretized logistic mixture: normalization, a float64 brute-force reference, the
all-zero analytic case, exact sampling, temperature and noise-consumption contract."""

from __future__ import annotations

import math

import pytest
import torch

from tractable.errors import ShapeError, TractableError
from tractable.likelihoods.logistic_mixture import DiscretizedLogisticMixture


def random_params(lik: DiscretizedLogisticMixture, h: int, w: int, seed: int) -> torch.Tensor:
    """Params covering narrow and wide logistics, means beyond [-1, 1], strong coupling."""
    g = torch.Generator().manual_seed(seed)
    m, c = lik.num_mixtures, lik.num_channels
    logits = torch.randn(1, m, h, w, generator=g) * 2
    means = torch.rand(1, c * m, h, w, generator=g) * 3 - 1.5
    log_scales = torch.rand(1, c * m, h, w, generator=g) * 9 - 8  # [-8, 1]: below the floor
    coeffs = torch.randn(1, lik.num_coeffs * m, h, w, generator=g) * 2
    return torch.cat([logits, means, log_scales, coeffs], dim=1)


def test_param_count_matches_paper_layout():
    assert DiscretizedLogisticMixture(3, 10).num_params == 100  # 10 per component
    assert DiscretizedLogisticMixture(1, 5).num_params == 15


def test_grey_probabilities_sum_to_one():
    lik = DiscretizedLogisticMixture(1, 3)
    params = random_params(lik, 8, 8, seed=0)  # 64 random pixel distributions
    values = torch.arange(256).view(256, 1, 1, 1).expand(256, 1, 8, 8)
    log_p = lik.log_prob(params.expand(256, -1, -1, -1), values)  # [256, 8, 8]
    total = torch.logsumexp(log_p.double(), dim=0).exp()
    assert (total - 1).abs().max() < 1e-4


def test_rgb_probabilities_sum_to_one_over_all_256_cubed_values():
    lik = DiscretizedLogisticMixture(3, 2)
    pixel = random_params(lik, 1, 1, seed=1)
    # One "image" per red value: rows index green, columns index blue, so each call
    # scores 16 * 256 * 256 of the 256^3 colours with the pixel's params broadcast.
    g, b = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    chunks = []
    for reds in torch.arange(256).split(16):
        r = reds.view(-1, 1, 1).expand(-1, 256, 256)
        x = torch.stack([r, g.expand_as(r), b.expand_as(r)], dim=1)
        log_p = lik.log_prob(pixel.expand(len(reds), -1, 256, 256), x)
        chunks.append(torch.logsumexp(log_p.double().flatten(), dim=0))
    total = torch.logsumexp(torch.stack(chunks), dim=0).exp().item()
    assert abs(total - 1) < 1e-4


def _reference_log_prob(params: list[float], x: list[int], c: int, m: int) -> float:
    """log P(pixel) in float64, written out per component and channel (eq. 2 + §2.2)."""
    def log_sigmoid(z: float) -> float:
        return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))

    logits = params[:m]
    xs = [v / 127.5 - 1 for v in x]
    log_terms = []
    for k in range(m):
        log_pk = logits[k] - math.log(sum(math.exp(v) for v in logits))
        for ch in range(c):
            mu = params[m + ch * m + k]
            log_s = max(params[m + c * m + ch * m + k], -7.0)
            for earlier in range(ch):
                pair = ch * (ch - 1) // 2 + earlier
                mu += math.tanh(params[m + 2 * c * m + pair * m + k]) * xs[earlier]
            s = math.exp(log_s)
            upper, lower = (xs[ch] + 1 / 255 - mu) / s, (xs[ch] - 1 / 255 - mu) / s
            if x[ch] == 0:
                log_pk += log_sigmoid(upper)  # the whole left tail
            elif x[ch] == 255:
                log_pk += log_sigmoid(-lower)  # the whole right tail
            else:
                p = math.exp(log_sigmoid(upper)) - math.exp(log_sigmoid(lower))
                if p > 1e-5:
                    log_pk += math.log(p)
                else:  # the reference code's density-at-the-bin-centre branch
                    z = (xs[ch] - mu) / s
                    log_pk += z - log_s - 2 * math.log1p(math.exp(z)) - math.log(127.5) \
                        if z < 30 else -z - log_s - math.log(127.5)
        log_terms.append(log_pk)
    top = max(log_terms)
    return top + math.log(sum(math.exp(t - top) for t in log_terms))


@pytest.mark.parametrize("channels", [1, 3])
def test_log_prob_matches_float64_reference(channels):
    """Float64 params stay float64, so the comparison is tight; float32 agrees loosely
    (sigmoid differences of tail bins lose digits, as in the reference code)."""
    lik = DiscretizedLogisticMixture(channels, 3)
    params = random_params(lik, 4, 4, seed=3).double()
    x = torch.randint(0, 256, (1, channels, 4, 4), generator=torch.Generator().manual_seed(4))
    x[0, :, 0, 0] = 0
    x[0, :, 0, 1] = 255  # both edge bins
    got = lik.log_prob(params, x)[0]
    assert got.dtype == torch.float64
    for i in range(4):
        for j in range(4):
            want = _reference_log_prob(params[0, :, i, j].tolist(), x[0, :, i, j].tolist(),
                                       channels, 3)
            assert got[i, j].item() == pytest.approx(want, rel=1e-9, abs=1e-9)
    torch.testing.assert_close(lik.log_prob(params.float(), x)[0], got.float(), rtol=1e-3,
                               atol=1e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_all_zero_params_give_analytic_logistic(channels):
    """Zero params: every component is logistic(0, 1) per channel, with no coupling."""
    lik = DiscretizedLogisticMixture(channels, 4)
    x = torch.tensor([0, 1, 100, 127, 128, 200, 254, 255])
    x = x.view(1, 1, 1, 8).expand(1, channels, 1, 8)

    def sigmoid(z: float) -> float:
        return 1 / (1 + math.exp(-z))

    def log_p(k: int) -> float:
        v = k / 127.5 - 1
        upper = 1.0 if k == 255 else sigmoid(v + 1 / 255)
        lower = 0.0 if k == 0 else sigmoid(v - 1 / 255)
        return math.log(upper - lower)

    zeros = torch.zeros(1, lik.num_params, 1, 8)
    got = lik.log_prob(zeros, x)[0, 0]
    want = torch.tensor([channels * log_p(int(k)) for k in x[0, 0, 0]])
    torch.testing.assert_close(got, want.float(), atol=0.0, rtol=1e-5)
    bpd = -want.double().sum() / (channels * 8 * math.log(2))
    assert lik.bits_per_dim(zeros, x).item() == pytest.approx(bpd.item(), rel=1e-5)


def test_log_prob_is_float32_for_bfloat16_params():
    lik = DiscretizedLogisticMixture(3, 2)
    params = random_params(lik, 2, 2, seed=5)
    x = torch.randint(0, 256, (1, 3, 2, 2))
    out = lik.log_prob(params.bfloat16(), x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, lik.log_prob(params.bfloat16().float(), x))


def test_sampling_is_exact_for_coupled_rgb():
    """Empirical frequencies of 40,000 draws match exp(log_prob) in total variation."""
    lik = DiscretizedLogisticMixture(3, 2)
    params = torch.zeros(1, lik.num_params, 1, 1)
    params[0, :2, 0, 0] = torch.tensor([0.3, -0.3])  # logits
    params[0, 2:8, 0, 0] = torch.tensor([-0.5, 0.4, 0.0, 0.2, -0.3, 0.5])  # means [C, M]
    params[0, 8:14, 0, 0] = -5.5  # narrow: each channel spans a few bins
    params[0, 14:20, 0, 0] = torch.tensor([2.0, -1.0, 1.0, 0.5, -2.0, 1.5])  # strong coupling
    n = 40_000
    draws = lik.sample(params.expand(n, -1, -1, -1), generator=torch.Generator().manual_seed(0))
    colours, counts = torch.unique(draws.view(n, 3), dim=0, return_counts=True)
    log_p = lik.log_prob(params.expand(len(colours), -1, -1, -1), colours.view(-1, 3, 1, 1))
    p = log_p.view(-1).double().exp()
    assert p.sum() > 0.99  # the draws land where the model puts its mass
    tv = 0.5 * ((counts.double() / n - p).abs().sum() + (1 - p.sum()))
    # Sampling noise alone gives E[TV] ≈ Σ sqrt(p(1-p) / (2πn)) (≈ 0.03 here); coupling on
    # the continuous draw instead of its bin (openai/pixel-cnn's sampler) gives ≈ 0.08.
    noise_tv = torch.sqrt(p * (1 - p) / (2 * torch.pi * n)).sum()
    assert tv < noise_tv + 0.015


def test_sample_range_dtype_and_temperature():
    lik = DiscretizedLogisticMixture(3, 4)
    params = random_params(lik, 8, 8, seed=6).expand(16, -1, -1, -1)
    s = lik.sample(params, generator=torch.Generator().manual_seed(1))
    assert s.shape == (16, 3, 8, 8) and s.dtype == torch.long
    assert s.min() >= 0 and s.max() <= 255
    same = lik.sample(params, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(s, same)  # temperature 1 is exactly the model
    # Low temperature: scales shrink and the likeliest component wins almost always.
    cold = lik.sample(params, 1e-3, torch.Generator().manual_seed(1)).float()
    hot = lik.sample(params, 1.0, torch.Generator().manual_seed(2)).float()
    assert cold.std(0).mean() < 0.2 * hot.std(0).mean()
    with pytest.raises(TractableError, match="temperature"):
        lik.sample(params, 0.0)


def test_sample_consumes_generator_in_documented_order():
    """Component uniforms [B, M, H, W] first, then logistic uniforms [B, C, H, W]."""
    lik = DiscretizedLogisticMixture(1, 3)
    params = random_params(lik, 2, 2, seed=7)
    g = torch.Generator().manual_seed(3)
    s = lik.sample(params, generator=g)
    after = torch.rand(1, generator=g)
    g2 = torch.Generator().manual_seed(3)
    torch.rand(1, 3, 2, 2, generator=g2, dtype=torch.float64)
    torch.rand(1, 1, 2, 2, generator=g2, dtype=torch.float64)
    assert torch.equal(torch.rand(1, generator=g2), after)
    assert torch.equal(lik.sample(params, generator=torch.Generator().manual_seed(3)), s)


def test_bad_shapes_raise_shape_error():
    lik = DiscretizedLogisticMixture(3, 2)
    with pytest.raises(ShapeError, match=r"\[B, 20, H, W\]"):
        lik.log_prob(torch.zeros(1, 6, 2, 2), torch.zeros(1, 3, 2, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match="pixel values"):
        lik.log_prob(torch.zeros(1, 20, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long))
