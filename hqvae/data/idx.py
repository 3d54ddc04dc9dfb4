"""The IDX file format of MNIST and Fashion-MNIST (optionally gzip-compressed).

Layout: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32
sizes, then the values big-endian in row-major order.
"""

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from hqvae.data.errors import CorruptFileError

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's contents, gunzipped when the name ends in ``.gz``."""
    path = Path(path)
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptFileError(f"{path}: cannot read it ({error}); delete it and fetch it again") from error


def parse_idx(data: bytes, source: str | os.PathLike) -> np.ndarray:
    """Decode IDX bytes into an array of the stored shape and type; ``source`` names the file in errors."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise CorruptFileError(f"{source}: not an IDX file (bad magic number {data[:4].hex()}); "
                               f"expected an MNIST-style *-idx?-ubyte[.gz] file")
    dtype = np.dtype(_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(f"{source}: IDX header cut short; delete the file and fetch it again")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise CorruptFileError(f"{source}: IDX header promises shape {shape} ({expected} bytes) but the file has "
                               f"{len(data)} bytes; it is truncated or damaged: delete it and fetch it again")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or not) into a native-endian array."""
    return parse_idx(read_bytes(path), path)
