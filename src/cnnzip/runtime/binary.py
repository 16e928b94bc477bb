"""Run a trained XNOR model on the C kernels: ``compile_binary(model)``.

Each XNOR block (BatchNorm -> BinActiv -> conv, cnnzip.binary.layers) becomes
a module that applies its input batch norm as a per-channel affine map in
torch, then calls one kernel for binarize + pack + XNOR-popcount conv + output
transform (alpha, K and the conv bias folded per output channel). Layers kept
in full precision and BWN layers (float activations) stay as they are.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from cnnzip.binary.layers import XnorConv2d, XnorLinear
from cnnzip.binary.scales import filter_alpha, norm_affine
from cnnzip.codec import load as load_cnnz
from cnnzip.errors import CnnzipError
from cnnzip.runtime.xnor import BinaryConvKernel, pack_signs
from cnnzip.transforms import original_tensor, swap_module

__all__ = ["FastXnorConv2d", "FastXnorLinear", "compile_binary", "load"]


def _real_weight(layer: nn.Module) -> torch.Tensor:
    """The real-valued weight under the BWN transform: its signs and alpha are the kernel's."""
    return original_tensor(layer, "weight").detach()


def _kernel(layer: nn.Module, w: torch.Tensor, stride: int, padding: int) -> BinaryConvKernel:
    alpha = filter_alpha(w)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(alpha)
    return BinaryConvKernel(pack_signs(w), w.shape[1], alpha, bias, stride, padding, layer.scale_k)


class FastXnorConv2d(nn.Module):
    """An XnorConv2d in eval mode, run by the kernels."""

    def __init__(self, layer: XnorConv2d) -> None:
        super().__init__()
        a, b = norm_affine(layer.norm)
        self.register_buffer("in_scale", a[:, None, None])
        self.register_buffer("in_shift", b[:, None, None])
        if layer.stride[0] != layer.stride[1]:
            raise CnnzipError(
                f"the binary kernels need one stride along both axes, got {layer.stride}"
            )
        self.kernel = _kernel(layer, _real_weight(layer), layer.stride[0], layer.padding[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel(torch.addcmul(self.in_shift, x, self.in_scale))  # (N, Cout, Ho, Wo)


class FastXnorLinear(nn.Module):
    """An XnorLinear in eval mode, run by the kernels as a 1x1 conv on a 1x1 image."""

    def __init__(self, layer: XnorLinear) -> None:
        super().__init__()
        a, b = norm_affine(layer.norm)
        self.register_buffer("in_scale", a)
        self.register_buffer("in_shift", b)
        self.kernel = _kernel(layer, _real_weight(layer)[:, :, None, None], 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.in_shift, x, self.in_scale)  # (N, F)
        return self.kernel(x[:, :, None, None]).flatten(1)


def _fold_following_norms(fast: nn.Module) -> None:
    """A BatchNorm2d right after a fast conv in a Sequential joins its output transform."""
    for seq in [m for m in fast.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, norm = seq[i], seq[i + 1]
            if isinstance(conv, FastXnorConv2d) and isinstance(norm, nn.BatchNorm2d):
                a, b = norm_affine(norm)  # y * a + b after y = dot [* K] * scale + bias
                conv.kernel.scale = (conv.kernel.scale * a).contiguous()
                conv.kernel.bias = (conv.kernel.bias * a + b).contiguous()
                seq[i + 1] = nn.Identity()


def compile_binary(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose XNOR blocks run on the kernels.

    A BatchNorm2d that directly follows an XNOR conv in a Sequential is folded into
    the kernel's per-channel output transform.
    """
    fast = copy.deepcopy(model).eval()
    for name, module in list(fast.named_modules()):
        if isinstance(module, XnorConv2d | XnorLinear):
            twin = FastXnorConv2d if isinstance(module, XnorConv2d) else FastXnorLinear
            swap_module(fast, name, twin(module))
    _fold_following_norms(fast)
    return fast


def load(path: str | Path) -> nn.Module:
    """A binarized .cnnz (e.g. ``cnnzip binarize --cnnz``), as ``cnnzip.load`` decodes it,
    ready to run on the kernels."""
    return compile_binary(load_cnnz(path))
