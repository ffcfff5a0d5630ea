"""The typicality test for batches of inputs (Nalisnick, Matsukawa, Teh & Lakshminarayanan,
"Detecting out-of-distribution inputs to deep generative models using typicality", 2019).

Algorithm 1 of the paper. A batch of M inputs drawn from the model's distribution has a mean
NLL close to the entropy H of that distribution (the typical set), whether or not its
individual likelihoods are high. So the test statistic of a batch is

    ε̂ = | (1/M) Σ_m −log p(x_m) − Ĥ |,

with Ĥ the mean NLL over held-out in-distribution data. Its null distribution comes from
the bootstrap: draw K batches of M held-out in-distribution NLLs (with replacement), take
each batch's ε̂, and set the threshold ε_α to their α-quantile. A batch with ε̂ > ε_α is
flagged out-of-distribution, which keeps the false-alarm rate near 1 − α.

Inputs here are NLLs in any one unit (nats per image or bits/dim) — the test never sees
the model. With M = 1 the statistic |NLL − Ĥ| is a per-input OOD score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tractable.errors import ShapeError
from tractable.limits import MAX_BOOTSTRAP_VALUES


def _nll(values: Any, what: str, at_least: int = 1) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size < at_least or not np.isfinite(a).all():
        raise ShapeError(f"{what} must be a 1-D array of at least {at_least} finite NLLs, "
                         f"got shape {a.shape}")
    return a


def _check_batch_size(m: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ShapeError(f"typicality batch size M must be a positive integer, got {m!r}")


def batch_means(nll: Any, batch_size: int, seed: int = 0) -> np.ndarray:
    """Mean NLL of each batch of `batch_size` inputs, after shuffling with `seed`.

    The inputs are split into ⌊N / M⌋ disjoint batches; the N mod M left over are dropped
    (a batch must have exactly M inputs for the bootstrap threshold to apply).
    """
    _check_batch_size(batch_size)
    a = _nll(nll, "nll", at_least=batch_size)
    k = len(a) // batch_size
    order = np.random.default_rng(seed).permutation(len(a)) if batch_size > 1 else np.arange(len(a))
    return a[order[:k * batch_size]].reshape(k, batch_size).mean(axis=1)


@dataclass
class TypicalityTest:
    """A fitted test: entropy estimate Ĥ, batch size M, and the bootstrap threshold ε_α."""

    entropy: float
    batch_size: int
    alpha: float
    threshold: float
    num_bootstrap: int

    def statistic(self, nll: Any, seed: int = 0) -> np.ndarray:
        """ε̂ = |mean NLL − Ĥ| of each disjoint batch of M inputs of `nll` (see `batch_means`)."""
        return np.abs(batch_means(nll, self.batch_size, seed) - self.entropy)

    def flags(self, nll: Any, seed: int = 0) -> np.ndarray:
        """True for each batch of `nll` the test calls out-of-distribution (ε̂ > ε_α)."""
        return self.statistic(nll, seed) > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_typicality(
    nll_entropy: Any,
    nll_bootstrap: Any,
    batch_size: int,
    alpha: float = 0.99,
    num_bootstrap: int = 10_000,
    seed: int = 0,
) -> TypicalityTest:
    """Algorithm 1 of Nalisnick et al.: Ĥ from `nll_entropy`, ε_α by bootstrapping batches
    of `batch_size` from `nll_bootstrap` (both held-out in-distribution NLLs; pass the same
    array twice if only one held-out set exists)."""
    _check_batch_size(batch_size)
    if not 0.0 < alpha < 1.0:
        raise ShapeError(f"alpha must be in (0, 1), got {alpha}")
    if num_bootstrap < 1:
        raise ShapeError(f"num_bootstrap must be >= 1, got {num_bootstrap}")
    if num_bootstrap * batch_size > MAX_BOOTSTRAP_VALUES:  # drawn at once: bound the memory
        raise ShapeError(f"{num_bootstrap:,} bootstrap batches of {batch_size:,} NLLs is more "
                         f"than the {MAX_BOOTSTRAP_VALUES:,} values drawn at once; use fewer")
    entropy = float(_nll(nll_entropy, "nll_entropy").mean())
    pool = _nll(nll_bootstrap, "nll_bootstrap")
    rng = np.random.default_rng(seed)
    draws = pool[rng.integers(0, len(pool), size=(num_bootstrap, batch_size))]
    eps = np.abs(draws.mean(axis=1) - entropy)
    return TypicalityTest(entropy=entropy, batch_size=batch_size, alpha=alpha,
                          threshold=float(np.quantile(eps, alpha)), num_bootstrap=num_bootstrap)
