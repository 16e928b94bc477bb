"""``profile(model, input_shape)``: count a model's cost from one traced forward.

How: forward hooks on the model's leaf modules give each layer's inputs and
outputs, from which its counter (``counters.py``) computes MACs and ops. A
``TorchFunctionMode`` sees the tensor ops called in ``forward`` bodies outside
any counted layer (``x + y``, ``torch.cat``, ``F.relu``), so residual additions
and concatenations are listed too, under the module whose forward called them
(``layer1.0:add``). Ops inside a counted layer, including the parametrizations
that compute its weight (masks, codebooks), are that layer's own business and
are not counted twice.

The traced forward runs on a copy of the model on the meta device (shapes
only, no arithmetic, no weights copied): VGG-16 at 224 takes ~0.1 s, plus ~1-2 s
once per process when torch first loads its meta kernels (it imports
torch._dynamo). A model whose forward needs values (``.item()``, data-dependent
branches) falls back to one real no-grad forward of a batch of one.
Parameters and weight bytes are always read from the real model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from cnnzip.errors import CnnzipError
from cnnzip.models.running import eval_mode, example_input
from cnnzip.models.slim import meta_copy
from cnnzip.profiling import latency
from cnnzip.profiling.counters import (
    Cost,
    ModuleCounter,
    first_tensor,
    functional_cost,
    module_counter,
)
from cnnzip.profiling.report import LayerProfile, ProfileReport
from cnnzip.profiling.storage import nonzero_fraction, owned_counts

__all__ = ["profile"]


def profile(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    measure_latency: bool = False,
    runs: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    batch: int = 1,
) -> ProfileReport:
    """Parameters, MACs, bytes per layer and in total, and optionally measured latency.

    ``input_shape`` is one sample's shape without the batch dimension, e.g.
    ``(3, 224, 224)`` or ``(784,)``; counts are per image. ``batch``, ``runs``,
    ``warmup`` and ``threads`` apply to the latency measurement only.
    """
    shape = tuple(int(s) for s in input_shape)
    layers = _trace(model, shape)
    owners = dict(model.named_modules())
    counts = owned_counts(model)  # a tied weight once, at its first layer; MACs stay per use
    for layer in layers:
        layer.nonzero_macs = layer.macs
        if layer.name in owners:  # a module row, not an ``owner:op`` row
            layer.params, layer.weight_bytes = counts.get(layer.name, (0, 0))
            layer.nonzero_macs = round(layer.macs * nonzero_fraction(owners[layer.name]))
    report = ProfileReport(
        input_shape=shape,
        params=sum(params for params, _ in counts.values()),
        weight_bytes=sum(stored for _, stored in counts.values()),
        layers=layers,
    )
    if measure_latency:
        report.latency = latency.measure_latency(
            model, shape, runs=runs, warmup=warmup, threads=threads, batch=batch
        )
    return report


def _trace(model: nn.Module, shape: tuple[int, ...]) -> list[LayerProfile]:
    """Per-layer rows from one forward of a batch of one: on meta if the model allows."""
    x = example_input(model, (1, *shape))
    try:
        return _Tracer(meta_copy(model)).run(x.to("meta"))
    except Exception:  # a forward that needs values, or a module that deepcopy refuses
        pass
    try:
        return _Tracer(model).run(x)
    except (RuntimeError, ValueError) as exc:  # what torch raises for mismatched shapes
        raise CnnzipError(
            f"the model's forward fails on a batch of one {shape} input: {exc} "
            "(input_shape is one sample's shape without the batch dimension, e.g. (3, 224, 224))"
        ) from None


class _Tracer(TorchFunctionMode):
    """Hooks a model's modules, runs one forward, and collects one row per leaf module/op."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: dict[str, LayerProfile] = {}
        self.stack: list[str] = []  # names of the modules whose forward is running
        self.inside = 0  # > 0 inside a counted layer or a parametrization: not ours to count
        self.handles: list[RemovableHandle] = []

    def run(self, x: torch.Tensor) -> list[LayerProfile]:
        try:
            self._attach("", self.model)
            with eval_mode(self.model), torch.no_grad(), self:
                self.model(x)
        finally:
            for handle in self.handles:
                handle.remove()
        return list(self.rows.values())

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.inside:
            name = getattr(func, "__name__", "")
            cost = functional_cost(name, args, kwargs, out)
            if cost is not None:
                owner = self.stack[-1] if self.stack else ""
                op = cost.kind if name.startswith("__") else name.rstrip("_")  # __iadd__ -> add
                self._record(f"{owner}:{op}", cost, out)
        return out

    def _attach(self, name: str, module: nn.Module) -> None:
        """Hook ``module``: counted layer, uncounted leaf, or container (then its children)."""
        counter = module_counter(module)
        if parametrize.is_parametrized(module):
            for plist in module.parametrizations.values():
                self._hook(plist, self._enter, self._leave)
        children = [
            (f"{name}.{n}" if name else n, child)
            for n, child in module.named_children()
            if not (n == "parametrizations" and parametrize.is_parametrized(module))
        ]
        if counter is not None:
            self._hook(module, self._enter, self._count(name, counter))
        elif not children:
            self._hook(module, self._push(name), self._count(name, None))
        else:
            self._hook(module, self._push(name), self._pop)
            for child_name, child in children:
                self._attach(child_name, child)

    def _hook(self, module: nn.Module, pre: Callable[..., None], post: Callable[..., None]) -> None:
        self.handles.append(module.register_forward_pre_hook(pre, prepend=True))
        self.handles.append(module.register_forward_hook(post, always_call=True))

    def _enter(self, *_: Any) -> None:
        self.inside += 1

    def _leave(self, *_: Any) -> None:
        self.inside -= 1

    def _push(self, name: str) -> Callable[..., None]:
        return lambda *_: self.stack.append(name)

    def _pop(self, *_: Any) -> None:
        self.stack.pop()

    def _count(self, name: str, counter: ModuleCounter | None) -> Callable[..., None]:
        """Post-hook: record the call's cost; ``counter`` None marks an uncounted leaf."""

        def hook(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            if counter is None:
                self.stack.pop()
                self._record(name, Cost(type(module).__name__), out, counted=False)
            else:
                self.inside -= 1
                self._record(name, counter(module, inputs, out), out)

        return hook

    def _record(self, name: str, cost: Cost, out: Any, *, counted: bool = True) -> None:
        row = self.rows.setdefault(name, LayerProfile(name=name, kind=cost.kind, counted=counted))
        row.macs += cost.macs
        row.ops += cost.ops
        row.calls += 1
        tensor = first_tensor(out)
        if tensor is not None:
            row.activation_bytes += tensor.numel() * tensor.element_size()
            row.output_shape = tuple(tensor.shape)
