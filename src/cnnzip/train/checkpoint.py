"""Training checkpoints: model, optimizer and position, written atomically each epoch.

The file is ours, but it is still read with ``weights_only=True``: loading a
checkpoint never runs code from it.
"""

from __future__ import annotations

import json
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cnnzip.errors import CnnzipError, RunError
from cnnzip.fileio import atomic_path

if TYPE_CHECKING:
    from cnnzip.train.loop import TrainState

__all__ = ["check_writable", "restore", "save"]


def check_writable(path: str | Path) -> None:
    """Create the folder of ``path`` (a file to be written later) and a probe file in it,
    so that an unwritable location fails now and not after hours of training."""
    path = Path(path)
    if path.is_dir():
        raise CnnzipError(f"{path} is a folder; a file is to be written there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise CnnzipError(
            f"cannot write {path}: {exc.strerror or exc}; choose another output location"
        ) from None


def save(path: str | Path, state: TrainState) -> None:
    """Write the state after a completed epoch."""
    payload = {
        "epoch": state.epoch,
        "step": state.step,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "history": json.dumps(state.history),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def restore(path: str | Path, state: TrainState) -> None:
    """Load a checkpoint into ``state`` in place (model, optimizer, epoch, history)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state.model.load_state_dict(payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.epoch, state.step = int(payload["epoch"]), int(payload["step"])
        state.history = json.loads(payload["history"])
    except (
        RuntimeError,
        KeyError,
        ValueError,
        OSError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as exc:
        raise RunError(
            f"cannot resume from {path}: {exc}. Delete it to start afresh, "
            "or resume with the same model and settings that wrote it."
        ) from None
