"""Evaluation: exact bits/dim over a dataset, per-image and per-pixel NLLs, OOD scores."""

from tractable.evaluation.metrics import auprc, auroc, detection_metrics, fpr_at_tpr
from tractable.evaluation.ood import evaluate_ood, measure, ood_scores
from tractable.evaluation.scoring import pixel_nll, score_dataset
from tractable.models.bpd import BpdResult, check_data_fits_model, evaluate_bpd

__all__ = ["BpdResult", "auprc", "auroc", "check_data_fits_model", "detection_metrics",
           "evaluate_bpd", "evaluate_ood", "fpr_at_tpr", "measure", "ood_scores", "pixel_nll",
           "score_dataset"]
