"""Shared fixtures: where the real datasets live, and one thread per xdist worker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path | None:
    candidates = [os.environ.get("TRACTABLE_SHARED_DATA"), REPO.parent / "shared" / "data",
                  Path("/work/shared/data")]
    for c in candidates:
        if c and (Path(c) / "PROVENANCE.md").is_file():
            return Path(c)
    return None


SHARED_DATA = _find_shared_data()

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def prepared_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Prepared copies of datasets go to a temporary folder, never the user's cache."""
    root = tmp_path_factory.mktemp("prepared")
    old = os.environ.get("TRACTABLE_PREPARED")
    os.environ["TRACTABLE_PREPARED"] = str(root)
    yield root
    if old is None:
        os.environ.pop("TRACTABLE_PREPARED", None)
    else:
        os.environ["TRACTABLE_PREPARED"] = old


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets of ../shared/data (official formats; see its PROVENANCE.md)."""
    if SHARED_DATA is None:
        pytest.skip("../shared/data not found (set TRACTABLE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def copy(run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the test module's `run` folder fixture, free to damage."""
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst
