"""The .cnnz container: a versioned header, a JSON index, checksummed aligned sections.

    "CNNZ" | u16 version | u16 flags | u32 header length | header | u32 CRC32 of header
    | zero pad to 8 | sections, each starting 8-byte aligned (zero padding between)

The header is JSON (deflate-compressed when flag bit 0 is set: the index of a
small model is otherwise a noticeable part of its file). It lists the
sections as [offset from the first section, length, CRC32] and the tensors
that use them. Reading checks the magic, the version, every length and
offset against the file size and every checksum before anything is decoded,
so a bad file ends in one ``CnnzFormatError``, never a crash or a huge
allocation. The layout is strict: sections lie one after another as ``pack``
writes them, every padding byte is zero, nothing follows the last section,
and the header JSON repeats no key. No pickle anywhere. Writes are atomic
(temporary file + rename, see cnnzip.fileio).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnzip.codec.errors import CnnzFormatError, CnnzVersionError
from cnnzip.fileio import atomic_write_bytes

__all__ = ["MAGIC", "VERSION", "CnnzFile", "pack", "read", "unpack"]

MAGIC = b"CNNZ"
VERSION = 2  # 2: rANS lanes start at state 1 (version 1 files need re-encoding)
FLAG_DEFLATE = 1
_PREFIX = struct.Struct("<4sHHI")  # magic, version, flags, header length
MAX_HEADER = 64 << 20  # bytes of (decompressed) header JSON we agree to read


def _pad(n: int) -> int:
    return -n % 8


@dataclass(frozen=True)
class CnnzFile:
    """A parsed container: the header dict and its checked section bytes."""

    header: dict[str, Any]
    sections: list[bytes]
    file_bytes: int

    def section(self, index: Any) -> bytes:
        """Section ``index`` of the header; a bool is no index (JSON ``true`` is not 1)."""
        if type(index) is not int or not 0 <= index < len(self.sections):
            raise CnnzFormatError(
                f"reference to section {index!r}; the file has {len(self.sections)}"
            )
        return self.sections[index]


def pack(header: dict[str, Any], sections: list[bytes], *, compress_header: bool = True) -> bytes:
    """The file bytes: ``header`` gets its "sections" table filled in here."""
    table, offset = [], 0
    for data in sections:
        table.append([offset, len(data), zlib.crc32(data)])
        offset += len(data) + _pad(len(data))
    body = json.dumps({**header, "sections": table}, separators=(",", ":"), sort_keys=True)
    raw = body.encode("utf-8")
    flags = FLAG_DEFLATE if compress_header else 0
    head = zlib.compress(raw, 9) if compress_header else raw
    out = [
        _PREFIX.pack(MAGIC, VERSION, flags, len(head)),
        head,
        struct.pack("<I", zlib.crc32(head)),
    ]
    out.append(b"\0" * _pad(sum(map(len, out))))
    for data in sections:
        out += [data, b"\0" * _pad(len(data))]
    return b"".join(out)


def write(path: str | Path, header: dict[str, Any], sections: list[bytes]) -> int:
    """Write atomically; returns the file size."""
    data = pack(header, sections)
    atomic_write_bytes(path, data)
    return len(data)


def _header(blob: bytes, flags: int) -> dict[str, Any]:
    if flags & FLAG_DEFLATE:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(blob, MAX_HEADER)
        except zlib.error as exc:
            raise CnnzFormatError(f"header does not decompress: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise CnnzFormatError(f"header is truncated or larger than {MAX_HEADER} bytes")
    else:
        raw = blob
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CnnzFormatError(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CnnzFormatError("header is not a JSON object")
    return header


def _zeros(data: bytes, start: int, stop: int, where: str) -> None:
    if data[start:stop].strip(b"\0"):
        raise CnnzFormatError(f"non-zero padding {where} (bytes {start}..{stop}): corrupt file")


def _sections(header: dict[str, Any], data: bytes, start: int) -> list[bytes]:
    """The sections, laid out exactly as ``pack`` writes them: one after the other from
    ``start``, zero padding between, nothing after the last."""
    table = header.get("sections")
    if not isinstance(table, list):
        raise CnnzFormatError("header has no section table")
    out = []
    room = len(data) - start
    expected = 0  # where section i must start
    for i, entry in enumerate(table):
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in entry)
        ):
            raise CnnzFormatError(
                f"section {i}: entry {entry!r:.80} is not [offset, length, crc32]"
            )
        offset, length, crc = entry
        if offset != expected:
            raise CnnzFormatError(
                f"section {i} starts at {offset}, not where the one before it ends "
                f"({expected}): the section table is corrupt"
            )
        if offset + length > room:
            raise CnnzFormatError(
                f"section {i} ({length} bytes at {offset}) runs past the end of the file's "
                f"{room} bytes of sections: the file is truncated (or its table corrupt)"
            )
        blob = data[start + offset : start + offset + length]
        if zlib.crc32(blob) != crc:
            raise CnnzFormatError(f"section {i} fails its CRC32 check: the file is corrupt")
        expected = offset + length + _pad(length)
        _zeros(data, start + offset + length, start + expected, f"after section {i}")
        out.append(blob)
    if expected > room:
        raise CnnzFormatError(
            f"the file ends {expected - room} bytes into the last section's padding: "
            "it is truncated"
        )
    if expected < room:
        raise CnnzFormatError(
            f"{room - expected} bytes after the last section: trailing garbage or a corrupt table"
        )
    return out


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CnnzFormatError(f"header repeats a key in {sorted(keys)!r:.120}")
    return dict(pairs)


def unpack(data: bytes) -> CnnzFile:
    """Parse and check a container held in memory."""
    if len(data) < _PREFIX.size + 4:
        raise CnnzFormatError(f"file of {len(data)} bytes is too short to be a .cnnz")
    magic, version, flags, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CnnzFormatError(f"not a .cnnz file (starts with {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise CnnzVersionError(
            f".cnnz format version {version}; this cnnzip reads version {VERSION}: "
            "use the cnnzip release that wrote it"
        )
    if flags & ~FLAG_DEFLATE:
        raise CnnzFormatError(f"unknown header flags {flags:#06x}")
    end = _PREFIX.size + header_len
    if end + 4 > len(data) or header_len > MAX_HEADER:
        raise CnnzFormatError(
            f"header length {header_len} runs past the end of the {len(data)}-byte file"
        )
    blob = data[_PREFIX.size : end]
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(blob) != crc:
        raise CnnzFormatError("header fails its CRC32 check: the file is corrupt")
    header = _header(blob, flags)
    start = end + 4 + _pad(end + 4)
    if start > len(data):
        raise CnnzFormatError(f"file of {len(data)} bytes ends in the header's padding")
    _zeros(data, end + 4, start, "after the header")
    return CnnzFile(header=header, sections=_sections(header, data, start), file_bytes=len(data))


def read(path: str | Path) -> CnnzFile:
    """Read and check a .cnnz file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CnnzFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return unpack(data)
