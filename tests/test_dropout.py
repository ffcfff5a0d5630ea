"""Element-wise dropout from bulk random bits: rate, independence, expectation, eval identity,
gradients, memory layout, and the gated block's folded 1/(1 − p) scale."""

from __future__ import annotations

import math

import pytest
import torch

from tractable.nn.dropout import ElementwiseDropout, bernoulli_keep_mask, keep_threshold
from tractable.nn.gated_resnet import GatedResNet, concat_elu
from tractable.nn.shifted import DownRightShiftedConv2d, DownShiftedConv2d
from tractable.nn.weight_norm import initialize_from_data

N = 1 << 21  # elements per statistics check: the rate's standard error is ~3.5e-4


def within(value: float, expected: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(value - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.3, 0.9])
def test_mask_keeps_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    keep = bernoulli_keep_mask(torch.empty(8, 64, 64, 64), 1 - p)
    assert keep.dtype == torch.bool and keep.shape == (8, 64, 64, 64)
    q = (keep_threshold(1 - p) + 2**15) / 2**16  # the rate the threshold realises
    assert abs(q - (1 - p)) <= 2**-17
    assert within(keep.float().mean().item(), q, N)


def test_mask_elements_are_pairwise_independent():
    """Neighbours share a 64-bit draw: both kept must still have probability q², also
    across the word boundary, and the per-position rates within a word must agree."""
    torch.manual_seed(1)
    q = 0.5
    keep = bernoulli_keep_mask(torch.empty(N), q).float()
    for lag in (1, 2, 3, 4, 5):
        both = (keep[:-lag] * keep[lag:]).mean().item()
        assert within(both, q * q, N), lag
    for offset in range(4):
        assert within(keep[offset::4].mean().item(), q, N // 4), offset


def test_masks_differ_between_draws_and_follow_the_global_seed():
    x = torch.empty(4096)
    torch.manual_seed(3)
    a, b = bernoulli_keep_mask(x, 0.5), bernoulli_keep_mask(x, 0.5)
    torch.manual_seed(3)
    c = bernoulli_keep_mask(x, 0.5)
    assert not torch.equal(a, b) and torch.equal(a, c)


def test_training_output_is_zero_or_scaled_and_keeps_the_expectation():
    torch.manual_seed(2)
    d = ElementwiseDropout(0.25).train()
    x = torch.ones(N)
    y = d(x)
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert abs(y.mean().item() - 1.0) < 5 * math.sqrt(0.25 / 0.75 / N)


def test_eval_mode_and_rate_zero_are_the_identity():
    x = torch.randn(2, 3, 4, 5)
    assert ElementwiseDropout(0.5).eval()(x) is x
    assert ElementwiseDropout(0.0).train()(x) is x
    d = ElementwiseDropout(0.5).eval()
    assert d.drop(x) is x and d.gain == 1.0


def test_gradient_is_mask_times_scale_and_drop_times_gain_equals_forward():
    d = ElementwiseDropout(0.5).train()
    x = torch.randn(3, 8, 5, 5, requires_grad=True)
    torch.manual_seed(4)
    y = d(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad, kept.float() * 2.0)
    torch.manual_seed(4)
    assert torch.equal(d.drop(x.detach()) * d.gain, y.detach())


def test_mask_follows_channels_last_layout():
    x = torch.randn(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(5)
    keep = bernoulli_keep_mask(x, 0.5)
    assert keep.shape == x.shape and keep.is_contiguous(memory_format=torch.channels_last)
    y = ElementwiseDropout(0.5).train().drop(x)
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("conv", [DownShiftedConv2d, DownRightShiftedConv2d])
def test_gated_block_folds_the_dropout_scale_into_its_conv_exactly(conv):
    """block(x) == x + value·σ(gate) of conv_out(2·mask·z), bit for bit at p = 0.5 (a factor
    of 2 is exact in floating point, wherever it is applied)."""
    torch.manual_seed(6)
    block = GatedResNet(8, conv, dropout=0.5).train()
    x = torch.randn(2, 8, 6, 6)
    torch.manual_seed(7)
    out = block(x)
    torch.manual_seed(7)
    # the block draws its mask over the zero-padded input of conv_out (see concat_elu)
    z = concat_elu(block.conv_in(concat_elu(x)), block.conv_out.input_pad)
    c2 = block.conv_out(z * bernoulli_keep_mask(z, 0.5) * 2.0, padded=True)
    value, gate = c2.chunk(2, dim=1)
    assert torch.equal(out, x + value * torch.sigmoid(gate))
    assert torch.equal(block.eval()(x), block.eval()(x))  # eval: deterministic


def test_data_dependent_init_sees_the_scaled_dropout_input():
    """With the gain folded in, init still normalises the conv's output on the init batch."""
    torch.manual_seed(8)
    block = GatedResNet(16, DownShiftedConv2d, dropout=0.5).train()
    x = torch.randn(8, 16, 8, 8)
    z = concat_elu(block.conv_in(concat_elu(x)))
    dropped = block.dropout.drop(z)
    layer = block.conv_out
    initialize_from_data(layer, lambda: layer(dropped, gain=2.0))
    out = layer(dropped, gain=2.0).detach()
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(32), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3), unbiased=False), torch.full((32,), 0.1),
                          rtol=1e-3)


@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (1, 1, 1, 0), (2, 0, 1, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_concat_elu_equals_elu_of_concatenation_with_its_gradient(channels_last, pad):
    """concat_elu(x, pad) == F.pad(elu(cat[x, −x]), pad), values and gradients."""
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    if channels_last:
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    out = concat_elu(x, pad)
    ref = torch.nn.functional.pad(torch.nn.functional.elu(torch.cat([x, -x], dim=1)), pad)
    assert torch.equal(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, g)
    (gr,) = torch.autograd.grad(ref, x, g)
    assert torch.allclose(gx, gr, rtol=1e-14, atol=1e-15)  # exp(x) vs result + 1
    assert torch.autograd.gradcheck(lambda t: concat_elu(t, pad), (x,))


def test_traced_mask_keeps_the_rate_and_the_layout():
    """Under torch.compile the mask is `rand_like < keep` (traceable); same rate, same
    layout. `aot_eager` runs the traced graph without building kernels."""
    like = torch.empty(8, 64, 32, 32).contiguous(memory_format=torch.channels_last)
    traced = torch.compile(lambda t: bernoulli_keep_mask(t, 0.5), backend="aot_eager",
                           fullgraph=True)
    torch.manual_seed(0)
    mask = traced(like)
    torch._dynamo.reset()
    n = mask.numel()
    assert mask.dtype == torch.bool and mask.is_contiguous(memory_format=torch.channels_last)
    assert abs(mask.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
