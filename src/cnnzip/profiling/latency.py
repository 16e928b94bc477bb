"""Measured latency: the median and spread of timed forwards after warm-up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from cnnzip.errors import CnnzipError
from cnnzip.profiling.report import Latency

__all__ = ["eval_mode", "example_input", "is_channels_last", "measure_latency", "num_threads"]


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


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Inference behaviour (dropout off, batch-norm running stats) for the block, then each
    module's own mode back."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's conv weights are laid out channels-last (after
    ``model.to(memory_format=torch.channels_last)``), where oneDNN's kernels run fastest
    on the CPU; 1x1 kernels are contiguous either way, so a larger one decides."""
    return any(
        p.dim() == 4
        and not p.is_contiguous()
        and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )


def example_input(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Random normal input on the model's device, in its floating dtype (float32 if none),
    channels-last when the model is (else every conv would convert it first)."""
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=dtype).to(device)  # (N, C, H, W)
    if x.dim() == 4 and is_channels_last(model):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


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
