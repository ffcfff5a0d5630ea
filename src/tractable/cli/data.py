"""`tractable data ...`: list, download and look at datasets."""

from __future__ import annotations

import argparse
from typing import Any

from tractable.data import load_dataset
from tractable.data.download import default_root
from tractable.data.registry import DESCRIPTIONS, FOLDER_PREFIX, known_datasets


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None,
                   help="folder with the official files (default: the cache folder)")
    p.add_argument("--mirror", action="append", default=None, metavar="URL",
                   help="base URL to download from instead of the official ones (repeatable)")
    p.add_argument("--batches", type=int, nargs="+", default=None, metavar="K",
                   help="cifar10 / imagenet32 / imagenet64: load only these training batches")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("data", help="list, download and look at datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)

    ls = dsub.add_parser("list", help="the datasets known by name and where they are cached")
    ls.set_defaults(func=cmd_list)

    dl = dsub.add_parser("download", help="fetch a dataset's official files into the cache")
    dl.add_argument("name")
    dl.add_argument("--split", choices=["train", "test", "both"], default="both")
    _source_args(dl)
    dl.set_defaults(func=cmd_download)

    show = dsub.add_parser("show", help="write a grid of real images")
    show.add_argument("name", help=f"a dataset name or {FOLDER_PREFIX}<path>")
    show.add_argument("--split", default="test", choices=["train", "test"])
    show.add_argument("-n", type=int, default=64, help="number of images (the first n)")
    show.add_argument("--out", default="grid.png")
    show.add_argument("--nrow", type=int, default=None, help="images per row (default: square)")
    show.add_argument("--scale", type=int, default=2, help="pixel upscaling for viewing")
    show.add_argument("--size", type=int, default=None,
                      help="for image folders: resize and center-crop to SIZE x SIZE")
    show.add_argument("--download", action="store_true", help="download missing files first")
    _source_args(show)
    show.set_defaults(func=cmd_show)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.name.startswith(FOLDER_PREFIX):
        if getattr(args, "size", None):
            opts["size"] = args.size
        return opts
    opts["root"] = args.root
    if args.mirror:
        opts["mirrors"] = args.mirror
    if args.batches:
        opts["batches"] = args.batches
    return opts


def cmd_list(args: argparse.Namespace) -> int:
    for name in known_datasets():
        where = "bundled" if name == "mnist-mini" else str(default_root(name))
        print(f"{name:14s} {DESCRIPTIONS.get(name, '')}\n{'':14s} cache: {where}")
    print(f"{FOLDER_PREFIX + '<path>':14s} any folder of PNG/JPEG images (class sub-folders "
          f"-> labels)")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    splits = ["train", "test"] if args.split == "both" else [args.split]
    for split in splits:
        ds = load_dataset(args.name, split=split, download=True, **_options(args))
        print(f"{args.name} {split}: {len(ds)} images of shape {ds.shape}, "
              f"{ds.num_classes} classes")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from tractable.errors import DataError
    from tractable.viz import save_grid

    if args.n < 1:
        raise DataError(f"-n must be at least 1, got {args.n}")
    ds = load_dataset(args.name, split=args.split, download=args.download, **_options(args))
    n = min(args.n, len(ds))
    save_grid(ds.images[:n], args.out, nrow=args.nrow, scale=args.scale)
    print(f"wrote {n} {ds.name} {args.split} images to {args.out}")
    return 0
