"""`tractable data ...`: look at datasets."""

from __future__ import annotations

import argparse

from tractable.data import load_dataset


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("data", help="inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    show = dsub.add_parser("show", help="write a grid of real images")
    show.add_argument("name")
    show.add_argument("--split", default="test", choices=["train", "test"])
    show.add_argument("-n", type=int, default=64)
    show.add_argument("--out", default="grid.png")
    show.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    from tractable.viz import save_grid

    ds = load_dataset(args.name, split=args.split)
    n = min(args.n, len(ds))
    save_grid(ds.images[:n], args.out)
    print(f"wrote {n} {ds.name} {args.split} images to {args.out}")
    return 0
