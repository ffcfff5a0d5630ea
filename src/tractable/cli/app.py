"""`tractable app`: serve the interactive page (`tractable.app`) on 127.0.0.1.

    tractable app runs/demo runs/glow --port 7860

Each RUN_OR_MODEL_DIR becomes a model to choose on the page; the test split of its run's
dataset (or --data) supplies test images, the bits/dim histogram and an invertible model's
attribute vectors. Needs the optional extra: pip install 'tractable[app]'.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tractable.cli.common import (
    data_options,
    data_source_args,
    examples,
    weights_and_device_args,
)
from tractable.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "app", help="serve an interactive page on 127.0.0.1 (needs tractable[app])",
        description="A local, offline web page over the given models: Sample, Complete, "
        "Likelihood and Edit tabs (docs/app.md). Stop it with Ctrl-C.",
        epilog=examples("tractable app runs/mnist runs/glow --port 7860",
                        "tractable app runs/cifar --data cifar10 --root ~/data/cifar"))
    p.add_argument("paths", nargs="*", metavar="RUN_OR_MODEL_DIR",
                   help="models to serve (none: the shipped pretrained models)")
    p.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1")
    p.add_argument("--data", help="dataset of the test images (unset: each run's own)")
    weights_and_device_args(p)
    p.add_argument("--histogram-images", type=int, default=200, metavar="IMAGES",
                   help="test images in the bits/dim histogram")
    data_source_args(p.add_argument_group("data"))
    p.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    from tractable.app import main_models, serve

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    if args.histogram_images < 1:
        raise ConfigError(f"--histogram-images must be >= 1, got {args.histogram_images}")
    models = main_models(args.paths, data=args.data, weights=args.weights, device=args.device,
                         options=data_options(args), progress=True)
    print(f"tractable app: {len(models)} model(s) loaded; preparing their test-set "
          "histograms (and the attribute vectors of invertible models) before serving",
          flush=True, file=sys.stderr)
    for m in models:
        m.histogram_images = args.histogram_images
        prepare(m)  # computed once, before the page answers its first request
    serve(models, port=args.port)
    return 0


def prepare(m: Any) -> None:
    """The test-set histogram (and an invertible model's attribute vectors): from the model
    folder's cache when its weights and test images are unchanged, else computed with a
    progress bar and kept there; one line says which (or why there are no test images)."""
    if m.test is None:
        print(f"{m.name}: no test images, no histogram "
              f"({m.no_test_reason or 'no dataset recorded'})", file=sys.stderr)
        return
    m.test_bpd()
    if m.can_edit:
        m.attribute_vectors()
    for what, how in m.cached.items():
        name = "test-set histogram" if what == "test-bpd" else "attribute vectors"
        path = m.cache.path(what)
        said = {"read": f"{name} read from the cache {path}",
                "saved": f"{name} computed and cached in {path}",
                "unsaved": f"{name} computed (not cached: {path.parent} cannot be written)"}
        print(f"{m.name}: {said[how]}", file=sys.stderr)
