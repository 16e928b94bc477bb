"""Binary models in .cnnz files (the container of cnnzip.codec), 1 bit per binarized weight.

A weight under the BWN transform is stored with encoding "binary": its sign
bits, packed densely (section "bits", set = -1, little-endian bit order, in
the weight's own element order) and alpha per output channel (section
"alpha", float32). It decodes to alpha * sign, bit for bit the value the
transform computes. Every other tensor is stored "dense" float32 in the
codec's layout. The header names the "binarized" builder, so the file alone
rebuilds the model; ``cnnzip.runtime.load`` then runs it on the kernels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnzip.binary.layers import BWN
from cnnzip.binary.storage import decode_signs, real_weight
from cnnzip.codec import container
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model
from cnnzip.transforms import transforms_of

__all__ = ["load", "save"]


def _binary_targets(model: nn.Module) -> set[str]:
    return {t for t, ts in transforms_of(model).items() if any(isinstance(x, BWN) for x in ts)}


def save(path: str | Path, model: nn.Module, *, arch: dict[str, Any]) -> int:
    """Write ``model`` (a "binarized" zoo model, e.g. a ``cnnzip binarize`` run) to ``path``.

    ``arch`` = {"name": "binarized", "kwargs": {...}} as in its run.json. Returns bytes written.
    """
    binary = _binary_targets(model)
    if not binary:
        raise CnnzipError("the model has no BWN/XNOR layer: binarize it first")
    sections: list[bytes] = []
    tensors = []
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in f".{k}"}
    for target in sorted(binary):
        module = model.get_submodule(target.rpartition(".")[0])
        w = real_weight(module)  # (cout, ...)
        alpha = w.abs().mean(dim=tuple(range(1, w.dim()))).float().numpy()
        sections += [np.packbits((w < 0).flatten().numpy(), bitorder="little").tobytes()]
        sections += [alpha.astype("<f4").tobytes()]
        tensors.append({"name": target, "shape": list(w.shape), "encoding": "binary",
                        "bits": len(sections) - 2, "alpha": len(sections) - 1})  # fmt: skip
    for name, value in state.items():
        array = value.detach().cpu().contiguous().numpy()
        stored = "float32" if value.is_floating_point() else str(array.dtype)
        sections.append(array.astype("<f4" if stored == "float32" else array.dtype).tobytes())
        entry = {"name": name, "shape": list(value.shape), "encoding": "dense"}
        tensors.append({**entry, "dtype": stored, "stored": stored, "section": len(sections) - 1})
    header = {
        "format": "cnnz",
        "arch": arch,
        "meta": {"binary": sorted(binary)},
        "tensors": tensors,
    }
    return container.write(path, header, sections)


def _decode(cf: container.CnnzFile, entry: dict[str, Any]) -> torch.Tensor:
    name, shape = entry.get("name"), entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and 0 <= d < 1 << 28 for d in shape
    ):
        raise CnnzFormatError(f"tensor {name!r}: bad shape {shape!r:.80}")
    n = math.prod(shape)
    if entry.get("encoding") == "binary":
        bits, alpha = cf.section(entry.get("bits")), cf.section(entry.get("alpha"))
        if len(bits) != (n + 7) // 8 or len(alpha) != 4 * shape[0]:
            raise CnnzFormatError(f"tensor {name!r}: section sizes do not fit shape {shape}")
        scale = torch.from_numpy(np.frombuffer(alpha, dtype="<f4").copy())
        signs = decode_signs(np.frombuffer(bits, dtype=np.uint8), tuple(shape))
        return scale.reshape(-1, *([1] * (len(shape) - 1))) * signs
    if entry.get("encoding") != "dense" or entry.get("dtype") not in ("float32", "int64"):
        raise CnnzFormatError(f"tensor {name!r}: encoding this reader does not know")
    blob = cf.section(entry.get("section"))
    dtype = np.dtype("<f4" if entry["dtype"] == "float32" else "<i8")
    if len(blob) != n * dtype.itemsize:
        raise CnnzFormatError(f"tensor {name!r}: {len(blob)} bytes for shape {shape}")
    return torch.from_numpy(np.frombuffer(blob, dtype=dtype).reshape(shape).copy())


def load(path: str | Path) -> nn.Module:
    """The binarized model in ``path`` as a plain eval-mode module (weights = alpha * sign)."""
    cf = container.read(path)
    arch = cf.header.get("arch")
    if not isinstance(arch, dict) or arch.get("name") != "binarized":
        raise CnnzipError(f"{path} holds no binarized model; load it with cnnzip.codec.load")
    tensors = cf.header.get("tensors")
    if not isinstance(tensors, list) or not all(isinstance(e, dict) for e in tensors):
        raise CnnzFormatError("header has no tensor list")
    model = get_model("binarized", **(arch.get("kwargs") or {}))
    state = {e.get("name"): _decode(cf, e) for e in tensors}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CnnzFormatError(f"{path} does not fit its architecture: {exc}") from None
    return model.eval()
