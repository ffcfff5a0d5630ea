"""Exact bits/dim of a model on a dataset: `tractable.models.bpd`, re-exported here.

It lives on the models floor so that training, which may not import evaluation, can use it.
"""

from tractable.models.bpd import (
    PRECISIONS,
    BpdResult,
    autocast,
    check_data_fits_model,
    dataset_tensors,
    evaluate_bpd,
    labels_for,
)

__all__ = ["PRECISIONS", "BpdResult", "autocast", "check_data_fits_model", "dataset_tensors",
           "evaluate_bpd", "labels_for"]
