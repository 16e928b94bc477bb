"""Errors of the codec: every bad .cnnz file ends in one of these, never a crash."""

from __future__ import annotations

from cnnzip.errors import CnnzipError

__all__ = ["CnnzFormatError", "CnnzLimitError", "CnnzVersionError"]


class CnnzFormatError(CnnzipError):
    """A .cnnz file is truncated, corrupt or inconsistent."""


class CnnzVersionError(CnnzFormatError):
    """A .cnnz file of a format version this cnnzip cannot read."""


class CnnzLimitError(CnnzFormatError):
    """A .cnnz file that asks for more than the decoding budget (elements, header size)."""
