"""Bit packing and varints, vectorised with numpy (no Python strings of bits).

Bits are written most-significant first, as Huffman codes are read.
"""

from __future__ import annotations

import numpy as np

from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.native import extension

__all__ = [
    "CHUNK",
    "histogram",
    "pack_codes",
    "read_varints",
    "symbol_dtype",
    "unpack_fixed",
    "windows",
    "write_varints",
]

CHUNK = 1 << 16  # symbols handled per step where a whole-stream array would be large


def pack_codes(codes: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Concatenate ``codes[i]`` written in ``lengths[i]`` bits (MSB first); (bytes, bit count)."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths  # (n,) first bit of each code
    bits = np.zeros(total, dtype=np.uint8)
    codes = codes.astype(np.uint64)
    for j in range(int(lengths.max(initial=0))):  # bit j of every code that long
        has = lengths > j
        shift = (lengths[has] - 1 - j).astype(np.uint64)
        bits[starts[has] + j] = ((codes[has] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits).tobytes(), total


def unpack_fixed(data: bytes, n: int, width: int) -> np.ndarray:
    """``n`` unsigned integers of ``width`` (<= 16) bits each (MSB first), uint16 (n,).

    ``data`` must hold exactly those bits, the last byte's spare bits zero: a raw
    stream with bytes or bits to spare is corrupt. Unpacked a chunk at a time, so the
    bit array never grows past ``CHUNK * 16`` bytes.
    """
    need = (n * width + 7) // 8
    spare = 8 * need - n * width
    if len(data) != need or (spare and data[-1] & ((1 << spare) - 1)):
        raise CnnzFormatError(
            f"packed stream has {len(data)} bytes, exactly {need} needed (spare bits zero)"
        )
    raw = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(n, dtype=np.uint16)
    for a in range(0, n, CHUNK):  # CHUNK is a multiple of 8: each chunk starts on a byte
        b = min(a + CHUNK, n)
        bits = np.unpackbits(raw[a * width // 8 : (b * width + 7) // 8])[: (b - a) * width]
        wide = np.pad(bits.reshape(b - a, width), ((0, 0), (16 - width, 0)))  # (m, 16)
        out[a:b] = np.packbits(wide, axis=1).view(">u2")[:, 0]
    return out


def histogram(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Count of each symbol (int64, (alphabet,)), a chunk at a time (bincount would copy
    the whole array to int64); a symbol outside the alphabet is a corrupt stream."""
    counts = np.zeros(alphabet, dtype=np.int64)
    ext = extension()
    if ext is not None and symbols.dtype in (np.uint8, np.uint16) and symbols.flags.c_contiguous:
        try:  # one pass in C, no int64 chunks
            ext.histogram(symbols, counts)
        except ext.StreamError:
            raise CnnzFormatError(f"stream symbol outside its alphabet of {alphabet}") from None
        return counts
    for a in range(0, len(symbols), CHUNK):
        chunk = np.bincount(symbols[a : a + CHUNK], minlength=alphabet)
        if len(chunk) > alphabet:
            raise CnnzFormatError(f"stream symbol outside its alphabet of {alphabet}")
        counts += chunk
    return counts


def symbol_dtype(alphabet: int) -> type[np.unsignedinteger]:
    """The narrowest dtype for symbols below ``alphabet`` (<= 2**16)."""
    return np.uint8 if alphabet <= 256 else np.uint16


def windows(data: bytes, positions: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` (<= 25) bits starting at each bit position, as int64 (MSB first);
    bits past the end read as zero."""
    raw = np.frombuffer(data, dtype=np.uint8)
    padded = np.concatenate([raw, np.zeros(4, dtype=np.uint8)]).astype(np.uint32)
    byte = positions >> 3
    word = (
        (padded[byte] << 24) | (padded[byte + 1] << 16) | (padded[byte + 2] << 8) | padded[byte + 3]
    )  # 32 bits from the byte holding the position
    shift = (32 - width - (positions & 7)).astype(np.uint32)
    return ((word >> shift) & np.uint32((1 << width) - 1)).astype(np.int64)


def write_varints(values: np.ndarray) -> bytes:
    """LEB128: 7 bits per byte, low first, high bit = more bytes follow."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size == 0:
        return b""
    # one byte, plus one per further 7-bit group in use: integer shifts, since a float
    # log2 rounds values of 2**53 and more up and gave them a byte or two too many
    nbytes = 1 + sum(((values >> np.uint64(7 * k)) > 0).astype(np.int64) for k in range(1, 10))
    owner = np.repeat(np.arange(values.size), nbytes)  # value index of each output byte
    rank = np.arange(owner.size) - np.repeat(np.cumsum(nbytes) - nbytes, nbytes)
    out = (values[owner] >> (7 * rank).astype(np.uint64)) & np.uint64(0x7F)
    more = rank < nbytes[owner] - 1
    return (out | (more.astype(np.uint64) << np.uint64(7))).astype(np.uint8).tobytes()


def read_varints(data: bytes, count: int, max_bytes: int = 8) -> tuple[np.ndarray, int]:
    """``count`` LEB128 values from the start of ``data``: (uint64 values, bytes used)."""
    if count == 0:
        return np.zeros(0, dtype=np.uint64), 0
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw < 0x80)[:count]  # last byte of each value
    if len(ends) < count:
        raise CnnzFormatError(f"table holds fewer than {count} values")
    used = int(ends[-1]) + 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    if int((ends - starts).max()) >= max_bytes:
        raise CnnzFormatError(f"table value longer than {max_bytes} bytes")
    rank = np.arange(used) - np.repeat(starts, ends - starts + 1)  # byte's place in its value
    parts = (raw[:used].astype(np.uint64) & np.uint64(0x7F)) << (7 * rank).astype(np.uint64)
    values = np.add.reduceat(parts, starts)
    return values, used
