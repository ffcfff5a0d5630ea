"""Glow's bounded inverse as a whole model: with the coupling scale floor and the split
priors' log-std cap (the defaults for new models) the inverse stays finite and exact far
from the data; without them (folders saved before they existed, read as floor 0 and no cap
by the config migration) a model behaves exactly as before."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import tractable
from tractable.config import FORMAT_VERSION
from tractable.errors import ConfigError, NonFiniteDecodeError
from tractable.models import Glow, GlowConfig
from tractable.sampling.prior import sample_prior


def make(floor: float, cap: float | None = 2.0, seed: int = 0) -> Glow:
    torch.manual_seed(seed)
    return Glow(GlowConfig(image_shape=(1, 8, 8), K=2, L=2, width=8, num_classes=2,
                           coupling_scale_floor=floor, split_max_log_std=cap)).eval()


def randomize_(model: nn.Module, scale: float = 0.05, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def extreme(model: Glow) -> Glow:
    """Real weights everywhere, and coupling scale outputs h × e^9: the log-scales reach far
    below any data's (the shifts stay moderate)."""
    randomize_(model)
    with torch.no_grad():
        for level in model.levels:
            for step in level.steps:
                step.coupling.net.out.logs[:, 1::2] = 3.0
    return model


def test_new_models_default_to_bounds() -> None:
    config = GlowConfig()
    assert config.coupling_scale_floor == 0.05 and config.split_max_log_std == 2.0
    model = Glow(config)
    assert all(step.coupling.scale_floor == 0.05 for level in model.levels
               for step in level.steps)
    assert all(level.split.max_log_std == 2.0 for level in model.levels[:-1])


def test_split_prior_log_std_is_capped_for_extreme_inputs() -> None:
    split = randomize_(make(0.05).levels[0].split, scale=0.3)
    kept = torch.tensor([-1e30, -1e4, -1.0, 0.0, 1.0, 1e4, 1e30]).repeat_interleave(
        split.keep * 16).view(-1, split.keep, 4, 4)
    _, logs = split.prior_params(kept)
    assert (logs <= 2.0).all() and logs.max() == 2.0  # reached and held
    split.max_log_std = None
    assert split.prior_params(kept)[1].max() > 1e3  # uncapped: exp() of it overflows


def test_floored_model_inverts_noise_exactly_where_the_unbounded_one_fails() -> None:
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(1))
    floored = extreme(make(0.05))
    assert torch.equal(floored.decode(floored.encode(x)), x)  # encode also checks this
    unbounded = extreme(make(0.0, None))
    back = unbounded.decode(unbounded.encode(x, check=False), check_finite=False)
    assert not torch.equal(back, x)


def test_floored_model_decodes_latents_far_from_the_prior() -> None:
    """Edits and blends move latents off the data; with the floor each coupling's inverse
    multiplies by at most 1/f and each split prior by at most e^cap, so even latents 30×
    the prior's scale decode to pixels, where the unbounded forms overflow, and the floor
    without the cap is not enough (the split priors' exp overflows)."""
    floored = extreme(make(0.05))
    latents = [30 * z for z in floored.prior_latents(8, torch.tensor([0, 1] * 4), 1.0,
                                                     torch.Generator().manual_seed(0))]
    x_c = floored.decode_continuous(latents)
    assert torch.isfinite(x_c).all()
    floored.decode(latents)  # no NonFiniteDecodeError
    for floor, cap in ((0.0, None), (0.05, None)):
        unbounded = extreme(make(floor, cap))
        assert not torch.isfinite(unbounded.decode_continuous(latents)).all()


def test_non_finite_decode_names_the_remedy_of_its_caller() -> None:
    model = extreme(make(0.0, None))
    with torch.no_grad():
        model.levels[0].steps[0].actnorm.logs.fill_(-300.0)  # inverse × e^900: overflows
    latents = model.prior_latents(3, torch.tensor([0, 1, 0]), 1.0,
                                  torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteDecodeError, match=r"^3 of 3 decoded images") as edit:
        model.decode(latents)
    assert "temperature" not in str(edit.value)
    assert "|alpha|" in str(edit.value) and "coupling_scale_floor > 0" in str(edit.value)
    with pytest.raises(NonFiniteDecodeError, match=r"lower the temperature \(it was 0.5\)"):
        sample_prior(model, 3, y=torch.tensor([0, 1, 0]), temperature=0.5)


def save_as_0_1_0(model: Glow, directory) -> None:
    """The folder as tractable 0.1.0 wrote it: config format 1, no coupling_scale_floor,
    no split_max_log_std."""
    model.save_pretrained(directory)
    path = directory / "config.json"
    payload = json.loads(path.read_text())
    assert payload["format_version"] == FORMAT_VERSION >= 2
    del payload["config"]["coupling_scale_floor"], payload["config"]["split_max_log_std"]
    path.write_text(json.dumps({**payload, "format_version": 1, "tractable_version": "0.1.0"}))


def test_old_glow_folder_loads_unbounded_and_scores_the_same(tmp_path) -> None:
    old = randomize_(make(0.0, None))
    with torch.no_grad():
        old.levels[0].split.prior.logs.fill_(1.0)  # its log-stds × e^3: past the default cap
    save_as_0_1_0(old, tmp_path)
    loaded = tractable.load(tmp_path).eval()
    assert loaded.config.coupling_scale_floor == 0.0 and loaded.config.split_max_log_std is None
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1] * 3)

    def bpd(model: Glow) -> torch.Tensor:
        with torch.no_grad():
            return model.log_prob(x, y, generator=torch.Generator().manual_seed(4))

    assert torch.equal(bpd(loaded), bpd(old))
    # without the migration the same weights would score otherwise (the default bounds)
    for floor, cap in ((0.05, None), (0.0, 2.0)):
        bounded = make(floor, cap)
        bounded.load_state_dict(old.state_dict())
        assert not torch.allclose(bpd(bounded), bpd(old))
    # saved again, the folder records the floor explicitly and still loads unbounded
    loaded.save_pretrained(tmp_path / "again")
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION
    assert config["config"]["coupling_scale_floor"] == 0.0
    assert config["config"]["split_max_log_std"] is None


def test_migration_leaves_other_families_and_explicit_floors_alone() -> None:
    from tractable.config import MIGRATIONS

    pixel = {"family": "pixelcnn++", "format_version": 1, "config": {"nr_resnet": 1}}
    assert MIGRATIONS[1](pixel) == {**pixel, "format_version": 2}
    glow = {"family": "glow", "format_version": 1, "config": {"K": 4}}
    assert MIGRATIONS[1](glow)["config"] == {"K": 4, "coupling_scale_floor": 0.0,
                                              "split_max_log_std": None}


@pytest.mark.parametrize("floor", [-0.1, 1.0, math.nan])
def test_floor_out_of_range_is_refused(floor: float) -> None:
    with pytest.raises(ConfigError, match="coupling_scale_floor"):
        GlowConfig(coupling_scale_floor=floor).validate()


@pytest.mark.parametrize("cap", [math.inf, math.nan])
def test_cap_must_be_finite(cap: float) -> None:
    with pytest.raises(ConfigError, match="split_max_log_std"):
        GlowConfig(split_max_log_std=cap).validate()
