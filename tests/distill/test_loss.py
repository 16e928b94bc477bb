"""KDLoss against a hand computation, and what it may and may not touch."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from cnnzip.data import synthetic
from cnnzip.distill import KDLoss, Teachers, make_loss
from cnnzip.errors import CnnzipError
from cnnzip.runs import save_run
from cnnzip.train import TrainConfig, cross_entropy, fit


class Fixed(nn.Module):
    """A 'teacher' whose logits are given: (K,) the same for every input row."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.register_buffer("z", torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z.expand(len(x), -1)


def _softmax(z: list[float], T: float) -> list[float]:
    e = [math.exp(v / T) for v in z]
    return [v / sum(e) for v in e]


def _hand_loss(teachers, student, y, T, ws, wh, *, average="probs"):
    """Hinton's loss written out with floats, one sample at a time, mean over the batch."""
    total = 0.0
    for s, label in zip(student, y, strict=True):
        if average == "probs":
            members = [_softmax(z, T) for z in teachers]
            p = [sum(col) / len(members) for col in zip(*members, strict=True)]
        else:  # the wrong way: average the logits first
            p = _softmax([sum(col) / len(teachers) for col in zip(*teachers, strict=True)], T)
        q = _softmax(s, T)
        kl = sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))
        ce = -math.log(_softmax(s, 1.0)[label])
        total += ws * T * T * kl + wh * ce
    return total / len(y)


TEACHERS = [[2.0, -1.0, 0.5], [-0.5, 3.0, 0.0]]
STUDENT = [[0.3, 0.1, -0.2], [1.5, -2.0, 0.7]]
Y = [0, 2]


@pytest.mark.parametrize("T", [1.0, 2.5, 8.0])
def test_loss_equals_hand_computation_with_ensemble_average_and_t_squared(T):
    loss_fn = KDLoss([Fixed(z) for z in TEACHERS], T=T, soft_weight=0.7, hard_weight=0.3)
    got = loss_fn(torch.tensor(STUDENT), torch.tensor(Y), torch.zeros(2, 1, 4, 4))
    want = _hand_loss(TEACHERS, STUDENT, Y, T, 0.7, 0.3)
    assert float(got) == pytest.approx(want, rel=1e-5)
    # the hand computation tells averaged probabilities from averaged logits
    assert abs(want - _hand_loss(TEACHERS, STUDENT, Y, T, 0.7, 0.3, average="logits")) > 1e-3


def test_soft_term_scales_with_t_squared_and_hard_term_is_cross_entropy():
    student, y, x = torch.tensor(STUDENT), torch.tensor(Y), torch.zeros(2, 3)
    soft = KDLoss(Fixed(TEACHERS[0]), T=5.0, soft_weight=1.0, hard_weight=0.0)
    kl = _hand_loss(TEACHERS[:1], STUDENT, Y, 5.0, 1.0, 0.0) / 25.0
    assert float(soft(student, y, x)) == pytest.approx(25.0 * kl, rel=1e-5)
    hard = KDLoss(Fixed(TEACHERS[0]), T=5.0, soft_weight=0.0, hard_weight=1.0)
    assert float(hard(student, y, x)) == pytest.approx(float(cross_entropy(student, y, x)))


def test_loss_is_zero_when_student_matches_teacher_and_no_hard_term():
    loss_fn = KDLoss(Fixed(TEACHERS[0]), T=3.0, soft_weight=1.0, hard_weight=0.0)
    student = torch.tensor([TEACHERS[0], TEACHERS[0]])
    assert float(loss_fn(student, torch.tensor(Y), torch.zeros(2, 3))) == pytest.approx(0, abs=1e-6)


def test_gradients_reach_only_the_student():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    student = nn.Linear(6, 3)
    loss_fn = KDLoss(teacher, T=4.0)
    teacher.train()  # a teacher still predicts in eval mode (dropout off)
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    loss_fn(student(x), y, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    first = loss_fn.teachers.logits(x)
    assert torch.equal(first, loss_fn.teachers.logits(x))  # no dropout noise


def test_fit_trains_student_leaves_teacher_untouched():
    data = synthetic(n_train=256, n_val=64, n_test=64)
    teacher, student = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), nn.Linear(784, 10)
    before = [p.clone() for p in teacher.parameters()]
    student_before = student.weight.clone()
    wrapped = nn.Sequential(nn.Flatten(), student)
    fit(
        wrapped, data, TrainConfig(epochs=1, batch_size=64), loss_fn=KDLoss(teacher), progress=False
    )
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    assert not torch.equal(student_before, student.weight)


def _agreement_after_training(soft_weight: float, hard_weight: float) -> float:
    """Train a linear student on random labels; how often it then agrees with a linear teacher."""
    torch.manual_seed(0)
    data = synthetic(n_train=512, n_val=64, n_test=256, shape=(1, 8, 8))
    random_labels = torch.randint(0, 10, (len(data.train),))
    data = replace(data, train=replace(data.train, y=random_labels))
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # a random linear 'expert'
    with torch.no_grad():
        teacher[1].weight.mul_(3.0)  # confident enough that its soft targets say something
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    loss_fn = KDLoss(teacher, T=2.0, soft_weight=soft_weight, hard_weight=hard_weight)
    cfg = TrainConfig(epochs=5, batch_size=64, lr=0.05)
    fit(student, data, cfg, loss_fn=loss_fn, progress=False)
    with torch.no_grad():
        x = data.test.x  # unseen inputs
        return float((student(x).argmax(1) == teacher(x).argmax(1)).float().mean())


def test_soft_targets_alone_teach_the_teachers_function():
    """With random labels, a student learns the teacher's function only through the soft term."""
    assert _agreement_after_training(soft_weight=1.0, hard_weight=0.0) > 0.7
    assert _agreement_after_training(soft_weight=0.0, hard_weight=1.0) < 0.3


def test_make_loss_without_teachers_is_cross_entropy_and_with_runs_distils(tmp_path):
    assert make_loss(None) is cross_entropy
    assert make_loss([]) is cross_entropy
    torch.manual_seed(0)
    from cnnzip.models import get_model

    teacher = get_model("mlp30")
    save_run(tmp_path / "t", teacher, arch="mlp30", kwargs={})
    loss_fn = make_loss([tmp_path / "t", teacher], T=2.0, soft_weight=1.0, hard_weight=0.0)
    assert isinstance(loss_fn, KDLoss) and len(loss_fn.teachers) == 2
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        same = teacher(x)
    # the loaded copy and the module are the same net: their average is the net itself
    assert float(loss_fn(same, torch.zeros(4, dtype=torch.long), x)) == pytest.approx(0, abs=1e-5)


def test_bad_settings_and_shape_mismatch_are_clear_errors():
    with pytest.raises(CnnzipError, match="T > 0"):
        KDLoss(Fixed([0.0, 1.0]), T=0)
    with pytest.raises(CnnzipError, match="not both 0"):
        KDLoss(Fixed([0.0, 1.0]), soft_weight=0, hard_weight=0)
    with pytest.raises(CnnzipError, match="at least one teacher"):
        Teachers([])
    loss_fn = KDLoss(Fixed([0.0, 1.0]))
    with pytest.raises(CnnzipError, match="same classes"):
        loss_fn(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 5))
