"""`--resume` continues exactly: after SIGKILL, and after Ctrl-C (which saves first).

A `tractable train` subprocess (tiny PixelCNN++ with dropout 0.5 on real MNIST digits, one
CPU thread) is stopped mid-training; the run is resumed to T steps and must end with the
same weights, EMA weights, optimizer state and logged losses as an uninterrupted run of T
steps, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tractable.cli import main
from tractable.training.checkpoint import load_state

FLAGS = ["--model", "pixelcnn++", "--nr-resnet", "1", "--nr-filters", "8",
         "--nr-logistic-mix", "2", "--dropout", "0.5", "--data", "mnist-mini",
         "--limit-train", "48", "--limit-test", "8", "--batch-size", "8",
         "--samples-per-eval", "0", "--log-every", "1", "--no-progress", "--quiet", "--seed", "5",
         "--no-compile"]  # the killed runs ask for 100000 steps: compile would be on


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # same reduction order as the 1-thread subprocess
    yield
    torch.set_num_threads(before)


def start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tractable.cli", "train", *FLAGS,
                             "--out", str(out), "--max-steps", "100000", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def logged_steps(out: Path) -> int:
    try:
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return max((r["step"] for r in rows if r["kind"] == "train"), default=0)


def wait_until(proc: subprocess.Popen, ready, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("training made no progress")
        time.sleep(0.05)


def assert_same_run(a: Path, b: Path) -> None:
    sa, sb = load_state(a / "state.pt"), load_state(b / "state.pt")
    assert sa["step"] == sb["step"]
    for part in ("model", "ema"):
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)
    for k, st in sa["optimizer"]["state"].items():
        for name, v in st.items():
            assert torch.equal(v, sb["optimizer"]["state"][k][name]), (k, name)

    def losses(s):
        return [(r["step"], r["loss"]) for r in s["history"] if r["kind"] == "train"]

    assert losses(sa) == losses(sb) and len(losses(sa)) == sa["step"]


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    run, ref = tmp_path / "killed", tmp_path / "ref"
    proc = start(run, "--checkpoint-every", "3")
    # kill between checkpoints, after progress the checkpoint does not have
    wait_until(proc, lambda: (run / "state.pt").exists() and logged_steps(run) % 3 == 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_state(run / "state.pt")["step"]
    assert saved >= 3 and saved % 3 == 0 and logged_steps(run) > saved
    total = saved + 5  # crosses a checkpoint and an epoch end (6 steps per epoch)
    assert main(["train", "--out", str(run), "--resume", "--max-steps", str(total)]) == 0
    assert main(["train", *FLAGS, "--checkpoint-every", "3", "--out", str(ref),
                 "--max-steps", str(total)]) == 0
    assert_same_run(run, ref)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path):
    run, ref = tmp_path / "interrupted", tmp_path / "ref"
    proc = start(run, "--checkpoint-every", "1000")
    wait_until(proc, lambda: logged_steps(run) >= 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved to" in err and "--resume" in err
    saved = load_state(run / "state.pt")["step"]
    assert saved >= 2
    total = saved + 3
    assert main(["train", "--out", str(run), "--resume", "--max-steps", str(total)]) == 0
    assert main(["train", *FLAGS, "--checkpoint-every", "1000", "--out", str(ref),
                 "--max-steps", str(total)]) == 0
    assert_same_run(run, ref)
