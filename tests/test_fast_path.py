"""The default fast path computes what the plain one does: fused Adam, weight norm as
v·(g/‖v‖), and the CLI switch back to the plain optimizer."""

from __future__ import annotations

import pytest
import torch

from tractable.nn.shifted import DownRightShiftedConvTranspose2d, DownShiftedConv2d
from tractable.nn.weight_norm import NIN
from tractable.training import TrainConfig, Trainer, load_split, make_model

TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.5}


@pytest.mark.parametrize("layer", [DownShiftedConv2d(3, 5), NIN(4, 6),
                                   DownRightShiftedConvTranspose2d(4, 3)])
def test_weight_is_g_times_unit_direction_and_gain_scales_it(layer):
    with torch.no_grad():
        layer.g.uniform_(0.5, 2.0)
    axis = layer.out_axis
    dims = [d for d in range(layer.v.dim()) if d != axis]
    shape = [1] * layer.v.dim()
    shape[axis] = -1
    ref = layer.g.view(shape) * layer.v / torch.linalg.vector_norm(layer.v, dim=dims, keepdim=True)
    assert torch.allclose(layer.weight(), ref, rtol=1e-6, atol=0)
    assert torch.allclose(layer.weight(2.0), 2 * ref, rtol=1e-6, atol=0)
    norms = torch.linalg.vector_norm(layer.weight() / layer.g.view(shape), dim=dims)
    assert torch.allclose(norms, torch.ones_like(norms), rtol=1e-6)


def test_fused_adam_is_the_default_and_trains_like_the_plain_one():
    train = load_split("mnist-mini", "train", 64)
    finals = []
    for fused in (True, False):
        model = make_model("pixelcnn++", train, 0, overrides=TINY)
        cfg = TrainConfig(batch_size=8, max_steps=4, samples_per_eval=0, progress=False,
                          quiet=True, fused_optimizer=fused, device="cpu")
        trainer = Trainer(model, train, None, cfg)
        assert bool(trainer.optimizer.defaults["fused"]) is fused
        trainer.fit()
        finals.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    assert TrainConfig().fused_optimizer
    fused_w, plain_w = finals
    for k in fused_w:
        assert torch.allclose(fused_w[k].float(), plain_w[k].float(), rtol=1e-4, atol=1e-6), k


def test_cli_flag_turns_the_fused_optimizer_off():
    from tractable.cli import build_parser
    from tractable.cli.train import train_config_values

    args = build_parser().parse_args(["train", "--model", "pixelcnn++", "--out", "r", "--no-fused-optimizer"])
    assert train_config_values(args)["fused_optimizer"] is False
    args = build_parser().parse_args(["train", "--model", "pixelcnn++", "--out", "r"])
    assert "fused_optimizer" not in train_config_values(args)


def test_channels_last_is_the_pixelcnn_default_and_flags_override_it():
    from tractable.cli import build_parser
    from tractable.cli.train import train_config_values

    base = ["train", "--model", "pixelcnn++", "--out", "r"]
    parse = build_parser().parse_args
    assert "channels_last" not in train_config_values(parse(base))
    assert train_config_values(parse([*base, "--channels-last"]))["channels_last"] is True
    assert train_config_values(parse([*base, "--no-channels-last"]))["channels_last"] is False
    train = load_split("mnist-mini", "train", 16)
    for setting, expected in ((None, True), (False, False)):
        model = make_model("pixelcnn++", train, 0, overrides=TINY)
        cfg = TrainConfig(batch_size=8, max_steps=1, samples_per_eval=0, progress=False,
                          quiet=True, channels_last=setting, device="cpu")
        trainer = Trainer(model, train, None, cfg)
        assert trainer.channels_last is expected
        assert trainer.model.u_init.v.is_contiguous(memory_format=torch.channels_last) \
            is expected


def test_resume_with_channels_last_and_fused_adam_equals_the_uninterrupted_run(tmp_path):
    """Checkpoints hold contiguous optimizer state; the fused kernel needs the parameter's
    layout, so a resumed channels_last run must restore it (it silently diverged before)."""
    train = load_split("mnist-mini", "train", 64)

    def run(steps: int, out, resume: bool = False) -> dict[str, torch.Tensor]:
        model = make_model("pixelcnn++", train, 0, overrides=TINY)
        cfg = TrainConfig(batch_size=8, max_steps=steps, samples_per_eval=0, progress=False,
                          quiet=True, out=str(out), checkpoint_every=2, device="cpu")
        trainer = Trainer(model, train, None, cfg, resume=resume)
        assert trainer.channels_last
        trainer.fit()
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    whole = run(4, tmp_path / "whole")
    run(2, tmp_path / "split")
    resumed = run(4, tmp_path / "split", resume=True)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
