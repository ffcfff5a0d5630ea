"""Read TensorFlow "V2" checkpoints (tensor bundles) without TensorFlow.

A V2 checkpoint `PREFIX` is two kinds of files (TensorFlow `core/util/tensor_bundle`):

* `PREFIX.index`: a LevelDB-style sorted table (data blocks of prefix-compressed
  key/value entries with restart points, an index block of block handles, a 48-byte
  footer ending in the table magic). The key `""` holds a `BundleHeaderProto`
  (number of shards, endianness); every other key is a variable name whose value is a
  `BundleEntryProto` (dtype, shape, shard id, byte offset, byte size, masked CRC32C).
* `PREFIX.data-SSSSS-of-NNNNN`: the raw little-endian tensor bytes.

Only what checkpoints written by `tf.train.Saver` / `tf.train.Checkpoint` use is
supported: uncompressed blocks, whole (unsliced) numeric tensors. Block and tensor
checksums are verified. Nothing is executed or unpickled; every length is bounds-checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tractable.errors import CheckpointError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C
HEADER_KEY = b""

# TensorFlow DataType enum values (types.proto) -> numpy little-endian dtypes.
_DTYPES: dict[int, str] = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1",
                           9: "<i8", 10: "?", 17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}
_DTYPE_NAMES = {7: "string", 14: "bfloat16", 8: "complex64", 18: "complex128"}


# ---- CRC32C (Castagnoli), as LevelDB and TensorFlow mask it --------------------------------
def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _crc_table()


@lru_cache(maxsize=4)
def _zero_shift_tables(n: int) -> np.ndarray:
    """`[4, 256]` tables of the linear map "feed n zero bytes" on the raw CRC register."""
    table = [int(t) for t in _TABLE]
    images = []
    for bit in range(32):
        r = 1 << bit
        for _ in range(n):
            r = table[r & 0xFF] ^ (r >> 8)
        images.append(r)
    out = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for b in range(256):
            acc = 0
            for j in range(8):
                if b >> j & 1:
                    acc ^= images[8 * k + j]
            out[k, b] = acc
    return out


def crc32c(data: bytes | memoryview) -> int:
    """CRC32C of `data` (init and final xor 0xFFFFFFFF).

    Vectorised over rows: the message is front-padded with zeros (which leave a zero-init
    register unchanged) and cut into rows of `n` bytes, whose raw CRCs are computed
    together, then folded with the "shift by n zero bytes" map. The initial value is
    applied by xoring it into the first four bytes (equivalent for a reflected CRC).
    """
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    if len(buf) < 4:
        short = 0xFFFFFFFF
        for byte in buf.tolist():
            short = int(_TABLE[(short ^ byte) & 0xFF]) ^ (short >> 8)
        return short ^ 0xFFFFFFFF
    buf[:4] ^= 0xFF
    n = 64 if len(buf) <= 1 << 16 else 1024 if len(buf) <= 1 << 24 else 4096
    rows = -(-len(buf) // n)
    padded = np.zeros(rows * n, dtype=np.uint8)
    padded[rows * n - len(buf):] = buf
    columns = np.ascontiguousarray(padded.reshape(rows, n).T)  # column j: byte j of every row
    reg = np.zeros(rows, dtype=np.uint32)
    for column in columns:
        reg = _TABLE[reg.astype(np.uint8) ^ column] ^ (reg >> 8)
    shift = _zero_shift_tables(n)
    acc = 0
    for r in reg.tolist():
        acc = (int(shift[0, acc & 0xFF]) ^ int(shift[1, acc >> 8 & 0xFF])
               ^ int(shift[2, acc >> 16 & 0xFF]) ^ int(shift[3, acc >> 24])) ^ r
    return acc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Undo LevelDB's CRC masking (rotate right by 15 after subtracting the delta)."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---- protobuf wire format (only varint, fixed32/64 and length-delimited fields) -----------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CheckpointError("truncated or malformed varint in the checkpoint index")
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a serialized protobuf message."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + size]), pos + size
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} in the checkpoint index")
        if pos > len(buf):
            raise CheckpointError("truncated protobuf message in the checkpoint index")
        out.append((number, value))
    return out


@dataclass(frozen=True)
class TensorEntry:
    """Where one saved variable lives (a `BundleEntryProto`)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _fields(buf):
        if number == 2 and isinstance(value, bytes):
            size = next((v for n, v in _fields(value) if n == 1 and isinstance(v, int)), 0)
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)
        elif number == 3 and value:
            raise CheckpointError("a tensor of unknown rank in the checkpoint")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    f: dict[str, object] = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0,
                            "crc32c": None, "sliced": False}
    for number, value in _fields(buf):
        if number == 1:
            f["dtype"] = value
        elif number == 2 and isinstance(value, bytes):
            f["shape"] = _parse_shape(value)
        elif number in (3, 4, 5):
            f[{3: "shard_id", 4: "offset", 5: "size"}[number]] = value
        elif number == 6:
            f["crc32c"] = value
        elif number == 7:
            f["sliced"] = True
    return TensorEntry(name=name, **f)  # type: ignore[arg-type]


# ---- the LevelDB table ---------------------------------------------------------------------
def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data):
        raise CheckpointError(f"{path} is truncated (a block runs past the end of the file)")
    block = data[offset:end]
    kind = data[end]
    if kind != 0:
        raise CheckpointError(f"{path} uses block compression type {kind}; only uncompressed "
                              "tensor-bundle indexes (what TensorFlow writes) are supported")
    stored = int.from_bytes(data[end + 1:end + 5], "little")
    if unmask_crc(stored) != crc32c(data[offset:end + 1]):
        raise CheckpointError(f"{path} is corrupt (block checksum mismatch at byte {offset})")
    return block


def _block_entries(block: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointError(f"{path} has a malformed block")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(f"{path} has a malformed block (restart array)")
    entries = []
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise CheckpointError(f"{path} has a malformed block entry")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table file, in key order."""
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(f"{path} is too short to be a checkpoint index")
    footer = data[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise CheckpointError(f"{path} is not a TensorFlow checkpoint index (bad table magic)")
    _, _, pos = _handle(footer)  # the metaindex block: unused by tensor bundles
    index_offset, index_size, _ = _handle(footer, pos)
    entries = []
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, path), path):
        offset, size, _ = _handle(handle)
        entries.extend(_block_entries(_read_block(data, offset, size, path), path))
    return entries


# ---- the bundle --------------------------------------------------------------------------
def checkpoint_prefix(path: str | os.PathLike[str]) -> Path:
    """The V2 prefix for a user-given path: the prefix itself, its `.index` or a data shard,
    or a folder holding one checkpoint. A V1 checkpoint gets a message saying so."""
    p = Path(path)
    if p.name.endswith(".index"):
        p = p.with_name(p.name[: -len(".index")])
    elif ".data-" in p.name:
        p = p.with_name(p.name.split(".data-")[0])
    elif p.is_dir():
        indexes = sorted(p.glob("*.index"))
        if len(indexes) != 1:
            found = ", ".join(i.name for i in indexes) or "none"
            raise CheckpointError(f"{p} should hold exactly one checkpoint (*.index), found: "
                                  f"{found}; pass the checkpoint's prefix")
        p = indexes[0].with_name(indexes[0].name[: -len(".index")])
    index = p.with_name(p.name + ".index")
    if index.is_file():
        return p
    if p.is_file():
        raise CheckpointError(
            f"{p} looks like a TensorFlow V1 checkpoint (one file, no {index.name}); only the "
            "V2 format is read. Re-save it with TensorFlow 1.x: restore it with "
            "tf.train.Saver() and save again with tf.train.Saver(write_version="
            "tf.train.SaverDef.V2), then pass the new prefix")
    raise CheckpointError(f"no TensorFlow checkpoint at {path} (expected {index})")


class TFCheckpoint:
    """The variables of a V2 checkpoint: `names()`, `shape(name)`, `read(name)` (numpy)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.prefix = checkpoint_prefix(path)
        self.entries: dict[str, TensorEntry] = {}
        num_shards = 1
        for key, value in read_table(self.prefix.with_name(self.prefix.name + ".index")):
            if key == HEADER_KEY:
                header = dict(_fields(value))
                num_shards = int(header.get(1, 1))  # type: ignore[arg-type]
                if header.get(2, 0) != 0:
                    raise CheckpointError(f"{self.prefix} was written big-endian; "
                                          "only little-endian checkpoints are supported")
            else:
                name = key.decode("utf-8", errors="replace")
                self.entries[name] = _parse_entry(name, value)
        self.num_shards = num_shards
        self._shards: dict[int, bytes] = {}

    def names(self) -> list[str]:
        return sorted(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entry(name).shape

    def _entry(self, name: str) -> TensorEntry:
        if name not in self.entries:
            raise CheckpointError(f"{self.prefix} has no variable {name!r}")
        return self.entries[name]

    def _shard(self, shard_id: int) -> bytes:
        if shard_id not in self._shards:
            path = self.prefix.with_name(
                f"{self.prefix.name}.data-{shard_id:05d}-of-{self.num_shards:05d}")
            if not path.is_file():
                raise CheckpointError(f"checkpoint data file {path} is missing")
            self._shards[shard_id] = path.read_bytes()
        return self._shards[shard_id]

    def read(self, name: str, verify: bool = True) -> np.ndarray:
        """The variable `name` as a numpy array of its saved dtype and shape."""
        e = self._entry(name)
        if e.sliced:
            raise CheckpointError(f"variable {name!r} is saved in slices (partitioned); "
                                  "not supported")
        if e.dtype not in _DTYPES:
            kind = _DTYPE_NAMES.get(e.dtype, f"enum {e.dtype}")
            raise CheckpointError(f"variable {name!r} has unsupported dtype {kind}")
        dtype = np.dtype(_DTYPES[e.dtype])
        count = int(np.prod(e.shape, dtype=np.int64))
        if e.size != count * dtype.itemsize:
            raise CheckpointError(f"variable {name!r}: {e.size} bytes stored for shape "
                                  f"{list(e.shape)} of {dtype}")
        shard = self._shard(e.shard_id)
        if e.offset + e.size > len(shard):
            raise CheckpointError(f"variable {name!r} runs past the end of its data file "
                                  "(truncated download?)")
        raw = memoryview(shard)[e.offset:e.offset + e.size]
        if verify and e.crc32c is not None and unmask_crc(e.crc32c) != crc32c(raw):
            raise CheckpointError(f"variable {name!r} is corrupt (checksum mismatch)")
        return np.frombuffer(raw, dtype=dtype).reshape(e.shape).copy()

