"""Running a model for a measurement or a check: inference mode, an example input, and
a digest of its weights (what a cache or a work folder was made from).

Every place that runs a user's model once to learn something (a shape trace, a slim
model's check, a profile, a latency) runs it the same way: BatchNorm on its running
statistics and dropout off (a batch of one has no batch statistics), each module's own
mode restored after, on an input of the model's device, dtype and memory format."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

__all__ = ["eval_mode", "example_input", "is_channels_last", "state_digest"]


def state_digest(model: nn.Module) -> str:
    """SHA-256 (hex) of ``model``'s state dict: every name, dtype, shape and value, so
    two models digest alike only if they would compute alike from their weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)  # (numel,)
        h.update(flat.view(torch.uint8).numpy().tobytes())  # any dtype's raw bytes
    return h.hexdigest()


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
