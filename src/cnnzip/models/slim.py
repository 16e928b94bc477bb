"""Physically smaller modules from a recorded channel plan (structured pruning's result).

A plan names, per module, the output and input channels kept: applied to a freshly built
architecture (on the meta device, shapes only) it gives the slim model's exact shapes, so
run directories and .cnnz files rebuild a slim model from its zoo name or the user's own
``model=`` without pickle. Finding *which* channels to keep is cnnzip.prune.structured's
work; this module only cuts tensors, and lives in the models layer so that runs.py and the
codec, below prune, can rebuild from a plan.
"""

from __future__ import annotations

import copy
import operator
from itertools import chain, pairwise
from typing import Any

import torch
import torch.nn as nn

from cnnzip.errors import ModelError, one_line
from cnnzip.models.running import eval_mode, example_input

__all__ = [
    "Removed",
    "SlimPlan",
    "apply_slim",
    "axis_sizes",
    "check_plan_fits",
    "check_removed",
    "check_runs",
    "check_slim_plan",
    "is_depthwise",
    "is_grouped",
    "meta_copy",
    "record_input_shape",
    "run_error",
    "slim_input_shape_of",
    "slim_plan_of",
    "valid_input_shape",
]

SlimPlan = dict[str, dict[str, list[int]]]  # module name -> {"out": kept, "in": kept}
AXES = ("out", "in")
ATTR = "_cnnzip_slim"  # the plan a slimmed model carries, composed over successive slims
SHAPE_ATTR = "_cnnzip_slim_input"  # the (C, H, W) it was slimmed for, when known
MAX_SIDE = 1 << 20  # an input dimension (on the meta device nothing is allocated)
MAX_MODULES = 1 << 16
MAX_INDICES = 1 << 26  # all kept indices of a plan together (a Linear's in-features count)
MAX_INDEX = (1 << 31) - 1
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def slim_plan_of(model: nn.Module) -> SlimPlan | None:
    """The plan ``model`` was slimmed with, relative to its full-width architecture (None
    for a model never slimmed): verbs record it in run.json and .cnnz files from here."""
    return getattr(model, ATTR, None)


def valid_input_shape(value: object) -> tuple[int, ...] | None:
    """``value`` (a file's ``input_shape``) as one sample's shape: 1 to 3 ints in
    1..MAX_SIDE, else None (free-form metadata: what cannot be a shape is not used)."""
    ok = isinstance(value, list | tuple) and 1 <= len(value) <= 3
    if not ok or not all(type(v) is int and 1 <= v <= MAX_SIDE for v in value):
        return None
    return tuple(value)


def record_input_shape(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Note on a slim ``model`` the input shape it was slimmed for: a .cnnz of it records
    the shape (header meta ``input_shape``) so that loading can run the rebuilt model."""
    try:
        checked = valid_input_shape([operator.index(v) for v in shape])  # numpy ints too
    except TypeError:
        checked = None
    if checked is None:
        raise ModelError(f"input shape {shape!r:.80} must be 1 to 3 sizes in 1..{MAX_SIDE}")
    setattr(model, SHAPE_ATTR, checked)
    return model


def slim_input_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """The input shape ``record_input_shape`` noted on ``model`` (None if none)."""
    return getattr(model, SHAPE_ATTR, None)


def run_error(model: nn.Module, shape: tuple[int, ...]) -> str | None:
    """None if one no-grad forward of ``model`` (best on the meta device: no compute) on a
    (1, *shape) input runs in eval mode, else its error as one line: a plan that cuts a
    layer's channels but not its consumer's fits every tensor yet cannot run."""
    x = example_input(model, (1, *shape))  # (1, C, H, W) on its device, in its dtype
    try:
        with eval_mode(model), torch.no_grad():  # train-mode BatchNorm refuses a batch of 1
            model(x)
    except Exception as exc:  # a width mismatch: torch raises anything
        return f"{type(exc).__name__}: {one_line(str(exc))}"
    return None


def check_runs(model: nn.Module, shape: tuple[int, ...], what: str) -> None:
    """``run_error`` as one ModelError naming ``what`` (a file's field)."""
    error = run_error(model, shape)
    if error is not None:
        raise ModelError(
            f"{what}: the slim model does not run on one {list(shape)} input ({error}); "
            "the plan cuts a layer's channels without its consumers' (or the recorded "
            "input shape is not the model's)"
        )


def check_removed(model: nn.Module, shape: tuple[int, ...] | None, what: str) -> None:
    """A model with ``Removed`` layers computes, in eval mode, what it computes with them
    returning every position (the masked model's outputs): the (1, C, 1, 1) shortcut is
    exact only where a residual sum broadcasts it, and a plan read from a file may empty
    any layer. Checked on one random (2, *shape) batch run both ways (the same random
    stream each time), to the model's precision; one ModelError naming ``what``
    otherwise, or when no input shape was recorded."""
    removed = [m for m in model.modules() if isinstance(m, Removed)]
    if not removed:
        return
    if shape is None:
        raise ModelError(
            f"{what}: the plan removes layers whole, which needs the input shape to be "
            "checked: slim with slim(model, plan, input_shape) (a .cnnz then records it)"
        )
    x = example_input(model, (2, *shape))  # (2, C, H, W)
    try:
        fast = _outputs(model, x)
        for m in removed:
            m.broadcast = False
        full: list[torch.Tensor] | str = _outputs(model, x)
    except Exception as exc:  # a constant where a full tensor was needed: torch raises anything
        fast, full = [], f"{type(exc).__name__}: {one_line(str(exc))}"
    finally:
        for m in removed:
            m.broadcast = True
    if isinstance(full, str) or not full or not _same(fast, full):
        cause = f" ({full})" if isinstance(full, str) else ""
        raise ModelError(
            f"{what}: the plan empties layers outside a residual branch: the outputs differ, "
            f"or are empty, once those layers return every position{cause}; not a plan "
            "cnnzip makes (a damaged file?)"
        )


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor of one eval-mode forward (nested in tuples, lists or dicts), the
    random stream reset first: a forward that draws noise draws the same both times."""
    with eval_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        stack = [model(x)]
    found: list[torch.Tensor] = []
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def _same(fast: list[torch.Tensor], full: list[torch.Tensor]) -> bool:
    """Same shapes, none empty, equal to a few units of the dtype's precision."""
    if len(fast) != len(full):
        return False
    for a, b in zip(fast, full, strict=True):
        if a.shape != b.shape or b.numel() == 0:
            return False
        eps = torch.finfo(b.dtype).eps if b.is_floating_point() else 0.0
        tol = max(1e-5, 64 * eps)  # float32: 1e-5; float16, bfloat16: their last digits
        if not torch.allclose(a.float(), b.float(), rtol=tol, atol=tol):
            return False
    return True


def check_slim_plan(plan: object, what: str) -> SlimPlan:
    """``plan`` read from a file (``what`` names the field) checked for types and sizes
    before anything uses it: an object of module names to ``{"out"?, "in"?}`` lists of
    distinct, sorted, non-negative ints, bounded in count. Ranges against a model are
    checked by ``apply_slim``."""
    if not isinstance(plan, dict) or len(plan) > MAX_MODULES:
        raise ModelError(
            f"{what} must be an object of at most {MAX_MODULES} module names to "
            f'{{"out": [...], "in": [...]}}, got {plan!r:.80}'
        )
    total = 0
    for name, axes in plan.items():
        if not isinstance(name, str) or not isinstance(axes, dict) or not axes:
            raise ModelError(f"{what}: entry {name!r:.80} must map a module name to kept lists")
        if set(axes) - set(AXES):
            raise ModelError(f"{what}: module {name!r:.80} has keys {sorted(axes)}; use out, in")
        for axis, kept in axes.items():
            _check_kept(kept, f"{what}: module {name!r:.80} {axis}")
            total += len(kept)
            if total > MAX_INDICES:
                raise ModelError(f"{what} keeps over {MAX_INDICES} indices: not a cnnzip plan")
    return plan


def _check_kept(kept: Any, what: str) -> None:
    """A strictly increasing list of ints in 0..2**31-1 (bools refused); empty: every
    channel of the axis removed (a residual branch, see ``Removed``)."""
    ok = (
        isinstance(kept, list)
        and all(type(i) is int and 0 <= i <= MAX_INDEX for i in kept)
        and all(a < b for a, b in pairwise(kept))
    )
    if not ok:
        raise ModelError(
            f"{what} must be a list of distinct channel indices in increasing order, "
            f"got {kept!r:.80}"
        )


def axis_sizes(module: nn.Module, name: str) -> dict[str, int]:
    """The channel counts a plan may cut on ``module``, by axis; anything else is refused."""
    if isinstance(module, nn.Conv2d):
        return {"out": module.out_channels, "in": module.in_channels}
    if isinstance(module, nn.Linear):
        return {"out": module.out_features, "in": module.in_features}
    if isinstance(module, BATCH_NORMS):
        return {"out": module.num_features}
    raise ModelError(
        f"module {name!r} is a {type(module).__name__}: a plan can slim Conv2d, Linear "
        "and BatchNorm only"
    )


def _check_entry(module: nn.Module, name: str, axes: dict[str, list[int]]) -> None:
    sizes = axis_sizes(module, name)
    if hasattr(module, "parametrizations"):
        raise ModelError(
            f"module {name!r} has weight transforms (masks, codebooks): slim the plain "
            "model first, then prune or share its weights"
        )
    for axis, kept in axes.items():  # well formed already (check_slim_plan)
        if axis not in sizes:
            raise ModelError(f"slim plan: module {name!r} has no {axis} channels to cut")
        if kept and kept[-1] >= sizes[axis]:
            raise ModelError(
                f"slim plan: module {name!r} keeps {axis} channel {kept[-1]} of only "
                f"{sizes[axis]}: the plan was made for another model"
            )
    inp, out = axes.get("in"), axes.get("out")
    if is_depthwise(module) and inp is not None and out is not None and inp != out:
        raise ModelError(f"slim plan: depthwise conv {name!r} must keep the same in and out")
    if is_grouped(module):
        for axis, kept in axes.items():
            per_group = sizes[axis] // module.groups
            counts = {sum(i // per_group == b for i in kept) for b in range(module.groups)}
            if len(counts) != 1:
                raise ModelError(
                    f"slim plan: grouped conv {name!r} ({module.groups} groups) must keep as "
                    f"many {axis} channels in every group"
                )


class Removed(nn.Module):
    """What is left of a layer that a plan takes every output channel of, or every input
    channel of: a removed residual branch. With no outputs it returns a zero-width tensor
    of the shape the layer's output had, (N, 0, H', W') or (N, 0), so that the forward's
    shuffles and shapes still run; with no inputs its outputs no longer depend on the
    input, only on the layer's bias: ``bias`` (width,) broadcast to (N, width, H', W')
    (zeros without one) in training, where a BatchNorm after it needs every position;
    in eval mode (1, width, 1, 1) alone, which the residual sum it flows to (through
    BatchNorms and activations only: cnnzip.prune.structured's ``removable``) broadcasts,
    so that nothing reads x and tracing (TorchScript, ONNX) drops the branch's layers as
    dead code. No compute, no copies. H', W' follow the conv's geometry (a BatchNorm
    keeps H, W)."""

    def __init__(self, layer: nn.Module, width: int, bias: nn.Parameter | None = None) -> None:
        super().__init__()
        self.width = width
        conv = isinstance(layer, nn.Conv2d)
        self.kernel = tuple(layer.kernel_size) if conv else (1, 1)
        self.stride = tuple(layer.stride) if conv else (1, 1)
        self.dilation = tuple(layer.dilation) if conv else (1, 1)
        pad = layer.padding if conv else (0, 0)
        self.same = pad == "same"
        self.padding = (0, 0) if isinstance(pad, str) else tuple(pad)  # "valid": 0
        self.bias = bias
        self.broadcast = True  # eval mode: (1, width, 1, 1), for the sum to broadcast
        if bias is None:  # a constant of zeros, not read from x (tracing would keep x's branch)
            like = next(chain(layer.parameters(), layer.buffers()), torch.zeros(()))
            zeros = torch.zeros(width, dtype=like.dtype, device=like.device)  # meta copies too
            self.register_buffer("zeros", zeros, persistent=False)

    def extra_repr(self) -> str:
        return f"width={self.width}, constant={self.bias is not None}"

    def _side(self, size: int, i: int) -> int:
        if self.same:
            return size
        span = self.dilation[i] * (self.kernel[i] - 1) + 1
        return (size + 2 * self.padding[i] - span) // self.stride[i] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread = (1, self.width) + (1,) * (x.dim() - 2)  # (1, width, 1, 1)
        value = (self.zeros if self.bias is None else self.bias).view(spread)
        if self.width and self.broadcast and not self.training:
            return value  # the sum it flows to broadcasts it; x's branch is dead code
        shape = (x.shape[0], self.width, *(self._side(s, i) for i, s in enumerate(x.shape[2:])))
        return value.expand(shape)  # (N, width, H', W'), a view: nothing is written


def is_depthwise(module: nn.Module) -> bool:
    """A conv of one input channel per output channel (groups = in = out)."""
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == module.in_channels > 1
        and (module.out_channels == module.in_channels)
    )


def is_grouped(module: nn.Module) -> bool:
    """A conv of several groups, each more than one channel wide or a multiplier."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and not is_depthwise(module)


def _take(module: nn.Module, tensor_name: str, dim: int, kept: list[int]) -> None:
    """Replace a parameter or buffer by its slice along ``dim`` (meta tensors included)."""
    value = getattr(module, tensor_name)
    if value is None:
        return
    index = torch.tensor(kept, dtype=torch.long, device=value.device)
    cut = value.detach().index_select(dim, index)
    if isinstance(value, nn.Parameter):
        setattr(module, tensor_name, nn.Parameter(cut, requires_grad=value.requires_grad))
    else:
        setattr(module, tensor_name, cut)


def _take_grouped_inputs(module: nn.Conv2d, kept: list[int]) -> None:
    """A grouped conv's input channels: each output row keeps its own group's kept ones."""
    g, weight = module.groups, module.weight
    per_in, per_out = module.in_channels // g, weight.shape[0] // g
    local = [[i - b * per_in for i in kept if i // per_in == b] for b in range(g)]
    rows = [local[o // per_out] for o in range(weight.shape[0])]
    index = torch.tensor(rows, dtype=torch.long, device=weight.device)  # (out, in/g kept)
    index = index[:, :, None, None].expand(-1, -1, *weight.shape[2:])
    cut = weight.detach().gather(1, index)
    module.weight = nn.Parameter(cut, requires_grad=weight.requires_grad)


def _cut_norm(module: nn.Module, kept: list[int]) -> None:
    for tensor_name in ("weight", "bias", "running_mean", "running_var"):
        _take(module, tensor_name, 0, kept)
    module.num_features = len(kept)


def _input_norms(layer: nn.Module) -> dict[str, nn.Module]:
    """A layer's own BatchNorms of its input, by child name (an XNOR block normalises
    before binarizing): they lose the layer's removed input channels with it."""
    if not isinstance(layer, nn.Conv2d | nn.Linear):
        return {}
    width = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    return {
        name: child
        for name, child in layer.named_children()
        if isinstance(child, BATCH_NORMS) and child.num_features == width
    }


def _cut_input_norms(layer: nn.Module, kept: list[int]) -> None:
    for norm in _input_norms(layer).values():
        _cut_norm(norm, kept)


def _cut(module: nn.Module, axes: dict[str, list[int]]) -> None:
    """Slice one module's tensors and set its shape attributes to match."""
    out, inp = axes.get("out"), axes.get("in")
    if isinstance(module, BATCH_NORMS):
        _cut_norm(module, out)
    elif is_depthwise(module):
        kept = out or inp
        _take(module, "weight", 0, kept)  # (C, 1, kh, kw)
        _take(module, "bias", 0, kept)
        module.in_channels = module.out_channels = module.groups = len(kept)
    else:  # Conv2d (groups 1) or Linear: weight (out, in, ...)
        if out is not None:
            _take(module, "weight", 0, out)
            _take(module, "bias", 0, out)
        if inp is not None and is_grouped(module):
            _take_grouped_inputs(module, inp)
        elif inp is not None:
            _take(module, "weight", 1, inp)
        if inp is not None:
            _cut_input_norms(module, inp)
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape[:2]
        else:
            out_chs, in_per_group = module.weight.shape[:2]  # (out, in / groups, kh, kw)
            module.out_channels, module.in_channels = out_chs, in_per_group * module.groups


def _compose(old: SlimPlan | None, new: SlimPlan) -> SlimPlan:
    """``new`` (indices into an already slim model) as indices into the full-width one."""
    out = {name: {a: list(k) for a, k in axes.items()} for name, axes in (old or {}).items()}
    for name, axes in new.items():
        for axis, kept in axes.items():
            before = out.setdefault(name, {}).get(axis)
            out[name][axis] = [before[i] for i in kept] if before else list(kept)
    return out


def check_plan_fits(model: nn.Module, plan: SlimPlan) -> dict[str, nn.Module]:
    """``plan`` is well formed and every index fits ``model``'s modules (one ModelError
    naming the module otherwise); returns the model's modules by name."""
    check_slim_plan(plan, "slim plan")
    modules = dict(model.named_modules())
    owned = {
        f"{name}.{child}": name for name, layer in modules.items() for child in _input_norms(layer)
    }
    for name, axes in plan.items():
        if name not in modules:
            raise ModelError(f"slim plan: the model has no module {name!r}; was it made for it?")
        if name == "" and [] in axes.values():
            raise ModelError("slim plan: the model itself cannot lose every channel")
        if name in owned:
            raise ModelError(
                f"slim plan: {name!r} is the input norm of {owned[name]!r} and is cut with "
                f"its input channels: the plan must name {owned[name]!r} (in) only"
            )
        _check_entry(modules[name], name, axes)
    return modules


def apply_slim(model: nn.Module, plan: SlimPlan) -> nn.Module:
    """In place: cut each named module to its kept channels (weights, bias, BatchNorm
    running statistics; ``num_batches_tracked`` is per layer and stays) and fix its shape
    attributes (channels and groups of a depthwise conv, features). Works on the meta
    device. The whole plan is checked against the model first (one ModelError naming the
    module: unknown, out of range, unsorted or empty), so a bad plan changes nothing. The
    model then carries the plan, composed with any earlier one (``slim_plan_of``)."""
    modules = check_plan_fits(model, plan)
    old = slim_plan_of(model) or {}  # indices into the full model, made whole when applied
    for name in plan:
        was = old.get(name)  # a depthwise conv's recorded lists are one set (both axes)
        if was and is_depthwise(modules[name]) and was.get("in") != was.get("out"):
            raise ModelError(  # its groups would change, which no recorded plan rebuilds
                f"slim plan: {name!r} was a grouped conv cut to one channel per group; a "
                "second cut of it cannot be recorded: slim the full-width model once, with "
                "both plans' channels"
            )
    plan = _depthwise_both(modules, plan)
    for name, axes in plan.items():
        removed = _removed(modules[name], axes)
        if removed is not None:
            _replace(model, name, removed.train(modules[name].training))
        else:
            _cut(modules[name], axes)
    setattr(model, ATTR, _compose(old, plan))
    return model


def _removed(module: nn.Module, axes: dict[str, list[int]]) -> Removed | None:
    """The ``Removed`` stand-in of a module left without outputs, or of a conv or Linear
    left without inputs (its kept outputs then carry their bias alone); None otherwise."""
    out, inp = axes.get("out"), axes.get("in")
    if out == []:
        return Removed(module, 0)
    if inp != [] or isinstance(module, BATCH_NORMS):
        return None
    kept = list(range(axis_sizes(module, "")["out"])) if out is None else out
    bias = getattr(module, "bias", None)
    if bias is not None:  # (width,): the kept outputs' biases, trainable as they were
        index = torch.tensor(kept, dtype=torch.long, device=bias.device)
        bias = nn.Parameter(bias.detach().index_select(0, index), bias.requires_grad)
    return Removed(module, len(kept), bias)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in the place of submodule ``name``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def _depthwise_both(modules: dict[str, nn.Module], plan: SlimPlan) -> SlimPlan:
    """``plan`` with a depthwise conv's one kept list on both of its axes (they are one
    set of channels), so that composing a later cut of either axis reads the right one."""
    both = {}
    for name, axes in plan.items():
        kept = axes.get("out", axes.get("in"))
        both[name] = {"out": kept, "in": kept} if is_depthwise(modules.get(name)) else axes
    return both


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers are on the meta device: shapes to count
    or check a plan against (profile, allocation candidates, a file's plan before it cuts
    the user's model), without allocating or touching the weights."""
    memo: dict[int, Any] = {}
    for tensor in chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(tensor, device="meta")  # same shape and dtype, no storage
        is_param = isinstance(tensor, nn.Parameter)
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if is_param else meta
    return copy.deepcopy(model, memo)
