"""Paper recipes: every setting equals the reference code's, openai's Adamax and constant-decay
Polyak averaging compute what openai computes, and each recipe trains on real data."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from tractable.data import load_dataset
from tractable.errors import ConfigError
from tractable.models.registry import model_class
from tractable.training import TrainConfig, Trainer
from tractable.training.ema import EMA, ema_decay_at
from tractable.training.factory import build_model, model_config_for
from tractable.training.optim import OpenAIAdamax, lr_at, resolve_defaults
from tractable.training.recipes import apply_recipe, get_recipe

# The published values, copied by hand from the reference code (not from tractable):
# openai/pixel-cnn train.py argparse defaults and adam_updates(mom1=0.95, mom2=0.9995);
# openai/glow README "CIFAR-10 / ImageNet 32x32 Quantitative result" commands, train.py
# defaults (n_batch_train 64, n_batch_init 256, n_train 50000, epochs_warmup 10, lr 0.001,
# beta1 0.9, polyak_epochs 1, weight_decay 1 = off), optim.adamax, tfops (edge_bias=True,
# N(0, 0.05)), model.invertible_1x1_conv (`if True:` plain matrix).
PIXELCNN_PP = {
    "model": {"nr_resnet": 5, "nr_filters": 160, "nr_logistic_mix": 10, "dropout": 0.5},
    "per_gpu_batch": 16, "init_batch": 16, "lr": 1e-3, "decay": 0.999995,
    "betas": (0.95, 0.9995), "polyak": 0.9995,
}
GLOW_MODEL = {"L": 3, "width": 512, "coupling": "affine", "n_bits": 8, "lu": False,
              "learn_top": True, "edge_bias": True, "border_top_prior": True,
              "hidden_init_std": 0.05}
GLOW = {"per_gpu_batch": 64, "init_batch": 256, "lr": 1e-3, "beta1": 0.9,
        "n_train": 50_000, "warmup_epochs": 10}

CASES = [  # (family, data, gpus, depth K)
    ("pixelcnn++", "cifar10", 1, None),
    ("pixelcnn++", "cifar10", 8, None),
    ("glow", "cifar10", 1, 32),
    ("glow", "cifar10", 8, 32),
    ("glow", "imagenet32", 8, 48),
    ("glow", "mnist", 4, 32),
]


def published(family: str, data: str, gpus: int, depth: int | None) -> dict:
    """What the reference code runs with `gpus` GPUs, in tractable's terms."""
    if family == "pixelcnn++":
        p = PIXELCNN_PP
        return {"model": p["model"], "batch": p["per_gpu_batch"] * gpus,
                "init_batch": p["init_batch"], "optimizer": "adam", "betas": p["betas"],
                # openai: lr *= decay before every step, so step t runs at lr·decay^(t+1)
                "lr_of_step": lambda t: p["lr"] * p["decay"] ** (t + 1),
                "ema": p["polyak"], "clip": False, "augment": None}
    g = GLOW
    batch = g["per_gpu_batch"] * gpus
    its = math.ceil(g["n_train"] / batch)
    warm = g["n_train"] * g["warmup_epochs"]
    return {"model": {**GLOW_MODEL, "K": depth, "L": 2 if data == "mnist" else 3},
            "batch": batch, "init_batch": g["init_batch"], "optimizer": "openai-adamax",
            "betas": (g["beta1"], 1 - 1 / its),
            # openai: lr · min(1, images seen before this step / (n_train · epochs_warmup))
            "lr_of_step": lambda t: g["lr"] * min(1.0, t * batch / warm),
            "ema": 1 - 1 / its, "clip": False,
            "augment": None if data == "imagenet32" else "shift"}


@pytest.mark.parametrize("family,data,gpus,depth", CASES)
def test_recipe_settings_equal_the_published_values(family, data, gpus, depth):
    want = published(family, data, gpus, depth)
    r = get_recipe("paper", family, data, world_size=gpus)
    for key, value in want["model"].items():
        assert r.model[key] == value, key
    t = r.train
    assert t["batch_size"] == want["batch"] and r.per_process_batch * gpus == want["batch"]
    assert t["init_batch_size"] == want["init_batch"]
    assert t["optimizer"] == want["optimizer"]
    assert t["betas"] == pytest.approx(want["betas"], rel=0, abs=1e-15)
    assert t["ema_decay"] == pytest.approx(want["ema"], rel=0, abs=1e-15)
    assert t["ema_warmup"] is False  # openai's averages have no num_updates cap
    assert bool(t["grad_clip"]) is want["clip"]
    assert t.get("augment") == want["augment"]
    assert t["weight_decay"] == 0.0
    # The learning rate of every step: exactly openai's for PixelCNN++; Glow's warm-up ramp
    # is one step earlier (tractable's ramp starts at lr/W, openai's at 0; docs/reproduce.md).
    d = resolve_defaults(model_class(family).training_defaults(),
                         {k: v for k, v in t.items() if k in (
                             "optimizer", "lr", "betas", "lr_decay", "warmup_steps",
                             "weight_decay", "ema_decay", "grad_clip", "batch_size",
                             "ema_warmup")})
    one_step_of_ramp = GLOW["lr"] * want["batch"] / (GLOW["n_train"] * GLOW["warmup_epochs"])
    for step in (0, 1, 10, 1000, 7000, 7811, 7812, 7813, 100_000):
        expected = want["lr_of_step"](step)
        if family == "glow":
            # one step of the ramp, plus the rounding of W = 7812.5 steps to 7812
            assert abs(lr_at(step, d) - expected) <= 1.5 * one_step_of_ramp
            if step * want["batch"] >= GLOW["n_train"] * GLOW["warmup_epochs"]:
                assert lr_at(step, d) == expected  # after the warm-up: equal
        else:
            assert lr_at(step, d) == pytest.approx(expected, rel=1e-12)


def test_recipe_runs_the_trainer_with_exactly_those_settings(shared_data):
    """The settings reach the optimizer, the EMA and the model, not just the table."""
    r = get_recipe("paper", "glow", "cifar10", world_size=1)
    train_values, model_values = apply_recipe(r, {"max_steps": 1}, {"K": 1, "width": 8})
    ds = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000", batches=[1])
    cfg = model_config_for("glow", ds.shape, overrides=model_values)
    model = build_model("glow", cfg)
    trainer = Trainer(model, ds, None, TrainConfig(**{**train_values, "samples_per_eval": 0,
                                                      "progress": False, "quiet": True}))
    assert isinstance(trainer.optimizer, OpenAIAdamax)
    assert trainer.optimizer.param_groups[0]["betas"] == r.train["betas"]
    assert trainer.ema.decay == r.train["ema_decay"] and trainer.ema.warmup is False
    assert trainer.opt_cfg.grad_clip == 0.0 and trainer.cfg.recipe == "paper"
    assert model.config.edge_bias and model.config.border_top_prior and not model.config.lu
    hidden = torch.cat([w.detach().flatten() for level in model.levels for step in level.steps
                        for w in (step.coupling.net.conv1.weight, step.coupling.net.conv2.weight)])
    assert hidden.numel() > 2000  # N(0, 0.05): sample std within 6 standard errors
    assert abs(float(hidden.std()) - 0.05) < 6 * 0.05 / math.sqrt(2 * hidden.numel())


def test_user_flags_win_over_the_recipe_and_derived_values_follow_the_batch():
    r = get_recipe("paper", "glow", "cifar10", world_size=2, batch_size=256)
    assert r.train["batch_size"] == 256
    assert r.train["betas"][1] == 1 - 1 / math.ceil(50_000 / 256)
    assert r.train["warmup_steps"] == round(500_000 / 256)
    train, model = apply_recipe(r, {"lr": 5e-4}, {"K": 4})
    assert train["lr"] == 5e-4 and model["K"] == 4 and model["width"] == 512


def test_unknown_recipes_families_and_datasets_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown recipe 'fast'"):
        get_recipe("fast", "glow", "cifar10", 1)
    with pytest.raises(ConfigError, match="no paper recipe for 'gated-pixelcnn'"):
        get_recipe("paper", "gated-pixelcnn", "cifar10", 1)
    with pytest.raises(ConfigError, match="pixelcnn\\+\\+ paper recipe is for cifar10"):
        get_recipe("paper", "pixelcnn++", "mnist", 1)


# ---- openai's Adamax and Polyak averaging --------------------------------------------------
def openai_adamax_reference(w, grads, lr, beta1, beta2, eps=1e-8):
    """openai/glow optim.adamax, transcribed into float64 scalar arithmetic."""
    m1 = torch.zeros_like(w)
    m2 = torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        alpha_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        m1 = beta1 * m1 + (1 - beta1) * g
        m2 = torch.maximum(beta2 * m2, g.abs())
        w = 1.0 * w - alpha_t * m1 / (m2 + eps)
    return w


def test_openai_adamax_equals_the_reference_update_and_differs_from_torch_adamax():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(50, dtype=torch.float64, generator=gen)
    grads = [torch.randn(50, dtype=torch.float64, generator=gen) * 10.0 ** -k
             for k in range(6)]  # shrinking gradients make the max-norm memory matter
    beta2 = 1 - 1 / 782
    p = torch.nn.Parameter(w0.clone())
    opt = OpenAIAdamax([p], lr=1e-3, betas=(0.9, beta2))
    for g in grads:
        p.grad = g.clone()
        opt.step()
    # foreach kernels round differently from the scalar transcription: a few float64 ulps
    # of w over six steps, eight orders below what tells the two Adamax variants apart
    torch.testing.assert_close(p.detach(), openai_adamax_reference(w0, grads, 1e-3, 0.9, beta2),
                               rtol=1e-14, atol=1e-15)
    q = torch.nn.Parameter(w0.clone())
    torch_opt = torch.optim.Adamax([q], lr=1e-3, betas=(0.9, beta2))
    for g in grads:
        q.grad = g.clone()
        torch_opt.step()
    assert (q.detach() - p.detach()).abs().max() > 1e-5  # the sqrt(1 - β2^t) factor


def test_openai_adamax_state_round_trips_through_a_state_dict():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    b.load_state_dict(a.state_dict())
    opt_a = OpenAIAdamax(a.parameters(), betas=(0.9, 0.99))
    x = torch.randn(4, 3, dtype=torch.float64)
    for _ in range(3):
        opt_a.zero_grad()
        a(x).pow(2).sum().backward()
        opt_a.step()
    b.load_state_dict(a.state_dict())
    opt_b = OpenAIAdamax(b.parameters(), betas=(0.9, 0.99))
    buffer = io.BytesIO()  # as a checkpoint does
    torch.save(opt_a.state_dict(), buffer)
    buffer.seek(0)
    opt_b.load_state_dict(torch.load(buffer, weights_only=True))
    for model, opt in ((a, opt_a), (b, opt_b)):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_polyak_without_warmup_uses_the_constant_decay_from_the_first_step():
    assert ema_decay_at(0, 0.9995, warmup=False) == 0.9995
    assert ema_decay_at(0, 0.9995) == pytest.approx(0.1)  # the default keeps the TF cap
    model = build_model("glow", model_config_for("glow", (1, 4, 4),
                                                 overrides={"K": 1, "L": 1, "width": 4}))
    ema = EMA(model, 0.9, warmup=False)
    before = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=0)
    for b, p in zip(before, ema.model.parameters(), strict=True):
        torch.testing.assert_close(p, b + 0.1)


# ---- short runs of each recipe on the shipped data -----------------------------------------
def short_run(family: str, data: str, ds, model_values: dict, steps: int,
              batch_size: int | None = None) -> Trainer:
    r = get_recipe("paper", family, data, world_size=1, batch_size=batch_size)
    train_values, model_values = apply_recipe(r, {"max_steps": steps, "log_every": 1},
                                              model_values)
    train_values["init_batch_size"] = min(train_values["init_batch_size"], len(ds))
    cfg = model_config_for(family, ds.shape, overrides=model_values)
    torch.manual_seed(0)
    trainer = Trainer(build_model(family, cfg), ds, None,
                      TrainConfig(**{**train_values, "samples_per_eval": 0, "progress": False,
                                     "quiet": True}))
    trainer.fit()
    return trainer


def losses(trainer: Trainer) -> list[float]:
    return [row["loss"] for row in trainer.log.of_kind("train")]


def test_pixelcnn_pp_paper_recipe_trains_on_real_cifar(shared_data):
    ds = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000", batches=[1])
    ds = ds.subset(256, seed=0)
    trainer = short_run("pixelcnn++", "cifar10", ds,
                        {"nr_resnet": 0, "nr_filters": 8, "nr_logistic_mix": 2}, steps=6)
    history = losses(trainer)
    assert len(history) == 6 and all(math.isfinite(v) for v in history)
    assert not trainer.log.of_kind("skip")
    assert sum(history[-2:]) < sum(history[:2])  # lr 1e-3 from the first step: it learns


@pytest.mark.parametrize("data", ["cifar10", "mnist-mini"])
def test_glow_paper_recipe_trains_on_real_data(shared_data, data):
    if data == "cifar10":
        ds = load_dataset("cifar10", "train", root=shared_data / "cifar10-first4000",
                          batches=[1]).subset(512, seed=0)
    else:
        ds = load_dataset("mnist-mini", "train").subset(512, seed=0)
    # the recipe's batch 64, init batch 256, openai Adamax, warm-up, no clipping
    trainer = short_run("glow", data, ds, {"K": 1, "width": 8}, steps=4)
    history = losses(trainer)
    assert len(history) == 4 and all(math.isfinite(v) for v in history)
    assert not trainer.log.of_kind("skip")
    assert trainer.opt_cfg.warmup_steps == 7812


def test_cli_recipe_flag_records_the_recipe_in_the_run(tmp_path, capsys):
    from tractable.cli import main

    out = tmp_path / "run"
    code = main(["train", "--model", "glow", "--recipe", "paper", "--data", "mnist-mini",
                 "--K", "1", "--width", "4", "--max-steps", "2", "--init-batch-size", "16",
                 "--limit-test", "16", "--samples-per-eval", "0", "--no-progress", "--quiet",
                 "--out", str(out)])
    assert code == 0
    assert "recipe paper" in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["recipe"] == "paper"
    assert run["optimizer"]["optimizer"] == "openai-adamax"
    assert run["optimizer"]["betas"][1] == 1 - 1 / 782 and run["optimizer"]["grad_clip"] == 0
    assert run["model_config"]["edge_bias"] and run["model_config"]["K"] == 1
    assert run["train"]["init_batch_size"] == 16  # an explicit flag wins over the recipe


def test_a_run_json_from_before_the_recipe_fields_resumes_with_the_old_behaviour():
    old = TrainConfig(data="mnist-mini", max_steps=3).to_dict()
    del old["ema_warmup"], old["recipe"]
    cfg = TrainConfig.from_dict(old)
    assert cfg.ema_warmup is None and cfg.recipe is None
    glow = model_class("glow").training_defaults()
    d = resolve_defaults(glow, cfg.optimizer_overrides())
    assert d.ema_warmup is True and d.grad_clip == 50.0 and d.optimizer == "adamax"
