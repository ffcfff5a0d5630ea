"""Glow's coupling scale floor as a whole model: with it (the default for new models) the
inverse stays finite and exact far from the data; without it (folders saved before it
existed, read as floor 0 by the config migration) a model behaves exactly as before."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import tractable
from tractable.config import FORMAT_VERSION
from tractable.errors import NonFiniteDecodeError
from tractable.models import Glow, GlowConfig
from tractable.sampling.prior import sample_prior


def make(floor: float, seed: int = 0) -> Glow:
    torch.manual_seed(seed)
    return Glow(GlowConfig(image_shape=(1, 8, 8), K=2, L=2, width=8, num_classes=2,
                           coupling_scale_floor=floor)).eval()


def randomize_(model: nn.Module, scale: float = 0.05, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def extreme(model: Glow) -> Glow:
    """Flow steps with real weights whose coupling scale outputs h are × e^9: the
    log-scales reach far below any data's (the shifts stay moderate). The split and top
    priors stay at their initialization, N(0, I): their learned log-stds are another
    unbounded exponential, which the floor does not touch."""
    with torch.no_grad():
        for level in model.levels:
            for step in level.steps:
                randomize_(step)
                step.coupling.net.out.logs[:, 1::2] = 3.0
    return model


def test_new_models_default_to_a_floor_and_save_it() -> None:
    assert GlowConfig().coupling_scale_floor == 0.05
    model = make(GlowConfig().coupling_scale_floor)
    assert all(step.coupling.scale_floor == 0.05 for level in model.levels
               for step in level.steps)


def test_floored_model_inverts_noise_exactly_where_the_unbounded_one_fails() -> None:
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(1))
    floored = extreme(make(0.05))
    assert torch.equal(floored.decode(floored.encode(x)), x)  # encode also checks this
    unbounded = extreme(make(0.0))
    back = unbounded.decode(unbounded.encode(x, check=False), check_finite=False)
    assert not torch.equal(back, x)


def test_floored_model_decodes_latents_far_from_the_prior() -> None:
    """Edits and blends move latents off the data; with the floor each coupling's inverse
    multiplies by at most 1/f, so even latents 30× the prior's scale decode to pixels,
    where the unbounded scale overflows."""
    floored = extreme(make(0.05))
    latents = [30 * z for z in floored.prior_latents(8, torch.tensor([0, 1] * 4), 1.0,
                                                     torch.Generator().manual_seed(0))]
    x_c = floored.decode_continuous(latents)
    assert torch.isfinite(x_c).all()
    floored.decode(latents)  # no NonFiniteDecodeError
    unbounded = extreme(make(0.0))
    assert not torch.isfinite(unbounded.decode_continuous(latents)).all()


def test_non_finite_decode_names_the_remedy_of_its_caller() -> None:
    model = extreme(make(0.0))
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
    """The folder as tractable 0.1.0 wrote it: config format 1, no coupling_scale_floor."""
    model.save_pretrained(directory)
    path = directory / "config.json"
    payload = json.loads(path.read_text())
    assert payload["format_version"] == FORMAT_VERSION >= 2
    del payload["config"]["coupling_scale_floor"]
    path.write_text(json.dumps({**payload, "format_version": 1, "tractable_version": "0.1.0"}))


def test_old_glow_folder_loads_unbounded_and_scores_the_same(tmp_path) -> None:
    old = randomize_(make(0.0))
    save_as_0_1_0(old, tmp_path)
    loaded = tractable.load(tmp_path).eval()
    assert loaded.config.coupling_scale_floor == 0.0
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1] * 3)

    def bpd(model: Glow) -> torch.Tensor:
        with torch.no_grad():
            return model.log_prob(x, y, generator=torch.Generator().manual_seed(4))

    assert torch.equal(bpd(loaded), bpd(old))
    # without the migration the same weights would score otherwise (the default floor)
    floored = make(0.05)
    floored.load_state_dict(old.state_dict())
    assert not torch.allclose(bpd(floored), bpd(old))
    # saved again, the folder records the floor explicitly and still loads unbounded
    loaded.save_pretrained(tmp_path / "again")
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION
    assert config["config"]["coupling_scale_floor"] == 0.0


def test_migration_leaves_other_families_and_explicit_floors_alone() -> None:
    from tractable.config import MIGRATIONS

    pixel = {"family": "pixelcnn++", "format_version": 1, "config": {"nr_resnet": 1}}
    assert MIGRATIONS[1](pixel) == {**pixel, "format_version": 2}
    glow = {"family": "glow", "format_version": 1, "config": {"coupling_scale_floor": 0.2}}
    assert MIGRATIONS[1](glow)["config"]["coupling_scale_floor"] == 0.2


@pytest.mark.parametrize("floor", [-0.1, 1.0, math.nan])
def test_floor_out_of_range_is_refused(floor: float) -> None:
    from tractable.errors import ConfigError

    with pytest.raises(ConfigError, match="coupling_scale_floor"):
        GlowConfig(coupling_scale_floor=floor).validate()
