"""`tractable latent interpolate | manipulate`: walks in the latent space of any invertible
model (`Invertible`: Glow, or any flow with exact encode/decode; Glow §5.2–5.3).

    tractable latent interpolate RUN --index-a 3 --index-b 17 --steps 8 --out strip.png
    tractable latent interpolate RUN --image-a face1.png --image-b face2.png
    tractable latent manipulate RUN --data fashion-mnist --attribute Sneaker --alpha -1..1

`tractable glow ...` is the same command under its first name. RUN is a training run
folder or a saved-model folder. --index-a/--index-b pick images of the dataset split by
position (default data: the one the run was trained on; the strip's labels name each
image's class), --image-a/--image-b read image files of the model's size; the earlier
--a/--b take either (a file if it exists, else an index). Both commands use the model's
exact encode/decode (`tractable.models.latents`).
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

import torch

from tractable.cli.classes import class_index
from tractable.cli.common import (
    data_source_args,
    examples,
    open_model,
    weights_and_device_args,
)
from tractable.cli.images import ImageSource
from tractable.cli.output import output_path
from tractable.errors import ConfigError, DataError, ShapeError
from tractable.models.capabilities import Invertible, missing


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("latent", aliases=["glow"],
                       help="latent-space tools of invertible models (Glow): interpolate, "
                       "manipulate (also: tractable glow ...)")
    gsub = p.add_subparsers(dest="latent_command", required=True)

    q = gsub.add_parser(
        "interpolate", help="decode a straight line between two images' latents",
        description="Decode z = (1 - t)·z_a + t·z_b for t from 0 to 1: a strip whose ends "
        "(marked) are the two images, exactly (Glow §5.2).",
        epilog=examples("tractable latent interpolate runs/glow --index-a 3 --index-b 17 "
                        "--steps 8 --out strip.png",
                        "tractable latent interpolate runs/glow --image-a me.png --image-b "
                        "you.png"))
    _common(q)
    for end, which in (("a", "first"), ("b", "last")):
        g = q.add_argument_group(f"the {which} image (one of)").add_mutually_exclusive_group()
        g.add_argument(f"--index-{end}", type=int, metavar="N",
                       help=f"the {which} image is image N of the dataset split (a position, "
                       "not a class: --index-a 0 is the split's first image, whatever it shows)")
        g.add_argument(f"--image-{end}", metavar="FILE",
                       help=f"the {which} image is this image file (of the model's size)")
        g.add_argument(f"--{end}", metavar="FILE_OR_INDEX",
                       help=f"the earlier form of both: an image file, else an index into the "
                       f"dataset split (kept working; same as --image-{end} / --index-{end})")
    q.add_argument("--steps", type=int, default=8, metavar="IMAGES",
                   help="images in the strip, ends included")
    q.add_argument("--out", metavar="PNG",
                   help="the strip's file (default interpolation.png, or a free "
                   "interpolation-K.png)")
    q.set_defaults(func=cmd_interpolate)

    m = gsub.add_parser(
        "manipulate", help="add α·(attribute vector) to images' latents",
        description="Estimate an attribute vector (mean latent of images of a class minus "
        "that of the others) and decode z + α·v for each α: one row per image, one column "
        "per α, the original (α = 0) marked (Glow §5.3).",
        epilog=examples("tractable latent manipulate runs/glow --attribute 1 --alpha=-1..1 "
                        "--out grid.png",
                        "tractable latent manipulate runs/fglow --data fashion-mnist --attribute "
                        "Sneaker --alpha -2,-1,0,1,2 -n 4"))
    _common(m)
    m.add_argument("--attribute", required=True, metavar="CLASS",
                   help="class name or index whose presence is the attribute")
    m.add_argument("--alpha", default="-1..1", metavar="LO..HI|A,B,..",
                   help="a range (spread over --columns) or a comma list (default: -1..1)")
    m.add_argument("--columns", type=int, default=5, help="number of α values for a LO..HI "
                   "range")
    m.add_argument("-n", "--images", dest="n", type=int, default=8, metavar="IMAGES",
                   help="images to edit: a seeded random pick of those without the attribute")
    m.add_argument("--seed", type=int, default=0, help="seed of that pick")
    m.add_argument("--attr-images", type=int, default=2000, metavar="IMAGES",
                   help="images (the split's first) that estimate the attribute vector")
    m.add_argument("--out", metavar="PNG",
                   help="the grid's file (default manipulate.png, or a free manipulate-K.png)")
    m.set_defaults(func=cmd_manipulate)
    # let "--alpha -1..1" through: argparse would take "-1..1" for an unknown option
    m._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.]*\.\.")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("--data", help="dataset name (default: the run's dataset)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    weights_and_device_args(p)
    p.add_argument("--batch-size", type=int, default=256, metavar="IMAGES",
                   help="images per encode batch")
    data_source_args(p.add_argument_group("data"))


# ---- loading ----------------------------------------------------------------------------
def open_invertible(args: argparse.Namespace) -> tuple[Any, ImageSource]:
    """The invertible model of a run or model folder (eval mode), and its image source."""
    model, folder = open_model(args)
    if not isinstance(model, Invertible):
        raise ConfigError(f"{folder.model_dir}: " + missing(
            Invertible, "`tractable latent` (latent interpolation and attribute edits)",
            model.family))
    c, h, w = model.config.image_shape
    return model, ImageSource(args, folder, (int(c), int(h), int(w)))


def parse_alphas(text: str, columns: int) -> list[float]:
    """"-1..1" -> `columns` evenly spaced values; "-1,0,2" -> those; "0.5" -> [0.5]."""
    try:
        if ".." in text:
            lo, hi = (float(t) for t in text.split("..", 1))
            if columns < 2:
                raise ConfigError(f"--columns must be >= 2 for a range, got {columns}")
            return torch.linspace(lo, hi, columns).tolist()
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--alpha expects LO..HI, a comma list or a number, got {text!r}") \
            from None


# ---- commands ---------------------------------------------------------------------------
def cmd_interpolate(args: argparse.Namespace) -> int:
    from tractable.models.latents import interpolate
    from tractable.viz import save_grid

    if args.steps < 2:
        raise ConfigError(f"--steps must be >= 2, got {args.steps}")
    specs = [endpoint_spec(args, end) for end in ("a", "b")]
    out = output_path(args.out, "interpolation.png")
    model, images = open_invertible(args)
    ends = [images.endpoint(text, is_index) for text, is_index in specs]
    pair = torch.stack([image for image, _ in ends])
    device = next(model.parameters()).device
    with torch.no_grad():
        za, zb = (model.encode(x.to(device)) for x in pair.split(1))
        strip = model.decode(interpolate(za, zb, args.steps)).cpu()
    ts = torch.linspace(0, 1, args.steps).tolist()
    (_, name_a), (_, name_b) = ends
    names = [f"a: {name_a}", *(f"t={t:.2f}" for t in ts[1:-1]), f"b: {name_b}"]
    save_grid(strip, out, nrow=args.steps, col_labels=names, marks=[0, args.steps - 1])
    print(f"wrote a {args.steps}-image interpolation from {name_a} to {name_b} to {out}")
    return 0


def endpoint_spec(args: argparse.Namespace, end: str) -> tuple[str, bool | None]:
    """An interpolation end's (text, is_index): --index-X (True), --image-X (False) or the
    earlier --X (None: a file if one exists, else an index)."""
    index, image, either = (getattr(args, f"index_{end}", None),
                            getattr(args, f"image_{end}", None), getattr(args, end, None))
    if index is not None:
        return str(index), True
    if image is not None:
        return str(image), False
    if either is None:
        raise ConfigError(f"give the {'first' if end == 'a' else 'last'} image: --index-{end} "
                          f"N (image N of the dataset split) or --image-{end} FILE")
    return str(either), None


def cmd_manipulate(args: argparse.Namespace) -> int:
    from tractable.models.latents import attribute_vector, encode_batched, manipulate
    from tractable.viz import save_grid

    alphas = parse_alphas(args.alpha, args.columns)
    if not alphas or args.n < 1 or args.attr_images < 2 or args.batch_size < 1:
        raise ConfigError("need at least one --alpha, --images >= 1, --attr-images >= 2 and "
                          "--batch-size >= 1")
    if not all(math.isfinite(a) for a in alphas):
        raise ConfigError(f"--alpha values must be finite, got {args.alpha!r}")
    out = output_path(args.out, "manipulate.png")
    model, images = open_invertible(args)
    ds = images.dataset
    if not ds.has_labels:
        raise DataError(f"{ds.name} has no class labels: attribute vectors need labelled data")
    if tuple(ds.shape) != tuple(model.config.image_shape):
        raise ShapeError(f"{ds.name} images are {list(ds.shape)}, the model takes "
                         f"{list(model.config.image_shape)}")
    k = class_index(args.attribute, ds.class_names, len(ds.class_names), what="attribute")
    device = next(model.parameters()).device
    n = min(args.attr_images, len(ds))
    latents = encode_batched(model, ds.images[:n].to(device), args.batch_size, check=False)
    vector = attribute_vector(latents, ds.labels[:n] == k)
    others = (ds.labels != k).nonzero().flatten()
    pick = torch.randperm(len(others), generator=torch.Generator().manual_seed(args.seed))
    rows = others[pick[: args.n]].sort().values
    with torch.no_grad():
        edited = manipulate(model.encode(ds.images[rows].to(device)), vector, alphas)
        grid = model.decode(edited).cpu()
    names = [f"α={a:+.2g}" if abs(a) > 1e-12 else "α=0 (original)" for a in alphas]
    originals = [j for j, a in enumerate(alphas) if abs(a) <= 1e-12]
    if not originals:  # show the unedited images too, in a first column
        shape = grid.shape[1:]
        grid = torch.cat([ds.images[rows].unsqueeze(1),
                          grid.view(len(rows), len(alphas), *shape)], dim=1).flatten(0, 1)
        names, originals = ["original", *names], [0]
    cols = len(names)
    save_grid(grid, out, nrow=cols, col_labels=names,
              marks=[r * cols + j for r in range(len(rows)) for j in originals],
              title=f"attribute '{ds.class_names[k]}'")
    print(f"wrote {len(rows)} images x alpha {[round(a, 3) for a in alphas]} along "
          f"'{ds.class_names[k]}' (vector from {n} {ds.name} {args.split} images) to {out}")
    return 0
