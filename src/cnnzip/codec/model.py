"""Models to .cnnz files and back.

Each tensor of the plain model (parametrizations resolved) is stored as:

- ``shared``: a SharedWeight layer (see cnnzip.quantize): its codebook
  (float32), the cluster index of every kept weight (an entropy-coded stream)
  and the kept positions as relative indices (another stream, p bits per
  layer); pruned weights decode to +0.0;
- ``sparse``: a pruned but unshared layer: float32 values of the kept
  weights and the relative indices;
- ``binary``: a weight under the BWN transform (see cnnzip.binary), alpha *
  sign per output channel: its sign bits packed densely (section "bits", set
  = negative, little-endian bit order, in the tensor's element order) and
  alpha per output channel (section "alpha", float32): 1 bit per weight;
- ``dense``: everything else (biases, norms, unpruned weights), floats as
  float32 or float16 by choice, other dtypes as they are.

Decoding rebuilds exactly the values the transforms compute, bit for bit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnzip.binary.layers import BWN
from cnnzip.codec import container
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.sparse import MAX_INDEX_BITS, best_index_bits, gap_decode, gap_encode
from cnnzip.codec.streams import decode_streams, encode_stream
from cnnzip.errors import CnnzipError, ModelError
from cnnzip.fileio import atomic_write_bytes
from cnnzip.models import get_model
from cnnzip.quantize import SharedWeight
from cnnzip.transforms import WeightTransform, transforms_of

__all__ = ["DTYPES", "decode_state", "encode", "load", "save"]

DTYPES = {  # name in the header -> (torch dtype, little-endian numpy dtype)
    "float32": (torch.float32, "<f4"),
    "float16": (torch.float16, "<f2"),
    "float64": (torch.float64, "<f8"),
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "uint8": (torch.uint8, "u1"),
    "bool": (torch.bool, "?"),
}
_NAME_OF = {t: name for name, (t, _) in DTYPES.items()}
MAX_NUMEL = 1 << 28  # elements per file: VGG-16 has 138M; more than this is a lying header


def _entries(model: nn.Module) -> list[tuple[str, torch.Tensor, list[WeightTransform]]]:
    """Every tensor of the plain model, with the transforms that compute it."""
    out = [
        (name, value.detach(), [])
        for name, value in model.state_dict().items()
        if ".parametrizations." not in f".{name}"
    ]
    for target, ts in transforms_of(model).items():
        module_name, _, tensor_name = target.rpartition(".")
        value = getattr(model.get_submodule(module_name), tensor_name).detach()
        out.append((target, value, ts))
    return out


def _plain_name(name: str) -> str:
    """``fc1.parametrizations.weight.original`` -> ``fc1.weight``."""
    module, sep, rest = name.partition("parametrizations.")
    if not sep:
        return name
    tensor = rest.split(".")[0]
    return f"{module}{tensor}"


class _Sections(list):
    def add(self, data: bytes) -> int:
        self.append(data)
        return len(self) - 1


def _stream(sections: _Sections, symbols: np.ndarray, alphabet: int) -> dict[str, Any]:
    coded = encode_stream(symbols, alphabet)
    return {**coded.describe(), "section": sections.add(coded.table + coded.data)}


def _keep_mask(ts: list[WeightTransform]) -> torch.Tensor | None:
    for t in ts:
        mask = getattr(t, "mask", None)
        if torch.is_tensor(mask):
            return mask
    return None


def _encode_tensor(
    sections: _Sections,
    name: str,
    value: torch.Tensor,
    ts: list[WeightTransform],
    dense_dtype: str,
    index_bits: int | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "shape": list(value.shape)}
    if any(isinstance(t, BWN) for t in ts):
        return _encode_binary(sections, entry, value)
    shared = next((t for t in ts if isinstance(t, SharedWeight)), None)
    mask = shared.mask if shared is not None else _keep_mask(ts)
    if shared is None and mask is None:
        stored = dense_dtype if value.is_floating_point() else _NAME_OF[value.dtype]
        raw = value.cpu().contiguous().numpy().astype(DTYPES[stored][1]).tobytes()
        return {**entry, "encoding": "dense", "dtype": _NAME_OF[value.dtype], "stored": stored,
                "section": sections.add(raw)}  # fmt: skip
    flat_mask = None if mask is None else mask.detach().cpu().reshape(-1).numpy()
    positions = np.arange(value.numel()) if flat_mask is None else np.flatnonzero(flat_mask)
    p = index_bits or best_index_bits(positions)
    entry.update(
        dtype="float32", index_bits=p, count=len(positions),
        gaps=_stream(sections, gap_encode(positions, p), 1 << p),
    )  # fmt: skip
    if shared is None:
        values = value.detach().cpu().float().reshape(-1).numpy()[positions]
        return {
            **entry,
            "encoding": "sparse",
            "values": sections.add(values.astype("<f4").tobytes()),
        }
    codebook = shared.codebook.detach().cpu().float().numpy()
    codes = shared.index.detach().cpu().reshape(-1).numpy()[positions].astype(np.int64)
    return {
        **entry,
        "encoding": "shared",
        "k": len(codebook),
        "codebook": sections.add(codebook.astype("<f4").tobytes()),
        "codes": _stream(sections, codes, len(codebook)),
    }


def _encode_binary(sections: _Sections, entry: dict[str, Any], value: torch.Tensor) -> dict:
    """alpha * sign as sign bits and alpha per output channel; refuses any other values."""
    w = value.detach().cpu().reshape(len(value), -1)  # (cout, fan_in)
    alpha = w.abs().amax(1)  # (cout,): every |w| of a row is its alpha
    if value.dtype != torch.float32 or not torch.equal(w.abs(), alpha[:, None].expand_as(w)):
        raise CnnzipError(
            f"tensor {entry['name']!r}: a binary weight must be float32 and +-alpha per "
            "output channel; store BWN layers without other transforms on them"
        )
    bits = np.packbits(torch.signbit(w).reshape(-1).numpy(), bitorder="little")
    return {
        **entry,
        "encoding": "binary",
        "dtype": "float32",
        "bits": sections.add(bits.tobytes()),
        "alpha": sections.add(alpha.numpy().astype("<f4").tobytes()),
    }


def encode(
    model: nn.Module,
    *,
    arch: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    dense_dtype: str = "float32",
    index_bits: int | None = None,
) -> bytes:
    """The .cnnz bytes of ``model``. ``arch`` = {"name": zoo name, "kwargs": {...}} lets
    ``load`` rebuild it; ``index_bits`` fixes p for every layer (default: best per layer)."""
    if dense_dtype not in ("float32", "float16"):
        raise CnnzipError(f"dense_dtype must be float32 or float16, got {dense_dtype!r}")
    if index_bits is not None and not 1 <= index_bits <= MAX_INDEX_BITS:
        raise CnnzipError(f"index bits must be in 1..{MAX_INDEX_BITS}, got {index_bits}")
    sections = _Sections()
    params = {_plain_name(name) for name, _ in model.named_parameters()}
    tensors = []
    for name, value, ts in _entries(model):
        entry = _encode_tensor(sections, name, value, ts, dense_dtype, index_bits)
        if name not in params:
            entry["buffer"] = True  # not counted in the float32 parameter bytes
        tensors.append(entry)
    header = {"format": "cnnz", "arch": arch, "meta": meta or {}, "tensors": tensors}
    return container.pack(header, sections)


def save(path: str | Path, model: nn.Module, **kwargs: Any) -> int:
    """Write ``encode(model, **kwargs)`` atomically; returns the file size in bytes."""
    data = encode(model, **kwargs)
    atomic_write_bytes(path, data)
    return len(data)


# ---- decoding -----------------------------------------------------------------------


def _int(entry: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise CnnzFormatError(
            f"tensor {entry.get('name')!r}: {key}={value!r} is not an integer in [{lo}, {hi}]"
        )
    return value


def _check_entries(tensors: Any) -> list[dict[str, Any]]:
    """Shapes, names and counts of every tensor, checked before anything is allocated."""
    if not isinstance(tensors, list):
        raise CnnzFormatError("header has no tensor list")
    total = 0
    for entry in tensors:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CnnzFormatError(f"tensor entry {entry!r:.80} has no name")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_NUMEL for d in shape
        ):
            raise CnnzFormatError(f"tensor {entry['name']!r}: bad shape {shape!r:.80}")
        total += math.prod(shape)
        if total > MAX_NUMEL:
            raise CnnzFormatError(f"tensors hold more than {MAX_NUMEL} elements: a lying header")
    return tensors


def _numel(entry: dict[str, Any]) -> int:
    return math.prod(entry["shape"])


def _stream_item(
    cf: container.CnnzFile, entry: dict[str, Any], key: str, n_max: int, alphabet: int
):
    desc = entry.get(key)
    if not isinstance(desc, dict):
        raise CnnzFormatError(f"tensor {entry['name']!r} has no {key} stream")
    n = _int(desc, "n", 0, n_max)
    if desc.get("alphabet") != alphabet:
        raise CnnzFormatError(f"tensor {entry['name']!r}: {key} alphabet is not {alphabet}")
    return desc, cf.section(desc.get("section")), n


def _float32(blob: bytes, count: int, what: str) -> np.ndarray:
    if len(blob) != 4 * count:
        raise CnnzFormatError(f"{what}: {len(blob)} bytes for {count} float32 values")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def decode_state(cf: container.CnnzFile) -> dict[str, torch.Tensor]:
    """The plain state dict stored in a checked container."""
    tensors = _check_entries(cf.header.get("tensors"))
    items: list[tuple[dict[str, Any], bytes]] = []
    plans: list[tuple[dict[str, Any], int, int]] = []  # (entry, gaps item, codes item or -1)
    for entry in tensors:
        numel, enc = _numel(entry), entry.get("encoding")
        if enc in _DIRECT:
            continue
        if enc not in ("shared", "sparse"):
            raise CnnzFormatError(f"tensor {entry['name']!r}: unknown encoding {enc!r}")
        p = _int(entry, "index_bits", 1, MAX_INDEX_BITS)
        count = _int(entry, "count", 0, numel)
        desc, blob, _ = _stream_item(cf, entry, "gaps", count + numel, 1 << p)
        items.append((desc, blob))
        codes = -1
        if enc == "shared":
            k = _int(entry, "k", 1, 1 << 16)
            desc, blob, n = _stream_item(cf, entry, "codes", count, k)
            if n != count:
                raise CnnzFormatError(f"tensor {entry['name']!r}: {n} codes for {count} weights")
            items.append((desc, blob))
            codes = len(items) - 1
        plans.append((entry, len(items) - 1 - (codes >= 0), codes))
    symbols = decode_streams(items)
    state = {
        entry["name"]: _DIRECT[entry["encoding"]](cf, entry)
        for entry in tensors
        if entry.get("encoding") in _DIRECT
    }
    for entry, gaps, codes in plans:
        numel, count = _numel(entry), entry["count"]
        positions = gap_decode(symbols[gaps], entry["index_bits"], numel, count)
        if codes >= 0:
            codebook = _float32(cf.section(entry.get("codebook")), entry["k"], entry["name"])
            values = codebook[symbols[codes]]
        else:
            values = _float32(cf.section(entry.get("values")), count, entry["name"])
        flat = np.zeros(numel, dtype=np.float32)
        flat[positions] = values
        state[entry["name"]] = torch.from_numpy(flat).reshape(entry["shape"])
    return state


def _dense(cf: container.CnnzFile, entry: dict[str, Any]) -> torch.Tensor:
    dtype, stored = entry.get("dtype"), entry.get("stored")
    if not (isinstance(dtype, str) and isinstance(stored, str)) or {dtype, stored} - DTYPES.keys():
        raise CnnzFormatError(f"tensor {entry['name']!r}: unknown dtype {dtype!r}/{stored!r}")
    blob = cf.section(entry.get("section"))
    np_dtype = np.dtype(DTYPES[stored][1])
    if len(blob) != _numel(entry) * np_dtype.itemsize:
        raise CnnzFormatError(
            f"tensor {entry['name']!r}: {len(blob)} bytes for shape {entry['shape']}"
        )
    array = np.frombuffer(blob, dtype=np_dtype).reshape(entry["shape"])
    return torch.from_numpy(array.copy()).to(DTYPES[dtype][0])


def _binary(cf: container.CnnzFile, entry: dict[str, Any]) -> torch.Tensor:
    shape, numel = entry["shape"], _numel(entry)
    if len(shape) < 2 or not numel:
        raise CnnzFormatError(f"tensor {entry['name']!r}: binary weights of shape {shape}")
    bits = cf.section(entry.get("bits"))
    if len(bits) != (numel + 7) // 8:
        raise CnnzFormatError(
            f"tensor {entry['name']!r}: {len(bits)} bytes of sign bits for {numel} weights"
        )
    alpha = _float32(cf.section(entry.get("alpha")), shape[0], entry["name"])
    if not np.all(np.isfinite(alpha) & (alpha >= 0)):
        raise CnnzFormatError(f"tensor {entry['name']!r}: alpha is negative or not finite")
    negative = np.unpackbits(np.frombuffer(bits, np.uint8), count=numel, bitorder="little")
    signs = np.where(negative.reshape(shape[0], -1), -1.0, 1.0).astype(np.float32)
    return torch.from_numpy(alpha[:, None] * signs).reshape(shape)  # alpha * sign, exactly


_DIRECT = {"dense": _dense, "binary": _binary}  # encodings decoded without entropy streams


def _check_shapes(cf: container.CnnzFile, model: nn.Module) -> None:
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    stored = {e["name"]: e["shape"] for e in _check_entries(cf.header.get("tensors"))}
    missing, extra = sorted(expected.keys() - stored), sorted(stored.keys() - expected)
    wrong = [k for k in expected.keys() & stored if expected[k] != stored[k]]
    if missing or extra or wrong:
        raise ModelError(
            "the .cnnz does not fit this model: "
            + "; ".join(
                f"{what}: {', '.join(names[:5])}"
                for what, names in (("missing", missing), ("unexpected", extra), ("shape", wrong))
                if names
            )
        )


def _zoo_model(cf: container.CnnzFile) -> nn.Module:
    arch = cf.header.get("arch")
    if not arch:
        raise CnnzipError(
            "this .cnnz names no zoo architecture: pass the module it was saved from, "
            "cnnzip.load(path, model=MyNet())"
        )
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise CnnzFormatError(f"header arch {arch!r:.80} is not {{name, kwargs}}")
    kwargs = arch.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CnnzFormatError("header arch kwargs is not an object")
    with torch.device("meta"):  # shapes only: a lying header allocates nothing
        skeleton = get_model(arch["name"], **kwargs)
    _check_shapes(cf, skeleton)
    if len(skeleton.state_dict()) == len(list(skeleton.parameters())) + len(
        list(skeleton.buffers())
    ):  # every tensor comes from the file: skip the random initialisation
        return skeleton.to_empty(device="cpu")
    return get_model(arch["name"], **kwargs)  # non-persistent buffers need their init


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The module stored in ``path``, in eval mode, its weights equal to the shared values
    bit for bit. Zoo models are built from the header; any other model is loaded into
    ``model`` (a plain module of the same architecture)."""
    return load_file(container.read(path), model)


def load_file(cf: container.CnnzFile, model: nn.Module | None = None) -> nn.Module:
    """``load`` for a container already read (e.g. to also show its metadata)."""
    if model is None:
        model = _zoo_model(cf)
    else:
        if transforms_of(model):
            raise CnnzipError("load into a plain module: this one has weight transforms")
        _check_shapes(cf, model)
    state = decode_state(cf)
    model.load_state_dict(state, strict=True)
    return model.eval()
