"""The trainer and its parts: schedule, EMA, batches, exact bits/dim, NaN guard, determinism.

Models are tiny real PixelCNN++ (and Glow / Gated PixelCNN for the model-agnostic check)
trained for a few steps on subsets of the bundled real MNIST digits.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tractable.config import TrainingDefaults
from tractable.data import load_dataset
from tractable.errors import CheckpointError, ConfigError, DataError, TrainingError
from tractable.evaluation import evaluate_bpd
from tractable.models import PixelCNNPlusPlus
from tractable.training import TrainConfig, Trainer, make_model
from tractable.training.batches import BatchStream, augmentation
from tractable.training.callbacks import Evaluation, Periodic
from tractable.training.checkpoint import load_state
from tractable.training.ema import EMA, ema_decay_at
from tractable.training.factory import model_config_for, parse_field_value
from tractable.training.optim import lr_at, resolve_defaults

TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.0}


@pytest.fixture(scope="module")
def digits():
    return (load_dataset("mnist-mini", "train", limit=64),
            load_dataset("mnist-mini", "test", limit=24))


def tiny_model(train_set, seed=0, **over):
    return make_model("pixelcnn++", train_set, seed, overrides={**TINY, **over})


def quick(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_steps=4, log_every=2, checkpoint_every=1000,
                samples_per_eval=0, progress=False, quiet=True, eval_batch_size=16)
    return TrainConfig(**{**base, **kw})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- schedule, defaults, EMA -------------------------------------------------------------
def test_lr_schedule_is_paper_decay_times_linear_warmup():
    d = TrainingDefaults(lr=1e-3, lr_decay=0.999995, warmup_steps=4)
    assert [lr_at(t, d) / (1e-3 * 0.999995**t) for t in range(6)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert lr_at(1000, TrainingDefaults(lr=2e-3, lr_decay=0.5)) == 2e-3 * 0.5**1000


def test_family_defaults_are_the_papers_and_overrides_win():
    d = resolve_defaults(PixelCNNPlusPlus.training_defaults(), {"lr": None, "batch_size": 4})
    assert (d.optimizer, d.lr, d.betas, d.lr_decay, d.ema_decay) == (
        "adam", 1e-3, (0.95, 0.9995), 0.999995, 0.9995)
    assert d.batch_size == 4
    with pytest.raises(ConfigError, match="unknown optimizer"):
        resolve_defaults(d, {"optimizer": "sgd"})


def test_ema_update_is_polyak_average_with_capped_decay(digits):
    model = tiny_model(digits[0])
    ema = EMA(model, decay=0.9995)
    before = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=0)
    d = ema_decay_at(0, 0.9995)
    assert d == pytest.approx(0.1)  # (1 + 0) / (10 + 0): early averages follow the weights
    for b, p, e in zip(before, model.parameters(), ema.model.parameters(), strict=True):
        torch.testing.assert_close(e, d * b + (1 - d) * p.detach())
    assert ema_decay_at(10**6, 0.9995) == 0.9995


# ---- batches -----------------------------------------------------------------------------
def test_batches_cover_each_epoch_once_and_shards_reassemble_the_global_batch(digits):
    train = digits[0]
    one = BatchStream(train, batch_size=8, seed=3)
    assert one.steps_per_epoch == 8
    seen = torch.cat([one.global_indices(t) for t in range(8)])
    assert sorted(seen.tolist()) == list(range(64))  # a permutation: every image once
    assert not torch.equal(one.global_indices(0), one.global_indices(8))  # new epoch order
    ranks = [BatchStream(train, 8, 3, rank=r, world_size=2) for r in range(2)]
    for t in (0, 5, 11):
        x, y = one.batch(t)
        parts = [s.batch(t) for s in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
    with pytest.raises(ConfigError, match="divide evenly"):
        BatchStream(train, 9, 0, rank=0, world_size=2)


def test_augmentation_is_keyed_by_step_and_identical_across_shards(digits):
    aug = augmentation("flip,shift")
    one = BatchStream(digits[0], 8, seed=1, transform=aug)
    halves = [BatchStream(digits[0], 8, 1, r, 2, transform=aug) for r in range(2)]
    x = one.batch(2)[0]
    assert torch.equal(torch.cat([h.batch(2)[0] for h in halves]), x)
    assert torch.equal(one.batch(2)[0], x)
    assert not torch.equal(x, BatchStream(digits[0], 8, seed=1).batch(2)[0])
    with pytest.raises(ConfigError, match="unknown augmentation"):
        augmentation("rotate")


# ---- exact bits/dim ----------------------------------------------------------------------
def test_eval_bpd_counts_every_image_and_ignores_batch_size(digits):
    model = tiny_model(digits[0]).eval()
    test = digits[1]  # 24 images: batch 7 leaves a partial batch of 3
    a = evaluate_bpd(model, test, batch_size=7)
    b = evaluate_bpd(model, test, batch_size=24)
    with torch.no_grad():
        per_image = -model.log_prob(test.images).double()
    expected = float(per_image.sum()) / (24 * 784 * math.log(2))
    assert a.num_images == 24 and b.num_images == 24
    # other batch sizes: float32 convolutions round differently, up to 1e-5 relative (a
    # lost or doubled image would move the mean by orders of magnitude more)
    assert a.bits_per_dim == pytest.approx(expected, rel=1e-5)
    assert a.bits_per_dim == pytest.approx(b.bits_per_dim, rel=1e-5)


# ---- training ----------------------------------------------------------------------------
def test_training_lowers_test_bpd_and_is_deterministic(digits, tmp_path):
    train, test = digits
    runs = []
    for seed in (0, 0, 1):
        model = tiny_model(train, seed=seed)
        start = evaluate_bpd(model, test).bits_per_dim
        trainer = Trainer(model, train, test, quick(max_steps=12, seed=seed))
        out = trainer.fit()
        runs.append((weights(trainer.model), start, out["best_test_bpd"]))
    (w0, start, end), (w1, _, _), (w2, _, _) = runs
    assert end < start - 0.1
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # same seed: identical weights
    assert not all(torch.equal(w0[k], w2[k]) for k in w0)


def test_dropout_randomness_is_a_function_of_the_step(digits):
    """Reseeding per step makes a run with dropout reproducible (needed for exact resume)."""
    train, test = digits
    finals = []
    for _ in range(2):
        model = tiny_model(train, dropout=0.5)
        trainer = Trainer(model, train, None, quick(max_steps=3))
        trainer.fit()
        finals.append(weights(trainer.model))
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_bf16_autocast_trains_with_fp32_likelihood(digits):
    train, test = digits
    model = tiny_model(train)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = model(model.scale(test.images[:2]))
        lp = model.log_prob(test.images[:2])
    assert params.dtype == torch.float32 and lp.dtype == torch.float32  # see nn/precision.py
    trainer = Trainer(model, train, test, quick(precision="bf16", channels_last=True))
    out = trainer.fit()
    assert math.isfinite(out["best_test_bpd"])
    assert trainer.model.u_init.v.is_contiguous(memory_format=torch.channels_last)


def test_nan_guard_skips_steps_then_stops_naming_last_checkpoint(digits, tmp_path):
    train, test = digits
    model = tiny_model(train)
    real_loss = model.loss
    bad_steps = {2, 5, 6, 7}
    trainer = Trainer(model, train, None,
                      quick(max_steps=20, checkpoint_every=4, max_bad_steps=3,
                            out=str(tmp_path / "run")))

    def loss(x, y=None):
        value, metrics = real_loss(x, y)
        if trainer.step in bad_steps:
            value = value * float("nan")
        return value, metrics

    model.loss = loss
    snap = {}
    trainer.callbacks.append(lambda t: snap.__setitem__(t.step, weights(t.model)))
    with pytest.raises(TrainingError, match=r"3 consecutive.*run/state\.pt \(step 4\)"):
        trainer.fit()
    # step index 2 (the 3rd batch) was skipped: weights after it equal the weights before it
    assert all(torch.equal(snap[2][k], snap[3][k]) for k in snap[2])
    assert not all(torch.equal(snap[1][k], snap[2][k]) for k in snap[1])
    skips = [r["step"] for r in trainer.log.of_kind("skip")]
    assert skips == [3, 6, 7, 8]
    assert load_state(tmp_path / "run" / "state.pt")["step"] == 4


def test_the_final_summary_holds_the_final_evaluation(digits, tmp_path):
    """A run whose last step is a checkpoint step but not an evaluation step (here: the
    epoch is longer than the run) still writes summary.json after its final evaluation."""
    train, test = digits
    trainer = Trainer(tiny_model(train), train, test,
                      quick(max_steps=4, checkpoint_every=2, out=str(tmp_path / "run")))
    out = trainer.fit()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    evals = trainer.log.of_kind("eval")
    assert [r["step"] for r in evals] == [4]
    assert summary["best_test_bpd"] == out["best_test_bpd"] == evals[-1]["test_bpd"]
    assert summary["last_test_bpd"] == evals[-1]["test_bpd"] is not None


def test_a_periodic_callback_acts_at_its_steps_and_at_the_end_with_statistics_read(digits):
    """A user's `Periodic` callback runs after the trainer's own, at its steps and once
    more at the end; the sync-free step's statistics (read only at log steps and the
    end here) are read before it acts."""
    train, test = digits

    class EveryThird(Periodic):
        def __init__(self):
            super().__init__()
            self.seen = []

        def due(self, trainer):
            return trainer.step % 3 == 0

        def act(self, trainer):
            self.seen.append((trainer.step, len(trainer.stats.unread)))

    every_third = EveryThird()
    trainer = Trainer(tiny_model(train), train, test,
                      quick(max_steps=7, log_every=100, eval_every=100, device="cpu"),
                      callbacks=[every_third])
    trainer.sync_free = True  # the CUDA step, forced on the CPU (fused Adam skips on any device)
    assert isinstance(trainer.callbacks[1], Evaluation) and trainer.callbacks[-1] is every_third
    trainer.fit()
    assert every_third.seen == [(3, 0), (6, 0), (7, 0)]
    assert [r["step"] for r in trainer.log.of_kind("eval")] == [7]  # the end's evaluation
    (row,) = trainer.log.of_kind("train")  # the last step's, over all 7 steps
    assert row["step"] == 7 and math.isfinite(row["bpd"])


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(digits, tmp_path,
                                                                  monkeypatch):
    train, _ = digits
    run = tmp_path / "run"
    trainer = Trainer(tiny_model(train), train, None,
                      quick(max_steps=6, checkpoint_every=3, out=str(run)))
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (step 6) dies half-way
            f.write(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt("killed while writing")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load_state(run / "state.pt")
    assert state["step"] == 3
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


def test_fresh_run_refuses_to_overwrite_and_resume_needs_a_checkpoint(digits, tmp_path):
    train, _ = digits
    run = tmp_path / "run"
    Trainer(tiny_model(train), train, None, quick(max_steps=1, out=str(run))).fit()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(tiny_model(train), train, None, quick(max_steps=1, out=str(run)))
    with pytest.raises(CheckpointError, match="without --resume"):
        Trainer(tiny_model(train), train, None, quick(out=str(tmp_path / "new")), resume=True)


@pytest.mark.parametrize("family, over", [
    ("glow", {"K": 1, "L": 1, "width": 8}),
    ("gated-pixelcnn", {"n_layers": 2, "n_filters": 8, "head_filters": 8, "n_levels": 4}),
])
def test_trainer_serves_other_families(family, over, digits):
    train, test = digits
    model = make_model(family, train, 0, overrides=over)
    trainer = Trainer(model, train, test, quick(max_steps=2))
    assert math.isfinite(trainer.fit()["best_test_bpd"])


# ---- building configs from names ---------------------------------------------------------
def test_model_config_from_family_shape_and_overrides():
    cfg = model_config_for("pixelcnn++", (1, 28, 28), 10, [str(i) for i in range(10)],
                           overrides={"nr_filters": "12", "coord_conv": "true"})
    assert (cfg.nr_filters, cfg.coord_conv, cfg.image_shape, cfg.num_classes) == (
        12, True, (1, 28, 28), 10)
    glow = model_config_for("glow", (3, 32, 32), preset="paper")
    assert (glow.K, glow.L, glow.width) == (32, 3, 512)
    with pytest.raises(ConfigError, match="no setting 'K'"):
        model_config_for("pixelcnn++", (1, 28, 28), overrides={"K": 3})
    with pytest.raises(ConfigError, match="no preset 'huge'"):
        model_config_for("glow", (1, 28, 28), preset="huge")
    with pytest.raises(ConfigError, match="expects int"):
        model_config_for("pixelcnn++", (1, 28, 28), overrides={"nr_filters": "many"})


def test_parse_field_value_types():
    assert parse_field_value(tuple[int, int, int], "3,8,8") == (3, 8, 8)
    assert parse_field_value(float | None, "none") is None
    assert parse_field_value(float | None, "0.5") == 0.5
    assert parse_field_value(bool, "no") is False
    with pytest.raises(ConfigError, match="3 comma-separated"):
        parse_field_value(tuple[int, int, int], "3,8")


def test_conditional_model_needs_labelled_data():
    test = load_dataset("mnist-mini", "test")
    model = make_model("pixelcnn++", test, 0, overrides=TINY, conditional=True)
    assert model.config.num_classes == 10 and model.config.class_names[3] == "3"
    unlabelled = type(test)(test.images[:16], None, [], "nolabels")
    with pytest.raises(DataError, match="no class labels"):
        make_model("pixelcnn++", unlabelled, 0, overrides=TINY, conditional=True)
