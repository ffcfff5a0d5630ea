"""IDX files (MNIST, Fashion-MNIST), gzip-compressed or not.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code
(0x08 = uint8), the number of dimensions, then one big-endian uint32 size per dimension,
then the data in C order.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tractable.errors import DataError


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX (optionally .gz) file of uint8 data into an array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is corrupt or truncated: cannot decompress ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: IDX type 0x{dtype_code:02x} unsupported (expected uint8 0x08)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims) if dims else 0  # Python ints: a huge header cannot wrap around
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {dims} = {expected} bytes of data, "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def iter_idx(path: str | os.PathLike[str], rows: int = 10_000) -> Iterator[np.ndarray]:
    """Stream an IDX (optionally .gz) uint8 file `rows` entries (first axis) at a time.

    Peak memory is one chunk, not the file; the same checks as `read_idx` apply, and a
    file that ends early raises `DataError` when the stream reaches its end.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path} is not an IDX file (bad magic number)")
            if head[2] != 0x08:
                raise DataError(f"{path}: IDX type 0x{head[2]:02x} unsupported (expected "
                                f"uint8 0x08)")
            raw_dims = f.read(4 * head[3])
            if len(raw_dims) < 4 * head[3] or head[3] == 0:
                raise DataError(f"{path} is truncated inside its header")
            dims = struct.unpack(f">{head[3]}I", raw_dims)
            row = int(np.prod(dims[1:])) if len(dims) > 1 else 1
            for start in range(0, dims[0], rows):
                n = min(rows, dims[0] - start)
                data = f.read(n * row)
                if len(data) != n * row:
                    raise DataError(
                        f"{path} is truncated or corrupt: header says {dims} = "
                        f"{int(np.prod(dims))} bytes of data, file holds "
                        f"{start * row + len(data)}")
                yield np.frombuffer(data, dtype=np.uint8).reshape(n, *dims[1:])
            if f.read(1):
                raise DataError(f"{path} is truncated or corrupt: header says {dims} = "
                                f"{int(np.prod(dims))} bytes of data, file holds more")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is corrupt or truncated: cannot decompress ({e})") from None
