"""Run pruned layers as sparse matrix products: ``sparsify(model, example)``.

A pruned model decoded from a .cnnz holds dense weight tensors full of zeros,
and dense kernels multiply every one of them. Here each Linear and Conv2d
(groups 1, dilation 1, zero padding) whose weight is at most ``max_density``
nonzero gets a twin that keeps only the nonzeros, in torch's CSR format (MKL on
x86 builds), and computes ``W @ x`` (a conv as ``W @ unfold(x)``). Sparse
products pay off only with enough work per call (measured on LeNet-300's fc
layers at 6% density: no faster at batch 1, 1.8x faster at batch 64),
so every candidate layer is timed both ways on its real input from
``example`` and runs sparse only where that was clearly faster (MARGIN). Results
equal the dense layer's up to float summation order (any float dtype, with or
without bias, batched or not); subclasses of Linear / Conv2d (XNOR blocks) are
left alone. Inference only: the twins hold buffers, not parameters, so the
profiler counts their MACs but no parameters; ``state_dict`` keeps the dense
layer's keys, so a sparsified model saves like the original.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from cnnzip.errors import CnnzipError
from cnnzip.models.running import eval_mode, example_input
from cnnzip.profiling import Cost, conv_kind, measure_latency, profile, register_counter
from cnnzip.profiling.counters import first_tensor
from cnnzip.profiling.latency import num_threads
from cnnzip.runtime.shapes import check_conv_settings, check_elements, conv_output_size
from cnnzip.transforms import swap_module

__all__ = [
    "LayerChoice",
    "SparseConv2d",
    "SparseLinear",
    "bench_sparse",
    "layer_inputs",
    "lowerable",
    "plain_type",
    "sparsify",
    "swap_if_faster",
    "unfold_checked",
]


def _csr(weight: torch.Tensor) -> torch.Tensor:
    """(out, in) dense -> CSR; torch warns once per process that CSR is beta."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().to_sparse_csr()


class _SparseTwin(nn.Module):
    """The nonzeros of a layer's weight, as (out, fan-in) CSR parts in buffers.

    Buffers, so .to() / .double() / deepcopy work (a CSR tensor cannot be deep
    copied); the CSR matrix itself is built on first use and again after a move.
    ``state_dict`` gives the dense layer's keys and shapes (``weight``, ``bias``),
    so a sparsified model saves and loads like the original.
    """

    def __init__(self, layer: nn.Linear | nn.Conv2d) -> None:
        super().__init__()
        w = layer.weight.detach()
        csr = _csr(w.reshape(w.shape[0], -1))
        self.register_buffer("crow", csr.crow_indices())
        self.register_buffer("col", csr.col_indices())
        self.register_buffer("values", csr.values())
        bias = layer.bias if layer.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        self.register_buffer("bias", bias.detach().to(w.device).clone())  # (out,)
        self.has_bias = layer.bias is not None
        self.weight_shape = tuple(w.shape)
        self._matrix: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight (what the profiler reads to count nonzero MACs)."""
        return self.matrix().to_dense().reshape(self.weight_shape)

    def matrix(self) -> torch.Tensor:
        if self._matrix is None:
            shape = (self.weight_shape[0], math.prod(self.weight_shape[1:]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._matrix = torch.sparse_csr_tensor(self.crow, self.col, self.values, shape)
        return self._matrix

    def _apply(self, fn: Any, recurse: bool = True) -> nn.Module:
        self._matrix = None  # rebuilt from the moved buffers
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_matrix": None}

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.weight
        if self.has_bias:
            destination[prefix + "bias"] = self.bias


class SparseLinear(_SparseTwin):
    """A Linear layer computed as CSR weight @ x^T."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__(layer)
        self.in_features, self.out_features = layer.in_features, layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        y = torch.addmm(self.bias[:, None], self.matrix(), flat.t())  # (out, N)
        return y.t().contiguous().reshape(*x.shape[:-1], self.out_features)


class SparseConv2d(_SparseTwin):
    """A Conv2d (groups 1, dilation 1, zero padding) computed as CSR weight @ unfold(x)."""

    def __init__(self, layer: nn.Conv2d) -> None:
        super().__init__(layer)
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.kernel_size, self.stride, self.padding = layer.kernel_size, layer.stride, layer.padding
        self.groups = 1
        check_conv_settings("sparse conv", self.stride, self.padding, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # unbatched (C, H, W), as nn.Conv2d accepts
            return self.forward(x[None])[0]
        n = x.shape[0]
        cols, ho, wo = unfold_checked(self, "sparse conv", x)
        cols = cols.permute(1, 0, 2).reshape(cols.shape[1], -1)  # (in * kh * kw, N * L)
        y = torch.addmm(self.bias[:, None], self.matrix(), cols)  # (out, N * L)
        return y.reshape(self.out_channels, n, ho, wo).permute(1, 0, 2, 3).contiguous()


def unfold_checked(conv: nn.Module, what: str, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``F.unfold(x)`` for a conv twin, (N, C * kh * kw, L), and its output's (ho, wo), the
    sizes of both checked before anything is allocated."""
    n = x.shape[0]
    ho, wo = conv_output_size(what, tuple(x.shape[2:]), conv.kernel_size, conv.stride, conv.padding)
    check_elements(what, "unfolded input", (n, conv.in_channels, *conv.kernel_size, ho, wo))
    check_elements(what, "output", (n, conv.out_channels, ho, wo))
    return F.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride), ho, wo


def _outputs(out: Any) -> int:
    """Output elements (0 when the forward failed: the profiler then retries for real)."""
    tensor = first_tensor(out)
    return 0 if tensor is None else tensor.numel()


@register_counter(SparseLinear)
def _count_linear(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("fc", macs=_outputs(out) * m.in_features)


@register_counter(SparseConv2d)
def _count_conv(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    kind = conv_kind(m.in_channels, 1, m.kernel_size)
    return Cost(kind, macs=_outputs(out) * m.in_channels * math.prod(m.kernel_size))


@dataclass
class LayerChoice:
    """One candidate layer: its density, both timings on its real input, and the verdict."""

    name: str
    density: float
    dense_ms: float
    sparse_ms: float
    sparse: bool


def plain_type(layer: nn.Module) -> type:
    """The layer's class, seen through a parametrization (which subclasses it)."""
    cls = type(layer)
    return cls.__bases__[0] if parametrize.is_parametrized(layer) else cls


def lowerable(layer: nn.Module) -> type | None:
    """nn.Linear or nn.Conv2d where ``layer`` is one a twin computes as a matrix product
    (a conv of groups 1, dilation 1, zero padding, through unfold), else None:
    subclasses (XNOR blocks) compute something else in forward."""
    kind = plain_type(layer)
    if kind is nn.Linear:
        return kind
    if (
        kind is nn.Conv2d
        and layer.groups == 1
        and layer.dilation == (1, 1)
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    ):
        return kind
    return None


def _twin(layer: nn.Module) -> nn.Module | None:
    """The sparse twin of a plain Linear or Conv2d, else None."""
    kind = lowerable(layer)
    return None if kind is None else (SparseLinear if kind is nn.Linear else SparseConv2d)(layer)


def layer_inputs(
    model: nn.Module, example: torch.Tensor, names: list[str]
) -> dict[str, torch.Tensor]:
    """The input each named layer sees (first call) in one forward of ``example``."""
    seen: dict[str, torch.Tensor] = {}

    def grab(name: str) -> Any:
        def hook(_: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else kwargs.get("input")
            if isinstance(x, torch.Tensor):
                seen.setdefault(name, x.detach())

        return hook

    hooks = [
        model.get_submodule(n).register_forward_pre_hook(grab(n), with_kwargs=True) for n in names
    ]
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _best_ms(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    layer(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer(x)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


# a twin must beat its dense layer by this much: timings of near-equal layers are noise
MARGIN = 0.95


def sparsify(
    model: nn.Module, example: torch.Tensor, *, max_density: float = 0.5, repeats: int = 20
) -> list[LayerChoice]:
    """Swap in sparse twins, in place, where measured faster on ``example``; say per layer.

    ``example`` is a batch of the size the model will serve (timings depend on it).
    Candidates: the plain Linear and Conv2d layers inside ``model`` with at most
    ``max_density`` nonzero weights; each is timed dense and sparse (best of
    ``repeats``) on its real input and runs sparse if that took under MARGIN of
    the dense time. Each module keeps its train/eval mode.
    """
    if not 0.0 < max_density <= 1.0 or repeats < 1:
        raise CnnzipError(
            f"max_density must be in (0, 1] and repeats >= 1, got {max_density} and {repeats}"
        )
    candidates = {}
    for name, layer in model.named_modules():
        if name and plain_type(layer) in (nn.Linear, nn.Conv2d):
            density = float(torch.count_nonzero(layer.weight)) / layer.weight.numel()
            if density <= max_density:
                candidates[name] = density
    return swap_if_faster(
        model, example, {name: (d, _twin) for name, d in candidates.items()}, repeats
    )


Twin = Callable[[nn.Module], nn.Module | None]


def swap_if_faster(
    model: nn.Module, example: torch.Tensor, candidates: dict[str, tuple[float, Twin]], repeats: int
) -> list[LayerChoice]:
    """For each named layer (its density, a maker of its twin or None), time it and its
    twin on the layer's real input from ``example``; swap in the twin where it took
    under MARGIN of the layer's time. Shared by ``sparsify`` and the compressed kernels."""
    choices = []
    with eval_mode(model), torch.no_grad():
        inputs = layer_inputs(model, example, list(candidates))
        for name, (density, make) in candidates.items():
            layer, x = model.get_submodule(name), inputs.get(name)
            twin = make(layer)
            if twin is None or x is None:  # unsupported layer, or not called by forward
                continue
            dense_ms, sparse_ms = _best_ms(layer, x, repeats), _best_ms(twin, x, repeats)
            faster = sparse_ms < MARGIN * dense_ms
            if faster:
                swap_module(model, name, twin)
            choices.append(LayerChoice(name, density, dense_ms, sparse_ms, faster))
    return choices


def bench_sparse(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batches: tuple[int, ...] = (1, 64),
    *,
    threads: int | None = None,
    runs: int = 50,
) -> dict[str, Any]:
    """The model dense and sparsified for each batch size: measured latency of both (median
    of ``runs``, same threads, same process), each layer's choice, and the theory: how
    many times fewer MACs multiply a nonzero weight (``profile``'s nonzero MACs)."""
    report = profile(model, input_shape)
    rows = []
    with num_threads(threads) as used:
        for batch in batches:
            fast = copy.deepcopy(model)
            choices = sparsify(fast, example_input(model, (batch, *input_shape)))
            dense, sparse = (
                measure_latency(m, input_shape, runs=runs, warmup=5, batch=batch).median_ms
                for m in (model, fast)
            )
            rows.append(
                {
                    "batch": batch,
                    "dense_ms": dense,
                    "sparse_ms": sparse,
                    "speedup": dense / sparse,
                    "layers": [asdict(c) for c in choices],
                }
            )
    return {
        "threads": used,
        "macs": report.macs,
        "nonzero_macs": report.nonzero_macs,
        "theoretical_speedup": report.macs / max(report.nonzero_macs, 1),
        "batches": rows,
    }
