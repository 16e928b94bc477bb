"""Data-parallel training under torchrun, with no change to the user's code.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; when WORLD_SIZE > 1 the
training loop initialises a process group (nccl on GPU, gloo on CPU) and wraps
the model in DistributedDataParallel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_sum", "setup", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | torch.device | None = None) -> DistInfo:
    """Join torchrun's process group if there is one; pick the device (CUDA when present)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, device=device)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers over all ranks (identity in a single process)."""
    if info.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def teardown() -> None:
    """Leave the process group (a no-op without one), so torchrun's workers exit cleanly."""
    if dist.is_initialized():
        dist.destroy_process_group()
