"""Label checks stay outside a compiled loss: a class-conditional PixelCNN++ traces as one
graph, while eager calls and the trainer's data check still refuse bad labels."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tractable.errors import ShapeError
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.models.bpd import check_data_fits_model


def tiny_conditional() -> PixelCNNPlusPlus:
    cfg = PixelCNNPlusPlusConfig(image_shape=(1, 8, 8), num_classes=3, nr_resnet=1,
                                 nr_filters=8, nr_logistic_mix=2)
    return PixelCNNPlusPlus(cfg).train()


def test_a_conditional_loss_traces_as_one_graph() -> None:
    model = tiny_conditional()
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model.loss)(x, torch.tensor([0, 1, 2, 0]))
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize("y,message", [
    (torch.tensor([0, 1, 3, 0]), "class index 3 out of range 0..2"),
    (torch.full((4, 3), 0.5), "sum to 1"),
])
def test_eager_calls_still_check_label_values(y: torch.Tensor, message: str) -> None:
    model = tiny_conditional()
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    with pytest.raises(ShapeError, match=message):
        model.loss(x, y)


def test_training_data_labels_are_checked_before_any_step() -> None:
    """Your own dataset (no class names for ImageDataset to check against) with a label
    beyond the model's classes: refused by the trainer's data check, not inside a step."""
    bad = SimpleNamespace(shape=(1, 8, 8), num_classes=3, labels=torch.tensor([0, 1, 2, 5]),
                          name="toy")
    with pytest.raises(ShapeError, match="class index 5"):
        check_data_fits_model(tiny_conditional(), bad)
