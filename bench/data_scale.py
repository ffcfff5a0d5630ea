"""Data at scale: a dataset larger than a process should hold, shared by the processes of a node.

Builds a large dataset from real images (the shipped CIFAR-10 images and Fashion-MNIST
articles, padded to 32x32 and repeated to RGB, cycled to `--images` images) in the official
downsampled-ImageNet npz format, then measures, for 1 process and for 2 `torchrun` processes
(gloo, CPU), through the real trainer:

- preparation: wall time of the first `load_dataset` (one process converts, the other
  waits on the lock), and the builder's peak resident memory while converting;
- start-up to the first step: from launching the command to the end of the first optimizer
  step, once the prepared copy exists (and the part spent opening the data); the trainers
  run eager (`compile=False`), since this measures the data path, not the compiler's
  warm-up that long compiled runs add (bench/train_throughput.py --warm-up);
- peak resident memory per process while training and evaluating (VmHWM reset after the
  data is open), against the dataset's size;
- training img/s, and the ratio of the mapped path to today's in-memory path on a dataset
  that fits (the 74,000 base images), timed in one process in interleaved rounds.

Everything is written under `--work` (default bench/out/data_scale, git-ignored) and deleted
at the end unless `--keep`.

    python bench/data_scale.py [--images 2500000] [--steps 40] [--batch 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TINY = {"nr_resnet": 1, "nr_filters": 8, "nr_logistic_mix": 2, "dropout": 0.0}
BATCH_FILES = 10  # the official ImageNet32 training set is ten npz batches


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


# ---- the data --------------------------------------------------------------------------------
def base_images():
    """74,000 real images as uint8 [N, 3, 32, 32] and labels 0..19."""
    import numpy as np

    from tractable.data import load_dataset

    cifar = load_dataset("cifar10", "train", root=SHARED / "cifar10-first4000", batches=[1],
                         prepared=False)
    parts, labels = [cifar.images.numpy()], [cifar.labels.numpy()]
    for split in ("train", "test"):
        fm = load_dataset("fashion-mnist", split, root=SHARED / "fashion-mnist",
                          prepared=False).images.numpy()
        padded = np.pad(fm, ((0, 0), (0, 0), (2, 2), (2, 2)))
        parts.append(np.repeat(padded, 3, axis=1))
        labels.append(load_dataset("fashion-mnist", split, root=SHARED / "fashion-mnist",
                                   prepared=False).labels.numpy() + 10)
    return np.concatenate(parts), np.concatenate(labels)


def write_npz_dataset(folder: Path, n: int, files: int, val: int) -> float:
    """`n` training images in `files` npz batches + `val` validation images; returns GB."""
    import numpy as np

    x, y = base_images()
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for b in range(1, files + 1):
        count = n // files + (1 if b <= n % files else 0)
        rows = np.arange(start, start + count) % len(x)
        np.savez(folder / f"train_data_batch_{b}.npz", data=x[rows].reshape(count, -1),
                 labels=y[rows] + 1)
        start += count
    rows = np.arange(val) % len(x)
    np.savez(folder / "val_data.npz", data=x[rows].reshape(val, -1), labels=y[rows] + 1)
    return n * 3 * 32 * 32 / 1e9


# ---- one training process (run directly or under torchrun) -------------------------------------
def worker(args: argparse.Namespace) -> None:
    t_launch = float(os.environ.get("BENCH_T0", time.time()))
    import torch

    from tractable.data import load_dataset
    from tractable.evaluation import evaluate_bpd
    from tractable.training import TrainConfig, Trainer, make_model
    from tractable.training.distributed import teardown

    torch.set_num_threads(1)
    t0 = time.time()  # imports done
    opts = {"root": args.root, "progress": False}
    train = load_dataset("imagenet32", "train", prepared=args.mode == "mapped",
                         batches=list(range(1, args.files + 1)), **opts)
    test = load_dataset("imagenet32", "test", prepared=args.mode == "mapped", **opts)
    t_data = time.time()
    prep_hwm = vm_hwm_mb()
    reset_hwm()
    model = make_model("pixelcnn++", train, 0, overrides=TINY)
    cfg = TrainConfig(batch_size=args.batch, max_steps=10**9, samples_per_eval=0, compile=False,
                      progress=False, quiet=True, device="cpu", init_batch_size=args.batch)
    trainer = Trainer(model, train, None, cfg)
    t_setup = time.time()
    trainer._train_step()
    t_first = time.time()
    for _ in range(args.steps - 1):
        trainer._train_step()
    t_steps = time.time()
    bpd = evaluate_bpd(trainer.ema.model, test, batch_size=64, rank=trainer.env.rank,
                       world_size=trainer.env.world_size)
    row = {"rank": trainer.env.rank, "world": trainer.env.world_size, "mode": args.mode,
           "n": len(train), "data_s": t_data - t0, "startup_s": t_first - t_launch,
           "parts": [t0 - t_launch, t_data - t0, t_setup - t_data, t_first - t_setup],
           "img_s": (args.steps - 1) * args.batch / (t_steps - t_first),
           "hwm_mb": vm_hwm_mb(), "prep_hwm_mb": prep_hwm, "test_bpd": bpd.bits_per_dim,
           "eval_images": bpd.num_images}
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    teardown(trainer.env)


def launch(args: argparse.Namespace, root: Path, mode: str, procs: int, files: int,
           out: Path) -> list[dict]:
    out.unlink(missing_ok=True)
    cmd = [str(REPO / "bench" / "data_scale.py"), "--worker", "--root", str(root),
           "--mode", mode, "--files", str(files), "--steps", str(args.steps),
           "--batch", str(args.batch), "--out", str(out)]
    if procs == 1:
        cmd = [sys.executable, *cmd]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={procs}", *cmd]
    env = {**os.environ, "BENCH_T0": repr(time.time()), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(cmd, env=env, check=True)
    return [json.loads(line) for line in out.read_text().splitlines()]


# ---- mapped vs in-memory img/s in one process -------------------------------------------------
def ab_throughput(root: Path, batch: int, steps: int, rounds: int) -> tuple[float, float]:
    import torch

    from tractable.data import load_dataset
    from tractable.training import TrainConfig, Trainer, make_model

    torch.set_num_threads(1)
    trainers = {}
    for mode in ("memory", "mapped"):
        ds = load_dataset("imagenet32", "train", root=root, batches=[1],
                          prepared=mode == "mapped", progress=False)
        model = make_model("pixelcnn++", ds, 0, overrides=TINY)
        cfg = TrainConfig(batch_size=batch, max_steps=10**9, samples_per_eval=0, compile=False,
                          progress=False, quiet=True, device="cpu", init_batch_size=batch)
        trainers[mode] = Trainer(model, ds, None, cfg)
    times: dict[str, list[float]] = {m: [] for m in trainers}
    for t in trainers.values():
        t._train_step()
    order = list(trainers)
    for r in range(rounds):
        for m in order if r % 2 == 0 else order[::-1]:  # neither always runs first
            t = trainers[m]
            s = time.perf_counter()
            for _ in range(steps):
                t._train_step()
            times[m].append((time.perf_counter() - s) / steps)
    return batch / statistics.median(times["memory"]), batch / statistics.median(times["mapped"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2_500_000)
    p.add_argument("--steps", type=int, default=40, help="training steps per run")
    p.add_argument("--batch", type=int, default=8, help="global batch")
    p.add_argument("--rounds", type=int, default=7, help="interleaved A/B rounds")
    p.add_argument("--val", type=int, default=2000, help="test images evaluated per run")
    p.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "data_scale")
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="mapped", help=argparse.SUPPRESS)
    p.add_argument("--files", type=int, default=BATCH_FILES, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    work = args.work.resolve()
    os.environ["TRACTABLE_PREPARED"] = str(work / "prepared")
    big, fits = work / "big", work / "fits"
    try:
        t = time.time()
        gb = write_npz_dataset(big, args.images, BATCH_FILES, args.val)
        write_npz_dataset(fits, 74_000, 1, args.val)
        print(f"# generated {args.images:,} real 3x32x32 images ({gb:.2f} GB of pixels) in "
              f"{BATCH_FILES} npz batches in {time.time() - t:.0f} s; torch CPU, 1 thread "
              f"per process, tiny PixelCNN++ (nr_filters 8), global batch {args.batch}")
        rows = []
        for procs in (1, 2):
            shutil.rmtree(work / "prepared", ignore_errors=True)
            first = launch(args, big, "mapped", procs, BATCH_FILES, work / "first.jsonl")
            again = launch(args, big, "mapped", procs, BATCH_FILES, work / "again.jsonl")
            rows.append((procs, first, again))
        from tractable.data import load_dataset

        for split in ("train", "test"):  # the in-memory comparison starts from a prepared copy
            load_dataset("imagenet32", split, root=fits, batches=[1] if split == "train" else None,
                         progress=False)
        mem_fits = launch(args, fits, "memory", 1, 1, work / "memfits.jsonl")
        map_fits = launch(args, fits, "mapped", 1, 1, work / "mapfits.jsonl")
        ips_mem, ips_map = ab_throughput(fits, args.batch, max(4, args.steps // 4), args.rounds)
        size_mb = gb * 1000
        print("\n| processes | dataset | preparation (s) | builder's peak RSS preparing (MB) | "
              "start-up to 1st step (s) | = import / open data / model + init / 1st step (s) | "
              "peak RSS per process (MB) | RSS / dataset | img/s per process |")
        print("|---|---|---|---|---|---|---|---|---|")
        for procs, first, again in rows:
            prep = max(r["data_s"] for r in first)
            builder = max(r["prep_hwm_mb"] for r in first)
            start = max(r["startup_s"] for r in again)
            slowest = max(again, key=lambda r: r["startup_s"])
            opening = " / ".join(f"{v:.2f}" for v in slowest["parts"])
            hwm = max(r["hwm_mb"] for r in again)
            ips = statistics.mean(r["img_s"] for r in again)
            print(f"| {procs} | {args.images:,} images, {gb:.2f} GB | {prep:.1f} | "
                  f"{builder:.0f} | {start:.1f} | {opening} | {hwm:.0f} | "
                  f"{hwm / size_mb:.3f} | {ips:.1f} |")
        for label, r in (("in memory", mem_fits[0]), ("prepared, mapped", map_fits[0])):
            parts = " / ".join(f"{v:.2f}" for v in r["parts"])
            print(f"| 1 | 74,000 images, 0.23 GB, {label} | - | - | {r['startup_s']:.1f} | "
                  f"{parts} | {r['hwm_mb']:.0f} | {r['hwm_mb'] / 227:.2f} | {r['img_s']:.1f} |")
        print(f"\nimg/s in one process, {args.rounds} interleaved rounds (median): in memory "
              f"{ips_mem:.1f}, mapped {ips_map:.1f}, ratio mapped / in memory "
              f"{ips_map / ips_mem:.3f}")
        print(f"evaluation streamed over {rows[0][2][0]['eval_images']} test images in each "
              f"run (2 processes: a shard each)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
