"""The compressed file: magic, a JSON header, the coded streams, a sha256 trailer.

    b"TRACTZ" | format version (uint16 LE) | header length (uint32 LE) | header (UTF-8 JSON)
    | stream of chunk 0 | stream of chunk 1 | ... | sha256 of everything before (32 bytes)

The header names the model (`identity.model_identity`), the images (shape, count, the
batch they were coded in, whether labels were coded), the byte length of each chunk's
stream, the coder and numerics, and the sha256 of the decoded pixels and labels. Nothing
in a file is executed: the header is JSON, checked field by field before it is used.
The trailer catches a corrupt or truncated file before any decoding; the pixel checksum
catches a decode that differs from the encode (another build of torch, another machine).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from tractable.errors import CompressedFileError

MAGIC = b"TRACTZ"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<6sHI")  # magic, format version, header length
_TRAILER = 32
MAX_HEADER_BYTES = 1 << 24


@dataclass
class Header:
    """What a file says about its contents (all of it needed to decode)."""

    model: str  # sha256 of the model (identity.model_identity)
    family: str
    shape: list[int]  # [C, H, W]
    count: int
    batch: int  # images per coded chunk; the decoder uses the same layout
    num_classes: int  # > 0: each image's label is coded before its pixels
    chunks: list[int]  # byte length of each chunk's stream
    pixels_sha256: str  # of the decoded uint8 pixels, then the labels (int64), if any
    coder: str
    numerics: str
    torch: str
    model_ref: str | None = None  # how the writer loaded the model (a hint for decoding)
    extra: dict[str, Any] = field(default_factory=dict)


_TYPES: dict[str, Any] = {
    "model": str, "family": str, "shape": list, "count": int, "batch": int,
    "num_classes": int, "chunks": list, "pixels_sha256": str, "coder": str, "numerics": str,
    "torch": str, "model_ref": (str, type(None)), "extra": dict}


def pack(header: Header, streams: list[bytes]) -> bytes:
    """The file's bytes."""
    meta = json.dumps(asdict(header), sort_keys=True, separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(meta)) + meta + b"".join(streams)
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes, name: str = "the file") -> tuple[Header, list[bytes]]:
    """(header, chunk streams) of a file's bytes; `CompressedFileError` (one line, naming
    `name`) if it is empty, not ours, from a newer format, corrupt or truncated."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CompressedFileError(f"{name}: compressed data must be bytes, got "
                                  f"{type(data).__name__}")
    data = bytes(data)
    if not data:
        raise CompressedFileError(f"{name} is empty: not a tractable compressed file")
    if not data.startswith(MAGIC[:min(len(data), len(MAGIC))]) or len(data) < len(MAGIC):
        raise CompressedFileError(f"{name} is not a tractable compressed file")
    if len(data) < _PREFIX.size + _TRAILER:
        raise CompressedFileError(f"{name} is truncated ({len(data)} bytes)")
    _, version, meta_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CompressedFileError(f"{name} has compressed-file format {version}; this "
                                  f"tractable reads format {FORMAT_VERSION} (a newer "
                                  "version wrote it?)")
    body, trailer = data[:-_TRAILER], data[-_TRAILER:]
    if hashlib.sha256(body).digest() != trailer:
        raise CompressedFileError(f"{name} is corrupt or truncated (its checksum does not "
                                  "match its contents)")
    if meta_len > min(MAX_HEADER_BYTES, len(body) - _PREFIX.size):
        raise CompressedFileError(f"{name} has an impossible header length {meta_len}")
    header = _parse_header(body[_PREFIX.size:_PREFIX.size + meta_len], name)
    payload = body[_PREFIX.size + meta_len:]
    if sum(header.chunks) != len(payload):
        raise CompressedFileError(f"{name}: its header lists {sum(header.chunks)} bytes of "
                                  f"coded data, the file holds {len(payload)}")
    streams, at = [], 0
    for size in header.chunks:
        streams.append(payload[at:at + size])
        at += size
    return header, streams


def _parse_header(raw: bytes, name: str) -> Header:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CompressedFileError(f"{name}: its header is not valid JSON") from None
    if not isinstance(meta, dict) or set(meta) != set(_TYPES):
        raise CompressedFileError(f"{name}: its header does not have the fields of format "
                                  f"{FORMAT_VERSION}")
    for key, kind in _TYPES.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise CompressedFileError(f"{name}: header field {key!r} has the wrong type")
    header = Header(**meta)
    ok = (len(header.shape) == 3 and all(isinstance(v, int) and v > 0 for v in header.shape)
          and header.count >= 0 and header.batch > 0 and header.num_classes >= 0
          and all(isinstance(v, int) and v >= 0 for v in header.chunks)
          and len(header.chunks) == -(-header.count // header.batch))
    names = header.extra.get("names", [])
    ok = ok and isinstance(names, list) and all(isinstance(n, str) for n in names) \
        and len(names) in (0, header.count)
    if not ok:
        raise CompressedFileError(f"{name}: its header is inconsistent (shape, count, batch, "
                                  "chunk sizes or names)")
    return header
