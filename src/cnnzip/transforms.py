"""One mechanism for every weight transform: parametrizations that runs can rebuild.

Pruning masks, shared-weight codebooks and binarization are each a
``WeightTransform``: an nn.Module registered with
``torch.nn.utils.parametrize`` on a layer's weight, so the ordinary training
loop trains through it. Each kind registers itself by name; ``describe`` lists
what a model carries as JSON-able specs (stored in run.json) and ``rebuild``
re-creates them on a fresh model so its state_dict (buffers such as masks
included) loads back.

A tensor tied between modules (``b.weight = a.weight``) stays one tensor: its
modules share one ``ParametrizationList`` (one ``original`` Parameter, one
list of transforms), so a transform added to one name applies to all of them,
is listed once by ``describe`` and is removed from all of them together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from cnnzip.errors import ModelError, RunError

__all__ = [
    "WeightTransform",
    "add_transform",
    "describe",
    "distinct",
    "effective_tensor",
    "keep_mask",
    "original_tensor",
    "rebuild",
    "register_transform",
    "remove_transforms",
    "skipped_weights",
    "split_target",
    "swap_module",
    "ties",
    "transforms_of",
]

_KINDS: dict[str, type[WeightTransform]] = {}


class WeightTransform(nn.Module):
    """Base class. Subclasses set ``kind``, implement ``forward(weight)``, and
    ``spec``/``from_spec`` so that a transform can be rebuilt with buffers of
    the right shape before its state_dict is loaded."""

    kind: ClassVar[str] = ""

    def spec(self) -> dict[str, Any]:
        """JSON-able constructor arguments (tensors live in the state_dict, not here)."""
        return {}

    @classmethod
    def from_spec(cls, weight: torch.Tensor, spec: dict[str, Any]) -> WeightTransform:
        """A transform for ``weight`` (the unparametrized tensor) with placeholder buffers."""
        raise NotImplementedError


def register_transform(cls: type[WeightTransform]) -> type[WeightTransform]:
    """Class decorator: make a transform kind rebuildable by name; duplicates are refused."""
    if not cls.kind or cls.kind in _KINDS:
        raise ValueError(f"transform kind {cls.kind!r} is empty or already registered")
    _KINDS[cls.kind] = cls
    return cls


def split_target(target: str) -> tuple[str, str]:
    """``"features.3.weight"`` -> ``("features.3", "weight")``: the module's dotted name
    (empty for the model itself) and the tensor's name on it."""
    module_name, _, tensor_name = target.rpartition(".")
    return module_name, tensor_name


def original_tensor(model: nn.Module, target: str) -> torch.Tensor:
    """The trained tensor under any transforms (the parametrization's ``original``), or the
    plain attribute when ``target`` has none; the Parameter itself, not a copy."""
    module_name, tensor_name = split_target(target)
    return _tensor(model.get_submodule(module_name), tensor_name)


def effective_tensor(model: nn.Module, target: str) -> torch.Tensor:
    """The tensor the forward pass uses (every transform applied), detached."""
    module_name, tensor_name = split_target(target)
    return getattr(model.get_submodule(module_name), tensor_name).detach()


def keep_mask(model: nn.Module, target: str) -> torch.Tensor | None:
    """The bool keep-mask (True = kept) of whichever transform on ``target`` carries one (a
    pruning Mask, a pruned SharedWeight), or None when no weight of it is pruned."""
    for t in transforms_of(model).get(target, []):
        mask = getattr(t, "mask", None)
        if torch.is_tensor(mask):
            return mask
    return None


def swap_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in place of the submodule called ``name`` (a dotted name) in its parent."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


def _tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    """``(dotted name, module, tensor name, tensor)`` for every parameter of the model; a
    parametrized one as its ``original``. A tied tensor comes once per name."""
    for module_name, module in model.named_modules():
        if "parametrizations" in module_name.split("."):
            continue  # a transform's own parameters (a codebook) belong to the weight it computes
        owned = list(module.named_parameters(recurse=False))
        if parametrize.is_parametrized(module):
            owned += [(name, plist.original) for name, plist in module.parametrizations.items()]
        for tensor_name, tensor in owned:
            target = f"{module_name}.{tensor_name}" if module_name else tensor_name
            yield target, module, tensor_name, tensor


def ties(model: nn.Module) -> dict[str, str]:
    """Each dotted parameter name that holds the same tensor as an earlier one -> that
    first name (``{"b.weight": "a.weight"}`` after ``b.weight = a.weight``)."""
    first: dict[int, str] = {}
    out = {}
    for target, _, _, tensor in _tensors(model):
        name = first.setdefault(id(tensor), target)
        if name != target:
            out[target] = name
    return out


def distinct(model: nn.Module, targets: Iterable[str]) -> list[str]:
    """``targets`` with each tensor once: a name tied to an earlier one is left out."""
    first = ties(model)
    seen: set[str] = set()
    out = []
    for target in targets:
        if first.get(target, target) not in seen:
            seen.add(first.get(target, target))
            out.append(target)
    return out


def _plist(module: nn.Module, tensor_name: str) -> nn.Module | None:
    """The ParametrizationList on ``module.tensor_name``, or None when it has none."""
    if parametrize.is_parametrized(module, tensor_name):
        return module.parametrizations[tensor_name]
    return None


def _tie(model: nn.Module, tensor: torch.Tensor, plist: nn.Module) -> None:
    """Make every other module holding ``tensor`` use ``plist`` (one original, one list of
    transforms), so the tie survives parametrization."""
    for target, module, tensor_name, held in list(_tensors(model)):
        current = _plist(module, tensor_name)
        if held is not tensor or current is plist:
            continue
        if current is not None:
            raise ModelError(
                f"{target} is tied to a transformed tensor but carries transforms of its own; "
                "parametrize tied tensors only through cnnzip.transforms.add_transform"
            )
        parametrize.register_parametrization(module, tensor_name, nn.Identity())  # placeholder
        module.parametrizations[tensor_name] = plist


def add_transform(model: nn.Module, target: str, transform: WeightTransform) -> None:
    """Parametrize ``target`` (a dotted name such as ``"features.3.weight"``) and every
    name tied to it (see the module docstring)."""
    module_name, tensor_name = split_target(target)
    module = model.get_submodule(module_name)
    tensor = _tensor(module, tensor_name)
    parametrize.register_parametrization(module, tensor_name, transform)
    _tie(model, tensor, module.parametrizations[tensor_name])


def _tensor(module: nn.Module, tensor_name: str) -> torch.Tensor:
    """The tensor under any transforms: the parametrization's ``original``, or the attribute."""
    plist = _plist(module, tensor_name)
    return plist.original if plist is not None else getattr(module, tensor_name)


def skipped_weights(model: nn.Module, handled: Iterable[str], why: str) -> list[tuple[str, str]]:
    """``(name, reason)`` for each weight tensor (2+ dims) that a stage left as it is: neither
    in ``handled`` nor tied to a name there. ``why`` says what the stage needs, e.g. "not
    the weight of a Conv/Linear layer". Biases and norm scales (1-D) stay dense by design."""
    names = set(handled)
    done = {id(tensor) for target, _, _, tensor in _tensors(model) if target in names}
    out = []
    for target, module, _, tensor in _tensors(model):
        if tensor.dim() >= 2 and id(tensor) not in done:
            done.add(id(tensor))  # a tied tensor is listed once
            out.append((target, f"{type(module).__name__}: {why}"))
    return out


def transforms_of(model: nn.Module) -> dict[str, list[WeightTransform]]:
    """Dotted tensor name -> the transforms on it, in application order."""
    out: dict[str, list[WeightTransform]] = {}
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name, plist in module.parametrizations.items():
            target = f"{module_name}.{tensor_name}" if module_name else tensor_name
            out[target] = [p for p in plist if isinstance(p, WeightTransform)]
    return out


def describe(model: nn.Module) -> list[dict[str, Any]]:
    """JSON-able list of every transform, for run.json; a tied tensor's under its first name
    only (``rebuild`` ties the others again)."""
    aliases = ties(model)
    return [
        {"target": target, "kind": t.kind, "spec": t.spec()}
        for target, ts in transforms_of(model).items()
        if target not in aliases
        for t in ts
    ]


def rebuild(model: nn.Module, specs: list[dict[str, Any]]) -> None:
    """Re-create the transforms ``describe`` listed, so a saved state_dict loads back."""
    for item in specs:
        kind, target = item.get("kind"), item.get("target", "")
        if kind not in _KINDS:
            raise RunError(
                f"unknown weight transform {kind!r} on {target!r}; known: {sorted(_KINDS)}"
            )
        module_name, tensor_name = split_target(target)
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise RunError(f"transform target {target!r} is not in the model") from None
        weight = _tensor(module, tensor_name)
        add_transform(model, target, _KINDS[kind].from_spec(weight, item.get("spec", {})))


def remove_transforms(
    model: nn.Module, targets: Iterable[str] | None = None, *, keep_values: bool = True
) -> None:
    """Make the transforms on ``targets`` (default: all) permanent: each weight becomes the
    transformed tensor, or with ``keep_values=False`` its original. Names tied to a target
    lose theirs too and still hold one Parameter."""
    for target in list(transforms_of(model) if targets is None else targets):
        module_name, tensor_name = split_target(target)
        module = model.get_submodule(module_name)
        plist = _plist(module, tensor_name)
        if plist is None:
            continue  # a tied name whose transforms went with an earlier one
        _own_class(module)
        parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=keep_values)
        for _, other, other_name, _ in list(_tensors(model)):
            if _plist(other, other_name) is plist:  # original holds the values: put it back
                _own_class(other)
                parametrize.remove_parametrizations(other, other_name, leave_parametrized=False)


def _own_class(module: nn.Module) -> None:
    """Give ``module`` a parametrized class of its own before a removal changes it: torch's
    parametrize shares the generated ``Parametrized*`` class between a module and its deep
    copies, and removal deletes the tensor's property from that class, so a copy (the
    dense model kept beside one being compressed, say) would lose its weight."""
    cls = module.__class__
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
