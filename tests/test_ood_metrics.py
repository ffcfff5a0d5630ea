"""Detection metrics against brute force (ties included), and the typicality test's math."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tractable.errors import ShapeError
from tractable.evaluation.metrics import auprc, auroc, detection_metrics, fpr_at_tpr, midranks
from tractable.evaluation.typicality import batch_means, fit_typicality

# Small integer scores: ties within and across the two sets are the common case.
scores = st.lists(st.integers(-3, 3), min_size=1, max_size=25)


def brute_auroc(s_in, s_out) -> float:
    """P(out > in) + ½ P(out = in), counting every (out, in) pair."""
    wins = sum((o > i) + 0.5 * (o == i) for o in s_out for i in s_in)
    return wins / (len(s_in) * len(s_out))


def brute_ap(s_in, s_out) -> float:
    """Mean over positives of the precision among all inputs scored at least as high."""
    allv = np.r_[s_in, s_out]
    return float(np.mean([(np.asarray(s_out) >= s).sum() / (allv >= s).sum() for s in s_out]))


def brute_fpr(s_in, s_out, tpr) -> float:
    """Try every threshold t (flag score >= t); keep the highest one reaching `tpr`."""
    s_in, s_out = np.asarray(s_in), np.asarray(s_out)
    ok = [t for t in np.unique(np.r_[s_in, s_out]) if (s_out >= t).mean() >= tpr]
    return float((s_in >= max(ok)).mean())


@settings(max_examples=200, deadline=None)
@given(scores, scores)
def test_auroc_equals_the_pair_count_with_ties(s_in, s_out):
    assert auroc(s_in, s_out) == pytest.approx(brute_auroc(s_in, s_out), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(scores, scores)
def test_auprc_equals_mean_precision_over_positives(s_in, s_out):
    assert auprc(s_in, s_out) == pytest.approx(brute_ap(s_in, s_out), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(scores, scores, st.sampled_from([0.1, 0.5, 0.8, 0.95, 1.0]))
def test_fpr_at_tpr_equals_the_threshold_search(s_in, s_out, tpr):
    assert fpr_at_tpr(s_in, s_out, tpr) == pytest.approx(brute_fpr(s_in, s_out, tpr))


def test_metrics_on_hand_computed_cases():
    # Perfect, reversed and fully tied rankings.
    assert auroc([0, 1, 2], [3, 4]) == 1.0 and auroc([3, 4], [0, 1, 2]) == 0.0
    assert auroc([1, 1], [1, 1, 1]) == 0.5
    # in = [0, 1, 2, 3], out = [2, 3, 4, 5]: 16 pairs, out wins 13 and ties 2 -> 14/16.
    assert auroc([0, 1, 2, 3], [2, 3, 4, 5]) == pytest.approx(14 / 16)
    # Flagging >= 3 catches 4, 5, 3 of out (75%); >= 2 catches all 4 (100% >= 80%) and
    # flags 2, 3 of in: FPR 2/4.
    assert fpr_at_tpr([0, 1, 2, 3], [2, 3, 4, 5], 0.8) == 0.5
    # Ranking out out in in: AP = 1; all tied: AP = the positive fraction.
    assert auprc([0, 1], [5, 6]) == 1.0
    assert auprc([1, 1, 1], [1]) == pytest.approx(0.25)
    m = detection_metrics([0, 1, 2], [3, 4])
    assert (m.auroc, m.auprc, m.fpr_at_80_tpr, m.num_in, m.num_out) == (1.0, 1.0, 0.0, 3, 2)


def test_auroc_is_invariant_to_monotone_transforms_and_flips_with_sign():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 300), rng.normal(0.7, 1, 200)
    base = auroc(a, b)
    assert auroc(np.exp(a), np.exp(b)) == pytest.approx(base)
    assert auroc(-a, -b) == pytest.approx(1 - base)


def test_midranks_average_tied_ranks():
    np.testing.assert_array_equal(midranks(np.array([10.0, 20, 10, 30, 20, 20])),
                                  [1.5, 4, 1.5, 6, 4, 4])


@pytest.mark.parametrize("bad", [[], [1.0, np.nan], [[1.0, 2.0]], [np.inf]])
def test_metrics_refuse_empty_or_nonfinite_scores(bad):
    with pytest.raises(ShapeError):
        auroc(bad, [1.0])
    with pytest.raises(ShapeError):
        auprc([1.0], bad)


def test_fpr_at_tpr_refuses_a_tpr_outside_0_1():
    with pytest.raises(ShapeError, match="tpr"):
        fpr_at_tpr([1.0], [2.0], 1.5)


# ---- typicality test -----------------------------------------------------------------------
def test_batch_means_use_disjoint_full_batches():
    assert batch_means(np.arange(23.0), 5, seed=3).shape == (4,)  # 3 inputs left over
    # With nothing left over the batches partition the inputs: their means add up exactly.
    means = batch_means(np.arange(20.0), 5, seed=3)
    assert 5 * means.sum() == pytest.approx(190.0)
    assert not np.allclose(means, [2, 7, 12, 17])  # shuffled, not consecutive runs
    np.testing.assert_array_equal(batch_means(np.arange(7.0), 1), np.arange(7.0))  # M = 1


def test_typicality_with_m1_is_the_distance_to_the_entropy():
    held = np.array([1.0, 2.0, 3.0, 6.0])
    test = fit_typicality(held, held, batch_size=1, alpha=0.9, num_bootstrap=500)
    assert test.entropy == 3.0
    np.testing.assert_allclose(test.statistic(np.array([3.0, 0.5, 7.0])), [0.0, 2.5, 4.0])


def test_typicality_threshold_keeps_the_false_alarm_rate_near_one_minus_alpha():
    rng = np.random.default_rng(1)
    held = rng.normal(3.0, 0.5, 4000)
    test = fit_typicality(held, held, batch_size=10, alpha=0.95, num_bootstrap=20_000, seed=2)
    # Fresh in-distribution batches are flagged about 5% of the time ...
    fresh = rng.normal(3.0, 0.5, 100_000)
    assert 0.03 < test.flags(fresh).mean() < 0.07
    # ... batches from a lower-NLL distribution (the Fashion->MNIST failure case) nearly always,
    # though no single one of their NLLs is unusual for the in-distribution.
    lower = rng.normal(2.5, 0.2, 10_000)
    assert test.flags(lower).mean() > 0.99
    # The bootstrap threshold matches the analytic one: z_{0.975} · σ / sqrt(M).
    assert test.threshold == pytest.approx(1.96 * 0.5 / np.sqrt(10), rel=0.05)


def test_typicality_refuses_bad_settings():
    with pytest.raises(ShapeError, match="batch size"):
        fit_typicality([1.0, 2.0], [1.0, 2.0], batch_size=0)
    with pytest.raises(ShapeError, match="alpha"):
        fit_typicality([1.0, 2.0], [1.0, 2.0], batch_size=1, alpha=1.0)
    with pytest.raises(ShapeError, match="at least 5"):
        batch_means([1.0, 2.0], 5)
