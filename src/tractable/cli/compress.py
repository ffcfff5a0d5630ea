"""`tractable compress` / `tractable decompress`: images to a file at the model's bits/dim.

    tractable compress pretrained:pixelcnn++-mnist --data mnist-mini --split test --out t.trz
    tractable compress runs/m digits/ one.png --class 3 --out mine.trz
    tractable decompress t.trz --out decoded/

Wraps `tractable.compression` (`model.compress`, `tractable.decompress`). The file records
the model it needs (its hash, and how it was loaded), so `decompress` finds it again;
`--model` names it where it moved. Decoded images are written as PNGs (`000000.png`, ...,
or the input files' names), with `labels.csv` for a conditional model.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tractable.cli.classes import class_index
from tractable.cli.common import data_options, data_source_args, examples, limit_arg
from tractable.errors import CompressedFileError, ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "compress", help="compress images losslessly with an autoregressive model",
        description="Code images losslessly with the model's exact likelihood: the file "
        "costs about the model's bits/dim. Image files and folders, or --data.",
        epilog=examples(
            "tractable compress pretrained:pixelcnn++-mnist --data mnist-mini --split test "
            "--out test.trz",
            "tractable compress runs/m digits/ seven.png --class 7 --out mine.trz"))
    p.add_argument("model", metavar="MODEL",
                   help="a run or model folder, pretrained:NAME or hf:ORG/NAME")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files, or folders of them (of the model's size)")
    p.add_argument("--out", required=True, metavar="FILE", help="the compressed file")
    p.add_argument("--data", metavar="NAME", help="compress a dataset's images instead")
    p.add_argument("--split", default="test", choices=["train", "test"])
    limit_arg(p)
    p.add_argument("--seed", type=int, default=0, help="of the --limit subset")
    p.add_argument("--class", dest="class_spec", metavar="CLASS",
                   help="the class (index or name) of every image file, for a "
                        "class-conditional model")
    p.add_argument("--batch", type=int, default=64, metavar="N",
                   help="images coded together (decoding follows the same batches)")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    data_source_args(p.add_argument_group("data"))
    p.set_defaults(func=cmd_compress)

    d = sub.add_parser(
        "decompress", help="decode a `tractable compress` file back to PNG images",
        description="Decode a compressed file bit for bit with the model that wrote it (the "
        "one the file names, or --model) into PNGs, plus labels.csv for a conditional model.",
        epilog=examples("tractable decompress test.trz --out decoded/",
                        "tractable decompress test.trz --model moved/model --out decoded/"))
    d.add_argument("file", metavar="FILE")
    d.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    d.add_argument("--model", metavar="MODEL",
                   help="the model that wrote FILE (default: the one FILE names)")
    _model_args(d)
    d.set_defaults(func=cmd_decompress)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default="ema", choices=["ema", "raw"],
                   help="Polyak-averaged (ema) or the optimizer's raw weights")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N; decode on the same kind of device as encoding")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads while coding (more rarely helps: the ops are tiny)")


def model_ref(spec: str) -> str:
    """How a file records its model: `pretrained:` / `hf:` names as given, paths absolute."""
    from tractable.hub import is_reference

    return spec if is_reference(spec) else str(Path(spec).resolve())


def _inputs(args: argparse.Namespace, model: Any) -> tuple[Tensor, Tensor | None, list[str]]:
    """(images, labels, names) from the image arguments or --data."""
    from tractable.cli.images import image_files, read_image
    from tractable.data import load_dataset

    cfg = model.config
    shape = tuple(int(v) for v in cfg.image_shape)
    if bool(args.images) == bool(args.data):
        raise ConfigError("give image files/folders or --data NAME (one of the two)")
    if args.data:
        if args.class_spec is not None:
            raise ConfigError("--class is for image files; --data images carry their labels")
        ds = load_dataset(args.data, args.split, limit=args.limit, seed=args.seed,
                          **data_options(args))
        if tuple(ds.images.shape[1:]) != shape:
            raise DataError(f"{args.data} images are {list(ds.images.shape[1:])}; the model "
                            f"takes {list(shape)} (see --size / --channels)")
        if cfg.num_classes and not ds.has_labels:
            raise DataError(f"{args.data} has no labels; this model is class-conditional")
        labels = ds.labels.long() if cfg.num_classes else None
        return ds.images, labels, []
    if args.limit is not None:
        raise ConfigError("--limit picks a subset of --data; name the image files instead")
    files = image_files(args.images, IMAGE_SUFFIXES, recursive=False)
    x = torch.stack([read_image(f, shape) for f in files])  # type: ignore[arg-type]
    names = [f.name for f in files]
    if len({Path(n).stem for n in names}) != len(names):
        names = []  # two inputs alike (a.png, a.jpg, or from two folders): numbered outputs
    if not cfg.num_classes:
        if args.class_spec is not None:
            raise ConfigError("this model is unconditional: drop --class")
        return x, None, names
    if args.class_spec is None:
        raise ConfigError("this model is class-conditional: pass --class for image files")
    k = class_index(args.class_spec, list(cfg.class_names), cfg.num_classes)
    return x, torch.full((len(x),), k, dtype=torch.long), names


def cmd_compress(args: argparse.Namespace) -> int:
    from tractable._io import atomic_write_bytes
    from tractable.cli.common import open_model
    from tractable.compression import compress_images
    from tractable.models.capabilities import Compressible, missing

    if args.batch < 1 or args.threads < 1:
        raise ConfigError("--batch and --threads must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    model, _ = open_model(args, args.model)
    if not isinstance(model, Compressible):
        raise ConfigError(missing(Compressible, "tractable compress", model.family))
    x, y, names = _inputs(args, model)
    data = compress_images(model, x, y, batch=args.batch, model_ref=model_ref(args.model),
                           threads=args.threads, names=names)
    atomic_write_bytes(args.out, data)
    dims = x.numel()
    result = {"file": args.out, "images": len(x), "bytes": len(data),
              "bits_per_dim": 8 * len(data) / dims, "raw_bytes": dims}
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"wrote {len(x)} images to {args.out}: {len(data):,} bytes, "
              f"{result['bits_per_dim']:.4f} bits/dim ({dims / len(data):.2f}x smaller "
              "than raw pixels)")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from tractable.cli.common import open_model
    from tractable.compression import decompress_unpacked, unpack

    if args.threads < 1:
        raise ConfigError("--threads must be >= 1")
    header, streams = unpack(_read(args.file), args.file)
    ref = args.model or header.model_ref
    if not ref:
        raise ConfigError(f"{args.file} does not say which model wrote it: pass --model")
    names = header.extra.get("names") or [f"{i:06d}.png" for i in range(header.count)]
    out = Path(args.out)
    files = [out / (Path(str(n)).stem + ".png") for n in names]
    _check_free(out, files, with_labels=header.num_classes > 0)  # before the slow decode
    model, _ = open_model(args, ref)
    x, y = decompress_unpacked(header, streams, model, name=args.file, threads=args.threads)
    _check_free(out, files, with_labels=y is not None)  # nothing appeared meanwhile
    out.mkdir(parents=True, exist_ok=True)
    for image, path in zip(x, files, strict=True):
        _write_png(image, path)
    if y is not None:
        _write_labels(out / "labels.csv", files, y, list(model.config.class_names))
    print(f"decoded {len(x)} images from {args.file} into {out}"
          f"{' (labels in labels.csv)' if y is not None else ''}")
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CompressedFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise CompressedFileError(f"{path} is a folder, not a compressed file") from None


def _check_free(out: Path, files: list[Path], with_labels: bool) -> None:
    """Refuse to overwrite: nothing already in DIR is lost."""
    if len({f.name for f in files}) != len(files):
        raise CompressedFileError("the file names two of its images alike")
    taken = [f for f in files + ([out / "labels.csv"] if with_labels else []) if f.exists()]
    if taken:
        raise ConfigError(f"{taken[0]} already exists: decode into a new or empty folder")


def _write_png(image: Tensor, path: Path) -> None:
    from tractable.viz.canvas import save_png, to_pil

    save_png(to_pil(image.permute(1, 2, 0).numpy().astype(np.uint8)), path)


def _write_labels(path: Path, files: list[Path], y: Tensor, class_names: list[str]) -> None:
    from tractable._io import atomic_write_text

    text = io.StringIO()
    rows = csv.writer(text)
    rows.writerow(["file", "label", "class"])
    for f, k in zip(files, y.tolist(), strict=True):
        rows.writerow([f.name, k, class_names[k] if k < len(class_names) else ""])
    atomic_write_text(path, text.getvalue())
