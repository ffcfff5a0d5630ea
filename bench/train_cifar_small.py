"""Train the small CIFAR-10 model that bench/compression.py compresses with.

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_cifar_small.py --out bench/runs/cifar-small

A PixelCNN++ with the "small" preset (nr_resnet 1, 32 filters, 5 logistics, no dropout),
unconditional, trained on the first 3,500 images of CIFAR-10's first training batch (the
first 4,000 images, ../shared/data/cifar10-first4000); images 3,500..3,999 are held out and
are what the compression bench codes. A CPU model of a few thousand steps: its bits/dim are
far from the paper's 2.92, but the rate gap it is measured for does not depend on that.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN_IMAGES = 3500
HELD_OUT = slice(3500, 4000)


def cifar_first4000(shared: str | Path = SHARED):
    """The first 4,000 CIFAR-10 training images (the first batch's), with labels."""
    from tractable.data import load_dataset

    return load_dataset("cifar10", "train", root=Path(shared) / "cifar10-first4000",
                        batches=[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/runs/cifar-small")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shared", default=str(SHARED), help="the shared data folder")
    args = p.parse_args()

    from tractable.data.base import ImageDataset
    from tractable.training.api import train
    from tractable.training.config import TrainConfig

    ds = cifar_first4000(args.shared)
    train_set = ImageDataset(ds.images[:TRAIN_IMAGES].clone(), ds.labels[:TRAIN_IMAGES].clone(),
                             ds.class_names, "cifar10-first3500")
    test_set = ImageDataset(ds.images[HELD_OUT].clone(), ds.labels[HELD_OUT].clone(),
                            ds.class_names, "cifar10-first3500")
    cfg = TrainConfig(data="cifar10-first3500", out=args.out, max_steps=args.steps,
                      batch_size=args.batch_size, eval_every=args.steps, log_every=100,
                      checkpoint_every=500, progress=False, samples_per_eval=4)
    summary = train("pixelcnn++", cfg, preset="small", train_set=train_set, test_set=test_set)
    print(summary)


if __name__ == "__main__":
    main()
