"""Shipped models on the command line know their dataset and their measured bits/dim, as
their `pretrained.json` records them; errors about data name command-line flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_errors import fails
from tractable import pretrained
from tractable.cli import main
from tractable.run_folder import open_folder


@pytest.mark.parametrize("name", pretrained.available())
def test_open_folder_reads_the_shipped_record(name: str) -> None:
    record = pretrained.info(name)
    folder = open_folder(f"pretrained:{name}")
    assert folder.data == record["data"]
    assert folder.summary["best_test_bpd"] == record["test_bits_per_dim"]
    assert folder.summary["step"] == record["steps"]


def test_eval_of_a_shipped_model_needs_no_data_flag(shared_data: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["eval", "pretrained:pixelcnn++-fashion-mnist", "--root",
               str(shared_data / "fashion-mnist"), "--limit", "4", "--json", "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"] == "fashion-mnist" and out["num_images"] == 4


def test_missing_files_name_the_root_flag_not_python(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(["eval", "pretrained:pixelcnn++-fashion-mnist", "--root", str(tmp_path),
                 "--limit", "4"], capsys, "--root DIR")
    assert "root=" not in err and "--download" in err


def test_info_shows_the_data_and_bits_per_dim(capsys: pytest.CaptureFixture[str]) -> None:
    record = pretrained.info("pixelcnn++-fashion-mnist")
    assert main(["info", "pretrained:pixelcnn++-fashion-mnist", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["data"] == "fashion-mnist"
    assert info["best_test_bpd"] == record["test_bits_per_dim"]
    assert info["test_images"] == record["test_images"]
    assert main(["info", "pretrained:pixelcnn++-fashion-mnist"]) == 0
    text = capsys.readouterr().out
    assert "data: fashion-mnist" in text and f"{record['test_bits_per_dim']:.4f}" in text


def test_glow_interpolate_of_the_shipped_glow_picks_test_images_by_index(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new, old = tmp_path / "new.png", tmp_path / "old.png"
    assert main(["glow", "interpolate", "pretrained:glow-mnist", "--index-a", "0",
                 "--index-b", "7", "--steps", "3", "--out", str(new)]) == 0
    said = capsys.readouterr().out
    assert "#0 (class 4)" in said and "#7 (class 4)" in said  # positions, not digits
    # the earlier flags keep working and mean the same
    assert main(["glow", "interpolate", "pretrained:glow-mnist", "--a", "0", "--b", "7",
                 "--steps", "3", "--out", str(old)]) == 0
    assert np.array_equal(np.asarray(Image.open(new)), np.asarray(Image.open(old)))


def test_glow_interpolate_without_an_end_says_which_flags(
        capsys: pytest.CaptureFixture[str]) -> None:
    fails(["glow", "interpolate", "pretrained:glow-mnist", "--index-b", "7"], capsys,
          "--index-a N")
