"""Out-of-distribution scores from likelihood models, and how well each one detects.

Every score is *higher for inputs that look more out-of-distribution* (see
`tractable.evaluation.metrics` for the metric conventions), in bits per dimension:

- "nll": the model's NLL, −log₂ p(x) / D. The naive detector; it famously fails — models
  of Fashion-MNIST give MNIST digits *higher* likelihood (Nalisnick et al., "Do deep
  generative models know what they don't know?", ICLR 2019).
- "likelihood_ratio": −LLR(x) / D with LLR(x) = log p_θ(x) − log p_θ₀(x) (Ren et al.,
  "Likelihood ratios for out-of-distribution detection", NeurIPS 2019): the model against
  a *background* model p_θ₀ of the same family trained on randomly mutated in-distribution
  inputs (`tractable.data.mutation`) with L2 weight decay. The background model explains
  the population-level statistics the two sets share, so the ratio keeps the semantic part
  of the likelihood (docs/ood.md shows why the L2 penalty matters).
- "complexity_<codec>": S(x) = (NLL − L(x)) / D in bits (Serrà et al., ICLR 2020),
  L the lossless compressed length (`tractable.evaluation.complexity`).
- "typicality": |NLL − Ĥ| / D, the typicality test of Nalisnick et al. (2019) with batch
  size M = 1, Ĥ the mean NLL on held-out in-distribution data. Batches of M > 1 are
  evaluated separately (`typicality_batches`), since they score batches, not images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from tractable.data.streaming import stream_batches
from tractable.errors import ShapeError
from tractable.evaluation.complexity import DEFAULT_CODECS, compressed_bits
from tractable.evaluation.metrics import DetectionMetrics, detection_metrics
from tractable.evaluation.scoring import score_dataset
from tractable.evaluation.typicality import TypicalityTest, fit_typicality
from tractable.models.base import TractableModel
from tractable.models.bpd import dataset_tensors

SCORE_DESCRIPTIONS = {
    "nll": "negative log-likelihood (Nalisnick et al. 2019: fails)",
    "likelihood_ratio": "-(log p_model - log p_background) (Ren et al. 2019)",
    "complexity_png": "NLL - PNG length (Serra et al. 2020)",
    "complexity_jpeg2000": "NLL - JPEG 2000 length (Serra et al. 2020)",
    "complexity_webp": "NLL - lossless WebP length (Serra et al. 2020)",
    "typicality": "|NLL - entropy estimate|, typicality test with M = 1 (Nalisnick et al. 2019)",
}


@dataclass
class Measurements:
    """What the scores are made of, per image, in bits/dim: NLL under the model, under
    the background model, and the compressed length under each codec."""

    nll: np.ndarray
    background_nll: np.ndarray | None = None
    compressed: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.nll)


def measure(
    model: TractableModel,
    dataset: Dataset,
    background: TractableModel | None = None,
    codecs: Sequence[str] = DEFAULT_CODECS,
    batch_size: int = 64,
    progress: bool = False,
) -> Measurements:
    """Score every image of `dataset` with the model, the background model and the codecs.

    Class-conditional models give the marginal likelihood over their classes: an OOD set's
    labels (if any) mean nothing to them.
    """
    nll = score_dataset(model, dataset, batch_size, progress=progress,
                        marginal=True).bits_per_dim
    bg = None
    if background is not None:
        if tuple(background.config.image_shape) != tuple(model.config.image_shape):
            raise ShapeError(f"the background model is built for images of shape "
                             f"{background.config.image_shape}, the model for "
                             f"{model.config.image_shape}; train both on the same data")
        bg = score_dataset(background, dataset, batch_size, progress=progress,
                           marginal=True).bits_per_dim
    dims = model.num_dims
    compressed = {c: _streamed_compressed_bits(dataset, c) / dims for c in codecs}
    return Measurements(nll=nll, background_nll=bg, compressed=compressed)


def _streamed_compressed_bits(dataset: Dataset, codec: str, batch_size: int = 256) -> np.ndarray:
    """`compressed_bits` of every image, read batch by batch (a mapped set is never held)."""
    images, labels = dataset_tensors(dataset)
    batches = stream_batches(images, labels, 0, len(images), batch_size, dataset)
    return np.concatenate([compressed_bits(x, codec) for _, x, _ in batches])


def ood_scores(m: Measurements, entropy: float | None = None) -> dict[str, np.ndarray]:
    """Every score the measurements allow (see the module docstring), bits/dim each.

    `entropy`: Ĥ in bits/dim (mean held-out in-distribution NLL) for "typicality".
    """
    scores = {"nll": m.nll}
    if m.background_nll is not None:
        scores["likelihood_ratio"] = m.nll - m.background_nll
    for codec, length in m.compressed.items():
        scores[f"complexity_{codec}"] = m.nll - length
    if entropy is not None:
        scores["typicality"] = np.abs(m.nll - entropy)
    return scores


def compare_scores(
    scores_in: dict[str, np.ndarray], scores_out: dict[str, np.ndarray]
) -> dict[str, DetectionMetrics]:
    """Detection metrics of each score present for both the in- and the out-set."""
    return {name: detection_metrics(scores_in[name], scores_out[name])
            for name in scores_in if name in scores_out}


def typicality_batches(
    test: TypicalityTest, nll_in: np.ndarray, nll_out: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """The batch test on disjoint batches of M in-distribution and M OOD inputs.

    Reports the detection metrics of the batch statistic ε̂ and, at the bootstrap
    threshold ε_α, the fraction of OOD batches flagged (detection rate) and of
    in-distribution batches flagged (false alarms; ≈ 1 − α if the test is calibrated).
    """
    eps_in, eps_out = test.statistic(nll_in, seed), test.statistic(nll_out, seed + 1)
    metrics = detection_metrics(eps_in, eps_out)
    return {
        **test.to_dict(),
        "metrics": metrics.to_dict(),
        "detection_rate": float((eps_out > test.threshold).mean()),
        "false_alarm_rate": float((eps_in > test.threshold).mean()),
    }


@dataclass
class OODReport:
    """Scores of both sets, the metrics of every score, and the typicality batch test."""

    scores_in: dict[str, np.ndarray]
    scores_out: dict[str, np.ndarray]
    metrics: dict[str, DetectionMetrics]
    typicality: dict[str, Any] | None
    entropy: float | None  # Ĥ, bits/dim

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "typicality_batches": self.typicality,
            "entropy_bits_per_dim": self.entropy,
            "mean_scores": {k: {"in": float(np.mean(self.scores_in[k])),
                                "out": float(np.mean(self.scores_out[k]))}
                            for k in self.metrics},
            "descriptions": {k: SCORE_DESCRIPTIONS.get(k, "") for k in self.metrics},
        }


def evaluate_ood(
    m_in: Measurements,
    m_out: Measurements,
    heldout_nll: np.ndarray | None = None,
    typicality_m: int = 10,
    alpha: float = 0.99,
    num_bootstrap: int = 10_000,
    seed: int = 0,
) -> OODReport:
    """Scores and metrics for an in-distribution test set against an OOD set.

    `heldout_nll`: NLLs (bits/dim) of held-out in-distribution images, not the in-set
    test images, for the entropy estimate and the bootstrap of the typicality test;
    without them "typicality" is left out.
    """
    entropy = test = None
    if heldout_nll is not None:
        test = fit_typicality(heldout_nll, heldout_nll, typicality_m, alpha, num_bootstrap, seed)
        entropy = test.entropy
    s_in, s_out = ood_scores(m_in, entropy), ood_scores(m_out, entropy)
    batches = None
    if test is not None and min(len(m_in), len(m_out)) >= typicality_m:
        batches = typicality_batches(test, m_in.nll, m_out.nll, seed)
    return OODReport(scores_in=s_in, scores_out=s_out, metrics=compare_scores(s_in, s_out),
                     typicality=batches, entropy=entropy)


def format_table(report: OODReport, in_name: str = "in", out_name: str = "out") -> str:
    """A plain-text table: one row per score with AUROC, AUPRC, FPR@80%TPR and means."""
    width = max([24, *(len(k) for k in report.metrics)])
    head = (f"{'score':{width}s} {'AUROC':>7s} {'AUPRC':>7s} {'FPR@80':>7s}  "
            f"{'mean ' + in_name:>16s} {'mean ' + out_name:>16s}")
    rows = [head, "-" * len(head)]
    for name, m in report.metrics.items():
        mi, mo = float(np.mean(report.scores_in[name])), float(np.mean(report.scores_out[name]))
        rows.append(f"{name:{width}s} {m.auroc:7.3f} {m.auprc:7.3f} {m.fpr_at_80_tpr:7.3f}  "
                    f"{mi:16.4f} {mo:16.4f}")
    t = report.typicality
    if t is not None:
        b = t["metrics"]
        rows.append(f"{'typicality M=' + str(t['batch_size']) + ' (batch)':{width}s} "
                    f"{b['auroc']:7.3f} {b['auprc']:7.3f} {b['fpr_at_80_tpr']:7.3f}  "
                    f"flags {t['false_alarm_rate']:.1%} of {in_name} and "
                    f"{t['detection_rate']:.1%} of {out_name} batches at alpha={t['alpha']}")
    return "\n".join(rows)

