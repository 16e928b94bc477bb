"""The tensor index of a .cnnz header, checked field by field before anything is decoded.

A header is untrusted JSON: every field a decoder reads is checked here for
its type and range first, so a lying header ends in one ``CnnzFormatError``
naming the tensor, never a ``TypeError`` deep in numpy. The checks also set
the resource budget: the elements all tensors declare (at most
``max_params``, by default enough for any real CNN) and the size of the arch
kwargs, both bounded before any array is allocated or any model built.
"""

from __future__ import annotations

import math
from typing import Any

from cnnzip.codec.errors import CnnzFormatError, CnnzLimitError
from cnnzip.codec.streams import CODERS

__all__ = [
    "DTYPE_NAMES",
    "MAX_ARCH_ITEMS",
    "MAX_PARAMS",
    "check_arch",
    "check_tensors",
    "numel",
    "stored_dtypes",
]

MAX_PARAMS = 1 << 28  # decoded elements per file by default: VGG-16 has 138M
MAX_ARCH_ITEMS = 256  # JSON values in the arch kwargs: real models need a few dozen
MAX_INDEX_BITS = 16
MAX_K = 1 << 16
DTYPE_NAMES = ("float32", "float16", "float64", "int64", "int32", "uint8", "bool")
FLOATS = ("float32", "float16", "float64")
_COMMON = {"name", "shape", "encoding", "buffer"}
_FIELDS = {  # encoding -> the keys its entry holds besides _COMMON
    "dense": {"dtype", "stored", "section"},
    "binary": {"dtype", "bits", "alpha"},
    "sparse": {"dtype", "index_bits", "count", "gaps", "values"},
    "shared": {"dtype", "index_bits", "count", "gaps", "k", "codebook", "codes"},
    "alias": {"of"},
}
_STREAM_FIELDS = {"coder", "n", "alphabet", "table_bytes", "section"}


def numel(entry: dict[str, Any]) -> int:
    return math.prod(entry["shape"])


def stored_dtypes(dtype: str) -> tuple[str, ...]:
    """How a dense tensor of ``dtype`` may be stored: floats as float16, float32 or
    themselves; any other dtype only as itself (a relabelled dtype is a lie)."""
    return ("float16", "float32", dtype) if dtype in FLOATS else (dtype,)


def _fail(entry: dict[str, Any], what: str) -> CnnzFormatError:
    return CnnzFormatError(f"tensor {entry['name']!r}: {what}")


def _int(entry: dict[str, Any], value: Any, key: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _fail(entry, f"{key}={value!r:.40} is not an integer in [{lo}, {hi}]")
    return value


def _keys(entry: dict[str, Any], obj: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(obj) - allowed)
    missing = sorted(allowed - set(obj) - {"buffer", "symbol"})
    if unknown or missing:
        raise _fail(entry, f"{what} has unknown fields {unknown} or lacks {missing}")


def _stream(entry: dict[str, Any], key: str, n_max: int, alphabet: int) -> None:
    desc = entry[key]
    if not isinstance(desc, dict):
        raise _fail(entry, f"{key} stream is {desc!r:.40}, not an object")
    coder = desc.get("coder")
    _keys(entry, desc, _STREAM_FIELDS | ({"symbol"} if coder == "const" else set()), key)
    if coder not in CODERS:
        raise _fail(entry, f"{key} stream coder {coder!r:.40} is not one of {CODERS}")
    _int(entry, desc["n"], f"{key} n", 0, n_max)
    _int(entry, desc["section"], f"{key} section", 0, 1 << 31)
    _int(entry, desc["table_bytes"], f"{key} table_bytes", 0, 1 << 31)
    if type(desc["alphabet"]) is not int or desc["alphabet"] != alphabet:
        raise _fail(entry, f"{key} alphabet {desc['alphabet']!r:.40} is not {alphabet}")
    if coder == "const":
        _int(entry, desc.get("symbol"), f"{key} symbol", 0, alphabet - 1)


def _dense(entry: dict[str, Any]) -> None:
    dtype, stored = entry["dtype"], entry["stored"]
    if not isinstance(dtype, str) or dtype not in DTYPE_NAMES:
        raise _fail(entry, f"unknown dtype {dtype!r:.40}; known: {', '.join(DTYPE_NAMES)}")
    if not isinstance(stored, str) or stored not in stored_dtypes(dtype):
        raise _fail(entry, f"a {dtype} tensor cannot be stored as {stored!r:.40}")


def _coded(entry: dict[str, Any]) -> None:
    """A sparse or shared entry: index bits, count and the streams' sizes."""
    size = numel(entry)
    p = _int(entry, entry["index_bits"], "index_bits", 1, MAX_INDEX_BITS)
    count = _int(entry, entry["count"], "count", 0, size)
    _stream(entry, "gaps", count + size // ((1 << p) - 1), 1 << p)
    if entry["encoding"] == "shared":
        k = _int(entry, entry["k"], "k", 1, MAX_K)
        _stream(entry, "codes", count, k)
        if entry["codes"]["n"] != count:
            raise _fail(entry, f"{entry['codes']['n']} codes for {count} kept weights")


def _entry(entry: Any, seen: dict[str, dict[str, Any]], max_params: int) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise CnnzFormatError(f"tensor entry {entry!r:.80} has no name")
    if entry["name"] in seen:
        raise _fail(entry, "appears twice in the header")
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > 8:
        raise _fail(entry, f"bad shape {shape!r:.80}")
    for d in shape:
        _int(entry, d, "a dimension", 0, max(max_params, MAX_PARAMS))  # total: below
    encoding = entry.get("encoding")
    if not isinstance(encoding, str) or encoding not in _FIELDS:
        raise _fail(entry, f"unknown encoding {encoding!r:.40}; known: {', '.join(_FIELDS)}")
    _keys(entry, entry, _COMMON | _FIELDS[encoding], "the entry")
    if not isinstance(entry.get("buffer", False), bool):
        raise _fail(entry, f"buffer={entry['buffer']!r:.40} is not true/false")
    if encoding == "dense":
        _dense(entry)
    elif encoding == "alias":
        _alias(entry, seen)
    elif entry["dtype"] != "float32":
        raise _fail(entry, f"{encoding} weights must be float32, not {entry['dtype']!r:.40}")
    if encoding in ("sparse", "shared"):
        _coded(entry)
    if encoding == "binary" and (len(shape) < 2 or not numel(entry)):
        raise _fail(entry, f"binary weights of shape {shape}")
    return entry


def _alias(entry: dict[str, Any], seen: dict[str, dict[str, Any]]) -> None:
    target = seen.get(entry["of"]) if isinstance(entry["of"], str) else None
    if target is None or target["encoding"] == "alias":
        raise _fail(entry, f"alias of {entry['of']!r:.80}, which is no stored tensor before it")
    if target["shape"] != entry["shape"]:
        raise _fail(entry, f"alias of shape {entry['shape']} for {target['shape']}")


def check_tensors(tensors: Any, max_params: int = MAX_PARAMS) -> list[dict[str, Any]]:
    """The header's tensor list, every field checked, within ``max_params`` elements."""
    if not isinstance(tensors, list):
        raise CnnzFormatError("header has no tensor list")
    seen: dict[str, dict[str, Any]] = {}
    total = 0
    for raw in tensors:
        entry = _entry(raw, seen, max_params)
        seen[entry["name"]] = entry
        if entry["encoding"] != "alias":
            total += numel(entry)
        if total > max_params:
            raise CnnzLimitError(
                f"the file declares more than {max_params} elements (a lying header, or a "
                "model larger than the default budget: pass max_params= / --max-params)"
            )
    return tensors


def _items(value: Any, budget: int) -> int:
    """JSON values in ``value`` (stops counting past ``budget``)."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        return 1
    total = 1
    for v in value:
        total += _items(v, budget - total)
        if total > budget:
            break
    return total


def check_arch(arch: Any) -> tuple[str, dict[str, Any]]:
    """(zoo name, kwargs) of the header's arch, small enough to build a skeleton quickly."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise CnnzFormatError(f"header arch {arch!r:.80} is not {{name, kwargs}}")
    kwargs = arch.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CnnzFormatError(f"header arch kwargs {kwargs!r:.80} is not an object")
    if _items(kwargs, MAX_ARCH_ITEMS) > MAX_ARCH_ITEMS:
        raise CnnzLimitError(
            f"header arch {arch['name']!r:.40} has kwargs of more than {MAX_ARCH_ITEMS} values: "
            "no zoo model needs that many"
        )
    return arch["name"], kwargs
