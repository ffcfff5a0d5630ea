"""The small ready models shipped in the package: they load, score as recorded, and sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tractable
from tractable import pretrained
from tractable.cli import main as cli_main
from tractable.data import load_dataset
from tractable.errors import ConfigError
from tractable.evaluation import evaluate_bpd

NAMES = pretrained.available()
EXPECTED = {"pixelcnn++-mnist", "pixelcnn++-fashion-mnist", "glow-mnist", "tarflow-mnist"}


def test_the_shipped_models_ship() -> None:
    assert EXPECTED <= set(NAMES)


def _test_split(name: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    data = pretrained.info(name)["data"]
    if data == "mnist-mini":  # bundled in the package
        return load_dataset(data, "test")
    return load_dataset(data, "test", root=request.getfixturevalue("shared_data") / data)


@pytest.mark.parametrize("name", NAMES)
def test_loads_and_reproduces_its_recorded_bits_per_dim(
    name: str, request: pytest.FixtureRequest
) -> None:
    info = pretrained.info(name)
    model = tractable.load(f"pretrained:{name}").eval()
    assert model.family == info["family"]
    assert model.config.num_classes == info["num_classes"] == 10
    assert sum(p.numel() for p in model.parameters()) == info["parameters"]
    test = _test_split(name, request)
    n = info["subset_first_n"]
    first = type(test)(test.images[:n], test.labels[:n], test.class_names, test.name)
    torch.manual_seed(info["subset_seed"])  # Glow draws dequantization noise
    got = evaluate_bpd(model, first, batch_size=info["subset_batch_size"]).bits_per_dim
    # the same images, weights and noise; only float summation order may differ by machine
    assert got == pytest.approx(info["subset_bits_per_dim"], abs=1e-4)
    # and the full-test number is plausible for this subset (same model, same distribution)
    assert abs(info["test_bits_per_dim"] - got) < 0.25


@pytest.mark.parametrize("name", NAMES)
def test_samples_every_class(name: str) -> None:
    """At the default temperature (1): for Glow every prior sample must decode to finite
    pixels (`sample` raises NumericalError otherwise)."""
    model = tractable.load(f"pretrained:{name}").eval()
    y = torch.arange(20) % 10
    x = model.sample(20, y=y, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (20, *model.config.image_shape)
    assert (x.float().flatten(1).std(1) > 0).all()  # no blank image


def test_models_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f"pretrained:{name}" in out
        assert f"{pretrained.info(name)['test_bits_per_dim']:.4f}" in out


def test_cli_commands_accept_the_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "pixelcnn++-mnist"
    assert cli_main(["info", f"pretrained:{name}"]) == 0
    assert cli_main(["eval", f"pretrained:{name}", "--data", "mnist-mini", "--limit", "16",
                     "--json"]) == 0
    assert '"bits_per_dim"' in capsys.readouterr().out
    assert cli_main(["sample", f"pretrained:{name}", "-n", "4", "--out",
                     str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert cli_main(["info", "pretrained:nope"]) == 2
    assert "no shipped model 'nope'" in capsys.readouterr().err


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="available: .*pixelcnn\\+\\+-mnist"):
        tractable.load("pretrained:nope")
