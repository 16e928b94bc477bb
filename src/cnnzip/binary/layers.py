"""Binary layers: BWN weights, XNOR-Net activations, the straight-through estimator.

Conventions shared with the kernels (csrc/xnor.h): a value binarizes to -1
when it is < 0, else to +1; binary convolutions pad their +-1 input with +1
(zero is not a +-1 value); XNOR-Net's K map is mean |x| over channels,
box-filtered over each window with zero padding.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.binary.scales import filter_alpha
from cnnzip.codec.layouts import Layout, register_layout
from cnnzip.profiling.counters import Cost, conv_kind, register_counter
from cnnzip.transforms import WeightTransform, register_transform

__all__ = ["BWN", "BinActiv", "XnorConv2d", "XnorLinear", "sign_ste"]


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """+-1 forward; straight-through backward, gradient 1 where |x| <= 1, else 0."""
    clipped = x.clamp(-1.0, 1.0)  # its gradient is exactly the STE's
    return clipped + (torch.where(x < 0, -1.0, 1.0).to(x.dtype) - clipped).detach()


@register_transform
class BWN(WeightTransform):
    """Binary-weight network: W -> alpha * sign(W), alpha = mean |W| per output filter.

    The real-valued W stays the parameter the optimizer updates; gradients reach it
    through the STE and through alpha.
    """

    kind = "bwn"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return filter_alpha(weight, keepdim=True) * sign_ste(weight)

    @classmethod
    def from_spec(cls, weight: torch.Tensor, spec: dict[str, Any]) -> BWN:
        return cls()


@register_layout(BWN.kind)
def _bwn_layout(transform: BWN) -> Layout:
    """A BWN weight is stored as its sign bits and alpha per output channel."""
    return Layout("binary")


class BinActiv(nn.Module):
    """Binarize activations to +-1 with the straight-through estimator."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x)


class XnorConv2d(nn.Conv2d):
    """XNOR-Net conv block B-A-C: BatchNorm -> BinActiv -> conv, times K (switchable).

    The batch norm centres the input so that its sign carries information (a
    ReLU's output would binarize to all +1). The weight gets its BWN transform
    from ``cnnzip.binary.conversion``; this module binarizes the input.
    """

    def __init__(self, *args: Any, scale_k: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros":
            raise ValueError("XnorConv2d supports groups=1, dilation=1, zero padding_mode")
        if not isinstance(self.padding, tuple) or len(set(self.padding)) != 1:
            raise ValueError(f"XnorConv2d needs one integer padding, got {self.padding}")
        self.scale_k = scale_k
        self.norm = nn.BatchNorm2d(self.in_channels)
        self.binactiv = BinActiv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (N, C, H, W)
        p = self.padding[0]
        xb = F.pad(self.binactiv(x), (p, p, p, p), value=1.0)  # +1 padding, as the kernels
        y = F.conv2d(xb, self.weight, None, self.stride)
        if self.scale_k:
            a = F.pad(x.abs().mean(1, keepdim=True), (p, p, p, p))  # (N, 1, H+2p, W+2p)
            y = y * F.avg_pool2d(a, self.kernel_size, self.stride)  # K: (N, 1, Ho, Wo)
        return y if self.bias is None else y + self.bias[:, None, None]


class XnorLinear(nn.Linear):
    """XNOR fully connected block: BatchNorm1d -> BinActiv -> linear, times K = mean |x|."""

    def __init__(self, *args: Any, scale_k: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale_k = scale_k
        self.norm = nn.BatchNorm1d(self.in_features)
        self.binactiv = BinActiv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (N, F)
        y = F.linear(self.binactiv(x), self.weight)
        if self.scale_k:
            y = y * x.abs().mean(1, keepdim=True)
        return y if self.bias is None else y + self.bias


# --- what cnnzip.profile counts for these layers ---------------------------------------


@register_counter(BinActiv)
def _count_binactiv(m: nn.Module, inputs: tuple[Any, ...], out: torch.Tensor) -> Cost:
    """One sign per element, no MACs."""
    return Cost("act", ops=out.numel())


@register_counter(XnorConv2d, XnorLinear)
def _count_xnor(m: nn.Module, inputs: tuple[Any, ...], out: torch.Tensor) -> Cost:
    """The conv/fc MACs (on +-1 inputs and weights: XNOR-popcounts in the kernels), plus one
    op per input element for the batch norm and one for the sign, and with K one per input
    element for mean |x| and one per output element for the scaling."""
    if isinstance(m, XnorConv2d):
        kind = conv_kind(m.in_channels, m.groups, m.kernel_size)
        fan_in = m.in_channels * math.prod(m.kernel_size)
    else:
        kind, fan_in = "fc", m.in_features
    x = inputs[0].numel()
    ops = 2 * x + (x + out.numel() if m.scale_k else 0)
    return Cost(kind, macs=out.numel() * fan_in, ops=ops)
