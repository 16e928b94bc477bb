"""A binarized layer as it is stored: 1 bit per weight plus float32 per-channel terms.

The bits are the weight signs (set = -1) in (cout, cin, kh, kw) order, packed
densely (little-endian bit order), so a layer costs cout*cin*kh*kw/8 bytes
plus, in float32: alpha and the bias per output channel, and for XNOR blocks
the input batch norm folded to a scale and a shift per input channel. That is
exactly what the kernels need (cnnzip.runtime), nothing more.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from cnnzip.binary.layers import XnorConv2d, XnorLinear

__all__ = ["decode_signs", "encode_layer", "layer_bytes", "real_weight"]


def real_weight(layer: nn.Module) -> torch.Tensor:
    """The real-valued weight under the BWN transform (its signs and mean |W| are stored)."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original.detach()
    return layer.weight.detach()


def _as_conv(w: torch.Tensor) -> torch.Tensor:
    return w if w.dim() == 4 else w[:, :, None, None]  # linear (out, in) -> (out, in, 1, 1)


def encode_layer(layer: nn.Module) -> dict[str, np.ndarray]:
    """The arrays that store one binarized conv or linear layer."""
    w = _as_conv(real_weight(layer))  # (cout, cin, kh, kw)
    cout = w.shape[0]
    out = {
        "bits": np.packbits((w < 0).flatten().numpy(), bitorder="little"),
        "shape": np.array(w.shape, dtype=np.int64),
        "alpha": w.abs().mean(dim=(1, 2, 3)).float().numpy(),
        "bias": (layer.bias.detach() if layer.bias is not None else torch.zeros(cout)).numpy(),
    }
    if isinstance(layer, XnorConv2d | XnorLinear):
        norm = layer.norm
        scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
        out["in_scale"] = scale.numpy()
        out["in_shift"] = (norm.bias.detach() - norm.running_mean * scale).numpy()
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def decode_signs(bits: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """+-1 float32 weights of ``shape`` from the stored bits."""
    n = int(np.prod(shape))
    flat = np.unpackbits(bits, count=n, bitorder="little").astype(np.float32)
    return torch.from_numpy(1.0 - 2.0 * flat).reshape(shape)


def layer_bytes(layer: nn.Module) -> dict[str, int]:
    """Bytes of the layer stored binary vs its float32 weight and bias."""
    w = real_weight(layer)
    dense = 4 * (w.numel() + (layer.bias.numel() if layer.bias is not None else 0))
    stored = sum(a.nbytes for k, a in encode_layer(layer).items() if k != "shape")
    return {"float32": dense, "binary": stored}
