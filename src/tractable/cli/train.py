"""`tractable train`: a thin wrapper over `tractable.training` (new runs and `--resume`).

Model settings need no code here: every field of every registered family's config
dataclass becomes a flag (`nr_filters` -> `--nr-filters`, bools as `--coord-conv` /
`--no-coord-conv`), and `--set FIELD=VALUE` reaches any field. Values are converted with
the chosen family's field types (`tractable.training.factory.parse_field_value`), and a
flag the chosen family does not have is an error, never silently ignored. A family may give
a field extra flag names and help with `field(metadata={"aliases": ["--nonlocal"],
"help": "..."})`.

Training settings need none either: every `TrainConfig` field but those in
`HAND_WRITTEN_FIELDS` gets its flag from its `setting` metadata (`add_dataclass_flags`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from tractable.cli.common import (
    add_dataclass_flags,
    data_options,
    data_source_args,
    examples,
    show_defaults,
)
from tractable.errors import ConfigError
from tractable.models.registry import known_families, model_class
from tractable.sampling import sampler_help, sampler_names
from tractable.training.config import TrainConfig
from tractable.training.factory import settable_fields

MODEL_FLAG_PREFIX = "mf__"  # argparse dest of auto-generated model-field flags
# TrainConfig fields whose flags are written here; every other field's flag is generated
# from its `setting` metadata (`add_dataclass_flags`).
HAND_WRITTEN_FIELDS = ("data", "data_options", "out", "recipe")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train", help="train a model (or --resume a run)",
        description="Train a model; evaluates every epoch, saves checkpoints. Prints one "
        "start-up line (model, parameters, device, data, batch, length) and an ETA after "
        "the first steps. Unset optimizer flags use the model family's paper defaults.",
        epilog=examples(
            "tractable train --model pixelcnn++ --preset small --data mnist-mini --out runs/m "
            "--epochs 5",
            "tractable train --model glow --preset small --conditional --data mnist-mini "
            "--max-steps 2000 --out runs/glow",
            "tractable train --model gated-pixelcnn --preset small --n-levels 4 --data "
            "fashion-mnist --download --out runs/g4",
            "tractable train --out runs/m --resume --max-steps 20000   # continue a run"))
    a = p.add_argument
    a("--model", help=f"model family: {', '.join(known_families())} (required for a new run)")
    a("--data", help="dataset name or folder:PATH (see `tractable data list`; default "
      "mnist-mini)")
    a("--out", required=True, metavar="DIR",
      help="run folder (created; holds model/, state.pt, logs, pictures)")
    a("--preset", help="a named model size offered by the family, e.g. small or paper "
      "(default: the family's config defaults, for pixelcnn++ the 53M-parameter paper model)")
    a("--recipe", help="a published setup: architecture and every training setting "
      "(paper: the reference code's; batch per process, see docs/reproduce.md); "
      "flags given as well override it (default: none)")
    a("--conditional", action="store_true", default=None,
      help="condition on the data's class labels")
    a("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    a("--overwrite", action="store_true",
      help="start a new run in a non-empty --out (replaces an earlier run's files there; "
      "keeps files tractable did not write)")
    groups = {"length": p.add_argument_group("length"),
              "optimizer": p.add_argument_group("optimizer (default: the family's paper "
                                                "settings)"),
              "numerics": p.add_argument_group("numerics and hardware"),
              "data": p.add_argument_group("data"),
              "reporting": p.add_argument_group("reporting and safety")}
    data_source_args(groups["data"])
    add_dataclass_flags(p, TrainConfig, groups=groups, skip=HAND_WRITTEN_FIELDS, extra={
        "sampler": {"metavar": "|".join(sampler_names()),
                    "help": "sampler for the grids (default: the family's): "
                    + sampler_help()}})
    _add_model_field_flags(p)
    show_defaults(p, TrainConfig())
    p.set_defaults(func=cmd_train)


def _add_model_field_flags(p: argparse.ArgumentParser) -> None:
    """One flag per settable config field of every registered family (see module doc)."""
    g = p.add_argument_group("model settings (fields of the family's config; default: "
                             "the family's defaults or --preset)")
    g.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any model config field (repeatable)")
    owners: dict[str, list[str]] = {}
    fields: dict[str, dataclasses.Field[Any]] = {}
    for family in known_families():
        for f in settable_fields(model_class(family)):
            owners.setdefault(f.name, []).append(family)
            fields.setdefault(f.name, f)
    taken = set(p._option_string_actions)
    for name, f in fields.items():
        flags = [fl for fl in ["--" + name.replace("_", "-"), *f.metadata.get("aliases", ())]
                 if fl not in taken]  # a clash with a trainer flag: reachable through --set
        if not flags:
            continue
        taken.update(flags)
        help_ = (f.metadata.get("help", "") + f" [{', '.join(owners[name])}] (default: the "
                 "family's, or the --preset's)").lstrip()
        if f.type in (bool, "bool"):
            g.add_argument(*flags, dest=MODEL_FLAG_PREFIX + name,
                           action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            g.add_argument(*flags, dest=MODEL_FLAG_PREFIX + name, default=None,
                           metavar=str(f.type).replace("'", ""), help=help_)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Model field values given on the command line (flags and --set), as given."""
    out = {k[len(MODEL_FLAG_PREFIX):]: v for k, v in vars(args).items()
           if k.startswith(MODEL_FLAG_PREFIX) and v is not None}
    for item in getattr(args, "set", []) or []:
        if "=" not in item:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value
    return out


def train_config_values(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields given on the command line (None = not given)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if data_options(args):
        values["data_options"] = data_options(args)
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from tractable.training import resume, train

    values = train_config_values(args)
    if args.resume:
        if args.model is not None or model_overrides(args) or args.preset:
            print("resume: model settings come from the run; --model/--preset/model "
                  "flags are ignored", file=sys.stderr)
        summary = resume(args.out, changes=values)
    else:
        if not args.model:
            raise ConfigError(f"--model is required for a new run (one of "
                              f"{', '.join(known_families())})")
        overrides = model_overrides(args)
        if args.recipe:
            values, overrides = _with_recipe(args, values, overrides)
        config = TrainConfig(**values)
        summary = train(args.model, config, preset=args.preset,
                        overrides=overrides, conditional=bool(args.conditional),
                        overwrite=args.overwrite)
    if summary.get("rank", 0) != 0:
        return 0
    best = summary["best_test_bpd"]
    print(f"done: {summary['step']} steps; best test bits/dim (EMA) "
          + (f"{best:.4f}" if best is not None else "n/a")
          + f"; run folder {args.out} (model: {Path(args.out) / 'model'})")
    return 0


def _with_recipe(args: argparse.Namespace, values: dict[str, Any],
                 overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from tractable.training.recipes import apply_recipe, get_recipe

    recipe = get_recipe(args.recipe, args.model, values.get("data", TrainConfig.data),
                        batch_size=values.get("batch_size"))
    t = recipe.train
    print(f"recipe {recipe.name} ({recipe.source}): batch {t['batch_size']} over "
          f"{recipe.world_size} process(es), {t['optimizer']} lr {t['lr']:g} betas "
          f"{tuple(round(b, 6) for b in t['betas'])}, warm-up {t['warmup_steps']} steps, EMA "
          f"{t['ema_decay']:.6g}" + "".join(f"; {n}" for n in recipe.notes), file=sys.stderr)
    return apply_recipe(recipe, values, overrides)


