"""Parameters and weight bytes of a layer, as it is actually stored.

A layer's weights are its own parameters plus its parametrized tensors
(``torch.nn.utils.parametrize``, which cnnzip's pruning masks, codebooks and
binarization use): a parametrized weight counts once, with the shape of its
original, whatever transforms sit on it.

Bytes are dense at the tensor's dtype (float32: 4 bytes a weight) unless
storage is reported otherwise, in one of three ways:

- a weight transform (``cnnzip.transforms.WeightTransform``) that defines
  ``storage_bytes(self, original: torch.Tensor) -> int`` reports the bytes of
  the tensor it transforms. The outermost transform on a tensor that defines
  it decides, since it sees the final form.
- otherwise a transform kind that registers a layout with the codec
  (``cnnzip.codec.layouts``: a mask, a codebook, BWN) is counted as the .cnnz
  stores that layout, by the one size model ``cnnzip.codec.sizes`` (a mask:
  the kept weights plus their relative indices; a codebook: b-bit indices
  plus the codebook; BWN: 1 bit a weight plus alpha per output channel).
- ``register_storage(ModuleType)`` decorates ``fn(module) -> int`` for a
  module type whose whole storage differs (a packed binary conv).

Buffers (batch-norm running statistics, masks) are not weights; a transform's
``storage_bytes`` counts what it needs of them.

A tensor held by several modules (a tied weight, ``b.weight = a.weight``, or
one module used at two places) is stored once: ``owned_counts`` counts it at
its first owner only.

A layout is counted as the .cnnz stores it before entropy coding: every
stream at a fixed width (gaps at p bits, codebook indices at b bits), each
section rounded up to whole bytes, by the functions that give the "pruned" and
"shared" stages of ``cnnzip.codec.inspect``. A .cnnz file is smaller by what its
entropy coder saves (inspect's "coded" stage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from cnnzip.codec.layouts import layout_of
from cnnzip.codec.sizes import layout_bytes

__all__ = [
    "layer_params",
    "nonzero_fraction",
    "owned_counts",
    "owned_tensors",
    "register_storage",
    "weight_bytes",
    "weight_owners",
]

STORAGE_HOOK = "storage_bytes"
_MODULE_STORAGE: dict[type[nn.Module], Callable[[nn.Module], int]] = {}


def register_storage(
    cls: type[nn.Module],
) -> Callable[[Callable[[nn.Module], int]], Callable[[nn.Module], int]]:
    """Decorator: ``fn(module) -> int`` gives the weight bytes of every module of type ``cls``."""

    def wrap(fn: Callable[[nn.Module], int]) -> Callable[[nn.Module], int]:
        _MODULE_STORAGE[cls] = fn
        return fn

    return wrap


def owned_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor, list[nn.Module]]]:
    """``(name, tensor, transforms)`` for the module's own weights.

    Direct parameters come with no transforms; a parametrized tensor comes as
    its original with the transforms applied to it, in order.
    """
    for name, param in module.named_parameters(recurse=False):
        yield name, param, []
    if parametrize.is_parametrized(module):
        for name, plist in module.parametrizations.items():
            yield name, plist.original, list(plist)


def layer_params(module: nn.Module) -> int:
    """Weights the module owns (not its children's), parametrized ones counted once."""
    return sum(tensor.numel() for _, tensor, _ in owned_tensors(module))


def nonzero_fraction(module: nn.Module) -> float:
    """Fraction of the module's effective ``weight`` (after its transforms) that is nonzero.

    What a sparse kernel could skip: a pruned layer's MACs times this are the
    multiplications by a kept weight. 1.0 for a module without a weight tensor.
    """
    with torch.no_grad():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.numel() == 0 or weight.is_meta:
            return 1.0
        return int(torch.count_nonzero(weight)) / weight.numel()


def _module_storage(module: nn.Module) -> Callable[[nn.Module], int] | None:
    return next((_MODULE_STORAGE[c] for c in type(module).__mro__ if c in _MODULE_STORAGE), None)


def _tensor_bytes(tensor: torch.Tensor, transforms: list[nn.Module]) -> int:
    """Bytes of one tensor: as its outermost reporting transform says, else as the codec
    stores its transforms' layout, else dense."""
    reporter = next((t for t in reversed(transforms) if hasattr(t, STORAGE_HOOK)), None)
    if reporter is not None:
        return int(getattr(reporter, STORAGE_HOOK)(tensor))
    layout = layout_of(transforms)
    if layout is not None:
        return layout_bytes(layout, tensor)
    return tensor.numel() * tensor.element_size()


def weight_bytes(module: nn.Module) -> int:
    """Bytes of the module's own weights at their actual storage (see the module docstring)."""
    storage = _module_storage(module)
    if storage is not None:
        return storage(module)
    return sum(_tensor_bytes(tensor, ts) for _, tensor, ts in owned_tensors(module))


def owned_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Module name -> (parameters, weight bytes) it owns, each tensor counted once, at its
    first owner (``weight_owners`` order): the model's totals are the sums."""
    seen: set[int] = set()
    out = {}
    for name, module in weight_owners(model):
        new = [(t, ts) for _, t, ts in owned_tensors(module) if id(t) not in seen]
        seen.update(id(t) for t, _ in new)
        storage = _module_storage(module)
        if storage is None:
            stored = sum(_tensor_bytes(t, ts) for t, ts in new)
        else:  # a module type whose whole storage differs: counted with its first tensor
            stored = storage(module) if new else 0
        out[name] = (sum(t.numel() for t, _ in new), stored)
    return out


def weight_owners(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Every module with its dotted name, skipping the insides of parametrizations.

    A transform's own tensors (a codebook, a mask) belong to the weight it
    transforms, which ``owned_tensors`` of the parametrized module accounts for.
    """
    yield prefix, model
    for name, child in model.named_children():
        if name == "parametrizations" and parametrize.is_parametrized(model):
            continue
        yield from weight_owners(child, f"{prefix}.{name}" if prefix else name)
