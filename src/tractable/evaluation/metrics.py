"""Detection metrics for out-of-distribution scores: AUROC, AUPRC and FPR at a given TPR.

Convention used throughout `tractable.evaluation`: a score is *higher for inputs that look
more out-of-distribution*, and the out-of-distribution inputs are the positive class. So
AUROC = 1 is perfect detection, 0.5 is chance, and an AUROC well below 0.5 means the score
ranks the wrong way round (the raw-likelihood failure of Nalisnick et al., 2019: models
give the OOD set *lower* NLL).

Ties are counted as half a correct ranking, which makes AUROC the Mann–Whitney statistic

    AUROC = P(s_out > s_in) + ½ P(s_out = s_in)

(Hanley & McNeil, 1982), computed from mid-ranks in O(N log N).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tractable.errors import ShapeError

ArrayLike = np.ndarray | Sequence[float]


def _scores(values: ArrayLike, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ShapeError(f"{what} must be a non-empty 1-D array of scores, got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise ShapeError(f"{what} holds {bad} NaN/inf score(s); drop or fix those inputs first")
    return a


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # Start index of each run of equal values, and its length.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    lengths = np.diff(np.r_[starts, len(values)])
    run_rank = starts + (lengths + 1) / 2.0  # mean of ranks starts+1 .. starts+length
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, lengths)
    return ranks


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Area under the ROC curve for detecting `scores_out` (positives) among `scores_in`."""
    s_in, s_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    ranks = midranks(np.concatenate([s_out, s_in]))
    n_pos, n_neg = len(s_out), len(s_in)
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0  # Mann–Whitney U of the positives
    return float(u / (n_pos * n_neg))


def _curve(scores_in: np.ndarray, scores_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) when flagging `score >= t`, for each distinct t
    from the highest down (tied scores enter together, so no tie order is invented)."""
    scores = np.concatenate([scores_out, scores_in])
    positive = np.r_[np.ones(len(scores_out)), np.zeros(len(scores_in))]
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_run = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(positive)[last_of_run]
    fp = np.cumsum(1.0 - positive)[last_of_run]
    return tp, fp


def auprc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Area under the precision–recall curve, OOD as positives (average precision).

    AP = Σ_k (R_k − R_{k−1}) P_k over the distinct thresholds, highest first: the step
    interpolation that does not reward the optimistic linear interpolation of PR curves.
    """
    s_in, s_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    tp, fp = _curve(s_in, s_out)
    precision = tp / (tp + fp)
    recall = tp / len(s_out)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.8) -> float:
    """False-positive rate at the highest threshold whose true-positive rate is >= `tpr`.

    Flagging `score >= t`: the fraction of in-distribution inputs flagged when at least
    `tpr` of the OOD inputs are. Lower is better.
    """
    if not 0.0 < tpr <= 1.0:
        raise ShapeError(f"tpr must be in (0, 1], got {tpr}")
    s_in, s_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    tp, fp = _curve(s_in, s_out)
    # A tiny tolerance so that e.g. 8 of 10 counts as 80% despite float rounding.
    k = int(np.argmax(tp / len(s_out) >= tpr - 1e-12))
    return float(fp[k] / len(s_in))


@dataclass
class DetectionMetrics:
    """How well one score separates OOD inputs (positives) from in-distribution ones."""

    auroc: float
    auprc: float
    fpr_at_80_tpr: float
    num_in: int
    num_out: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def detection_metrics(scores_in: ArrayLike, scores_out: ArrayLike) -> DetectionMetrics:
    """AUROC, AUPRC and FPR at 80% TPR of one score (higher = more OOD)."""
    return DetectionMetrics(
        auroc=auroc(scores_in, scores_out),
        auprc=auprc(scores_in, scores_out),
        fpr_at_80_tpr=fpr_at_tpr(scores_in, scores_out, 0.8),
        num_in=len(np.asarray(scores_in)),
        num_out=len(np.asarray(scores_out)),
    )
