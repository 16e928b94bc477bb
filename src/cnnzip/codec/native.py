"""The compiled coders (``cnnzip._codec``, csrc/codec_*.c) when they are built.

The NumPy code in rans.py, huffman.py and sparse.py is the reference: the compiled
twins give the same bytes, symbols and floats bit for bit (tests/codec/test_native.py
checks it on random and corrupt streams), and the codec falls back to the reference
when the extension is missing (no compiler at install) or switched off
(``reference_only``, for tests and benchmarks). A corrupt stream raises the
extension's ``StreamError``, which ``call`` turns into ``CnnzFormatError``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from cnnzip.codec.errors import CnnzFormatError

__all__ = ["call", "extension", "narrow", "reference_only"]


def _import() -> ModuleType | None:
    try:
        return importlib.import_module("cnnzip._codec")
    except ImportError:  # not compiled: the NumPy reference runs (same results, slower)
        return None


_codec = _import()
_enabled = [True]


def extension() -> ModuleType | None:
    """The compiled coders, or None (not built, or ``reference_only`` is active)."""
    return _codec if _enabled[-1] else None


@contextmanager
def reference_only() -> Iterator[None]:
    """Run the NumPy reference coders inside this block, compiled or not."""
    _enabled.append(False)
    try:
        yield
    finally:
        _enabled.pop()


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` of the extension, a corrupt stream reported as ``CnnzFormatError``."""
    try:
        return fn(*args)
    except _codec.StreamError as exc:  # type: ignore[union-attr]
        raise CnnzFormatError(str(exc)) from None


def narrow(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """``symbols`` as the uint8 / uint16 array the extension reads (no copy when they
    already are one), each checked to lie in [0, alphabet)."""
    dtype = np.uint8 if alphabet <= 256 else np.uint16
    symbols = np.asarray(symbols)
    if symbols.dtype != dtype and len(symbols):
        lo, hi = int(symbols.min()), int(symbols.max())
        if lo < 0 or hi >= alphabet:
            raise ValueError(f"symbol {hi if hi >= alphabet else lo} outside alphabet {alphabet}")
    return np.ascontiguousarray(symbols, dtype=dtype)
