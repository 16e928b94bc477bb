"""Turn a float model into a BWN or XNOR-Net model, and build one back from run.json.

``convert`` binarizes every conv and linear layer except the ones kept in full
precision: by default the first and the last in definition order (the
XNOR-Net paper's choice), or the layers named in ``keep``. BWN only
parametrizes weights; XNOR also swaps each layer for its B-A-C block
(BatchNorm -> BinActiv -> conv, see layers.py).

What cannot be binarized stays float and is listed by ``skipped_layers``
(``convert`` logs one line each): a conv XNOR blocks do not cover (grouped,
depthwise, dilated, uneven padding), a weight already transformed (pruned,
shared, binarized: BWN would turn its zeros into +alpha), a layer whose weight is tied to one that
stays float (one tensor cannot be both), and any other weight tensor (a raw
Parameter used in a custom forward). Tied layers that are binarized stay tied:
one BWN transform on the one tensor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch.nn as nn
from torch.nn.utils import parametrize

from cnnzip.binary.layers import BWN, XnorConv2d, XnorLinear
from cnnzip.errors import ModelError
from cnnzip.models.registry import get_model, get_model_builder, register_model
from cnnzip.transforms import add_transform, distinct, skipped_weights, swap_module, ties

__all__ = ["MODES", "binarized", "binary_layers", "convert", "skipped_layers"]

MODES = ("bwn", "xnor")


def _kept(names: list[str], keep: list[str] | None) -> list[str]:
    """The layers asked to stay float: ``keep``, by default the first and the last."""
    kept = [names[0], names[-1]] if keep is None and names else list(keep or [])
    unknown = sorted(set(kept) - set(names))
    if unknown:
        raise ModelError(f"keep names no conv/linear layer: {unknown}; layers: {names}")
    return kept


def _unfit(layer: nn.Module, mode: str) -> str | None:
    """Why ``mode`` cannot binarize ``layer``, or None when it can."""
    if parametrize.is_parametrized(layer, "weight"):
        return "its weight already carries transforms (a mask, a codebook, BWN)"
    if mode != "xnor" or not isinstance(layer, nn.Conv2d):
        return None
    padding = layer.padding
    if (
        layer.groups != 1
        or layer.dilation != (1, 1)
        or layer.padding_mode != "zeros"
        or isinstance(padding, str)
        or len(set(padding)) != 1
    ):
        return (
            f"XNOR blocks need groups=1, dilation 1 and one zero padding; this conv has "
            f"groups={layer.groups}, dilation={layer.dilation}, padding={padding!r}"
        )
    return None


def _plan(
    model: nn.Module, keep: list[str] | None, mode: str
) -> tuple[list[str], list[tuple[str, str]]]:
    """(layers to binarize, (name, reason) of those left float that ``keep`` did not ask for)."""
    modules = dict(model.named_modules())
    names = [n for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear)]
    kept = _kept(names, keep)
    skipped = [(n, why) for n in names if n not in kept and (why := _unfit(modules[n], mode))]
    first = ties(model)
    tensor = {n: first.get(f"{n}.weight", f"{n}.weight") for n in names}  # one name per tensor
    floating: dict[str, str] = {}  # tensor -> the first layer that keeps it float
    for n in [*kept, *(n for n, _ in skipped)]:
        floating.setdefault(tensor[n], n)
    listed = set(kept) | {n for n, _ in skipped}
    skipped += [
        (n, f"its weight is tied to {floating[tensor[n]]}, which stays float")
        for n in names
        if n not in listed and tensor[n] in floating
    ]
    handled = [f"{n}.weight" for n in names]
    other = skipped_weights(model, handled, "not the weight of a Conv2d/Linear layer")
    listed |= {n for n, _ in skipped}
    return [n for n in names if n not in listed], skipped + other


def binary_layers(model: nn.Module, keep: list[str] | None = None, mode: str = "bwn") -> list[str]:
    """Names of the conv and linear layers that ``convert`` binarizes."""
    return _plan(model, keep, mode)[0]


def skipped_layers(
    model: nn.Module, keep: list[str] | None = None, mode: str = "bwn"
) -> list[tuple[str, str]]:
    """``(name, reason)`` for each layer or weight ``convert`` leaves float that ``keep``
    did not ask for (see the module docstring)."""
    return _plan(model, keep, mode)[1]


def _xnor_twin(layer: nn.Module, scale_k: bool) -> nn.Module:
    """The XNOR block with the same shape and weights as a float conv or linear layer."""
    if isinstance(layer, nn.Conv2d):
        twin: nn.Module = XnorConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            bias=layer.bias is not None,
            scale_k=scale_k,
        )
    else:
        twin = XnorLinear(
            layer.in_features, layer.out_features, bias=layer.bias is not None, scale_k=scale_k
        )
    twin.weight, twin.bias = layer.weight, layer.bias  # the same Parameters: ties stay
    return twin.to(layer.weight.device)


def convert(
    model: nn.Module,
    mode: str = "bwn",
    *,
    keep: list[str] | None = None,
    scale_k: bool = True,
    transforms: bool = True,
    log: Callable[[str], None] | None = print,
) -> nn.Module:
    """Binarize ``model`` in place and return it; ``log`` (None: silent) gets one line for
    each layer left float that ``keep`` did not ask for (``skipped_layers`` lists them).

    ``transforms=False`` swaps the XNOR blocks in but leaves the weights float: what
    ``load_run`` needs before it re-creates the BWN transforms listed in run.json.
    """
    if mode not in MODES:
        raise ModelError(f"binary mode must be one of {MODES}, got {mode!r}")
    layers, skipped = _plan(model, keep, mode)
    if mode == "xnor":  # all twins first: a tied pair's twins then share the plain Parameter
        for name in layers:
            swap_module(model, name, _xnor_twin(model.get_submodule(name), scale_k))
    if transforms:
        for target in distinct(model, [f"{n}.weight" for n in layers]):
            add_transform(model, target, BWN())  # ties the other names of the same tensor
    for name, reason in skipped if log is not None else []:
        log(f"{mode}: {name} stays float: {reason}")
    return model


@register_model()
def binarized(
    *,
    base: str = "lenet5",
    base_kwargs: dict[str, Any] | None = None,
    mode: str = "xnor",
    keep: list[str] | None = None,
    scale_k: bool = True,
    num_classes: int | None = None,
    in_chans: int | None = None,
    img_size: int | None = None,
) -> nn.Module:
    """Zoo model ``base`` with its layers binarized, as ``cnnzip binarize`` saves it.

    ``num_classes``, ``in_chans`` and ``img_size`` (set from the data by the CLI) reach
    the base builder where it takes them. The BWN transforms come back from run.json.
    """
    implied = {"num_classes": num_classes, "in_chans": in_chans, "img_size": img_size}
    accepted = inspect.signature(get_model_builder(base)).parameters
    kwargs = {**(base_kwargs or {}), **{k: v for k, v in implied.items() if v and k in accepted}}
    model = get_model(base, **kwargs)
    return convert(model, mode, keep=keep, scale_k=scale_k, transforms=False, log=None)


@register_model()
def binary_resnet18(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    scale_k: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """ResNet-18 with XNOR blocks (the ``binarized`` builder on ``resnet18``): every conv
    binary but the stem, the fc float, the float shortcut of every basic block.

    A block's first conv feeds its second directly, so ``compile_binary`` passes packed
    bits between them; without K by default (Bi-Real Net and daBNN drop it too): K needs
    the float input, which would keep every layer float in between. ``kwargs`` reach
    ``resnet18`` (``width_mult``, ``small_input``).
    """
    implied = {"num_classes": num_classes, "in_chans": in_chans, "img_size": img_size}
    return binarized(base="resnet18", base_kwargs={**kwargs, **implied}, scale_k=scale_k)
