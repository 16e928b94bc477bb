"""Measured speed of the binary kernels against torch's float32 conv, in one process.

Both sides run at the same thread count, interleaved, so that the load of a
shared machine falls on both; each time is the median of ``repeats`` runs.
With one thread, the CPU time of the calling thread is reported beside the
wall time: on a shared machine it leaves out the time other processes took.
The binary side starts from the same float input as torch and includes
binarize + pack + XNOR-popcount conv + output transform.
"""

from __future__ import annotations

import ctypes
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cnnzip.binary.scales import filter_alpha
from cnnzip.errors import CnnzipError
from cnnzip.runtime.xnor import BinaryConvKernel, pack_signs

__all__ = ["PAPER_LAYERS", "bench_layers", "keep_freed_memory", "median_ms", "xnor_net_speedup"]

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


def median_ms(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and calling-thread CPU time of each function, calls interleaved."""
    for fn in fns.values():  # warm up: caches, lazily prepared weights, oneDNN primitives
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
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
