"""Hinton et al.'s MNIST distillation experiment, redone on Fashion-MNIST (reduced).

Teachers: the paper's big net (2x1200 ReLU, dropout 0.5 on hidden units and
0.2 on the inputs, +-2 pixel jitter) and a CNN (LeNet-5, runs/lenet5 when it
exists). Students: 2x800 with no regularisation and 2x30. Each student is
trained alone (hard labels) and distilled at every T from the ensemble of both
teachers, from the same initial weights and batch order, for each seed. Then
the ensemble is set against its best single member: their test accuracies,
and students distilled from each at T=4.

Reductions against the paper, to finish in well under an hour on a busy
2-core CPU: few epochs (``--epochs``, ``--teacher-epochs``), Adam with a
cosine schedule instead of SGD with momentum, no max-norm weight constraint.
Teacher outputs are computed once per teacher set and cached (the students'
inputs repeat every epoch), so a distilled student costs about what it costs
alone.

Every finished run is written at once to a results JSON (``--results``); run
it again with the same arguments and it continues where it stopped.

    .venv/bin/python benchmarks/distill_hinton.py            # full (reduced) grid
    .venv/bin/python benchmarks/distill_hinton.py --table    # print the table only
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnzip import data as cz_data
from cnnzip.distill import KDLoss, Teachers, jitter
from cnnzip.fileio import atomic_write_text
from cnnzip.models import get_model
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, cross_entropy, evaluate, fit

STUDENTS = {"2x800": ("mlp", [800, 800]), "2x30": ("mlp", [30, 30])}
TEMPERATURES = [1.0, 2.0, 4.0, 8.0, 20.0]
TEACHER_SETS = {"mlp1200": ["mlp1200"], "lenet5": ["lenet5"], "ensemble": ["mlp1200", "lenet5"]}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=12)
    p.add_argument(
        "--teacher-dropout", type=float, default=0.25, help="big teacher's hidden dropout"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--temperatures", type=float, nargs="+", default=TEMPERATURES)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="students' Adam learning rate")
    p.add_argument("--soft-weight", type=float, default=0.5)
    p.add_argument("--hard-weight", type=float, default=0.5)
    p.add_argument(
        "--limit",
        type=int,
        default=10000,
        help="first N training images (4/5 train, 1/5 val; 0: all)",
    )
    p.add_argument("--cnn-teacher", default=None, help="use this run as the CNN teacher")
    p.add_argument("--only", nargs="+", default=None, help="run only keys with these prefixes")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest when busy)")
    p.add_argument("--runs", default="runs/distill_hinton", help="teacher run directories")
    p.add_argument("--results", default="benchmarks/results/distill_hinton.json")
    p.add_argument("--table", action="store_true", help="only print the table of saved results")
    return p.parse_args()


def load_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def record(results: dict[str, Any], path: Path, key: str, value: dict[str, Any]) -> None:
    """Save one finished run at once, so an interrupted benchmark loses at most one run."""
    results[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1, sort_keys=True) + "\n")


def train_teacher(name: str, data: cz_data.Dataset, args: argparse.Namespace) -> nn.Module:
    """The teacher's run directory if it exists, else train it (on the students' data)."""
    path = Path(args.runs) / name
    if (path / "run.json").exists():
        return load_run(path).model
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"num_classes": data.num_classes}
    if name == "mlp1200":  # lighter dropout than the paper's 0.5 / 0.2: a short schedule
        kwargs.update(dropout=args.teacher_dropout, input_dropout=0.0)
    model = get_model(name, **kwargs)
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    if name == "mlp1200":
        augment = jitter  # +-2 pixels, as the paper's big teacher
    cfg = TrainConfig(epochs=args.teacher_epochs, batch_size=args.batch_size, seed=0)
    fit(model, data, cfg, augment=augment, progress=False)
    metrics = {"test_accuracy": evaluate(model, data.test)["accuracy"]}
    save_run(path, model, arch=name, kwargs=kwargs, data=data.name, metrics=metrics)
    return model


def train_student(
    student: str,
    seed: int,
    data: cz_data.Dataset,
    args: argparse.Namespace,
    loss_fn: Callable[..., torch.Tensor] = cross_entropy,
) -> dict[str, float]:
    arch, hidden = STUDENTS[student]
    torch.manual_seed(seed)  # alone and distilled start from the same weights
    model = get_model(arch, hidden=hidden, num_classes=data.num_classes)
    start = time.perf_counter()
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed)
    fit(model, data, cfg, loss_fn=loss_fn, progress=False)
    return {
        "test_accuracy": evaluate(model, data.test)["accuracy"],
        "seconds": time.perf_counter() - start,
    }


def jobs(args: argparse.Namespace) -> list[tuple[str, str, str | None, float | None, int]]:
    """(key, student, teacher set, T, seed), cheapest evidence first: 2x800 alone and at T=4,
    then all of 2x30, then the rest of 2x800's T sweep, then the single teachers."""
    out = []
    for student in STUDENTS:
        for seed in args.seeds:
            out.append((f"{student}|alone|seed={seed}", student, None, None, seed))
            for T in args.temperatures:
                out.append(
                    (f"{student}|ensemble|T={T:g}|seed={seed}", student, "ensemble", T, seed)
                )
            for teacher in ("mlp1200", "lenet5"):
                out.append((f"{student}|{teacher}|T=4|seed={seed}", student, teacher, 4.0, seed))

    def priority(job: tuple[str, str, str | None, float | None, int]) -> tuple[int, int]:
        _, student, teacher, T, seed = job
        if student == "2x800" and teacher in (None, "ensemble") and T in (None, 4.0):
            return (0, seed)
        if student == "2x30":
            return (1, seed)
        return (2 if teacher in (None, "ensemble") else 3, seed)

    return sorted(out, key=priority)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    path = Path(args.results)
    results = load_results(path)
    skip = ("table", "threads", "seeds", "only")
    config = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if results.setdefault("config", config) != config:
        raise SystemExit(f"{path} holds results of other settings {results['config']}: move it")
    data = cz_data.load("fashion-mnist", limit=args.limit or None)

    @functools.cache
    def member(name: str) -> nn.Module:
        if name == "lenet5" and args.cnn_teacher:
            return load_run(args.cnn_teacher).model
        return train_teacher(name, data, args)

    @functools.cache
    def teacher_set(name: str) -> Teachers:
        teachers = Teachers([member(m) for m in TEACHER_SETS[name]], cache=True)
        if f"teacher|{name}" not in results:
            accuracy = teachers.accuracy(data.test)
            record(results, path, f"teacher|{name}", {"test_accuracy": accuracy})
        return teachers

    for key, student, teacher, T, seed in jobs(args):
        if key in results or (args.only and not key.startswith(tuple(args.only))):
            continue
        loss_fn = cross_entropy
        if teacher is not None:
            loss_fn = KDLoss(teacher_set(teacher), T, args.soft_weight, args.hard_weight)
        record(results, path, key, train_student(student, seed, data, args, loss_fn))
        print(f"{key}: {results[key]['test_accuracy']:.4f} ({results[key]['seconds']:.0f}s)")
    print(table(results, args))


def _accs(results: dict[str, Any], prefix: str, seeds: list[int]) -> list[float]:
    keys = [f"{prefix}|seed={s}" for s in seeds]
    return [100 * results[k]["test_accuracy"] for k in keys if k in results]


def _cell(accs: list[float]) -> str:
    if not accs:
        return "-"
    spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
    return f"{statistics.mean(accs):.2f}{spread} ({', '.join(f'{a:.2f}' for a in accs)})"


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    seeds = args.seeds
    lines = ["Teachers (test accuracy %):", ""]
    lines += ["| teacher | test acc % |", "|---|---|"]
    for name in TEACHER_SETS:
        if f"teacher|{name}" in results:
            lines.append(f"| {name} | {100 * results[f'teacher|{name}']['test_accuracy']:.2f} |")
    lines += ["", f"Students, test accuracy %: mean ± stdev over seeds {seeds} (per seed)", ""]
    lines += [
        "| student | training | test acc % | beats alone on every seed |",
        "|---|---|---|---|",
    ]
    for student in STUDENTS:
        alone = _accs(results, f"{student}|alone", seeds)
        if alone:
            lines.append(f"| {student} | alone | {_cell(alone)} | |")
        rows = [(f"ensemble T={T:g}", f"{student}|ensemble|T={T:g}") for T in args.temperatures]
        rows += [(f"{t} T=4", f"{student}|{t}|T=4") for t in ("mlp1200", "lenet5")]
        for label, prefix in rows:
            accs = _accs(results, prefix, seeds)
            if not accs:
                continue
            full = len(accs) == len(alone) == len(seeds)
            beats = all(a > b for a, b in zip(accs, alone, strict=True)) if full else None
            mark = "-" if beats is None else ("yes" if beats else "no")
            lines.append(f"| {student} | {label} | {_cell(accs)} | {mark} |")
    return "\n".join(lines)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.table:
        print(table(load_results(Path(arguments.results)), arguments))
    else:
        run(arguments)
