"""Likelihood-based OOD detection, Fashion-MNIST (in) vs MNIST (out), on CPU.

Reproduces the failure of raw likelihood (Nalisnick et al., ICLR 2019: a model of
Fashion-MNIST gives MNIST digits *higher* likelihood) and its fixes: the likelihood ratio
against a background model trained on mutated inputs (Ren et al., NeurIPS 2019), input
complexity (Serrà et al., ICLR 2020) and the typicality test (Nalisnick et al., 2019).

1. trains a small PixelCNN++ (default 1,000 steps of batch 16 on a 20k-image Fashion-MNIST
   training subset; about 6 minutes on one shared CPU core);
2. trains its background model the same way with inputs mutated at rate μ = 0.2 and L2
   weight decay 0.1 (`--ablate-weight-decay` adds backgrounds with other penalties);
3. scores a Fashion-MNIST test subset (in) and MNIST digits (out) and prints AUROC, AUPRC
   and FPR at 80% TPR of every score (OOD = positive class), as a markdown table.

One torch thread by default: on a CPU shared with other jobs, more threads oversubscribe
it and run many times slower.

Published PixelCNN++ figures (Ren et al. 2019, Table 1, Fashion-MNIST vs MNIST, AUROC):
raw likelihood 0.089, likelihood ratio 0.994. Data: ../shared/data (see PROVENANCE.md);
our MNIST is a 10k subset whose 'test' split is 1,000 held-out training digits.

    .venv/bin/python bench/ood_fashion_vs_mnist.py [--steps 1000] [--out runs/bench_ood]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRACTABLE_SHARED_DATA", REPO.parent / "shared" / "data"))

PUBLISHED_AUROC = {"nll": 0.089, "likelihood_ratio": 0.994}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REPO / "runs" / "bench_ood"))
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per model")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--limit-train", type=int, default=20_000, help="Fashion-MNIST train subset")
    p.add_argument("--nr-resnet", type=int, default=0)
    p.add_argument("--nr-filters", type=int, default=32)
    p.add_argument("--nr-logistic-mix", type=int, default=5)
    p.add_argument("--mutation-rate", type=float, default=0.2)
    p.add_argument("--weight-decay", type=float, default=0.1,
                   help="L2 penalty of the background model (Adam's coupled weight_decay)")
    p.add_argument("--ablate-weight-decay", type=float, nargs="*", default=[], metavar="L2",
                   help="also train backgrounds with these L2 penalties (a row each)")
    p.add_argument("--n-in", type=int, default=2000, help="Fashion-MNIST test images scored")
    p.add_argument("--n-out", type=int, default=1000, help="MNIST digits scored (max 1000)")
    p.add_argument("--n-fit", type=int, default=2000, help="held-out train images (typicality)")
    p.add_argument("--codecs", nargs="+", default=["png", "jpeg2000", "webp"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared CPU more threads oversubscribe it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="score existing runs in --out")
    return p.parse_args()


def train_model(name: str, args: argparse.Namespace, steps: int, mutation: float,
                weight_decay: float) -> dict:
    """Train one PixelCNN++ run into `args.out/name`; returns its summary plus wall time."""
    from tractable.run_folder import open_folder
    from tractable.training import TrainConfig, train

    run = Path(args.out) / name
    if args.reuse and (run / "model" / "config.json").is_file():
        return open_folder(run).summary
    cfg = TrainConfig(
        data="fashion-mnist", out=str(run), max_steps=steps, batch_size=args.batch_size,
        lr=args.lr, lr_decay=1.0, weight_decay=weight_decay, ema_decay=0.999,
        mutation_rate=mutation, limit_train=args.limit_train, limit_test=500, eval_every=steps,
        checkpoint_every=steps, samples_per_eval=0, log_every=max(steps // 10, 1),
        progress=False, seed=args.seed,
    )
    overrides = {"nr_resnet": args.nr_resnet, "nr_filters": args.nr_filters,
                 "nr_logistic_mix": args.nr_logistic_mix, "dropout": 0.0}
    t0 = time.perf_counter()
    summary = train("pixelcnn++", cfg, overrides=overrides)
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    # The trainer finds datasets by name in $TRACTABLE_DATA/<name>.
    os.environ["TRACTABLE_DATA"] = str(SHARED)
    from tractable.data import load_dataset
    from tractable.data.subsets import heldout_train_images
    from tractable.evaluation.metrics import detection_metrics
    from tractable.evaluation.ood import evaluate_ood, format_table, measure
    from tractable.evaluation.scoring import score_dataset
    from tractable.models import load
    from tractable.run_folder import open_folder

    runs = {
        "model": train_model("model", args, args.steps, 0.0, 0.0),
        "background": train_model("background", args, args.steps, args.mutation_rate,
                                  args.weight_decay),
    }
    for wd in args.ablate_weight_decay:
        runs[f"background_wd{wd:g}"] = train_model(f"background_wd{wd:g}", args, args.steps,
                                                   args.mutation_rate, wd)
    model = load(Path(args.out) / "model" / "model").eval()
    background = load(Path(args.out) / "background" / "model").eval()

    t0 = time.perf_counter()
    ds_in = load_dataset("fashion-mnist", "test", limit=args.n_in, seed=args.seed)
    ds_out = load_dataset("mnist", "test", limit=args.n_out, seed=args.seed)
    fit, _ = heldout_train_images("fashion-mnist", {},
                                  open_folder(Path(args.out) / "model").run,
                                  args.n_fit, args.seed)
    m_in = measure(model, ds_in, background=background, codecs=args.codecs)
    m_out = measure(model, ds_out, background=background, codecs=args.codecs)
    heldout = score_dataset(model, fit, marginal=True).bits_per_dim
    report = evaluate_ood(m_in, m_out, heldout, typicality_m=10, seed=args.seed)
    for wd in args.ablate_weight_decay:  # extra rows: the ratio against other backgrounds
        bg = load(Path(args.out) / f"background_wd{wd:g}" / "model").eval()
        name = f"likelihood_ratio (L2 {wd:g})"
        report.scores_in[name] = m_in.nll - score_dataset(bg, ds_in).bits_per_dim
        report.scores_out[name] = m_out.nll - score_dataset(bg, ds_out).bits_per_dim
        report.metrics[name] = detection_metrics(report.scores_in[name], report.scores_out[name])
    score_s = time.perf_counter() - t0

    params = sum(p.numel() for p in model.parameters())
    print(f"PixelCNN++ nr_resnet={args.nr_resnet} nr_filters={args.nr_filters} "
          f"nr_logistic_mix={args.nr_logistic_mix} ({params:,} parameters), batch "
          f"{args.batch_size}, Adam lr {args.lr}, {args.threads} CPU thread(s), seed {args.seed}")
    for name, s in runs.items():
        rs = open_folder(Path(args.out) / name).train_settings
        extra = (f", mutation rate {rs['mutation_rate']}, L2 {rs['weight_decay']}"
                 if rs["mutation_rate"] else "")
        print(f"  {name:20s}: {s['step']} steps on {args.limit_train} Fashion-MNIST train "
              f"images{extra}; test bits/dim {s['best_test_bpd']:.3f}; "
              f"{s.get('wall_s', s.get('elapsed_s', 0.0)):.0f} s")
    print(f"  scoring {len(ds_in)} Fashion-MNIST test + {len(ds_out)} MNIST + {len(fit)} "
          f"held-out train images: {score_s:.0f} s")
    print()
    print(format_table(report, "fashion", "mnist"))
    print()
    print(markdown_table(report))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "report.json").write_text(json.dumps(
        {"args": vars(args), "runs": runs, **report.to_dict()}, indent=2, default=float))
    ok = (report.metrics["nll"].auroc < 0.3
          and report.metrics["likelihood_ratio"].auroc >= 0.95)
    print(f"\ntargets (raw NLL AUROC < 0.3, likelihood ratio AUROC >= 0.95): "
          f"{'met' if ok else 'NOT met'}")
    return 0


def markdown_table(report) -> str:  # noqa: ANN001 - an OODReport
    rows = ["| score | AUROC | AUPRC | FPR@80%TPR | published AUROC (Ren et al.) |",
            "|---|---|---|---|---|"]
    for name, m in report.metrics.items():
        pub = PUBLISHED_AUROC.get(name)
        rows.append(f"| {name} | {m.auroc:.3f} | {m.auprc:.3f} | {m.fpr_at_80_tpr:.3f} | "
                    f"{pub if pub is not None else '–'} |")
    t = report.typicality
    if t is not None:
        b = t["metrics"]
        rows.append(f"| typicality, batches of M={t['batch_size']} | {b['auroc']:.3f} | "
                    f"{b['auprc']:.3f} | {b['fpr_at_80_tpr']:.3f} | – |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
