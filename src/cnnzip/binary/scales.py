"""The per-channel factors binary layers and their kernels share, computed one way.

BWN's alpha (training, cnnzip.binary.layers) and the kernels' output scale
(cnnzip.runtime) must agree to the bit, and an XNOR block's input batch norm
and a batch norm after a binary conv are folded the same way; so each lives
here once.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["filter_alpha", "norm_affine"]


def filter_alpha(weight: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """BWN's scale: mean |W| per output filter (dim 0), over every other dim."""
    return weight.abs().mean(dim=tuple(range(1, weight.dim())), keepdim=keepdim)


def norm_affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode batch norm as ``y = x * scale + shift`` per channel: ``(scale, shift)``."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias.detach() - norm.running_mean * scale
