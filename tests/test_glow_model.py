"""Glow as a whole: exact log-density, bits/dim formula, ActNorm init, exact encode/decode on
real images, gradient checkpointing, class conditioning, save/load."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import tractable
from tractable.data import load_dataset
from tractable.errors import ConfigError, ShapeError
from tractable.models import Glow, GlowConfig
from tractable.models.glow.actnorm import ActNorm
from tractable.models.glow.prior import HALF_LOG_2PI
from tractable.models.glow.quantize import to_continuous


def make(seed: int = 0, **kw) -> Glow:
    torch.manual_seed(seed)
    cfg = dict(image_shape=(1, 4, 4), K=2, L=2, width=8)
    cfg.update(kw)
    return Glow(GlowConfig(**cfg))


def randomize_(model: nn.Module, scale: float = 0.05, seed: int = 0) -> nn.Module:
    """Give the zero-initialized convs and priors real weights, and jitter the rest, so that
    every coupling, split prior and top prior does something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def mnist(n: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset("mnist-mini", split)
    return ds.images[:n], ds.labels[:n]


def cifar(shared_data, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    path = shared_data / "cifar10-first4000" / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    x = np.asarray(batch[b"data"][:n], dtype=np.uint8).reshape(n, 3, 32, 32)
    return torch.from_numpy(x.copy()), torch.tensor(batch[b"labels"][:n])


def flat(latents):
    return torch.cat([z.flatten(1) for z in latents], dim=1)


def flat1(latents):
    """One example's latents as a vector (for Jacobians)."""
    return flat(latents).flatten()


# ---- exact log-density ---------------------------------------------------------------------
OPENAI_OPTIONS = dict(edge_bias=True, border_top_prior=True, hidden_init_std=0.05)


@pytest.mark.parametrize("coupling,lu,shape,options", [
    ("affine", True, (1, 4, 4), {}),
    ("additive", False, (1, 4, 4), {}),
    ("affine", False, (3, 4, 4), {}),
    ("affine", False, (3, 8, 8), OPENAI_OPTIONS),  # openai's edge-bias padding, border prior
    ("additive", True, (1, 4, 4), OPENAI_OPTIONS),
])
def test_whole_flow_logdet_and_density_equal_bruteforce(coupling, lu, shape, options):
    model = randomize_(make(coupling=coupling, lu=lu, image_shape=shape, **options)).double()
    x_c = torch.rand(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x_c = x_c - 0.5

    # the bijection x_c -> (z_1, ..., z_L)
    raw, logdet = model.flow(x_c)
    jac = torch.autograd.functional.jacobian(lambda v: flat1(model.flow(v.view_as(x_c))[0]),
                                             x_c.flatten())
    assert jac.shape == (x_c.numel(), x_c.numel())  # nothing thrown away
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jac)[1], atol=1e-6, rtol=0)

    # the density: change of variables through encode's standardized latents, by brute force
    latents = model.encode(x_c)
    jac = torch.autograd.functional.jacobian(lambda v: flat1(model.encode(v.view_as(x_c))),
                                             x_c.flatten())
    mean, logs = model.top_prior(1, None)
    split_eps = flat(latents[:-1])
    expected = (-HALF_LOG_2PI * split_eps.numel() - 0.5 * split_eps.pow(2).sum()
                - (HALF_LOG_2PI + logs + 0.5 * ((latents[-1] - mean) / logs.exp()) ** 2).sum()
                + torch.linalg.slogdet(jac)[1])
    torch.testing.assert_close(model.continuous_log_prob(x_c)[0], expected, atol=1e-6, rtol=0)


def identity_glow(n_bits: int) -> Glow:
    """A Glow whose flow is the identity (up to squeezes) and whose priors are N(0, I)."""
    model = make(coupling="additive", lu=False, n_bits=n_bits).double()
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "weight") and isinstance(m.weight, nn.Parameter) and m.weight.dim() == 2:
                m.weight.copy_(torch.eye(m.weight.shape[0]))
            if isinstance(m, ActNorm):
                m.initialized.fill_(True)  # keep the identity ActNorms (no data init)
    return model


@pytest.mark.parametrize("n_bits", [8, 5])
def test_bits_per_dim_formula_on_a_known_case(n_bits):
    """log p(x) = Σ log N(x_c; 0, 1) - D·log(n_bins) exactly, for the identity flow."""
    model = identity_glow(n_bits)
    x = torch.randint(0, 256, (3, 1, 4, 4), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    got = model.log_prob(x, generator=torch.Generator().manual_seed(7))
    n_bins = 2**n_bits
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x_c = (torch.div(x.long(), 256 // n_bins, rounding_mode="floor") + u) / n_bins - 0.5
    d = 16
    expected = (-HALF_LOG_2PI - 0.5 * x_c**2).flatten(1).sum(1) - d * math.log(n_bins)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)

    # all pixels 128 at 8 bits: x_c in [0, 1/256), so bpd = 8 + log2(2π)/2 (+ <1.2e-5)
    if n_bits == 8:
        bpd = model.bits_per_dim(torch.full((2, 1, 4, 4), 128, dtype=torch.uint8))
        low = 8 + HALF_LOG_2PI / math.log(2)
        assert bool(((bpd >= low) & (bpd <= low + 0.5 / 256**2 / math.log(2))).all())


def test_log_prob_never_modifies_the_callers_images():
    model = make()
    x = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    before = x.clone()
    model.data_dependent_init(x)
    model.train()
    model.loss(x)[0].backward()
    model.log_prob(x)
    model.encode(x)
    assert torch.equal(x, before)


# ---- ActNorm data-dependent initialization ------------------------------------------------
def test_data_dependent_init_gives_zero_mean_unit_variance_at_every_actnorm():
    x, _ = mnist(64)
    model = make(image_shape=(1, 28, 28), K=3, L=2, width=16)
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: outputs.append(out[0].detach()))
             for m in model.modules() if isinstance(m, ActNorm)]
    assert not model.is_initialized()
    model.data_dependent_init(x)
    for h in hooks:
        h.remove()
    assert model.is_initialized()
    assert len(outputs) == 3 * model.config.K * model.config.L  # flow + 2 in each coupling net
    for out in outputs:
        mean = out.mean(dim=(0, 2, 3))
        var = (out - mean.view(1, -1, 1, 1)).pow(2).mean(dim=(0, 2, 3))
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
        torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)


def test_training_without_explicit_init_initializes_once_on_the_first_batch():
    x, _ = mnist(16)
    model = make(image_shape=(1, 28, 28)).train()
    model.loss(x)
    assert model.is_initialized()
    first = model.levels[0].steps[0].actnorm.bias.clone()
    model.loss(x[8:])  # a second batch does not re-initialize
    assert torch.equal(model.levels[0].steps[0].actnorm.bias, first)


# ---- exact encode / decode on real images -------------------------------------------------
def check_reconstruction(model: Glow, x: torch.Tensor) -> None:
    model.data_dependent_init(x)
    randomize_(model, scale=0.02)
    with torch.no_grad():
        latents = model.encode(x)
        assert [tuple(z.shape[1:]) for z in latents] == model.latent_shapes
        assert sum(z[0].numel() for z in latents) == model.num_dims
        x_c = to_continuous(x, model.config.n_bits, noise=False)
        err = (model.decode_continuous(latents) - x_c).abs().max().item()
        assert err < 1e-4, err
        assert torch.equal(model.decode(latents), x)
        noisy = to_continuous(x, model.config.n_bits)  # dequantized inputs decode exactly too
        err = (model.decode_continuous(model.encode(noisy)) - noisy).abs().max().item()
        assert err < 1e-4, err


def test_encode_decode_is_exact_on_real_mnist():
    x, _ = mnist(32)
    check_reconstruction(make(image_shape=(1, 28, 28), K=4, L=2, width=32), x)


def test_encode_decode_is_exact_on_real_cifar(shared_data):
    x, _ = cifar(shared_data, 16)
    check_reconstruction(make(image_shape=(3, 32, 32), K=4, L=3, width=32, lu=False), x)


def test_encode_decode_stays_exact_under_bf16_autocast_with_float32_logdets():
    x, _ = mnist(8)
    model = make(image_shape=(1, 28, 28), K=2, L=2, width=16)
    model.data_dependent_init(x)
    randomize_(model, scale=0.02)
    x_c = to_continuous(x, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        raw, logdet = model.flow(x_c)
        assert logdet.dtype == torch.float32 and all(z.dtype == torch.float32 for z in raw)
        back = model.decode_continuous(model.encode(x_c))
        bpd16 = model.bits_per_dim(x).mean().item()
    assert (back - x_c).abs().max().item() < 1e-4  # the NN's bf16 output is the same both ways
    assert abs(bpd16 - model.bits_per_dim(x).mean().item()) < 0.05


def test_split_prior_parameters_are_full_precision_under_autocast():
    model = make(image_shape=(1, 28, 28), K=2, L=2, width=16)
    randomize_(model, scale=0.05)
    split = model.levels[0].split
    kept = torch.randn(2, 2, 14, 14, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mean16, logs16 = split.prior_params(kept)
    mean, logs = split.prior_params(kept)
    assert torch.equal(mean16, mean) and torch.equal(logs16, logs)


# ---- gradient checkpointing ---------------------------------------------------------------
def saved_bytes(fn) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def test_checkpointed_and_plain_gradients_are_equal_and_checkpointing_saves_memory():
    x, y = mnist(8)
    plain = make(image_shape=(1, 28, 28), K=3, L=2, width=16, num_classes=10).double()
    plain.data_dependent_init(x, y)
    randomize_(plain, scale=0.02)
    ckpt = make(image_shape=(1, 28, 28), K=3, L=2, width=16, num_classes=10,
                checkpoint_grads=True).double()
    ckpt.load_state_dict(plain.state_dict())

    grads, saved = [], []
    for model in (plain, ckpt):
        out, nbytes = saved_bytes(
            lambda m=model: -m.log_prob(x, y, generator=torch.Generator().manual_seed(0)).mean())
        out.backward()
        grads.append([p.grad for p in model.parameters()])
        saved.append(nbytes)
    for g_plain, g_ckpt in zip(*grads, strict=True):
        torch.testing.assert_close(g_ckpt, g_plain, atol=1e-12, rtol=1e-10)
    assert saved[1] < 0.4 * saved[0], saved


# ---- class conditioning -------------------------------------------------------------------
def test_class_conditional_prior_changes_samples_and_likelihoods():
    model = make(image_shape=(1, 8, 8), num_classes=3)
    nn.init.normal_(model.top_prior.embed.weight, std=1.0)

    def draw(label):
        y = torch.full((4,), label, dtype=torch.long)
        return model.sample(4, y=y, generator=torch.Generator().manual_seed(0))

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    x = draw(0)
    assert not torch.allclose(model.log_prob(x, torch.zeros(4, dtype=torch.long),
                                             generator=torch.Generator().manual_seed(1)),
                              model.log_prob(x, torch.ones(4, dtype=torch.long),
                                             generator=torch.Generator().manual_seed(1)))
    # soft labels blend the classes' prior parameters linearly
    m0, _ = model.top_prior(1, torch.tensor([[1.0, 0, 0]]))
    m1, _ = model.top_prior(1, torch.tensor([[0, 1.0, 0]]))
    mh, _ = model.top_prior(1, torch.tensor([[0.5, 0.5, 0]]))
    torch.testing.assert_close(mh, (m0 + m1) / 2)
    with pytest.raises(ShapeError, match="class-conditional"):
        model.sample(2)


def test_unconditional_model_ignores_labels_and_conditional_loss_adds_weighted_bits_y():
    x, y = mnist(8)
    off = make(image_shape=(1, 28, 28), num_classes=10, y_condition=False)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(off.sample(2, y=torch.tensor([0, 1]), generator=g()),
                       off.sample(2, generator=g()))
    on = make(image_shape=(1, 28, 28), num_classes=10, weight_y=0.5)
    on.data_dependent_init(x, y)
    torch.manual_seed(0)
    loss, metrics = on.loss(x, y)
    # the classifier starts at zero: uniform over 10 classes = log2(10) bits
    torch.testing.assert_close(metrics["bits_y"], torch.tensor(math.log2(10)))
    torch.testing.assert_close(loss, metrics["bpd"] + 0.5 * math.log2(10))
    with pytest.raises(ShapeError, match="unconditional"):
        make().log_prob(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.tensor([3]))


# ---- sampling -----------------------------------------------------------------------------
def test_temperature_scales_every_levels_prior_std():
    model = randomize_(make(image_shape=(1, 8, 8), n_bits=5))
    cold = model.sample(3, temperature=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cold, model.sample(3, temperature=0.0,
                                          generator=torch.Generator().manual_seed(1)))
    mean, _ = model.top_prior(3, None)
    zeros = [torch.zeros(3, *s) for s in model.latent_shapes[:-1]]
    assert torch.equal(cold, model.decode(zeros + [mean]))
    warm = model.sample(3, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert warm.dtype == torch.uint8 and warm.shape == (3, 1, 8, 8)
    assert bool((warm % 8 == 0).all())  # 5-bit samples on the 8-bit scale


# ---- save / load, errors ------------------------------------------------------------------
def test_save_load_round_trip_keeps_actnorm_initialized_state(tmp_path):
    x, y = mnist(16)
    model = make(image_shape=(1, 28, 28), num_classes=10, class_names=[str(i) for i in range(10)])
    model.data_dependent_init(x, y)
    model.save_pretrained(tmp_path / "run" / "model")
    loaded = tractable.load(tmp_path / "run" / "model")
    assert isinstance(loaded, Glow) and loaded.config == model.config
    assert loaded.is_initialized()
    assert all(bool(m.initialized) for m in loaded.modules() if isinstance(m, ActNorm))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    bias = loaded.levels[0].steps[0].actnorm.bias.clone()
    loaded.train().loss(x[8:], y[8:])  # another batch must not re-initialize
    assert torch.equal(loaded.levels[0].steps[0].actnorm.bias, bias)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(loaded.log_prob(x, y, generator=g()),
                               model.log_prob(x, y, generator=g()))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="divisible by 8.*use L <= 2"):
        GlowConfig(image_shape=(1, 28, 28), L=3).validate()
    with pytest.raises(ConfigError, match="coupling"):
        GlowConfig(coupling="spline").validate()
    model = make()
    with pytest.raises(ShapeError, match="uint8"):
        model.log_prob(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ShapeError, match=r"\[B, 1, 4, 4\]"):
        model.log_prob(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="one per level"):
        model.decode([torch.zeros(1, 8, 1, 1)])
    with pytest.raises(ShapeError, match="temperature"):
        model.sample(1, temperature=-1.0)


def test_glow_is_a_registered_family_with_paper_training_defaults():
    assert tractable.models.model_class("glow") is Glow
    d = Glow.training_defaults()
    assert d.optimizer == "adamax" and d.lr == 1e-3 and d.warmup_steps > 0


def test_channels_last_inputs_give_the_same_likelihood_and_exact_reconstruction():
    model = randomize_(make(image_shape=(3, 8, 8)))
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    model.data_dependent_init(x)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    expected = model.log_prob(x, generator=g())
    model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model.log_prob(x_cl, generator=g()), expected)
    assert torch.equal(model.decode(model.encode(x_cl)), x)


# ---- openai/glow's edge-bias padding and border-aware top prior ----------------------------
def test_border_channel_marks_exactly_the_padding():
    from tractable.models.glow.edgepad import pad_with_border_channel

    x = torch.randn(2, 3, 5, 4)
    padded = pad_with_border_channel(x, 3)
    assert padded.shape == (2, 4, 7, 6)
    assert torch.equal(padded[:, :3, 1:-1, 1:-1], x)  # the image, unchanged
    border = padded[:, 3]
    inside = torch.zeros(7, 6, dtype=torch.bool)
    inside[1:-1, 1:-1] = True
    assert torch.all(border[:, inside] == 0) and torch.all(border[:, ~inside] == 1)
    assert torch.all(padded[:, :3][:, :, ~inside] == 0)  # zero padding for the image


def test_edge_bias_lets_a_conv_tell_the_border_from_zeros():
    """Over all-zero input, only the border channel's weights can make an output: they act
    at the 20 border positions of a 6x6 map and nowhere inside."""
    from tractable.models.glow.zeroconv import ZeroConv2d

    conv = ZeroConv2d(2, 1, edge_bias=True)
    with torch.no_grad():
        conv.conv.weight[:, 2].fill_(1.0)  # weights on the border channel only
    out = conv(torch.zeros(1, 2, 6, 6))[0, 0]
    assert torch.all(out[1:-1, 1:-1] == 0)
    assert torch.all(out[0, 1:-1] == 3) and torch.all(out[1:-1, 0] == 3)  # edges see 3 pads
    assert out[0, 0] == 5 and out[-1, -1] == 5  # corners see 5
    plain = ZeroConv2d(2, 1)
    with torch.no_grad():
        plain.conv.weight.fill_(1.0)
    assert torch.all(plain(torch.zeros(1, 2, 6, 6)) == 0)  # without it: blind to the border


def test_border_top_prior_has_per_position_offsets_only_at_the_border():
    model = make(image_shape=(1, 16, 16), L=2, **OPENAI_OPTIONS)
    assert model.top_prior.conv is not None and model.latent_shapes[-1] == (8, 4, 4)
    mean, logs = model.top_prior(2, None)
    assert mean.shape == (2, 8, 4, 4) and torch.all(mean == 0) and torch.all(logs == 0)
    with torch.no_grad():
        model.top_prior.conv.conv.weight.normal_()  # includes weights on the zero inputs
        model.top_prior.conv.conv.bias.normal_()
    mean, logs = model.top_prior(2, None)
    interior = mean[:, :, 1:-1, 1:-1]
    torch.testing.assert_close(interior, interior[:, :, :1, :1].expand_as(interior))  # constant
    assert (mean[0, :, 0, 0] - mean[0, :, 1, 1]).abs().max() > 1e-3  # border differs
    assert torch.equal(mean[0], mean[1])


def test_openai_options_are_off_by_default_and_need_learn_top_for_the_border_prior():
    cfg = GlowConfig()
    assert (cfg.edge_bias, cfg.border_top_prior, cfg.hidden_init_std) == (False, False, None)
    with pytest.raises(ConfigError, match="border_top_prior needs learn_top and edge_bias"):
        GlowConfig(border_top_prior=True).validate()
    with pytest.raises(ConfigError, match="hidden_init_std must be > 0"):
        GlowConfig(hidden_init_std=0.0).validate()
    plain, edged = make(), make(edge_bias=True)
    conv, conv_e = plain.levels[0].steps[0].coupling.net.conv1, \
        edged.levels[0].steps[0].coupling.net.conv1
    assert conv_e.weight.shape[1] == conv.weight.shape[1] + 1  # the border channel
    assert plain.levels[0].steps[0].coupling.net.conv2.weight.shape == \
        edged.levels[0].steps[0].coupling.net.conv2.weight.shape  # 1x1: no padding, no channel


def test_a_folder_saved_before_the_openai_options_loads_and_scores_the_same(tmp_path):
    """Old config.json files lack the new fields: they load as edge_bias off etc., with the
    same weights, and give the same log-likelihoods."""
    model = randomize_(make(image_shape=(1, 8, 8)))
    x = mnist(4)[0][:, :, 10:18, 10:18].contiguous()  # 8x8 centre crops of real digits
    model.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    payload = json.loads(path.read_text())
    for key in ("edge_bias", "border_top_prior", "hidden_init_std"):
        del payload["config"][key]
    path.write_text(json.dumps(payload))
    loaded = tractable.load(tmp_path)
    assert not loaded.config.edge_bias and loaded.top_prior.conv is None
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(loaded.eval().log_prob(x, generator=g1),
                               model.eval().log_prob(x, generator=g2), rtol=0, atol=0)


def test_conv_with_border_equals_the_conv_over_the_explicitly_padded_input():
    from tractable.models.glow.edgepad import conv_with_border, pad_with_border_channel

    torch.manual_seed(0)
    conv = nn.Conv2d(5, 4, 3, padding=0).double()
    x = torch.randn(3, 4, 6, 7, dtype=torch.float64)
    expected = conv(pad_with_border_channel(x, 3))
    torch.testing.assert_close(conv_with_border(x, conv), expected, rtol=0, atol=1e-13)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(conv_with_border(x_cl, conv), expected, rtol=0, atol=1e-13)
