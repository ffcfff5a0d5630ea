"""Ablation of the issue-5 options on the bundled MNIST subset (mnist-mini), one run.

Every variant trains the *small* configuration of its family for the same number of steps
at the same batch size, with the family's default optimizer (`tractable.training.train`),
then reports the test bits/dim of its EMA weights over all 1,000 test images and its
training speed (img/s of the optimizer steps, evaluation excluded):

    PixelCNN++ baseline      preset small (nr_resnet 1, nr_filters 32, 5 logistics)
    baseline, seed +1        the same with another seed: the noise floor of the budget
    + coord-conv             coord_conv=True
    + nonlocal               nonlocal_blocks=2 (causal attention at H/4, up and down pass)
    + focal (gamma 2)        focal_gamma=2 (bits/dim stay the true NLL)
    conditional PixelCNN++   class-conditional on the digit labels
    Gated PixelCNN           preset small, n_levels 256 (bits/dim comparable with the above)
    Gated PixelCNN, 4 levels n_levels 4: bits/dim of 4-level data, NOT comparable

It then draws the conditional model's samples through the real CLI (`tractable sample RUN
--class all | 4:0.5,9:0.5 | 4:1-w,9:w`) into docs/img/ and writes the table to
docs/ablation.md. Speeds are measured on whatever the machine is doing meanwhile: compare
the ratio column within one run only.

    python bench/ablation.py [--steps 80] [--batch-size 32] [--threads 1]
                             [--variants baseline coord ...] [--out bench/out/ablation]
                             [--docs docs] [--no-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import tractable
from tractable._io import atomic_write_text
from tractable.data import load_dataset
from tractable.run_folder import open_folder
from tractable.training import TrainConfig, train
from tractable.training.pictures import draw_samples
from tractable.viz import save_grid

REPO = Path(__file__).resolve().parents[1]
BLEND = (4, 9)  # the soft-label pair of the blend row and the sweep
SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0)  # weight of class 9 (class 4 gets 1 - w)


@dataclass
class Variant:
    name: str
    family: str
    overrides: dict[str, Any] = field(default_factory=dict)
    conditional: bool = False
    comparable: bool = True  # bits/dim of 256-level data, comparable with the baseline
    seed_offset: int = 0  # a replicate: same settings, another initialization and batch order

    @property
    def settings(self) -> str:
        parts = [f"{k}={v}" for k, v in self.overrides.items()]
        extra = (["conditional"] if self.conditional else []) + (
            [f"seed +{self.seed_offset}"] if self.seed_offset else [])
        return ", ".join(["preset small", *parts, *extra])


VARIANTS = {
    "baseline": Variant("PixelCNN++ baseline", "pixelcnn++"),
    "replicate": Variant("PixelCNN++ baseline, seed +1", "pixelcnn++", seed_offset=1),
    "coord": Variant("+ coord-conv", "pixelcnn++", {"coord_conv": True}),
    "nonlocal": Variant("+ nonlocal (2 blocks)", "pixelcnn++", {"nonlocal_blocks": 2}),
    "focal": Variant("+ focal (gamma 2)", "pixelcnn++", {"focal_gamma": 2.0}),
    "conditional": Variant("conditional PixelCNN++", "pixelcnn++", conditional=True),
    "gated": Variant("Gated PixelCNN (256 levels)", "gated-pixelcnn", {"n_levels": 256}),
    "gated4": Variant("Gated PixelCNN, 4 levels", "gated-pixelcnn", {"n_levels": 4},
                      comparable=False),
}


def train_variant(v: Variant, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant into `run`; its test bits/dim, parameters, img/s and wall time."""
    if run.exists():
        shutil.rmtree(run)  # a fresh run each time (bench/out is scratch space)
    cfg = TrainConfig(data="mnist-mini", out=str(run), max_steps=args.steps,
                      batch_size=args.batch_size, seed=args.seed + v.seed_offset,
                      eval_every=args.steps, checkpoint_every=args.steps,
                      log_every=min(25, args.steps), eval_batch_size=100,
                      samples_per_eval=0, progress=False, quiet=True)
    start = time.perf_counter()
    train(v.family, cfg, preset="small", overrides=v.overrides, conditional=v.conditional)
    wall = time.perf_counter() - start
    summary = open_folder(run).summary
    optimizer = open_folder(run).run["optimizer"]
    return {"bpd": summary["last_test_bpd"], "params": summary["parameters"],
            "img_s": train_img_per_s(run, args.batch_size), "wall_s": wall,
            "optimizer": optimizer}


def train_img_per_s(run: Path, batch_size: int) -> float:
    """Images per second over all logged training windows (the trainer excludes evals)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    images = seconds = 0.0
    prev = 0
    for r in train_rows:
        n = (r["step"] - prev) * batch_size
        images += n
        seconds += n / r["img_per_s"]
        prev = r["step"]
    return images / seconds


# ---- pictures through the public API ----------------------------------------------------
def class_weights_of(spec: dict[int, float], n: int, num_classes: int = 10) -> torch.Tensor:
    """Soft labels `[n, K]`: the weights of `spec` (class -> weight), normalized."""
    w = torch.zeros(num_classes)
    for k, v in spec.items():
        w[k] += v
    return (w / w.sum()).expand(n, num_classes).clone()


def sample_pictures(run: Path, out: Path, y: torch.Tensor, seed: int,
                    nrow: int | None = None) -> torch.Tensor:
    """Samples of the run's model for labels `y` (cached sampler), saved as a PNG grid."""
    model = tractable.load(run)
    x = draw_samples(model, len(y), y=y, seed=seed, sampler="cached")
    save_grid(x, out, nrow=nrow)
    return x


def draw_conditional_pictures(run: Path, img_dir: Path, seed: int) -> dict[str, str]:
    """Class rows, a 4/9 blend row and a 4 -> 9 sweep, as PNGs under `img_dir`."""
    img_dir.mkdir(parents=True, exist_ok=True)
    a, b = BLEND
    pictures = {
        "rows": img_dir / "ablation_class_rows.png",
        "blend": img_dir / "ablation_blend_4_9.png",
        "sweep": img_dir / "ablation_sweep_4_to_9.png",
    }
    per_row = 8  # samples per class row
    sample_pictures(run, pictures["rows"], torch.arange(10).repeat_interleave(per_row), seed,
                    nrow=per_row)
    sample_pictures(run, pictures["blend"], class_weights_of({a: 0.5, b: 0.5}, 8), seed,
                    nrow=8)
    # Same seed for every column: row i shares its sampling noise across the weights.
    rows = 6
    columns = [sample_pictures(run, img_dir / f".sweep_{w}.png",
                               class_weights_of({a: 1 - w, b: w}, rows), seed)
               for w in SWEEP]
    for w in SWEEP:
        (img_dir / f".sweep_{w}.png").unlink()
    grid = torch.stack(columns, dim=1).flatten(0, 1)  # image (i, j) = seed row i, weight j
    save_grid(grid, pictures["sweep"], nrow=len(SWEEP),
              col_labels=[f"{a}:{1 - w:g} {b}:{w:g}" for w in SWEEP],
              title=f"soft labels from {a} to {b}, one noise seed per row")
    for p in pictures.values():
        kb = p.stat().st_size / 1024
        if kb > 300:
            print(f"warning: {p} is {kb:.0f} KB (> 300 KB)", file=sys.stderr)
    return {k: os.path.relpath(p, img_dir.parent) for k, p in pictures.items()}


# ---- the table -------------------------------------------------------------------------
def table(rows: list[tuple[Variant, dict[str, Any]]]) -> str:
    base = next((r for v, r in rows if v.name == VARIANTS["baseline"].name), None)
    lines = ["| variant | settings | parameters | test bits/dim (EMA) | Δ vs baseline | "
             "train img/s | img/s vs baseline |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for v, r in rows:
        bpd = f"{r['bpd']:.4f}" if v.comparable else f"*{r['bpd']:.4f}* (4-level data)"
        is_base = base is r
        delta = ("(reference)" if is_base else f"{r['bpd'] - base['bpd']:+.4f}"
                 if base and v.comparable else "—")
        ratio = "(reference)" if is_base else f"{r['img_s'] / base['img_s']:.2f}×" if base else "—"
        lines.append(f"| {v.name} | {v.settings} | {r['params']:,} | {bpd} | {delta} | "
                     f"{r['img_s']:.1f} | {ratio} |")
    return "\n".join(lines)


def optimizers(rows: list[tuple[Variant, dict[str, Any]]]) -> str:
    """Each family's optimizer settings as the runs used them (from their run.json)."""
    seen: dict[str, str] = {}
    for v, r in rows:
        o = r["optimizer"]
        seen.setdefault(v.family, f"{v.family}: {o['optimizer']} lr {o['lr']:g}, betas "
                        f"{tuple(o['betas'])}, lr decay {o['lr_decay']:g}/step, EMA "
                        f"{o['ema_decay']:g}")
    return "; ".join(seen.values())


def markdown(tab: str, setup: str, pictures: dict[str, str] | None, steps: int,
             epochs: float) -> str:
    text = f"""# Ablation: PixelCNN++ options and Gated PixelCNN on MNIST

Written by `bench/ablation.py`; {setup}

{tab}

How to read it:
- Bits/dim are exact test NLL over all 1,000 held-out digits of the bundled subset, with the
  EMA weights, after the same short budget for every variant. Runs this short rank the
  options by how fast they learn, not by where they converge.
- "baseline, seed +1" repeats the baseline with another initialization and batch order:
  the gap between the two baseline rows is the noise floor of this budget, and an option
  whose Δ is not clearly larger than that gap has no measured effect here. Its img/s ratio,
  for an identical network, likewise shows how much of the speed column is noise.
- The focal variant trains on (1 − p)^2 · (−log p) per pixel but is scored, like every row,
  on the true bits/dim.
- The conditional model is given each digit's label. For ideal models the label can save at
  most its own information, log2(10) bits per image = 0.004 bits/dim; a larger gap here
  comes from how fast the two models learn.
- Gated PixelCNN with 4 levels models digits quantized to 4 grey values (0, 85, 170, 255):
  its bits/dim are those of that coarser data and are not comparable with the other rows.
- img/s were measured on a 2-core CPU shared with other jobs: only the ratio column,
  measured in this one run, carries meaning, and only beyond the replicate's spread.
"""
    if pictures:
        a, b = BLEND
        text += f"""
## Samples of the conditional PixelCNN++ (through `tractable sample`)

From the conditional run above, after only {steps} steps ({epochs:.2f} epochs): strokes and
blobs rather than finished digits. What they show is the conditioning path working end to
end: the rows differ by class, and under fixed sampling noise the images change gradually
with the class weights. Longer runs (`--steps`, more threads on a free machine) sharpen them.

One row per class, `--class all` (rows 0 to 9, 8 samples each):

![class rows]({pictures['rows']})

Soft labels: `--class {a}:0.5,{b}:0.5` (8 samples):

![blend row]({pictures['blend']})

Sweep from {a} to {b}: columns are the class weights ({a}: 1 − w, {b}: w) for
w = {', '.join(f'{w:g}' for w in SWEEP)}; each row keeps its sampling noise (same seed)
across the columns:

![sweep]({pictures['sweep']})
"""
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=80, help="optimizer steps per variant")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: fair on a shared CPU; raise on a free machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "ablation",
                   help="scratch folder for the runs")
    p.add_argument("--docs", type=Path, default=REPO / "docs",
                   help="writes ablation.md and img/ablation_*.png here")
    p.add_argument("--no-docs", action="store_true", help="print the table only")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    train_set = load_dataset("mnist-mini", "train")
    test_set = load_dataset("mnist-mini", "test")
    epochs = args.steps * args.batch_size / len(train_set)
    load_before = os.getloadavg()[0]
    print(f"mnist-mini: {len(train_set):,} train / {len(test_set):,} test digits; "
          f"{args.steps} steps x batch {args.batch_size} per variant ({epochs:.2f} epochs); "
          f"{args.threads} torch thread(s); load average {load_before:.1f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    print(f"budget: {len(args.variants)} variants x {args.steps} steps, chosen so the whole "
          "bench takes <= ~25 minutes on a shared 2-core CPU", flush=True)

    t0 = time.perf_counter()
    rows: list[tuple[Variant, dict[str, Any]]] = []
    pictures = None
    for key in args.variants:
        v = VARIANTS[key]
        result = train_variant(v, args.out / key, args)
        rows.append((v, result))
        print(f"  {v.name:<30} test bits/dim {result['bpd']:.4f}  {result['img_s']:6.1f} img/s  "
              f"({result['wall_s']:.0f} s)", flush=True)
        if v.conditional and not args.no_docs:
            pictures = draw_conditional_pictures(args.out / key, args.docs / "img", args.seed)
    total = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    setup = (f"`python bench/ablation.py --steps {args.steps} --batch-size {args.batch_size} "
             f"--threads {args.threads}` on {time.strftime('%Y-%m-%d')}. Data: mnist-mini "
             f"(real MNIST, {len(train_set):,} train / {len(test_set):,} test, 1×28×28). "
             f"Every variant: {args.steps} optimizer steps at batch {args.batch_size} "
             f"({epochs:.2f} epochs), seed {args.seed}, each family's default optimizer "
             f"({optimizers(rows)}). Whole bench "
             f"{total / 60:.1f} min on {args.threads} torch thread(s) of a shared "
             f"{os.cpu_count()}-CPU machine (load average {load_before:.1f} at the start, "
             f"{load_after:.1f} at the end).")
    tab = table(rows)
    print()
    print(tab)
    print(f"\nstep budget: {args.steps} steps x batch {args.batch_size} per variant; total "
          f"{total / 60:.1f} min; load average {load_before:.1f} -> {load_after:.1f}")
    if not args.no_docs:
        atomic_write_text(args.docs / "ablation.md",
                          markdown(tab, setup, pictures, args.steps, epochs))
        print(f"wrote {args.docs / 'ablation.md'}" + (f" and {len(pictures)} pictures in "
              f"{args.docs / 'img'}" if pictures else ""))


if __name__ == "__main__":
    main()
