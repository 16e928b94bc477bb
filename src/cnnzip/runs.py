"""Run directories: what ``cnnzip train`` writes and every later command reads.

RUN/model.safetensors   the weights (never pickle)
RUN/run.json            architecture name, builder kwargs, weight transforms
                        (masks, codebooks: see cnnzip.transforms), metrics, history
RUN/checkpoint.pt       training state for --resume (read with weights_only=True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cnnzip.errors import RunError
from cnnzip.fileio import atomic_path, atomic_write_text
from cnnzip.models import get_model
from cnnzip.transforms import describe, rebuild

__all__ = ["Run", "load_run", "save_run"]

WEIGHTS = "model.safetensors"
META = "run.json"
CHECKPOINT = "checkpoint.pt"


@dataclass
class Run:
    """A loaded run: the model with its weights, and the metadata it was saved with."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]

    @property
    def arch(self) -> str:
        return str(self.meta["arch"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.meta.get("kwargs", {}))


def save_run(
    path: str | Path, model: nn.Module, *, arch: str, kwargs: dict[str, Any], **meta: Any
) -> Path:
    """Write weights and metadata atomically; ``meta`` holds metrics, config, history."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    body = {
        "format": "cnnzip-run",
        "version": 1,
        "arch": arch,
        "kwargs": kwargs,
        "transforms": describe(model),
        **meta,
    }
    atomic_write_text(path / META, json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """run.json of a run directory, with a clear error when ``path`` is not one."""
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise RunError(f"{path} is not a run directory (no {META}); create one with `cnnzip train`")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{meta_path} is corrupt: {exc}") from None
    if meta.get("format") != "cnnzip-run" or "arch" not in meta:
        raise RunError(f"{meta_path} was not written by cnnzip (no format/arch fields)")
    return meta


def load_run(path: str | Path) -> Run:
    """Rebuild the model named in run.json and load its safetensors weights."""
    path = Path(path)
    meta = read_meta(path)
    model = get_model(meta["arch"], **meta.get("kwargs", {}))
    rebuild(model, meta.get("transforms", []))  # masks, codebooks... before their buffers load
    try:
        state = load_file(str(path / WEIGHTS))
        model.load_state_dict(state)
    except (SafetensorError, FileNotFoundError, RuntimeError, OSError) as exc:
        raise RunError(f"cannot load the weights of {path}: {exc}") from None
    return Run(path=path, model=model, meta=meta)
