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
  float32 or float16 by choice (float16 only where every value survives it,
  see ``dense_storage``), other dtypes as they are;
- ``alias``: a tensor tied to an earlier one (one Parameter under two names,
  or one parametrization's ``original``): stored once, ``of`` names it.

Decoding rebuilds exactly the values the transforms compute, bit for bit, and
is strict: every header field is checked (cnnzip.codec.header) before use,
names are unique, dtypes as the encoding allows, every stream is consumed
exactly and decodes to the counts of its table. It is budgeted: at most
``max_params`` elements (default 2**28), checked before anything is allocated;
symbols and positions in narrow dtypes, decoded a batch of tensors at a time,
constant streams never materialised, so peak memory stays near the output's. With
cnnzip._codec built, the relative indices expand straight into the dense tensor
(no position array) and encoding keeps every symbol stream uint8 / uint16: save and
load each allocate about the model's float32 bytes at most beyond the model
(benchmarks/codec_scale.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnzip.codec import container
from cnnzip.codec.bits import symbol_dtype
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.header import MAX_PARAMS, check_arch, check_tensors, numel
from cnnzip.codec.layouts import Layout, layout_of
from cnnzip.codec.native import call, extension
from cnnzip.codec.sizes import best_index_bits
from cnnzip.codec.sparse import MAX_INDEX_BITS, const_gap_positions, gap_decode, gap_encode
from cnnzip.codec.streams import decode_streams, encode_stream
from cnnzip.errors import CnnzipError, ModelError
from cnnzip.fileio import atomic_write_bytes
from cnnzip.models.registry import UntrustedFactoryError, untrusted
from cnnzip.models.slim import (
    Removed,
    SlimPlan,
    apply_slim,
    check_removed,
    check_runs,
    check_slim_plan,
    meta_copy,
    slim_input_shape_of,
    slim_plan_of,
    valid_input_shape,
)
from cnnzip.transforms import WeightTransform, transforms_of

__all__ = [
    "DTYPES",
    "MAX_PARAMS",
    "decode_state",
    "dense_storage",
    "encode",
    "load",
    "load_file",
    "positions",
    "save",
]

DTYPES = {  # name in the header -> (torch dtype, little-endian numpy dtype)
    "float32": (torch.float32, "<f4"),
    "float16": (torch.float16, "<f2"),
    "float64": (torch.float64, "<f8"),
    "int64": (torch.int64, "<i8"),
    "int32": (torch.int32, "<i4"),
    "uint8": (torch.uint8, "u1"),
    "bool": (torch.bool, "?"),
}
Builder = Callable[..., nn.Module]  # build(name, kwargs, max_params=n): a zoo model
_NAME_OF = {t: name for name, (t, _) in DTYPES.items()}
BATCH = 1 << 20  # symbols of the streams decoded together (see _batches)
F16_REL_ERROR = 2.0**-10  # a dense float tensor is stored float16 only within this


Value = torch.Tensor | Callable[[], torch.Tensor]  # a tensor, or how to compute it


def _entries(model: nn.Module) -> list[tuple[str, Value, list[WeightTransform], torch.Tensor]]:
    """Every tensor of the plain model, with the transforms that compute it and the
    tensor it comes from (a parametrized weight's ``original``): two names whose
    source is one tensor are tied. A transformed tensor comes as a function computing
    it: a shared layer is stored without it, and no two are held at once."""
    out: list[tuple[str, Value, list[WeightTransform], torch.Tensor]] = [
        (name, value.detach(), [], value)
        for name, value in model.state_dict(keep_vars=True).items()
        if ".parametrizations." not in f".{name}"
    ]
    for target, ts in transforms_of(model).items():
        module_name, _, tensor_name = target.rpartition(".")
        module = model.get_submodule(module_name)
        source = module.parametrizations[tensor_name].original
        out.append((target, partial(_computed, module, tensor_name), ts, source))
    return out


def _computed(module: nn.Module, tensor_name: str) -> torch.Tensor:
    return getattr(module, tensor_name).detach()


def _value(value: Value) -> torch.Tensor:
    return value() if callable(value) else value


def dense_storage(value: torch.Tensor, dense_dtype: str) -> str:
    """The dtype a dense tensor is stored as: a non-float tensor as its own dtype; a float
    one as ``dense_dtype``, but float32 where float16 would not hold its values (a finite
    value overflowing to inf, or a nonzero value off by more than 2**-10 of itself,
    e.g. underflowing to zero), such as a BatchNorm running variance above 65504."""
    if not value.is_floating_point():
        return _NAME_OF[value.dtype]
    if dense_dtype == "float32":
        return "float32"
    x = value.detach().cpu().double()
    x = x[torch.isfinite(x)]
    error = (x.half().double() - x).abs()
    return "float16" if bool((error <= x.abs() * F16_REL_ERROR).all()) else "float32"


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


def _encode_tensor(
    sections: _Sections,
    name: str,
    value: Value,
    ts: list[WeightTransform],
    dense_dtype: str,
    index_bits: int | None,
) -> dict[str, Any]:
    layout = layout_of(ts)
    if layout is not None and layout.encoding == "shared":  # codebook and index suffice
        return _encode_coded(sections, {"name": name}, layout, None, index_bits)
    value = _value(value)
    entry: dict[str, Any] = {"name": name, "shape": list(value.shape)}
    if layout is None:
        stored = dense_storage(value, dense_dtype)
        raw = value.cpu().contiguous().numpy().astype(DTYPES[stored][1]).tobytes()
        return {**entry, "encoding": "dense", "dtype": _NAME_OF[value.dtype], "stored": stored,
                "section": sections.add(raw)}  # fmt: skip
    if layout.encoding == "binary":
        return _encode_binary(sections, entry, value)
    return _encode_coded(sections, entry, layout, value, index_bits)


def _encode_coded(
    sections: _Sections,
    entry: dict[str, Any],
    layout: Layout,
    value: torch.Tensor | None,
    index_bits: int | None,
) -> dict[str, Any]:
    """A sparse tensor (its kept ``value``s) or a shared one (its clusters), with the
    relative indices of its kept positions; symbols in narrow dtypes throughout."""
    shape = layout.index.shape if layout.encoding == "shared" else value.shape
    entry["shape"] = list(shape)
    size = math.prod(shape)
    mask = layout.mask
    flat_mask = None if mask is None else mask.detach().cpu().reshape(-1).numpy()
    positions = np.arange(size) if flat_mask is None else np.flatnonzero(flat_mask)
    p = index_bits or best_index_bits(positions)
    gaps = gap_encode(positions, p, symbol_dtype(1 << p))
    entry.update(
        dtype="float32", index_bits=p, count=len(positions),
        gaps=_stream(sections, gaps, 1 << p),
    )  # fmt: skip
    del gaps
    if layout.encoding == "sparse":
        values = value.detach().cpu().float().reshape(-1).numpy()[positions]
        return {
            **entry,
            "encoding": "sparse",
            "values": sections.add(values.astype("<f4").tobytes()),
        }
    codebook = layout.codebook.detach().cpu().float().numpy()
    index = layout.index.detach().cpu().reshape(-1).numpy()
    codes = index[positions] if flat_mask is not None else index  # (count,) int32
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
    params = {_plain_name(name) for name, _ in model.named_parameters(remove_duplicate=False)}
    tensors = []
    first: dict[int, tuple[str, Value]] = {}  # id(source) -> (name, value)
    for name, value, ts, source in _entries(model):
        tied, tied_value = first.setdefault(id(source), (name, value))
        if tied != name and torch.equal(_value(tied_value), value := _value(value)):
            tensors.append(  # stored once, decoded twice
                {"name": name, "shape": list(value.shape), "encoding": "alias", "of": tied}
            )
            continue
        entry = _encode_tensor(sections, name, value, ts, dense_dtype, index_bits)
        if name not in params:
            entry["buffer"] = True  # not counted in the float32 parameter bytes
        tensors.append(entry)
    meta = dict(meta or {})
    shape = slim_input_shape_of(model)
    if slim_plan_of(model) is not None and shape is not None:  # for load's run check
        meta.setdefault("input_shape", list(shape))
    header = {"format": "cnnz", "arch": arch, "meta": meta, "tensors": tensors}
    if slim_plan_of(model) is not None:  # absent otherwise: plain files keep their bytes
        header["slim"] = slim_plan_of(model)
    return container.pack(header, sections)


def save(path: str | Path, model: nn.Module, **kwargs: Any) -> int:
    """Write ``encode(model, **kwargs)`` atomically; returns the file size in bytes."""
    data = encode(model, **kwargs)
    atomic_write_bytes(path, data)
    return len(data)


# ---- decoding -----------------------------------------------------------------------


def _float32(blob: bytes, count: int, what: str) -> np.ndarray:
    if len(blob) != 4 * count:
        raise CnnzFormatError(f"tensor {what!r}: {len(blob)} bytes for {count} float32 values")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _coded_items(cf: container.CnnzFile, entry: dict[str, Any]) -> list[tuple[dict, bytes]]:
    keys = ("gaps", "codes") if entry["encoding"] == "shared" else ("gaps",)
    return [(entry[key], cf.section(entry[key]["section"])) for key in keys]


def _batches(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Sparse and shared tensors in runs of about ``BATCH`` symbols: their rANS streams
    decode together (one loop for a small model), while a large model's intermediate
    arrays stay bounded by a batch, not the file."""
    out: list[list[dict[str, Any]]] = []
    size = BATCH
    for entry in entries:
        if entry["encoding"] not in ("sparse", "shared"):
            continue
        n = entry["gaps"]["n"] + entry["count"]
        if size + n > BATCH:
            out.append([])
            size = 0
        out[-1].append(entry)
        size += n
    return out


def positions(entry: dict[str, Any], gaps: np.ndarray) -> np.ndarray | range:
    """The kept positions of a sparse or shared tensor from its decoded gap symbols (a
    range for a constant stream: a layer kept whole needs no index array)."""
    desc, size, p = entry["gaps"], numel(entry), entry["index_bits"]
    if desc["coder"] == "const":
        return const_gap_positions(desc["symbol"], p, desc["n"], size, entry["count"])
    return gap_decode(gaps, p, size, entry["count"])


def _coded(cf: container.CnnzFile, entry: dict[str, Any], streams: list[np.ndarray]):
    flat = np.zeros(numel(entry), dtype=np.float32)
    codes = None  # the cluster of every kept weight; None: values[k] (or values[0] for all)
    if entry["encoding"] == "shared":
        values = _float32(cf.section(entry["codebook"]), entry["k"], entry["name"])
        if entry["codes"]["coder"] == "const":  # one cluster: its value for every weight
            values = values[streams[1][:1]] if entry["count"] else values[:1]
        else:
            codes = streams[1]
    else:
        values = _float32(cf.section(entry["values"]), entry["count"], entry["name"])
    ext = extension()
    if ext is not None and entry["gaps"]["coder"] != "const":  # compiled: no position array
        try:
            call(ext.expand, streams[0], entry["index_bits"], codes, values, entry["count"], flat)
        except CnnzFormatError:  # the reference's message, which says what does not fit
            positions(entry, streams[0])
            raise
        return torch.from_numpy(flat).reshape(entry["shape"])
    kept = positions(entry, streams[0])
    if codes is not None:
        values = values[codes]
    flat[slice(kept.start, kept.stop, kept.step) if isinstance(kept, range) else kept] = values
    return torch.from_numpy(flat).reshape(entry["shape"])


def _decode_batch(cf: container.CnnzFile, batch: list[dict[str, Any]]) -> dict:
    items = [_coded_items(cf, entry) for entry in batch]
    symbols = iter(decode_streams([item for pair in items for item in pair]))
    return {
        entry["name"]: _coded(cf, entry, [next(symbols) for _ in pair])
        for entry, pair in zip(batch, items, strict=True)
    }


def decode_state(
    cf: container.CnnzFile, *, max_params: int = MAX_PARAMS
) -> dict[str, torch.Tensor]:
    """The plain state dict stored in a checked container, in the file's order; a tied
    tensor (an alias entry) is the very tensor of the name it aliases. Refuses a file
    declaring more than ``max_params`` elements before allocating anything."""
    entries = check_tensors(cf.header.get("tensors"), max_params)
    state: dict[str, torch.Tensor] = {}
    for batch in _batches(entries):
        state.update(_decode_batch(cf, batch))
    for entry in entries:
        if entry["encoding"] in _DIRECT:
            state[entry["name"]] = _DIRECT[entry["encoding"]](cf, entry)
        elif entry["encoding"] == "alias":
            state[entry["name"]] = state[entry["of"]]
    return {entry["name"]: state[entry["name"]] for entry in entries}


def _dense(cf: container.CnnzFile, entry: dict[str, Any]) -> torch.Tensor:
    blob = cf.section(entry["section"])
    np_dtype = np.dtype(DTYPES[entry["stored"]][1])
    if len(blob) != numel(entry) * np_dtype.itemsize:
        raise CnnzFormatError(
            f"tensor {entry['name']!r}: {len(blob)} bytes for shape {entry['shape']}"
        )
    if np_dtype == np.bool_ and blob.translate(None, b"\0\1"):
        raise CnnzFormatError(f"tensor {entry['name']!r}: bool bytes other than 0 and 1")
    array = np.frombuffer(blob, dtype=np_dtype).reshape(entry["shape"])
    return torch.from_numpy(array.copy()).to(DTYPES[entry["dtype"]][0])


def _binary(cf: container.CnnzFile, entry: dict[str, Any]) -> torch.Tensor:
    shape, size = entry["shape"], numel(entry)
    bits = cf.section(entry["bits"])
    if len(bits) != (size + 7) // 8 or (size % 8 and bits[-1] >> (size % 8)):
        raise CnnzFormatError(
            f"tensor {entry['name']!r}: {len(bits)} bytes of sign bits for {size} weights "
            "(exactly enough needed, spare bits zero)"
        )
    alpha = _float32(cf.section(entry["alpha"]), shape[0], entry["name"])
    if not np.all(np.isfinite(alpha) & (alpha >= 0)):
        raise CnnzFormatError(f"tensor {entry['name']!r}: alpha is negative or not finite")
    negative = np.unpackbits(np.frombuffer(bits, np.uint8), count=size, bitorder="little")
    signs = np.where(negative.reshape(shape[0], -1), -1.0, 1.0).astype(np.float32)
    return torch.from_numpy(alpha[:, None] * signs).reshape(shape)  # alpha * sign, exactly


_DIRECT = {"dense": _dense, "binary": _binary}  # encodings decoded without entropy streams


def _check_fit(entries: list[dict[str, Any]], model: nn.Module) -> None:
    """The file's tensors are the model's: same names, shapes and dtypes."""
    expected = model.state_dict()
    stored = {e["name"]: e for e in entries}
    dtype_of = {e["name"]: stored[e.get("of", e["name"])].get("dtype") for e in entries}
    missing, extra = sorted(expected.keys() - stored), sorted(stored.keys() - expected)
    wrong = [
        k
        for k in expected.keys() & stored
        if list(expected[k].shape) != stored[k]["shape"]
        or _NAME_OF.get(expected[k].dtype) != dtype_of[k]
    ]
    if missing or extra or wrong:
        raise ModelError(
            "the .cnnz does not fit this model: "
            + "; ".join(
                f"{what}: {', '.join(names[:5])}"
                for what, names in (
                    ("missing", missing),
                    ("unexpected", extra),
                    ("shape or dtype", wrong),
                )
                if names
            )
        )


def _build(build: Builder, name: str, kwargs: dict[str, Any], max_params: int) -> nn.Module:
    """The model a header's arch names, within ``max_params`` elements: whatever a hostile
    kwarg makes the builder raise ends as one format error."""
    try:
        with untrusted():  # a file's factory spec is imported only where its reader trusts it
            return build(name, kwargs, max_params=max_params)
    except UntrustedFactoryError:
        raise
    except Exception as exc:  # any builder error is the file's fault here
        raise CnnzFormatError(
            f"header arch {name!r} with kwargs {kwargs!r:.120} cannot be built: {exc}"
        ) from None


def _zoo_model(
    cf: container.CnnzFile, entries: list[dict[str, Any]], build: Builder, max_params: int
) -> tuple[nn.Module, bool]:
    """(the model the header names, whether its tensors can simply be assigned)."""
    arch = cf.header.get("arch")
    if not arch:
        raise CnnzipError(
            "this .cnnz names no zoo architecture: pass the module it was saved from, "
            "cnnzip.load(path, model=MyNet())"
        )
    name, kwargs = check_arch(arch)
    plan = _header_plan(cf)
    with torch.device("meta"):  # shapes only: a lying header allocates nothing
        skeleton = _slimmed(_build(build, name, kwargs, max_params), plan)
    _check_fit(entries, skeleton)
    _check_slim_runs(cf, skeleton)
    if len(skeleton.state_dict()) == len(list(skeleton.parameters())) + len(
        list(skeleton.buffers())
    ):  # every tensor comes from the file: assign them, skip the random initialisation
        return skeleton, True
    model = _build(build, name, kwargs, max_params)  # non-persistent buffers need their init
    return _slimmed(model, plan), False


def _header_plan(cf: container.CnnzFile) -> SlimPlan | None:
    """The header's ``slim`` plan (the channels a structurally pruned model kept), checked."""
    if cf.header.get("slim") is None:
        return None
    try:
        return check_slim_plan(cf.header["slim"], "header field slim")
    except ModelError as exc:
        raise CnnzFormatError(str(exc)) from None


def _check_slim_runs(cf: container.CnnzFile, skeleton: nn.Module) -> None:
    """A slim file's meta-device model runs once on the input shape its header meta
    records (files without one cannot be checked so): every tensor can fit a plan that
    cuts a layer's channels but not its consumer's."""
    meta = cf.header.get("meta")
    shape = valid_input_shape(meta.get("input_shape") if isinstance(meta, dict) else None)
    if cf.header.get("slim") is None or shape is None:
        return
    try:
        check_runs(skeleton, shape, "header field slim")
    except ModelError as exc:
        raise CnnzFormatError(str(exc)) from None


def _slimmed(model: nn.Module, plan: SlimPlan | None) -> nn.Module:
    """``model`` cut to the file's plan; a plan that does not fit it is the file's fault."""
    if plan is None:
        return model
    try:
        return apply_slim(model, plan)
    except ModelError as exc:
        raise CnnzFormatError(f"header field slim does not fit its arch: {exc}") from None


def _fit_plan(
    model: nn.Module, cf: container.CnnzFile, entries: list[dict[str, Any]], state: dict
) -> None:
    """The user's ``model=`` cut to the file's plan, unless it already is (a slim model
    carrying the same plan); a full-width model is cut in place, only once a meta copy
    cut to the plan is known to fit the file's tensors and run, and a plan removing
    layers whole a copy holding the file's ``state`` to compute what the masked model
    does (a bad file changes nothing)."""
    plan = _header_plan(cf)
    if plan is None or slim_plan_of(model) == plan:
        _check_fit(entries, model)
        return
    if slim_plan_of(model) is not None:
        raise CnnzipError(
            "this model was slimmed with another channel plan than the .cnnz's: pass the "
            "full-width module (the file's plan is applied to it) or the same slim one"
        )
    try:
        skeleton = apply_slim(meta_copy(model), plan)
    except ModelError as exc:  # as for the zoo's models: the file's plan is at fault
        raise CnnzFormatError(
            f"header field slim does not fit the model given: {exc}; a damaged file, or "
            "not the module it was saved from"
        ) from None
    _check_fit(entries, skeleton)
    _check_slim_runs(cf, skeleton)
    if any(isinstance(m, Removed) for m in skeleton.modules()):
        trial = apply_slim(copy.deepcopy(model), plan)
        trial.load_state_dict(state, strict=True)
        _check_removed(cf, trial)
    apply_slim(model, plan)


def load(
    path: str | Path,
    model: nn.Module | None = None,
    *,
    build: Builder | None = None,
    max_params: int = MAX_PARAMS,
) -> nn.Module:
    """The module stored in ``path``, in eval mode, its weights equal to the shared values
    bit for bit. Without ``model``, the header's architecture is built by ``build(name,
    kwargs, max_params=n)`` (the zoo's ``build_model``: ``cnnzip.load`` passes it, since
    the format knows no zoo); any other model is loaded into ``model`` (a plain module of
    the same architecture). A header naming the user's own ``package.module:factory`` is
    refused unless the caller trusts it (``trust_factories``): importing a module runs
    its code, and a .cnnz is what users download from others. A file declaring more
    than ``max_params`` elements is refused before anything is allocated. A file of a
    structurally pruned model records its kept channels (header ``slim``): they are cut
    from the built or given model (in place) before its tensors load."""
    return load_file(container.read(path), model, build=build, max_params=max_params)


def load_file(
    cf: container.CnnzFile,
    model: nn.Module | None = None,
    *,
    build: Builder | None = None,
    max_params: int = MAX_PARAMS,
) -> nn.Module:
    """``load`` for a container already read (e.g. to also show its metadata)."""
    entries = check_tensors(cf.header.get("tensors"), max_params)
    if model is None:
        if build is None:
            raise CnnzipError(
                "no model and no builder: use cnnzip.load(path), which builds zoo "
                "architectures, or pass model=MyNet()"
            )
        model, assign = _zoo_model(cf, entries, build, max_params)
        model.load_state_dict(decode_state(cf, max_params=max_params), strict=True, assign=assign)
        _check_removed(cf, model)  # a model of its own: no user's module to spare
        return model.eval()
    if transforms_of(model):
        raise CnnzipError("load into a plain module: this one has weight transforms")
    state = decode_state(cf, max_params=max_params)
    _fit_plan(model, cf, entries, state)  # checks a plan removing layers on a copy
    model.load_state_dict(state, strict=True)
    return model.eval()


def _check_removed(cf: container.CnnzFile, model: nn.Module) -> None:
    """A plan that removes layers whole computes what the masked model does, on the
    file's weights (cnnzip.models.slim.check_removed), or the file is refused."""
    meta = cf.header.get("meta")
    shape = valid_input_shape(meta.get("input_shape") if isinstance(meta, dict) else None)
    try:
        check_removed(model, shape, "header field slim")
    except ModelError as exc:
        raise CnnzFormatError(str(exc)) from None
