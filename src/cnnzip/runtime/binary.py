"""Run a trained XNOR model on the C kernels: ``compile_binary(model)``.

Each XNOR block (BatchNorm -> BinActiv -> conv, cnnzip.binary.layers) becomes
a module that applies its input batch norm as a per-channel affine map in
torch, then calls one kernel for binarize + pack + XNOR-popcount conv + output
transform (alpha, K and the conv bias folded per output channel). Layers kept
in full precision and BWN layers (float activations) stay as they are.

Binary layers that feed binary layers stay binary in between: where a traced
forward (torch.fx) shows an XNOR conv whose only consumer, through ReLUs,
identities and max-pools used nowhere else, is another XNOR conv (both without
K, which needs float input), the first emits packed activations: its output
transform, the folded batch norm, the ReLU and the next block's input batch norm +
sign become one integer threshold per channel (``thresholds_from``, evaluated with
the float path's own operations, so the bits are the ones the float path's signs
would be), and the max-pools run on the packed words. Float stays where a float
consumer needs it: the first and last layers, residual additions, K.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn

from cnnzip.binary.layers import XnorConv2d, XnorLinear
from cnnzip.binary.scales import filter_alpha, norm_affine
from cnnzip.codec import load as load_cnnz
from cnnzip.errors import CnnzipError
from cnnzip.runtime.compressed import load_compressed
from cnnzip.runtime.xnor import (
    BinaryConvKernel,
    PackedActs,
    pack_bits,
    pack_signs,
    pool_packed_words,
    thresholds_from,
)
from cnnzip.transforms import original_tensor, swap_module

__all__ = ["FastXnorConv2d", "FastXnorLinear", "PackedMaxPool2d", "compile_binary", "load"]


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

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        """The input batch norm: one multiply, one add (each rounded once, wherever the
        element sits in the tensor, so thresholds_from can replay it on other shapes)."""
        return x * self.in_scale + self.in_shift

    def forward(self, x: torch.Tensor | PackedActs) -> torch.Tensor | PackedActs:
        if isinstance(x, PackedActs):  # the input norm + sign are in its producer's thresholds
            return self.kernel(x)
        return self.kernel(self.affine(x))  # (N, Cout, Ho, Wo), or packed


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


class PackedMaxPool2d(nn.Module):
    """A max-pool between two chained binary layers: on packed activations, AND of the
    window's bits per channel, OR where the next layer's input scale is negative (its
    sign decision then rises with the value); float input is pooled as before."""

    def __init__(self, pool: nn.MaxPool2d, or_mask: torch.Tensor) -> None:
        super().__init__()
        self.pool = pool
        self.register_buffer("mask_words", pack_bits(or_mask.bool()[None, :, None, None])[0, 0, 0])
        self.kernel_size, self.stride, self.padding = _square_pool(pool)

    def forward(self, x: torch.Tensor | PackedActs) -> torch.Tensor | PackedActs:
        if isinstance(x, PackedActs):
            pool = self.kernel_size, self.stride, self.padding
            return pool_packed_words(x, *pool, self.mask_words)
        return self.pool(x)


def _square_pool(pool: nn.Module) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a max-pool the packed pool can run, else (0, 0, 0)."""
    if not isinstance(pool, nn.MaxPool2d) or pool.ceil_mode or pool.return_indices:
        return 0, 0, 0
    sizes = [pool.kernel_size, pool.stride, pool.padding, pool.dilation]
    pairs = [s if isinstance(s, tuple) else (s, s) for s in sizes]
    if any(a != b for a, b in pairs) or pairs[3][0] != 1:
        return 0, 0, 0
    return pairs[0][0], pairs[1][0], pairs[2][0]


def _passes_bits(module: nn.Module) -> bool:
    """Ops a chain may cross: the sign decision after them is monotone in their input and
    they run on packed activations (ReLU and identities drop out, max-pools pool bits)."""
    return isinstance(module, nn.ReLU | nn.Identity) or _square_pool(module)[0] > 0


class _FastLeaves(fx.Tracer):
    """Traces through everything but the kernels' modules."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, FastXnorConv2d | FastXnorLinear) or super().is_leaf_module(m, qualname)


def _chains(fast: nn.Module) -> list[tuple[str, list[str], str]]:
    """(producer, modules between, consumer) of every chain of two XNOR convs, by name."""
    try:
        graph = _FastLeaves().trace(fast)
    except Exception:  # an untraceable forward (data-dependent control flow): no chains
        return []
    modules = dict(fast.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    chains = []
    for node in graph.nodes:
        if node.op != "call_module" or not _chainable(modules[node.target]):
            continue
        between, cur = [], node
        while calls[cur.target] == 1 and len(cur.users) == 1:
            nxt = next(iter(cur.users))
            target = modules.get(nxt.target) if nxt.op == "call_module" else None
            if _chainable(target) and nxt.args == (cur,) and not nxt.kwargs:
                chains.append((node.target, between, nxt.target))
            if target is None or not _passes_bits(target) or nxt.args != (cur,) or nxt.kwargs:
                break
            between.append(nxt.target)
            cur = nxt
    return chains


def _chainable(module: nn.Module | None) -> bool:
    """An XNOR conv that can take and give packed activations: no K, finite factors."""
    if not isinstance(module, FastXnorConv2d) or module.kernel.use_k:
        return False
    factors = [module.kernel.scale, module.kernel.bias, module.in_scale, module.in_shift]
    return all(bool(torch.isfinite(f).all()) for f in factors)


def _link(fast: nn.Module, producer: str, between: list[str], consumer: str) -> None:
    """Make ``producer`` emit packed activations for ``consumer`` (see the module docstring)."""
    prod, cons = fast.get_submodule(producer), fast.get_submodule(consumer)
    ops = [fast.get_submodule(name) for name in between]
    kernel = prod.kernel

    def decide(dots: torch.Tensor) -> torch.Tensor:  # dots (1, 1, 1, D) -> (1, cout, 1, D)
        y = dots * kernel.scale[:, None, None] + kernel.bias[:, None, None]  # as the kernels
        for op in ops:
            y = y.relu() if isinstance(op, nn.ReLU) else y  # pools commute with the decision
        return cons.affine(y) < 0

    fan_in = kernel.in_chans * kernel.kernel_size[0] * kernel.kernel_size[1]
    try:
        thresholds = thresholds_from(decide, fan_in)
    except CnnzipError:  # e.g. 0 * inf = NaN for some dots: no threshold, float stays
        return
    prod.kernel = dataclasses.replace(kernel, thresholds=thresholds, _fastest={})
    or_mask = cons.in_scale.flatten() < 0  # the decision rises with the value: OR
    for name, op in zip(between, ops, strict=True):
        swap_module(
            fast, name, PackedMaxPool2d(op, or_mask) if _square_pool(op)[0] else nn.Identity()
        )


def compile_binary(model: nn.Module, *, chain: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` whose XNOR blocks run on the kernels.

    A BatchNorm2d that directly follows an XNOR conv in a Sequential is folded into
    the kernel's per-channel output transform. With ``chain`` (the default), XNOR
    convs that feed XNOR convs pass packed activations (see the module docstring):
    the same outputs, bit for bit, as ``chain=False``.
    """
    fast = copy.deepcopy(model).eval()
    for name, module in list(fast.named_modules()):
        if isinstance(module, XnorConv2d | XnorLinear):
            twin = FastXnorConv2d if isinstance(module, XnorConv2d) else FastXnorLinear
            swap_module(fast, name, twin(module))
    _fold_following_norms(fast)
    for producer, between, consumer in _chains(fast) if chain else []:
        _link(fast, producer, between, consumer)
    return fast


def load(
    path: str | Path, *, compressed: bool = False, example: torch.Tensor | None = None
) -> nn.Module:
    """A .cnnz as ``cnnzip.load`` decodes it, its XNOR layers (``cnnzip binarize --cnnz``)
    on the binary kernels; with ``compressed``, its pruned + shared layers also on the
    compressed-domain kernels where they measured faster on ``example``, a batch of the
    size the model will serve (``runtime.compressed.load_compressed``)."""
    model = load_compressed(path, example)[0] if compressed else load_cnnz(path)
    return compile_binary(model)
