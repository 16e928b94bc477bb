"""Measured speed of the binary kernels against torch's float32 conv, in one process.

Both sides run at the same thread count, interleaved, so that the load of a
shared machine falls on both; each time is the median of ``repeats`` runs.
With one thread, the CPU time of the calling thread is reported beside the
wall time: on a shared machine it leaves out the time other processes took.
The binary side starts from the same float input as torch and includes
binarize + pack + XNOR-popcount conv + output transform.
"""

from __future__ import annotations

import copy
import ctypes
import itertools
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.binary.scales import filter_alpha
from cnnzip.codec.container import CnnzFile
from cnnzip.errors import CnnzipError
from cnnzip.models.running import eval_mode, example_input
from cnnzip.profiling.latency import num_threads
from cnnzip.runtime.compressed import (
    CompressedConv2d,
    CompressedLinear,
    StoredWeight,
    available_paths,
    compile_compressed,
    compressed_twins,
    kernels,
)
from cnnzip.runtime.sparse import SparseConv2d, SparseLinear, layer_inputs
from cnnzip.runtime.xnor import BinaryConvKernel, pack_signs

__all__ = [
    "PAPER_LAYERS",
    "LayerSpec",
    "bench_compressed_layer",
    "bench_compressed_model",
    "bench_compressed_spec",
    "bench_layers",
    "keep_freed_memory",
    "median_ms",
    "xnor_net_speedup",
]

# (channels, height = width): 3x3 convs from ResNet-style stages, batch 1
PAPER_LAYERS: tuple[tuple[int, int], ...] = ((256, 56), (128, 28), (512, 7))


def xnor_net_speedup(channels: int, kernel_elements: int) -> float:
    """XNOR-Net's theoretical speedup of a binary conv, S = 64 c N_W / (c N_W + 64): 64
    binary operations per instruction, plus one non-binary op per output for the
    scaling (62x for c=256, 3x3). Memory traffic, packing and the float baseline's
    real speed are not in it."""
    work = channels * kernel_elements
    return 64 * work / (work + 64)


def keep_freed_memory() -> None:
    """Stop glibc from handing freed heap memory back to the OS (a no-op elsewhere).

    By default glibc trims freed blocks over ~128 KB, so every call's fresh output
    tensor page-faults again: ~780 faults, ~0.8 ms CPU for a 3.2 MB output, on both
    sides. Keeping the memory makes both sides measure computation, as a serving
    process that reuses its buffers would.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MB of freed top
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: heap, not fresh mmaps, up to 32 MB


def _orders(keys: list[str]) -> list[list[str]]:
    """Call orders in which each key follows every other equally often: all permutations
    (up to 6 keys), else seeded shuffles."""
    if len(keys) <= 6:
        return [list(p) for p in itertools.permutations(keys)]
    return [random.Random(i).sample(keys, len(keys)) for i in range(720)]


def median_ms(
    fns: dict[str, Callable[[], Any]], repeats: int, *, rotate: bool = False
) -> dict[str, dict[str, float]]:
    """Median wall and calling-thread CPU time of each function, calls interleaved.

    ``rotate``: each round in another order (the permutations in turn), so that each
    function follows every other equally often: a call right after a large one pays for
    the state it leaves (measured: ~0.1 ms more for a 0.13 ms sparse matvec right after
    a 67 MB dense one), which a fixed order, or one merely rotated (the same neighbours
    each round), charges to one function only."""
    for fn in fns.values():  # warm up: caches, lazily prepared weights, oneDNN primitives
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    orders = _orders(keys) if rotate else [keys]
    for i in range(repeats):
        for key in orders[i % len(orders)]:
            fn = fns[key]
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            cpu[key].append((time.thread_time() - c0) * 1e3)
            wall[key].append((time.perf_counter() - w0) * 1e3)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k])} for k in fns}


def bench_layers(
    layers: tuple[tuple[int, int], ...] = PAPER_LAYERS,
    *,
    threads: int = 1,
    repeats: int = 15,
    path: str | None = None,
) -> dict[str, Any]:
    """Float vs binary 3x3 stride-1 pad-1 conv, cin = cout, batch 1, per layer."""
    if threads < 1 or repeats < 1:
        raise CnnzipError(f"need threads >= 1 and repeats >= 1, got {threads} and {repeats}")
    keep_freed_memory()
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for chans, hw in layers:
            gen = torch.Generator().manual_seed(chans + hw)
            x = torch.randn(1, chans, hw, hw, generator=gen)
            w = torch.randn(chans, chans, 3, 3, generator=gen)
            kernel = BinaryConvKernel(
                pack_signs(w), chans, filter_alpha(w), torch.zeros(chans), 1, 1
            )
            chosen = path or kernel.path_for(x, threads)
            ms = median_ms(
                {
                    "float": lambda x=x, w=w: F.conv2d(x, w, padding=1),
                    "binary": lambda x=x, k=kernel, p=chosen: k(x, threads=threads, path=p),
                },
                repeats,
            )
            row = {
                "cin": chans,
                "cout": chans,
                "hw": hw,
                "float_ms": ms["float"]["wall"],
                "binary_ms": ms["binary"]["wall"],
                "speedup": ms["float"]["wall"] / ms["binary"]["wall"],
                "theoretical_speedup": xnor_net_speedup(chans, 9),
                "path": chosen,
            }
            if threads == 1:  # other threads' CPU time would be missed
                row["float_cpu_ms"] = ms["float"]["cpu"]
                row["binary_cpu_ms"] = ms["binary"]["cpu"]
                row["cpu_speedup"] = ms["float"]["cpu"] / ms["binary"]["cpu"]
            rows.append(row)
    finally:
        torch.set_num_threads(saved)
    paths = sorted({row["path"] for row in rows})
    return {"layers": rows, "threads": threads, "path": ", ".join(paths), "repeats": repeats}


# ---- compressed-domain kernels (cnnzip.runtime.compressed) ------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """A random pruned + shared layer: ``fc:IN:OUT:DENSITY:BITS`` or
    ``conv:CIN:COUT:K:HW:DENSITY:BITS`` (a KxK conv, stride 1, padding K // 2, HWxHW)."""

    kind: str  # "fc" or "conv"
    cin: int
    cout: int
    density: float
    bits: int
    k: int = 1
    hw: int = 1

    @classmethod
    def parse(cls, text: str) -> LayerSpec:
        parts = text.split(":")
        try:
            if parts[0] == "fc" and len(parts) == 5:
                spec = cls("fc", int(parts[1]), int(parts[2]), float(parts[3]), int(parts[4]))
            elif parts[0] == "conv" and len(parts) == 7:
                cin, cout, k, hw = map(int, parts[1:5])
                spec = cls("conv", cin, cout, float(parts[5]), int(parts[6]), k, hw)
            else:
                raise ValueError
        except ValueError:
            raise CnnzipError(
                f"layer spec {text!r}: expected fc:IN:OUT:DENSITY:BITS or "
                "conv:CIN:COUT:K:HW:DENSITY:BITS, e.g. fc:9216:4096:0.09:5"
            ) from None
        if min(spec.cin, spec.cout, spec.k, spec.hw) < 1 or not 0 <= spec.density <= 1:
            raise CnnzipError(f"layer spec {text!r}: sizes must be >= 1, density in [0, 1]")
        weights, inputs = spec.cin * spec.k * spec.k * spec.cout, spec.cin * spec.hw * spec.hw
        if not 1 <= spec.bits <= 8 or max(weights, inputs) > 1 << 28:
            raise CnnzipError(
                f"layer spec {text!r}: bits in 1..8, at most 2**28 weights and inputs"
            )
        return spec

    def __str__(self) -> str:
        size = f"{self.cin}->{self.cout}"
        if self.kind == "conv":
            size += f" {self.k}x{self.k} @{self.hw}"
        return f"{self.kind} {size}, {100 * self.density:g}% kept, {self.bits}-bit"

    def build(self, seed: int = 0) -> tuple[nn.Module, StoredWeight]:
        """The dense layer (its weight as decoded) and the same weight as stored."""
        gen = torch.Generator().manual_seed(seed)
        layer: nn.Module = (
            nn.Linear(self.cin, self.cout)
            if self.kind == "fc"
            else nn.Conv2d(self.cin, self.cout, self.k, padding=self.k // 2)
        )
        shape = tuple(layer.weight.shape)
        codebook = torch.randn(1 << self.bits, generator=gen) * 0.05
        numel = math.prod(shape)
        kept = torch.nonzero(torch.rand(numel, generator=gen) < self.density).squeeze(1)
        codes = torch.randint(0, 1 << self.bits, (len(kept),), generator=gen)
        stored = StoredWeight(shape, kept.numpy(), codes.numpy(), codebook.numpy())
        with torch.no_grad():
            layer.weight.copy_(stored.dense())
        return layer.eval(), stored

    def example(self, batch: int) -> torch.Tensor:
        shape = (batch, self.cin) if self.kind == "fc" else (batch, self.cin, self.hw, self.hw)
        return torch.randn(shape, generator=torch.Generator().manual_seed(1))


def _csr_baseline(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A plain C CSR matvec (scipy's csr_matvec loop) of ``weight``, for batch 1."""
    ext = kernels()
    if ext is None:
        return None
    w = weight.detach().reshape(weight.shape[0], -1)  # (rows, fan_in)
    csr = w.to_sparse_csr()
    handle = ext.csr_prepare(
        csr.values().numpy().astype("<f4").tobytes(),
        csr.col_indices().numpy().astype("<i4").tobytes(),
        csr.crow_indices().numpy().astype("<i8").tobytes(),
        w.shape[0],
        w.shape[1],
    )

    def run(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty(w.shape[0])
        ext.csr_matvec(handle, x.reshape(-1).numpy(), y.numpy())
        return y

    return run


def _kernel_call(twin: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The kernels' batch-1 product as one C call wrapped like ``_csr_baseline``'s (no
    nn.Module around it): the like-for-like twin of the C CSR column, since a module's
    Python costs ~5 us warm but ~50 us after a cache-sweeping call (measured)."""
    ext = kernels()
    if ext is None or not isinstance(twin, CompressedLinear):
        return None
    handle = twin.prepared()

    def run(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty(twin.rows)
        ext.matvec(handle, x.reshape(-1).numpy(), y.numpy(), available_paths()[-1])
        return y

    return run


def _torch_csr(layer: nn.Module) -> nn.Module:
    return SparseLinear(layer) if isinstance(layer, nn.Linear) else SparseConv2d(layer)


def bench_compressed_layer(
    layer: nn.Module, twin: nn.Module, example: Callable[[int], torch.Tensor],
    batches: tuple[int, ...] = (1, 8, 64), *, repeats: int = 30,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per batch size: dense (torch, the decoded weight) vs torch CSR (``sparsify``'s) vs
    the compressed kernels [vs a plain C CSR matvec at batch 1 of a Linear], median ms
    interleaved in one process, with each form's bytes-moved bound beside it: the most
    it could gain over dense if all were memory traffic (4 B per weight vs 8 B per kept
    weight vs the layout's bytes)."""
    weight = layer.weight.detach()
    nnz = int(torch.count_nonzero(weight))
    dense_bytes = 4 * weight.numel()
    bounds = {"csr": dense_bytes / max(8 * nnz, 1), "kernel": dense_bytes / twin.weight_nbytes}
    sparse, c_csr, call = _torch_csr(layer), _csr_baseline(weight), _kernel_call(twin)
    rows = []
    with torch.no_grad():
        for batch in batches:
            x = example(batch)
            fns = {"dense": lambda x=x: layer(x), "csr": lambda x=x: sparse(x)}
            fns["kernel"] = lambda x=x: twin(x)
            if batch == 1 and c_csr is not None and call is not None:
                fns["c_csr"] = lambda x=x: c_csr(x)
                fns["kernel_call"] = lambda x=x: call(x)
            ms = {k: v["wall"] for k, v in median_ms(fns, repeats, rotate=True).items()}
            rows.append({
                "batch": batch, "ms": ms,
                "speedup": {k: ms["dense"] / v for k, v in ms.items()},
                "bound": bounds,
            })  # fmt: skip
    return rows


def bench_compressed_spec(
    spec: LayerSpec, batches: tuple[int, ...] = (1, 8, 64), *, repeats: int = 30, threads: int = 1
) -> dict[str, Any]:
    """``bench_compressed_layer`` on a random layer of ``spec``, at ``threads``."""
    layer, w = spec.build()
    twin = CompressedLinear(layer, w) if spec.kind == "fc" else CompressedConv2d(layer, w)
    with num_threads(threads) as used:
        rows = bench_compressed_layer(layer, twin, spec.example, batches, repeats=repeats)
    return {
        "layer": str(spec), "threads": used, "path": ",".join(available_paths()[-1:]),
        "dense_bytes": 4 * math.prod(w.shape), "kernel_bytes": twin.weight_nbytes,
        "batches": rows,
    }  # fmt: skip


def bench_compressed_model(
    model: nn.Module, cf: CnnzFile, input_shape: tuple[int, ...],
    batches: tuple[int, ...] = (1, 8, 64), *, repeats: int = 30, threads: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """A decoded .cnnz (``model``, from ``cf``): each shared layer as
    ``bench_compressed_layer`` on its real input, then the whole model dense vs with
    the layers ``compile_compressed`` measured faster, per batch size."""
    twins = compressed_twins(model, cf)
    with num_threads(threads) as used, torch.no_grad(), eval_mode(model):
        inputs = {
            b: layer_inputs(model, example_input(model, (b, *input_shape)), list(twins))
            for b in batches
        }
        layers = [
            {
                "name": name, "density": twin.layout.density,
                "dense_bytes": 4 * math.prod(twin.layout.shape), "kernel_bytes": twin.weight_nbytes,
                "batches": bench_compressed_layer(
                    model.get_submodule(name), twin, lambda b, n=name: inputs[b][n], batches,
                    repeats=repeats,
                ),
            }
            for name, twin in twins.items()
        ]  # fmt: skip
        whole = [_whole_model(model, cf, input_shape, b, repeats) for b in batches]
    return {"threads": used, "path": ",".join(available_paths()[-1:]), "layers": layers,
            "model": whole}  # fmt: skip


def _whole_model(
    model: nn.Module, cf: CnnzFile, input_shape: tuple[int, ...], batch: int, repeats: int
) -> dict[str, Any]:
    x = example_input(model, (batch, *input_shape))
    fast = copy.deepcopy(model)
    choices = compile_compressed(fast, cf, x, repeats=repeats)
    ms = {
        k: v["wall"]
        for k, v in median_ms(
            {"dense": lambda: model(x), "compressed": lambda: fast(x)}, repeats, rotate=True
        ).items()
    }
    return {
        "batch": batch, "dense_ms": ms["dense"], "compressed_ms": ms["compressed"],
        "speedup": ms["dense"] / ms["compressed"],
        "on_kernels": [c.name for c in choices if c.sparse],
    }  # fmt: skip
