"""bench/gpu_bench.py (what bench/gpu.sh runs on a GPU) runs end to end on the CPU on tiny
configurations and prints every row of its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_bench_runs_on_cpu_with_tiny_configs():
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_bench.py"), "--device", "cpu", "--tiny",
         "--no-compile", "--no-tests", "--steps", "1", "--warmup", "1", "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if not line.startswith(("#", "what"))]
    assert not [r for r in rows if "failed" in r or "skipped" in r], proc.stdout
    kinds = ["PixelCNN++ train", "PixelCNN++ cached sampling", "Glow train", "Glow sample"]
    assert all(any(r.startswith(k) for r in rows) for k in kinds), proc.stdout
    assert sum(r.startswith("PixelCNN++ train") for r in rows) == 4  # 2 batches x fp32/bf16
    assert all("MFU" in r for r in rows if r.startswith("PixelCNN++ train"))


def test_gpu_script_runs_the_bench_under_a_time_limit():
    script = (REPO / "bench" / "gpu.sh").read_text()
    assert "gpu_bench.py" in script and "timeout" in script
    assert os.access(REPO / "bench" / "gpu.sh", os.X_OK)
