"""`make demo` installs the package and what the demo needs, not the development stack;
`make test` installs the development stack (read from `make -n`, nothing is run)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEV_ONLY = ("gradio", "selenium", "mypy", "pytest", "ruff", "hypothesis")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def planned(target: str, tmp_path: Path) -> str:
    """The commands `make -n target` would run in a fresh checkout (no .venv yet)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    return subprocess.run(["make", "-n", "-C", str(tmp_path), target], check=True,
                          capture_output=True, text=True).stdout


def extras_installed(commands: str) -> set[str]:
    return {e.strip() for group in re.findall(r"pip install -q -e '\.\[([^\]]*)\]'", commands)
            for e in group.split(",")}


def requirements_of(extras: set[str]) -> list[str]:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + [
        r for e in extras for r in project["optional-dependencies"][e]]


def test_make_demo_installs_no_development_tools(tmp_path: Path) -> None:
    commands = planned("demo", tmp_path)
    extras = extras_installed(commands)
    assert extras and "dev" not in extras
    needed = " ".join(requirements_of(extras))
    assert not [tool for tool in DEV_ONLY if tool in needed], needed
    assert "torch==2.13.0" in commands and "tractable.demo" in commands


def test_make_test_installs_the_development_stack(tmp_path: Path) -> None:
    assert "dev" in extras_installed(planned("test", tmp_path))
