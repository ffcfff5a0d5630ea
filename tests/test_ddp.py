"""Data parallelism: 2 CPU processes (torchrun, gloo) train like 1 process on the same batch.

Each rank takes its half of every global batch (see `tractable.training.batches`), DDP
averages the gradients, rank 0's data-dependent init is broadcast, and evaluation sums
log-likelihoods over ranks. With dropout off, the weights after N steps must equal those of
a single process with the same global batch, up to float summation order (1e-5).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tractable.cli import main
from tractable.training.checkpoint import load_state, read_json

FLAGS = ["--model", "pixelcnn++", "--nr-resnet", "1", "--nr-filters", "8",
         "--nr-logistic-mix", "2", "--dropout", "0", "--data", "mnist-mini",
         "--limit-train", "32", "--limit-test", "12", "--batch-size", "8", "--max-steps", "5",
         "--samples-per-eval", "0", "--no-progress", "--quiet", "--device", "cpu"]


def test_two_gloo_processes_match_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "tractable.cli", "train", *FLAGS, "--out", str(ddp)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 5 steps") == 1  # only rank 0 reports (and writes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *FLAGS, "--out", str(single)]) == 0
    finally:
        torch.set_num_threads(threads)

    a, b = load_state(ddp / "state.pt"), load_state(single / "state.pt")
    assert a["step"] == b["step"] == 5
    for part in ("model", "ema"):
        for k, v in a[part].items():
            torch.testing.assert_close(v, b[part][k], rtol=0, atol=1e-5, msg=f"{part} {k}")
    # the losses of every step (averaged over ranks) agree too, and training did move
    la = [r["loss"] for r in a["history"] if r["kind"] == "train"]
    lb = [r["loss"] for r in b["history"] if r["kind"] == "train"]
    assert la == pytest.approx(lb, abs=1e-5) and la[-1] < la[0] - 0.3
    # evaluation at the epoch end (step 4) and at the end: shard sums equal one process
    ea = [r["test_bpd"] for r in a["history"] if r["kind"] == "eval"]
    eb = [r["test_bpd"] for r in b["history"] if r["kind"] == "eval"]
    assert len(ea) == 2 and ea == pytest.approx(eb, abs=1e-5)
    assert read_json(ddp / "run.json")["world_size"] == 2
