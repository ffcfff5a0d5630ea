"""`tractable train | eval | sample | info`: thin wrappers over `tractable.training`.

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
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tractable.cli.classes import class_by_name
from tractable.cli.common import (
    add_dataclass_flags,
    data_options,
    data_source_args,
    dataset_for,
    examples,
    limit_arg,
    show_defaults,
)
from tractable.cli.output import output_path
from tractable.data.subsets import load_images
from tractable.errors import ConfigError, ShapeError
from tractable.models.registry import known_families, model_class
from tractable.run_folder import model_dir_of, open_folder
from tractable.sampling import sampler_help, sampler_names
from tractable.training.config import OPTIMIZER_FIELDS, TrainConfig
from tractable.training.factory import settable_fields

MODEL_FLAG_PREFIX = "mf__"  # argparse dest of auto-generated model-field flags
MAX_SAMPLES = 10_000  # images in one `tractable sample` grid
# TrainConfig fields whose flags are written here; every other field's flag is generated
# from its `setting` metadata (`add_dataclass_flags`).
HAND_WRITTEN_FIELDS = ("data", "data_options", "out", "recipe")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _register_train(sub)
    _register_eval(sub)
    _register_sample(sub)
    _register_info(sub)


# ---- train -------------------------------------------------------------------------------
def _register_train(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    from tractable.training import TrainingInterrupted, resume, train

    values = train_config_values(args)
    try:
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
    except TrainingInterrupted as e:
        print(f"tractable: {e}", file=sys.stderr)
        return 130
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


# ---- eval --------------------------------------------------------------------------------
def _register_eval(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "eval", help="exact bits/dim of a run or saved model on a dataset",
        description="Exact bits/dim (and nats per image) of a model over every image of a "
        "dataset split, or a fixed random subset of them (--limit).",
        epilog=examples("tractable eval runs/m",
                        "tractable eval runs/m --split train --limit 1000 --json",
                        "tractable eval runs/m/model --data fashion-mnist --root ~/data/fmnist"))
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("--data", help="dataset (default: the one the run trained on)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    limit_arg(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    data_source_args(p)
    p.add_argument("--batch-size", type=int, default=64, metavar="IMAGES",
                   help="images per forward pass")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--weights", default="ema", choices=["ema", "raw"],
                   help="Polyak-averaged (ema) or the optimizer's raw weights")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(func=cmd_eval)


def load_for_use(path: str, weights: str, device: str) -> tuple[Any, Path]:
    """The model of a run or model folder with its EMA or raw weights, in eval mode."""
    from tractable.models.base import load
    from tractable.training.distributed import pick_device

    model_dir = model_dir_of(path)
    return load(model_dir, weights=weights, map_location=pick_device(device)), model_dir


def cmd_eval(args: argparse.Namespace) -> int:
    from tractable.evaluation import evaluate_bpd

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    model, model_dir = load_for_use(args.path, args.weights, args.device)
    data, opts = dataset_for(args, model_dir)
    ds, _ = load_images(data, args.split, opts, args.limit, args.seed)
    res = evaluate_bpd(model, ds, batch_size=args.batch_size, precision=args.precision,
                       progress=args.progress and sys.stderr.isatty())
    label = model.bits_per_dim_label  # e.g. "bits/dim (4-level data)"
    out = {"data": data, "split": args.split, "model": str(model_dir), "family": model.family,
           "weights": args.weights, "precision": args.precision, "bits_per_dim_label": label,
           **res.to_dict()}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"{data} {args.split}: {res.bits_per_dim:.4f} {label} over {res.num_images} "
              f"images ({res.nats_per_image:.2f} nats/image; {model.family}, "
              f"{args.weights} weights, {args.precision})")
    return 0


# ---- sample ------------------------------------------------------------------------------
def _register_sample(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sample", help="draw samples into a PNG grid (and .npy)",
        description="Draw samples from a run or saved model into a PNG grid (small images "
        "enlarged, one row per class with --class all, labelled), optionally also as .npy.",
        epilog=examples("tractable sample runs/m -n 64 --out samples.png --temperature 0.9",
                        "tractable sample runs/cond --class all -n 80 --out rows.png",
                        "tractable sample runs/cond --class 4:0.5,9:0.5 -n 16 --seed 1",
                        "tractable sample runs/m -n 1 --sampler naive --dtype float64 --npy"))
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("-n", type=int, default=64, metavar="IMAGES",
                   help="number of images (with --class all: per-class count is n // K, at "
                   "least 1)")
    p.add_argument("--out", metavar="PNG", help="the grid's file (default samples.png, or "
                   "samples-1.png, ... if that exists)")
    p.add_argument("--class", dest="class_spec", metavar="SPEC",
                   help="3 | cat | 4:0.5,9:0.5 (soft blend) | all (one row per class) "
                   "(default: unconditional, or classes in turn for a conditional model)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="scales the sampling distributions; < 1: smoother images")
    p.add_argument("--seed", type=int, default=0, help="same seed, same images")
    p.add_argument("--npy", action="store_true", help="also write uint8 [n, C, H, W] as .npy")
    p.add_argument("--sampler", metavar="|".join(sampler_names()),
                   help="default: the family's; " + sampler_help())
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="float64: exact mode of the autoregressive samplers")
    p.add_argument("--weights", default="ema", choices=["ema", "raw"],
                   help="Polyak-averaged (ema) or the optimizer's raw weights")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--nrow", type=int, metavar="IMAGES",
                   help="images per grid row (default: square, or one row per class)")
    p.set_defaults(func=cmd_sample)


def parse_class_spec(spec: str, n: int, num_classes: int,
                     class_names: list[str]) -> tuple[torch.Tensor, int, int | None]:
    """`--class` text -> (y, n, grid row length): LongTensor [n] or soft FloatTensor [n, K].

    "3" or a class name (any case): every sample of that class; "4:0.5,9:0.5": class weights
    (normalized to sum 1); "all": one grid row per class, n // K samples each.
    """
    if num_classes == 0:
        raise ConfigError("this model is unconditional (trained without class labels): "
                          "drop --class")

    def index(token: str) -> int:
        token = token.strip()
        named = class_by_name(token, class_names)
        if named is not None:
            return named
        try:
            k = int(token)
        except ValueError:
            raise ConfigError(f"unknown class {token!r}; classes: "
                              f"{', '.join(class_names) or f'0..{num_classes - 1}'}") from None
        if not 0 <= k < num_classes:
            raise ConfigError(f"class {k} out of range 0..{num_classes - 1}")
        return k

    spec = spec.strip()
    if spec == "all":
        per = max(1, n // num_classes)
        y = torch.arange(num_classes).repeat_interleave(per)
        return y, len(y), per
    if ":" in spec:
        w = torch.zeros(num_classes)
        for part in spec.split(","):
            name, _, weight = part.rpartition(":")
            try:
                value = float(weight)
            except ValueError:
                raise ConfigError(f"bad class weight {part!r}; use e.g. 4:0.5,9:0.5") from None
            if value < 0 or not math.isfinite(value):
                raise ConfigError(f"class weights must be >= 0, got {part!r}")
            w[index(name)] += value
        if w.sum() <= 0:
            raise ConfigError("class weights sum to 0")
        return (w / w.sum()).expand(n, num_classes).clone(), n, None
    return torch.full((n,), index(spec), dtype=torch.long), n, None


def class_labels(cfg: Any) -> list[str]:
    """A conditional model's class names, or its class indices when it has none."""
    names = list(cfg.class_names)
    return names if len(names) == cfg.num_classes else [str(k) for k in range(cfg.num_classes)]


def cmd_sample(args: argparse.Namespace) -> int:
    import inspect

    from tractable.training.pictures import draw_samples
    from tractable.viz import save_grid

    if not 1 <= args.n <= MAX_SAMPLES:
        raise ShapeError(f"-n must be between 1 and {MAX_SAMPLES:,} (one grid), got {args.n}; "
                         "draw more in several runs with different --seed")
    if not 0 <= args.temperature < math.inf:
        raise ShapeError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.nrow is not None and args.nrow < 1:
        raise ShapeError(f"--nrow must be >= 1, got {args.nrow}")
    out = output_path(args.out, "samples.png", (".npy",) if args.npy else ())
    model, model_dir = load_for_use(args.path, args.weights, args.device)
    cfg = model.config
    y, n, nrow = None, args.n, args.nrow
    labels: dict[str, Any] = {}
    names = class_labels(cfg)
    if args.class_spec is not None:
        y, n, per_row = parse_class_spec(args.class_spec, args.n, cfg.num_classes,
                                         list(cfg.class_names))
        nrow = nrow or per_row
        if per_row is not None and nrow == per_row:
            labels["row_labels"] = names
        elif y.dim() == 1 and args.class_spec.strip() != "all":
            labels["title"] = f"class {names[int(y[0])]}"
        elif y.dim() == 2:
            labels["title"] = "blend " + ", ".join(
                f"{names[k]} {float(w):.2g}" for k, w in enumerate(y[0]) if w > 0)
    elif cfg.num_classes:
        y = torch.arange(n) % cfg.num_classes
        nrow = nrow or cfg.num_classes
        if nrow == cfg.num_classes:
            labels["col_labels"] = names
        print(f"class-conditional model: sampling classes 0..{cfg.num_classes - 1} in turn "
              "(choose with --class)", file=sys.stderr)
    model = model.to(torch.float64 if args.dtype == "float64" else torch.float32)
    if y is not None:
        y = y.to(next(model.parameters()).device)
        if y.is_floating_point():
            y = y.to(next(model.parameters()).dtype)
    extra: dict[str, Any] = {"sampler": args.sampler}
    if "progress" in inspect.signature(model.sample).parameters:
        extra["progress"] = sys.stderr.isatty()
    x = draw_samples(model, n, y=y, temperature=args.temperature, seed=args.seed, **extra)
    if args.temperature != 1.0:
        labels["title"] = (labels.get("title", "") + f"  T = {args.temperature:g}").strip()
    save_grid(x, out, nrow=nrow, **labels)
    print(f"wrote {n} samples from {model_dir} to {out}")
    if args.npy:
        from tractable._io import atomic_write_with

        npy = out.with_suffix(".npy")
        atomic_write_with(npy, lambda f: np.save(f, x.numpy()))
        print(f"wrote uint8 array {list(x.shape)} to {npy}")
    return 0


# ---- info --------------------------------------------------------------------------------
def _register_info(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "info", help="config, parameter count, data and best bits/dim",
        epilog=examples("tractable info runs/m", "tractable info runs/m/model --json"))
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)


def test_images_of(summary: dict[str, Any], run_json: dict[str, Any]) -> int | str | None:
    """How many test images a run's bits/dim was measured over: recorded by the trainer, or
    for older runs `limit_test` (a fixed subset), else the whole test split."""
    if "test_images" in summary:
        return summary["test_images"]  # type: ignore[no-any-return]
    if not run_json:
        return None
    limit = run_json.get("train", {}).get("limit_test")
    return int(limit) if limit else f"every {run_json.get('data')} test image"


def cmd_info(args: argparse.Namespace) -> int:
    from tractable.config import read_config_json
    from tractable.models.base import parameter_count

    folder = open_folder(args.path)
    model_dir = folder.model_dir
    family, cfg = read_config_json(model_dir)
    klass = model_class(family)
    run_json, summary = folder.run, folder.summary
    info = {
        "model_dir": str(model_dir), "family": family, "config": cfg,
        "parameters": parameter_count(klass, klass.config_class.from_dict(cfg)),
        "data": run_json.get("data"), "step": summary.get("step"),
        "best_test_bpd": summary.get("best_test_bpd"),
        "last_test_bpd": summary.get("last_test_bpd"),
        "test_images": test_images_of(summary, run_json),
        "optimizer": run_json.get("optimizer"),
    }
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    print(f"{family} model in {model_dir}")
    print(f"  parameters: {info['parameters']:,}")
    for k, v in cfg.items():
        print(f"  {k}: {v}")
    if run_json:
        opt = run_json.get("optimizer", {})
        print(f"  data: {info['data']}; trained {info['step']} steps; optimizer "
              + ", ".join(f"{k}={opt[k]}" for k in OPTIMIZER_FIELDS if k in opt))
        best, count = info["best_test_bpd"], info["test_images"]
        over = (f" over {count:,} {info['data']} test images" if isinstance(count, int)
                else f" over {count}" if count else "")
        print("  best test bits/dim (EMA): "
              + (f"{best:.4f}{over}" if best is not None else "n/a"))
    return 0
