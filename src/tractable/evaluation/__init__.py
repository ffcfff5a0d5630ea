"""Evaluation: exact bits/dim over a dataset (and, later, NLL maps and OOD scores)."""

from tractable.evaluation.bpd import BpdResult, check_data_fits_model, evaluate_bpd

__all__ = ["BpdResult", "check_data_fits_model", "evaluate_bpd"]
