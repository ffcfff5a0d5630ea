"""`tractable` command line: thin wrappers over the Python API.

Each sub-module of this package adds its sub-commands through `register(subparsers)` and
sets `func` on them; parsers come from `common.TractableParser`, so every help shows each
flag's default and ends with examples. Errors meant for the user (`TractableError`) are
printed as one line, without a traceback, and exit with status 2 (`cli.failures`); every
number given on the command line is bounded before anything is built (`cli.limits`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tractable.cli.common import TractableParser, examples
from tractable.cli.failures import run_guarded
from tractable.cli.limits import check_flag_values

# Modules that contribute sub-commands; each defines register(subparsers).
COMMAND_MODULES = ["tractable.cli.data", "tractable.cli.train", "tractable.cli.eval",
                   "tractable.cli.sample", "tractable.cli.info", "tractable.cli.latent",
                   "tractable.cli.ood", "tractable.cli.convert", "tractable.cli.models",
                   "tractable.cli.complete", "tractable.cli.compress", "tractable.cli.app"]


def build_parser() -> argparse.ArgumentParser:
    parser = TractableParser(
        prog="tractable", description="Image generative models with exact likelihoods.",
        epilog=examples(
            "tractable train --model pixelcnn++ --preset small --data mnist-mini --out runs/m",
            "tractable eval runs/m",
            "tractable sample runs/m -n 64 --out samples.png",
            "tractable COMMAND --help     every flag of a command, with its default"))
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def version_text() -> str:
    import platform

    import torch

    from tractable.config import __version__

    return (f"tractable {__version__} (torch {torch.__version__}, "
            f"python {platform.python_version()})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(check_flag_values, args) or run_guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
