"""`tractable score | ood`: per-image likelihoods, NLL heatmaps, out-of-distribution scores.

    tractable score RUN --data fashion-mnist --split test --out scores.csv --heatmap maps/
    tractable ood --model RUN --background RUN_BG --in fashion-mnist --ood mnist --out report/

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
from tractable.cli.common import (
    DeprecatedFlag,
    data_options,
    data_source_args,
    dataset_for,
    examples,
    limit_arg,
    open_model,
    weights_and_device_args,
)
from tractable.data import ImageDataset, load_dataset
from tractable.data.subsets import heldout_train_images
from tractable.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _register_score(sub)
    _register_ood(sub)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, metavar="IMAGES",
                   help="images per forward pass")
    weights_and_device_args(p)
    p.add_argument("--seed", type=int, default=0, help="for --limit subsets and bootstraps")


def _progress() -> bool:
    return sys.stderr.isatty()


# ---- score -------------------------------------------------------------------------------
def _register_score(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("score", help="per-image NLL and bits/dim (CSV), per-pixel NLL maps",
                       description="Exact NLL of every image of a dataset split; with "
                       "--heatmap, PNG overlays of where each image is surprising "
                       "(autoregressive models), with a colour bar in nats per pixel.",
                       epilog=examples(
                           "tractable score runs/m --out scores.csv",
                           "tractable score runs/fashion --data mnist --root ~/data/mnist "
                           "--limit 1000 --out mnist.csv --heatmap maps/",
                           "tractable score pretrained:pixelcnn++-mnist my_digit.png "
                           "more_digits/"))
    p.add_argument("path", metavar="RUN_OR_MODEL_DIR")
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_FOLDER",
                   help="score these image files (and the images below these folders) "
                   "instead of a dataset: each is converted to the model's channels, "
                   "inverted to its data's polarity, padded to its aspect and resized, with "
                   "a note saying so (default: none, score the dataset)")
    p.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                   help="image files: invert them (--invert) or never (--no-invert) (default: "
                   "when they are dark on light and the model's data light on dark, or the "
                   "other way round)")
    p.add_argument("--data", help="dataset (default: the one the run trained on)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    limit_arg(p)
    p.add_argument("--out", metavar="CSV",
                   help="CSV: index, label, nll_nats, bits_per_dim (image files: file, "
                   "nll_nats, bits_per_dim) (required for a dataset; default for files: "
                   "print only)")
    p.add_argument("--heatmap", metavar="DIR", help="write per-pixel NLL overlays here "
                   "(default: none)")
    p.add_argument("--heatmap-count", type=int, default=64, metavar="IMAGES",
                   help="images per heatmap grid")
    g = p.add_argument_group("data")
    data_source_args(g)
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

    if args.images:
        from tractable.cli.score_files import score_files

        model, folder = open_model(args)
        files, s = score_files(args, model, folder)
        if args.out:
            atomic_write_text(args.out, scores_csv({
                "file": [str(p) for p in files], "nll_nats": s.nll_nats,
                "bits_per_dim": s.bits_per_dim}))
            print(f"wrote {args.out}")
        return 0
    if not args.out:
        raise ConfigError("pass --out CSV for the scores of a dataset (or name image files "
                          "after the model to score them: tractable score MODEL my.png)")
    model, folder = open_model(args)
    data, opts = dataset_for(args, folder)
    ds = load_dataset(data, args.split, limit=args.limit, seed=args.seed, **opts)
    s = score_dataset(model, ds, batch_size=args.batch_size, progress=_progress())
    rows = ds.split_rows.numpy()
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
        save_nll_heatmaps(ds.images[ix], maps[name], out_dir / f"{name}.png", vmax=vmax,
                          title=f"{ds.name}: {name.replace('_', ' ')} images | NLL per pixel")
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
                       "AUROC, AUPRC and FPR at 80% TPR of each score (OOD = positive).",
                       epilog=examples(
                           "tractable ood --model runs/fashion --background runs/bg --in "
                           "fashion-mnist --ood mnist --out reports/fashion-vs-mnist",
                           "tractable ood --model runs/c10 --in cifar10 --ood svhn "
                           "--ood-download --limit 2000 --codecs png"))
    p.add_argument("--model", required=True, metavar="RUN", help="run or saved-model folder")
    p.add_argument("--background", metavar="RUN_BG",
                   help="background model (trained with --mutation-rate) for the ratio "
                   "(default: no ratio score)")
    p.add_argument("--in", dest="in_data", required=True, metavar="NAME",
                   help="in-distribution dataset (the model's training data)")
    p.add_argument("--ood", dest="ood_data", metavar="NAME",
                   help="out-of-distribution dataset (required; was --out before)")
    p.add_argument("--out", default="ood-report", metavar="DIR",
                   help="folder for report.json, histograms.png and scores.csv")
    p.add_argument("--in-split", default="test", choices=["train", "test"])
    p.add_argument("--ood-split", default="test", choices=["train", "test"])
    limit_arg(p, "each set")
    g = p.add_argument_group("data (--in-*: the in-distribution set, --ood-*: the OOD set; "
                             "--size / --channels: both)")
    data_source_args(g, "in-", "the in-distribution set", shape=False)
    data_source_args(g, "ood-", "the OOD set", shape=False)
    g.add_argument("--size", type=int, metavar="PIXELS",
                   help="resize and center-crop both sets to PIXELS x PIXELS (default: "
                   "the images' own size)")
    g.add_argument("--channels", type=int, choices=[1, 3],
                   help="1: greyscale, 3: RGB, both sets (default: the images' own)")
    # the names of an earlier version: kept, with a warning
    p.add_argument("--out-root", dest="ood_root", action=DeprecatedFlag, new="--ood-root")
    p.add_argument("--out-split", dest="ood_split", action=DeprecatedFlag, new="--ood-split",
                   choices=["train", "test"])
    p.add_argument("--report", dest="out", action=DeprecatedFlag, new="--out")
    p.add_argument("--codecs", default="png,jpeg2000",
                   help="lossless codecs for input complexity: png, jpeg2000, webp "
                   "(comma-separated; 'none' for no complexity scores)")
    g = p.add_argument_group("typicality test (Nalisnick et al. 2019)")
    g.add_argument("--typicality-m", type=int, default=10, metavar="IMAGES",
                   help="batch size M of the typicality test")
    g.add_argument("--typicality-alpha", type=float, default=0.99, metavar="Q",
                   help="bootstrap quantile of the typicality test")
    g.add_argument("--bootstrap", type=int, default=10_000, metavar="BATCHES",
                   help="bootstrap batches")
    # `--alpha` is the attribute strength of `glow manipulate`; here it was the quantile
    p.add_argument("--alpha", dest="typicality_alpha", type=float, action=DeprecatedFlag,
                   new="--typicality-alpha")
    g.add_argument("--fit-limit", type=int, default=2000, metavar="IMAGES",
                   help="held-out in-distribution training images for the entropy "
                   "estimate (0: no typicality test)")
    _model_args(p)
    p.set_defaults(func=cmd_ood)


def ood_set_options(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """`load_dataset` options of the in- (`in_`) or OOD (`ood_`) set."""
    opts = data_options(args, prefix)
    opts.update({k: v for k, v in (("size", args.size), ("channels", args.channels))
                 if v is not None})
    return opts


def ood_dataset_name(args: argparse.Namespace) -> str:
    """--ood, with a clear error for the earlier spelling `--out NAME`."""
    if args.ood_data:
        return str(args.ood_data)
    from tractable.data.registry import FOLDER_PREFIX, known_datasets

    hint = ""
    if args.out in known_datasets() or str(args.out).startswith(FOLDER_PREFIX):
        hint = f" (did you mean --ood {args.out}?)"
    raise ConfigError("name the out-of-distribution dataset with --ood NAME; --out now "
                      f"names the report folder{hint}")


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
    model, folder = open_model(args, args.model)
    background = open_model(args, args.background)[0] if args.background else None
    ood_data = ood_dataset_name(args)
    in_opts, ood_opts = ood_set_options(args, "in_"), ood_set_options(args, "ood_")
    ds_in = load_dataset(args.in_data, args.in_split, limit=args.limit, seed=args.seed,
                         **in_opts)
    ds_out = load_dataset(ood_data, args.ood_split, limit=args.limit, seed=args.seed,
                          **ood_opts)
    kw = {"background": background, "codecs": codecs, "batch_size": args.batch_size,
          "progress": _progress()}
    m_in, m_out = measure(model, ds_in, **kw), measure(model, ds_out, **kw)
    heldout, note = None, None
    if args.fit_limit:
        fit, note = heldout_train_images(args.in_data, in_opts, folder.run,
                                         args.fit_limit, args.seed)
        heldout = score_dataset(model, fit, args.batch_size, progress=_progress(),
                                marginal=True).bits_per_dim
        note = f"entropy estimate and bootstrap from {len(fit)} {note}"
    report = evaluate_ood(m_in, m_out, heldout, args.typicality_m, args.typicality_alpha,
                          args.bootstrap, args.seed)

    names = (f"{args.in_data} {args.in_split}", f"{ood_data} {args.ood_split}")
    print(f"OOD detection: {names[1]} (positives, {len(ds_out)}) vs {names[0]} "
          f"({len(ds_in)}); scores in bits/dim, higher = more OOD")
    print(format_table(report, args.in_data, ood_data))
    if note:
        print(note)
    out = Path(args.out)
    payload = {"model": str(folder.model_dir), "background": args.background,
               "in": {"data": args.in_data, "split": args.in_split, "num_images": len(ds_in)},
               "out": {"data": ood_data, "split": args.ood_split,
                       "num_images": len(ds_out)},
               "codecs": codecs, "heldout": note, "seed": args.seed, **report.to_dict()}
    atomic_write_json(out / "report.json", payload)
    titles = {k: f"{k}   AUROC {m.auroc:.3f}" for k, m in report.metrics.items()}
    save_histograms({k: (report.scores_in[k], report.scores_out[k]) for k in report.metrics},
                    out / "histograms.png", labels=names, titles=titles)
    _write_ood_scores(out / "scores.csv", report, ds_in, ds_out)
    print(f"wrote {out / 'report.json'}, {out / 'histograms.png'}, {out / 'scores.csv'}")
    return 0


def _write_ood_scores(path: Path, report: Any, ds_in: ImageDataset,
                      ds_out: ImageDataset) -> None:
    cols: dict[str, Any] = {
        "set": ["in"] * len(ds_in) + ["out"] * len(ds_out),
        "index": np.r_[ds_in.split_rows.numpy(), ds_out.split_rows.numpy()],
        "label": np.r_[ds_in.labels.numpy(), ds_out.labels.numpy()],
    }
    for k in report.metrics:
        cols[k] = np.r_[report.scores_in[k], report.scores_out[k]]
    atomic_write_text(path, scores_csv(cols))
