"""PixelCNN++: parameter count, causality (every option), analytic bits/dim, data-dependent
init, focal loss, conditioning, save/load and input errors."""

from __future__ import annotations

import math

import pytest
import torch

import tractable.models as models
from tractable.data import load_dataset
from tractable.errors import ConfigError, ShapeError
from tractable.likelihoods.focal import focal_nll
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig, load
from tractable.models.registry import model_class
from tractable.nn.weight_norm import WeightNormLayer


def tiny(channels: int = 1, size: tuple[int, int] = (8, 8), **options) -> PixelCNNPlusPlus:
    cfg = PixelCNNPlusPlusConfig(image_shape=(channels, *size), nr_resnet=1, nr_filters=8,
                                 nr_logistic_mix=2, dropout=0.0, **options)
    return PixelCNNPlusPlus(cfg)


def mnist_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("mnist-mini", "train")
    return data.images[:n], data.labels[:n]


# ---- the paper's network -----------------------------------------------------------------
def test_paper_configuration_has_53659080_parameters():
    with torch.device("meta"):
        plain = PixelCNNPlusPlus(PixelCNNPlusPlusConfig())
        conditional = PixelCNNPlusPlus(PixelCNNPlusPlusConfig(num_classes=10))
    count = sum(p.numel() for p in plain.parameters())
    assert plain.config.image_shape == (3, 32, 32)
    assert count == 53_659_080
    assert sum(p.numel() for p in conditional.parameters()) - count == 204_800


def test_registered_and_exported():
    assert model_class("pixelcnn++") is PixelCNNPlusPlus
    assert models.PixelCNNPlusPlusConfig is PixelCNNPlusPlusConfig
    assert PixelCNNPlusPlus.family == "pixelcnn++"


def test_training_defaults_are_the_papers():
    d = PixelCNNPlusPlus.training_defaults()
    assert (d.optimizer, d.lr, d.betas) == ("adam", 1e-3, (0.95, 0.9995))
    assert (d.lr_decay, d.ema_decay) == (0.999995, 0.9995)


CAUSAL_CASES = [
    (c, k, coord, nl, (8, 8))
    for c in (1, 3) for k in (0, 3) for coord, nl in ((False, 0), (True, 0), (False, 4), (True, 4))
] + [(3, 3, True, 4, (8, 12))]


@pytest.mark.parametrize("channels,num_classes,coord_conv,nonlocal_blocks,size", CAUSAL_CASES)
def test_causality_every_output_position(channels, num_classes, coord_conv, nonlocal_blocks,
                                         size):
    """d params(pixel i) / d x(pixel j) is exactly 0 for j >= i and non-zero for j < i."""
    torch.manual_seed(0)
    model = tiny(channels, size, num_classes=num_classes, coord_conv=coord_conv,
                 nonlocal_blocks=nonlocal_blocks).eval()
    h, w = size
    n = h * w  # one batch item per output position: item b projects the params at pixel b
    x = torch.rand(1, channels, h, w).mul(2).sub(1).expand(n, -1, -1, -1).clone()
    x.requires_grad_(True)
    y = None
    if num_classes:  # soft labels, so conditioning weights reach the net as non-trivial input
        y = torch.softmax(torch.randn(1, num_classes), 1).expand(n, -1)
    params = model(x, y)  # [n, P, h, w]
    projection = torch.randn(params.shape[1])
    rows, cols = torch.arange(n) // w, torch.arange(n) % w
    picked = params[torch.arange(n), :, rows, cols]  # [n, P]
    (picked @ projection).sum().backward()
    grad = x.grad.abs().sum(dim=1).view(n, n)  # [output pixel i, input pixel j], raster order
    future = torch.arange(n)[None, :] >= torch.arange(n)[:, None]
    assert grad[future].max() == 0  # exactly: no leak, not even a rounding-size one
    past = ~future
    # The past is seen except at the edge of this tiny model's receptive field (pixel
    # (1, 7) sees (1, 1) but not (1, 0)); the left and upper neighbours always are.
    assert (grad[past] > 0).float().mean() > 0.95
    i = torch.arange(n)
    left, up = i[i % w > 0], i[i >= w]
    assert (grad[left, left - 1] > 0).all() and (grad[up, up - w] > 0).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_all_zero_params_give_analytic_bits_per_dim(channels):
    """Zero output layer -> every pixel is logistic(0, 1) per channel, independent."""
    model = tiny(channels).eval()
    with torch.no_grad():
        model.out.g.zero_()
        model.out.b.zero_()
    x = torch.randint(0, 256, (2, channels, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))

    def log_p(k: int) -> float:
        v, half = k / 127.5 - 1, 1 / 255
        upper = 1.0 if k == 255 else 1 / (1 + math.exp(-(v + half)))
        lower = 0.0 if k == 0 else 1 / (1 + math.exp(-(v - half)))
        return math.log(upper - lower)

    table = torch.tensor([log_p(k) for k in range(256)], dtype=torch.float64)
    want = -table[x.long()].sum(dim=(1, 2, 3)) / (channels * 64 * math.log(2))
    got = model.bits_per_dim(x)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0.0)


# ---- data-dependent init -----------------------------------------------------------------
def _weight_norm_outputs(model: PixelCNNPlusPlus, x, y) -> list[tuple[float, torch.Tensor]]:
    outputs: list[tuple[float, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append((m.init_scale, o)))
             for m in model.modules() if isinstance(m, WeightNormLayer)]
    with torch.no_grad():
        model(model.scale(x), y)
    for hook in hooks:
        hook.remove()
    return outputs


def _worst_deviation(outputs) -> tuple[float, float]:
    worst_mean = worst_std = 0.0
    for scale, out in outputs:
        mean = out.mean(dim=(0, 2, 3)) / scale
        std = out.std(dim=(0, 2, 3), unbiased=False) / scale
        worst_mean = max(worst_mean, mean.abs().max().item())
        worst_std = max(worst_std, (std - 1).abs().max().item())
    return worst_mean, worst_std


def test_data_dependent_init_normalizes_every_preactivation_on_real_digits():
    torch.manual_seed(0)
    x, labels = mnist_batch(16)
    cfg = PixelCNNPlusPlusConfig(image_shape=(1, 28, 28), nr_resnet=1, nr_filters=16,
                                 nr_logistic_mix=3, dropout=0.0, num_classes=10,
                                 coord_conv=True, nonlocal_blocks=4)
    model = PixelCNNPlusPlus(cfg).eval()
    before = _worst_deviation(_weight_norm_outputs(model, x, labels))
    assert max(before) > 0.3  # default init is far from normalized: the check can fail
    params_before = [id(p) for p in model.parameters()]
    model.data_dependent_init(x, labels)
    assert not model.training  # mode restored
    assert bool(model.initialized)
    assert [id(p) for p in model.parameters()] == params_before  # safe to wrap in DDP after
    outputs = _weight_norm_outputs(model, x, labels)
    assert len(outputs) == sum(isinstance(m, WeightNormLayer) for m in model.modules())
    worst_mean, worst_std = _worst_deviation(outputs)
    assert worst_mean < 1e-3 and worst_std < 1e-3  # zero mean, std init_scale (1 or 0.1)


def test_data_dependent_init_is_saved_and_not_repeated(tmp_path):
    x, _ = mnist_batch(8)
    model = tiny(1, (28, 28), coord_conv=True, nonlocal_blocks=2, focal_gamma=1.5)
    assert not bool(model.initialized)
    model.data_dependent_init(x)
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = load(tmp_path)
    assert isinstance(loaded, PixelCNNPlusPlus)
    assert loaded.config == model.config  # options round-trip through config.json
    assert bool(loaded.initialized)
    loaded.eval()
    torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x), rtol=0, atol=0)
    weights = {k: v.clone() for k, v in loaded.state_dict().items()}
    loaded.data_dependent_init(x[:4].flip(0))  # already initialized: a no-op
    assert all(torch.equal(weights[k], v) for k, v in loaded.state_dict().items())
    loaded.data_dependent_init(x[:4], force=True)
    assert not torch.equal(weights["out.g"], loaded.state_dict()["out.g"])


# ---- loss --------------------------------------------------------------------------------
def test_focal_gamma_zero_is_exactly_the_nll():
    log_p = torch.randn(4, 8, 8) - 3
    assert torch.equal(focal_nll(log_p, 0.0), -log_p)
    x, _ = mnist_batch(4)
    torch.manual_seed(0)
    model = tiny(1, (28, 28))
    loss, metrics = model.loss(x)
    assert torch.equal(loss.detach(), metrics["bpd"])  # the very same tensor
    # The evaluation path divides before it averages, the loss after: equal up to float32
    # rounding (a few ulps), far below any focal term (which moves the loss by percents).
    torch.testing.assert_close(loss.detach(), model.bits_per_dim(x).mean().detach(),
                               rtol=4 * torch.finfo(torch.float32).eps, atol=0)


def _confident_on_background(focal_gamma: float) -> PixelCNNPlusPlus:
    """A model that gives MNIST's black background a high probability (~0.6-0.7)."""
    torch.manual_seed(0)
    model = tiny(1, (28, 28), focal_gamma=focal_gamma)
    with torch.no_grad():
        model.out.g.mul_(0.1)  # params ≈ the output bias
        model.out.b[2:4] = -1.2  # component means (scaled): left of pixel value 0
        model.out.b[4:6] = -1.0  # log-scales
    return model


def test_focal_loss_is_per_pixel_and_changes_the_gradient():
    x, _ = mnist_batch(4)
    nll_model, focal_model = _confident_on_background(0.0), _confident_on_background(2.0)
    nll, nll_metrics = nll_model.loss(x)
    focal, focal_metrics = focal_model.loss(x)
    torch.testing.assert_close(focal_metrics["bpd"], nll_metrics["bpd"])  # true bpd reported
    log_p = focal_model.log_prob_pixels(x).detach()
    want = ((1 - log_p.exp()) ** 2 * -log_p).sum(dim=(1, 2)).mean() / (784 * math.log(2))
    torch.testing.assert_close(focal.detach(), want)
    assert focal < 0.9 * nll  # well-predicted background pixels are down-weighted
    nll.backward()
    focal.backward()
    g0 = torch.cat([p.grad.flatten() for p in nll_model.parameters()])
    g2 = torch.cat([p.grad.flatten() for p in focal_model.parameters()])
    cosine = torch.nn.functional.cosine_similarity(g0, g2, dim=0)
    assert cosine < 0.9  # a different direction, not just a rescaled NLL gradient


def test_bfloat16_autocast_loss_is_float32_and_close():
    x, _ = mnist_batch(4)
    torch.manual_seed(0)
    model = tiny(1, (28, 28)).eval()
    model.data_dependent_init(x)
    exact, _ = model.loss(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = model(model.scale(x))
        low, _ = model.loss(x)
    # The body ran in bf16 (the loss moved), the parameter layer and likelihood in fp32.
    assert params.dtype == torch.float32 and low.dtype == torch.float32
    assert low.item() != exact.item()
    assert abs(low.item() - exact.item()) < 0.03 * exact.item()


# ---- conditioning and input checks -------------------------------------------------------
def test_labels_as_indices_one_hot_or_soft_weights():
    torch.manual_seed(0)
    model = tiny(3, num_classes=4).eval()
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    by_index = model(x, torch.tensor([1, 3]))
    one_hot = torch.nn.functional.one_hot(torch.tensor([1, 3]), 4).float()
    assert torch.equal(model(x, one_hot), by_index)
    blend = model(x, torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))
    assert not torch.allclose(blend, by_index)
    with pytest.raises(ShapeError, match="class-conditional"):
        model(x)
    with pytest.raises(ShapeError, match="unconditional"):
        tiny(3)(x, torch.tensor([0, 1]))


def test_bad_inputs_raise_clear_errors():
    model = tiny(1)
    with pytest.raises(ShapeError, match=r"\[B, 1, 8, 8\]"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ShapeError, match="scaled"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="uint8"):
        model.loss(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="divisible by 4"):
        PixelCNNPlusPlusConfig(image_shape=(1, 30, 30)).validate()
    with pytest.raises(ConfigError, match="nonlocal_blocks"):
        PixelCNNPlusPlusConfig(nonlocal_blocks=5).validate()
    with pytest.raises(ConfigError, match="focal_gamma"):
        PixelCNNPlusPlusConfig(focal_gamma=-1.0).validate()


def test_real_cifar_batch_trains_a_step(shared_data):
    """C = 3 on real CIFAR-10 images: init, one Adam step at the paper's settings lowers
    the loss on that batch."""
    data = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000",
                        batches=[1])
    x, y = data.images[:8], data.labels[:8]
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(3, 32, 32), nr_resnet=1, nr_filters=16,
                                 nr_logistic_mix=5, dropout=0.0, num_classes=10)
    model = PixelCNNPlusPlus(cfg)
    model.data_dependent_init(x, y)
    d = model.training_defaults()
    opt = torch.optim.Adam(model.parameters(), lr=d.lr, betas=d.betas)
    first, metrics = model.loss(x, y)
    assert 4 < metrics["bpd"] < 12
    for _ in range(3):
        opt.zero_grad()
        loss, _ = model.loss(x, y)
        loss.backward()
        opt.step()
    assert model.loss(x, y)[0] < first
