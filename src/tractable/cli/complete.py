"""`tractable complete`: the model finishes occluded images (PixelRNN, Fig. 1).

    tractable complete RUN --image 7 --rows 14 -n 8 --out grid.png
    tractable complete RUN --image digit.png --image 12 --rows 10 --cols 5 --class 3

Each `--image` (a test-set index of the run's dataset, or an image file of the model's
size) becomes one row of the grid: the original, the occluded input the model sees
(unknown pixels grey) and `-n` completions, labelled. Wraps `model.complete`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch import Tensor

from tractable.cli.common import data_source_args, examples, weights_and_device_args
from tractable.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "complete", help="complete occluded images (Completable models: the autoregressive "
        "ones)",
        description="Keep the first rows of each image (raster order) and let the model draw "
        "the rest: a grid of original, occluded input and completions per image "
        "(PixelRNN Fig. 1).",
        epilog=examples("tractable complete runs/mnist --image 7 --rows 14 -n 8 --out grid.png",
                        "tractable complete runs/mnist --image me.png --rows 10 --cols 5 "
                        "--class 3"))
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("--image", action="append", required=True, metavar="PATH_OR_INDEX",
                   help="an image file, or an index into --split of the run's dataset "
                        "(repeat for more rows)")
    p.add_argument("--rows", type=int, required=True, metavar="ROWS",
                   help="image rows to keep (from the top)")
    p.add_argument("--cols", type=int, default=0, metavar="PIXELS",
                   help="pixels of the next row to keep too")
    p.add_argument("-n", type=int, default=8, metavar="IMAGES", help="completions per image")
    p.add_argument("--class", dest="class_spec", metavar="SPEC",
                   help="3 | cat | 4:0.5,9:0.5, for every row: it overrides the dataset images' "
                   "own labels (unset: each dataset image's own label)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="of the likelihood; 1 = the model itself")
    p.add_argument("--seed", type=int, default=0, help="of the sampler's generator")
    p.add_argument("--data", help="dataset of index images (unset: the run's dataset)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    weights_and_device_args(p)
    p.add_argument("--out", default="completions.png", metavar="PNG", help="the grid's file")
    data_source_args(p.add_argument_group("data"))
    p.set_defaults(func=cmd_complete)


def labels_for(model: Any, args: argparse.Namespace, found: list[int | None]) -> Tensor | None:
    """The y of each row: --class for all, else each dataset image's own label."""
    from tractable.cli.classes import class_labels, parse_class_spec

    cfg = model.config
    if args.class_spec is not None:
        if args.class_spec.strip() == "all":
            raise ConfigError("--class all draws a row per class, which completion has no "
                              "room for: give one class or a blend (3, cat, 4:0.5,9:0.5)")
        y, _, _ = parse_class_spec(args.class_spec, len(found), cfg.num_classes,
                                   list(cfg.class_names))
        names = class_labels(cfg)
        overridden = [names[k] for k, yk in zip(found, y, strict=True)
                      if k is not None and (y.dim() == 2 or int(yk) != k)]
        if overridden:
            print(f"note: --class {args.class_spec} conditions every row, overriding the "
                  f"dataset images' own labels ({', '.join(overridden)}); leave --class out "
                  "to complete each image as its own class", file=sys.stderr)
        return y
    if not cfg.num_classes:
        return None
    if any(k is None for k in found):
        raise ConfigError("this model is class-conditional: pass --class for image files")
    return torch.tensor(found, dtype=torch.long)


def cmd_complete(args: argparse.Namespace) -> int:
    from tractable.cli.common import open_model
    from tractable.cli.images import ImageSource
    from tractable.models.capabilities import Completable, missing
    from tractable.sampling.prefix import raster_prefix_length
    from tractable.viz import occlude, save_labelled_grid

    if args.n < 1:
        raise ConfigError(f"-n must be >= 1, got {args.n}")
    model, folder = open_model(args)
    model_dir = folder.model_dir
    if not isinstance(model, Completable):
        raise ConfigError(f"{model_dir}: " + missing(Completable, "completion", model.family))
    c, h, w = model.config.image_shape
    shape = (int(c), int(h), int(w))
    pixels = raster_prefix_length(shape, args.rows, args.cols)
    images = ImageSource(args, folder, shape)
    x = torch.stack([images.image(spec) for spec in args.image])
    y = labels_for(model, args, [images.label(spec) for spec in args.image])
    device = next(model.parameters()).device
    done = model.complete(x.to(device), rows=args.rows, cols=args.cols, n=args.n,
                          y=None if y is None else y.to(device),
                          temperature=args.temperature,
                          generator=torch.Generator(device=device).manual_seed(args.seed))
    seen = model.as_seen(x)
    rows = torch.cat([x[:, None], occlude(seen, pixels)[:, None],
                      done.cpu().view(len(x), args.n, *shape)], dim=1)
    labels = ["original", "occluded"] + [f"#{i + 1}" for i in range(args.n)]
    save_labelled_grid(rows, labels, args.out)
    print(f"wrote {args.n} completions of {len(x)} image(s) (first {args.rows} rows"
          f"{f' + {args.cols} pixels' if args.cols else ''} kept) from {model_dir} to {args.out}")
    return 0
