"""`tractable score | ood`: per-image likelihoods, NLL heatmaps, out-of-distribution scores.

    tractable score RUN --data fashion-mnist --split test --out scores.csv --heatmap maps/
    tractable ood --model RUN --background RUN_BG --in fashion-mnist --out mnist

Thin wrappers over `tractable.evaluation.{scoring, ood}`.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tractable._io import atomic_write_json, atomic_write_text, atomic_write_with
from tractable.data import ImageDataset, load_dataset
from tractable.errors import ConfigError, DataError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _register_score(sub)
    _register_ood(sub)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--weights", default="ema", choices=["ema", "raw"],
                   help="Polyak-averaged (default) or the optimizer's raw weights")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="for --limit subsets and bootstraps")


def _progress() -> bool:
    return sys.stderr.isatty()


def load_images(name: str, split: str, root: str | None, limit: int | None,
                seed: int) -> tuple[ImageDataset, np.ndarray]:
    """A dataset split, or a fixed random subset of `limit` images of it, and the rows of
    the split its images come from."""
    ds = load_dataset(name, split=split, root=root)
    if limit is None or limit >= len(ds):
        return ds, np.arange(len(ds))
    if limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit}")
    rows = subset_rows(len(ds), limit, seed)
    return ImageDataset(ds.images[rows], ds.labels[rows], ds.class_names, ds.name), rows.numpy()


def subset_rows(n: int, limit: int, seed: int) -> torch.Tensor:
    """The rows `ImageDataset.subset(limit, seed)` takes from a dataset of `n` images."""
    # Tag each image with its row as label: the subset's labels are then its rows.
    tagged = ImageDataset(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), torch.arange(n))
    return tagged.subset(limit, seed=seed).labels


def _run_json(model_dir: Path) -> dict[str, Any]:
    from tractable.training.checkpoint import RUN_NAME, read_json, run_dir_of

    run = run_dir_of(model_dir)
    return read_json(run / RUN_NAME) if run else {}


def _load_model(path: str, args: argparse.Namespace) -> tuple[Any, Path]:
    from tractable.cli.train import load_for_use

    return load_for_use(path, args.weights, args.device)


# ---- score -------------------------------------------------------------------------------
def _register_score(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("score", help="per-image NLL and bits/dim (CSV), per-pixel NLL maps",
                       description="Exact NLL of every image of a dataset split; with "
                       "--heatmap, PNG overlays of where each image is surprising "
                       "(autoregressive models).")
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("--data", help="dataset (default: the one the run trained on)")
    p.add_argument("--root", help="folder with the dataset's files (default: the cache)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, help="a fixed random subset of N images")
    p.add_argument("--out", required=True, help="CSV: index, label, nll_nats, bits_per_dim")
    p.add_argument("--heatmap", metavar="DIR", help="write per-pixel NLL overlays here")
    p.add_argument("--heatmap-count", type=int, default=64,
                   help="images per heatmap grid (default 64)")
    _model_args(p)
    p.set_defaults(func=cmd_score)


def scores_csv(columns: dict[str, Any]) -> str:
    """CSV text with one column per entry (all of one length); floats at full precision."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(columns))
    for row in zip(*columns.values(), strict=True):
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v
                         for v in row])
    return buf.getvalue()


def cmd_score(args: argparse.Namespace) -> int:
    from tractable.evaluation.scoring import score_dataset

    model, model_dir = _load_model(args.path, args)
    data = args.data or _run_json(model_dir).get("data")
    if not data:
        raise ConfigError(f"{args.path} does not record its dataset: pass --data NAME")
    ds, rows = load_images(data, args.split, args.root, args.limit, args.seed)
    s = score_dataset(model, ds, batch_size=args.batch_size, progress=_progress())
    atomic_write_text(args.out, scores_csv({
        "index": rows, "label": s.labels, "nll_nats": s.nll_nats,
        "bits_per_dim": s.bits_per_dim}))
    print(f"{data} {args.split}: {len(s)} images, mean {s.bits_per_dim.mean():.4f} bits/dim "
          f"({s.nll_nats.mean():.2f} nats/image); wrote {args.out}")
    if args.heatmap:
        write_heatmaps(model, ds, rows, s.bits_per_dim, Path(args.heatmap),
                       args.heatmap_count, args.batch_size)
    return 0


def write_heatmaps(model: Any, ds: ImageDataset, rows: np.ndarray, bpd: np.ndarray,
                   out_dir: Path, count: int, batch_size: int) -> None:
    """Overlay grids of the first, the most and the least surprising images, one colour
    scale for all three, and their maps (`pixel_nll.npz`: `<grid>_maps` in nats per pixel,
    `<grid>_index` the images' rows in the split, as in the CSV)."""
    from tractable.evaluation.bpd import labels_for
    from tractable.evaluation.scoring import pixel_nll
    from tractable.viz import save_nll_heatmaps

    if count < 1:
        raise ConfigError(f"--heatmap-count must be >= 1, got {count}")
    count = min(count, len(ds))
    order = np.argsort(-bpd, kind="stable")
    picks = {"first": np.arange(count), "most_surprising": order[:count],
             "least_surprising": order[::-1][:count]}
    maps = {}
    for name, idx in picks.items():
        ix = torch.from_numpy(idx.copy())
        maps[name] = pixel_nll(model, ds.images[ix], labels_for(model, ds.labels[ix]),
                               batch_size=batch_size)
    vmax = float(np.quantile(torch.cat(list(maps.values())).numpy(), 0.99))
    for name, idx in picks.items():
        ix = torch.from_numpy(idx.copy())
        save_nll_heatmaps(ds.images[ix], maps[name], out_dir / f"{name}.png", vmax=vmax)
    arrays: dict[str, Any] = {f"{k}_maps": v.numpy() for k, v in maps.items()}
    arrays.update({f"{k}_index": rows[v] for k, v in picks.items()})
    atomic_write_with(out_dir / "pixel_nll.npz",
                      lambda f: np.savez_compressed(f, **arrays))
    print(f"wrote NLL heatmaps ({', '.join(f'{k}.png' for k in picks)}; colour scale "
          f"0..{vmax:.2f} nats/pixel) to {out_dir}")


# ---- ood ---------------------------------------------------------------------------------
def _register_ood(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ood", help="out-of-distribution detection scores and metrics",
                       description="Score an in-distribution test set and an OOD set with "
                       "raw likelihood, the likelihood ratio against a background model "
                       "(--background), input complexity and the typicality test; print "
                       "AUROC, AUPRC and FPR at 80%% TPR of each score (OOD = positive).")
    p.add_argument("--model", required=True, metavar="RUN", help="run or saved-model folder")
    p.add_argument("--background", metavar="RUN_BG",
                   help="background model (trained with --mutation-rate) for the ratio")
    p.add_argument("--in", dest="in_data", required=True, metavar="NAME",
                   help="in-distribution dataset (the model's training data)")
    p.add_argument("--out", dest="out_data", required=True, metavar="NAME",
                   help="out-of-distribution dataset")
    p.add_argument("--in-root", help="folder with the in-distribution files")
    p.add_argument("--out-root", help="folder with the OOD files")
    p.add_argument("--in-split", default="test", choices=["train", "test"])
    p.add_argument("--out-split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, help="a fixed random subset of N images of each set")
    p.add_argument("--codecs", default="png,jpeg2000",
                   help="lossless codecs for input complexity: png, jpeg2000, webp "
                   "(comma-separated; 'none' for no complexity scores)")
    g = p.add_argument_group("typicality test (Nalisnick et al. 2019)")
    g.add_argument("--typicality-m", type=int, default=10, help="batch size M (default 10)")
    g.add_argument("--alpha", type=float, default=0.99, help="bootstrap quantile")
    g.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap batches")
    g.add_argument("--fit-limit", type=int, default=2000,
                   help="held-out in-distribution training images for the entropy "
                   "estimate (0: no typicality test)")
    p.add_argument("--report", default="ood-report", metavar="DIR",
                   help="folder for report.json, histograms.png and scores.csv")
    _model_args(p)
    p.set_defaults(func=cmd_ood)


def heldout_train_images(name: str, root: str | None, run: dict[str, Any], count: int,
                         seed: int) -> tuple[ImageDataset, str]:
    """Up to `count` in-distribution training images the run did not train on.

    A run that trained on `limit_train` images of `name` took them with
    `ImageDataset.subset(limit_train, seed)` (see `tractable.training.api.load_split`); the
    rest of the split is held out. Otherwise the entropy estimate has to use training
    images, which is said in the returned note.
    """
    train = load_dataset(name, split="train", root=root)
    cfg = run.get("train", {}) if run.get("data") == name else {}
    limit = cfg.get("limit_train")
    held = torch.ones(len(train), dtype=torch.bool)
    if limit is not None and limit < len(train):
        held[subset_rows(len(train), limit, int(cfg.get("seed", 0)))] = False
        note = f"{name} train images outside the run's {limit}-image training subset"
    elif cfg:
        note = (f"{name} train images (the run trained on the whole split, so the entropy "
                f"estimate uses seen images)")
    else:
        note = (f"{name} train images (the model's run.json does not name {name} as its "
                f"data, so which images it saw is unknown)")
    idx = torch.nonzero(held).flatten()
    g = torch.Generator().manual_seed(seed)
    idx = idx[torch.randperm(len(idx), generator=g)[:count]].sort().values
    if len(idx) == 0:
        raise DataError(f"no held-out {name} training images for the typicality test; "
                        "pass --fit-limit 0 to skip it")
    return ImageDataset(train.images[idx], train.labels[idx], train.class_names, name), note


def _codecs(spec: str) -> list[str]:
    from tractable.evaluation.complexity import CODECS

    names = [c.strip() for c in spec.split(",") if c.strip() and c.strip() != "none"]
    unknown = [c for c in names if c not in CODECS]
    if unknown:
        raise ConfigError(f"unknown codec(s) {unknown}; choose from {sorted(CODECS)}")
    return names


def cmd_ood(args: argparse.Namespace) -> int:
    from tractable.evaluation.ood import evaluate_ood, format_table, measure
    from tractable.evaluation.scoring import score_dataset
    from tractable.viz import save_histograms

    codecs = _codecs(args.codecs)
    if args.typicality_m < 1 or args.fit_limit < 0 or args.bootstrap < 1:
        raise ConfigError("--typicality-m and --bootstrap must be >= 1, --fit-limit >= 0")
    model, model_dir = _load_model(args.model, args)
    background = _load_model(args.background, args)[0] if args.background else None
    ds_in, rows_in = load_images(args.in_data, args.in_split, args.in_root, args.limit,
                                 args.seed)
    ds_out, rows_out = load_images(args.out_data, args.out_split, args.out_root, args.limit,
                                   args.seed)
    kw = {"background": background, "codecs": codecs, "batch_size": args.batch_size,
          "progress": _progress()}
    m_in, m_out = measure(model, ds_in, **kw), measure(model, ds_out, **kw)
    heldout, note = None, None
    if args.fit_limit:
        fit, note = heldout_train_images(args.in_data, args.in_root, _run_json(model_dir),
                                         args.fit_limit, args.seed)
        heldout = score_dataset(model, fit, args.batch_size, progress=_progress(),
                                marginal=True).bits_per_dim
        note = f"entropy estimate and bootstrap from {len(fit)} {note}"
    report = evaluate_ood(m_in, m_out, heldout, args.typicality_m, args.alpha,
                          args.bootstrap, args.seed)

    names = (f"{args.in_data} {args.in_split}", f"{args.out_data} {args.out_split}")
    print(f"OOD detection: {names[1]} (positives, {len(ds_out)}) vs {names[0]} "
          f"({len(ds_in)}); scores in bits/dim, higher = more OOD")
    print(format_table(report, args.in_data, args.out_data))
    if note:
        print(note)
    out = Path(args.report)
    payload = {"model": str(model_dir), "background": args.background,
               "in": {"data": args.in_data, "split": args.in_split, "num_images": len(ds_in)},
               "out": {"data": args.out_data, "split": args.out_split,
                       "num_images": len(ds_out)},
               "codecs": codecs, "heldout": note, "seed": args.seed, **report.to_dict()}
    atomic_write_json(out / "report.json", payload)
    titles = {k: f"{k}   AUROC {m.auroc:.3f}" for k, m in report.metrics.items()}
    save_histograms({k: (report.scores_in[k], report.scores_out[k]) for k in report.metrics},
                    out / "histograms.png", labels=names, titles=titles)
    _write_ood_scores(out / "scores.csv", report, (ds_in, rows_in), (ds_out, rows_out))
    print(f"wrote {out / 'report.json'}, {out / 'histograms.png'}, {out / 'scores.csv'}")
    return 0


def _write_ood_scores(path: Path, report: Any, set_in: tuple[ImageDataset, np.ndarray],
                      set_out: tuple[ImageDataset, np.ndarray]) -> None:
    (ds_in, rows_in), (ds_out, rows_out) = set_in, set_out
    cols: dict[str, Any] = {
        "set": ["in"] * len(ds_in) + ["out"] * len(ds_out),
        "index": np.r_[rows_in, rows_out],
        "label": np.r_[ds_in.labels.numpy(), ds_out.labels.numpy()],
    }
    for k in report.metrics:
        cols[k] = np.r_[report.scores_in[k], report.scores_out[k]]
    atomic_write_text(path, scores_csv(cols))
