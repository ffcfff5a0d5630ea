"""`tractable train`'s flags are generated from `TrainConfig`'s fields: every field has one
(a field added later gets one without editing the command line), and the value given on
the command line is the value the `TrainConfig` holds."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from tractable.cli import build_parser
from tractable.cli.common import TractableParser, add_dataclass_flags
from tractable.cli.train import HAND_WRITTEN_FIELDS, train_config_values
from tractable.config import setting
from tractable.training.config import TrainConfig

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)
# str fields without choices need a value that means something
STRINGS = {"device": "cpu", "augment": "flip,shift", "sampler": "cached"}


def train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]  # type: ignore[no-any-return]


def flag_of(parser: argparse.ArgumentParser, name: str) -> argparse.Action:
    found = [a for a in parser._actions if a.dest == name and a.option_strings]
    assert len(found) == 1, f"{name}: {len(found)} flags"
    return found[0]


def non_default_argv(action: argparse.Action, f: dataclasses.Field[typing.Any]
                     ) -> tuple[list[str], typing.Any]:
    """Command-line words that set field `f` to a value other than its default, and that
    value as the TrainConfig holds it."""
    flag = action.option_strings[0]
    default = f.default
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        value = not (True if default is None else default)
        if isinstance(action, argparse.BooleanOptionalAction) and not value:
            flag = next(s for s in action.option_strings if s.startswith("--no-"))
        return [flag], value
    if action.choices:
        value = [c for c in action.choices if c != default][-1]
        return [flag, str(value)], value
    if action.nargs == 2:
        return [flag, "0.5", "0.25"], (0.5, 0.25)
    if action.type is int:
        value = int(f.metadata.get("minimum", 1)) + 3 + (default or 0)
        return [flag, str(value)], value
    if action.type is float:
        return [flag, "0.375"], 0.375
    value = STRINGS.get(f.name, "x")
    return [flag, value], value


def test_every_field_has_a_train_flag():
    parser = train_parser()
    generated = set(FIELDS) - set(HAND_WRITTEN_FIELDS)
    assert generated and set(HAND_WRITTEN_FIELDS) < set(FIELDS)
    for name in generated:
        action = flag_of(parser, name)
        assert action.default is None, name  # None: "not given", so resume can tell
        assert action.help == FIELDS[name].metadata["help"] or name == "sampler", name
        if FIELDS[name].metadata.get("choices"):
            assert list(action.choices) == list(FIELDS[name].metadata["choices"]), name
    # the hand-written ones: the dataset, the run folder and the recipe (data_options come
    # from the data flags)
    for name in ("data", "out", "recipe"):
        flag_of(parser, name)


def test_no_flag_given_keeps_every_default():
    args = train_parser().parse_args(["--out", "r"])
    assert TrainConfig(**train_config_values(args)) == TrainConfig(out="r")


def test_each_flag_value_reaches_the_train_config():
    parser = train_parser()
    argv, expected = ["--out", "r"], {}
    for name in sorted(set(FIELDS) - set(HAND_WRITTEN_FIELDS)):
        words, value = non_default_argv(flag_of(parser, name), FIELDS[name])
        assert value != FIELDS[name].default, name
        argv += words
        expected[name] = value
    config = TrainConfig(**train_config_values(parser.parse_args(argv)))
    config.validate()
    for name, value in expected.items():
        assert getattr(config, name) == value, (name, getattr(config, name), value)
        assert isinstance(getattr(config, name), type(value)), name


def test_a_new_field_gets_a_flag_without_editing_the_command_line():
    extended = dataclasses.make_dataclass("Extended", [
        ("warmup_images", int | None,
         setting(None, "images of warm-up", minimum=1, group="schedule", metavar="N")),
        ("shuffle", bool, setting(True, "keep the data order", group="schedule")),
    ], bases=(TrainConfig,))
    parser = TractableParser()
    made = add_dataclass_flags(parser, extended, skip=HAND_WRITTEN_FIELDS)
    assert set(made) == {f.name for f in dataclasses.fields(extended)} - set(HAND_WRITTEN_FIELDS)
    assert {"--warmup-images", "--no-shuffle", "--lr", "--no-progress"} <= set(
        parser._option_string_actions)
    assert "schedule" in [g.title for g in parser._action_groups]
    assert "--warmup-images N" in parser.format_help()
    args = parser.parse_args(["--warmup-images", "7", "--no-shuffle"])
    assert (args.warmup_images, args.shuffle, args.lr) == (7, False, None)


def test_a_field_no_flag_can_carry_must_be_written_by_hand():
    with pytest.raises(TypeError, match="data_options"):
        add_dataclass_flags(TractableParser(), TrainConfig, skip=("data", "out", "recipe"))
