"""Bad command-line input: one clear line and exit status 2, before any work is done."""

from __future__ import annotations

import pytest

from tractable.cli import main
from tractable.training import TrainConfig, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train("pixelcnn++", TrainConfig(out=str(out), max_steps=1, batch_size=8, limit_train=16,
                                    limit_test=8, samples_per_eval=0, progress=False,
                                    quiet=True),
          overrides={"nr_resnet": 1, "nr_filters": 4, "nr_logistic_mix": 1, "dropout": 0.0})
    return out


def one_line_error(argv, capsys, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tractable: error: ") and err.count("\n") == 1, err
    assert match in err, err


@pytest.mark.parametrize("args, match", [
    (["eval", "{run}", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["eval", "{run}", "--limit", "-5"], "--limit must be >= 1, got -5"),
    (["sample", "{run}", "-n", "10000000"], "-n must be at most 10,000"),
    (["sample", "{run}", "-n", "0"], "-n must be between 1"),
    (["sample", "{run}", "--out", "{tmp}"], "is a folder; name a file"),
    (["sample", "{run}", "--temperature", "inf"], "temperature must be a finite number > 0, "
     "got inf"),  # the sampler's one rule (a flow's prior sampler also takes 0)
    (["sample", "{run}", "--temperature", "nan"], "temperature must be a finite number > 0, "
     "got nan"),
    (["sample", "{run}", "--temperature", "0", "--out", "{tmp}/s.png"],
     "temperature must be a finite number > 0, got 0.0"),
    (["sample", "{run}", "--nrow", "0", "--out", "{tmp}/s.png"], "--nrow must be >= 1"),
    (["data", "download", "mnist", "--mirror", "not-a-url", "--root", "{tmp}"],
     "mirror 'not-a-url' is not a URL"),
    (["data", "download", "mnist", "--mirror", "ftp://x/y", "--root", "{tmp}"],
     "is not a URL"),
    (["data", "show", "mnist-mini", "--out", "{tmp}"], "is a folder; name a file"),
    (["glow", "interpolate", "{run}", "--a", "1", "--b", "2", "--out", "{tmp}"],
     "is a folder; name a file"),
    (["train", "--model", "pixelcnn++", "--out", "{tmp}/w", "--weight-decay", "-1"],
     "weight_decay"),
    (["train", "--model", "pixelcnn++", "--out", "{tmp}/w", "--lr", "inf"],
     "finite"),
    (["train", "--model", "pixelcnn++", "--out", "{run}/run.json"], "is a file, not a folder"),
])
def test_bad_flags(run, tmp_path, capsys, args, match):
    argv = [a.format(run=run, tmp=tmp_path) for a in args]
    one_line_error(argv, capsys, match)


def test_mirror_from_the_environment_is_checked_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACTABLE_MIRROR", "localhost:8000")
    one_line_error(["data", "download", "mnist", "--root", str(tmp_path)], capsys,
                   "$TRACTABLE_MIRROR 'localhost:8000' is not a URL")
