"""Glow's round trip decode(encode(x)) == x in float32 and in float64, and what float64 costs.

    .venv/bin/python bench/glow_round_trip.py [--steps 150] [--lr 1e-2] [--n 256] [--floor F]

Trains a small Glow (28×28×1, K=4, L=2, width 32, batch 32, Adamax, 10 warm-up steps) on
mnist-mini at a high learning rate, then for real test digits and for uniform-noise images
counts the sub-pixels (and images) that do not come back exactly when encode and decode
both run in float32 (the model's own dtype, `Glow._forward` / `Glow._inverse`) and when they
run in float64 (`Glow.encode(check=False)` / `decode`, what the API does), and how many
images `encode`'s check refuses. It also reports the smallest affine-coupling scale met on
each kind of image: the inverse divides by it, which is what amplifies rounding errors.
Timing: encode of the batch, float32 vs float64, alternated, median of 3, as a ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tractable.data import load_dataset
from tractable.errors import NumericalError
from tractable.models import Glow, GlowConfig
from tractable.models.glow.coupling import Coupling
from tractable.models.glow.quantize import to_continuous, to_uint8
from tractable.training import TrainConfig, Trainer


def trained_glow(steps: int, lr: float, floor: float) -> Glow:
    torch.manual_seed(0)
    model = Glow(GlowConfig(image_shape=(1, 28, 28), K=4, L=2, width=32,
                            coupling_scale_floor=floor))
    cfg = TrainConfig(max_steps=steps, lr=lr, warmup_steps=10, batch_size=32,
                      samples_per_eval=0, eval_every=10**9, progress=False, quiet=True)
    Trainer(model, load_dataset("mnist-mini", "train"), None, cfg).fit()
    return model.eval()


def wrong_float32(model: Glow, x: torch.Tensor) -> torch.Tensor:
    x_c = to_continuous(x, model.config.n_bits, torch.float32, noise=False)
    back = to_uint8(model._inverse(model._forward(x_c)[1]), model.config.n_bits)
    return back != x


def wrong_float64(model: Glow, x: torch.Tensor) -> torch.Tensor:
    return model.decode(model.encode(x, check=False), check_finite=False) != x


def refused(model: Glow, x: torch.Tensor) -> int:
    try:
        model.encode(x)
        return 0
    except NumericalError as e:
        return int(str(e).split(" of ")[0])


def min_coupling_scale(model: Glow, x: torch.Tensor) -> float:
    seen: list[float] = []

    def hook(mod, inp, out):  # type: ignore[no-untyped-def]
        _, log_scale = mod._params(inp[0][:, : mod.keep])
        seen.append(float(log_scale.exp().min()))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Coupling)]
    model.encode(x, check=False)
    for h in hooks:
        h.remove()
    return min(seen)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--floor", type=float, default=GlowConfig().coupling_scale_floor,
                    help="coupling_scale_floor (0: openai's unbounded scale, as the table "
                    "in docs/glow.md)")
    args = ap.parse_args()
    model = trained_glow(args.steps, args.lr, args.floor)
    g = torch.Generator().manual_seed(0)
    sets = {"test digits": load_dataset("mnist-mini", "test").images[: args.n],
            "uniform noise": torch.randint(0, 256, (args.n, 1, 28, 28), generator=g,
                                           dtype=torch.uint8)}
    print(f"Glow K=4 L=2 width 32 after {args.steps} steps at lr {args.lr:g}; {args.n} images")
    print("| images | sub-pixels | float32 wrong (images) | float64 wrong (images) | "
          "refused by encode | min coupling scale |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for name, x in sets.items():
            w32, w64 = wrong_float32(model, x), wrong_float64(model, x)
            n32, n64 = (int(w.flatten(1).any(1).sum()) for w in (w32, w64))
            print(f"| {name} | {x.numel():,} | {int(w32.sum()):,} ({n32}) | "
                  f"{int(w64.sum()):,} ({n64}) | {refused(model, x)} | "
                  f"{min_coupling_scale(model, x):.1e} |")
        x = sets["test digits"]
        x_c = to_continuous(x, model.config.n_bits, torch.float32, noise=False)
        t32, t64 = [], []
        for _ in range(3):
            t32.append(timed(lambda: model._forward(x_c)))
            t64.append(timed(lambda: model.encode(x, check=False)))
        m32, m64 = statistics.median(t32), statistics.median(t64)
        print(f"\nencode of {args.n} digits: float32 {m32:.3f} s, float64 {m64:.3f} s "
              f"(ratio {m64 / m32:.2f}); encode with its round-trip check adds one decode")


if __name__ == "__main__":
    main()
