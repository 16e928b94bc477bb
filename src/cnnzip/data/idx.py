"""Reader for the IDX format of MNIST and Fashion-MNIST, raw or gzipped.

A file is gunzipped when its first two bytes are gzip's magic number (1f 8b),
whatever its name: a raw file called ``*.gz`` or a gzipped one without the
suffix reads the same (an IDX file starts with two zero bytes, never 1f 8b).

Layout: 2 zero bytes, a dtype code, the number of dimensions n, then n
big-endian u32 sizes, then the values. Every size is checked against the file
before anything is allocated, so a corrupt header cannot ask for gigabytes.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnzip.errors import DataError

# IDX dtype code -> numpy big-endian dtype
_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_MAX_DIMS = 4
MAX_BYTES = 1 << 32  # 4 GiB: Fashion-MNIST's largest file is 47 MB, EMNIST's 550 MB


def read_idx_bytes(raw: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse one IDX file already in memory and return its array."""
    if len(raw) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _DTYPES:
        raise DataError(
            f"{source}: bad IDX magic number 0x{raw[:4].hex()} "
            "(expected 0x0000 then a dtype code 0x08-0x0E): not an IDX file, or corrupt"
        )
    if not 1 <= ndim <= _MAX_DIMS:
        raise DataError(f"{source}: IDX header claims {ndim} dimensions (1 to {_MAX_DIMS} allowed)")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{source}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = np.dtype(_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    actual = len(raw) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{source}: IDX file {kind}: header says shape {tuple(dims)} "
            f"({expected} data bytes) but the file holds {actual}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)


def _gunzip(raw: bytes, max_bytes: int, path: Path) -> bytes:
    """Decompress in 1 MiB pieces, stopping past ``max_bytes`` (one read of max_bytes
    would reserve that much memory up front)."""
    out = bytearray()
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        while piece := f.read(1 << 20):
            out += piece
            if len(out) > max_bytes:
                raise DataError(
                    f"{path}: decompresses to more than {max_bytes:,} bytes "
                    "(raise max_bytes if real)"
                )
    return bytes(out)


def read_idx(path: str | Path, *, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read an IDX file, gunzipping it when it starts with gzip's magic number.

    Neither the file nor what it decompresses to may exceed ``max_bytes``: a few
    kilobytes of gzip can expand to gigabytes.
    """
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            raise DataError(f"{path}: larger than {max_bytes:,} bytes (raise max_bytes if real)")
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file name
            raw = _gunzip(raw, max_bytes, path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot decompress ({exc}); the file is corrupt") from None
    return read_idx_bytes(raw, source=str(path))
