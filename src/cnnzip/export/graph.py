"""ONNX export of any cnnzip model, checked in onnxruntime on export.

What reaches the graph is what the model computes at inference, as plain float tensors:
pruned weights with their zeros, shared weights decoded (``codebook[index]``), BWN
weights as ``alpha * sign(W)``, a slimmed model at its real smaller shapes. Every weight
transform is made permanent on a copy first, so the exporter sees ordinary Conv2d /
Linear layers. An XNOR block's input binarization becomes ``Where(x < 0, -1, 1)`` (the
cnnzip convention: 0 binarizes to +1, which ONNX's ``Sign`` would send to 0) and its +1
padding an explicit ``Pad``. Layers that run on cnnzip's C kernels or CSR products
(``runtime.compile_binary``, ``runtime.sparsify``) have no ONNX form: export the model
before compiling it.

The exporter is torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``:
deprecated since torch 2.9 but in the pinned 2.13, it needs no onnxscript and exported
LeNet-5 in 0.013 s where the dynamo exporter took 0.78 s (medians of 5, 1 thread, plus
1.1 s to import onnxscript), which decides the cost of the tests and of every verb that
exports. Every export is run in onnxruntime on fresh random inputs against torch; an
element differing by more than ``ATOL + RTOL * |torch's value|`` is an ``ExportError``,
never a warning (float32 sums carry an error relative to their size, so logits in the
hundreds get a proportionally wider bound, element by element, never the whole output's).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnzip.binary.layers import BinActiv
from cnnzip.errors import CnnzipError, one_line
from cnnzip.export.deps import MissingDependencyError, require
from cnnzip.fileio import atomic_path
from cnnzip.models.running import eval_mode
from cnnzip.transforms import remove_transforms, swap_module

__all__ = ["ATOL", "RTOL", "Checked", "ExportError", "check_onnx", "export_onnx", "session"]

ATOL, RTOL = 1e-4, 1e-4  # per element: |onnxruntime - torch| <= ATOL + RTOL * |torch|
Tolerance = tuple[float, float]  # (atol, rtol)
TRACE_BATCH = 2
MIN_OPSET, MAX_OPSET = 9, 20  # torch 2.13's TorchScript exporter: symbolic_opset9..20
OPSETS = f"{MIN_OPSET}..{MAX_OPSET}"
CHECK_BATCH = 3  # the check runs another batch than the trace, so a static axis shows


class ExportError(CnnzipError):
    """A model that cannot be exported to ONNX, or whose export computes something else."""


@dataclass
class Checked:
    """What ``export_onnx`` wrote and how closely onnxruntime reproduced torch."""

    path: str
    bytes: int
    opset: int
    max_abs_diff: float
    atol: float
    rtol: float
    batch: int | None  # the graph's fixed batch size; None: any batch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        batch = "any batch" if self.batch is None else f"batch {self.batch} only"
        return (
            f"{self.path}: {self.bytes:,} bytes, opset {self.opset}, {batch}; onnxruntime vs "
            f"torch max |diff| {self.max_abs_diff:.3g} (each element within {self.atol:.3g} + "
            f"{self.rtol:.3g} * |torch|)"
        )


class _ExactSign(nn.Module):
    """BinActiv at inference: -1 where x < 0, else +1 (Less + Where in ONNX)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x < 0, -1.0, 1.0).to(x.dtype)


def plain_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose weights are plain tensors (the values forward uses, every
    transform applied) and whose binary activations are exact signs: what the graph holds
    (``remove_transforms`` leaves the caller's model as it is)."""
    plain = copy.deepcopy(model).eval()
    remove_transforms(plain)
    for name, module in list(plain.named_modules()):
        if isinstance(module, BinActiv):
            swap_module(plain, name, _ExactSign())
    return plain.requires_grad_(False)


@torch.no_grad()
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx's progress lines, its warnings about absent torchvision ops and its
    deprecation notices say nothing about this export; its errors still propagate."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(module: nn.Module, x: torch.Tensor, f: str | io.BytesIO, opset: int | None) -> None:
    """``torch.onnx.export`` (TorchScript-based) to ``f`` with a dynamic batch axis."""
    batch = {0: "batch"}
    with _quiet():
        torch.onnx.export(
            module,
            (x,),
            f,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            opset_version=opset,
            dynamic_axes={"input": batch, "output": batch},
        )


def _reason(exc: BaseException) -> str:
    """The exporter's root cause in one line, without its terminal colours."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", one_line(str(exc), keep=1))
    return f"{type(exc).__name__}: {text[:200]}"


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules without children, cnnzip's and the user's before torch's own: a layer torch
    defines exports unless what feeds it fails first."""
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(m.children())]
    return sorted(leaves, key=lambda item: type(item[1]).__module__.startswith("torch."))


def _leaf_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each leaf's (single tensor) input in one forward of ``x``, of the leaves that ran
    on it in torch (one that raised is the forward's fault, not ONNX's)."""
    inputs: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...], _out: Any) -> None:
            if len(args) == 1 and isinstance(args[0], torch.Tensor):
                inputs.setdefault(name, args[0])

        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in _leaves(model)]
    try:
        with torch.no_grad():
            model(x)
    except Exception:  # the forward itself fails: the leaves it reached are still recorded
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


def _exports_alone(module: nn.Module, x: torch.Tensor, opset: int | None, tol: Tolerance) -> bool:
    """Whether ``module`` exports on its own (traced on ``x``) and onnxruntime reproduces it
    on other inputs (``x``'s rows reversed, then ``x``): a layer computed outside torch's
    ops (a C kernel) traces into constants, right only for the traced input."""
    f = io.BytesIO()
    try:
        _export(module, x, f, opset)
        _compare(session(f.getvalue()), module, torch.cat([x.flip(0), x]), tol, "layer")
    except Exception:  # any failure, the exporter's or the check's, rules the layer out
        return False
    return True


def _fail(
    model: nn.Module, x: torch.Tensor, opset: int | None, tol: Tolerance, exc: Exception
) -> ExportError:
    """An ExportError naming the first layer ONNX cannot express, with the reason."""
    inputs = _leaf_inputs(model, x)
    for name, module in _leaves(model):
        if name in inputs and not _exports_alone(module, inputs[name], opset, tol):
            return ExportError(
                f"cannot export to ONNX: layer {name} ({type(module).__name__}) has no ONNX "
                f"form ({_reason(exc)}); layers run by cnnzip.runtime (compile_binary, "
                "sparsify) never export: export the model as cnnzip.load decodes it"
            )
    if isinstance(exc, ExportError):
        return exc
    return ExportError(
        f"cannot export to ONNX: the model's forward fails on one sample of shape "
        f"{tuple(x.shape[1:])} ({_reason(exc)}); pass the shape it takes (input_shape; "
        "on the command line --input N for N x N pixels)"
    )


def session(model: str | Path | bytes, threads: int = 1) -> Any:
    """An onnxruntime CPU session of an ONNX file (or its bytes), ``threads`` intra-op."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def _graph_batch(sess: Any) -> int | None:
    """The input's fixed batch size, or None where the graph takes any batch."""
    first = sess.get_inputs()[0].shape[0]
    return first if isinstance(first, int) else None


def _compare(sess: Any, model: nn.Module, x: torch.Tensor, tol: Tolerance, what: str) -> float:
    """max |onnxruntime - torch| on ``x``; an ExportError where any element differs by
    more than ``atol + rtol * |torch|`` (``tol``), naming the worst one."""
    with eval_mode(model), torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise ExportError(
            f"{what}: the model returns {type(out).__name__}; export takes one tensor"
        )
    want = out.float().numpy()  # (N, ...)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != want.shape:
        raise ExportError(f"{what}: onnxruntime gives shape {got.shape}, torch {want.shape}")
    if not want.size:
        return 0.0
    atol, rtol = tol
    diff = np.abs(got.astype(np.float64) - want)  # (N, ...)
    limit = atol + rtol * np.abs(want.astype(np.float64))
    over = np.nan_to_num(diff - limit, nan=np.inf)  # NaN fails too
    worst = int(np.argmax(over))
    if over.flat[worst] > 0:
        raise ExportError(
            f"{what}: onnxruntime differs from torch by {diff.flat[worst]:.3g} where torch "
            f"gives {want.flat[worst]:.4g}, over the limit {limit.flat[worst]:.3g} "
            f"({atol:.3g} + {rtol:.3g} * |torch|): the graph does not compute what the model does"
        )
    return float(np.max(diff))


def check_onnx(
    path: str | Path,
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    atol: float = ATOL,
    rtol: float = RTOL,
    seed: int = 1,
    name: str | None = None,
) -> float:
    """Run ``path`` in onnxruntime and ``model`` in torch on one random batch (another
    size than the trace's where the batch axis is free); the max |difference|, or an
    ExportError where an element differs by more than ``atol + rtol * |torch|``."""
    sess = session(path)
    batch = _graph_batch(sess) or CHECK_BATCH
    x = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(seed))
    return _compare(sess, model, x, (atol, rtol), name or str(path))


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    *,
    opset: int | None = None,
    atol: float = ATOL,
    rtol: float = RTOL,
) -> Checked:
    """Write ``model`` (one sample's ``input_shape``, no batch axis) as ONNX to ``path``
    and check it in onnxruntime against torch; see the module docstring for what the
    graph holds. The file is written atomically; a failed export or check leaves none,
    and names the first layer that has no ONNX form."""
    onnx = require("onnx")
    require("onnxruntime")
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not one torch's exporter writes: {OPSETS}")
    plain = plain_copy(model)
    x = torch.randn((TRACE_BATCH, *input_shape), generator=torch.Generator().manual_seed(0))
    with atomic_path(path) as tmp:
        try:
            _export(plain, x, str(tmp), opset)
            graph = onnx.load(str(tmp))
            onnx.checker.check_model(graph)
            diff = check_onnx(tmp, model, input_shape, atol=atol, rtol=rtol, name=str(path))
        except MissingDependencyError:
            raise
        except Exception as exc:
            raise _fail(plain, x, opset, (atol, rtol), exc) from None
        batch = _graph_batch(session(tmp))
    opset_used = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    return Checked(str(path), os.path.getsize(path), opset_used, diff, atol, rtol, batch)
