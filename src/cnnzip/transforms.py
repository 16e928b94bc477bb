"""One mechanism for every weight transform: parametrizations that runs can rebuild.

Pruning masks, shared-weight codebooks and binarization are each a
``WeightTransform``: an nn.Module registered with
``torch.nn.utils.parametrize`` on a layer's weight, so the ordinary training
loop trains through it. Each kind registers itself by name; ``describe`` lists
what a model carries as JSON-able specs (stored in run.json) and ``rebuild``
re-creates them on a fresh model so its state_dict (buffers such as masks
included) loads back.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from cnnzip.errors import RunError

__all__ = [
    "WeightTransform",
    "add_transform",
    "describe",
    "rebuild",
    "register_transform",
    "remove_transforms",
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


def _split(target: str) -> tuple[str, str]:
    module_name, _, tensor_name = target.rpartition(".")
    return module_name, tensor_name


def add_transform(model: nn.Module, target: str, transform: WeightTransform) -> None:
    """Parametrize ``target`` (a dotted name such as ``"features.3.weight"``)."""
    module_name, tensor_name = _split(target)
    parametrize.register_parametrization(model.get_submodule(module_name), tensor_name, transform)


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
    """JSON-able list of every transform, for run.json."""
    return [
        {"target": target, "kind": t.kind, "spec": t.spec()}
        for target, ts in transforms_of(model).items()
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
        module_name, tensor_name = _split(target)
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise RunError(f"transform target {target!r} is not in the model") from None
        if parametrize.is_parametrized(module, tensor_name):
            weight = module.parametrizations[tensor_name].original
        else:
            weight = getattr(module, tensor_name)
        add_transform(model, target, _KINDS[kind].from_spec(weight, item.get("spec", {})))


def remove_transforms(model: nn.Module, *, keep_values: bool = True) -> None:
    """Make every transform permanent: the weight becomes the transformed tensor."""
    for target in list(transforms_of(model)):
        module_name, tensor_name = _split(target)
        parametrize.remove_parametrizations(
            model.get_submodule(module_name), tensor_name, leave_parametrized=keep_values
        )
