"""Coupled channel groups of a traced model: the channels that must be removed together.

The model is traced with torch.fx and walked once in graph order. Every tensor's channel
dimension (dim 1) is described as segments ``(group, channels, repeat)``: a conv or
Linear starts a new group for its outputs; BatchNorm, activations, pooling and depthwise
convs pass their input's segments through (joining the group as members); ``torch.cat``
on dim 1 concatenates segments (a consumer's input offsets then reach several
producers); an elementwise sum or product ties its operands' groups into one (residual
connections), splitting a group where the operands are concatenated differently;
flatten multiplies ``repeat`` by the spatial size (Linear-after-Flatten input features).
A channel shuffle (view to (N, g, C/g, H, W), transpose(1, 2), back) permutes a group's
positions; grouped convs record their groups, and ``partition`` then cuts such a group
by whole shuffle columns, as many from every conv group, or refuses it. Whatever the
walk does not understand (a custom op, a reshape that mixes channels or writes a channel
width as a number, a module with parameters or buffers called twice) marks every group it
touches unprunable with a reason naming the node, and so does reaching the model's input
or output, or a parameter that another module or the forward itself also holds (tied
weights): never silently wrong. Tensor operands are read from keyword arguments too
(``torch.add(a, other=b)``, ``torch.cat(tensors=[...])``).
"""

from __future__ import annotations

import io
import math
import operator
from collections import Counter
from contextlib import redirect_stderr
from dataclasses import dataclass, field, replace
from functools import reduce
from itertools import accumulate, chain
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp
from torch.overrides import TorchFunctionMode

from cnnzip.errors import one_line
from cnnzip.models.running import eval_mode, example_input
from cnnzip.models.slim import Removed, valid_input_shape
from cnnzip.prune.masks import PruneError

__all__ = ["ChannelGroup", "Member", "channel_groups", "trace"]


@dataclass(frozen=True)
class Member:
    """Where a group's channels sit in one module: ``length`` channels from ``offset`` on
    its ``axis`` ("out": a layer's filters or a BatchNorm's features; "in": a consumer's
    input channels). A Linear after Flatten sees each channel as ``repeat`` consecutive
    input features (H*W), its offset and length counted in channels times ``repeat``."""

    module: str
    axis: str
    offset: int
    length: int
    repeat: int = 1
    index: tuple[int, ...] | None = None  # channel i at position offset + index[i] (shuffled)
    block: int = 0  # a grouped conv's channels per group on this axis (0: not grouped)
    groups: int = 1  # and its number of groups
    first: int = 0  # the group channel of its first one (a linked group's parts follow on)

    def channels(self) -> range:
        """The group's channels this member holds: all of them, or one part's of a link."""
        return range(self.first, self.first + self.length // self.repeat)

    def positions(self) -> list[int]:
        """The module position (first feature) of each of ``channels()``, in that order."""
        order = self.index if self.index is not None else range(self.length // self.repeat)
        return [self.offset + i * self.repeat for i in order]

    @property
    def partial(self) -> bool:
        """A grouped conv's axis that this member's channels fill only in part: the
        groups holding the rest must be cut with it (``link``)."""
        return self.block > 0 and self.length < self.block * self.groups


@dataclass(frozen=True)
class ChannelGroup:
    """``size`` channels pruned together in every member; unprunable ones say why. After a
    channel shuffle of ``shuffle`` groups, channels ``i`` with equal ``i % (size //
    shuffle)`` are kept or removed together (see ``partition``). A linked group joins
    ``parts``, groups that fill one grouped conv's input together (ShuffleNet's stage
    widths: pooled shortcut and branch concatenated): their channels one after the
    other, each member holding its part's (``Member.first``)."""

    name: str
    size: int
    members: tuple[Member, ...]
    prunable: bool
    reason: str | None
    shuffle: int = 1
    parts: tuple[str, ...] = ()
    passes: tuple[str, ...] = ()  # parameterless modules it flows through (ReLU, pooling)
    removable: bool = False  # a residual branch's inner channels: may all go (``result``)


Perm = tuple[int, ...] | None  # position p of a segment holds its group's channel perm[p]
Segment = tuple[int, int, int, Perm]  # (group id, channels, features per channel, order)

POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
POOL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
PASS_MODULES = (
    *POOL_MODULES,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
)  # fmt: skip  (each output channel is a function of the same input channel alone)
PASS_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, torch.sigmoid, torch.tanh, F.silu, F.gelu, F.dropout,
    *POOL_FUNCTIONS,
}  # fmt: skip
PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
ELEMENTWISE = {operator.add, operator.mul, operator.sub, operator.truediv, torch.add, torch.mul}
REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
SHAPE_ONLY = {"size", "dim"}  # methods reading a shape: no channels flow through them
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class _Groups:
    """Union-find over groups, with each root's members and refusal reasons."""

    parent: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    members: dict[int, list[Member]] = field(default_factory=dict)
    reasons: dict[int, list[str]] = field(default_factory=dict)
    shuffles: dict[int, set[int]] = field(default_factory=dict)
    passes: dict[int, list[str]] = field(default_factory=dict)

    def new(self, name: str, size: int, reason: str | None = None) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.names.append(name)
        self.sizes.append(size)
        self.members[gid], self.reasons[gid] = [], [reason] if reason else []
        self.shuffles[gid] = set()
        self.passes[gid] = []
        return gid

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def union(self, a: int, b: int) -> None:
        a, b = sorted((self.find(a), self.find(b)))  # the earlier group names the union
        if a != b:
            self.parent[b] = a
            self.members[a] += self.members.pop(b)
            self.reasons[a] += self.reasons.pop(b)
            self.shuffles[a] |= self.shuffles.pop(b)
            self.passes[a] += self.passes.pop(b)

    def flow(self, segments: list[Segment], module: str) -> None:
        """These segments' channels pass through ``module`` (an activation, a pooling):
        its time shrinks with them, which the latency table measures."""
        for gid, *_ in segments:
            self.passes[self.find(gid)].append(module)

    def refuse(self, segments: list[Segment], reason: str) -> None:
        for gid, *_ in segments:
            self.reasons[self.find(gid)].append(reason)

    def add(
        self, segments: list[Segment], module: str, axis: str, block: int = 0, groups: int = 1
    ) -> None:
        """``module`` holds these segments on ``axis``, one after the other (a grouped
        conv: ``groups`` groups of ``block`` channels)."""
        offset = 0
        for gid, chs, repeat, perm in segments:
            index = None if perm is None else tuple(sorted(range(chs), key=perm.__getitem__))
            member = Member(module, axis, offset, chs * repeat, repeat, index, block, groups)
            self.members[self.find(gid)].append(member)
            offset += chs * repeat


def checked_shape(input_shape: Any) -> tuple[int, ...]:
    """``input_shape`` as a tuple of 1 to 3 positive sizes (C, H, W), or one PruneError
    saying what it must be (torch would fail on it with less to go on)."""
    try:
        shape = valid_input_shape([operator.index(v) for v in input_shape])  # numpy ints too
    except TypeError:  # not a sequence of integers
        shape = None
    if shape is None:
        raise PruneError(
            f"input shape {input_shape!r:.80} must be the (C, H, W) of one input: "
            "1 to 3 positive integer sizes"
        )
    return shape


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with a removed branch's layers (``Removed``) as leaves too."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, Removed) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """``model`` traced by torch.fx (torch.nn's layers as leaves), every node's output
    shape recorded from one zero image of ``input_shape`` (C, H, W)."""
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model))
    except Exception as exc:  # fx raises anything on control flow it cannot follow
        raise PruneError(
            f"cannot trace {type(model).__name__} for structured pruning "
            f"({type(exc).__name__}: {exc}); its forward must be traceable by torch.fx "
            "(no Python branches on tensor values)"
        ) from None
    x = example_input(model, (1, *checked_shape(input_shape)))  # its device, dtype, layout
    try:
        # ShapeProp prints the traceback of a failing node before raising: the cause is
        # in the one error below instead
        with eval_mode(model), torch.no_grad(), redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(x)
    except Exception as exc:  # a wrong input shape: torch raises anything
        cause = exc.__cause__ or exc  # ShapeProp wraps the failing node's error
        raise PruneError(
            f"{type(model).__name__} does not run on one input of shape "
            f"{tuple(input_shape)} ({type(cause).__name__}: {one_line(str(cause))}); "
            "pass the (C, H, W) of its images"
        ) from None
    return gm


def _tied_parameters(gm: fx.GraphModule, modules: dict[str, nn.Module]) -> dict[str, set[str]]:
    """Per module, its parameters that something else also holds (another module, or the
    forward reading it by get_attr): cutting one holder would leave the others' shapes
    wrong, so their groups are refused."""
    owners: dict[int, list[str]] = {}
    for name, module in modules.items():
        for pname, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append(f"{name}.{pname}" if name else pname)
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            held = owners.get(id(reduce(getattr, str(node.target).split("."), gm)))
            if held is not None:
                held.append(f"the forward's {node.target}")
    tied: dict[str, set[str]] = {}
    for names in (n for n in owners.values() if len(n) > 1):
        for full in names:
            tied.setdefault(full.rpartition(".")[0], set()).add(" = ".join(names))
    return tied


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _literal_width(node: fx.Node, dim: int) -> bool:
    """Whether a view/reshape writes dim ``dim`` of its size as a number (``x.view(-1,
    400)``): right at the traced width, wrong once channels go; -1 or a size read from
    the tensor (``x.size(1)``) follows the slim width."""
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], tuple | list):
        sizes = sizes[0]
    sizes = sizes or node.kwargs.get("size", node.kwargs.get("shape", ()))
    return dim < len(sizes) and isinstance(sizes[dim], int) and sizes[dim] != -1


def _what(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return f"node {node.name!r} ({node.op} {target})"


class _Walk:
    """One pass over the graph, giving every tensor node its channel segments."""

    def __init__(self, gm: fx.GraphModule, in_place: bool = False) -> None:
        self.gm = gm
        self.groups = _Groups()
        self.segs: dict[fx.Node, list[Segment]] = {}
        self.split: dict[fx.Node, tuple[int, int, int, bool]] = {}  # shuffle: gid, g, c, swapped
        self.modules = dict(gm.named_modules(remove_duplicate=False))
        self.calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
        self.tied = _tied_parameters(gm, self.modules)
        self.summed: dict[str, tuple[fx.Node, fx.Node]] = {}  # layer -> (its sum, operand)
        self.in_place = in_place  # the forward sums in place somewhere: no branch goes

    def run(self) -> list[ChannelGroup]:
        for node in self.gm.graph.nodes:
            out = self.visit(node)
            if out is not None:
                self.segs[node] = out
        return self.result()

    def inputs(self, node: fx.Node) -> list[Segment]:
        split = [(self.split[n][0], 0, 1, None) for n in node.all_input_nodes if n in self.split]
        return [s for n in node.all_input_nodes for s in self.segs.get(n, [])] + split

    def fresh(self, node: fx.Node, name: str, reason: str | None) -> list[Segment] | None:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        return [(self.groups.new(name, shape[1], reason), shape[1], 1, None)]

    def unknown(self, node: fx.Node, why: str = "is not understood") -> list[Segment] | None:
        reason = f"{_what(node)} {why}"
        self.groups.refuse(self.inputs(node), reason)
        return self.fresh(node, node.name, reason)

    def visit(self, node: fx.Node) -> list[Segment] | None:
        if node.op == "placeholder":
            return self.fresh(node, "input", "the model's input channels")
        if node.op == "output":
            self.groups.refuse(self.inputs(node), "reaches the model's output")
            return None
        if node.op == "call_module":
            return self.module(node)
        if node.op == "call_function":
            return self.function(node)
        if node.op == "call_method":
            return self.method(node)
        return self.unknown(node)  # get_attr: a constant tensor of the model

    def module(self, node: fx.Node) -> list[Segment] | None:
        name, m = str(node.target), self.modules[str(node.target)]
        if self.calls[name] > 1 and any(True for _ in chain(m.parameters(), m.buffers())):
            return self.unknown(node, f"calls {name!r} {self.calls[name]} times")
        if m._forward_pre_hooks:  # spectral_norm: the weight is rebuilt from u, v, weight_orig
            why = "has forward pre-hooks (spectral_norm?) that rebuild its inputs or weight"
            return self.unknown(node, why)
        if isinstance(m, Removed):  # reads only its input's shape: that group may go on
            if m.width == 0:  # no channels out: a group of none, left out of the result
                return self.fresh(node, name, None)
            why = "is a removed branch's constant: slim the full-width model once, with both plans"
            return self.fresh(node, name, f"{_what(node)} {why}")
        first = self.segs.get(node.args[0]) if node.args else None
        if first is None:
            return self.unknown(node)
        if isinstance(m, nn.Conv2d | nn.Linear):
            return self.layer(node, name, m, first)
        if isinstance(m, BATCH_NORMS):
            self.groups.add(first, name, "out")
            return first
        if isinstance(m, PASS_MODULES):
            if self.calls[name] == 1:  # a module called twice carries other groups too
                self.groups.flow(first, name)
            return first
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            return self.flatten(node.args[0], first)
        return self.unknown(node)

    def layer(
        self, node: fx.Node, name: str, m: nn.Module, first: list[Segment]
    ) -> list[Segment] | None:
        """A conv or Linear: consumes its input's groups, starts one of its own (a
        depthwise conv passes its input's through)."""
        shape = _shape(node.args[0])
        if isinstance(m, nn.Linear) and (shape is None or len(shape) != 2):
            return self.unknown(node, "is a Linear on more than (N, features)")
        grouped = isinstance(m, nn.Conv2d) and m.groups > 1
        if grouped and m.groups == m.in_channels == m.out_channels:  # depthwise
            self.groups.add(first, name, "out")
            self.groups.add(first, name, "in")
            return first
        g = m.groups if grouped else 1
        found = self._sum_of(node)
        if found is not None:
            self.summed[name] = found
        self.groups.add(first, name, "in", m.in_channels // g if grouped else 0, g)
        out = self.fresh(node, name, None)
        if out is not None:
            self.groups.add(out, name, "out", m.out_channels // g if grouped else 0, g)
        return out

    def flatten(self, source: Any, segs: list[Segment]) -> list[Segment]:
        """(N, C, *spatial) -> (N, C * prod(spatial)): each channel becomes that many features."""
        shape = _shape(source) or ()
        spread = math.prod(shape[2:])
        return [(gid, chs, repeat * spread, perm) for gid, chs, repeat, perm in segs]

    def function(self, node: fx.Node) -> list[Segment] | None:
        target = node.target
        first = self.segs.get(node.args[0]) if node.args else None
        if target in PASS_FUNCTIONS and first is not None:
            return first
        if target in ELEMENTWISE:
            return self.elementwise(node)
        if target is torch.cat:
            return self.concat(node)
        if target is torch.flatten and first is not None:
            return self.flattened(node, first, 0)
        if target in REDUCE_FUNCTIONS and first is not None:
            return self.reduced(node, first)
        if target is getattr and node.args[1:] == ("shape",):
            return None  # a shape: no channels flow
        if target is operator.getitem and node.args[0] not in self.segs:
            return None  # an item of a shape
        return self.unknown(node)

    def method(self, node: fx.Node) -> list[Segment] | None:
        first = self.segs.get(node.args[0])
        if node.target in SHAPE_ONLY:
            return None
        if node.args[0] in self.split:
            return self.shuffled(node)
        if first is None:
            return self.unknown(node)
        if node.target in PASS_METHODS:
            return first
        if node.target == "flatten":
            return self.flattened(node, first, 0)
        if node.target in ("view", "reshape"):
            return self.reshaped(node, first)
        if node.target in REDUCE_METHODS:
            return self.reduced(node, first)
        return self.unknown(node)

    def reduced(self, node: fx.Node, first: list[Segment]) -> list[Segment] | None:
        """``x.mean((2, 3))`` and the like: a reduction over spatial dims only is a pooling."""
        before = _shape(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else dims
        if before is None or not dims or not all(isinstance(d, int) for d in dims):
            return self.unknown(node, "reduces over all dims or unknown ones")
        if any(d % len(before) < 2 for d in dims) or any(s[2] != 1 for s in first):
            return self.unknown(node, "reduces over the batch or channel dim")
        return first

    def flattened(self, node: fx.Node, first: list[Segment], default: int) -> list[Segment] | None:
        """``flatten(x, 1)`` (to the last dim) only: batch-flattening mixes samples."""
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", default)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        if start != 1 or end != -1:
            return self.unknown(node, "flattens other than dims 1.. (channels on)")
        return self.flatten(node.args[0], first)

    def reshaped(self, node: fx.Node, first: list[Segment]) -> list[Segment] | None:
        """``x.view(n, -1)`` is a flatten; a view keeping the shape passes; others mix."""
        before, after = _shape(node.args[0]), _shape(node)
        if before is None or after is None:
            return self.unknown(node)
        split = len(after) == len(before) + 1
        if _literal_width(node, 2 if split else 1):  # (N, g, C/g, ...): g may be literal
            return self.unknown(node, "reshapes to a hard-coded channel width")
        if after == before:
            return first
        if after == (before[0], math.prod(before[1:])):
            return self.flatten(node.args[0], first)
        one = len(first) == 1 and first[0][2] == 1 and first[0][3] is None
        if one and len(before) == 4 and after[:1] + after[3:] == before[:1] + before[2:]:
            if not _literal_width(node, 1):  # g read from the width (C // 4) changes once cut
                why = "splits channels into a group count read from the width; write it as a number"
                return self.unknown(node, why)
            self.split[node] = (first[0][0], after[1], after[2], False)  # (N, g, C/g, H, W)
            return None
        return self.unknown(node, f"reshapes {list(before)} to {list(after)}")

    def shuffled(self, node: fx.Node) -> list[Segment] | None:
        """A channel shuffle, (N, g, C/g, H, W) -> transpose(1, 2) -> (N, C, H, W): the
        output's channel c * g + j is the input's j * C/g + c."""
        gid, g, c, swapped = self.split[node.args[0]]
        args = tuple(node.args[1:])
        if node.target in PASS_METHODS:
            self.split[node] = self.split[node.args[0]]
        elif node.target == "transpose" and not swapped and args in ((1, 2), (2, 1)):
            self.split[node] = (gid, g, c, True)
        elif node.target in ("view", "reshape") and swapped and _shape(node) is not None:
            if _literal_width(node, 1):
                return self.unknown(node, "reshapes to a hard-coded channel width")
            if _shape(node)[1] == g * c and len(_shape(node)) == 4:
                self.groups.shuffles[self.groups.find(gid)].add(g)
                perm = tuple(j * c + k for k in range(c) for j in range(g))
                return [(gid, g * c, 1, perm)]
            return self.unknown(node, "reshapes a split tensor other than back to channels")
        else:
            return self.unknown(node, "uses a tensor split into channel groups")
        return None

    def elementwise(self, node: fx.Node) -> list[Segment] | None:
        """A sum or product ties channel k of every tensor operand into one group."""
        operands = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        if any(a not in self.segs for a in operands) or not operands:
            return self.unknown(node, "combines a tensor whose channels are not traced")
        if not self.align(operands):
            return self.unknown(node, "combines tensors whose channels are split differently")
        first = self.segs[operands[0]]
        for other in operands[1:]:
            for a, b in zip(first, self.segs[other], strict=True):
                self.groups.union(a[0], b[0])
        return first

    def align(self, operands: list[fx.Node]) -> bool:
        """Split groups so that every operand's segments end at the same channels (a sum
        of cat([a, b]) and one conv's output splits that conv's filters in two groups);
        False where that cannot be (shuffled or flattened channels, other widths)."""
        for _ in range(4 * sum(len(self.segs[a]) for a in operands)):  # each pass splits one
            layouts = [[s[1:] for s in self.segs[a]] for a in operands]
            if all(layout == layouts[0] for layout in layouts):
                return True
            ends = [list(accumulate(s[1] for s in self.segs[a])) for a in operands]
            if len({e[-1] for e in ends}) > 1:
                return False
            cuts = set().union(*ends) - set.intersection(*map(set, ends))
            if not cuts:  # same widths, different order or spread: a shuffle
                return False
            cut = min(cuts)
            target = next(a for a, e in zip(operands, ends, strict=True) if cut not in e)
            start = 0
            for gid, chs, repeat, perm in self.segs[target]:
                if start < cut < start + chs:
                    if repeat != 1 or perm is not None or not self.split_group(gid, cut - start):
                        return False
                    break
                start += chs
        return False

    def split_group(self, gid: int, at: int) -> bool:
        """Group ``gid`` as two: its first ``at`` channels and the rest, in every member
        and every traced tensor; refused for shuffled or reshaped groups."""
        root = self.groups.find(gid)
        members = self.groups.members[root]
        if self.groups.shuffles[root] or any(m.index is not None for m in members):
            return False
        if any(self.groups.find(v[0]) == root for v in self.split.values()):
            return False
        size = self.groups.sizes[root]
        rest = self.groups.new(f"{self.groups.names[root]}[{at}:]", size - at)
        self.groups.sizes[root] = at
        self.groups.reasons[rest] = list(self.groups.reasons[root])
        self.groups.passes[rest] = list(self.groups.passes[root])
        self.groups.members[root] = [replace(m, length=at * m.repeat) for m in members]
        self.groups.members[rest] = [
            replace(m, offset=m.offset + at * m.repeat, length=(size - at) * m.repeat)
            for m in members
        ]
        for node, segs in self.segs.items():
            self.segs[node] = [
                part
                for seg in segs
                for part in (
                    [(root, at, seg[2], None), (rest, size - at, seg[2], None)]
                    if self.groups.find(seg[0]) == root
                    else [seg]
                )
            ]
        return True

    def concat(self, node: fx.Node) -> list[Segment] | None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shape = _shape(node)
        on_channels = shape is not None and dim in (1, 1 - len(shape))
        if not on_channels or not all(t in self.segs for t in tensors):
            return self.unknown(node, "concatenates other than traced channels")
        if any(s[2] != 1 for t in tensors for s in self.segs[t]):
            return self.unknown(node, "concatenates flattened features")
        return [s for t in tensors for s in self.segs[t]]

    def result(self) -> list[ChannelGroup]:
        roots = sorted({self.groups.find(g) for g in range(len(self.groups.parent))})
        roots = [r for r in roots if self.groups.sizes[r] > 0]  # removed layers' outputs
        out = link([self.group(gid) for gid in roots])
        for i, group in enumerate(out):
            if group.prunable and isinstance(partition(group), str):
                out[i] = replace(group, prunable=False, reason=partition(group))
        ends_all = [i for i, g in enumerate(out) if g.prunable and self._ends_branches(g)]
        ends = {c for i in ends_all for c in consumers(out[i].members)}
        for i in ends_all:
            if all(self._skipped(c, ends) for c in consumers(out[i].members)):
                out[i] = replace(out[i], removable=True)
        return out

    def group(self, gid: int) -> ChannelGroup:
        """Root ``gid`` as a ChannelGroup, with every reason it may not be cut."""
        members = tuple(self.groups.members[gid])
        reasons = list(dict.fromkeys(self.groups.reasons[gid]))
        if not any(m.axis == "out" and self._is_layer(m.module) for m in members):
            reasons.append("no conv or Linear produces these channels")
        shared = sorted({p for m in members for p in self.tied.get(m.module, ())})
        if shared:
            reasons.append(f"shares parameters ({'; '.join(shared)}): cut, one holder breaks")
        shuffles = self.groups.shuffles[gid] or {1}
        if len(shuffles) > 1:
            reasons.append(f"shuffled into {sorted(shuffles)} groups at once")
        return ChannelGroup(
            name=self.groups.names[gid],
            size=self.groups.sizes[gid],
            members=members,
            prunable=not reasons,
            reason="; ".join(reasons) or None,
            shuffle=max(shuffles),
            passes=tuple(dict.fromkeys(self.groups.passes[gid])),
        )

    def _is_layer(self, name: str) -> bool:
        return isinstance(self.modules[name], nn.Conv2d | nn.Linear)

    def _sum_of(self, node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
        """The sum that ``node``'s output reaches through BatchNorms and out-of-place
        activations alone (each its only user; no pooling), with the operand it arrives
        as; None if it reaches none. Such a layer may end a residual branch, whose inputs
        may all go (the sum then carries the skip and the layer's bias, broadcast:
        cnnzip.models.slim.Removed); ``removable`` checks the skip."""
        while len(node.users) == 1:
            user = next(iter(node.users))
            if user.target in (operator.add, torch.add):
                return user, node
            if not self._passes(user):
                return None
            node = user
        return None

    def _passes(self, node: fx.Node) -> bool:
        """A BatchNorm with running statistics or an activation that writes a new
        tensor: both take a removed branch's (1, C, 1, 1) constant as they take the full
        tensor (batch statistics would not; an in-place op would write into its bias)."""
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            return (
                isinstance(module, (*BATCH_NORMS, *PASS_MODULES))
                and self.calls[node.target] == 1
                and not isinstance(module, POOL_MODULES)
                and not getattr(module, "inplace", False)
                and getattr(module, "track_running_stats", True)  # batch statistics: no
            )
        if node.op == "call_method":
            return node.target in PASS_METHODS and not str(node.target).endswith("_")
        inplace = node.kwargs.get("inplace") is True or any(a is True for a in node.args[1:])
        return node.target in PASS_FUNCTIONS - POOL_FUNCTIONS and not inplace

    def _layer_behind(self, node: Any) -> str | None:
        """The conv or Linear whose output ``node`` is, through ``_passes`` nodes."""
        while isinstance(node, fx.Node) and node.op != "placeholder":
            if node.op == "call_module" and self._is_layer(str(node.target)):
                return str(node.target)
            if not self._passes(node) or not node.args:
                return None
            node = node.args[0]
        return None

    def _ends_branches(self, group: ChannelGroup) -> bool:
        """Every consumer of the group (a conv or Linear holding it as "in" and not as
        "out") ends in a sum (``_sum_of``), and no sum is in place: the group may all go
        if each sum also has a skip (``_skipped``)."""
        users = consumers(group.members)
        return bool(users) and users <= set(self.summed) and not self.in_place

    def _skipped(self, consumer: str, ends: set[str]) -> bool:
        """Whether the sum ``consumer`` ends in has another operand of the sum's full
        shape that no branch in ``ends`` produces: the skip that carries the block once
        the branch goes (a sum of two removed branches, or with a scalar, would leave
        only their (1, C, 1, 1) constants)."""
        total, mine = self.summed[consumer]
        operands = [a for a in (*total.args, *total.kwargs.values()) if isinstance(a, fx.Node)]
        return any(
            a is not mine and _shape(a) == _shape(total) and self._layer_behind(a) not in ends
            for a in operands
        )


def consumers(members: tuple[Member, ...]) -> set[str]:
    """The layers holding a group as input only (a depthwise conv holds it both ways)."""
    outs = {m.module for m in members if m.axis == "out"}
    return {m.module for m in members if m.axis == "in"} - outs


def link(groups: list[ChannelGroup]) -> list[ChannelGroup]:
    """Groups that fill one grouped conv's axis together (each a ``partial`` member
    there) joined into one linked group per connected set, in its first part's place.
    A set with a part that may not be cut, or a shuffled one, stays whole: every part
    is refused, naming the convs and the part that holds it back."""
    holders: dict[tuple[str, str], set[int]] = {}
    for i, group in enumerate(groups):
        for m in (m for m in group.members if m.partial):
            holders.setdefault((m.module, m.axis), set()).add(i)
    sets: list[set[int]] = []  # connected: groups sharing a grouped axis, transitively
    for held in holders.values():
        touching = [s for s in sets if s & held]
        sets = [s for s in sets if not s & held] + [held.union(*touching)]
    out: dict[int, ChannelGroup] = dict(enumerate(groups))
    for parts in (sorted(s) for s in sets if len(s) > 1):
        for i, group in zip(parts, _joined([groups[i] for i in parts]), strict=True):
            out[i] = group
    return list({id(g): g for g in out.values()}.values())  # a linked group once


def _joined(parts: list[ChannelGroup]) -> list[ChannelGroup]:
    """Per part, what it becomes: the one linked group, or itself refused with why."""
    names = tuple(p.name for p in parts)
    convs = sorted({m.module for p in parts for m in p.members if m.partial})
    held = next((p for p in parts if not p.prunable or p.shuffle > 1), None)
    if held is not None:  # a shuffled part is refused too: links take plain parts only
        why = held.reason or f"shuffled into {held.shuffle} groups, which links do not take"
        reason = (
            f"grouped conv {', '.join(map(repr, convs))} takes the channels of "
            f"{', '.join(map(repr, names))} together, and {held.name!r} cannot be cut ({why})"
        )
        return [replace(p, prunable=False, reason=reason) if p.prunable else p for p in parts]
    starts = accumulate((p.size for p in parts), initial=0)
    members = tuple(
        replace(m, first=start) for p, start in zip(parts, starts, strict=False) for m in p.members
    )
    size = sum(p.size for p in parts)
    passes = tuple(dict.fromkeys(m for p in parts for m in p.passes))
    joined = ChannelGroup("+".join(names), size, members, True, None, 1, names, passes)
    return [joined] * len(parts)


@dataclass(frozen=True)
class Partition:
    """How a group's channels may go: ``units`` are kept or removed whole (one channel,
    or one per shuffle group), and bucket b must lose ``k * shares[b]`` units for one
    common k, so that each grouped conv keeps equal groups; units in no bucket always
    stay. A plain group's buckets lose as many each (shares of 1); a linked group's
    lose the same fraction of their channels."""

    units: tuple[tuple[int, ...], ...]
    buckets: tuple[tuple[int, ...], ...]
    shares: tuple[int, ...]

    def single_channels(self, size: int) -> bool:
        """Whether any one of the group's ``size`` channels may go alone (no grouped conv,
        shuffle or link makes it lose several at once)."""
        return len(self.buckets) == 1 and len(self.units[0]) == 1 and len(self.buckets[0]) == size


def _blocks(member: Member, units: tuple[tuple[int, ...], ...]) -> list[int | None] | None:
    """Per unit, the one conv group of ``member`` it lies in (None: it straddles groups);
    None overall when every unit feeds all groups alike (no constraint)."""
    pos = member.positions()
    spans = [Counter(pos[i] // member.block for i in unit) for unit in units]
    if all(len(s) == member.groups and len(set(s.values())) == 1 for s in spans):
        return None
    return [next(iter(s)) if len(s) == 1 else None for s in spans]


def partition(group: ChannelGroup) -> Partition | str:
    """The units and buckets of ``group``, or why its grouped convs and shuffles admit none."""
    if group.parts:
        return _linked(group)
    g = group.shuffle
    if group.size % g:
        return f"{group.size} channels do not split into {g} shuffle groups"
    m = group.size // g
    units = tuple(tuple(j * m + c for j in range(g)) for c in range(m))
    keys: list[tuple[int, ...] | None] = [() for _ in units]
    for member in (x for x in group.members if x.block):
        blocks = _blocks(member, units)
        if blocks is None:
            continue
        keys = [
            (*k, b) if k is not None and b is not None else None
            for k, b in zip(keys, blocks, strict=True)
        ]
        found = {k[-1] for k in keys if k is not None}
        if found != set(range(member.groups)):
            return (
                f"grouped conv {member.module!r} ({member.groups} groups) cannot keep "
                "equal groups when these channels are cut"
            )
    buckets: dict[tuple[int, ...], list[int]] = {}
    for u, key in enumerate(keys):
        if key is not None:
            buckets.setdefault(key, []).append(u)
    if not buckets or any(
        len({k[i] for k in buckets}) != len(buckets) for i in range(len(next(iter(buckets))))
    ):
        return "grouped convs split these channels into groups that do not match"
    straddling = sum(map(len, buckets.values())) < len(units)  # units always kept
    if len(buckets) > 1 and not straddling and min(map(len, buckets.values())) < 2:
        convs = sorted({m.module for m in group.members if m.block})
        return f"grouped convs {convs} hold one of these channels per group: none can go"
    return Partition(units, tuple(tuple(b) for b in buckets.values()), (1,) * len(buckets))


def _linked(group: ChannelGroup) -> Partition | str:
    """A linked group's buckets: its channels by the conv group each grouped member puts
    them in (-1: a member of another part). Every conv group of every grouped axis is a
    union of buckets, the axis is filled by the parts together, and its conv groups are
    equal: so each bucket losing the same fraction k / step of its channels (step: the
    buckets' greatest common size) keeps them equal, k < step keeping one in each."""
    keys: list[tuple[int, ...]] = [() for _ in range(group.size)]
    for member in (m for m in group.members if m.block):
        at = dict(zip(member.channels(), member.positions(), strict=True))
        keys = [(*k, at[c] // member.block if c in at else -1) for c, k in enumerate(keys)]
    buckets: dict[tuple[int, ...], list[int]] = {}
    for c, key in enumerate(keys):
        buckets.setdefault(key, []).append(c)
    step = math.gcd(*map(len, buckets.values()))
    if step < 2:
        return (
            f"grouped convs split the linked channels of {', '.join(group.parts)} into "
            "pieces with no common size: none can go without unequal groups"
        )
    units = tuple((c,) for c in range(group.size))
    shares = tuple(len(b) // step for b in buckets.values())
    return Partition(units, tuple(tuple(b) for b in buckets.values()), shares)


def channel_groups(model: nn.Module, input_shape: tuple[int, int, int]) -> list[ChannelGroup]:
    """Every channel group of ``model`` for inputs of ``input_shape`` (C, H, W), prunable
    or with the reason it is not, in graph order of its first producer."""
    return _Walk(trace(model, input_shape), _adds_in_place(model, input_shape)).run()


class _InPlace(TorchFunctionMode):
    """Notes whether a forward adds into a tensor in place (``out += x``)."""

    found = False

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        name = getattr(func, "__name__", "")
        self.found = self.found or name in ("__iadd__", "add_")
        return func(*args, **(kwargs or {}))


def _adds_in_place(model: nn.Module, input_shape: tuple[int, ...]) -> bool:
    """Whether ``model``'s forward sums in place anywhere. torch.fx records ``out += x``
    as ``out + x``, but run eagerly it writes into ``out``, which must then be of full
    shape: a removed branch's constant, (1, C, 1, 1) in eval mode, is not. Such a model
    keeps its branches (removable False), conservatively, wherever the sum is."""
    x = example_input(model, (1, *checked_shape(input_shape)))
    mode = _InPlace()
    with eval_mode(model), torch.no_grad(), mode:
        model(x)
    return mode.found
