"""`tractable convert`: turn other projects' checkpoints into tractable model folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from tractable.cli.common import examples
from tractable.errors import CheckpointError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("convert", help="convert another implementation's checkpoint",
                       epilog=examples("tractable convert openai-pixelcnn "
                                       "pxpp/params_cifar.ckpt --out models/pxpp"))
    kinds = p.add_subparsers(dest="source", required=True)
    o = kinds.add_parser(
        "openai-pixelcnn",
        help="openai/pixel-cnn's TensorFlow PixelCNN++ checkpoint (e.g. pxpp.zip, unzipped)",
        description="Read an openai/pixel-cnn TensorFlow (V2) checkpoint without TensorFlow "
        "and write a tractable model folder: model.safetensors (the Polyak averages), "
        "raw.safetensors (the trained weights), config.json.",
        epilog=examples("tractable convert openai-pixelcnn pxpp/params_cifar.ckpt "
                        "--out models/pxpp",
                        "tractable eval models/pxpp --data cifar10 --device cuda"))
    o.add_argument("checkpoint", metavar="CKPT",
                   help="the checkpoint prefix (e.g. params_cifar.ckpt), its .index file, "
                   "or the folder holding it")
    o.add_argument("--out", required=True, metavar="DIR", help="model folder to create")
    o.add_argument("--image-size", type=int, default=32, metavar="PIXELS",
                   help="height = width of the images the model is for (CIFAR-10: 32)")
    o.set_defaults(func=cmd_convert_openai)


def cmd_convert_openai(args: argparse.Namespace) -> int:
    from tractable.config import CONFIG_NAME
    from tractable.convert.openai_pixelcnn import convert_checkpoint, write_model_folder

    out = Path(args.out)
    if (out / CONFIG_NAME).exists():
        raise CheckpointError(f"{out} already holds a model; choose another --out")
    conversion = convert_checkpoint(args.checkpoint, image_size=args.image_size)
    write_model_folder(conversion, out, source=str(args.checkpoint))
    cfg = conversion.model.config
    print(f"converted {conversion.num_parameters:,} parameters (nr_resnet {cfg.nr_resnet}, "
          f"nr_filters {cfg.nr_filters}, nr_logistic_mix {cfg.nr_logistic_mix}, "
          f"{cfg.num_classes or 'no'} classes); skipped {len(conversion.skipped)} optimizer "
          f"variables")
    print(f"model folder: {out}  (Polyak averages in model.safetensors, raw weights in "
          "raw.safetensors)")
    return 0
