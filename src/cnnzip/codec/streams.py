"""Entropy-coded symbol streams: each stream is coded by whichever coder gives the fewest bytes.

A stream is a sequence of small non-negative integers (cluster indices, or
relative-index gaps) with an alphabet size. Its table is the symbol counts as
LEB128 varints (both Huffman and rANS rebuild their code from the counts), so
the table cost is counted in the comparison. Coders:

- ``const``: one distinct symbol, zero bytes;
- ``raw``: fixed width, ceil(log2(alphabet)) bits per symbol, no table;
- ``huffman``: canonical Huffman (the paper's choice);
- ``rans``: interleaved rANS, within ~1% of the empirical entropy (~2% at 1,500 symbols).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnzip.codec import huffman, rans
from cnnzip.codec.bits import (
    histogram,
    pack_codes,
    read_varints,
    symbol_dtype,
    unpack_fixed,
    write_varints,
)
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.native import call, extension, narrow
from cnnzip.codec.sizes import coder_bytes, entropy_bits, fixed_bytes, raw_width

__all__ = [
    "CODERS",
    "Coded",
    "decode_stream",
    "decode_streams",
    "encode_stream",
    "entropy_bits",
    "raw_width",
]

CODERS = ("const", "raw", "huffman", "rans")


@dataclass(frozen=True)
class Coded:
    """One coded stream: ``table`` + ``data`` bytes, and how to read them back."""

    coder: str
    n: int
    alphabet: int
    symbol: int  # the one symbol of a const stream
    table: bytes
    data: bytes
    entropy_bits: float

    @property
    def nbytes(self) -> int:
        return len(self.table) + len(self.data)

    def describe(self) -> dict[str, Any]:
        """What the header stores (the bytes go into a section)."""
        out: dict[str, Any] = {
            "coder": self.coder,
            "n": self.n,
            "alphabet": self.alphabet,
            "table_bytes": len(self.table),
        }
        if self.coder == "const":
            out["symbol"] = self.symbol
        return out


def _histogram(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Count of each symbol; a symbol outside the alphabet is the caller's error here."""
    try:
        return histogram(symbols, alphabet)
    except CnnzFormatError:
        raise ValueError(f"symbol {int(symbols.max())} outside alphabet {alphabet}") from None


def _raw(symbols: np.ndarray, alphabet: int) -> bytes:
    """``symbols`` at the fixed width of ``alphabet``, MSB first."""
    width = raw_width(alphabet)
    ext = extension()
    if ext is None:
        return pack_codes(symbols, np.full(len(symbols), width))[0]
    bits = np.empty(fixed_bytes(len(symbols), width), dtype=np.uint8)
    same = np.arange(alphabet, dtype=np.int64)  # each symbol is its own code, width bits
    call(ext.huff_encode, narrow(symbols, alphabet), same, np.full(alphabet, width),
         max(len(symbols), 1), bits, np.empty(0, np.uint32))  # fmt: skip
    return bits.tobytes()


def _exact_bytes(name: str, counts: np.ndarray, alphabet: int, table: bytes) -> int:
    """The exact bytes (table included) of a raw or Huffman stream with ``counts``."""
    n = int(counts.sum())
    if name == "raw":
        return fixed_bytes(n, raw_width(alphabet))
    blocks = -(-n // huffman.BLOCK)
    return len(table) + fixed_bytes(huffman.encoded_bits(counts), 1) + 4 * (blocks - 1)


def _smallest(
    best: list[str], counts: np.ndarray, alphabet: int, code: dict[str, Callable[[], bytes]]
) -> tuple[str, bytes]:
    """(name, data) of the smaller of the ``best`` two coders, the first on a tie, each
    coded once at most: raw and Huffman sizes are exact from the counts, so only an
    rANS stream is coded to learn its size (and the other coded only if it is smaller)."""
    sizes, data = {}, {}
    for name in best:
        if name == "rans":
            data[name] = code[name]()
            sizes[name] = len(code["table"]()) + len(data[name])
        else:
            sizes[name] = _exact_bytes(name, counts, alphabet, code["table"]())
    name = min(best, key=sizes.__getitem__)
    return name, data[name] if name in data else code[name]()


def encode_stream(symbols: np.ndarray, alphabet: int, coder: str = "auto") -> Coded:
    """Code ``symbols`` (ints in [0, alphabet)) with ``coder`` or the smallest of them all.
    Narrow symbols (uint8, uint16) are coded as they are, with no int64 copy."""
    symbols = np.asarray(symbols)
    if symbols.dtype.kind not in "ui":
        symbols = symbols.astype(np.int64)
    counts = _histogram(symbols, alphabet)
    n, h = len(symbols), entropy_bits(counts)
    present = np.flatnonzero(counts)
    if coder in ("auto", "const") and len(present) <= 1:
        sym = int(present[0]) if len(present) else 0
        return Coded("const", n, alphabet, sym, b"", b"", h)
    last = int(present[-1]) + 1  # table covers symbols up to the last present one
    table = write_varints(np.concatenate([[last], counts[:last]]))
    code = {
        "table": lambda: table,
        "raw": lambda: _raw(symbols, alphabet),
        "huffman": lambda: huffman.encode(symbols, counts[:last]),
        "rans": lambda: rans.encode(symbols, counts[:last]),
    }
    if coder == "auto":
        sizes = coder_bytes(counts[:last], alphabet, len(table))
        best = sorted(sizes, key=sizes.__getitem__)[:2]  # the two best estimates
        name, data = _smallest(best, counts[:last], alphabet, code)
    elif coder in CODERS[1:]:
        name, data = coder, code[coder]()
    else:
        raise ValueError(f"unknown coder {coder!r}; known: {CODERS}")
    return Coded(name, n, alphabet, 0, b"" if name == "raw" else table, data, h)


def _counts(table: bytes, n: int, alphabet: int) -> np.ndarray:
    (last,), used = read_varints(table, 1)
    if not 1 <= int(last) <= alphabet:
        raise CnnzFormatError(f"stream table covers {int(last)} symbols, alphabet is {alphabet}")
    counts, used2 = read_varints(table[used:], int(last))
    if used + used2 != len(table) or int(counts.sum()) != n:
        raise CnnzFormatError("stream table does not match its symbol count")
    if np.count_nonzero(counts) < 2:
        raise CnnzFormatError("entropy-coded stream with fewer than two symbols")
    return counts.astype(np.int64)


def _parts(desc: dict[str, Any], payload: bytes) -> tuple[str, int, int, bytes, bytes]:
    """(coder, n, alphabet, table, data) of a stream, with the header's numbers checked."""
    coder, n, alphabet = desc.get("coder"), desc.get("n"), desc.get("alphabet")
    table_bytes = desc.get("table_bytes", 0)
    if coder not in CODERS:
        raise CnnzFormatError(f"unknown stream coder {coder!r}; known: {', '.join(CODERS)}")
    for key, value in (("n", n), ("alphabet", alphabet), ("table_bytes", table_bytes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CnnzFormatError(f"stream {key} {value!r} is not a non-negative integer")
    if not 1 <= alphabet <= 1 << 16 or table_bytes > len(payload):
        raise CnnzFormatError(
            f"stream alphabet {alphabet} (1..65536) or table of {table_bytes} bytes "
            f"(section holds {len(payload)}) is impossible"
        )
    return coder, n, alphabet, payload[:table_bytes], payload[table_bytes:]


def _const(desc: dict[str, Any], n: int, alphabet: int, payload: bytes) -> np.ndarray:
    """A read-only view of one symbol repeated ``n`` times: no memory, however long."""
    symbol = desc.get("symbol", 0)
    if not (type(symbol) is int and 0 <= symbol < alphabet) or payload:
        raise CnnzFormatError("constant stream with a bad symbol or unexpected bytes")
    return np.broadcast_to(np.array(symbol, dtype=symbol_dtype(alphabet)), (n,))


def _exact(symbols: np.ndarray, counts: np.ndarray, alphabet: int) -> np.ndarray:
    """``symbols`` if their histogram is the table's: counts edited to other values that
    still sum to n would otherwise decode to other symbols without a word."""
    hist = histogram(symbols, alphabet)
    if not np.array_equal(hist[: len(counts)], counts) or hist[len(counts) :].any():
        raise CnnzFormatError("stream does not decode to the symbol counts of its table")
    return symbols.astype(symbol_dtype(alphabet), copy=False)


def decode_streams(items: list[tuple[dict[str, Any], bytes]]) -> list[np.ndarray]:
    """Symbols of several streams (uint8 or uint16 by alphabet; a const stream is a
    read-only broadcast view), each from its header description and section bytes.

    The caller bounds each ``n`` (by the tensor it belongs to) before calling.
    All rANS streams are decoded together (see ``rans.decode_many``).
    """
    out: list[np.ndarray | None] = [None] * len(items)
    batch: list[tuple[int, bytes, int, np.ndarray]] = []
    for i, (desc, payload) in enumerate(items):
        coder, n, alphabet, table, data = _parts(desc, payload)
        if coder == "const":
            out[i] = _const(desc, n, alphabet, payload)
        elif coder == "raw":
            if table:
                raise CnnzFormatError("raw stream with a table")
            out[i] = unpack_fixed(data, n, raw_width(alphabet))
            if n and int(out[i].max()) >= alphabet:
                raise CnnzFormatError(f"stream symbol outside its alphabet of {alphabet}")
        elif coder == "huffman":
            counts = _counts(table, n, alphabet)
            decoded = huffman.decode(data, n, counts, symbol_dtype(alphabet))
            out[i] = _exact(decoded, counts, alphabet)
        elif extension() is not None:  # compiled: each stream straight into its dtype
            counts = _counts(table, n, alphabet)
            out[i] = _exact(rans.decode(data, n, counts, symbol_dtype(alphabet)), counts, alphabet)
        else:
            batch.append((i, data, n, _counts(table, n, alphabet)))
    decoded = rans.decode_many([(data, n, counts) for _, data, n, counts in batch])
    for (i, _, _, counts), symbols in zip(batch, decoded, strict=True):
        out[i] = _exact(symbols, counts, items[i][0]["alphabet"])
    return out  # type: ignore[return-value]


def decode_stream(desc: dict[str, Any], payload: bytes) -> np.ndarray:
    """Symbols of one stream from its header description and section bytes (table + data)."""
    return decode_streams([(desc, payload)])[0]
