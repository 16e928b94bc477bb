"""Measured latency: the median and spread of timed forwards after warm-up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from cnnzip.errors import CnnzipError
from cnnzip.models.running import eval_mode, example_input
from cnnzip.profiling.report import Latency

__all__ = ["measure_latency", "num_threads"]


@contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: as set), then restore."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise CnnzipError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    runs: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    batch: int = 1,
) -> Latency:
    """Time ``runs`` no-grad forwards of a random batch of ``batch`` x ``input_shape``,
    after ``warmup`` untimed ones (first calls pay for allocation and kernel selection)."""
    if runs < 1 or warmup < 0 or batch < 1:
        raise CnnzipError(f"need runs >= 1, warmup >= 0, batch >= 1; got {runs}, {warmup}, {batch}")
    x = example_input(model, (batch, *input_shape))
    device = x.device
    times = []
    with num_threads(threads) as used, eval_mode(model), torch.no_grad():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return Latency.from_times(times, warmup=warmup, batch=batch, threads=used, device=str(device))
