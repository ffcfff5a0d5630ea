"""Lossless compression with the models vs standard codecs (`tractable.compression`).

    OMP_NUM_THREADS=1 .venv/bin/python bench/compression.py --shared ../shared/data \
        --cifar-model bench/runs/cifar-small [--sets mnist,fashion,cifar]

For each image set: the model's bits/dim (exact, the parallel forward pass), the size of
the file `model.compress` writes (header, labels and all) as bits/dim and its gap to the
model's, then per-image PNG (Pillow, optimize), WebP lossless (Pillow, method 6) and
JPEG-XL lossless (imagecodecs, effort 7), and gzip -9 / xz -9 of the whole set's raw
pixels, concatenated (an advantage for them: one stream over all images). Seconds per
image to encode and to decode, with 64 images per coded batch and with 1.

Sets: the first N of the mnist-mini test split with `pretrained:pixelcnn++-mnist`, the
first N of the Fashion-MNIST test set with `pretrained:pixelcnn++-fashion-mnist`, and the
first N of CIFAR-10 images 3,500..3,999 of the first 4,000 (../shared/data), held out from
a small CIFAR model trained on the first 3,500 (`train_cifar_model`: the PixelCNN++
"small" preset, unconditional, batch 16, `--cifar-steps` steps; trained here first if
`--cifar-model` does not exist yet). Every decode is checked to give back the very pixels.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import math
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CIFAR_TRAIN = slice(0, 3500)
CIFAR_HELD_OUT = slice(3500, 4000)


def cifar_first4000(shared: str | Path):
    """The first 4,000 CIFAR-10 training images (the first batch's), with labels."""
    from tractable.data import load_dataset

    return load_dataset("cifar10", "train", root=Path(shared) / "cifar10-first4000",
                        batches=[1])


def train_cifar_model(out: Path, shared: str | Path, steps: int) -> None:
    """A small PixelCNN++ on the first 3,500 CIFAR-10 images; 3,500..3,999 held out."""
    from tractable.data.base import ImageDataset
    from tractable.training.api import train
    from tractable.training.config import TrainConfig

    ds = cifar_first4000(shared)
    parts = [ImageDataset(ds.images[rows].clone(), ds.labels[rows].clone(), ds.class_names,
                          "cifar10-first3500") for rows in (CIFAR_TRAIN, CIFAR_HELD_OUT)]
    cfg = TrainConfig(data="cifar10-first3500", out=str(out), max_steps=steps, batch_size=16,
                      eval_every=steps, log_every=100, checkpoint_every=500, progress=False,
                      samples_per_eval=4)
    train("pixelcnn++", cfg, preset="small", train_set=parts[0], test_set=parts[1])


def image_sets(args: argparse.Namespace) -> list[tuple[str, str, torch.Tensor, torch.Tensor]]:
    """(name, model, images, labels) of each set asked for."""
    from tractable.data import load_dataset

    sets = []
    for name in args.sets.split(","):
        if name == "mnist":
            ds = load_dataset("mnist-mini", "test")
            sets.append(("mnist-mini test", "pretrained:pixelcnn++-mnist",
                         ds.images[:args.n_mnist], ds.labels[:args.n_mnist]))
        elif name == "fashion":
            ds = load_dataset("fashion-mnist", "test", root=Path(args.shared) / "fashion-mnist")
            sets.append(("Fashion-MNIST test", "pretrained:pixelcnn++-fashion-mnist",
                         ds.images[:args.n_fashion], ds.labels[:args.n_fashion]))
        elif name == "cifar":
            if not Path(args.cifar_model).exists():
                train_cifar_model(Path(args.cifar_model), args.shared, args.cifar_steps)
            ds = cifar_first4000(args.shared)
            x = ds.images[CIFAR_HELD_OUT][:args.n_cifar]
            y = ds.labels[CIFAR_HELD_OUT][:args.n_cifar]
            sets.append(("CIFAR-10 held-out", args.cifar_model, x, y))
        else:
            raise SystemExit(f"unknown set {name!r}")
    return sets


def codec_bytes(x: torch.Tensor) -> dict[str, int]:
    """Bytes of each standard lossless codec over the images `x` `[N, C, H, W]`."""
    import imagecodecs
    from PIL import Image

    arrays = [img.permute(1, 2, 0).numpy() for img in x]
    arrays = [a[:, :, 0] if a.shape[2] == 1 else a for a in arrays]
    sizes = {"png": 0, "webp": 0, "jxl": 0}
    for a in arrays:
        for fmt, kwargs in [("png", {"format": "PNG", "optimize": True}),
                            ("webp", {"format": "WEBP", "lossless": True, "method": 6,
                                      "quality": 100})]:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, **kwargs)
            sizes[fmt] += len(buf.getvalue())
        coded = imagecodecs.jpegxl_encode(a, lossless=True, effort=7)
        assert np.array_equal(imagecodecs.jpegxl_decode(coded), a)
        sizes["jxl"] += len(coded)
    raw = x.numpy().tobytes()
    sizes["gzip"] = len(gzip.compress(raw, 9))
    sizes["xz"] = len(lzma.compress(raw, preset=9))
    return sizes


def timed_round_trip(model, x, y, batch: int) -> tuple[bytes, float, float]:
    import tractable

    start = time.perf_counter()
    data = model.compress(x, y, batch=batch)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    back, y_back = tractable.decompress(data, model)
    decode = time.perf_counter() - start
    assert torch.equal(back, x) and (y_back is None or torch.equal(y_back, y)), "not lossless"
    return data, encode / len(x), decode / len(x)


def measure(name: str, ref: str, x: torch.Tensor, y: torch.Tensor, batch1: int) -> dict:
    import tractable
    from tractable.compression import read_header

    model = tractable.load(ref)
    y = y if model.config.num_classes else None
    dims = x.numel()
    with torch.no_grad():
        model_bits = sum(float(-model.log_prob(x[i:i + 100], None if y is None else
                                               y[i:i + 100]).sum())
                         for i in range(0, len(x), 100)) / math.log(2.0)
    data, enc64, dec64 = timed_round_trip(model, x, y, 64)
    _, enc1, dec1 = timed_round_trip(model, x[:batch1], None if y is None else y[:batch1], 1)
    header = read_header(data)
    row = {"set": name, "model": ref, "images": len(x), "shape": list(x.shape[1:]),
           "model_bpd": model_bits / dims, "file_bpd": 8 * len(data) / dims,
           "file_bytes": len(data), "header_bytes": len(data) - sum(header.chunks),
           "label_bpd": (len(x) * math.log2(model.config.num_classes) / dims
                         if y is not None else 0.0),
           "encode_s_b64": enc64, "decode_s_b64": dec64, "encode_s_b1": enc1,
           "decode_s_b1": dec1, "batch1_images": batch1}
    row["gap"] = row["file_bpd"] / row["model_bpd"] - 1
    coded = 8 * (len(data) - row["header_bytes"]) / dims - row["label_bpd"]
    row["pixel_gap"] = coded / row["model_bpd"] - 1  # pixels only: no header, no labels
    row.update({f"{k}_bpd": 8 * v / dims for k, v in codec_bytes(x).items()})
    return row


def table(rows: list[dict]) -> str:
    lines = ["| set (images) | model bits/dim | file bits/dim | gap (pixels only) | PNG | WebP "
             "| JPEG-XL | gzip | xz | encode s/img (b64 / b1) | decode s/img (b64 / b1) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['set']} ({r['images']}) | {r['model_bpd']:.4f} | {r['file_bpd']:.4f} | "
            f"{100 * r['gap']:+.2f}% ({100 * r['pixel_gap']:+.2f}%) | {r['png_bpd']:.3f} | "
            f"{r['webp_bpd']:.3f} | {r['jxl_bpd']:.3f} | {r['gzip_bpd']:.3f} | {r['xz_bpd']:.3f} | "
            f"{r['encode_s_b64']:.2f} / {r['encode_s_b1']:.1f} | "
            f"{r['decode_s_b64']:.2f} / {r['decode_s_b1']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="mnist,fashion,cifar")
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"),
                   help="the shared data folder (Fashion-MNIST, CIFAR-10 first 4,000)")
    p.add_argument("--cifar-model", default=str(REPO / "bench" / "runs" / "cifar-small"),
                   help="a small CIFAR model (run) folder; trained first if missing")
    p.add_argument("--cifar-steps", type=int, default=1000)
    p.add_argument("--n-mnist", type=int, default=500)
    p.add_argument("--n-fashion", type=int, default=500)
    p.add_argument("--n-cifar", type=int, default=200)
    p.add_argument("--batch1-images", type=int, default=3,
                   help="images coded one per batch for the batch-1 timings")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, ref, x, y in image_sets(args):
        rows.append(measure(name, ref, x, y, args.batch1_images))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
