"""Mini-batches cut from in-memory splits, sharded the same way for 1 or N processes.

A global batch is the same set of samples whatever the process count: under
data-parallel training each rank takes its slice of every global batch, so the
averaged gradient (and so the loss curve) matches a single process.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnnzip.data.datasets import Split
from cnnzip.errors import DataError

__all__ = ["batches", "num_batches"]


def _order(n: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    # a fresh generator per (seed, epoch): a resumed run sees the same order
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def num_batches(n: int, batch_size: int, world_size: int = 1) -> int:
    """Global batches per epoch; the last one is dropped when it cannot feed every rank."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= world_size else 0)


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches; with world_size > 1, this rank's slice of each global batch."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    order = _order(len(split), shuffle, seed, epoch)
    for b in range(num_batches(len(split), batch_size, world_size)):
        idx = order[b * batch_size : (b + 1) * batch_size]
        idx = torch.tensor_split(idx, world_size)[rank]
        yield split.x[idx], split.y[idx]
