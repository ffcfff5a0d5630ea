"""`make demo` end to end, shortened: trains, evaluates, samples, and re-running continues."""

from __future__ import annotations

import json
import re

import numpy as np
from PIL import Image

from tractable.demo import main


def test_demo_trains_evaluates_samples_and_continues(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--out", str(out), "--steps", "3", "--batch-size", "4", "--eval-every", "3",
            "--per-class", "2", "--limit-test", "100"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    bpd = float(re.search(r"test bits/dim .*: (\d+\.\d+)", printed).group(1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 3
    # The printed number is the model folder's exact test bits/dim, not the training loss.
    assert abs(bpd - summary["last_test_bpd"]) < 1e-3
    assert "(EMA weights, 100 test digits)" in printed
    assert 0.5 < bpd < 8.0
    for name in ["samples.png", "samples.gif", "bpd.png", "model/config.json"]:
        assert (out / name).is_file(), name
    grid = np.asarray(Image.open(out / "samples.png"))
    assert grid.shape[0] > grid.shape[1]  # ten rows (one per class) of two samples

    assert main([*args[:2], "--steps", "5", *args[4:]]) == 0
    assert "continuing the run" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["step"] == 5


def test_bad_demo_settings_fail_in_one_line_with_exit_2(tmp_path, capsys):
    for bad, problem in ((["--steps", "0"], "max_steps must be >= 1"),
                         (["--limit-test", "0"], "limit must be >= 1")):
        assert main(["--out", str(tmp_path / "demo"), *bad]) == 2
        err = capsys.readouterr().err
        assert problem in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_a_stopped_demo_exits_like_a_stopped_command(tmp_path, capsys, monkeypatch):
    """SIGTERM during the demo's training: the trainer's own exit status (128 + 15) and one
    line, not the bad-input status 2."""
    import tractable.demo as demo
    from tractable.training import TrainingInterrupted

    def stopped(*args, **kwargs):
        raise TrainingInterrupted("SIGTERM: interrupted; continue with --resume",
                                  exit_status=143)

    monkeypatch.setattr(demo, "train", stopped)
    assert main(["--out", str(tmp_path / "demo"), "--steps", "3"]) == 143
    err = capsys.readouterr().err
    assert err.strip() == "tractable: SIGTERM: interrupted; continue with --resume"
