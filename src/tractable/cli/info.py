"""`tractable info`: a run's or saved model's config, parameter count, data and best
bits/dim, read through `open_folder` (no weights loaded)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from tractable.cli.common import examples
from tractable.models.registry import model_class
from tractable.run_folder import open_folder
from tractable.training.config import OPTIMIZER_FIELDS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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


def missing_config_fields(config_class: type, cfg: dict[str, Any]) -> list[str]:
    """The fields of `config_class` that a config.json's `config` object lacks."""
    return [f.name for f in dataclasses.fields(config_class) if f.name not in cfg]


def default_of(config_class: type, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(config_class)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc, operator]


def cmd_info(args: argparse.Namespace) -> int:
    from tractable.config import read_config_json
    from tractable.models.base import parameter_count

    folder = open_folder(args.path)
    model_dir = folder.model_dir
    family, cfg = read_config_json(model_dir)
    klass = model_class(family)
    run_json, summary = folder.run, folder.summary
    missing = missing_config_fields(klass.config_class, cfg)
    info = {
        "model_dir": str(model_dir), "family": family, "config": cfg,
        "missing_config_fields": missing,
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
    for k in missing:
        print(f"  {k}: MISSING from config.json (loading assumes the default "
              f"{default_of(klass.config_class, k)!r})")
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

