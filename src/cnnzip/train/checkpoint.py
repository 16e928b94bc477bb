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

from cnnzip.errors import CnnzipError, RunError, one_line
from cnnzip.fileio import atomic_path

if TYPE_CHECKING:
    from cnnzip.train.loop import TrainState

__all__ = ["check_writable", "restore", "save"]


def check_writable(path: str | Path) -> None:
    """Fail now, not after hours of training, if file ``path`` cannot be written later.

    Probes with a temporary file in the nearest folder that exists (the writer creates
    the missing ones below it), so nothing is left behind.
    """
    path, reason = Path(path), ""
    folder = path.parent
    try:
        while not folder.exists():
            folder = folder.parent
        if path.is_dir():
            reason = f"{path} is a folder"
        elif not folder.is_dir():
            reason = f"{folder} is a file, not a folder"
        else:
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as exc:
        reason = f"{folder}: {exc.strerror or exc}"
    if reason:
        raise CnnzipError(f"cannot write {path} ({reason}); choose another output location")


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
    except pickle.UnpicklingError:  # torch's text advises loading it unsafely: not for users
        raise _cannot_resume(
            path, "it holds more than tensors and numbers; nothing was run"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # torch's text: "Invalid argument"
        raise _cannot_resume(path, f"unreadable, cut short or corrupt ({exc})") from None
    except (RuntimeError, KeyError, ValueError) as exc:  # another model's state_dict: many lines
        raise _cannot_resume(path, one_line(str(exc))) from None


def _cannot_resume(path: str | Path, why: str) -> RunError:
    return RunError(
        f"cannot resume from {path}: {why}. Delete it to start afresh, "
        "or resume with the same model and settings that wrote it."
    )
