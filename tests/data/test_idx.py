"""IDX parsing: valid files against hand-built arrays, and every way a file can be broken."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from cnnzip.data import read_idx, read_idx_bytes
from cnnzip.errors import DataError


def test_reads_uint8_images(idx_bytes) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx_bytes(idx_bytes(images))
    np.testing.assert_array_equal(out, images)


def test_reads_big_endian_int32_and_float(idx_bytes) -> None:
    ints = np.array([1, -2, 70000], dtype=">i4")
    np.testing.assert_array_equal(read_idx_bytes(idx_bytes(ints, 0x0C)), [1, -2, 70000])
    floats = np.array([[0.5, -1.25]], dtype=">f4")
    np.testing.assert_array_equal(read_idx_bytes(idx_bytes(floats, 0x0D)), [[0.5, -1.25]])


def test_gzip_and_raw_files_read_the_same(tmp_path: Path, idx_bytes) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "raw").write_bytes(idx_bytes(labels))
    (tmp_path / "z.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "z.gz"), labels)


def test_gzip_is_detected_by_its_magic_number_not_the_file_name(tmp_path: Path, idx_bytes) -> None:
    labels = np.array([2, 7, 1], dtype=np.uint8)
    (tmp_path / "raw.gz").write_bytes(idx_bytes(labels))
    (tmp_path / "zipped").write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw.gz"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "zipped"), labels)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "magic"),  # unknown dtype code
        (lambda b: b[:3] + b"\x09" + b[4:], "dimensions"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b[:2], "too short"),
        # a header that claims 2^32-1 images: refused before any allocation
        (lambda b: b[:4] + b"\xff\xff\xff\xff" + b[8:], "truncated"),
        # dims whose product wraps int64 to 0 (2^64) in front of no data
        (lambda b: b[:3] + b"\x04" + b"\x00\x01\x00\x00" * 4, "truncated"),
    ],
)
def test_broken_files_raise_a_clear_error(mutate, message: str, idx_bytes) -> None:
    good = idx_bytes(np.zeros((4, 2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=message):
        read_idx_bytes(mutate(good))


def test_corrupt_gzip_and_missing_file(tmp_path: Path, idx_bytes) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8)))[:-8])
    with pytest.raises(DataError, match="corrupt"):
        read_idx(bad)
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "absent")


def test_files_and_gzip_bombs_beyond_the_byte_cap_are_refused(tmp_path: Path, idx_bytes) -> None:
    big = idx_bytes(np.zeros((2000, 1000), np.uint8))  # 2 MB of zeros: a 2 KB gzip
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(big))
    (tmp_path / "raw").write_bytes(big)
    with pytest.raises(DataError, match="decompresses to more than 1,000,000 bytes"):
        read_idx(tmp_path / "bomb.gz", max_bytes=1_000_000)
    with pytest.raises(DataError, match="larger than 1,000,000 bytes"):
        read_idx(tmp_path / "raw", max_bytes=1_000_000)
    assert read_idx(tmp_path / "bomb.gz", max_bytes=len(big)).shape == (2000, 1000)
