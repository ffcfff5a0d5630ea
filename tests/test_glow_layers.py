"""Glow layers: each is invertible and its log-determinant equals a brute-force Jacobian's.

Everything runs in float64 on tiny inputs; the reference log|det J| comes from the full
Jacobian (torch.autograd.functional.jacobian) of the layer's map on one example.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tractable.models.glow.actnorm import ActNorm
from tractable.models.glow.coupling import Coupling, bounded_log_scale
from tractable.models.glow.invconv import InvConv2d, InvConv2dLU
from tractable.models.glow.multiscale import Split, squeeze2d, unsqueeze2d
from tractable.models.glow.step import FlowStep


def jacobian_logdet(f, x: torch.Tensor) -> torch.Tensor:
    """log|det d f(x)/dx| for one example x [1, C, H, W] by the full Jacobian."""
    jac = torch.autograd.functional.jacobian(lambda v: f(v.view_as(x)).flatten(), x.flatten())
    return torch.linalg.slogdet(jac)[1]


def randomize_(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Move every parameter off its (often identity-making) initialization."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def layers(c: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "actnorm": ActNorm(c),
        "invconv_plain": InvConv2d(c),
        "invconv_lu": InvConv2dLU(c),
        "coupling_affine": Coupling(c, width=8, affine=True),
        "coupling_affine_floor": Coupling(c, width=8, affine=True, scale_floor=0.05),
        "coupling_additive": Coupling(c, width=8, affine=False),
        "flowstep_affine_lu": FlowStep(c, width=8, affine=True, lu=True),
        "flowstep_affine_floor": FlowStep(c, width=8, affine=True, lu=True, scale_floor=0.3),
        "flowstep_additive_plain": FlowStep(c, width=8, affine=False, lu=False),
    }


NAMES = list(layers(4))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("c", [4, 5])  # 5: coupling halves of unequal size
def test_layer_logdet_equals_bruteforce_jacobian(name, c):
    layer = randomize_(layers(c)[name]).double()
    x = torch.randn(1, c, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, logdet = layer(x)
    assert logdet.shape == (1,) and logdet.dtype == torch.float64
    expected = jacobian_logdet(lambda v: layer(v)[0], x)
    torch.testing.assert_close(logdet[0], expected, atol=1e-6, rtol=0)
    if name.startswith("coupling_additive"):
        assert logdet.abs().max() == 0  # volume preserving


@pytest.mark.parametrize("name", NAMES)
def test_layer_is_invertible(name):
    layer = randomize_(layers(6)[name]).double()
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    y, logdet = layer(x)
    assert logdet.shape == (3,)
    assert not torch.allclose(y, x)  # the randomized layer does something
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-10, rtol=0)


def test_logdet_is_per_example_for_coupling():
    layer = randomize_(Coupling(4, width=8)).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    _, logdet = layer(x)
    for i in range(2):
        torch.testing.assert_close(
            logdet[i], jacobian_logdet(lambda v: layer(v)[0], x[i : i + 1]), atol=1e-6, rtol=0
        )


def test_lu_weight_is_the_product_of_its_factors_and_starts_orthogonal():
    torch.manual_seed(0)
    layer = InvConv2dLU(6).double()
    w = layer.weight()
    torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.slogdet(w)[1], layer.log_s.sum(), atol=1e-9, rtol=0)
    # the strictly-triangular masks keep L unit-lower and U strictly-upper after updates
    randomize_(layer)
    lower = layer.lower * layer.lower_mask + layer.eye
    assert torch.equal(torch.diagonal(lower), torch.ones(6, dtype=torch.float64))


def test_plain_invconv_logdet_uses_float64():
    """On a wide, badly conditioned W the float32 log-det is off by ~3e-7 relative; the
    layer computes it in float64, so only the final rounding to float32 remains."""
    torch.manual_seed(0)
    layer = InvConv2d(512)
    with torch.no_grad():
        layer.weight.mul_(torch.linspace(0.05, 20.0, 512).unsqueeze(1))
        layer.weight.add_(0.3 * torch.randn(512, 512))
    _, logdet = layer(torch.zeros(1, 512, 1, 1))
    exact = torch.linalg.slogdet(layer.weight.double())[1].item()
    in_float32 = torch.linalg.slogdet(layer.weight)[1].item()
    assert abs(in_float32 - exact) > 1e-7 * abs(exact)  # the case this guards against
    assert abs(logdet.item() - exact) <= 1e-7 * abs(exact)


def test_squeeze_is_a_permutation_and_unsqueeze_inverts_it():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6)
    s = squeeze2d(x)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(s.flatten().sort().values, x.flatten().sort().values)
    assert torch.equal(unsqueeze2d(s), x)
    # channel 4c + 2i + j holds pixel (2h + i, 2w + j) of channel c (openai/glow's order)
    assert s[0, 4 * 1 + 2 * 1 + 0, 1, 2] == x[0, 1, 2 * 1 + 1, 2 * 2 + 0]
    assert jacobian_logdet(squeeze2d, x[:1]).abs() < 1e-12


def test_split_prior_is_standard_normal_at_init_and_join_inverts_divide():
    split = Split(6).double()
    z = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    kept, out = split.divide(z)
    assert kept.shape == (2, 3, 3, 3) and out.shape == (2, 3, 3, 3)
    mean, logs = split.prior_params(kept)
    assert mean.abs().max() == 0 and logs.abs().max() == 0  # zero-initialized conv
    assert torch.equal(split.join(kept, out), z)


EXTREMES = [-3.0e38, -1e30, -1e4, -50.0, -2.0, 0.0, 2.0, 50.0, 1e4, 1e30, 3.0e38]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("floor", [0.05, 0.3])
def test_bounded_log_scale_stays_in_its_bounds_for_extreme_inputs(dtype, floor):
    h = torch.tensor(EXTREMES, dtype=dtype)
    log_scale = bounded_log_scale(h, floor)
    assert torch.isfinite(log_scale).all()
    eps = 4 * torch.finfo(dtype).eps
    assert (log_scale >= math.log(floor) - eps).all() and (log_scale <= eps).all()
    # it is the formula log(f + (1 - f)·sigmoid(h + 2)), saturating at both ends
    direct = torch.log(floor + (1 - floor) * torch.sigmoid(h.double() + 2.0))
    torch.testing.assert_close(log_scale.double(), direct, atol=eps, rtol=0)
    assert math.isclose(log_scale[0].item(), math.log(floor), abs_tol=eps)
    assert abs(log_scale[-1].item()) <= eps


def test_floor_zero_is_openais_unbounded_scale():
    h = torch.tensor(EXTREMES[1:-1], dtype=torch.float64)
    assert torch.equal(bounded_log_scale(h, 0.0), F.logsigmoid(h + 2.0))
    assert bounded_log_scale(h, 0.0)[0] < -1e29  # unbounded: the inverse divides by e^1e30


def extreme_coupling(floor: float) -> Coupling:
    """An affine coupling whose scale outputs h reach ±1e4: far outside any data's."""
    layer = randomize_(Coupling(4, width=8, affine=True, scale_floor=floor)).double()
    with torch.no_grad():
        layer.net.out.logs[:, 1::2] = 3.0  # the zero conv's h channels × e^9
    return layer


def test_floored_coupling_inverts_exactly_where_the_unbounded_one_overflows():
    x = 10 * torch.randn(3, 4, 5, 5, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(2))
    floored = extreme_coupling(0.05)
    _, log_scale = floored._params(x[:, :2])
    assert log_scale.min() < math.log(0.05) + 1e-6  # the network's h saturates the floor
    y, logdet = floored(x)
    n_scaled = 2 * 5 * 5
    assert torch.isfinite(y).all() and (logdet >= n_scaled * math.log(0.05) - 1e-9).all()
    assert (logdet <= 1e-9).all()
    back = floored.inverse(y)
    torch.testing.assert_close(back, x, atol=1e-9, rtol=1e-12)
    torch.testing.assert_close(logdet[0], jacobian_logdet(lambda v: floored(v)[0], x[:1]),
                               atol=1e-6, rtol=0)
    # the same weights with openai's unbounded scale lose x: the forward map scales some
    # sub-pixels by ~e^-1e4 (to zero), so its inverse gives NaN/inf or other values
    unbounded = extreme_coupling(0.0)
    y0, _ = unbounded(x)
    back0 = unbounded.inverse(y0)
    assert not torch.isfinite(back0).all() or not torch.allclose(back0, x)
