"""TarFlow's own properties (the family contract runs in tests/test_family_contract.py):
log-determinant against the brute-force Jacobian, exact inverses (cached and recomputed),
causality of every block by gradients, cached == recomputed sampling in float64 (also with
guidance), bounded scales, and the likelihood's independence of the training-only noise."""

from __future__ import annotations

import math

import pytest
import torch

from tractable.data import load_dataset
from tractable.errors import ShapeError, TractableError
from tractable.models import TarFlow, TarFlowConfig
from tractable.sampling import sample_with
from tractable.sampling.flow import invert_flow, sample_flow


def make(channels: int = 1, num_classes: int = 0, size: int = 4, seed: int = 0,
         scale: float = 0.3, **changes) -> TarFlow:
    """A tiny float64 TarFlow whose zero-initialized output layers are randomized, so each
    block is a real (non-identity) autoregressive map."""
    settings = {"patch_size": 2, "width": 16, "blocks": 3, "layers": 2, "heads": 2, **changes}
    cfg = TarFlowConfig(image_shape=(channels, size, size), num_classes=num_classes,
                        class_names=[str(i) for i in range(num_classes)], **settings)
    torch.manual_seed(seed)
    model = TarFlow(cfg).double().eval()
    with torch.no_grad():
        for block in model.blocks:
            block.out.weight.normal_(0.0, scale)
            block.out.bias.normal_(0.0, scale)
    return model


def uniform(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Continuous images x_c in [-0.5, 0.5), float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, dtype=torch.float64, generator=g) - 0.5


def soft_labels(n: int, k: int) -> torch.Tensor:
    w = torch.rand(n, k, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return w / w.sum(1, keepdim=True)


@pytest.mark.parametrize("num_classes", [0, 3])
def test_log_density_equals_the_brute_force_jacobian(num_classes):
    model = make(channels=2, num_classes=num_classes)
    y = soft_labels(1, 3) if num_classes else None
    x_c = uniform((1, 2, 4, 4), seed=1)
    y_w = y if num_classes else None

    def latent(v: torch.Tensor) -> torch.Tensor:
        return model.flow(model._to_sequence(v.view(1, 2, 4, 4)), y_w)[0].flatten()

    v = x_c.flatten()
    jac = torch.autograd.functional.jacobian(latent, v)
    z = latent(v)
    brute = (-0.5 * math.log(2 * math.pi) - 0.5 * z**2).sum() + torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(model.continuous_log_prob(x_c, y)[0], brute, rtol=0, atol=1e-9)
    assert abs(torch.linalg.slogdet(jac)[1].item() - 32 * math.log(2)) > 0.1  # not identity


@pytest.mark.parametrize("cached", [True, False])
def test_the_inverse_is_exact_on_continuous_inputs(cached):
    model = make(channels=3, num_classes=3, size=6, patch_size=3)
    x_c = uniform((4, 3, 6, 6), seed=2)
    y = torch.tensor([0, 1, 2, 1])
    y_w = torch.nn.functional.one_hot(y, 3).double()
    z, _ = model.flow(model._to_sequence(x_c), y_w)
    back = model.sequence_to_continuous(invert_flow(model, z, y, cached=cached))
    torch.testing.assert_close(back, x_c, rtol=0, atol=1e-12)


def test_encode_decode_round_trips_real_digits_bit_for_bit():
    # small output weights: a random Transformer is a far less stable map than a trained one
    model = make(num_classes=10, size=28, patch_size=4, scale=0.05).float()
    data = load_dataset("mnist-mini", "test")
    x, y = data.images[:6], data.labels[:6]
    latents = model.encode(x, y)
    assert len(latents) == 1 and latents[0].shape == (6, 1, 28, 28)
    assert latents[0].dtype == torch.float64
    assert torch.equal(model.decode(latents, y), x)
    assert torch.equal(model.decode(model.encode(x), None), x)  # the "no class" flow
    with pytest.raises(ShapeError, match="list of one tensor"):
        model.decode([latents[0][:, :, :4]])


@pytest.mark.parametrize("t", [0, 1, 2])
def test_each_block_is_causal_in_its_own_order(t):
    """d(mu_i, alpha_i)/d x_j = 0 for every j >= i in block t's patch order, and some
    earlier patch does matter."""
    model = make(channels=1, num_classes=2, size=6, patch_size=2, blocks=3)
    seq = torch.randn(1, 9, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1])
    for i in range(9):
        mu, alpha = model.block_params(t, seq, y)
        (g,) = torch.autograd.grad((mu[0, i] + alpha[0, i] ** 2).sum(), seq)
        assert g[0, i:].abs().max() == 0, f"patch {i} reads a patch at or after itself"
        if i > 0:
            assert g[0, :i].abs().max() > 0, f"patch {i} ignores its predecessors"


def test_blocks_alternate_direction():
    model = make(size=4, blocks=2)
    seq = torch.arange(4.0, dtype=torch.float64).view(1, 4, 1).expand(1, 4, 4)
    assert torch.equal(model.to_block_order(0, seq), seq)
    assert torch.equal(model.to_block_order(1, seq), seq.flip(1))
    assert torch.equal(model.from_block_order(1, model.to_block_order(1, seq)), seq)


@pytest.mark.parametrize("num_classes,guidance,tau", [(0, 0.0, None), (3, 0.0, None),
                                                      (3, 1.5, None), (0, 1.0, 1.7)])
def test_cached_sampling_equals_recomputation_in_float64(num_classes, guidance, tau):
    model = make(channels=3, num_classes=num_classes, size=8, patch_size=2, scale=0.2)
    y = torch.tensor([0, 1, 2, 0]) if num_classes else None
    kw = dict(y=y, temperature=0.8, guidance=guidance, attention_temperature=tau)
    a = sample_flow(model, 4, generator=torch.Generator().manual_seed(5), cached=True, **kw)
    b = sample_flow(model, 4, generator=torch.Generator().manual_seed(5), cached=False, **kw)
    assert torch.equal(a, b)
    z = model.prior_sequence(4, 1.0, torch.Generator().manual_seed(6))
    seq_a = invert_flow(model, z, y, cached=True, guidance=guidance, attention_temperature=tau)
    seq_b = invert_flow(model, z, y, cached=False, guidance=guidance, attention_temperature=tau)
    torch.testing.assert_close(seq_a, seq_b, rtol=0, atol=1e-12)
    if guidance:  # guidance changes the samples
        plain = invert_flow(model, z, y, cached=True)
        assert (plain - seq_a).abs().max() > 1e-3


def test_registered_samplers_agree_and_guidance_needs_a_weak_model():
    model = make(channels=1, num_classes=0, size=8)
    g = torch.Generator
    a = sample_with(model, 3, sampler="flow-cached", generator=g().manual_seed(1))
    b = sample_with(model, 3, sampler="flow-naive", generator=g().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(TractableError, match="attention_temperature"):
        sample_flow(model, 2, guidance=1.0)
    with pytest.raises(TractableError, match="guidance"):
        sample_flow(model, 2, guidance=-1.0)


def test_log_scales_are_bounded_so_the_inverse_stays_finite():
    model = make(channels=1, size=8, scale=50.0, blocks=4, log_scale_bound=3.0).float()
    seq = torch.randn(2, 16, 4) * 100
    for t in range(4):
        _, alpha = model.block_params(t, seq, None)
        assert alpha.abs().max() <= 3.0
    z = model.prior_sequence(8, 30.0, torch.Generator().manual_seed(0))  # far out latents
    x = invert_flow(model, z, None)
    assert torch.isfinite(x).all()
    bound = math.exp(4 * 3.0) * (z.abs().max() + 4 * 1e3)
    assert x.abs().max() < bound


def test_noise_augmentation_and_label_drop_change_training_only():
    torch.manual_seed(0)
    clean = make(num_classes=3, size=8)
    noisy = make(num_classes=3, size=8, noise_std=0.05, label_drop=0.5)
    noisy.load_state_dict(clean.state_dict())
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0])
    for mode in (True, False):  # what log_prob and bits/dim report: the clean data's
        noisy.train(mode)
        torch.manual_seed(4)
        reported = noisy.bits_per_dim(x, y)
        torch.manual_seed(4)
        torch.testing.assert_close(reported, clean.bits_per_dim(x, y))
    noisy.train()
    torch.manual_seed(1)
    train_loss, metrics = noisy.loss(x, y)
    torch.manual_seed(1)
    assert not torch.allclose(train_loss, clean.train().loss(x, y)[0])
    assert metrics["bpd"] == train_loss.detach()


def test_soft_one_hot_labels_equal_class_indices():
    model = make(num_classes=3, size=4)
    x = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8)
    y = torch.tensor([2, 0, 1])
    g = torch.Generator
    a = model.log_prob(x, y, generator=g().manual_seed(0))
    b = model.log_prob(x, torch.nn.functional.one_hot(y, 3).double(), generator=g().manual_seed(0))
    torch.testing.assert_close(a, b)
    mixed = model.log_prob(x, soft_labels(3, 3), generator=g().manual_seed(0))
    assert not torch.allclose(a, mixed)


def test_denoising_is_a_score_step_that_raises_the_density():
    model = make(channels=1, size=8, noise_std=0.05, scale=0.02)
    x_c = uniform((3, 1, 8, 8), seed=9)
    out = model.denoise(x_c, None)
    assert (out - x_c).abs().max() > 0
    assert (model.continuous_log_prob(out) > model.continuous_log_prob(x_c)).all()
    still = make(channels=1, size=8)  # trained without noise: nothing to remove
    assert torch.equal(still.denoise(x_c, None), x_c)


def test_config_refuses_patches_that_do_not_tile_and_unbounded_inverses():
    from tractable.errors import ConfigError

    with pytest.raises(ConfigError, match="patch_size 3"):
        TarFlowConfig(image_shape=(1, 8, 8), patch_size=3).validate()
    with pytest.raises(ConfigError, match="overflow"):
        TarFlowConfig(image_shape=(1, 8, 8), blocks=40, log_scale_bound=4.0).validate()
    with pytest.raises(ConfigError, match="heads"):
        TarFlowConfig(image_shape=(1, 8, 8), width=10, heads=4).validate()
