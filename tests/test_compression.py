"""Lossless compression with the autoregressive families (`tractable.compression`).

Real mnist-mini digits and tiny models trained for a few steps: every image decodes bit
for bit, the file costs the model's bits/dim within 1% plus its header, a file written
with 2 threads decodes with 1, and bad files fail with one clear line (exit 2).
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tractable
from cli_errors import fails
from tractable.compression import compress_images, read_header
from tractable.compression.container import pack, unpack
from tractable.compression.frequencies import TOTAL, code_length_bits, frequencies
from tractable.data import load_dataset
from tractable.errors import CompressedFileError, ConfigError, ShapeError
from tractable.likelihoods.categorical import Categorical
from tractable.likelihoods.logistic_mixture import DiscretizedLogisticMixture
from tractable.models import Compressible, model_class
from tractable.models.base import TractableModel

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 200  # real digits per family in the round trip


def _trained(family: str, num_classes: int, steps: int = 10, **changes) -> TractableModel:
    """A tiny 28×28 model after a few Adam steps on mnist-mini (peaked, not uniform, dists)."""
    cls = model_class(family)
    ds = load_dataset("mnist-mini", "train")
    cfg = cls.config_class(image_shape=(1, 28, 28), num_classes=num_classes,
                           class_names=[str(k) for k in range(num_classes)],
                           **{**cls.tiny_settings, **changes})
    torch.manual_seed(0)
    model = cls(cfg)
    g = torch.Generator().manual_seed(0)
    y_all = ds.labels if num_classes else None
    rows = torch.randperm(len(ds), generator=g)[:32]
    with torch.no_grad():
        model.data_dependent_init(ds.images[rows], None if y_all is None else y_all[rows])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        rows = torch.randperm(len(ds), generator=g)[:16]
        loss, _ = model.loss(ds.images[rows], None if y_all is None else y_all[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[TractableModel, Path]]:
    """A conditional PixelCNN++ and an unconditional 256-level Gated PixelCNN, saved."""
    root = tmp_path_factory.mktemp("models")
    found = {}
    for name, family, k, changes in [
            ("pixelcnn++", "pixelcnn++", 10, {"dropout": 0.0, "nonlocal_blocks": 0}),
            ("gated", "gated-pixelcnn", 0, {"n_levels": 256})]:
        model = _trained(family, k, **changes)
        model.save_pretrained(root / name)
        found[name] = (model, root / name)
    return found


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset("mnist-mini", "test")
    return ds.images[:N_IMAGES], ds.labels[:N_IMAGES]


# ---- the distributions the coder uses -----------------------------------------------------
def _mixture_joint_by_definition(lik, params, x):
    """log Σ_k π_k Π_c P_k(x_c) of eq. 2 with exact CDF differences, written out per pixel."""
    m, c = lik.num_mixtures, lik.num_channels
    out = []
    for p, v in zip(params.tolist(), x.tolist(), strict=True):
        logits = torch.tensor(p[:m], dtype=torch.float64)
        means = torch.tensor(p[m:m + c * m], dtype=torch.float64).view(c, m)
        log_s = torch.tensor(p[m + c * m:m + 2 * c * m], dtype=torch.float64).view(c, m)
        coeffs = torch.tanh(torch.tensor(p[m + 2 * c * m:], dtype=torch.float64)).view(-1, m)
        total = torch.zeros((), dtype=torch.float64)
        for k, weight in enumerate(torch.softmax(logits, 0).tolist()):
            prob = weight
            for ch in range(c):
                mu = float(means[ch, k]) + sum(
                    coeffs[ch * (ch - 1) // 2 + e, k] * (v[e] / 127.5 - 1) for e in range(ch))
                s = math.exp(max(float(log_s[ch, k]), -7.0))
                xs = v[ch] / 127.5 - 1
                z_hi = math.inf if v[ch] == 255 else (xs + 1 / 255 - mu) / s
                z_lo = -math.inf if v[ch] == 0 else (xs - 1 / 255 - mu) / s
                sig = lambda z: torch.sigmoid(torch.tensor(float(z), dtype=torch.float64))  # noqa: E731
                # Right of the mean both CDFs are near 1: subtract the upper tails instead.
                prob = prob * (sig(-z_lo) - sig(-z_hi) if xs > mu else sig(z_hi) - sig(z_lo))
            total = total + prob
        out.append(float(torch.log(total)))
    return torch.tensor(out, dtype=torch.float64)


def test_logistic_mixture_channel_conditionals_are_normalized_and_multiply_to_the_joint():
    torch.manual_seed(0)
    lik = DiscretizedLogisticMixture(num_channels=3, num_mixtures=4)
    params = torch.randn(64, lik.num_params, dtype=torch.float64)
    params[:, 4 + 12:4 + 24] = params[:, 4 + 12:4 + 24] * 0.5 - 2.5  # scales ~0.08: moderate
    x = torch.randint(0, 256, (64, 3))
    total = torch.zeros(64, dtype=torch.float64)
    for c in range(3):
        probs = lik.channel_probs(params, c, x[:, :c])
        assert probs.dtype == torch.float64 and probs.shape == (64, 256)
        assert bool((probs >= 0).all())
        torch.testing.assert_close(probs.sum(1), torch.ones(64, dtype=torch.float64))
        total += probs.gather(1, x[:, c:c + 1]).squeeze(1).log()
    torch.testing.assert_close(total, _mixture_joint_by_definition(lik, params, x),
                               rtol=1e-9, atol=1e-9)


def test_categorical_channel_probs_are_the_softmax_of_that_channels_logits():
    lik = Categorical(16)
    params = torch.randn(5, 3 * 16)
    x = torch.randint(0, 16, (5, 3))
    terms = lik.log_prob_terms(params[:, :, None, None], x[:, :, None, None])[:, :, 0, 0]
    for c in range(3):
        probs = lik.channel_probs(params, c, x[:, :c])
        torch.testing.assert_close(probs.gather(1, x[:, c:c + 1]).squeeze(1).log(),
                                   terms[:, c].double())


def test_frequencies_keep_every_symbol_codable_and_sum_exactly():
    probs = torch.softmax(torch.randn(50, 256, dtype=torch.float64) * 8, dim=1)
    probs[0] = 0.0
    probs[0, 7] = 1.0  # a certain symbol: all others must still get a count
    f = frequencies(probs)
    assert f.dtype == torch.int64 and bool((f >= 1).all())
    assert bool((f.sum(1) == TOTAL).all())
    assert torch.equal(f, frequencies(probs.clone()))  # a function of the values alone
    symbols = torch.multinomial(probs[1:], 1).squeeze(1)
    ideal = -probs[1:].gather(1, symbols[:, None]).squeeze(1).log2()
    # Floors and the one-count minimum cost at most ~K/TOTAL of the mass: tiny in bits.
    assert float((code_length_bits(f[1:], symbols) - ideal).max()) < 1e-3
    with pytest.raises(tractable.errors.NumericalError, match="non-finite"):
        frequencies(torch.full((2, 4), float("nan")))


# ---- round trips on real digits -----------------------------------------------------------
@pytest.mark.parametrize("name", ["pixelcnn++", "gated"])
def test_hundreds_of_digits_decode_bit_identical_at_the_models_bits_per_dim(
        name, models, digits):
    model, _ = models[name]
    x, labels = digits
    y = labels if model.config.num_classes else None
    data = model.compress(x, y, batch=N_IMAGES)  # one batch (chunking: the contract test)
    back, y_back = tractable.decompress(data, model)
    assert back.dtype == torch.uint8 and torch.equal(back, x)
    assert (y_back is None) == (y is None) and (y is None or torch.equal(y_back, y))
    header = read_header(data)
    assert header.count == N_IMAGES and len(header.chunks) == 1
    with torch.no_grad():
        model_bits = float(-model.log_prob(x, y).sum()) / math.log(2.0)
    if y is not None:
        model_bits += N_IMAGES * math.log2(10)  # labels are coded too, uniformly
    header_bits = 8 * (len(data) - sum(header.chunks))
    assert abs(8 * len(data) - header_bits - model_bits) <= 0.01 * model_bits
    assert 8 * len(data) <= 1.01 * model_bits + header_bits


def test_a_file_written_with_two_threads_decodes_with_one(digits, tmp_path):
    """Encoded in a process running torch with 2 threads, decoded here with 1. (Real
    digits' central 8×8 crops and a tiny RGB-free model keep the 2-thread run short: on
    a loaded CPU, 2 threads per tiny op are far slower than 1.)"""
    cls = model_class("pixelcnn++")
    cfg = cls.config_class(image_shape=(1, 8, 8), num_classes=10,
                           class_names=[str(k) for k in range(10)], **cls.tiny_settings)
    torch.manual_seed(3)
    model = cls(cfg).eval()
    x, y = digits[0][:16, :, 10:18, 10:18].clone(), digits[1][:16].clone()
    with torch.no_grad():
        model.data_dependent_init(x, y)
    model.save_pretrained(tmp_path / "model")
    torch.save({"x": x, "y": y}, tmp_path / "in.pt")
    script = (
        "import sys, torch, tractable\n"
        "from tractable.compression import compress_images\n"
        "torch.set_num_threads(2)\n"
        "d = torch.load(sys.argv[2])\n"
        "m = tractable.load(sys.argv[1])\n"
        "open(sys.argv[3], 'wb').write(compress_images(m, d['x'], d['y'], batch=8, "
        "threads=2))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "model"),
                    str(tmp_path / "in.pt"), str(tmp_path / "two.trz")], check=True, env=env,
                   timeout=600)
    before = torch.get_num_threads()
    back, y_back = tractable.decompress((tmp_path / "two.trz").read_bytes(),
                                        tractable.load(tmp_path / "model"), threads=1)
    assert torch.get_num_threads() == before  # the caller's setting is restored
    assert torch.equal(back, x) and torch.equal(y_back, y)


# ---- refusals -----------------------------------------------------------------------------
def test_images_off_an_n_level_models_levels_and_bad_labels_are_refused(models, digits):
    model = model_class("gated-pixelcnn")(model_class("gated-pixelcnn").config_class(
        image_shape=(1, 28, 28), **model_class("gated-pixelcnn").tiny_settings))  # 16 levels
    x, y = digits
    with pytest.raises(ShapeError, match="levels"):
        model.compress(x[:2])
    cond, _ = models["pixelcnn++"]
    with pytest.raises(ShapeError, match="class-conditional"):
        cond.compress(x[:2])
    with pytest.raises(ShapeError, match="0..9"):
        cond.compress(x[:2], torch.tensor([3, 10]))
    with pytest.raises(ShapeError, match="no images"):
        cond.compress(x[:0], y[:0])


def test_flows_are_not_supported(digits):
    glow = tractable.load("pretrained:glow-mnist")
    assert not isinstance(glow, Compressible)
    with pytest.raises(ConfigError, match="not supported for the glow family"):
        compress_images(glow, digits[0][:2], digits[1][:2])


def test_a_decode_that_differs_fails_its_pixel_checksum(models, digits):
    """Simulated: a file whose recorded pixel checksum does not match what decodes (what
    another torch build would produce) is refused, never returned."""
    model, _ = models["gated"]
    data = model.compress(digits[0][:3])
    header, streams = unpack(data)
    other = pack(dataclasses.replace(header, pixels_sha256="0" * 64), streams)
    with pytest.raises(CompressedFileError, match="fail its checksum"):
        tractable.decompress(other, model)


# ---- the command line ---------------------------------------------------------------------
def test_the_cli_round_trips_image_files_and_a_dataset(models, digits, tmp_path, capsys):
    _, folder = models["pixelcnn++"]
    from tractable.cli import main

    pngs = tmp_path / "pngs"
    pngs.mkdir()
    x, y = digits
    for i in range(3):
        Image.fromarray(x[i, 0].numpy()).save(pngs / f"digit{i}.png")
    out = tmp_path / "files.trz"
    assert main(["compress", str(folder), str(pngs), "--class", "3", "--out", str(out)]) == 0
    assert main(["decompress", str(out), "--out", str(tmp_path / "files")]) == 0
    for i in range(3):
        back = np.asarray(Image.open(tmp_path / "files" / f"digit{i}.png"))
        assert np.array_equal(back, x[i, 0].numpy())
    assert "digit2.png,3,3" in (tmp_path / "files" / "labels.csv").read_text()

    data = tmp_path / "data.trz"
    assert main(["compress", str(folder), "--data", "mnist-mini", "--split", "test",
                 "--limit", "4", "--seed", "5", "--out", str(data)]) == 0
    assert main(["decompress", str(data), "--out", str(tmp_path / "data")]) == 0
    capsys.readouterr()
    written = sorted((tmp_path / "data").glob("*.png"))
    assert len(written) == 4 and read_header(data.read_bytes()).model_ref == str(folder)
    subset = load_dataset("mnist-mini", "test", limit=4, seed=5)  # what the CLI compressed
    for path, image in zip(written, subset.images, strict=True):
        assert np.array_equal(np.asarray(Image.open(path)), image[0].numpy()), path.name
    rows = (tmp_path / "data" / "labels.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == subset.labels.tolist()


def test_bad_files_are_one_line_errors_with_exit_2(models, digits, tmp_path, capsys):
    (model, folder), (_, other) = models["pixelcnn++"], models["gated"]
    good = compress_images(model, digits[0][:4], digits[1][:4], model_ref=str(folder))
    files = {"empty": b"", "truncated": good[:-40],
             "corrupt": good[:200] + bytes([good[200] ^ 1]) + good[201:],
             "foreign": b"\x89PNG\r\n\x1a\n" + bytes(100)}
    for name, content in files.items():
        (tmp_path / f"{name}.trz").write_bytes(content)
    (tmp_path / "good.trz").write_bytes(good)
    fails(["decompress", str(tmp_path / "empty.trz"), "--out", str(tmp_path / "o")], capsys,
          "is empty")
    fails(["decompress", str(tmp_path / "truncated.trz"), "--out", str(tmp_path / "o")],
          capsys, "corrupt or truncated")
    fails(["decompress", str(tmp_path / "corrupt.trz"), "--out", str(tmp_path / "o")], capsys,
          "corrupt or truncated")
    fails(["decompress", str(tmp_path / "foreign.trz"), "--out", str(tmp_path / "o")], capsys,
          "not a tractable compressed file")
    fails(["decompress", str(tmp_path / "good.trz"), "--model", str(other), "--out",
           str(tmp_path / "o")], capsys, "written with another model")
    fails(["decompress", str(tmp_path / "missing.trz"), "--out", str(tmp_path / "o")], capsys,
          "does not exist")
    fails(["compress", str(folder), "--out", str(tmp_path / "n.trz")], capsys,
          "give image files/folders or --data")
    fails(["compress", str(folder), str(tmp_path), "--limit", "2", "--out",
           str(tmp_path / "n.trz")], capsys, "--limit picks a subset of --data")
    fails(["compress", "pretrained:glow-mnist", "--data", "mnist-mini", "--limit", "2",
           "--out", str(tmp_path / "g.trz")], capsys, "this is a glow model")
    assert not any((tmp_path / f).exists() for f in ("o", "g.trz", "n.trz"))
