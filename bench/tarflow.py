"""TarFlow against Glow and PixelCNN++ at equal compute, and TarFlow's sampling speed.

Equal compute is measured as the same number of training images seen (the CPU this runs
on is shared, so wall-clock budgets are not comparable between runs): each family at its
`small` preset, class-conditional, batch 16, its paper's optimizer settings
(`training_defaults`), trained by the project's trainer for `--images` images, then its
Polyak-averaged weights scored on the held-out images (bits/dim, one uniform
dequantization draw for the flows, seed 0).

Data: mnist-mini (9,000 train / its 1,000 test digits) and the first 4,000 CIFAR-10
training images of ../shared/data, of which the first 3,500 train and the last 500 are
held out as the test set.

    python bench/tarflow.py train --family tarflow --data mnist --images 48000   # one run
    python bench/tarflow.py table                  # the table of every finished run
    python bench/tarflow.py sampling [--n 16]      # seconds per image, cached vs naive vs Glow

Runs go to bench/out/tarflow/<family>-<data> (git-ignored); a finished run is not redone.
Run each `train` as its own single-threaded process (OMP_NUM_THREADS=1), in parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from tractable.data import load_dataset
from tractable.data.base import ImageDataset
from tractable.training.api import resume, train
from tractable.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "tarflow"
SHARED = [os.environ.get("TRACTABLE_SHARED_DATA"), REPO.parent / "shared" / "data",
          "/work/shared/data"]
FAMILIES = ("tarflow", "glow", "pixelcnn++")
HELD_OUT = 500


def cifar_first_4000() -> tuple[ImageDataset, ImageDataset]:
    """The first 3,500 of the shipped 4,000 CIFAR-10 images to train, the last 500 to test."""
    for root in SHARED:
        folder = Path(root or "") / "cifar10-first4000"
        if root and (folder / "cifar-10-batches-py" / "data_batch_1").is_file():
            ds = load_dataset("cifar10", "train", root=folder, batches=[1], prepared=False)
            cut = len(ds.images) - HELD_OUT
            return (ImageDataset(ds.images[:cut], ds.labels[:cut], ds.class_names, "cifar10"),
                    ImageDataset(ds.images[cut:], ds.labels[cut:], ds.class_names, "cifar10"))
    raise SystemExit("the CIFAR-10 first-4000 images are not in ../shared/data")


def run_dir(family: str, data: str) -> Path:
    return OUT / f"{family.replace('+', 'p')}-{data}"


def train_one(family: str, data: str, images: int, batch: int, seed: int) -> None:
    out = run_dir(family, data)
    steps = images // batch
    summary = out / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("step", 0) >= steps:
        print(f"{out} is finished; delete it to redo it")
        return
    sets = cifar_first_4000() if data == "cifar" else (None, None)
    if (out / "state.pt").is_file():  # an interrupted run: continue it to this budget
        resume(out, changes={"max_steps": steps, "eval_every": max(steps // 2, 1)},
               train_set=sets[0], test_set=sets[1])
        return
    common = dict(out=str(out), max_steps=steps, batch_size=batch, seed=seed, compile=False,
                  eval_every=max(steps // 2, 1), samples_per_eval=0, checkpoint_every=250,
                  progress=False)
    if data == "mnist":
        cfg = TrainConfig(data="mnist-mini", **common)  # type: ignore[arg-type]
        train(family, cfg, preset="small", conditional=True, overwrite=True)
    else:
        tr, te = sets
        cfg = TrainConfig(data="cifar10-first3500", **common)  # type: ignore[arg-type]
        train(family, cfg, preset="small", conditional=True, train_set=tr, test_set=te,
              overwrite=True)


def test_set(data: str) -> ImageDataset:
    return load_dataset("mnist-mini", "test") if data == "mnist" else cifar_first_4000()[1]


def final_bpd(out: Path, data: str, step: int, evals: list[dict]) -> float:
    """The test bits/dim of the run's last saved Polyak weights: the trainer's own eval at
    that step, else evaluated here (a run stopped between evaluations)."""
    if evals and evals[-1]["step"] == step:
        return float(evals[-1]["test_bpd"])
    from tractable.evaluation import evaluate_bpd
    from tractable.models import load

    torch.manual_seed(0)
    return float(evaluate_bpd(load(out), test_set(data), batch_size=100))


def table() -> None:
    print("| data | family | params | images seen | wall s (shared CPU) | test bits/dim | "
          "test bits/dim at each evaluation (images seen) |")
    print("|---|---|---:|---:|---:|---:|---|")
    for data in ("mnist", "cifar"):
        for family in FAMILIES:
            out = run_dir(family, data)
            if not (out / "summary.json").is_file():
                continue
            s = json.loads((out / "summary.json").read_text())
            rows = [json.loads(line) for line in
                    (out / "metrics.jsonl").read_text().splitlines()]
            evals = [r for r in rows if r["kind"] == "eval" and r.get("test_bpd") is not None]
            run = json.loads((out / "run.json").read_text())
            batch = run["train"]["batch_size"]
            state = torch.load(out / "state.pt", map_location="cpu", weights_only=False)
            step = int(state.get("step", s["step"]))
            curve = ", ".join(f"{r['test_bpd']:.3f} ({r['step'] * batch:,})" for r in evals)
            bpd = final_bpd(out, data, step, evals)
            print(f"| {data} | {family} | {s['parameters']:,} | {step * batch:,} | "
                  f"{s['elapsed_s']:.0f} | **{bpd:.3f}** | {curve} |", flush=True)


def sampling(n: int) -> None:
    from tractable.models import Glow, GlowConfig, TarFlow, TarFlowConfig
    from tractable.sampling import sample_with

    torch.manual_seed(0)
    tf = TarFlow(TarFlowConfig(image_shape=(1, 28, 28), num_classes=10,
                               **TarFlow.presets["small"])).eval()
    glow = Glow(GlowConfig(image_shape=(1, 28, 28), num_classes=10,
                           **Glow.presets["small"])).eval()
    glow.data_dependent_init(load_dataset("mnist-mini", "train").images[:64])
    y = torch.arange(n) % 10
    # the time per image depends on the architecture, not on the weights' values
    cases = [("tarflow, flow-cached", tf, "flow-cached"), ("tarflow, flow-naive", tf,
                                                           "flow-naive"),
             ("glow, prior", glow, "prior")]
    print(f"sampling {n} images, 1x28x28, small presets, {torch.get_num_threads()} thread(s)")
    print("| model, sampler | seconds per image | CPU s per image |")
    print("|---|---|---|")
    times = {}
    for name, model, sampler in cases:
        sample_with(model, 2, sampler=sampler, y=y[:2])  # warm-up
        w0, c0 = time.perf_counter(), time.process_time()
        sample_with(model, n, sampler=sampler, y=y, generator=torch.Generator().manual_seed(0))
        wall, cpu = (time.perf_counter() - w0) / n, (time.process_time() - c0) / n
        times[name] = cpu
        print(f"| {name} | {wall:.4f} | {cpu:.4f} |")
    cached = times["tarflow, flow-cached"]
    print(f"naive / cached (CPU time): {times['tarflow, flow-naive'] / cached:.1f}x; "
          f"tarflow cached / glow: {cached / times['glow, prior']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--family", choices=FAMILIES, required=True)
    t.add_argument("--data", choices=("mnist", "cifar"), required=True)
    t.add_argument("--images", type=int, required=True)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--seed", type=int, default=0)
    sub.add_parser("table")
    s = sub.add_parser("sampling")
    s.add_argument("--n", type=int, default=16)
    args = parser.parse_args()
    if args.cmd == "train":
        train_one(args.family, args.data, args.images, args.batch, args.seed)
    elif args.cmd == "table":
        table()
    else:
        sampling(args.n)


if __name__ == "__main__":
    main()
