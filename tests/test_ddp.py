"""Data parallelism: 2 CPU processes (torchrun, gloo) train like 1 process on the same batch.

Each rank takes its half of every global batch (see `tractable.training.batches`), DDP
averages the gradients, rank 0's data-dependent init is broadcast, and evaluation sums
log-likelihoods over ranks.

The reference is one process with the same global batch of 8, computed as 2 micro-batches
of 4 (`--grad-accum 2`): then every float operation matches the DDP run's (the same conv
shapes, g/2 + g/2 summed in the same order), so the weights agree exactly, well inside the
1e-5 asked for. Against a plain batch-of-8 run the gradients differ by float summation order,
and Adam's first step, lr·g/(|g| + 1e-8), turns that noise on weights whose gradient is
~1e-8 into differences up to ~4e-5, so that comparison is made on the losses instead.
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
         "--samples-per-eval", "0", "--log-every", "1", "--no-progress", "--quiet",
         "--device", "cpu"]


def one_process(out, *extra):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *FLAGS, "--out", str(out), *extra]) == 0
    finally:
        torch.set_num_threads(threads)
    return load_state(out / "state.pt")


def rows(state, kind, key):
    return [r[key] for r in state["history"] if r["kind"] == kind]


def test_two_gloo_processes_match_one_process(tmp_path):
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "tractable.cli", "train", *FLAGS, "--out", str(ddp)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 5 steps") == 1  # only rank 0 reports (and writes)
    assert read_json(ddp / "run.json")["world_size"] == 2
    a = load_state(ddp / "state.pt")
    b = one_process(tmp_path / "accum", "--grad-accum", "2")
    assert a["step"] == b["step"] == 5
    for part in ("model", "ema"):
        for k, v in a[part].items():
            torch.testing.assert_close(v, b[part][k], rtol=0, atol=1e-5, msg=f"{part} {k}")
            assert torch.equal(v, b[part][k]), f"{part} {k}"
    losses = rows(a, "train", "loss")
    assert losses == rows(b, "train", "loss") and losses[-1] < losses[0] - 0.3
    # evaluation at the epoch end (step 4) and at the end: the sum of 2 shards = 1 process,
    # up to rounding (a shard of 6 images is one batch, 12 in one process are 8 + 4, and
    # float32 convolutions round differently at another batch size)
    assert len(rows(a, "eval", "test_bpd")) == 2
    assert rows(a, "eval", "test_bpd") == pytest.approx(rows(b, "eval", "test_bpd"), rel=1e-5)
    plain = one_process(tmp_path / "plain")
    assert rows(plain, "train", "loss") == pytest.approx(losses, abs=1e-4)
