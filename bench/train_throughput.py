"""Training throughput (images/s) of PixelCNN++ through the real trainer, by numerics mode.

Each row times full optimizer steps of `tractable.training.Trainer` (batch → loss →
backward → grad norm → Adam → EMA) on real images: the bundled MNIST digits for the
"small" preset (1×28×28) and the first CIFAR-10 batch from ../shared/data for the "paper"
preset (3×32×32). Modes: float32 eager (the baseline), channels_last, bfloat16 autocast,
and torch.compile on top. The ratio column is img/s over float32 eager of the same
configuration, all measured in this one run: the modes are timed in interleaved rounds and
each reports its median, so a change of machine load affects every mode alike.

    python bench/train_throughput.py [--configs small paper] [--steps 2] [--rounds 3]
        [--warmup 2] [--batch-small 32] [--batch-paper 8] [--modes fp32 bf16-cl ...]
        [--threads N] [--clock wall|cpu]

`--against DIR` instead compares the *default* trainer (TrainConfig's defaults: what a user
gets without flags) of this checkout with that of another checkout DIR (e.g. a worktree of
an older commit): one worker process per checkout and configuration, each importing its own
`DIR/src`, built and warmed up once, then told to run `--steps` steps in alternation for
`--rounds` rounds; each row is the median, the ratio is this checkout over DIR.

`--warm-up` measures what compiling costs and saves, per configuration, in one process:
the wall time of the first steps of a compiled trainer (the compiler's warm-up) and the
steady seconds per step of eager and compiled trainers in interleaved rounds, then the
break-even run length warm-up / (eager - compiled): the evidence behind the family's
`compile_after_steps(device)` (the run length from which training compiles by default).

`--mfu` counts the FLOPs of one training step of the paper configuration
(`torch.utils.flop_counter.FlopCounterMode`: convolutions and matmuls, forward and
backward) and measures this CPU's float32 matmul peak (a large square matmul), then prints
the fraction of that peak the default training step reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tractable.data import load_dataset
from tractable.evaluation.bpd import labels_for
from tractable.training import TrainConfig, Trainer, make_model

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-first4000"

# name -> (precision, channels_last, compile)
MODES = {
    "fp32": ("fp32", False, False),
    "fp32-cl": ("fp32", True, False),
    "bf16": ("bf16", False, False),
    "bf16-cl": ("bf16", True, False),
    "fp32-cl-compile": ("fp32", True, True),
    "bf16-cl-compile": ("bf16", True, True),
}


def data_for(config: str):
    if config == "small":
        return load_dataset("mnist-mini", "train"), "mnist-mini"
    root = Path(os.environ.get("TRACTABLE_CIFAR_ROOT", CIFAR))
    return load_dataset("cifar10", "train", root=root, batches=[1]), "cifar10 (first 4000)"


def make_trainer(config: str, mode: str, batch: int) -> Trainer:
    precision, channels_last, compile_ = MODES[mode]
    data, _ = data_for(config)
    model = make_model("pixelcnn++", data, seed=0, preset=config)
    cfg = TrainConfig(batch_size=batch, precision=precision, channels_last=channels_last,
                      compile=compile_, max_steps=10**9, samples_per_eval=0, progress=False,
                      quiet=True, device="cpu")
    return Trainer(model, data, None, cfg)


def seconds_per_step(trainer: Trainer, steps: int, clock=time.perf_counter) -> float:
    start = clock()
    for _ in range(steps):
        trainer._train_step()
    return (clock() - start) / steps


def measure(config: str, modes: list[str], batch: int, steps: int, warmup: int,
            rounds: int, clock=time.perf_counter) -> dict[str, float]:
    """img/s per mode: the median over `rounds` interleaved rounds (robust to load drift)."""
    trainers = {m: make_trainer(config, m, batch) for m in modes}
    for t in trainers.values():  # oneDNN primitive creation, torch.compile
        seconds_per_step(t, warmup)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(rounds):
        for m, t in trainers.items():
            times[m].append(seconds_per_step(t, steps, clock))
    return {m: batch / statistics.median(ts) for m, ts in times.items()}


def default_trainer(config: str, batch: int) -> Trainer:
    """The trainer a user gets without flags (this process's `tractable` version)."""
    data, _ = data_for(config)
    model = make_model("pixelcnn++", data, seed=0, preset=config)
    cfg = TrainConfig(batch_size=batch, max_steps=10**9, samples_per_eval=0, progress=False,
                      quiet=True, device="cpu")
    return Trainer(model, data, None, cfg)


def worker(config: str, batch: int, warmup: int) -> None:
    """Build and warm up a default trainer, then per stdin line `n`: run n steps and print
    'wall_seconds cpu_seconds' (per step)."""
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's start-up line
        trainer = default_trainer(config, batch)
    seconds_per_step(trainer, warmup)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            trainer._train_step()
        print(f"{(time.perf_counter() - wall) / n} {(time.process_time() - cpu) / n}",
              flush=True)


def start_worker(tree: Path, config: str, batch: int, warmup: int,
                 threads: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen([sys.executable, __file__, "--worker", config, "--batch",
                             str(batch), "--warmup", str(warmup), "--threads", str(threads)],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"worker for {tree} ({config}) failed")
    return proc


def compare_trees(configs: list[str], trees: dict[str, Path], batches: dict[str, int],
                  steps: int, warmup: int, rounds: int, threads: int) -> None:
    """Default trainer of each checkout, alternating in rounds; median per checkout."""
    print(f"{'config':7s} {'checkout':10s} {'batch':>5s} {'img/s wall':>11s} "
          f"{'img/s cpu':>10s} {'ratio wall':>11s} {'ratio cpu':>10s}")
    for config in configs:
        procs = {name: start_worker(tree, config, batches[config], warmup, threads)
                 for name, tree in trees.items()}
        wall: dict[str, list[float]] = {name: [] for name in trees}
        cpu: dict[str, list[float]] = {name: [] for name in trees}
        order = list(trees)
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{steps}\n")
                proc.stdin.flush()
                w, c = map(float, proc.stdout.readline().split())
                wall[name].append(w)
                cpu[name].append(c)
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
        base = order[-1]
        for name in order:
            iw = batches[config] / statistics.median(wall[name])
            ic = batches[config] / statistics.median(cpu[name])
            bw = batches[config] / statistics.median(wall[base])
            bc = batches[config] / statistics.median(cpu[base])
            print(f"{config:7s} {name:10s} {batches[config]:5d} {iw:11.3f} {ic:10.3f} "
                  f"{iw / bw:10.2f}x {ic / bc:9.2f}x", flush=True)


def report_warm_up(configs: list[str], batches: dict[str, int], steps: int,
                   rounds: int) -> None:
    """Compile warm-up, steady s/step eager and compiled, break-even steps (wall clock).

    The compiler's on-disk cache goes to a fresh folder, so the warm-up is a first run's;
    later runs of the same model on the same machine reuse the cache and start faster."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    print(f"{'config':7s} {'batch':>5s} {'warm-up (s)':>12s} {'eager s/step':>13s} "
          f"{'compiled s/step':>16s} {'speed-up':>9s} {'break-even steps':>17s}")
    for config in configs:
        eager = make_trainer(config, "fp32-cl", batches[config])
        compiled = make_trainer(config, "fp32-cl-compile", batches[config])
        seconds_per_step(eager, 2)
        start = time.perf_counter()
        seconds_per_step(compiled, 2)  # compiles forward and backward
        first_two = time.perf_counter() - start
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(rounds):
            times["eager"].append(seconds_per_step(eager, steps))
            times["compiled"].append(seconds_per_step(compiled, steps))
        e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
        warm = first_two - 2 * c
        even = f"{warm / (e - c):17,.0f}" if e > c else f"{'never':>17s}"
        print(f"{config:7s} {batches[config]:5d} {warm:12.1f} {e:13.3f} {c:16.3f} "
              f"{e / c:8.2f}x {even}", flush=True)


def matmul_peak_flops(n: int = 4096, repeats: int = 5, clock=time.perf_counter) -> float:
    """Best float32 FLOP/s of an n×n by n×n matmul over `repeats` tries."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return 2 * n**3 / best


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one training step (forward + backward of the loss), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    x, y = trainer.stream.batch(0)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = trainer.wrapped(x, labels_for(trainer.model, y))
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def report_mfu(batch: int, steps: int, rounds: int, clock=time.perf_counter) -> None:
    """Counted FLOPs per paper step over its best time, against the matmul peak measured
    with the same clock (process CPU time with one thread: robust on a shared machine)."""
    trainer = default_trainer("paper", batch)
    flops = step_flops(trainer)
    seconds_per_step(trainer, 1)
    best = min(seconds_per_step(trainer, steps, clock) for _ in range(rounds))
    peak = matmul_peak_flops(clock=clock)
    print(f"# paper step (batch {batch}): {flops / 1e9:.1f} GFLOP counted, best "
          f"{best:.2f} s/step = {flops / best / 1e9:.1f} GFLOP/s; fp32 matmul peak "
          f"(4096^2) {peak / 1e9:.1f} GFLOP/s; fraction of peak {flops / best / peak:.1%}")


def main() -> None:
    if "--worker" in sys.argv:
        w = argparse.ArgumentParser()
        w.add_argument("--worker")
        w.add_argument("--batch", type=int)
        w.add_argument("--warmup", type=int)
        w.add_argument("--threads", type=int)
        wa = w.parse_args()
        torch.set_num_threads(wa.threads)
        worker(wa.worker, wa.batch, wa.warmup)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["small", "paper"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--steps", type=int, default=2, help="timed steps per mode per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-small", type=int, default=32)
    p.add_argument("--batch-paper", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: process CPU time (with --threads 1, robust on a shared machine)")
    p.add_argument("--against", type=Path, default=None,
                   help="another checkout: compare the default trainers of both")
    p.add_argument("--mfu", action="store_true", help="fraction of the fp32 matmul peak")
    p.add_argument("--warm-up", action="store_true",
                   help="compile warm-up, eager vs compiled s/step, break-even run length")
    args = p.parse_args()
    if args.warm_up:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"# torch.compile warm-up, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, wall clock, {args.rounds} rounds of "
              f"{args.steps} steps")
        report_warm_up(args.configs, {"small": args.batch_small, "paper": args.batch_paper},
                       args.steps, args.rounds)
        return
    if args.against is not None:
        if not (args.against / "src" / "tractable").is_dir():
            p.error(f"--against {args.against}: no src/tractable there")
        threads = args.threads or torch.get_num_threads()
        print(f"# default trainer, this checkout vs {args.against}, torch {torch.__version__}, "
              f"{threads} threads, {args.rounds} alternating rounds of {args.steps} steps")
        here = Path(__file__).resolve().parents[1]
        compare_trees(args.configs, {"this": here, "against": args.against.resolve()},
                      {"small": args.batch_small, "paper": args.batch_paper}, args.steps,
                      args.warmup, args.rounds, threads)
        return
    if args.mfu:
        if args.clock == "cpu" and args.threads != 1:
            p.error("--clock cpu needs --threads 1")
        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"# {torch.get_num_threads()} threads, {args.clock} clock")
        report_mfu(args.batch_paper, args.steps, args.rounds,
                   time.process_time if args.clock == "cpu" else time.perf_counter)
        return
    if args.clock == "cpu" and (args.threads or torch.get_num_threads()) != 1:
        p.error("--clock cpu needs --threads 1 (CPU time of several threads counts spinning)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# PixelCNN++ training throughput, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.clock} clock")
    print(f"{'config':7s} {'mode':17s} {'batch':>5s} {'img/s':>9s} {'ratio':>7s}")
    for config in args.configs:
        batch = args.batch_small if config == "small" else args.batch_paper
        ips = measure(config, args.modes, batch, args.steps, args.warmup, args.rounds,
                      time.process_time if args.clock == "cpu" else time.perf_counter)
        base = ips.get("fp32")
        for mode, v in ips.items():
            ratio = f"{v / base:6.2f}x" if base else "     -"
            print(f"{config:7s} {mode:17s} {batch:5d} {v:9.2f} {ratio:>7s}", flush=True)

if __name__ == "__main__":
    main()
