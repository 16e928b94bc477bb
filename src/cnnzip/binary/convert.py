"""Turn a float model into a BWN or XNOR-Net model, and build one back from run.json.

``convert`` binarizes every conv and linear layer except the ones kept in full
precision: by default the first and the last in definition order (the
XNOR-Net paper's choice), or the layers named in ``keep``. BWN only
parametrizes weights; XNOR also swaps each layer for its B-A-C block
(BatchNorm -> BinActiv -> conv, see layers.py).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch.nn as nn

from cnnzip.binary.layers import BWN, XnorConv2d, XnorLinear
from cnnzip.errors import ModelError
from cnnzip.models.registry import get_model, get_model_builder, register_model
from cnnzip.transforms import add_transform

__all__ = ["MODES", "binarized", "binary_layers", "convert"]

MODES = ("bwn", "xnor")


def binary_layers(model: nn.Module, keep: list[str] | None = None) -> list[str]:
    """Names of the conv and linear layers that ``convert`` binarizes."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    keep = [names[0], names[-1]] if keep is None and names else list(keep or [])
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise ModelError(f"keep names no conv/linear layer: {unknown}; layers: {names}")
    return [n for n in names if n not in keep]


def _xnor_twin(layer: nn.Module, scale_k: bool) -> nn.Module:
    """The XNOR block with the same shape and weights as a float conv or linear layer."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or layer.dilation != (1, 1) or isinstance(layer.padding, str):
            raise ModelError(f"cannot binarize {layer}: groups, dilation or string padding")
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
    twin.load_state_dict(layer.state_dict(), strict=False)  # weight, bias; the norm is new
    return twin


def convert(
    model: nn.Module,
    mode: str = "bwn",
    *,
    keep: list[str] | None = None,
    scale_k: bool = True,
    transforms: bool = True,
) -> nn.Module:
    """Binarize ``model`` in place and return it.

    ``transforms=False`` swaps the XNOR blocks in but leaves the weights float: what
    ``load_run`` needs before it re-creates the BWN transforms listed in run.json.
    """
    if mode not in MODES:
        raise ModelError(f"binary mode must be one of {MODES}, got {mode!r}")
    for name in binary_layers(model, keep):
        if mode == "xnor":
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, _xnor_twin(getattr(parent, child), scale_k))
        if transforms:
            add_transform(model, f"{name}.weight", BWN())
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
    return convert(model, mode, keep=keep, scale_k=scale_k, transforms=False)
