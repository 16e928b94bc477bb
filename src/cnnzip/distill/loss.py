"""Hinton et al.'s distillation loss, with ensemble teachers built in.

    loss = soft_weight * T^2 * KL(p_T || q_T) + hard_weight * CE(y, q_1)

p_T is the teachers' softened distribution, softmax(z / T) averaged over the
ensemble's members (probabilities are averaged, not logits: that is what an
ensemble predicts); q_T the student's at the same T. The T^2 keeps the soft
term's gradients the same size whatever T, so the weights need no retuning
when T changes. KL differs from the paper's cross-entropy H(p_T, q_T) only by
the teachers' entropy, a constant for the student: same gradients, and a
loss that reaches 0 when the student matches its teachers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.distill.teachers import Teachers, TeacherSource, load_teachers
from cnnzip.errors import CnnzipError
from cnnzip.train.loop import LossFn, cross_entropy

__all__ = ["KDLoss", "make_loss", "soft_targets"]


def soft_targets(teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """The ensemble's softened distribution: logits (M, N, K) -> probabilities (N, K)."""
    return F.softmax(teacher_logits / T, dim=-1).mean(0)


class KDLoss:
    """A ``loss_fn(logits, y, x)`` for ``cnnzip.train.fit`` distilling ``teachers`` into a model.

    ``teachers`` is one module, a list of modules (an ensemble), or a
    ``Teachers`` (to share its cache between losses). The teachers run on the
    same x the student sees, frozen (see ``Teachers``); ``cache=True`` keeps
    their outputs per sample, for input pipelines without augmentation (a
    ``Teachers`` passed in keeps its own setting). The equal default weights
    were the best measured for LeNet-300-100 from LeNet-5 (BENCHMARKS.md); the
    paper preferred a lower hard weight, which lost accuracy there.
    """

    def __init__(
        self,
        teachers: nn.Module | Sequence[nn.Module] | Teachers,
        T: float = 4.0,
        soft_weight: float = 0.5,
        hard_weight: float = 0.5,
        *,
        cache: bool = False,
    ) -> None:
        if not T > 0 or soft_weight < 0 or hard_weight < 0 or soft_weight + hard_weight == 0:
            raise CnnzipError(
                f"distillation needs T > 0 (got {T}) and non-negative weights, not both 0 "
                f"(got soft {soft_weight}, hard {hard_weight})"
            )
        if isinstance(teachers, nn.Module):
            teachers = [teachers]
        self.teachers = (
            teachers if isinstance(teachers, Teachers) else Teachers(teachers, cache=cache)
        )
        self.T, self.soft_weight, self.hard_weight = (
            float(T),
            float(soft_weight),
            float(hard_weight),
        )

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        p = soft_targets(self.teachers.logits(x), self.T)  # (N, K), no gradient
        if p.shape != logits.shape:
            raise CnnzipError(
                f"teachers give {tuple(p.shape)} outputs but the student {tuple(logits.shape)}: "
                "teachers and student must be trained on the same classes"
            )
        log_q = F.log_softmax(logits / self.T, dim=1)  # (N, K)
        soft = F.kl_div(log_q, p, reduction="batchmean")  # sum_k p (log p - log q), mean over N
        hard = F.cross_entropy(logits, y)
        return self.soft_weight * self.T**2 * soft + self.hard_weight * hard


def make_loss(
    teachers: Sequence[TeacherSource] | None,
    T: float = 4.0,
    soft_weight: float = 0.5,
    hard_weight: float = 0.5,
    *,
    cache: bool = False,
) -> LossFn:
    """The loss for any stage that retrains: plain cross-entropy, or distillation when given
    teachers (run directories or modules). Pass it to ``fit(..., loss_fn=...)``."""
    if not teachers:
        return cross_entropy
    return KDLoss(load_teachers(teachers), T, soft_weight, hard_weight, cache=cache)
