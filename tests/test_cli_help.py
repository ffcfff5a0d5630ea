"""The command line explains itself: every sub-command's help shows each flag's default and
ends with examples, a flag name means one thing on every command, `--version` works, and a
run says what it is about to do (start-up line, size warning, ETA)."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from tractable.cli import build_parser, main
from tractable.cli.common import DATA_SOURCE_FLAGS, HelpFormatter
from tractable.config import __version__
from tractable.data import load_dataset
from tractable.training import TrainConfig, startup, train
from tractable.training.factory import build_model, model_config_for


def leaf_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every runnable sub-command ("train", "data show", "glow interpolate", ...)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and path:
            found[" ".join(path)] = parser
        for action in subs:
            for name, child in action.choices.items():
                walk(child, (*path, name))

    walk(build_parser(), ())
    return found


LEAVES = leaf_parsers()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The flags a user sees (not positionals, -h, or hidden deprecated spellings)."""
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


def test_the_walk_finds_every_command():
    assert {"train", "eval", "sample", "info", "score", "ood", "glow interpolate",
            "glow manipulate", "data list", "data download", "data show"} <= set(LEAVES)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_flag_shows_its_default_and_every_command_ends_with_examples(name):
    parser = LEAVES[name]
    assert isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class,
                                                                   HelpFormatter)
    for action in options(parser):
        text = " ".join(parser._get_formatter()._format_action(action).split())
        shown = "default" in text.lower() or action.required and "(required)" in text
        assert shown, f"{name} {action.option_strings[0]}: {text!r}"
        assert "default: None" not in text, f"{name} {action.option_strings[0]}"
    assert parser.epilog and parser.epilog.startswith("examples:"), name
    example_lines = parser.epilog.splitlines()[1:]
    assert example_lines and all(line.strip().startswith("tractable ") for line in example_lines)
    help_text = parser.format_help()
    assert "examples:" in help_text


def test_help_prints_real_defaults_and_units(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert re.search(r"--batch-size IMAGES\s+images per forward pass \(default: 64\)", out)
    assert "--split {train,test}" in out and "(default: test)" in out
    assert "examples:\n  tractable eval runs/m" in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--max-steps STEPS optimizer steps; wins over --epochs (default: unset)" in out
    assert "--log-every STEPS steps between log lines (default: 50)" in out
    assert "--compile, --no-compile torch.compile the loss, --no-compile: never" in out
    assert "--nr-filters" in out and "(default: the family's, or the --preset's)" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"tractable {__version__} (torch ")


def test_a_flag_name_means_one_thing_on_every_command():
    seen: dict[str, tuple[str, argparse.Action]] = {}
    for name, parser in LEAVES.items():
        for action in options(parser):
            for flag in action.option_strings:
                if flag not in seen:
                    seen[flag] = (name, action)
                    continue
                first, other = seen[flag]
                # the same flag stores the same setting, of the same type and arity
                assert (action.dest, action.type, action.nargs) == (
                    other.dest, other.type, other.nargs), f"{flag}: {first} vs {name}"
                a, b = set(action.choices or ()), set(other.choices or ())
                assert a <= b or b <= a, flag  # e.g. --split: train/test (+ both to download)
    # --out is where output goes: never a dataset name
    outs = {name: a for name, p in LEAVES.items() for a in options(p) if "--out" in
            a.option_strings}
    assert {"train", "sample", "score", "ood", "data show", "glow manipulate"} <= set(outs)
    for name, action in outs.items():
        assert action.dest == "out" and action.metavar in ("DIR", "PNG", "CSV", "FILE"), name
    # --limit is the same fixed random subset everywhere
    limits = {name: a.help for name, p in LEAVES.items() for a in options(p)
              if "--limit" in a.option_strings}
    assert {"eval", "score", "ood"} <= set(limits)
    assert all("fixed random subset" in h and "--seed" in h for h in limits.values())
    for name in limits:
        assert "--seed" in LEAVES[name]._option_string_actions, name


def test_every_command_that_reads_data_takes_the_data_flags():
    readers = [name for name, p in LEAVES.items()
               if {"--data", "--in"} & set(p._option_string_actions)
               or name == "data show"]
    assert {"train", "eval", "score", "ood", "glow interpolate", "glow manipulate",
            "data show"} <= set(readers)
    for name in readers:
        flags = set(LEAVES[name]._option_string_actions)
        assert {"--size", "--channels"} <= flags, name
        if name != "ood":  # ood: --in-root / --ood-root, one pair per set
            assert set(DATA_SOURCE_FLAGS) <= flags, name
        else:
            assert {"--in-root", "--ood-root", "--in-download", "--ood-download"} <= flags


def test_size_and_channels_reshape_any_dataset():
    ds = load_dataset("mnist-mini", "test", size=16, channels=3)
    assert ds.shape == (3, 16, 16) and len(ds) == 1000
    grey = ds.images[:, 0]
    assert torch.equal(grey, ds.images[:, 1]) and torch.equal(grey, ds.images[:, 2])
    assert load_dataset("mnist-mini", "test", channels=1).images.equal(
        load_dataset("mnist-mini", "test").images)  # already the asked shape: untouched


# ---- what a run says first ---------------------------------------------------------------
def test_the_start_up_line_names_everything_before_training(tmp_path, capsys):
    config = TrainConfig(data="mnist-mini", limit_train=16, limit_test=8, batch_size=8,
                         max_steps=1, samples_per_eval=0, progress=False, quiet=True,
                         out=str(tmp_path / "run"))
    train("pixelcnn++", config, preset="small", overrides={"nr_filters": 8}, conditional=True)
    out = capsys.readouterr().out
    line = out.splitlines()[0]
    params = sum(p.numel() for p in __import__("tractable").load(tmp_path / "run" /
                                                                 "model").parameters())
    assert line.startswith("train: pixelcnn++ (preset small, 10 classes), ")
    for field in (f"{params:,} parameters", "cpu fp32", "mnist-mini 1x28x28",
                  "16 train / 8 test images", "batch 8", "1 step (0.5 epochs)",
                  str(tmp_path / "run")):
        assert field in line, field


def _meta_model(family, preset, shape=(1, 28, 28)):
    cfg = model_config_for(family, shape, preset=preset)
    with torch.device("meta"):
        return build_model(family, cfg)


def test_a_far_too_large_model_gets_a_warning_naming_the_preset():
    mnist = load_dataset("mnist-mini", "train")
    paper = _meta_model("pixelcnn++", None)  # no --preset: the paper model's sizes
    params = startup.parameter_count(paper)
    assert params > 50_000_000
    small = startup.parameter_count(_meta_model("pixelcnn++", "small"))
    text = startup.size_warning(paper, params, torch.device("cpu"), mnist.shape, len(mnist))
    assert text is not None and "far too large for a CPU and for 9,000 training images" in text
    assert text.endswith(f"--preset small has {small:,} parameters")
    on_gpu = startup.size_warning(paper, params, torch.device("cuda"), mnist.shape, len(mnist))
    assert on_gpu is not None and "a CPU" not in on_gpu and "--preset small" in on_gpu
    tiny = _meta_model("pixelcnn++", "small")
    assert startup.size_warning(tiny, small, torch.device("cpu"), mnist.shape, 9000) is None
    assert startup.size_warning(tiny, small, torch.device("cpu"), mnist.shape, 16) is None


def test_duration_text():
    assert startup.duration_text(3 * 3600 + 5 * 60) == "3 h 05 min"
    assert startup.duration_text(384) == "6 min 24 s" and startup.duration_text(41) == "41 s"


def test_presets_fit_every_family():
    """Every family's smallest preset is found for CIFAR-shaped data (the suggestion)."""
    for family in ("pixelcnn++", "gated-pixelcnn", "glow"):
        model = _meta_model(family, "small", (3, 32, 32))
        best = startup.smallest_preset(model, (3, 32, 32))
        assert best is not None and best[0] == "small", family
        assert best[1] == startup.parameter_count(model)


def test_info_counts_test_images_of_runs_from_before_the_count_was_recorded():
    from tractable.cli.info import test_images_of

    assert test_images_of({"test_images": 1000}, {"train": {"limit_test": 5}}) == 1000
    assert test_images_of({}, {"data": "mnist", "train": {"limit_test": 50}}) == 50
    assert test_images_of({}, {"data": "mnist", "train": {}}) == "every mnist test image"
    assert test_images_of({}, {}) is None  # a bare model folder: no run, no count
