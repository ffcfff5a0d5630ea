"""`tractable data ...`: list, download, prepare and look at datasets."""

from __future__ import annotations

import argparse
from typing import Any

from tractable.cli.common import data_options, data_source_args, examples
from tractable.cli.output import output_path
from tractable.data import load_dataset
from tractable.data.download import default_root
from tractable.data.registry import DESCRIPTIONS, FOLDER_PREFIX, known_datasets


def _mirror_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mirror", action="append", default=None, metavar="URL",
                   help="base URL to download from instead of the official ones (repeatable; "
                   "default: the official URLs, or $TRACTABLE_MIRROR)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("data", help="list, download and look at datasets",
                       epilog=examples("tractable data list",
                                       "tractable data download fashion-mnist",
                                       "tractable data show mnist-mini -n 64 --out grid.png"))
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    ls = dsub.add_parser("list", help="the datasets known by name and where they are cached",
                         epilog=examples("tractable data list"))
    ls.set_defaults(func=cmd_list)
    for register_command in (_register_download, _register_show, _register_prepare,
                             _register_info):
        register_command(dsub)


def _register_download(dsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dl = dsub.add_parser("download", help="fetch a dataset's official files into the cache",
                         epilog=examples("tractable data download cifar10",
                                         "tractable data download mnist --split test --root "
                                         "~/data/mnist"))
    dl.add_argument("name")
    dl.add_argument("--split", choices=["train", "test", "both"], default="both")
    dl.add_argument("--root", default=None, metavar="DIR",
                    help="folder for the official files (default: the cache folder, "
                    "$TRACTABLE_DATA/NAME)")
    _mirror_arg(dl)
    dl.add_argument("--batches", type=int, nargs="+", default=None, metavar="K",
                    help="cifar10 / imagenet32 / imagenet64: only these training batches "
                    "(default: all)")
    dl.set_defaults(func=cmd_download)


def _register_show(dsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    show = dsub.add_parser(
        "show", help="write a grid of real images",
        description="Write a PNG grid of a split's first N images, small images enlarged "
        "(nearest neighbour) and separated.",
        epilog=examples("tractable data show mnist-mini -n 64 --out grid.png",
                        "tractable data show cifar10 --root ~/data/cifar-10-batches-py -n 32",
                        "tractable data show folder:photos --size 64 --out photos.png"))
    show.add_argument("name", help=f"a dataset name or {FOLDER_PREFIX}<path>")
    show.add_argument("--split", default="test", choices=["train", "test"])
    show.add_argument("-n", type=int, default=64, metavar="IMAGES",
                      help="number of images (the first n)")
    show.add_argument("--out", metavar="PNG",
                      help="the grid's file (default grid.png, or a free grid-K.png)")
    show.add_argument("--nrow", type=int, default=None, metavar="IMAGES",
                      help="images per row (default: square)")
    show.add_argument("--scale", type=int, default=None, metavar="FACTOR",
                      help="pixel enlargement for viewing (default: small images to about "
                      "112 pixels)")
    data_source_args(show)
    _mirror_arg(show)
    show.set_defaults(func=cmd_show)


def _register_prepare(dsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    prep = dsub.add_parser("prepare", help="convert a dataset once into its memory-mapped "
                           "prepared copy (what training reads) and say where it lives",
                           epilog=examples("tractable data prepare cifar10",
                                           "tractable data prepare folder:photos --size 64 "
                                           "--channels 3"))
    prep.add_argument("name", help=f"a dataset name or {FOLDER_PREFIX}<path>")
    prep.add_argument("--split", choices=["train", "test", "both"], default="both")
    prep.add_argument("--rebuild", action="store_true",
                      help="convert again even if the copy is current (default: reuse it)")
    data_source_args(prep)
    _mirror_arg(prep)
    prep.set_defaults(func=cmd_prepare)


def _register_info(dsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    info = dsub.add_parser("info", help="list the prepared copies, their sizes and sources",
                           epilog=examples("tractable data info --verify",
                                           "tractable data info --remove "
                                           "cifar10-train-0123456789abcdef"))
    info.add_argument("--verify", action="store_true",
                      help="re-read every copy against its checksums (default: check sizes "
                      "and metadata only)")
    info.add_argument("--remove", metavar="FOLDER", action="append", default=[],
                      help="delete this prepared copy, a folder name from the list; repeatable "
                      "(default: remove nothing)")
    info.set_defaults(func=cmd_info)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts = data_options(args)
    if args.name.startswith(FOLDER_PREFIX):
        opts.pop("root", None)
        opts.pop("batches", None)
    if getattr(args, "mirror", None):
        opts["mirrors"] = args.mirror
    return opts


def cmd_list(args: argparse.Namespace) -> int:
    for name in known_datasets():
        where = "bundled" if name == "mnist-mini" else str(default_root(name))
        print(f"{name:14s} {DESCRIPTIONS.get(name, '')}\n{'':14s} cache: {where}")
    print(f"{FOLDER_PREFIX + '<path>':14s} any folder of PNG/JPEG images (class sub-folders "
          f"-> labels)")
    from tractable.data.prepared import prepared_root

    print(f"prepared (memory-mapped) copies: {prepared_root()} (`tractable data info`)")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    splits = ["train", "test"] if args.split == "both" else [args.split]
    for split in splits:
        ds = load_dataset(args.name, split=split, prepared=False,
                          **{**_options(args), "download": True})
        print(f"{args.name} {split}: {len(ds)} images of shape {ds.shape}, "
              f"{ds.num_classes} classes")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from tractable.errors import DataError
    from tractable.viz import save_grid

    if args.n < 1 or (args.scale is not None and args.scale < 1) or (
            args.nrow is not None and args.nrow < 1):
        raise DataError(f"-n, --scale and --nrow must be at least 1, got {args.n}, "
                        f"{args.scale}, {args.nrow}")
    out = output_path(args.out, "grid.png")
    ds = load_dataset(args.name, split=args.split, **_options(args))
    n = min(args.n, len(ds))
    save_grid(ds.images[:n], out, nrow=args.nrow, scale=args.scale)
    print(f"wrote {n} {ds.name} {args.split} images to {out}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def cmd_prepare(args: argparse.Namespace) -> int:
    from tractable.data.prepared import remove_prepared

    splits = ["train", "test"] if args.split == "both" else [args.split]
    for split in splits:
        ds = load_dataset(args.name, split=split, prepared=True, **_options(args))
        if args.rebuild and ds.prepared_at is not None:
            remove_prepared(ds.prepared_at)
            ds = load_dataset(args.name, split=split, prepared=True, **_options(args))
        assert ds.prepared_at is not None
        size = sum(f.stat().st_size for f in ds.prepared_at.iterdir())
        print(f"{args.name} {split}: {len(ds)} images of shape {ds.shape}, "
              f"{ds.num_classes} classes, {_size(size)} in {ds.prepared_at}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from tractable.data.prepared import (
        prepared_copies,
        prepared_root,
        problem_with,
        remove_prepared,
        verify_prepared,
    )
    from tractable.errors import DataError

    root = prepared_root()
    copies = prepared_copies(root)
    for name in args.remove:
        folder = root / name
        if folder.parent != root or not folder.is_dir() or name.startswith("."):
            raise DataError(f"no prepared copy {name!r} in {root}; `tractable data info` "
                            f"lists them")
        remove_prepared(folder)
        print(f"removed {folder}")
    if args.remove:
        return 0
    print(f"prepared copies in {root} (set $TRACTABLE_PREPARED to move them; delete a "
          f"folder, or the whole directory, to remove them):")
    total = 0
    for folder, meta, size in copies:
        total += size
        problem = verify_prepared(folder) if args.verify else problem_with(folder)
        state = "ok" if problem is None else problem
        if meta is None:
            print(f"  {folder.name}: {_size(size)}, {state}")
            continue
        shape = "x".join(str(s) for s in meta.get("shape", []))
        print(f"  {folder.name}: {meta.get('name')} {meta.get('split')}, {meta.get('count')} "
              f"images of {shape}, {_size(size)}, {state}")
        sources = meta.get("key", {}).get("sources") or []
        if sources:
            more = f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""
            print(f"      from {sources[0]}{more}")
    print(f"  {len(copies)} copies, {_size(total)}")
    return 0
