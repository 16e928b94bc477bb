"""Which encoding a transformed tensor takes: each weight-transform kind says, the codec asks.

The codec knows sections, streams and encodings ("dense", "sparse", "shared",
"binary", "alias"), not the transforms: each kind registers here, at its own
import, ``layout(transform) -> Layout``, the format-level view of what it
computes (cnnzip.prune.masks: sparse; cnnzip.quantize.shared: shared;
cnnzip.binary.layers: binary). A tensor whose transforms register nothing is
stored dense. Where several transforms sit on one tensor, the encoding first in
``ENCODINGS`` wins (a codebook carries the mask of the pruning under it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ENCODINGS", "Layout", "layout_of", "register_layout"]

ENCODINGS = ("binary", "shared", "sparse")


@dataclass(frozen=True)
class Layout:
    """How one tensor is stored: its encoding and the tensors that encoding reads."""

    encoding: str  # one of ENCODINGS
    mask: torch.Tensor | None = None  # kept positions (sparse, shared); None: every weight
    codebook: torch.Tensor | None = None  # shared: the cluster centres
    index: torch.Tensor | None = None  # shared: the cluster of every weight


Planner = Callable[[Any], Layout]
_PLANNERS: dict[str, Planner] = {}


def register_layout(kind: str) -> Callable[[Planner], Planner]:
    """Decorator: ``fn(transform) -> Layout`` stores every transform of ``kind``."""

    def wrap(fn: Planner) -> Planner:
        _PLANNERS[kind] = fn
        return fn

    return wrap


def layout_of(transforms: Iterable[Any]) -> Layout | None:
    """The layout of a tensor under ``transforms`` (None: dense), by ``ENCODINGS`` order."""
    layouts = [_PLANNERS[t.kind](t) for t in transforms if t.kind in _PLANNERS]
    return min(layouts, key=lambda layout: ENCODINGS.index(layout.encoding), default=None)
