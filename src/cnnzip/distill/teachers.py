"""Frozen teachers: one model or an ensemble, whose logits may be cached per sample.

Distillation runs the teachers on every training batch, and a teacher is often
bigger than its student, so on a deterministic input pipeline (no
augmentation) most of the cost of distillation is recomputing the same
outputs every epoch. ``Teachers(cache=True)`` remembers them, keyed by a hash
of each input row's bytes. The key is the content itself, so the cache can
never return another sample's outputs: an augmented row is simply a new key
(a miss). It pays only when the same rows come back, and then every epoch
after the first runs no teacher at all. It holds M x K floats per distinct row
seen (a few MB for Fashion-MNIST), so leave it off with augmentation, where
every row is new and the cache would only grow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from cnnzip.data import Split, batches
from cnnzip.errors import CnnzipError
from cnnzip.runs import load_run

__all__ = ["TeacherSource", "Teachers", "load_teachers"]

TeacherSource = str | Path | nn.Module


def load_teachers(sources: Sequence[TeacherSource]) -> list[nn.Module]:
    """Modules from run directories (``cnnzip train``'s output) or modules passed as they are."""
    return [s if isinstance(s, nn.Module) else load_run(s).model for s in sources]


def _row_keys(x: torch.Tensor) -> list[bytes]:
    """A 16-byte digest of each row's exact bytes: (N, ...) -> N keys."""
    rows = x.detach().cpu().contiguous().numpy().reshape(len(x), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


class Teachers:
    """One or more teacher models, frozen: eval mode, no gradients, parameters not trainable.

    ``logits(x)`` gives every member's logits stacked (M, N, K); how they are
    combined (softened and averaged) is the loss's business. One ``Teachers``
    may serve several losses (e.g. one per temperature) and share its cache.
    """

    def __init__(self, models: Sequence[nn.Module], *, cache: bool = False) -> None:
        if not models:
            raise CnnzipError("distillation needs at least one teacher (--teacher RUN)")
        self.models = list(models)
        for m in self.models:
            m.eval()
            m.requires_grad_(False)
        self._cache: dict[bytes, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.models)

    @property
    def cached(self) -> int:
        """How many distinct rows the cache holds (0 without a cache)."""
        return len(self._cache) if self._cache is not None else 0

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Members' logits for inputs x (N, ...): (M, N, K), float32, on x's device."""
        if self._cache is None:
            return self._forward(x)
        keys = _row_keys(x)
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            fresh = self._forward(x[missing]).cpu()  # (M, len(missing), K)
            for i, z in zip(missing, fresh.unbind(1), strict=True):
                self._cache[keys[i]] = z  # (M, K)
        return torch.stack([self._cache[k] for k in keys], dim=1).to(x.device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for m in self.models:
            m.eval()  # whoever called .train() on it since, a teacher predicts in eval mode
            m.to(x.device)
            outs.append(m(x).float())  # (N, K)
        return torch.stack(outs)

    @torch.no_grad()
    def accuracy(self, split: Split, *, batch_size: int = 1000) -> float:
        """Accuracy of the ensemble's prediction: the argmax of the members' mean probabilities."""
        correct = 0
        for x, y in batches(split, batch_size):
            probs = self._forward(x).softmax(-1).mean(0)  # (N, K)
            correct += int((probs.argmax(1) == y).sum())
        return correct / max(len(split), 1)
