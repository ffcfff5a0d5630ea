"""`hf:ORG/NAME[@REV]` loading and `push_to_hub`, against a loopback fake of the Hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tractable
from tractable.errors import ConfigError, TractableError
from tractable.models import PixelCNNPlusPlus, PixelCNNPlusPlusConfig

pytest.importorskip("huggingface_hub")
import huggingface_hub.constants as hub_constants  # noqa: E402

from fake_hub import FakeHub  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with FakeHub() as hub:
        # what importing huggingface_hub derives from HF_ENDPOINT (the subprocess test sets that)
        monkeypatch.setattr(hub_constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setenv("HF_TOKEN", "test-token")
        yield hub


def _model(seed: int) -> PixelCNNPlusPlus:
    torch.manual_seed(seed)
    cfg = PixelCNNPlusPlusConfig(image_shape=(1, 8, 8), num_classes=3, nr_resnet=1,
                                 nr_filters=8, nr_logistic_mix=2, dropout=0.0)
    return PixelCNNPlusPlus(cfg).eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_push_then_load_round_trip(fake_hub: FakeHub) -> None:
    first, second = _model(0), _model(1)
    ref1 = first.push_to_hub("someone/tiny")
    ref2 = second.push_to_hub("someone/tiny")  # a second commit on main
    assert ref1.startswith("hf:someone/tiny@") and ref1 != ref2
    assert _same_weights(tractable.load("hf:someone/tiny"), second)  # main = latest
    assert _same_weights(tractable.load(ref1), first)  # pinned to the first commit
    x = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 2])
    loaded = tractable.load(ref1)
    torch.testing.assert_close(loaded.log_prob(x, y), first.log_prob(x, y))
    files = {p.split("/resolve/")[-1] for p in fake_hub.requests if "/resolve/" in p}
    assert all(f.split("/", 1)[1] in ("config.json", "model.safetensors") for f in files)


def test_hub_errors_are_one_clear_line(fake_hub: FakeHub) -> None:
    fake_hub.add_repo("someone/notamodel", {"README.md": b"hello"})
    with pytest.raises(TractableError, match="has no config.json"):
        tractable.load("hf:someone/notamodel")
    with pytest.raises(TractableError, match="no such model repo"):
        tractable.load("hf:someone/missing")
    fake_hub.add_repo("someone/m", {"config.json": b"{}"})
    with pytest.raises(TractableError, match="no revision 'v9'"):
        tractable.load("hf:someone/m@v9")
    with pytest.raises(ConfigError, match="expected hf:ORG/NAME"):
        tractable.load("hf:justaname")


def test_cli_reads_hf_endpoint_from_the_environment(fake_hub: FakeHub, tmp_path: Path) -> None:
    """The documented convention: HF_ENDPOINT points every command at another server."""
    model = _model(2)
    model.save_pretrained(tmp_path / "m")
    fake_hub.add_repo("org/tiny", {n: (tmp_path / "m" / n).read_bytes()
                                   for n in ("config.json", "model.safetensors")})
    env = {**os.environ, "HF_ENDPOINT": fake_hub.endpoint, "HF_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(REPO / "src"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-m", "tractable.cli", "info", "hf:org/tiny"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "pixelcnn++" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "tractable.cli", "info", "hf:org/none"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no such model repo" in bad.stderr
