"""The metrics log of a run: JSONL and CSV files, optionally TensorBoard.

Rows live in memory (they are small) and both files are rewritten atomically at each log
event, so a kill never leaves a torn line, and the history saved in a checkpoint restores
exactly the log up to that checkpoint when a run is resumed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from tractable._io import atomic_write_text
from tractable.errors import ConfigError
from tractable.run_folder import METRICS_CSV, METRICS_JSONL, TENSORBOARD_DIR

CSV_COLUMNS = ["kind", "step", "epoch", "loss", "bpd", "test_bpd", "lr", "grad_norm",
               "img_per_s", "elapsed_s", "skipped"]


class MetricsLog:
    """Append-only rows `{"kind": "train"|"eval"|"skip", "step": ..., ...}`."""

    def __init__(self, run_dir: str | os.PathLike[str] | None, tensorboard: bool = False,
                 rows: list[dict[str, Any]] | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.rows: list[dict[str, Any]] = list(rows or [])
        self._tb = _summary_writer(self.run_dir / TENSORBOARD_DIR) if (
            tensorboard and self.run_dir is not None) else None

    def add(self, kind: str, step: int, **values: Any) -> dict[str, Any]:
        row = {"kind": kind, "step": step, **{k: _plain(v) for k, v in values.items()}}
        self.rows.append(row)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, float):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)
        return row

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == kind]

    def best_test_bpd(self) -> float | None:
        vals = [r["test_bpd"] for r in self.of_kind("eval") if r.get("test_bpd") is not None]
        return min(vals) if vals else None

    def write(self) -> None:
        """Rewrite metrics.jsonl and metrics.csv atomically."""
        if self.run_dir is None:
            return
        atomic_write_text(self.run_dir / METRICS_JSONL,
                          "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.run_dir / METRICS_CSV, buf.getvalue())
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _plain(v: Any) -> Any:
    """Tensors and numpy scalars -> Python numbers, so rows are JSON and weights_only safe."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    return float(v)


def _summary_writer(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'tractable[tensorboard]'"
        ) from None
    return SummaryWriter(log_dir=str(directory))
