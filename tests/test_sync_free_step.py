"""The sync-free training step (the CUDA path) trains exactly like the synchronous one.

On CUDA with fused Adam the NaN/inf guard is decided on the device and the host reads the
step statistics only now and then (`Trainer.sync_free`). Here that path is forced on the
CPU, where it runs the same kernels, and compared bit for bit with the synchronous step:
weights, optimizer state (step counts included), EMA weights and metrics rows, with and
without non-finite steps, the `max_bad_steps` stop, Ctrl-C, and resume. Tiny PixelCNN++ /
Glow on real MNIST digits.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tractable.config import TrainingDefaults
from tractable.data import load_dataset
from tractable.errors import ConfigError, TrainingError
from tractable.training import TrainConfig, Trainer, make_model
from tractable.training import trainer as trainer_module
from tractable.training.batches import BatchStream
from tractable.training.checkpoint import load_state
from tractable.training.ema import EMA
from tractable.training.optim import build_optimizer, skips_on_device, step_unless_skipped
from tractable.training.trainer import TrainingInterrupted, step_runs_on_device

TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.5}
TINY_GLOW = {"K": 1, "L": 1, "width": 8}
TIMING = ("elapsed_s", "img_per_s")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-mini", "train", limit=64)


def config(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_steps=7, log_every=3, checkpoint_every=1000,
                samples_per_eval=0, progress=False, quiet=True, seed=3, device="cpu")
    return TrainConfig(**{**base, **kw})


def poison(trainer: Trainer, steps: set[int], what: str = "grad") -> None:
    """Make the steps with these (0-based) indices non-finite: a NaN gradient entry (the
    loss stays finite) or a NaN loss."""
    real = trainer._accumulate_gradients

    def accumulate(x, y):
        loss, bpd = real(x, y)
        if trainer.step in steps:
            if what == "loss":
                loss = loss * math.nan
            else:
                p = next(p for p in trainer.model.parameters() if p.grad is not None)
                p.grad[(0,) * p.grad.dim()] = math.nan
        return loss, bpd

    trainer._accumulate_gradients = accumulate  # type: ignore[method-assign]


def state_of(trainer: Trainer) -> dict:
    """Everything a step may change: weights, EMA weights, optimizer state."""
    return {"model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "ema": {k: v.detach().clone() for k, v in trainer.ema.state_dict().items()},
            "optimizer": copy.deepcopy(trainer.optimizer.state_dict()["state"])}


def assert_same_state(a: dict, b: dict) -> None:
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["optimizer"].keys() == b["optimizer"].keys()
    for i, st in a["optimizer"].items():
        assert st.keys() == b["optimizer"][i].keys()
        for name, v in st.items():
            assert torch.equal(v, b["optimizer"][i][name]), (i, name)


def rows(trainer_or_history) -> list[dict]:
    history = getattr(getattr(trainer_or_history, "log", None), "rows", trainer_or_history)
    def plain(v):  # NaN != NaN: compare it as a word
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return [{k: plain(v) for k, v in r.items() if k not in TIMING} for r in history]


def trained(train, sync_free: bool | None, family: str = "pixelcnn++", bad: set[int] = frozenset(),
            what: str = "grad", snapshots: dict | None = None, **kw) -> Trainer:
    over = TINY if family == "pixelcnn++" else TINY_GLOW
    trainer = Trainer(make_model(family, train, 0, overrides=over), train, None, config(**kw))
    if sync_free is not None:  # None: as the trainer decided
        trainer.sync_free = sync_free
    poison(trainer, set(bad), what)
    if snapshots is not None:
        snapshots[0] = state_of(trainer)
        trainer.callbacks.append(lambda t: snapshots.__setitem__(t.step, state_of(t)))
    return trainer


# ---- the parts -------------------------------------------------------------------------
def test_only_fused_adam_on_cuda_runs_the_step_on_the_device():
    params = [torch.nn.Parameter(torch.randn(3, 2))]
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for name, fused, on_device in [("adam", True, True), ("adam", False, False),
                                   ("adamax", True, False), ("openai-adamax", True, False)]:
        opt = build_optimizer(params, TrainingDefaults(optimizer=name), fused=fused)
        assert skips_on_device(opt) is on_device, name
        assert step_runs_on_device(cuda, opt) is on_device, name
        assert step_runs_on_device(cpu, opt) is False
        if not on_device:
            with pytest.raises(TypeError, match="cannot skip"):
                step_unless_skipped(opt, torch.tensor(True))


def test_a_skipped_fused_adam_step_changes_nothing_and_a_taken_one_is_a_plain_step():
    torch.manual_seed(0)
    start = [torch.randn(4, 3), torch.randn(5)]
    runs = []
    for device_side in (False, True):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = build_optimizer(params, TrainingDefaults(optimizer="adam", lr=1e-2,
                                                       weight_decay=0.1), fused=True)
        g = torch.Generator().manual_seed(1)
        for i in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            if device_side:
                step_unless_skipped(opt, torch.tensor(True))
            else:
                opt.step()
            if i == 1:  # a NaN step: refused on the device, never called on the host
                before = ([p.detach().clone() for p in params],
                          copy.deepcopy(opt.state_dict()["state"]))
                for p in params:
                    p.grad = torch.full_like(p, math.nan)
                if device_side:
                    step_unless_skipped(opt, torch.tensor(False))
                    assert all(torch.equal(a, b) for a, b in zip(before[0], params, strict=True))
                    for k, st in before[1].items():
                        for name, v in st.items():
                            assert torch.equal(v, opt.state_dict()["state"][k][name]), name
        assert getattr(opt, "found_inf", None) is None
        runs.append(([p.detach() for p in params], opt.state_dict()["state"]))
    (pa, sa), (pb, sb) = runs
    assert all(torch.equal(a, b) for a, b in zip(pa, pb, strict=True))
    assert float(sa[0]["step"]) == float(sb[0]["step"]) == 4
    assert all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])


def test_masked_ema_update_equals_the_plain_one_or_keeps_the_average(digits):
    model = make_model("pixelcnn++", digits, 0, overrides=TINY)
    plain, masked = EMA(model, 0.9995), EMA(model, 0.9995)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    for step in (0, 7, 5000):  # warm-up decay 0.1 (lerp weight >= 1/2), 0.47, 0.9995
        plain.update(model, step)
        masked.update(model, step, torch.tensor(True))
        assert all(torch.equal(a, b) for a, b in
                   zip(plain.state_dict().values(), masked.state_dict().values(), strict=True))
    before = copy.deepcopy(masked.state_dict())
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)  # even non-finite weights are kept out
    masked.update(model, 9, torch.tensor(False))
    assert all(torch.equal(before[k], v) for k, v in masked.state_dict().items())


# ---- whole runs: sync-free == synchronous ------------------------------------------------
@pytest.mark.parametrize("clip", [None, 0.05])
def test_sync_free_run_is_bit_identical_to_the_synchronous_one(digits, clip):
    ends = []
    for sync_free in (False, True):
        trainer = trained(digits, sync_free, grad_clip=clip)
        trainer.fit()
        assert trainer.sync_free is sync_free
        ends.append((state_of(trainer), rows(trainer)))
    assert_same_state(ends[0][0], ends[1][0])
    assert ends[0][1] == ends[1][1]
    assert [r["step"] for r in ends[0][1] if r["kind"] == "train"] == [3, 6, 7]


@pytest.mark.parametrize("what", ["grad", "loss"])
def test_a_non_finite_step_changes_nothing_in_either_path(digits, what):
    ends = []
    for sync_free in (False, True):
        snaps: dict = {}
        trainer = trained(digits, sync_free, bad={3}, what=what, snapshots=snaps, grad_clip=1.0)
        trainer.fit()
        # step index 3 (the 4th batch) was skipped: all state after it is as before it,
        # Adam's step counts included; the steps around it did change the weights
        assert_same_state(snaps[3], snaps[4])
        assert all(float(st["step"]) == 3 for st in snaps[4]["optimizer"].values())
        assert not torch.equal(snaps[2]["model"]["u_init.v"], snaps[3]["model"]["u_init.v"])
        assert not torch.equal(snaps[4]["model"]["u_init.v"], snaps[5]["model"]["u_init.v"])
        (skip,) = trainer.log.of_kind("skip")
        assert (skip["step"], skip["skipped"]) == (4, 1)
        assert math.isnan(skip["loss" if what == "loss" else "grad_norm"])
        assert trainer.consecutive_bad == 0
        ends.append((snaps, rows(trainer)))
    for step in ends[0][0]:
        assert_same_state(ends[0][0][step], ends[1][0][step])
    assert ends[0][1] == ends[1][1]


def test_max_bad_steps_in_a_row_stop_both_paths_at_the_same_step(digits, tmp_path):
    outcomes = []
    for sync_free in (False, True):
        # log and checkpoint rarely: the sync-free run reads only because the bad steps
        # could reach max_bad_steps
        trainer = trained(digits, sync_free, bad={1, 4, 5, 6}, max_steps=20, log_every=50,
                          checkpoint_every=3, max_bad_steps=3, out=str(tmp_path / str(sync_free)))
        with pytest.raises(TrainingError) as err:
            trainer.fit()
        message = str(err.value).replace(str(tmp_path / str(sync_free)), "RUN")
        outcomes.append((message, trainer.step, state_of(trainer), rows(trainer)))
    assert "3 consecutive steps had a non-finite loss or gradient (last at step 7)" in \
        outcomes[0][0]
    # no checkpoint at step 6, inside the run of bad steps: step 3's (confirmed by step 4)
    assert "RUN/state.pt (step 3)" in outcomes[0][0]
    assert outcomes[0][0] == outcomes[1][0]
    assert outcomes[0][1] == outcomes[1][1] == 7  # no step ran after the last bad one
    assert_same_state(outcomes[0][2], outcomes[1][2])
    assert outcomes[0][3] == outcomes[1][3]
    assert [(r["step"], r["skipped"]) for r in outcomes[0][3] if r["kind"] == "skip"] == [
        (2, 1), (5, 1), (6, 2), (7, 3)]


def test_ctrl_c_stops_both_paths_after_the_same_step(digits, tmp_path):
    steps = []
    for sync_free in (False, True):
        trainer = trained(digits, sync_free, max_steps=20, log_every=50,
                          out=str(tmp_path / str(sync_free)))
        # what the SIGINT handler does, between steps 3 and 4
        trainer.callbacks.append(lambda t: setattr(t.interrupt, "requested", t.step >= 3))
        with pytest.raises(TrainingInterrupted):
            trainer.fit()
        steps.append((trainer.step, load_state(tmp_path / str(sync_free) / "state.pt")["step"]))
    assert steps[0] == steps[1] == (4, 4)


def test_resume_equals_uninterrupted_with_the_sync_free_step(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "step_runs_on_device", lambda d, opt: skips_on_device(opt))
    kw = dict(log_every=2, checkpoint_every=4, grad_clip=1.0)

    def run(out, max_steps, resume=False):
        model = make_model("pixelcnn++", digits, 0, overrides=TINY)
        trainer = Trainer(model, digits, None, config(out=str(out), max_steps=max_steps, **kw),
                          resume=resume)
        assert trainer.sync_free
        poison(trainer, {2, 5})
        trainer.fit()

    run(tmp_path / "whole", 8)
    run(tmp_path / "parts", 4)
    run(tmp_path / "parts", 8, resume=True)
    a, b = load_state(tmp_path / "whole" / "state.pt"), load_state(tmp_path / "parts" / "state.pt")
    assert a["step"] == b["step"] == 8
    assert_same_state({**a, "optimizer": a["optimizer"]["state"]},
                      {**b, "optimizer": b["optimizer"]["state"]})
    kinds = ("train", "skip")
    history = [rows([r for r in s["history"] if r["kind"] in kinds]) for s in (a, b)]
    assert history[0] == history[1]
    assert [r["step"] for r in history[0] if r["kind"] == "skip"] == [3, 6]


# ---- Glow: Adamax keeps the synchronous step -----------------------------------------------
def test_adamax_runs_keep_the_synchronous_step(digits, monkeypatch):
    monkeypatch.setattr(trainer_module, "step_runs_on_device", lambda d, opt: skips_on_device(opt))
    snaps: dict = {}
    trainer = trained(digits, None, family="glow", bad={2}, snapshots=snaps, max_steps=4)
    assert type(trainer.optimizer).__name__ == "Adamax" and not trainer.sync_free
    trainer.fit()
    assert_same_state(snaps[2], snaps[3])
    assert any(not torch.equal(v, snaps[4]["model"][k]) for k, v in snaps[3]["model"].items())
    assert [r["step"] for r in trainer.log.of_kind("skip")] == [3]
    forced = trained(digits, True, family="glow", max_steps=1)
    with pytest.raises(ConfigError, match="Adamax cannot skip"):
        forced.fit()


# ---- no host read inside the sync-free step -------------------------------------------------
def test_the_sync_free_step_reads_nothing_back(digits):
    """Every way Python code reads a tensor's value raises inside `_train_step`; on CUDA
    each would wait for the device. The synchronous step trips it (the check can fail)."""
    reads = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")
    for sync_free in (True, False):
        trainer = trained(digits, sync_free, bad={2}, grad_clip=0.5, max_steps=4, log_every=2)
        real_step = trainer._train_step
        seen: list[str] = []

        def guarded_step(real_step=real_step, seen=seen):
            own = {name: torch.Tensor.__dict__.get(name) for name in reads}

            def refuse(name):
                def read(self, *a, **kw):
                    seen.append(name)
                    raise AssertionError(f"Tensor.{name} inside the training step")
                return read

            for name in reads:
                setattr(torch.Tensor, name, refuse(name))
            try:
                real_step()
            finally:
                for name, fn in own.items():
                    if fn is None:
                        delattr(torch.Tensor, name)  # inherited from the C base again
                    else:
                        setattr(torch.Tensor, name, fn)

        trainer._train_step = guarded_step  # type: ignore[method-assign]
        if sync_free:
            trainer.fit()
            assert seen == [] and trainer.step == 4
            assert [r["step"] for r in trainer.log.of_kind("skip")] == [3]
        else:
            with pytest.raises(AssertionError, match="inside the training step"):
                trainer.fit()
            assert seen


def test_images_moved_to_the_device_are_where_batches_are_gathered(digits):
    """With the set on the device a step copies no images, only the batch's indices (the
    "meta" device stands in for CUDA: a batch gathered from the CPU copy would be on the CPU)."""
    stream = BatchStream(digits, 8, 0, 0, 1, None)
    x_cpu, y_cpu = stream.batch(3)
    stream.move_images_to(torch.device("meta"))
    x, y = stream.batch(3)
    assert stream.images.device.type == x.device.type == "meta"
    assert x.shape == x_cpu.shape and torch.equal(y, y_cpu)
