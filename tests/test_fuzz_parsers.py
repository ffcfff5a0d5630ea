"""Every file parser, fed arbitrary and mutated bytes: it returns a value or raises the
`TractableError` of its kind, never another exception, never a hang or a crash.

One row of `PARSERS` per file format: a function writing the bytes where the parser looks
and running it, and a valid example (mutations of it reach past the first checks). Any
error must be a `TractableError` with a one-line message. A new format is one more row.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tractable.app.uploads import read_upload
from tractable.config import read_config_json
from tractable.convert.tf_bundle import TFCheckpoint
from tractable.data.idx import read_idx
from tractable.data.prepared import IMAGES_FILE, LABELS_FILE, META_FILE, _open, problem_with
from tractable.errors import CompressedFileError, TractableError
from tractable.models.registry import model_class
from tractable.run_folder import open_folder
from tractable.training.api import saved_train_config

FIXTURES = Path(__file__).parent / "fixtures" / "openai_pixelcnn" / "small"
# 50 examples per format keep `make test` short; TRACTABLE_FUZZ_EXAMPLES=5000 digs deeper
FUZZ = settings(max_examples=int(os.environ.get("TRACTABLE_FUZZ_EXAMPLES", "50")),
                deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _config_json(folder: Path, data: bytes) -> None:
    (folder / "config.json").write_bytes(data)
    family, cfg = read_config_json(folder)
    model_class(family).config_class.from_dict(cfg)


def _run_json(folder: Path, data: bytes) -> None:
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_bytes(VALID_CONFIG)
    (folder / "run.json").write_bytes(data)
    (folder / "summary.json").write_bytes(data)
    open_folder(folder)
    saved_train_config(folder)


def _prepared_meta(folder: Path, data: bytes) -> None:
    copy = folder / "copy"
    copy.mkdir()
    (copy / IMAGES_FILE).write_bytes(bytes(4 * 4))
    (copy / LABELS_FILE).write_bytes(bytes(8))
    (copy / META_FILE).write_bytes(data)
    if problem_with(copy) is None:  # a copy that passes the checks must open
        ds = _open(copy)
        assert ds.images.float().sum() == 0


def _prepared_meta_accepted(folder: Path, data: bytes) -> None:
    """The valid meta.json passes the checks (so `_prepared_meta` really opens it)."""
    _prepared_meta(folder, data)
    assert problem_with(folder / "copy") is None
    assert tuple(_open(folder / "copy").images.shape) == (1, 1, 4, 4)


def _tf_index(folder: Path, data: bytes) -> None:
    for f in FIXTURES.iterdir():
        if f.name.startswith("params.ckpt"):
            shutil.copy(f, folder / f.name)
    (folder / "params.ckpt.index").write_bytes(data)
    ckpt = TFCheckpoint(folder / "params.ckpt")
    for name in ckpt.names():
        ckpt.read(name)


def _idx(folder: Path, data: bytes) -> None:
    (folder / "x.idx").write_bytes(data)
    read_idx(folder / "x.idx")


def _upload(folder: Path, data: bytes) -> None:
    for shape in [(1, 28, 28), (3, 32, 32)]:
        x, _ = read_upload(data, shape)
        assert tuple(x.shape) == shape


def _image_file(folder: Path, data: bytes) -> None:
    from tractable.cli.images import read_image

    (folder / "x.png").write_bytes(data)
    x = read_image(folder / "x.png", (1, 40, 48))
    assert tuple(x.shape) == (1, 40, 48)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(48 * 40, dtype=np.uint8).reshape(40, 48) % 251).save(buf, "PNG")
    return buf.getvalue()


VALID_CONFIG = json.dumps({"family": "pixelcnn++", "format_version": 1, "config": {
    "image_shape": [1, 8, 8], "nr_resnet": 1, "nr_filters": 4}}).encode()
VALID_RUN = json.dumps({"format_version": 2, "family": "pixelcnn++", "data": "mnist-mini",
                        "train": {"data": "mnist-mini", "max_steps": 2}}).encode()
VALID_META = json.dumps({"format_version": 1, "count": 1, "shape": [1, 4, 4],
                         "name": "x", "class_names": []}).encode()
VALID_IDX = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(8))


def _compressed(_: Path, data: bytes) -> None:
    """As read, and re-signed so the mutations also reach the header behind the trailer."""
    from tractable.compression.container import unpack

    for candidate in (data, data[:-32] + hashlib.sha256(data[:-32]).digest()):
        try:
            unpack(candidate)
        except CompressedFileError as e:
            assert str(e) and "\n" not in str(e).strip(), str(e)


def _compressed_accepted(_: Path, data: bytes) -> None:
    """The valid file unpacks (`_compressed` tolerates the refusal a fuzzed file earns)."""
    from tractable.compression.container import unpack

    header, chunks = unpack(data)
    assert header.count == 3 and header.extra["names"] == ["a.png", "b.png", "c.png"]
    assert chunks == [bytes(range(8)), bytes(4)]


def _valid_compressed() -> bytes:
    from tractable.compression.container import Header, pack

    header = Header(model="ab" * 32, family="pixelcnn++", shape=[1, 4, 4], count=3, batch=2,
                    num_classes=0, chunks=[8, 4], pixels_sha256="cd" * 32, coder="c",
                    numerics="n", torch="t", extra={"names": ["a.png", "b.png", "c.png"]})
    return pack(header, [bytes(range(8)), bytes(4)])


@dataclass(frozen=True)
class Parser:
    name: str
    parse: Callable[[Path, bytes], None]
    valid: Callable[[], bytes]
    # for a `parse` that tolerates the refusals fuzzing earns: asserts the valid example
    # is accepted, not refused
    accepts: Callable[[Path, bytes], None] | None = None


PARSERS = [
    Parser("config.json", _config_json, lambda: VALID_CONFIG),
    Parser("run.json and summary.json", _run_json, lambda: VALID_RUN),
    Parser("prepared meta.json", _prepared_meta, lambda: VALID_META, _prepared_meta_accepted),
    Parser("TF checkpoint index", _tf_index,
           lambda: (FIXTURES / "params.ckpt.index").read_bytes()),
    Parser("IDX", _idx, lambda: VALID_IDX),
    Parser("uploaded image", _upload, _png),
    Parser("image file (complete, latent)", _image_file, _png),
    Parser("compressed images (tractable compress)", _compressed, _valid_compressed,
           _compressed_accepted),
]


def _mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid` with a few bytes changed, cut short, or spliced with random bytes."""
    n = len(valid)

    def flip(edits: list[tuple[int, int]]) -> bytes:
        b = bytearray(valid)
        for pos, value in edits:
            b[pos % n] = value
        return bytes(b)

    return st.one_of(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1,
                 max_size=8).map(flip),
        st.integers(0, n).map(lambda k: valid[:k]),
        st.tuples(st.integers(0, n), st.binary(max_size=64)).map(
            lambda t: valid[:t[0]] + t[1] + valid[t[0]:]),
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
_FIELDS = st.sampled_from(["family", "format_version", "config", "train", "data", "count",
                           "shape", "image_shape", "nr_resnet", "nr_filters", "max_steps"])


def _json_like(valid: bytes) -> st.SearchStrategy[bytes]:
    """Valid JSON of the right outline with values replaced, plus deep nesting."""
    try:
        base = json.loads(valid)
    except ValueError:
        return st.just(b"[" * 100_000 + b"]" * 100_000)

    def replace(edits: list[tuple[str, object]]) -> bytes:
        obj = json.loads(valid)
        for key, value in edits:
            target = obj.get("config") if key in ("image_shape", "nr_resnet", "nr_filters") \
                and isinstance(obj.get("config"), dict) else obj
            target[key] = value
        return json.dumps(obj, allow_nan=True).encode()

    deep = st.integers(90, 5000).map(lambda d: (("[" * d + "]" * d) if d % 2 else
                                                ('{"a":' * d + "1" + "}" * d)).encode())
    return st.one_of(
        st.lists(st.tuples(_FIELDS, _JSON), min_size=1, max_size=3).map(replace),
        deep, _JSON.map(lambda v: json.dumps(v).encode()),
    ) if isinstance(base, dict) else deep


def _inputs(p: Parser) -> st.SearchStrategy[bytes]:
    valid = p.valid()
    return st.one_of(st.binary(max_size=256), _mutated(valid), _json_like(valid))


@pytest.mark.parametrize("parser", PARSERS, ids=[p.name for p in PARSERS])
def test_a_parser_refuses_bad_bytes_with_one_clear_error(parser: Parser) -> None:
    @FUZZ
    @given(data=_inputs(parser))
    def run(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                parser.parse(Path(tmp), data)
            except TractableError as e:
                assert str(e) and "\n" not in str(e).strip(), str(e)

    run()


@pytest.mark.parametrize("parser", PARSERS, ids=[p.name for p in PARSERS])
def test_the_valid_example_parses(parser: Parser, tmp_path: Path) -> None:
    """The mutations start from a file the parser accepts (else the fuzz proves little)."""
    (parser.accepts or parser.parse)(tmp_path, parser.valid())
