"""The default fast path computes what the plain one does: fused Adam, weight norm as
v·(g/‖v‖), and the CLI switch back to the plain optimizer."""

from __future__ import annotations

import pytest
import torch

from tractable.data import load_dataset
from tractable.nn.shifted import DownRightShiftedConvTranspose2d, DownShiftedConv2d
from tractable.nn.weight_norm import NIN
from tractable.training import TrainConfig, Trainer, make_model

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


def test_fused_adam_is_the_default_and_updates_like_the_plain_one():
    train = load_dataset("mnist-mini", "train", limit=16)
    for fused in (True, False):
        model = make_model("pixelcnn++", train, 0, overrides=TINY)
        cfg = TrainConfig(batch_size=8, max_steps=1, samples_per_eval=0, progress=False,
                          quiet=True, fused_optimizer=fused, device="cpu")
        assert bool(Trainer(model, train, None, cfg).optimizer.defaults["fused"]) is fused
    assert TrainConfig().fused_optimizer
    # the same parameters and gradient sequence through both: the same weights
    from tractable.config import TrainingDefaults
    from tractable.training.optim import build_optimizer

    torch.manual_seed(0)
    p0 = [torch.randn(5, 4, 2, 3), torch.randn(7)]
    grads = [[torch.randn_like(p) for p in p0] for _ in range(5)]
    finals = []
    for fused in (True, False):
        params = [torch.nn.Parameter(p.clone()) for p in p0]
        opt = build_optimizer(params, TrainingDefaults(optimizer="adam", lr=1e-3,
                                                       betas=(0.95, 0.9995)), fused=fused)
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()
        finals.append([p.detach().clone() for p in params])
    for a, b in zip(*finals, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, p0[0] if a.shape == p0[0].shape else p0[1])


def test_cli_flag_turns_the_fused_optimizer_off():
    from tractable.cli import build_parser
    from tractable.cli.train import train_config_values

    base = ["train", "--model", "pixelcnn++", "--out", "r"]
    args = build_parser().parse_args([*base, "--no-fused-optimizer"])
    assert train_config_values(args)["fused_optimizer"] is False
    args = build_parser().parse_args(base)
    assert "fused_optimizer" not in train_config_values(args)


def test_channels_last_is_the_pixelcnn_default_and_flags_override_it():
    from tractable.cli import build_parser
    from tractable.cli.train import train_config_values

    base = ["train", "--model", "pixelcnn++", "--out", "r"]
    parse = build_parser().parse_args
    assert "channels_last" not in train_config_values(parse(base))
    assert train_config_values(parse([*base, "--channels-last"]))["channels_last"] is True
    assert train_config_values(parse([*base, "--no-channels-last"]))["channels_last"] is False
    train = load_dataset("mnist-mini", "train", limit=16)
    for setting, expected in ((None, True), (False, False)):
        model = make_model("pixelcnn++", train, 0, overrides=TINY)
        cfg = TrainConfig(batch_size=8, max_steps=1, samples_per_eval=0, progress=False,
                          quiet=True, channels_last=setting, device="cpu")
        trainer = Trainer(model, train, None, cfg)
        assert trainer.channels_last is expected
        assert trainer.model.u_init.v.is_contiguous(memory_format=torch.channels_last) \
            is expected


def test_resume_with_channels_last_and_fused_adam_equals_the_uninterrupted_run(tmp_path):
    """The new defaults (channels_last, fused Adam) keep resume == uninterrupted."""
    train = load_dataset("mnist-mini", "train", limit=64)

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


def test_loaded_optimizer_state_takes_the_parameter_layout():
    """Fused Adam walks parameter and state memory in step: contiguous state (e.g. written
    by another layout) for a channels_last parameter must be re-laid out, or the update
    silently mixes up elements."""
    from tractable.training.checkpoint import _match_state_layout

    torch.manual_seed(0)
    p0, g = torch.randn(4, 3, 2, 3), torch.randn(4, 3, 2, 3)
    results = []
    for fused in (False, True):
        p = torch.nn.Parameter(p0.clone().contiguous(memory_format=torch.channels_last))
        p.grad = g.clone().contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam([p], lr=0.1, fused=fused)
        opt.step()
        state = opt.state_dict()
        for s in state["state"].values():
            s["exp_avg"], s["exp_avg_sq"] = s["exp_avg"].contiguous(), s["exp_avg_sq"].contiguous()
        opt.load_state_dict(state)
        _match_state_layout(opt)
        assert opt.state[p]["exp_avg"].stride() == p.stride()
        opt.step()
        results.append(p.detach().clone())
    assert torch.allclose(results[0], results[1], rtol=1e-6, atol=1e-7)


def test_long_pixelcnn_runs_compile_by_default_and_flags_decide_outright(monkeypatch):
    from tractable.models import Glow, GlowConfig
    from tractable.training import compilation

    train = load_dataset("mnist-mini", "train", limit=16)
    model = make_model("pixelcnn++", train, 0, overrides=TINY)
    cpu = torch.device("cpu")
    after = model.compile_after_steps(cpu)
    assert after is not None
    paper = make_model("pixelcnn++", train, 0, preset="paper")
    assert paper.compile_after_steps(cpu) is None  # convolution-bound: compiling is slower
    monkeypatch.setattr(compilation, "compiler_available", lambda device: True)
    assert compilation.should_compile(model, None, after, cpu)
    assert not compilation.should_compile(model, None, after - 1, cpu)  # a short run: eager
    assert not compilation.should_compile(model, False, 10 * after, cpu)
    assert compilation.should_compile(model, True, 1, cpu)
    glow = Glow(GlowConfig(image_shape=(1, 8, 8), K=1, L=1, width=4))
    assert glow.compile_after_steps(cpu) is None
    assert not compilation.should_compile(glow, None, 10**9, cpu)
    monkeypatch.setattr(compilation, "compiler_available", lambda device: False)
    assert not compilation.should_compile(model, None, 10 * after, cpu)  # no C++ compiler
    cfg = TrainConfig(batch_size=8, max_steps=after, samples_per_eval=0, progress=False,
                      quiet=True, device="cpu")
    assert not Trainer(model, train, None, cfg).compiled


def test_the_pixelcnn_loss_traces_as_one_graph_that_computes_the_eager_values():
    """No graph break (so compiling fuses the whole step), and the traced form (the plain
    concat_elu) gives the eager loss and gradients; `aot_eager` runs the traced graph
    without building C++ kernels."""
    train = load_dataset("mnist-mini", "train", limit=8)
    x = train.images[:8]
    with_dropout = make_model("pixelcnn++", train, 0, overrides=TINY).train()
    explained = torch._dynamo.explain(with_dropout.loss)(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    model = make_model("pixelcnn++", train, 0, overrides={**TINY, "dropout": 0.0})
    model.to(memory_format=torch.channels_last).train()
    eager_loss = model.loss(x)[0]
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    torch._dynamo.reset()
    traced_loss = torch.compile(model.loss, backend="aot_eager")(x)[0]
    traced_grads = torch.autograd.grad(traced_loss, list(model.parameters()))
    torch._dynamo.reset()
    assert torch.allclose(traced_loss, eager_loss, rtol=1e-5)
    for a, b in zip(traced_grads, eager_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_channels_last_gradients_have_their_parameters_strides():
    """DDP copies each gradient into a bucket view with its parameter's strides; they must
    agree (also for 1×1 kernels, whose matmul gradients come back NCHW-strided)."""
    train = load_dataset("mnist-mini", "train", limit=16)
    model = make_model("pixelcnn++", train, 0, overrides=TINY)
    cfg = TrainConfig(batch_size=8, max_steps=1, samples_per_eval=0, progress=False,
                      quiet=True, device="cpu", compile=False)
    trainer = Trainer(model, train, None, cfg)
    assert trainer.channels_last
    x, _ = trainer.stream.batch(0)
    loss, _ = trainer.wrapped(x.contiguous(memory_format=torch.channels_last), None)
    loss.backward()
    kernels = {tuple(p.shape[2:]) for p in model.parameters() if p.dim() == 4}
    assert (1, 1) in kernels and len(kernels) > 1
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.stride() == p.stride(), name
