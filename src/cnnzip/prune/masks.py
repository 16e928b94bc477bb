"""Pruning masks: a ``mask`` parametrization on Conv/Linear weights; pruned weights stay dead.

A pruned weight is ``original * mask`` (torch.nn.utils.parametrize), so the
one training loop retrains a pruned model unchanged, and save_run/load_run
round-trip the masks through cnnzip.transforms. The product already zeroes the
gradient of ``original`` where the mask is 0; ``MaskKeeper`` also zeroes
``original`` and the optimizer's per-weight state (momentum, Adam moments)
there, so a pruned weight is exactly zero underneath too and nothing (stale
moments, weight decay) can bring it back.

A weight tied between layers is one tensor with one mask (cnnzip.transforms
ties the layers' parametrizations): ``prunable`` names it once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

from cnnzip.codec.layouts import Layout, register_layout
from cnnzip.errors import CnnzipError
from cnnzip.train import Callback, TrainState
from cnnzip.transforms import (
    WeightTransform,
    add_transform,
    distinct,
    original_tensor,
    register_transform,
    remove_transforms,
    skipped_weights,
    ties,
    transforms_of,
)

__all__ = [
    "PRUNABLE_TYPES",
    "Mask",
    "MaskKeeper",
    "PruneError",
    "apply_masks",
    "enforce_masks",
    "get_mask",
    "prunable",
    "remove_masks",
    "set_mask",
    "unprunable",
]

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class PruneError(CnnzipError):
    """Bad pruning input: a ratio out of range, an unknown layer, nothing to prune."""


@register_transform
class Mask(WeightTransform):
    """``weight * mask`` with ``mask`` a bool buffer of the weight's shape (True = kept)."""

    kind = "mask"

    _factor: torch.Tensor | None = None  # the mask as the weight's dtype (not state)
    _factor_of: tuple[Any, ...] = ()  # (mask, its version, dtype, device) it was made from

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.factor(weight)

    def factor(self, weight: torch.Tensor) -> torch.Tensor:
        """The mask as 1.0 / 0.0 in ``weight``'s dtype, made again only when the mask
        changes: the same products as the bool mask, which torch promotes element by
        element on every forward and backward (3x the time on a LeNet-300-100 layer)."""
        key = (self.mask, self.mask._version, weight.dtype, weight.device)
        if not same_key(self._factor_of, key):
            self._factor, self._factor_of = self.mask.to(weight.dtype), key
        return self._factor

    @classmethod
    def from_spec(cls, weight: torch.Tensor, spec: dict[str, Any]) -> Mask:
        return cls(torch.ones_like(weight, dtype=torch.bool))


def same_key(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Cache keys equal (here and in cnnzip.quantize.shared): tensors by identity (the key
    holds them, so no other tensor can take their ``id``), everything else by value."""
    return len(a) == len(b) and all(
        x is y if torch.is_tensor(x) or torch.is_tensor(y) else x == y
        for x, y in zip(a, b, strict=True)
    )


@register_layout(Mask.kind)
def _mask_layout(transform: Mask) -> Layout:
    """A pruned weight is stored sparse: its kept values and their relative indices."""
    return Layout("sparse", transform.mask)


def _weight_target(name: str) -> str:
    return name if name.endswith(".weight") else f"{name}.weight"


def prunable(
    model: nn.Module,
    names: Sequence[str] | None = None,
    *,
    types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES,
) -> list[str]:
    """Dotted weight names to prune: ``names`` (``"fc1"`` or ``"fc1.weight"``) checked against
    the model, or else the weight of every module of ``types``. Biases are never pruned; a
    weight tied to an earlier name is that name's (one tensor, one mask), so it is left out."""
    layers = _layers(model, types)
    if names:
        targets = [_weight_target(n) for n in names]
        unknown = [t for t in targets if t.removesuffix(".weight") not in layers]
        if unknown:
            raise PruneError(
                f"unknown or unprunable layer(s) {', '.join(unknown)}; "
                f"prunable layers: {', '.join(layers) or 'none'}"
            )
        return distinct(model, targets)
    if not layers:
        raise PruneError(
            f"{type(model).__name__} has nothing to prune: no "
            f"{'/'.join(t.__name__ for t in types)} layer with a weight"
        )
    return distinct(model, [f"{n}.weight" for n in layers])


def _layers(model: nn.Module, types: tuple[type[nn.Module], ...]) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, types) and n]


def unprunable(model: nn.Module) -> list[tuple[str, str]]:
    """``(name, reason)`` for each weight tensor pruning leaves as it is (a raw Parameter used
    in a custom forward, an embedding...): stages list them so nothing is skipped silently."""
    kinds = "/".join(t.__name__ for t in PRUNABLE_TYPES)
    handled = [f"{n}.weight" for n in _layers(model, PRUNABLE_TYPES)]
    return skipped_weights(model, handled, f"not the weight of a {kinds} layer")


def get_mask(model: nn.Module, target: str) -> Mask | None:
    """The Mask on ``target``, or None when it has none."""
    return next((t for t in transforms_of(model).get(target, []) if isinstance(t, Mask)), None)


@torch.no_grad()
def set_mask(model: nn.Module, target: str, keep: torch.Tensor) -> None:
    """Prune ``target`` to ``keep`` (bool, the weight's shape), adding a Mask when it has none;
    the pruned entries of the original tensor are zeroed at once."""
    weight = original_tensor(model, target)
    if keep.shape != weight.shape:
        raise PruneError(f"mask shape {tuple(keep.shape)} != {target} shape {tuple(weight.shape)}")
    mask = get_mask(model, target)
    if mask is None:
        add_transform(model, target, Mask(keep.to(weight.device)))
    else:
        mask.mask.copy_(keep)
    original_tensor(model, target).mul_(keep.to(weight.device))


def apply_masks(model: nn.Module, targets: Iterable[str]) -> None:
    """Give each target an all-ones Mask (unless it has one), e.g. before a training run
    that prunes as it goes, so the optimizer sees the final parameters from the start."""
    for target in targets:
        if get_mask(model, target) is None:
            add_transform(model, target, Mask(torch.ones_like(original_tensor(model, target))))


@torch.no_grad()
def enforce_masks(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Zero every masked entry of the original tensors and of their optimizer state (a tied
    tensor once)."""
    aliases = ties(model)
    for target, ts in transforms_of(model).items():
        masks = [t.mask for t in ts if isinstance(t, Mask)]
        if not masks or target in aliases:
            continue
        weight = original_tensor(model, target)
        state = optimizer.state.get(weight, {}) if optimizer is not None else {}
        tensors = [weight] + [v for v in state.values() if torch.is_tensor(v)]
        for mask in masks:
            for t in tensors:
                if t.shape == mask.shape:  # skips Adam's scalar step counter
                    t.mul_(mask)


# Adam-family state whose square root divides the update: torch's sqrt takes 5x as long on
# a zero as on a normal float (980 vs 188 us on a 300x784 tensor, 1 thread), and a
# 90%-pruned layer's second moment is 90% zeros
_ROOTED_STATE = ("exp_avg_sq", "max_exp_avg_sq")
_ROOTED_FILL = 1.0  # what MaskKeeper holds there instead of 0.0 (any positive normal float)


def _watched(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, ...]:
    """Every mask buffer and its in-place version, and how many parameters the optimizer
    holds state for: changes when any mask does and when the optimizer makes its state."""
    masks = (x for m in model.modules() if isinstance(m, Mask) for x in (m.mask, m.mask._version))
    return (*masks, len(optimizer.state))


@torch.no_grad()
def _fill_rooted(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Put ``_ROOTED_FILL`` in the pruned entries of each masked weight's ``_ROOTED_STATE``
    (zero there, after ``enforce_masks``); ``(state tensor, pruned entries)`` for each."""
    filled = []
    aliases = ties(model)
    for target, ts in transforms_of(model).items():
        masks = [t.mask for t in ts if isinstance(t, Mask)]
        state = optimizer.state.get(original_tensor(model, target), {})
        if not masks or target in aliases or not state:
            continue
        dead = ~functools.reduce(torch.logical_and, masks)  # the weight's shape
        for key in _ROOTED_STATE:
            tensor = state.get(key)
            if torch.is_tensor(tensor) and tensor.shape == dead.shape:
                filled.append((tensor.masked_fill_(dead, _ROOTED_FILL), dead))
    return filled


class MaskKeeper(Callback):
    """Keeps pruned weights at exactly zero through retraining (see the module docstring).

    The weights and optimizer state are zeroed at each epoch start and after each step
    in which a mask changed (set by a pruning schedule, or replaced) or the optimizer
    made its state. Between changes nothing is left to do: a pruned entry's gradient
    is exactly zero (``original * mask``), and from zero weight and zero state Adam,
    SGD (momentum, weight decay) and their kin step it by exactly zero, so the
    per-step multiply of the weights and both moments (a third of a LeNet-300-100
    step) would change no bit.

    One exception, for speed: Adam's second moment (``exp_avg_sq``, and amsgrad's
    maximum) holds ``_ROOTED_FILL`` instead of zero at pruned entries, since torch's
    sqrt is 5x slower on zeros (a pruned LeNet-300-100 step took 1.3x a plain one for
    it). The update there is ``exp_avg / (sqrt(v) + eps)`` with ``exp_avg`` exactly
    zero, so it is the same signed zero whatever ``v`` is: the weights and first
    moments are bit for bit the zero-state ones, and the second moments too at every
    kept entry. Before each enforcement the fill is put back to zero, so an entry a
    new mask keeps again starts from the zero state, as it would have.
    """

    _key: tuple[Any, ...] | None = None  # _watched when last enforced
    _filled: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()  # (state tensor, filled entries)

    @torch.no_grad()
    def _enforce(self, state: TrainState) -> None:
        for tensor, dead in self._filled:  # the true state first: zero where pruned
            tensor.masked_fill_(dead, 0.0)
        enforce_masks(state.model, state.optimizer)
        self._filled = _fill_rooted(state.model, state.optimizer)
        self._key = _watched(state.model, state.optimizer)

    def on_epoch_start(self, state: TrainState) -> None:
        self._enforce(state)

    def on_step_end(self, state: TrainState) -> None:
        if self._key is None or not same_key(_watched(state.model, state.optimizer), self._key):
            self._enforce(state)


def remove_masks(model: nn.Module) -> None:
    """Make the masks permanent: each masked weight becomes a plain Parameter holding
    ``original * mask`` (any other transform stacked on the same weight is applied too);
    tied weights stay one Parameter."""
    masked = [t for t, ts in transforms_of(model).items() if any(isinstance(x, Mask) for x in ts)]
    remove_transforms(model, masked)
