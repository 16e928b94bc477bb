"""Run pruned layers as sparse matrix products: ``sparsify(model, example)``.

A pruned model decoded from a .cnnz holds dense weight tensors full of zeros,
and dense kernels multiply every one of them. Here each Linear and Conv2d
(groups 1, dilation 1, zero padding) whose weight is at most ``max_density``
nonzero gets a twin that keeps only the nonzeros, in torch's CSR format (MKL on
x86 builds), and computes ``W @ x`` (a conv as ``W @ unfold(x)``). Sparse
products pay off only with enough work per call (measured on LeNet-300's fc
layers at 6% density: slower than dense at batch 1, 2.1x faster at batch 64),
so every candidate layer is timed both ways on its real input from
``example`` and keeps whichever ran faster: the model never gets slower at
that batch size. Results equal the dense layer's up to float summation order.
Inference only: the twins have no gradients.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.errors import CnnzipError
from cnnzip.profiling import measure_latency, profile
from cnnzip.profiling.latency import example_input, num_threads

__all__ = ["LayerChoice", "SparseConv2d", "SparseLinear", "bench_sparse", "sparsify"]


def _csr(weight: torch.Tensor) -> torch.Tensor:
    """(out, in) dense -> CSR; torch warns that CSR is beta on every conversion."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().to_sparse_csr()


class SparseLinear(nn.Module):
    """A Linear layer computed as CSR weight @ x^T."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.weight = _csr(layer.weight)  # (out, in), nonzeros only
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
        self.register_buffer("bias", bias.detach()[:, None].clone())  # (out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        y = torch.addmm(self.bias, self.weight, flat.t())  # (out, N)
        return y.t().reshape(*x.shape[:-1], -1)


class SparseConv2d(nn.Module):
    """A Conv2d computed as CSR weight (out, in * kh * kw) @ unfold(x)."""

    def __init__(self, layer: nn.Conv2d) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = layer.kernel_size, layer.stride, layer.padding
        self.out_channels = layer.out_channels
        self.weight = _csr(layer.weight.reshape(layer.out_channels, -1))
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_channels)
        self.register_buffer("bias", bias.detach()[:, None].clone())  # (out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        ho = (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        cols = cols.permute(1, 0, 2).reshape(cols.shape[1], -1)  # (in * kh * kw, N * L)
        y = torch.addmm(self.bias, self.weight, cols)  # (out, N * L)
        return y.reshape(self.out_channels, n, ho, wo).permute(1, 0, 2, 3)


@dataclass
class LayerChoice:
    """One candidate layer: its density, both timings on its real input, and the verdict."""

    name: str
    density: float
    dense_ms: float
    sparse_ms: float
    sparse: bool


def _twin(layer: nn.Module) -> nn.Module | None:
    """The sparse twin of a layer this module can run, else None."""
    if isinstance(layer, nn.Linear):
        return SparseLinear(layer)
    if (
        isinstance(layer, nn.Conv2d)
        and layer.groups == 1
        and layer.dilation == (1, 1)
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    ):
        return SparseConv2d(layer)
    return None


def _inputs(model: nn.Module, example: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """The input each named layer sees in one forward of ``example``."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda _, args, n=n: seen.setdefault(n, args[0].detach())
        )
        for n in names
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


def sparsify(
    model: nn.Module, example: torch.Tensor, *, max_density: float = 0.5, repeats: int = 20
) -> list[LayerChoice]:
    """Swap in sparse twins, in place, where measured faster on ``example``; say per layer.

    ``example`` is a batch of the size the model will serve (timings depend on it).
    Candidates: Linear and plain Conv2d layers with at most ``max_density`` nonzero
    weights; each is timed dense and sparse (best of ``repeats``) on its real input.
    """
    if not 0.0 < max_density <= 1.0:
        raise CnnzipError(f"max_density must be in (0, 1], got {max_density}")
    model.eval()
    candidates = {}
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear | nn.Conv2d) and name:
            density = float(torch.count_nonzero(layer.weight)) / layer.weight.numel()
            if density <= max_density:
                candidates[name] = density
    choices = []
    with torch.no_grad():
        inputs = _inputs(model, example, list(candidates))
        for name, density in candidates.items():
            layer, x = model.get_submodule(name), inputs.get(name)
            twin = _twin(layer)
            if twin is None or x is None:  # unsupported layer, or not called by forward
                continue
            dense_ms, sparse_ms = _best_ms(layer, x, repeats), _best_ms(twin, x, repeats)
            faster = sparse_ms < dense_ms
            if faster:
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, twin)
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
