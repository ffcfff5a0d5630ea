"""Class conditioning input `y`: class indices or soft class weights.

Both model families take `y` as either `LongTensor[B]` of class indices or
`FloatTensor[B, K]` of non-negative class weights summing to 1 (soft labels, which blend
classes; one-hot is the special case). Models always work with the weights form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tractable.errors import ShapeError

INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


def class_weights(y: Tensor | None, num_classes: int, batch: int) -> Tensor | None:
    """Return `y` as float class weights `[B, K]`, validating it against the model.

    Returns None for an unconditional model (num_classes == 0), where `y` must be None or
    all -1 (the "no label" value of the data contract).
    """
    if num_classes == 0:
        if y is not None and not (y.dtype == torch.long and bool((y == -1).all())):
            raise ShapeError("this model is unconditional (num_classes=0) but labels were given")
        return None
    if y is None:
        raise ShapeError(f"this model is class-conditional ({num_classes} classes): pass y")
    if y.dtype in INDEX_DTYPES:
        if y.shape != (batch,):
            raise ShapeError(f"class indices y must have shape [{batch}], got {list(y.shape)}")
        if not torch.compiler.is_compiling():
            check_label_values(y, num_classes)
        return torch.nn.functional.one_hot(y.long(), num_classes).float()
    if y.is_floating_point():
        if y.shape != (batch, num_classes):
            raise ShapeError(
                f"soft labels y must have shape [{batch}, {num_classes}], got {list(y.shape)}"
            )
        if not torch.compiler.is_compiling():
            check_label_values(y, num_classes)
        return y
    raise ShapeError(f"y must be class indices (long) or class weights (float), got {y.dtype}")


def check_label_values(y: Tensor, num_classes: int) -> None:
    """Raise `ShapeError` unless every class index is in 0..K−1, or every row of soft
    weights is non-negative and sums to 1.

    It reads values back to the host, which a traced graph cannot do: `class_weights` skips
    it under `torch.compile`, and whoever compiles checks the labels before (the trainer
    checks every training label once, `check_label_values(all_labels, K)`).
    """
    if y.dtype in INDEX_DTYPES:
        if bool(((y < 0) | (y >= num_classes)).any()):
            bad = y[(y < 0) | (y >= num_classes)][0].item()
            raise ShapeError(
                f"class index {bad} out of range 0..{num_classes - 1}"
                + (" (-1 means the data has no labels)" if bad == -1 else "")
            )
        return
    if bool((y < 0).any()) or not torch.allclose(
        y.sum(1), torch.ones(len(y), dtype=y.dtype, device=y.device), atol=1e-4
    ):
        raise ShapeError("soft labels y must be non-negative and sum to 1 per row")
