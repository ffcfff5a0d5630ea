"""The family contract, run over every registered model family.

A family gets all of these by registering (`@register_model`) and declaring
`tiny_settings` (field values of a model that is fast on a CPU for 8×8 images with 1 or 3
channels, conditional or not). Each test takes the family's name; nothing here knows a
family. What is checked:

* save/load round trip (weights, config, eval mode), from a model folder and a run folder;
* `log_prob` finite, `[B]`, equal to `-bits_per_dim·D·ln 2`, the same in train and eval
  mode (no dropout in inference) and on repeated calls;
* `loss` metrics carry the true bits/dim;
* every sampler the model has returns uint8 `[n, C, H, W]` images in the model's support
  (finite log-likelihood), for class indices and soft labels, conditional and not,
  reproducibly from the generator, restoring the model's mode, reporting its progress to
  the callback; cached == naive in float64 where a cached form exists;
* each capability the model has (`tractable.models.capabilities`), selected with
  `isinstance`: `Invertible` decodes its encodings exactly and interpolates between two
  images from one to the other; `Completable` keeps the known pixels; `PixelScorable`'s
  per-pixel log-probabilities sum to `log_prob`;
* clear errors for wrong shape, dtype and labels, bad sample arguments and corrupt configs;
* presets name real fields, every settable field has help text.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import tractable
from tractable.errors import ConfigError, ShapeError, TractableError
from tractable.models import (
    Completable,
    Compressible,
    Invertible,
    PixelScorable,
    known_families,
    model_class,
)
from tractable.models.base import TractableModel
from tractable.models.latents import interpolate
from tractable.sampling import AutoregressiveSampleable, get_sampler, sample_with, samplers_for
from tractable.training.factory import settable_fields

FAMILIES = known_families()
CASES = [pytest.param(f, c, k, id=f"{f}-{c}ch-{k}cls") for f in FAMILIES
         for c, k in [(1, 0), (3, 3)]]
N = 3  # images per batch


def make(family: str, channels: int = 1, num_classes: int = 0, seed: int = 0,
         **changes) -> TractableModel:
    """The family's tiny model for `channels`×8×8 images, initialized from a data batch."""
    cls = model_class(family)
    settings = {**cls.tiny_settings, **changes}
    cfg = cls.config_class(image_shape=(channels, 8, 8), num_classes=num_classes,
                           class_names=[f"c{i}" for i in range(num_classes)], **settings)
    torch.manual_seed(seed)
    model = cls(cfg)
    x, y = batch(model, 8, seed=seed + 1)
    with torch.no_grad():
        model.data_dependent_init(x, y)
    perturb_zero_parameters(model, seed)
    return model


def perturb_zero_parameters(model: TractableModel, seed: int, scale: float = 0.05) -> None:
    """Small noise on every parameter that is exactly all zero after initialization.

    Families may start output layers at zero so that a fresh model is (nearly) the identity;
    untouched, such a model passes round-trip, interpolation and cached == naive checks
    trivially. Perturbed, every layer takes part in what the contract checks."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not p.any():
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def batch(model: TractableModel, n: int = N, seed: int = 0) -> tuple[torch.Tensor,
                                                                      torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *model.config.image_shape), dtype=torch.uint8, generator=g)
    k = model.config.num_classes
    y = torch.randint(0, k, (n,), generator=g) if k else None
    return x, y


def log_prob(model: TractableModel, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """`model.log_prob` with the random generators seeded: a fixed dequantization noise
    where the family draws one (an exact discrete likelihood draws nothing)."""
    with torch.random.fork_rng():
        torch.manual_seed(11)
        return model.log_prob(x, y)


def test_every_family_declares_a_tiny_config_and_a_default_sampler():
    assert len(FAMILIES) >= 3  # the built-in ones (tests/test_foundation.py names them)
    for family in FAMILIES:
        cls = model_class(family)
        assert cls.tiny_settings, f"{family} declares no tiny_settings"
        assert cls.family == family
        get_sampler(cls.default_sampler)  # registered


# ---- save / load ---------------------------------------------------------------------------
@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_save_load_round_trip_keeps_weights_config_and_gives_eval_mode(
        family, channels, num_classes, tmp_path):
    model = make(family, channels, num_classes)
    model.save_pretrained(tmp_path / "run" / "model")
    (tmp_path / "run" / "run.json").write_text(json.dumps({"family": family, "data": "x"}))
    for where in (tmp_path / "run" / "model", tmp_path / "run"):  # model folder, run folder
        loaded = tractable.load(where)
        assert type(loaded) is type(model) and loaded.config == model.config
        assert not loaded.training and not any(m.training for m in loaded.modules())
        state = model.state_dict()
        assert loaded.state_dict().keys() == state.keys()
        for k, v in loaded.state_dict().items():
            assert torch.equal(v, state[k]), k
    x, y = batch(model)
    model.eval()
    torch.testing.assert_close(log_prob(loaded, x, y), log_prob(model, x, y))


# ---- likelihood ----------------------------------------------------------------------------
@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_log_prob_is_finite_and_equals_minus_bits_per_dim_times_d_ln2(
        family, channels, num_classes):
    model = make(family, channels, num_classes).eval()
    x, y = batch(model)
    lp = log_prob(model, x, y)
    assert lp.shape == (N,) and lp.is_floating_point() and torch.isfinite(lp).all()
    assert (lp < 0).all()  # a probability mass below 1 per image
    d = math.prod(model.config.image_shape)
    torch.manual_seed(5)
    a = model.log_prob(x, y)
    torch.manual_seed(5)
    bpd = model.bits_per_dim(x, y)
    torch.testing.assert_close(-bpd * d * math.log(2.0), a)


@pytest.mark.parametrize("family", FAMILIES)
def test_inference_does_not_depend_on_the_module_mode(family):
    """Dropout (where the family has it) is off in inference: train mode gives the same
    log-likelihood as eval mode, on every call, and leaves the mode as it was."""
    model = make(family, 1, 0)
    x, y = batch(model)
    model.train()
    first, second = log_prob(model, x, y), log_prob(model, x, y)
    assert model.training
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(log_prob(model, x, y), first)


@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_loss_metrics_carry_the_true_bits_per_dim(family, channels, num_classes):
    model = make(family, channels, num_classes).eval()
    x, y = batch(model)
    torch.manual_seed(3)
    loss, metrics = model.loss(x, y)
    torch.manual_seed(3)
    bpd = model.bits_per_dim(x, y).mean()
    assert loss.dim() == 0 and torch.isfinite(loss)
    torch.testing.assert_close(metrics["bpd"], bpd.detach())


# ---- sampling ------------------------------------------------------------------------------
def _labels(model: TractableModel, soft: bool) -> torch.Tensor | None:
    k = model.config.num_classes
    if not k:
        return None
    if soft:
        w = torch.rand(N, k, generator=torch.Generator().manual_seed(4))
        return w / w.sum(1, keepdim=True)
    return torch.arange(N) % k


SAMPLE_CASES = [pytest.param(f, c, k, soft, id=f"{f}-{c}ch-{k}cls{'-soft' if soft else ''}")
                for f in FAMILIES for c, k, soft in [(1, 0, False), (3, 3, False), (1, 3, True)]]


@pytest.mark.parametrize("family,channels,num_classes,soft", SAMPLE_CASES)
def test_every_sampler_returns_reproducible_images_in_the_models_support(
        family, channels, num_classes, soft):
    model = make(family, channels, num_classes).train()
    y = _labels(model, soft)
    names = samplers_for(model)
    assert model.default_sampler in names
    for name in names:
        a = sample_with(model, N, sampler=name, y=y, temperature=0.9,
                        generator=torch.Generator().manual_seed(1))
        assert a.dtype == torch.uint8 and a.shape == (N, channels, 8, 8), name
        assert model.training, f"{name} did not restore the module's mode"
        b = sample_with(model, N, sampler=name, y=y, temperature=0.9,
                        generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b), name
        assert len(torch.unique(a)) > 1  # not a constant image
        with torch.no_grad():
            assert torch.isfinite(log_prob(model.eval(), a, y)).all(), name
        model.train()
    heard: list = []
    default = model.sample(N, y=y, temperature=0.9, generator=torch.Generator().manual_seed(1),
                           callback=heard.append)
    assert torch.equal(default, sample_with(model, N, sampler=model.default_sampler, y=y,
                                            temperature=0.9,
                                            generator=torch.Generator().manual_seed(1)))
    assert heard, "the sampler reported no progress"
    steps = [p.step for p in heard]
    assert steps == sorted(steps) and heard[-1].step == heard[-1].total >= 1


@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_cached_equals_naive_in_float64_where_a_cached_form_exists(
        family, channels, num_classes):
    model = make(family, channels, num_classes).double().eval()
    y = _labels(model, False)
    if not isinstance(model, AutoregressiveSampleable) or model.cached_network(N, y) is None:
        pytest.skip(f"{family} has no cached form")
    # float64: the two paths' params differ by ~1e-16, too little to flip a draw
    naive = sample_with(model, N, sampler="naive", y=y, generator=torch.Generator().manual_seed(2))
    cached = sample_with(model, N, sampler="cached", y=y,
                         generator=torch.Generator().manual_seed(2))
    assert torch.equal(naive, cached)


@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_compression_round_trips_at_the_models_code_length_or_is_refused(
        family, channels, num_classes):
    """Every family either codes images losslessly within −log₂ p(x) (the autoregressive
    ones, RGB channel dependence included) or refuses with one clear error (flows).

    Random pixels under a random model: some bins are far below 2^-24, where the coder
    pays its floor of 24 bits and `log_prob` more, so only the upper bound holds here
    (tests/test_compression.py checks both sides on real images)."""
    model = make(family, channels, num_classes)
    x, y = batch(model, 4, seed=5)
    if not isinstance(model, Compressible):
        with pytest.raises(ConfigError, match="not supported"):
            tractable.compression.compress_images(model, x, y)
        return
    x = model.from_targets(model.targets(x))  # onto an N-level model's levels
    data = model.compress(x, y, batch=3)  # two chunks, the second smaller
    back, labels = tractable.decompress(data, model)
    assert torch.equal(back, x) and back.dtype == torch.uint8
    assert (labels is None) == (y is None) and (y is None or torch.equal(labels, y))
    header = tractable.compression.read_header(data)
    payload_bits = 8.0 * sum(header.chunks)
    label_bits = len(x) * math.log2(num_classes) if num_classes else 0.0
    with torch.no_grad():
        model_bits = float(-log_prob(model, x, y).sum()) / math.log(2.0) + label_bits
    assert payload_bits <= 1.01 * model_bits + 2 * 32  # + a word per chunk


# ---- capabilities, selected by what a model can do ----------------------------------------
@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_an_invertible_model_decodes_its_encodings_and_interpolates_exactly(
        family, channels, num_classes):
    model = make(family, channels, num_classes).eval()
    if not isinstance(model, Invertible):
        pytest.skip(f"{family} is not Invertible")
    y = _labels(model, False)
    x = model.sample(N, y=y, temperature=0.5, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        z = model.encode(x)  # raises if an image would not come back exactly
        assert torch.equal(model.decode(z), x)
        strip = model.decode(interpolate(model.encode(x[:1]), model.encode(x[1:2]), 4))
    assert strip.shape == (4, *x.shape[1:])
    assert torch.equal(strip[0], x[0]) and torch.equal(strip[-1], x[1])


@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_a_completable_model_keeps_the_known_pixels(family, channels, num_classes):
    model = make(family, channels, num_classes).eval()
    if not isinstance(model, Completable):
        pytest.skip(f"{family} is not Completable")
    x, y = batch(model, 2)
    done = model.complete(x, rows=3, cols=2, n=2, y=y, generator=torch.Generator().manual_seed(7))
    assert done.dtype == torch.uint8 and done.shape == (4, *x.shape[1:])
    seen = model.as_seen(x).repeat_interleave(2, dim=0)
    width = x.shape[-1]
    kept = torch.zeros(x.shape[-2:], dtype=torch.bool)
    kept.view(-1)[: 3 * width + 2] = True
    assert torch.equal(done[:, :, kept], seen[:, :, kept])


@pytest.mark.parametrize("family,channels,num_classes", CASES)
def test_per_pixel_log_probs_sum_to_log_prob(family, channels, num_classes):
    model = make(family, channels, num_classes).eval()
    if not isinstance(model, PixelScorable):
        pytest.skip(f"{family} is not PixelScorable")
    x, y = batch(model)
    with torch.no_grad():
        pixels = model.log_prob_pixels(x, y)
        total = log_prob(model, x, y)
    assert pixels.shape == (N, *x.shape[-2:])
    torch.testing.assert_close(pixels.sum(dim=(1, 2)), total)


# ---- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_images_labels_and_sample_arguments_raise_clear_errors(family):
    plain, cond = make(family, 1, 0), make(family, 1, 3)
    x, _ = batch(plain)
    with pytest.raises(ShapeError, match="uint8"):
        plain.log_prob(x.float())
    with pytest.raises(ShapeError, match=r"\[B, 1, 8, 8\]"):
        plain.log_prob(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="unconditional"):
        plain.log_prob(x, torch.zeros(N, dtype=torch.long))
    with pytest.raises(ShapeError, match="pass y"):
        cond.log_prob(x)
    with pytest.raises(ShapeError, match="out of range"):
        cond.log_prob(x, torch.full((N,), 3))
    with pytest.raises(ShapeError, match="sum to 1"):
        cond.log_prob(x, torch.full((N, 3), 0.5))
    with pytest.raises(ShapeError, match="positive integer"):
        plain.sample(0)
    with pytest.raises(ShapeError, match="temperature"):
        plain.sample(1, temperature=-1.0)
    with pytest.raises(ShapeError, match="temperature"):
        plain.sample(1, temperature=float("nan"))
    with pytest.raises(ShapeError, match="unconditional"):
        plain.sample(2, y=torch.tensor([0, 1]))
    with pytest.raises(ShapeError, match=r"shape \[2\]"):
        cond.sample(2, y=torch.tensor([0, 1, 2]))
    with pytest.raises(TractableError, match="unknown sampler 'fast'"):
        sample_with(plain, 1, sampler="fast")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_corrupt_config_json_is_refused_before_the_model_is_built(family, tmp_path):
    model = make(family, 1, 0)
    model.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    good = json.loads(path.read_text())
    hints = {f.name: f for f in settable_fields(type(model))}
    name = next(n for n, f in hints.items() if f.type in (int, "int"))
    for bad, message in [(str(good["config"][name]), "must be an integer"),
                         (1e9, "must be an integer"), (-(10**6), "must be >= ")]:
        payload = json.loads(json.dumps(good))
        payload["config"][name] = bad
        path.write_text(json.dumps(payload))
        with pytest.raises(ConfigError, match=f"{name} {message}"):
            tractable.load(tmp_path)
    payload = json.loads(json.dumps(good))
    payload["config"]["image_shape"] = [1, 8]
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="image_shape must be a list of 3 values"):
        tractable.load(tmp_path)


# ---- config contract -----------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_presets_name_real_fields_and_every_field_has_help(family):
    cls = model_class(family)
    fields = {f.name: f for f in settable_fields(cls)}
    for preset, values in {**cls.presets, "tiny": cls.tiny_settings}.items():
        unknown = set(values) - set(fields)
        assert not unknown, f"{family} preset {preset!r} sets unknown fields {unknown}"
    for f in dataclasses.fields(cls.config_class):
        assert f.metadata.get("help"), f"{family}.{f.name} has no help text"
