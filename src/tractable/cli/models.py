"""`tractable models`: the small ready models shipped in the package."""

from __future__ import annotations

import argparse
import json

from tractable.cli.common import examples


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="list the ready models shipped in the package",
                       description="Models every command accepts as pretrained:NAME, e.g. "
                       "`tractable sample pretrained:pixelcnn++-mnist --class all`.",
                       epilog=examples("tractable models",
                                       "tractable sample pretrained:pixelcnn++-fashion-mnist "
                                       "--class all -n 80 --out fashion.png"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from tractable import pretrained

    records = {name: pretrained.info(name) for name in pretrained.available()}
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    width = max([len("pretrained:" + name) for name in records] + [4])
    print(f"{'name':<{width}} {'family':<11} {'data':<14} {'classes':>7} {'params':>9} "
          f"{'test bpd':>9}  trained")
    for name, r in records.items():
        print(f"{'pretrained:' + name:<{width}} {r['family']:<11} {r['data']:<14} "
              f"{r['num_classes']:>7} {r['parameters']:>9,} {r['test_bits_per_dim']:>9.4f}  "
              f"{r['steps']} steps x {r['batch_size']}, {r['train_seconds'] / 60:.0f} min CPU")
    return 0
