"""Run a .cnnz's pruned + shared layers as they are stored: ``load_compressed(path, example)``.

A pruned + shared layer is stored as relative indices (gaps between kept weights),
a cluster index per kept weight and a codebook. Decoding it to dense float32 makes
batch 1 move 4 bytes per weight, kept or not; here each such Linear / Conv2d
(groups 1, dilation 1, zero padding) gets a twin that keeps the layer in the C
kernels' layout (csrc/sparse.h): row by row, 3 bytes per kept weight (its 16-bit
column, its cluster index; each row padded to a multiple of 16 entries) and the
codebook, so fc6 of AlexNet at 9% kept is ~10 MB resident instead of 151 MB. Layers
of more than 65,535 inputs, or with a non-finite centroid, stay dense.
A conv runs through im2col (``F.unfold``), then the same kernel on all its columns.

Results equal the decoded dense layer's up to float summation order: within
``summation_bound`` (``SUM_RTOL * sqrt(fan_in) * sum_j |w_j x_j|`` per output).
The kernels are single-threaded, float32, CPU, inference only; every candidate
layer is timed against its dense self on its real input and swapped only where
faster (as ``sparsify`` does). Without the compiled extension the twins compute
the dense product in torch (same values as the decoded model), with a warning.
"""

from __future__ import annotations

import importlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.codec import container, load_file
from cnnzip.codec.header import MAX_PARAMS, check_tensors
from cnnzip.codec.model import positions
from cnnzip.codec.streams import decode_streams
from cnnzip.errors import CnnzipError
from cnnzip.runtime.shapes import check_conv_settings
from cnnzip.runtime.sparse import LayerChoice, lowerable, swap_if_faster, unfold_checked
from cnnzip.runtime.xnor import REBUILD
from cnnzip.transforms import swap_module

__all__ = [
    "SUM_RTOL",
    "CompressedConv2d",
    "CompressedLinear",
    "Layout",
    "StoredWeight",
    "available_paths",
    "build_layout",
    "compile_compressed",
    "compressed_twins",
    "kernels",
    "load_compressed",
    "shared_weights",
    "summation_bound",
    "swap_all",
]

SUM_RTOL = 1e-6  # per sqrt(fan-in), of sum |w_j x_j|: float32 reassociation error, generously
MAX_FAN_IN = 65535  # columns are 16 bits in the kernels' layout; fan_in marks padding
ROW_STEP = 16  # rows are padded to whole groups of this many entries


def _import_extension() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("cnnzip._sparse"), ""
    except ImportError as exc:  # not compiled: the twins compute in torch
        return None, str(exc)


_ext, _missing_because = _import_extension()
_BEST = "portable" if _ext is None else _ext.best_path()
_fallback_reported = False


def kernels() -> ModuleType | None:
    """The compiled kernels (cnnzip._sparse); without them, warn once per process."""
    global _fallback_reported
    if _ext is None and not _fallback_reported:
        _fallback_reported = True
        warnings.warn(
            f"cnnzip's compressed kernels are not built ({_missing_because}): compressed "
            f"layers run dense in torch (same results, no speed-up); rebuild with {REBUILD}",
            RuntimeWarning,
            stacklevel=3,
        )
    return _ext


def available_paths() -> list[str]:
    """Kernel paths this CPU runs, slowest first (["torch"] without the extension)."""
    return ["torch"] if _ext is None else _ext.paths()


@dataclass(frozen=True)
class StoredWeight:
    """A pruned + shared weight as a .cnnz stores it: kept positions of the flattened
    weight (ascending), the cluster of each, and the codebook."""

    shape: tuple[int, ...]  # (out, in) or (out, in, kh, kw)
    positions: np.ndarray  # (nnz,) int64, ascending, < prod(shape)
    codes: np.ndarray  # (nnz,) cluster index of each kept weight
    codebook: np.ndarray  # (k,) float32

    @classmethod
    def from_dense(cls, weight: torch.Tensor, codebook: torch.Tensor) -> StoredWeight:
        """The layer whose nonzero weights each equal a codebook entry (exactly)."""
        flat = weight.detach().cpu().reshape(-1).numpy()
        cb = codebook.detach().cpu().float().numpy().reshape(-1)
        if len(cb) == 0:
            raise CnnzipError("from_dense: the codebook is empty")
        kept = np.flatnonzero(flat)
        codes = np.searchsorted(np.sort(cb), flat[kept])
        order = np.argsort(cb, kind="stable")[np.minimum(codes, len(cb) - 1)]
        if len(kept) and not np.array_equal(cb[order], flat[kept]):
            raise CnnzipError("from_dense: a nonzero weight is no codebook entry")
        return cls(tuple(weight.shape), kept.astype(np.int64), order, cb)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def fan_in(self) -> int:
        return math.prod(self.shape[1:])

    def dense(self) -> torch.Tensor:
        """The weight as the codec decodes it: codebook values, +0.0 elsewhere."""
        flat = np.zeros(math.prod(self.shape), dtype=np.float32)
        flat[self.positions] = self.codebook[self.codes]
        return torch.from_numpy(flat).reshape(self.shape)


def shared_weights(cf: container.CnnzFile, max_params: int = MAX_PARAMS) -> dict[str, StoredWeight]:
    """Every ``shared`` tensor of a checked container, by name, from its streams."""
    out = {}
    for entry in check_tensors(cf.header.get("tensors"), max_params):
        if entry["encoding"] != "shared":
            continue
        streams = decode_streams(
            [(entry[key], cf.section(entry[key]["section"])) for key in ("gaps", "codes")]
        )
        kept = positions(entry, streams[0])
        blob = cf.section(entry["codebook"])
        if len(blob) != 4 * entry["k"]:
            raise CnnzipError(f"tensor {entry['name']!r}: codebook of {len(blob)} bytes")
        out[entry["name"]] = StoredWeight(
            tuple(entry["shape"]),
            np.asarray(kept, dtype=np.int64) if isinstance(kept, range) else kept.astype(np.int64),
            np.asarray(streams[1], dtype=np.int64),
            np.frombuffer(blob, dtype="<f4").astype(np.float32),
        )
    return out


@dataclass(frozen=True)
class Layout:
    """The kernels' layout (csrc/sparse.h): bytes, so the C side may keep them unchecked
    once checked; nothing else of the layer stays in memory."""

    shape: tuple[int, ...]  # the dense weight's
    nnz: int  # kept weights (entries less the rows' padding)
    stream: bytes  # (entries,) uint16 LE columns, then (entries,) uint8 codes
    row_len: bytes  # (rows,) uint32: kept weights per row (padding not counted)
    codebook: bytes  # (k,) float32

    @property
    def nbytes(self) -> int:
        return len(self.stream) + len(self.row_len) + len(self.codebook)

    @property
    def density(self) -> float:
        return self.nnz / max(math.prod(self.shape), 1)

    def dense(self) -> torch.Tensor:
        """The weight as the codec decodes it (pruned weights +0.0)."""
        rows, fan_in = self.shape[0], math.prod(self.shape[1:])
        entries = len(self.stream) // 3
        col = np.frombuffer(self.stream, dtype="<u2", count=entries).astype(np.int64)
        code = np.frombuffer(self.stream, dtype=np.uint8, offset=2 * entries)
        kept = col < fan_in  # the padding points at column fan_in
        row = np.repeat(np.arange(rows), _padded(np.frombuffer(self.row_len, dtype="<u4")))
        flat = np.zeros(rows * fan_in, dtype=np.float32)
        flat[row[kept] * fan_in + col[kept]] = np.frombuffer(self.codebook, "<f4")[code[kept]]
        return torch.from_numpy(flat).reshape(self.shape)


def _padded(row_len: np.ndarray) -> np.ndarray:
    """Entries each row takes in the stream: its kept weights, up to a multiple of 16."""
    return -(-row_len.astype(np.int64) // ROW_STEP) * ROW_STEP


def build_layout(w: StoredWeight) -> Layout:
    """Per row, the kept weights' columns (16 bits) and codes in column order, then
    padding entries (column fan_in, code 0) up to a multiple of 16."""
    _check_stored(w)
    if w.fan_in > MAX_FAN_IN or not np.isfinite(w.codebook).all():
        raise CnnzipError(
            f"stored weight {w.shape}: the kernels take at most {MAX_FAN_IN} inputs per "
            "output (16-bit columns) and finite centroids: this layer stays dense"
        )
    rows, cols = np.divmod(w.positions, w.fan_in)  # (nnz,) each
    row_len = np.bincount(rows, minlength=w.rows)  # (rows,)
    padded = _padded(row_len)
    starts = np.cumsum(padded) - padded  # (rows,) first entry of each row
    at = starts[rows] + np.arange(len(cols)) - (np.cumsum(row_len) - row_len)[rows]  # (nnz,)
    stream_cols = np.full(int(padded.sum()), w.fan_in, dtype="<u2")
    stream_codes = np.zeros(int(padded.sum()), dtype=np.uint8)
    stream_cols[at], stream_codes[at] = cols, w.codes
    return Layout(
        w.shape,
        len(cols),
        stream_cols.tobytes() + stream_codes.tobytes(),
        row_len.astype("<u4").tobytes(),
        w.codebook.astype("<f4").tobytes(),
    )


def _check_stored(w: StoredWeight) -> None:
    """Positions ascending within the weight, one code per position inside the codebook."""
    pos, codes, k = w.positions, w.codes, len(w.codebook)
    if not 1 <= k <= 256 or len(codes) != len(pos) or w.rows < 1 or w.fan_in < 1:
        raise CnnzipError(
            f"stored weight {w.shape}: {len(pos)} positions, {len(codes)} codes, {k} centroids; "
            "the kernels take 1..256 centroids, one code per position"
        )
    if len(pos) and (
        pos[0] < 0 or pos[-1] >= w.rows * w.fan_in or bool((np.diff(pos) <= 0).any())
        or codes.min() < 0 or codes.max() >= k
    ):  # fmt: skip
        raise CnnzipError(
            f"stored weight {w.shape}: positions must ascend within the weight and codes "
            f"lie in 0..{k - 1}"
        )


def summation_bound(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """How far a reassociated float32 sum may fall from another, per output of
    ``x @ weight.T``: SUM_RTOL * sqrt(fan-in) * sum_j |w_j x_j| (plus the smallest normal)."""
    w = weight.reshape(weight.shape[0], -1).double().abs()  # (out, fan_in)
    return SUM_RTOL * math.sqrt(w.shape[1]) * (x.double().abs() @ w.T) + 1.2e-38


class _CompressedTwin(nn.Module):
    """A layer held in the kernels' layout; inference only. ``state_dict`` gives the
    dense layer's keys (``weight`` decoded, ``bias``), so the model saves as before."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, w: StoredWeight) -> None:
        super().__init__()
        if tuple(layer.weight.shape) != w.shape:
            raise CnnzipError(
                f"shared weight of shape {w.shape} for a layer of {layer.weight.shape}"
            )
        self.layout = build_layout(w)
        self.rows, self.fan_in = w.rows, w.fan_in
        bias = layer.bias if layer.bias is not None else torch.zeros(w.rows)
        self.bias_bytes = bias.detach().cpu().float().numpy().astype("<f4").tobytes()
        self.has_bias = layer.bias is not None
        self._kernel: Any = None
        self._dense: torch.Tensor | None = None

    @property
    def weight_nbytes(self) -> int:
        """Resident bytes of the layer's weights in the kernels' layout."""
        return self.layout.nbytes

    def prepared(self) -> Any:
        """The C handle of the layout (cnnzip._sparse.prepare), built on first use."""
        if self._kernel is None:
            lay = self.layout
            self._kernel = _ext.prepare(
                lay.stream, lay.row_len, lay.codebook, self.bias_bytes, self.rows, self.fan_in
            )
        return self._kernel

    def __getstate__(self) -> dict[str, Any]:  # a capsule neither copies nor pickles
        return {**super().__getstate__(), "_kernel": None}

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.layout.dense()
        if self.has_bias:
            destination[prefix + "bias"] = self.bias_tensor()

    def bias_tensor(self) -> torch.Tensor:
        return torch.from_numpy(np.frombuffer(self.bias_bytes, dtype="<f4").copy())

    def matmul(self, panels: torch.Tensor, path: str | None = None) -> torch.Tensor:
        """W @ x + bias for the 8 * P inputs of panels (P, fan_in, 8): (rows, 8 * P)."""
        ext = kernels() if path != "torch" else None
        if ext is None:
            if self._dense is None:
                self._dense = self.layout.dense().reshape(self.rows, self.fan_in)
            xt = panels.permute(1, 0, 2).reshape(self.fan_in, -1)  # (fan_in, 8 * P)
            return torch.addmm(self.bias_tensor()[:, None], self._dense, xt)
        bp = 8 * panels.shape[0]
        y = torch.empty(self.rows, bp)
        ext.matmat(self.prepared(), panels.numpy(), y.numpy(), bp, path or _BEST)
        return y

    def matvec(self, x: torch.Tensor, path: str | None) -> torch.Tensor:
        """W @ x + bias for one input (1, fan_in) contiguous: (1, rows)."""
        y = torch.empty(1, self.rows)
        _ext.matvec(self._kernel or self.prepared(), x.numpy(), y.numpy(), path or _BEST)
        return y


def _panels(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(groups, fan_in, B) -> (groups * ceil(B / 8), fan_in, 8), contiguous, one copy: the
    batched kernel's panels of 8 inputs (inputs past B are zeros)."""
    g, fan_in, b = x.shape
    bp = -(-b // 8) * 8
    if bp != b:
        x = F.pad(x, (0, bp - b))
    return x.reshape(g, fan_in, bp // 8, 8).transpose(1, 2).reshape(-1, fan_in, 8).contiguous()


def _check_input(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise CnnzipError(
            f"{what}: the compressed kernels take float32 CPU input, got {x.dtype} on "
            f"{x.device}; run the decoded model (cnnzip.load) for other dtypes or devices"
        )
    return x.detach()


class CompressedLinear(_CompressedTwin):
    """A Linear run by the compressed kernels: (..., in) -> (..., out)."""

    def __init__(self, layer: nn.Linear, w: StoredWeight) -> None:
        super().__init__(layer, w)
        self.in_features, self.out_features = layer.in_features, layer.out_features

    def forward(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        if (  # batch 1, what the kernels are for: nothing but the call (each Python op
            # ~0.1-0.5 us warm, far more when a previous layer swept the caches)
            path is None and _ext is not None and x.is_cpu and x.dtype is torch.float32
            and x.dim() == 2 and x.shape[0] == 1 and x.is_contiguous()
        ):  # fmt: skip
            return self.matvec(x.detach(), path)  # (1, out)
        x = _check_input(x, "compressed linear")
        flat = x.reshape(-1, self.in_features)  # (N, in)
        n = flat.shape[0]
        if n == 0:
            return x.new_empty(*x.shape[:-1], self.out_features)
        if n == 1 and _ext is not None and path != "torch":  # what the kernels are for
            y = self.matvec(flat.contiguous(), path)  # (1, out)
        else:
            y = self.matmul(_panels(flat.t()[None], 1), path)[:, :n].t()  # (N, out)
        return y.reshape(*x.shape[:-1], self.out_features)


class CompressedConv2d(_CompressedTwin):
    """A Conv2d (groups 1, dilation 1, zero padding) as the kernels on ``unfold(x)``."""

    def __init__(self, layer: nn.Conv2d, w: StoredWeight) -> None:
        super().__init__(layer, w)
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size, self.stride, self.padding = layer.kernel_size, layer.stride, layer.padding
        check_conv_settings("compressed conv", self.stride, self.padding, self.kernel_size)

    def forward(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        x = _check_input(x, "compressed conv")
        if x.dim() == 3:  # unbatched (C, H, W), as nn.Conv2d accepts
            return self.forward(x[None], path)[0]
        n = x.shape[0]
        cols, ho, wo = unfold_checked(self, "compressed conv", x)  # (N, fan_in, L)
        if n == 0:
            return x.new_empty(0, self.out_channels, ho, wo)
        y = self.matmul(_panels(cols, n), path)  # (out, N * Lp), Lp: L = ho * wo padded to 8s
        y = y.reshape(self.out_channels, n, -1)[:, :, : ho * wo]
        return y.reshape(self.out_channels, n, ho, wo).permute(1, 0, 2, 3).contiguous()


def _twin(layer: nn.Module, w: StoredWeight) -> nn.Module | None:
    """The compressed twin of a plain Linear or Conv2d the kernels run, else None."""
    kind = lowerable(layer)
    try:
        if kind is nn.Linear:
            return CompressedLinear(layer, w)
        return None if kind is None else CompressedConv2d(layer, w)
    except CnnzipError:  # no layout for it (see build_layout): it stays dense
        return None


def compressed_twins(model: nn.Module, cf: container.CnnzFile) -> dict[str, nn.Module]:
    """The twin of every layer of ``model`` whose weight the file stores shared."""
    out = {}
    # the file was decoded into ``model``: a limit its own size passes
    limit = max(MAX_PARAMS, sum(t.numel() for t in model.state_dict().values()))
    for name, w in shared_weights(cf, limit).items():
        module_name, _, tensor = name.rpartition(".")
        if tensor != "weight" or not module_name:
            continue
        twin = _twin(model.get_submodule(module_name), w)
        if twin is not None:
            out[module_name] = twin
    return out


def compile_compressed(
    model: nn.Module, cf: container.CnnzFile, example: torch.Tensor, *, repeats: int = 20
) -> list[LayerChoice]:
    """Swap in compressed twins, in place, where measured faster on ``example`` (a batch
    of the size the model will serve); say per layer (``sparse``: runs on the kernels)."""
    twins = compressed_twins(model, cf)
    candidates = {name: (twin.layout.density, lambda _, t=twin: t) for name, twin in twins.items()}
    return swap_if_faster(model, example, candidates, repeats)


def swap_all(model: nn.Module, cf: container.CnnzFile) -> list[str]:
    """Every supported shared layer on the kernels, unmeasured; returns their names."""
    twins = compressed_twins(model, cf)
    for name, twin in twins.items():
        swap_module(model, name, twin)
    return list(twins)


def load_compressed(
    path: str | Path,
    example: torch.Tensor | None,
    *,
    repeats: int = 20,
    max_params: int = MAX_PARAMS,
) -> tuple[nn.Module, list[LayerChoice]]:
    """The model of a zoo .cnnz (as ``cnnzip.load``), its pruned + shared layers on the
    compressed kernels where that measured faster on ``example``; and the choices."""
    if not isinstance(example, torch.Tensor):
        raise CnnzipError(
            f"{path}: running it on the compressed kernels needs an example input (a batch "
            "of the size the model will serve, e.g. torch.randn(1, 784)): each layer runs "
            "where it measured faster on it"
        )
    cf = container.read(path)
    model = load_file(cf, max_params=max_params)
    return model, compile_compressed(model, cf, example, repeats=repeats)
