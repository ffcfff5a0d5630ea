"""Under bf16 autocast the body runs in bf16 but distribution parameters come out in fp32."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tractable.models import (
    GatedPixelCNN,
    GatedPixelCNNConfig,
    PixelCNNPlusPlus,
    PixelCNNPlusPlusConfig,
)
from tractable.nn.precision import run_in_full_precision


def test_layer_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 5, 1)
    x = torch.randn(2, 8, 4, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # what autocast alone would give
        out = run_in_full_precision(layer, x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, layer(x.float()), rtol=0, atol=0)


def test_outside_autocast_the_layer_is_called_as_is():
    layer = nn.Conv2d(3, 2, 1).double()
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    assert torch.equal(run_in_full_precision(layer, x), layer(x))


@pytest.mark.parametrize("family", ["pixelcnn++", "gated"])
def test_model_parameters_are_float32_under_bf16_autocast(family):
    torch.manual_seed(0)
    if family == "pixelcnn++":
        model = PixelCNNPlusPlus(PixelCNNPlusPlusConfig(
            image_shape=(1, 8, 8), nr_resnet=1, nr_filters=8, nr_logistic_mix=2))
    else:
        model = GatedPixelCNN(GatedPixelCNNConfig(
            image_shape=(1, 8, 8), n_layers=2, n_filters=8, head_filters=8))
    model.eval()  # no dropout: both passes see the same network
    x = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = model(model.scale(x))
        bf16_nll = -model.log_prob(x)
    assert params.dtype == torch.float32
    # Same network, bf16 body: close to the fp32 result, not bit-equal (the body is bf16).
    torch.testing.assert_close(bf16_nll, -model.log_prob(x), rtol=2e-2, atol=0)
