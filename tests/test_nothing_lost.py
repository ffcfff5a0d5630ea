"""Nothing already written is lost: run folders, sample grids, checkpoints under NaN weights
and a full disk, temporary files of killed writes; file modes follow the user's umask."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from cli_errors import fails
from tractable.cli import main
from tractable.errors import ConfigError, TrainingError
from tractable.training import TrainConfig, resume, train
from tractable.training.checkpoint import load_state, read_json

TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.0}
TINY_FLAGS = ["--model", "pixelcnn++", "--nr-resnet", "1", "--nr-filters", "8",
              "--nr-logistic-mix", "2", "--dropout", "0", "--batch-size", "8",
              "--limit-train", "32", "--limit-test", "16", "--samples-per-eval", "0",
              "--no-progress", "--quiet"]


def cfg(out, **kw) -> TrainConfig:
    base = dict(out=str(out), max_steps=2, batch_size=8, limit_train=32, limit_test=16,
                samples_per_eval=0, progress=False, quiet=True)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train("pixelcnn++", cfg(out), overrides=TINY)
    return out



def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- run folders ---------------------------------------------------------------------
def test_a_new_run_refuses_a_folder_with_user_files_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    fails(["train", "--out", str(out), *TINY_FLAGS, "--max-steps", "1"], capsys,
          "is not empty (notes.txt)")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main(["train", "--out", str(out), *TINY_FLAGS, "--max-steps", "1",
                 "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "my notes" and (out / "state.pt").is_file()


def test_a_run_without_checkpoint_is_not_overwritten(copy):
    (copy / "state.pt").unlink()  # e.g. killed before its first checkpoint
    weights = (copy / "model" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="is not empty"):
        train("pixelcnn++", cfg(copy, max_steps=1), overrides=TINY)
    assert (copy / "model" / "model.safetensors").read_bytes() == weights
    assert read_json(copy / "run.json")["train"]["max_steps"] == 2


def test_overwrite_replaces_the_old_run_and_keeps_foreign_files(copy):
    (copy / "samples").mkdir(exist_ok=True)
    (copy / "samples" / "step_00000001.png").write_bytes(b"old grid")
    (copy / "samples" / "favourite.png").write_bytes(b"mine")
    (copy / "model" / "README.md").write_text("my model card")
    with pytest.raises(ConfigError, match="--overwrite to replace it"):
        train("pixelcnn++", cfg(copy, max_steps=1), overrides=TINY)
    train("pixelcnn++", cfg(copy, max_steps=1), overrides=TINY, overwrite=True)
    assert load_state(copy / "state.pt")["step"] == 1
    assert not (copy / "samples" / "step_00000001.png").exists()
    assert (copy / "samples" / "favourite.png").read_bytes() == b"mine"
    assert (copy / "model" / "README.md").read_text() == "my model card"


def test_temp_files_of_a_killed_write_are_removed_on_the_next_start(copy):
    stale = [copy / ".state.pt.k1ll3d9x.tmp", copy / "model" / ".raw.safetensors.abcd_123.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    mine = copy / ".notes.tmp"
    mine.write_text("not tractable's")
    resume(copy, changes={"max_steps": 3})
    assert not any(p.exists() for p in stale)
    assert mine.read_text() == "not tractable's"
    assert not [p for p in copy.rglob("*.tmp") if p != mine]


def test_weight_files_get_the_mode_of_the_users_umask(run):
    want = 0o666 & ~current_umask()
    for name in ["model/model.safetensors", "model/raw.safetensors", "model/config.json",
                 "state.pt", "run.json"]:
        assert stat.S_IMODE((run / name).stat().st_mode) == want, name


# ---- sample grids --------------------------------------------------------------------
def test_sample_without_out_never_replaces_an_earlier_grid(run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(run), "-n", "2"]) == 0
    first = (tmp_path / "samples.png").read_bytes()
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "2", "--seed", "1"]) == 0
    err = capsys.readouterr().err
    assert "samples.png exists: writing samples-1.png" in err
    assert (tmp_path / "samples.png").read_bytes() == first
    assert (tmp_path / "samples-1.png").is_file()


# ---- NaN guard -----------------------------------------------------------------------
def test_nan_guard_never_checkpoints_non_finite_weights(tmp_path):
    def poison(trainer):
        if trainer.step == 2:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    out = tmp_path / "nan"
    # step 2's checkpoint is followed by a NaN step at once, so it never proved good: the
    # run goes back to step 1's, which step 2 confirmed (`training/last_good.py`)
    with pytest.raises(TrainingError, match=r"last good checkpoint is .*state.pt \(step 1\)"):
        train("pixelcnn++", cfg(out, max_steps=10, checkpoint_every=1, max_bad_steps=3),
              overrides=TINY, callbacks=(poison,))
    state = load_state(out / "state.pt")
    assert state["step"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    for name in ["model.safetensors", "raw.safetensors"]:
        assert all(torch.isfinite(v).all() for v in load_file(out / "model" / name).values()
                   if v.is_floating_point())


def test_a_resumed_run_may_change_lr_warmup_and_clipping_and_logs_it(copy, capsys):
    resume(copy, changes={"max_steps": 4, "lr": 1e-4, "warmup_steps": 3, "grad_clip": 0.5,
                          "log_every": 1, "quiet": False})
    assert "lr None -> 0.0001" in capsys.readouterr().err
    run_json = read_json(copy / "run.json")["train"]
    assert (run_json["lr"], run_json["warmup_steps"], run_json["grad_clip"]) == (1e-4, 3, 0.5)
    rows = load_state(copy / "state.pt")["history"]
    (row,) = [r for r in rows if r["kind"] == "resume"]
    assert row["step"] == 2 and row["lr"] == 1e-4 and row["lr_before"] is None
    assert row["grad_clip"] == 0.5 and row["warmup_steps"] == 3
    lr3 = [r["lr"] for r in rows if r["kind"] == "train" and r["step"] == 3][0]
    assert lr3 == pytest.approx(1e-4 * 3 / 3, rel=1e-3)  # warm-up reached at step index 2


# ---- disk full -----------------------------------------------------------------------
def test_disk_full_during_a_checkpoint_keeps_model_and_state_at_the_same_step(
        tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def save(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get("step") == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "full"
    err = fails(["train", "--out", str(out), *TINY_FLAGS, "--max-steps", "3",
                 "--checkpoint-every", "1"], capsys, "the disk is full")
    assert "checkpoint of step 2" in err and "last complete checkpoint is step 1" in err
    state = load_state(out / "state.pt")
    assert state["step"] == 1
    ema = load_file(out / "model" / "model.safetensors")
    raw = load_file(out / "model" / "raw.safetensors")
    assert all(torch.equal(ema[k], v) for k, v in state["ema"].items())
    assert all(torch.equal(raw[k], v) for k, v in state["model"].items())
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["train", "--out", str(out), "--resume", "--quiet", "--no-progress"]) == 0
    assert load_state(out / "state.pt")["step"] == 3



def test_resume_brings_a_model_folder_ahead_of_state_pt_back_to_its_step(copy):
    """A kill between the checkpoint's last two renames leaves model/ newer than state.pt;
    the next start rewrites model/ from state.pt, so the two agree again."""
    weights = copy / "model" / "model.safetensors"
    saved = load_state(copy / "state.pt")
    ahead = {k: v + 1.0 for k, v in load_file(weights).items()}
    save_file(ahead, weights)
    resume(copy, {"max_steps": 2})  # nothing left to train: only the start-up runs
    now = load_file(weights)
    assert now.keys() == saved["ema"].keys()
    assert all(torch.equal(now[k], saved["ema"][k]) for k in now)
