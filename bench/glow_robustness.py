"""Does a Glow's inverse give up on ordinary inputs? Non-finite and inexact decodes, counted.

    .venv/bin/python bench/glow_robustness.py [MODEL] [--pairs 2] [--prior 1000]
        [--noise 100] [--limit N] [--parts edits,...] [--classes 0-4] [--save FILE.json]
    .venv/bin/python bench/glow_robustness.py --table OLD.json NEW.json   # side by side

MODEL is anything `tractable.load` opens (default `pretrained:glow-mnist`); it must be a
class-conditional Glow of mnist-mini's shape. Every case is decoded exactly as the app and
the command line decode it: latents from `encode` (float64), edited with the attribute
vectors that `glow manipulate` and the app's Edit tab compute (mean latent of class-k test
digits minus that of the others, over all 1,000 mnist-mini test digits, Glow §5.3), and
decoded by `decode_continuous`; a case fails when any of its sub-pixels is NaN or ±inf.

- edits: every test digit × α ∈ {−2, −1, 1, 2} × every class vector (40,000 decodes);
- blends: every pair among the first `--pairs` (2) test digits of each class (20 digits,
  190 pairs) at t = 0, ¼, ½, ¾, 1 (Glow §5.2);
- prior samples at T = 1, classes cycling 0–9 (`sample`'s latents, decoded in the model's
  dtype as `sample` does);
- uploads: real-looking digits made here (the first test digit of each class, scaled to 300×400
  canvas with a soft pen, and the ten digits typed in DejaVu Sans and DejaVu Serif Bold),
  white on black and black on white (60 pictures), read by the app's upload path
  (`tractable.app.uploads.read_upload`), each encoded, checked for an exact round trip and
  edited with α ∈ {−2, −1, 1, 2} × every class vector;
- encode→decode exactness: every test digit and `--noise` uniform-noise images must come
  back bit for bit (sub-pixels wrong are counted; `encode(check=False)`, then `decode`).

float64 convolutions cost this CPU 4-6× float32 ones, so edits, blends and uploads are
screened in float32 and every float32 failure is decoded again in float64 (see `Decoder`);
the last table row says how many, and how many float32 passes were re-checked in float64.

The counts are deterministic (fixed seeds, no timing). `--parts` and `--classes` split the
run into shards that can run side by side (sharing the test digits' latents through
`--latents FILE`), each `--save`d into one JSON file (merged);
`--table` prints several saved runs side by side.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import Tensor

import tractable
from tractable.app.uploads import read_upload
from tractable.data import load_dataset
from tractable.models import Glow
from tractable.models.glow.quantize import to_uint8
from tractable.models.latents import attribute_vector, encode_batched

ALPHAS = (-2.0, -1.0, 1.0, 2.0)
BLEND_POINTS = (0.0, 0.25, 0.5, 0.75, 1.0)
FONTS = ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf")
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")

Latents = list[Tensor]
PARTS = ("edits", "blends", "prior", "uploads", "round_trip")


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class Decoder:
    """Counts images whose decode holds a NaN or ±inf, as the app decodes them (float64
    latents, `decode_continuous` in float64).

    float64 convolutions cost this CPU 4-6× float32 ones, so each batch is decoded in
    float32 first; every image float32 flags is decoded again in float64 and counts only
    if it fails there too, and every `recheck`-th image float32 passes is also decoded in
    float64 to check that a float32 pass means a float64 pass (`disagreements` counts the
    float32 passes float64 fails: 0 in every run so far)."""

    def __init__(self, model: Glow, batch: int, recheck: int) -> None:
        self.model, self.batch, self.recheck = model, batch, recheck
        self.seen = self.flagged32 = self.rechecked = self.disagreements = 0

    def _bad64(self, latents: Latents, idx: Tensor) -> Tensor:
        x_c = self.model.decode_continuous([z[idx].double() for z in latents])
        return ~torch.isfinite(x_c).flatten(1).all(1)

    def non_finite(self, latents: Latents) -> int:
        bad = 0
        for s in batches(len(latents[0]), self.batch):
            part = [z[s] for z in latents]
            x_c = self.model.decode_continuous([z.float() for z in part])
            flagged = ~torch.isfinite(x_c).flatten(1).all(1)
            idx = flagged.nonzero().flatten()
            if len(idx):
                bad += int(self._bad64(part, idx).sum())
            passed = (~flagged).nonzero().flatten()
            sample = passed[(passed + self.seen) % self.recheck == 0]
            if len(sample):
                self.disagreements += int(self._bad64(part, sample).sum())
                self.rechecked += len(sample)
            self.flagged32 += len(idx)
            self.seen += len(part[0])
        return bad


def round_trip(model: Glow, x: Tensor, z: Latents, batch: int) -> dict[str, int]:
    """decode of encode(check=False) latents `z` of uint8 images `x`: images and
    sub-pixels that do not come back exactly (float64 throughout, as the API runs)."""
    wrong_images = wrong_pixels = non_finite_images = 0
    for s in batches(len(x), batch):
        x_c = model.decode_continuous([t[s] for t in z])
        back = to_uint8(x_c, model.config.n_bits)  # what decode(check_finite=False) does
        wrong = (back != x[s]).flatten(1)
        wrong_images += int(wrong.any(1).sum())
        wrong_pixels += int(wrong.sum())
        non_finite_images += int((~torch.isfinite(x_c).flatten(1).all(1)).sum())
    return {"images": len(x), "sub_pixels": x[0].numel() * len(x),
            "wrong_images": wrong_images, "wrong_sub_pixels": wrong_pixels,
            "non_finite_images": non_finite_images}


def edits(dec: Decoder, z: Latents, vectors: dict[int, Latents]) -> dict[str, list[int]]:
    """Per class: [cases, non-finite] over every image × α with that class's vector."""
    out = {}
    for c, v in vectors.items():
        cases = bad = 0
        for alpha in ALPHAS:
            bad += dec.non_finite([a + alpha * b for a, b in zip(z, v, strict=True)])
            cases += len(z[0])
        out[str(c)] = [cases, bad]
    return out


def blends(dec: Decoder, z: Latents) -> list[int]:
    n = len(z[0])
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    ia = torch.tensor([i for i, _ in pairs])
    ib = torch.tensor([j for _, j in pairs])
    cases = bad = 0
    for t in BLEND_POINTS:
        bad += dec.non_finite([(1 - t) * a[ia] + t * a[ib] for a in z])
        cases += len(pairs)
    return [cases, bad]


def prior_samples(model: Glow, n: int, batch: int) -> list[int]:
    """Non-finite decodes of `sample`'s latents at T = 1 (in the model's dtype, as `sample`)."""
    g = torch.Generator().manual_seed(0)
    bad = 0
    for s in batches(n, batch):
        y = torch.arange(s.start, s.stop) % model.config.num_classes
        x_c = model.decode_continuous(model.prior_latents(len(y), y, 1.0, g))
        bad += int((~torch.isfinite(x_c).flatten(1).all(1)).sum())
    return [n, bad]


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def pen_scan(digit: Tensor) -> np.ndarray:
    """A test digit as a phone photo of a drawing might look: 300×400, smooth strokes."""
    big = Image.fromarray(digit[0].numpy()).resize((240, 240), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (300, 400), 0)
    canvas.paste(big, (30, 80))
    return np.asarray(canvas.filter(ImageFilter.GaussianBlur(2)))


def font_digit(char: str, font_file: Path) -> np.ndarray:
    """A digit typed in a font, white on black, centred on a 300×400 canvas."""
    canvas = Image.new("L", (300, 400), 0)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.truetype(str(font_file), 220)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    draw.text(((300 - (right - left)) / 2 - left, (400 - (bottom - top)) / 2 - top), char,
              fill=255, font=font)
    return np.asarray(canvas.filter(ImageFilter.GaussianBlur(1)))


def per_class(labels: Tensor, each: int) -> Tensor:
    """Indices of the first `each` test digits of every class, in class order."""
    return torch.cat([(labels == c).nonzero().flatten()[:each]
                      for c in range(int(labels.max()) + 1)])


def uploads(test: Tensor, labels: Tensor, shape: tuple[int, int, int]) -> dict[str, Tensor]:
    """Real-looking digit pictures, white on black and black on white, as the app reads
    them; named by kind."""
    drawn = [pen_scan(d) for d in test[per_class(labels, 1)]]
    fonts = [font_digit(str(k), FONT_DIR / f) for f in FONTS if (FONT_DIR / f).is_file()
             for k in range(10)]
    out: dict[str, Tensor] = {}
    for kind, arrays in (("scaled test digits", drawn), ("font digits", fonts)):
        if not arrays:
            continue
        for polarity, flip in (("white on black", False), ("black on white", True)):
            read = [read_upload(png(255 - a if flip else a), shape)[0] for a in arrays]
            out[f"{kind}, {polarity}"] = torch.stack(read)
    return out


def timed(label: str, fn: Callable[[], object]) -> object:
    t0 = time.perf_counter()
    result = fn()
    print(f"  {label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return result


def class_list(text: str | None, k: int) -> list[int]:
    if not text:
        return list(range(k))
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def measure(args: argparse.Namespace) -> dict[str, object]:
    model = tractable.load(args.model).eval()
    if not isinstance(model, Glow) or not model.conditional:
        raise SystemExit(f"{args.model}: needs a class-conditional Glow")
    test = load_dataset("mnist-mini", "test")
    x, labels = test.images, test.labels
    n = min(args.limit or len(x), len(x))
    b = args.batch_size
    parts = args.parts.split(",")
    if args.latents and args.latents.is_file():
        z_all: Latents = torch.load(args.latents)
    else:
        z_all = timed(f"encode {len(x):,} test digits",  # type: ignore[assignment]
                      lambda: encode_batched(model, x, b, check=False))
        if args.latents:
            torch.save(z_all, args.latents)
    classes = class_list(args.classes, model.config.num_classes)
    vectors = {c: attribute_vector(z_all, labels == c) for c in classes}
    z = [t[:n] for t in z_all]
    dec = Decoder(model, b, args.recheck)
    rows: dict[str, object] = {"model": args.model,
                               "coupling_scale_floor": model.config.coupling_scale_floor,
                               "split_max_log_std": model.config.split_max_log_std}
    if "edits" in parts:
        rows["edit_digits"] = n
        rows["edits"] = timed("edits", lambda: edits(dec, z, vectors))
    if "blends" in parts:
        rows["pairs_from"] = args.pairs
        chosen = per_class(labels, args.pairs)
        rows["blends"] = timed("blends", lambda: blends(dec, [t[chosen] for t in z_all]))
    if "prior" in parts:
        rows["prior"] = timed("prior", lambda: prior_samples(model, args.prior, b))
    if "uploads" in parts:
        up = uploads(x, labels, tuple(model.config.image_shape))
        rows["uploads"], rows["uploads_round_trip"] = {}, {}
        for name, images in up.items():
            zu = encode_batched(model, images, b, check=False)
            rows["uploads"][name] = timed(name, lambda z=zu: edits(dec, z, vectors))  # type: ignore[index,misc]
            rows["uploads_round_trip"][name] = round_trip(model, images, zu, b)  # type: ignore[index]
    if "round_trip" in parts:
        rows["round_trip_test"] = timed("round trip test",
                                        lambda: round_trip(model, x[:n], z, b))
        noise = torch.randint(0, 256, (args.noise, *model.config.image_shape),
                              dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        zn = encode_batched(model, noise, b, check=False)
        rows["round_trip_noise"] = timed("round trip noise",
                                         lambda: round_trip(model, noise, zn, b))
    rows["float32_screen"] = {"decoded": dec.seen, "flagged_float32": dec.flagged32,
                              "passes_rechecked_float64": dec.rechecked,
                              "disagreements": dec.disagreements}
    return rows


def merge(old: dict, new: dict) -> dict:  # type: ignore[type-arg]
    """Shards of one model's run (other parts, other classes) combined."""
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "float32_screen":
            out[key] = merge(out[key], value)
        elif key == "float32_screen" and key in out:
            out[key] = {k: out[key][k] + value[k] for k in value}
        else:
            out[key] = value
    return out


def summed(per_class: dict[str, list[int]]) -> list[int]:
    return [sum(v[0] for v in per_class.values()), sum(v[1] for v in per_class.values())]


def table(runs: list[dict]) -> str:  # type: ignore[type-arg]
    def frac(pair: list[int]) -> str:
        return f"{pair[1]:,} / {pair[0]:,}"

    def trip(r: dict) -> str:  # type: ignore[type-arg]
        return (f"{r['wrong_images']:,} / {r['images']:,} images "
                f"({r['wrong_sub_pixels']:,} / {r['sub_pixels']:,} sub-pixels; "
                f"{r['non_finite_images']:,} non-finite)")

    def row(label: str, fn: Callable[[dict], str]) -> str:  # type: ignore[type-arg]
        cells = []
        for r in runs:
            try:
                cells.append(fn(r))
            except KeyError:
                cells.append("not run")
        return f"| {label} | " + " | ".join(cells) + " |"

    first = runs[0]
    lines = ["| target | " + " | ".join(f"{r['model']} (floor {r['coupling_scale_floor']:g}, "
                                       f"cap {r['split_max_log_std']})" for r in runs) + " |",
             "|---" * (len(runs) + 1) + "|"]
    lines.append(row("edits: test digits × α ∈ {−2, −1, 1, 2} × class vectors, non-finite "
                     "(classes measured)",
                     lambda r: f"{frac(summed(r['edits']))} ({len(r['edits'])} classes, "
                               f"{r['edit_digits']:,} digits)"))
    lines.append(row(f"blends: every pair of the first {first.get('pairs_from', '?')} test "
                     "digits of each class × t ∈ {0, ¼, ½, ¾, 1}, non-finite",
                     lambda r: frac(r["blends"])))
    lines.append(row("prior samples at T = 1, non-finite", lambda r: frac(r["prior"])))
    for name in first.get("uploads", {}):
        lines.append(row(f"uploads ({name}) × α × class vectors, non-finite",
                         lambda r, n=name: frac(summed(r["uploads"][n]))))
        lines.append(row(f"uploads ({name}), encode→decode not exact",
                         lambda r, n=name: trip(r["uploads_round_trip"][n])))
    lines.append(row("encode→decode, test digits: not exact", lambda r: trip(r["round_trip_test"])))
    lines.append(row("encode→decode, uniform noise: not exact",
                     lambda r: trip(r["round_trip_noise"])))
    lines.append(row("float32 screen: flagged / float64 rechecks of passes / disagreements",
                     lambda r: "{flagged_float32:,} / {passes_rechecked_float64:,} / "
                               "{disagreements}".format(**r["float32_screen"])))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="pretrained:glow-mnist")
    parser.add_argument("--pairs", type=int, default=2, help="blend every pair of the "
                        "first N test digits of each class (2: 20 digits, 190 pairs)")
    parser.add_argument("--prior", type=int, default=1000, help="prior samples at T = 1")
    parser.add_argument("--noise", type=int, default=100, help="uniform-noise images")
    parser.add_argument("--limit", type=int, help="edit and round-trip only the first N "
                        "test digits (default: all; vectors always use all)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--classes", help="edit with these class vectors only, e.g. 0-4 "
                        "(to run shards in parallel, merged by --save into one file)")
    parser.add_argument("--recheck", type=int, default=100, help="decode every N-th "
                        "float32-finite case in float64 too")
    parser.add_argument("--latents", type=Path, help="the test digits' latents: read from "
                        "this file if it exists, else encoded and written there (for shards)")
    parser.add_argument("--save", type=Path, help="write the counts as JSON (merged into "
                        "the file when it exists: shards of one model)")
    parser.add_argument("--table", type=Path, nargs="+", help="print saved runs side by "
                        "side instead of measuring")
    args = parser.parse_args()
    if args.table:
        print(table([json.loads(p.read_text()) for p in args.table]))
        return
    torch.set_grad_enabled(False)
    rows = measure(args)
    if args.save:
        if args.save.is_file():
            rows = merge(json.loads(args.save.read_text()), rows)
        args.save.write_text(json.dumps(rows, indent=1) + "\n")
    print(table([rows]))


if __name__ == "__main__":
    main()
