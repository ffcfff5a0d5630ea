"""GPU figures in one table: PixelCNN++ and Glow training and sampling speed, CUDA tests.

Rows (all in this one run; `bench/gpu.sh` runs it under a time limit):

* PixelCNN++ paper config (5/160/10, 3×32×32) training img/s through the real trainer at
  batch 16 and 64 in fp32, bf16 autocast and bf16 + `torch.compile` (all channels_last,
  fused Adam, data on the device), with model FLOPs utilisation: the step's FLOPs counted by
  `torch.utils.flop_counter.FlopCounterMode` (convolutions and matmuls, forward and
  backward) times steps/s, over the chip's dense bf16 peak (`--peak-tflops`, H200: 989).
* PixelCNN++ cached sampling, seconds per image for 16 and 256 CIFAR-size images.
* Glow CIFAR config (K=32, L=3, width 512) training img/s, and the time to sample 16
  images of 256×256×3 (K=32, L=6, width 512, additive coupling, 5 bits: openai's CelebA-HQ
  model; they report 130 ms per image on a 1080 Ti).
* The CUDA tests (`pytest -m` free: every test that needs a CUDA device).

Weights are random (speed does not depend on them); the training images are real CIFAR-10
if `../shared/data` is there, else random bytes of the same shape. Rows that would start
after `--budget-s` are printed as skipped, so the table always comes out.

    python bench/gpu_bench.py [--device cuda] [--tiny] [--budget-s 450] [--no-compile]
        [--no-tests] [--peak-tflops 989]

`--device cpu --tiny` runs every row on a tiny configuration (the test of this script).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from tractable.data.base import ImageDataset
from tractable.evaluation.bpd import labels_for
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig
from tractable.models.glow import Glow, GlowConfig
from tractable.sampling import sample_with
from tractable.training import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
CIFAR = REPO.parent / "shared" / "data" / "cifar10-first4000"

PAPER = dict(image_shape=(3, 32, 32), nr_resnet=5, nr_filters=160, nr_logistic_mix=10,
             dropout=0.5)
TINY_PCNN = dict(image_shape=(3, 8, 8), nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                 dropout=0.5)
GLOW_CIFAR = dict(image_shape=(3, 32, 32), K=32, L=3, width=512)
GLOW_256 = dict(image_shape=(3, 256, 256), K=32, L=6, width=512, coupling="additive", n_bits=5)
TINY_GLOW = dict(image_shape=(3, 8, 8), K=2, L=2, width=8)
TINY_GLOW_BIG = dict(image_shape=(3, 16, 16), K=2, L=2, width=8, coupling="additive",
                     n_bits=5)


class Table:
    """Rows printed as they come, so a time-out still leaves the finished ones."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_s
        print(f"{'what':44s} {'setting':22s} {'value':>10s} {'unit':9s} note", flush=True)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def row(self, what: str, setting: str, value: float | str, unit: str, note: str = "") -> None:
        v = f"{value:10.3f}" if isinstance(value, float) else f"{value:>10s}"
        print(f"{what:44s} {setting:22s} {v} {unit:9s} {note}", flush=True)

    def guarded(self, what: str, setting: str, need_s: float, fn: Callable[[], None]) -> None:
        """Run `fn` (which prints its rows) if about `need_s` seconds are left."""
        if self.left() < need_s:
            self.row(what, setting, "skipped", "", f"time budget ({self.left():.0f} s left)")
            return
        try:
            fn()
        except Exception as e:  # one failed row must not lose the table
            self.row(what, setting, "failed", "", f"{type(e).__name__}: {e}"[:200])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_images(shape: tuple[int, int, int], n: int) -> ImageDataset:
    """Real CIFAR-10 images when present (shape 3×32×32), else random bytes."""
    if shape == (3, 32, 32) and CIFAR.is_dir():
        from tractable.data import load_dataset

        data = load_dataset("cifar10", "train", root=CIFAR, batches=[1])
        return ImageDataset(data.images[:n], None, name="cifar10")
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                        None, name="random bytes")


def trainer_for(model: torch.nn.Module, data: ImageDataset, batch: int, precision: str,
                compile_: bool, device: torch.device) -> Trainer:
    cfg = TrainConfig(batch_size=batch, precision=precision, channels_last=True,
                      compile=compile_, max_steps=10**9, samples_per_eval=0, progress=False,
                      quiet=True, device=str(device))
    return Trainer(model, data, None, cfg)  # type: ignore[arg-type]


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one forward + backward of the trainer's loss (eager fp32 counting)."""
    from torch.utils.flop_counter import FlopCounterMode

    x, y = trainer.stream.batch(0)
    x = x.to(trainer.env.device)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = trainer.model.loss(x, labels_for(trainer.model, y.to(x.device)))
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def images_per_second(trainer: Trainer, steps: int, warmup: int) -> float:
    device = trainer.env.device
    for _ in range(warmup):
        trainer._train_step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer._train_step()
    sync(device)
    return steps * trainer.opt_cfg.batch_size / (time.perf_counter() - start)


def pixelcnn_training(table: Table, args: argparse.Namespace, device: torch.device) -> None:
    spec = TINY_PCNN if args.tiny else PAPER
    batches = [2, 4] if args.tiny else [16, 64]
    modes = [("fp32", "fp32", False), ("bf16", "bf16", False)]
    if not args.no_compile:
        modes.append(("bf16+compile", "bf16", True))
    data = training_images(spec["image_shape"], 256 if args.tiny else 1024)  # type: ignore[arg-type]
    flops: dict[int, int] = {}
    for name, precision, compile_ in modes:
        for batch in batches:
            def run(name: str = name, precision: str = precision, compile_: bool = compile_,
                    batch: int = batch) -> None:
                torch.manual_seed(0)
                model = PixelCNNPlusPlus(PixelCNNPlusPlusConfig(**spec))  # type: ignore[arg-type]
                trainer = trainer_for(model, data, batch, precision, compile_, device)
                if batch not in flops:
                    flops[batch] = step_flops(trainer)
                ips = images_per_second(trainer, args.steps, args.warmup + compile_)
                tflops = flops[batch] / batch * ips / 1e12
                table.row("PixelCNN++ train (5/160/10, 32x32x3)" if not args.tiny
                          else "PixelCNN++ train (tiny)", f"batch {batch} {name}", ips, "img/s",
                          f"{tflops:.1f} TFLOP/s, MFU {tflops / args.peak_tflops:.1%} "
                          f"({flops[batch] / batch / 1e9:.3g} GFLOP/img)")
            table.guarded("PixelCNN++ train", f"batch {batch} {name}",
                          240 if compile_ and not args.tiny else 30, run)


def pixelcnn_sampling(table: Table, args: argparse.Namespace, device: torch.device) -> None:
    spec = TINY_PCNN if args.tiny else PAPER
    torch.manual_seed(0)
    model = PixelCNNPlusPlus(PixelCNNPlusPlusConfig(**spec)).to(device).eval()  # type: ignore[arg-type]
    for n in ([2, 4] if args.tiny else [16, 256]):
        def run(n: int = n) -> None:
            g = torch.Generator(device=device).manual_seed(0)
            sample_with(model, min(n, 2), sampler="cached", generator=g)  # warm-up
            sync(device)
            start = time.perf_counter()
            sample_with(model, n, sampler="cached", generator=g)
            sync(device)
            seconds = time.perf_counter() - start
            table.row("PixelCNN++ cached sampling", f"{n} images", seconds / n, "s/img",
                      f"{seconds:.2f} s in all")
        table.guarded("PixelCNN++ cached sampling", f"{n} images", 60, run)


def glow(table: Table, args: argparse.Namespace, device: torch.device) -> None:
    spec = TINY_GLOW if args.tiny else GLOW_CIFAR
    data = training_images(spec["image_shape"], 256 if args.tiny else 1024)  # type: ignore[arg-type]
    batch = 4 if args.tiny else 64
    for name, precision in (("fp32", "fp32"), ("bf16", "bf16")):
        def run(name: str = name, precision: str = precision) -> None:
            torch.manual_seed(0)
            trainer = trainer_for(Glow(GlowConfig(**spec)), data, batch, precision,  # type: ignore[arg-type]
                                  False, device)
            ips = images_per_second(trainer, args.steps, args.warmup)
            table.row("Glow train (K32 L3 w512, 32x32x3)" if not args.tiny
                      else "Glow train (tiny)", f"batch {batch} {name}", ips, "img/s")
        table.guarded("Glow train", f"batch {batch} {name}", 60, run)

    big = TINY_GLOW_BIG if args.tiny else GLOW_256

    def sample_big() -> None:
        torch.manual_seed(0)
        model = Glow(GlowConfig(**big)).to(device)  # type: ignore[arg-type]
        init = training_images(big["image_shape"], 4).images.to(device)  # type: ignore[arg-type]
        model.data_dependent_init(init)
        model.eval()
        n = 2 if args.tiny else 16
        g = torch.Generator(device=device).manual_seed(0)
        model.sample(n, generator=g)
        sync(device)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model.sample(n, generator=g)
            sync(device)
            times.append(time.perf_counter() - start)
        best = sorted(times)[1]
        side = big["image_shape"][1]  # type: ignore[index]
        table.row(f"Glow sample {side}x{side}x3 (K32 L6 w512)" if not args.tiny
                  else "Glow sample (tiny)", f"{n} images", best / n * 1e3, "ms/img",
                  f"median of 3: {best:.3f} s for {n}")
    table.guarded("Glow sample", "", 60, sample_big)


def cuda_tests(table: Table) -> None:
    def run() -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-rs", "-k",
                               "gpu or cuda", str(REPO / "tests")], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=max(30, table.left()))
        last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
        table.row("CUDA tests (-k 'gpu or cuda')", "", "ok" if proc.returncode == 0
                  else f"rc {proc.returncode}", "", last[:160])
    table.guarded("CUDA tests", "", 60, run)


@contextlib.contextmanager
def tf32_off() -> Iterator[None]:
    """fp32 rows mean fp32 (no TF32 tensor cores)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny configurations (a smoke test)")
    p.add_argument("--budget-s", type=float, default=450.0)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per row")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-tests", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per row (+1 compiled)")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="the chip's dense bf16 peak (H200 SXM: 989)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA device (use --device cpu --tiny for a smoke test)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# tractable GPU bench: {name}, torch {torch.__version__}, "
          f"{'tiny configs' if args.tiny else 'full configs'}, peak {args.peak_tflops:g} "
          f"TFLOP/s bf16")
    table = Table(args.budget_s)
    with tf32_off():
        pixelcnn_training(table, args, device)
        pixelcnn_sampling(table, args, device)
        glow(table, args, device)
    if not args.no_tests:
        cuda_tests(table)
    print(f"# total {time.perf_counter() - table.start:.0f} s")


if __name__ == "__main__":
    main()
