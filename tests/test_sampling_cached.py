"""Cached sampler: the same samples as the naive sampler, computed from final activations.

* float64: cached and naive samplers give exactly equal uint8 images from the same
  generator, for every option of both model families (their params differ by float64
  rounding, ~1e-16, so a draw flips only if its uniform lands that close to a bin edge:
  odds of ~1e-12 per test, against float32's ~1e-4);
* float32: the params each pixel is drawn from agree with a full forward pass on the
  finished image to 1e-4;
* the finality facts the PixelCNN++ schedule rests on hold for the model itself (gradient
  dependency maps), and a schedule that reads an activation before computing it is caught
  (caches start as NaN).
"""

from __future__ import annotations

import pytest
import torch

from tractable.models import GatedPixelCNN, PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.models.gated_pixelcnn import GatedPixelCNNConfig
from tractable.models.pixelcnn_pp import NUM_LEVELS
from tractable.models.pixelcnn_pp_cached import CachedPixelCNNPlusPlus
from tractable.sampling import Progress, sample_naive, sample_with
from tractable.sampling.cached import sample_cached, sample_cached_with_params


def _randomize_biases(model: torch.nn.Module) -> None:
    """Fresh weight-normed layers have b = 0 and g = 1, which would hide a bias or gain the
    cached network forgot; give every one a distinct value."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".b"):
                p.copy_(torch.randn_like(p) * 0.3)
            elif name.endswith(".g"):
                p.copy_(1.0 + torch.randn_like(p) * 0.2)


def pixelcnn(channels: int, height: int = 8, width: int = 8, **options) -> PixelCNNPlusPlus:
    torch.manual_seed(0)
    cfg = PixelCNNPlusPlusConfig(image_shape=(channels, height, width), nr_filters=8,
                                 nr_logistic_mix=3, **{"nr_resnet": 1, **options})
    model = PixelCNNPlusPlus(cfg)
    _randomize_biases(model)
    return model


def gated(channels: int, **options) -> GatedPixelCNN:
    torch.manual_seed(0)
    cfg = GatedPixelCNNConfig(image_shape=(channels, 8, 8), n_filters=12, head_filters=12,
                              **{"n_layers": 4, **options})
    return GatedPixelCNN(cfg)


def labels(num_classes: int, soft: bool, dtype: torch.dtype) -> torch.Tensor | None:
    if not num_classes:
        return None
    if soft:
        return torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    return torch.tensor([2, 0])


def assert_same_samples(model, y=None, temperature: float = 1.0, seed: int = 7) -> None:
    naive = sample_naive(model, 2, y=y, temperature=temperature,
                         generator=torch.Generator().manual_seed(seed))
    cached = sample_cached(model, 2, y=y, temperature=temperature,
                           generator=torch.Generator().manual_seed(seed))
    assert cached.dtype == torch.uint8 and cached.shape == naive.shape
    assert torch.equal(cached, naive)
    cached[0, 0, 0, 0] = 0  # an ordinary tensor: in-place edits outside inference mode work
    assert len(torch.unique(naive)) > 3  # a real image, not a constant


# ---- identical samples in float64 ------------------------------------------------------------
PIXELCNN_CASES = [
    pytest.param(1, {}, id="grey"),
    pytest.param(3, {}, id="rgb"),
    pytest.param(1, {"num_classes": 3}, id="grey-conditional"),
    pytest.param(3, {"num_classes": 3, "soft": True}, id="rgb-soft-labels"),
    pytest.param(3, {"coord_conv": True}, id="rgb-coordconv"),
    pytest.param(1, {"nonlocal_blocks": 4}, id="grey-attention"),
    pytest.param(3, {"nonlocal_blocks": 2, "num_classes": 3}, id="rgb-attention-conditional"),
    pytest.param(3, {"nr_resnet": 0}, id="rgb-no-blocks"),
    pytest.param(1, {"nr_resnet": 3, "coord_conv": True, "nonlocal_blocks": 1},
                 id="grey-deep"),
    pytest.param(3, {"temperature": 0.6}, id="rgb-cold"),
]


@pytest.mark.parametrize("channels,options", PIXELCNN_CASES)
def test_pixelcnn_cached_samples_equal_naive_in_float64(channels, options):
    options = dict(options)
    soft, temperature = options.pop("soft", False), options.pop("temperature", 1.0)
    model = pixelcnn(channels, **options).double()
    assert_same_samples(model, labels(model.config.num_classes, soft, torch.float64),
                        temperature)


def test_pixelcnn_cached_handles_non_square_images():
    model = pixelcnn(3, height=4, width=12, nonlocal_blocks=4).double()
    assert_same_samples(model)


GATED_CASES = [
    pytest.param(1, {}, id="grey-256"),
    pytest.param(3, {}, id="rgb-channel-sequential"),
    pytest.param(1, {"n_levels": 4, "num_classes": 3}, id="grey-4-levels-conditional"),
    pytest.param(3, {"n_levels": 8, "coord_conv": True, "num_classes": 3, "soft": True},
                 id="rgb-8-levels-coordconv-soft"),
    pytest.param(1, {"n_layers": 1, "kernel_size": 5, "first_kernel_size": 5},
                 id="grey-single-layer"),
]


@pytest.mark.parametrize("channels,options", GATED_CASES)
def test_gated_cached_samples_equal_naive_in_float64(channels, options):
    options = dict(options)
    soft = options.pop("soft", False)
    model = gated(channels, **options).double()
    assert_same_samples(model, labels(model.config.num_classes, soft, torch.float64))


# ---- float32: per-pixel params agree with the full network ---------------------------------
@pytest.mark.parametrize("model", [
    pytest.param(lambda: pixelcnn(3, nr_resnet=2, num_classes=3, coord_conv=True,
                                  nonlocal_blocks=4), id="pixelcnn++"),
    pytest.param(lambda: gated(3, num_classes=3, coord_conv=True), id="gated"),
])
def test_float32_params_agree_with_the_full_forward_pass(model):
    model = model().eval()
    y = torch.tensor([1, 2])
    images, params = sample_cached_with_params(model, 2, y=y,
                                               generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(model.scale(images), y)
    assert params.dtype == torch.float32 and params.shape == full.shape
    assert torch.isfinite(params).all()
    assert (params - full).abs().max().item() < 1e-4
    assert full.std() > 0.1  # the comparison is not between near-constant maps


# ---- the schedule ----------------------------------------------------------------------------
def _dependency_rows(model: PixelCNNPlusPlus, stream: int, entry: int, level: int,
                     p: int, q: int) -> torch.Tensor:
    """Which input pixels the up pass's stream value (0: u, 1: ul) at (p, q) reads: a bool
    `[H, W]` map from the gradient of that value with respect to the image."""
    c, h, w = model.config.image_shape
    x = torch.randn(1, c, h, w, dtype=torch.float64, requires_grad=True)
    stacks = model.up_pass(model.network_input(x), None)
    at_level = [t for t in stacks[stream] if t.shape[-1] == w >> level]
    at_level[entry][0, :, p, q].sum().backward()
    assert x.grad is not None
    return x.grad[0].abs().sum(0) > 0


@pytest.mark.parametrize("level", range(NUM_LEVELS))
def test_finality_of_each_stream_matches_the_schedule(level):
    """u at level-L position (p, q) reads only image rows < s·p (so a whole row of it is
    final when image row s·p begins), ul only pixels before (s·p, s·q) in raster order (so
    it is final when pixel (s·p, s·q) is drawn), s = 2^L — with attention blocks on."""
    model = pixelcnn(1, height=16, width=16, nr_resnet=2, nonlocal_blocks=4).double().eval()
    s, w = 2 ** level, 16
    raster = torch.arange(16 * 16).view(16, 16)
    for p, q in [(1, 1), (2, 0), (3, 2)]:
        for entry in (0, -1):
            u_reads = _dependency_rows(model, 0, entry, level, p, q)
            assert not u_reads[s * p:].any()
            assert u_reads[:s * p].any()
            ul_reads = _dependency_rows(model, 1, entry, level, p, q)
            assert not ul_reads[raster >= s * p * w + s * q].any()
            assert ul_reads.any()


def test_reading_an_activation_before_it_is_computed_poisons_the_params(monkeypatch):
    """Caches start as NaN: a schedule that skips the level-1 and level-2 work at their
    rows and pixels reads uncomputed values, and every param downstream shows it."""
    monkeypatch.setattr("tractable.models.pixelcnn_pp_cached._coarsest_level", lambda i: 0)
    model = pixelcnn(1).eval()
    with torch.inference_mode():
        net = CachedPixelCNNPlusPlus(model, 1, None)
        net.start_row(0)
        first = net.params_at(0, 0)
    assert torch.isnan(first).all()


def test_cached_is_the_default_sampler():
    model = pixelcnn(1).double()
    reference = sample_naive(model, 1, generator=torch.Generator().manual_seed(1))
    default = model.sample(1, generator=torch.Generator().manual_seed(1))
    explicit = sample_with(model, 1, sampler="cached",
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(default, reference) and torch.equal(explicit, reference)


def test_eval_mode_sampling_ignores_dropout_and_keeps_the_training_flag():
    model = pixelcnn(1, dropout=0.5).double().train()
    heard: dict[str, list[Progress]] = {"cached": [], "naive": []}
    cached = model.sample(2, generator=torch.Generator().manual_seed(2),
                          callback=heard["cached"].append)
    assert model.training
    naive = model.sample(2, generator=torch.Generator().manual_seed(2), sampler="naive",
                         callback=heard["naive"].append)
    assert torch.equal(cached, naive)
    h = model.config.image_shape[1]
    rows = [Progress(r, h, "row") for r in range(1, h + 1)]  # one report per finished row
    assert heard["cached"] == rows and heard["naive"] == rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cached_equals_naive_on_gpu():
    for model in (pixelcnn(3, nonlocal_blocks=2, num_classes=3), gated(3, num_classes=3)):
        model = model.double().cuda()
        y = torch.tensor([0, 1], device="cuda")
        g1, g2 = (torch.Generator(device="cuda").manual_seed(5) for _ in range(2))
        assert torch.equal(sample_naive(model, 2, y=y, generator=g1),
                           sample_cached(model, 2, y=y, generator=g2))
