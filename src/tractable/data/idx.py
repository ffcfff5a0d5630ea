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
