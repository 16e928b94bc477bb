"""What one layer or one tensor operation costs: multiply-accumulates and other ops.

Conventions (the survey's tables count only conv and fc multiply-accumulates,
so ``macs`` stays comparable to them):

- ``macs``: multiply-accumulates of convolutions, fully connected layers and
  matrix products. A conv output element costs ``C_in/groups * kh * kw`` MACs;
  a linear output element ``in_features``. Biases are not counted.
- ``ops``: everything else, reported apart. Element-wise layers (norms,
  activations, additions, multiplications) cost one op per output element
  (batch norm folds into one scale-and-shift at inference); pooling costs one
  op per window element per output element; global/adaptive pooling one op
  per input element. Dropout, flatten, identity, shuffle and concatenation
  cost nothing (concatenation still shows its activation bytes).

Module counters are looked up by the module's class and its bases, so a
subclass of ``nn.Conv2d`` (a binary conv, a parametrized conv) counts as a
conv. New module types register with :func:`register_counter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from cnnzip.models.slim import Removed

__all__ = [
    "Cost",
    "conv_kind",
    "functional_cost",
    "module_counter",
    "register_counter",
]


@dataclass(frozen=True)
class Cost:
    """The cost of one call: its kind (see ``conv_kind``), MACs and other ops."""

    kind: str
    macs: int = 0
    ops: int = 0


ModuleCounter = Callable[[nn.Module, tuple[Any, ...], Any], Cost]
_MODULE_COUNTERS: dict[type[nn.Module], ModuleCounter] = {}


def register_counter(*types: type[nn.Module]) -> Callable[[ModuleCounter], ModuleCounter]:
    """Decorator: ``fn(module, inputs, output) -> Cost`` counts modules of ``types``."""

    def wrap(fn: ModuleCounter) -> ModuleCounter:
        for cls in types:
            _MODULE_COUNTERS[cls] = fn
        return fn

    return wrap


def module_counter(module: nn.Module) -> ModuleCounter | None:
    """The counter of ``module``'s class or nearest registered base; None if it has none."""
    for cls in type(module).__mro__:
        if cls in _MODULE_COUNTERS:
            return _MODULE_COUNTERS[cls]
    return None


def conv_kind(in_chans: int, groups: int, kernel: Sequence[int]) -> str:
    """MobileNet Table 2 classes: ``depthwise``, ``conv1x1`` (grouped or not), or ``conv``."""
    if groups > 1 and groups == in_chans:
        return "depthwise"
    if all(k == 1 for k in kernel):
        return "conv1x1"
    return "conv"


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a module's or op's output (a tensor, or a tuple/list of them)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    return None


def _numel(value: Any) -> int:
    tensor = first_tensor(value)
    return tensor.numel() if tensor is not None else 0


def _pool_ops(kernel_size: int | Sequence[int], out: Any) -> int:
    """One op per window element per output element; an int kernel is square (cubic...)."""
    tensor = first_tensor(out)
    if tensor is None:
        return 0
    dims = tensor.dim() - 2  # (N, C, *spatial): batched, as the profiler always runs
    window = kernel_size**dims if isinstance(kernel_size, int) else math.prod(kernel_size)
    return tensor.numel() * window


# --- modules --------------------------------------------------------------------------


@register_counter(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    per_output = m.in_channels // m.groups * math.prod(m.kernel_size)
    kind = conv_kind(m.in_channels, m.groups, m.kernel_size)
    return Cost(kind, macs=_numel(out) * per_output)


@register_counter(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    # every input element is scattered into out_channels/groups * kernel outputs
    per_input = m.out_channels // m.groups * math.prod(m.kernel_size)
    return Cost("conv", macs=_numel(inputs) * per_input)


@register_counter(nn.Linear)
def _linear(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("fc", macs=_numel(out) * m.in_features)


@register_counter(
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LocalResponseNorm,
)
def _norm(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("norm", ops=_numel(out))


@register_counter(
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softmax,
    nn.LogSoftmax,
)
def _activation(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("act", ops=_numel(out))


@register_counter(
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d
)
def _pool(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("pool", ops=_pool_ops(m.kernel_size, out))


@register_counter(
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
def _adaptive_pool(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("pool", ops=_numel(inputs))


@register_counter(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
def _dropout(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("dropout")


@register_counter(nn.Identity, nn.Flatten, nn.Unflatten, nn.ChannelShuffle)
def _reshape(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("reshape")


@register_counter(Removed)
def _removed(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> Cost:
    return Cost("removed")  # a removed branch's layer: a constant or nothing, a view


# --- tensor operations called in a forward (torch.add, torch.cat, F.relu, x + y) ------

# op name (as torch reports it to a TorchFunctionMode) -> the kind it is listed under
_ELEMENTWISE = {
    **{n: "add" for n in ("add", "add_", "__add__", "__radd__", "__iadd__")},
    **{n: "sub" for n in ("sub", "sub_", "__sub__", "__rsub__", "__isub__")},
    **{n: "mul" for n in ("mul", "mul_", "__mul__", "__rmul__", "__imul__")},
    **{n: "div" for n in ("div", "div_", "__truediv__", "__rtruediv__", "__itruediv__")},
    **{
        n: "act"
        for n in (
            "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "gelu", "silu",
            "sigmoid", "sigmoid_", "tanh", "tanh_", "hardswish", "hardsigmoid", "softmax",
            "log_softmax",
        )
    },
    **{n: "norm" for n in ("batch_norm", "layer_norm", "group_norm", "instance_norm")},
}  # fmt: skip
_CONCAT = {"cat", "concat", "concatenate", "stack"}
_POOL = {f"{p}_pool{d}d" for p in ("avg", "max") for d in (1, 2, 3)}
# global pooling written as x.mean((2, 3)) costs what adaptive pooling does
_ADAPTIVE_POOL = {f"adaptive_{p}_pool{d}d" for p in ("avg", "max") for d in (1, 2, 3)} | {"mean"}
_CONV = {"conv1d", "conv2d", "conv3d"}
_MATMUL = {"matmul", "mm", "bmm", "__matmul__"}


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def functional_cost(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> Cost | None:
    """The cost of tensor op ``name`` seen outside any counted module; None for ops not tracked.

    Shape-only ops (view, reshape, transpose, flatten) are free and not tracked.
    """
    if name in _ELEMENTWISE:
        return Cost(_ELEMENTWISE[name], ops=_numel(out))
    if name in _CONCAT:
        return Cost("cat")
    if name in _POOL:
        return Cost("pool", ops=_pool_ops(_arg(args, kwargs, 1, "kernel_size", 1), out))
    if name in _ADAPTIVE_POOL:
        return Cost("pool", ops=_numel(args[:1]))
    if name in _CONV:
        weight, groups = args[1], _arg(args, kwargs, 6, "groups", 1)
        kind = conv_kind(weight.shape[1] * groups, groups, weight.shape[2:])
        return Cost(kind, macs=_numel(out) * math.prod(weight.shape[1:]))
    if name == "linear":
        return Cost("fc", macs=_numel(out) * args[1].shape[1])
    if name in _MATMUL:
        return Cost("matmul", macs=_numel(out) * args[0].shape[-1])
    return None
