"""`make demo`: the main job on the embedded default data (see README)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tractable.data import load_dataset
from tractable.viz import save_grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo")
    args = parser.parse_args(argv)
    out = Path(args.out)
    test = load_dataset("mnist-mini", split="test")
    save_grid(test.images[:64], out / "real_digits.png")
    print(f"{test}: wrote {out / 'real_digits.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
