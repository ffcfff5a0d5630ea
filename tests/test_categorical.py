"""The categorical likelihood: exact log-probs, normalization, and reproducible sampling."""

from __future__ import annotations

import pytest
import torch

from tractable.errors import ShapeError, TractableError
from tractable.likelihoods.categorical import Categorical


def _params(b: int, c: int, n: int, h: int, w: int, seed: int = 0, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c * n, h, w, generator=g) * scale


@pytest.mark.parametrize("c", [1, 3])
def test_levels_of_each_subpixel_sum_to_one(c):
    lik = Categorical(5)
    lp = lik.log_probs(_params(2, c, 5, 3, 4))
    assert lp.shape == (2, c, 3, 4, 5)
    torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(2, c, 3, 4), atol=1e-6, rtol=0)


def test_log_prob_terms_are_the_softmax_of_each_channels_logits():
    n, params = 4, _params(2, 3, 4, 2, 3)
    x = torch.randint(0, n, (2, 3, 2, 3), generator=torch.Generator().manual_seed(1))
    terms = Categorical(n).log_prob_terms(params, x)
    for b in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(3):
                    logits = params[b, c * n:(c + 1) * n, i, j]
                    want = logits[x[b, c, i, j]] - logits.logsumexp(0)
                    torch.testing.assert_close(terms[b, c, i, j], want)
    torch.testing.assert_close(Categorical(n).log_prob(params, x), terms.sum(1))


def test_joint_over_a_pixel_sums_to_one():
    """Summing exp(log_prob) over all N^C values of one pixel gives 1."""
    n, c = 3, 3
    params = _params(1, c, n, 1, 1).expand(n**c, -1, -1, -1)
    values = torch.cartesian_prod(*[torch.arange(n)] * c).view(n**c, c, 1, 1)
    total = Categorical(n).log_prob(params, values).logsumexp(0)
    torch.testing.assert_close(total, torch.zeros(1, 1), atol=1e-6, rtol=0)


def test_bad_targets_and_params_are_refused():
    lik = Categorical(4)
    params = _params(1, 1, 4, 2, 2)
    with pytest.raises(ShapeError, match="0..3"):
        lik.log_prob(params, torch.full((1, 1, 2, 2), 4))
    with pytest.raises(ShapeError, match="integer"):
        lik.log_prob(params, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ShapeError, match="do not match"):
        lik.log_prob(params, torch.zeros(1, 3, 2, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"C\*4"):
        lik.log_prob(torch.zeros(1, 6, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(TractableError, match="temperature"):
        lik.sample(params, temperature=0.0)
    with pytest.raises(ShapeError, match="2 levels"):
        Categorical(1)


def test_compute_dtype_is_at_least_float32():
    lik = Categorical(3)
    params = _params(1, 1, 3, 2, 2)
    assert lik.log_probs(params.half()).dtype == torch.float32
    assert lik.log_probs(params.double()).dtype == torch.float64


def _is_inverse_cdf(k: torch.Tensor, cdf: torch.Tensor, u: torch.Tensor,
                    tol: float = 1e-6) -> bool:
    """Whether each level `k` is the inverse CDF of its uniform `u` (cdf: levels last):
    cdf[k-1] <= u < cdf[k], to `tol`. The sampler's float32 CDF and a float64 reference
    differ by rounding, which would flip a draw whose u falls within it of a step."""
    upper = cdf.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    upper = torch.where(k == cdf.shape[-1] - 1, torch.inf, upper)  # the clamp of the top
    below = cdf.gather(-1, (k - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
    lower = torch.where(k == 0, 0.0, below)
    return bool(((lower - tol <= u) & (u < upper + tol)).all())


def test_sample_is_the_inverse_cdf_of_one_float64_uniform_per_subpixel():
    """The documented random-number use: rand([B, C, H, W], float64) from the generator."""
    n, params = 6, _params(3, 3, 6, 2, 5)
    got = Categorical(n).sample(params, generator=torch.Generator().manual_seed(7))
    u = torch.rand(3, 3, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    cdf = torch.softmax(params.view(3, 3, n, 2, 5).double(), 2).cumsum(2)
    assert got.dtype == torch.long and got.shape == (3, 3, 2, 5)
    assert _is_inverse_cdf(got, cdf.movedim(2, -1), u)
    assert len(got.unique()) >= 4  # spread over the levels: the check is not vacuous


def test_slices_sample_consistently():
    """A channel or pixel slice consumes uniforms only for its own sub-pixels."""
    n, params = 4, _params(2, 3, 4, 3, 3)
    lik = Categorical(n)
    one_channel = lik.sample(params[:, n:2 * n, 1:2, 2:3],
                             generator=torch.Generator().manual_seed(3))
    full_pixel = lik.sample(params[:, :, 1:2, 2:3], generator=torch.Generator().manual_seed(3))
    assert one_channel.shape == (2, 1, 1, 1) and full_pixel.shape == (2, 3, 1, 1)
    # The lone G channel of one pixel used exactly the first B uniforms of its generator.
    u = torch.rand(2, 1, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    cdf = torch.softmax(params[:, n:2 * n, 1, 2].double(), 1).cumsum(1)
    assert _is_inverse_cdf(one_channel.flatten(), cdf, u.flatten())


def test_samples_follow_the_distribution_and_temperature():
    n = 5
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5])
    params = logits.view(1, n, 1, 1).expand(40_000, n, 1, 1)
    g = torch.Generator().manual_seed(0)
    lik = Categorical(n)
    freq = torch.bincount(lik.sample(params, generator=g).flatten(), minlength=n) / 40_000
    torch.testing.assert_close(freq, torch.softmax(logits, 0), atol=0.01, rtol=0)
    hot = torch.bincount(lik.sample(params, 2.0, g).flatten(), minlength=n) / 40_000
    torch.testing.assert_close(hot, torch.softmax(logits / 2.0, 0), atol=0.01, rtol=0)
    cold = lik.sample(params, 1e-3, g)
    assert bool((cold == 3).all())


def test_sampling_is_reproducible_and_mean_is_expected_level():
    lik, params = Categorical(4), _params(2, 3, 4, 3, 3)
    a = lik.sample(params, generator=torch.Generator().manual_seed(5))
    b = lik.sample(params, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    p = torch.softmax(params.view(2, 3, 4, 3, 3), 2)
    want = (p * torch.arange(4.0).view(1, 1, 4, 1, 1)).sum(2)
    torch.testing.assert_close(lik.mean(params), want)
