"""``run_survey``: train, profile, compress, binarize and distill the survey's rows,
resumably, then write its tables and plots.

Every trained model is a run directory under DIR/runs (trained with a checkpoint each
epoch and ``resume``, so a killed run continues where its last epoch ended); each step's
numbers go to DIR/results.json as soon as they are measured (``Results``), so a rerun
skips what is done. Every step is the public library: ``fit``/``evaluate``, ``compress``
with the built-in "deep-compression" recipe, ``profile``, ``binarize_run`` and
``compile_binary``, ``distill.make_loss``, ``save_run``/``load_run``, ``codec.save``/``load``.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnzip import codec, prune
from cnnzip.binary import binarize_run
from cnnzip.data import Dataset
from cnnzip.distill import make_loss
from cnnzip.errors import RunError, one_line
from cnnzip.models import get_model
from cnnzip.profiling import profile
from cnnzip.profiling.latency import num_threads
from cnnzip.recipes import compress, load_recipe
from cnnzip.runs import CHECKPOINT, META, Run, load_run, save_run
from cnnzip.runtime import compile_binary
from cnnzip.runtime.bench import median_ms
from cnnzip.survey.plan import (
    FULL,
    IMG_SIZE,
    QUICK,
    SEED,
    STUDENT,
    TEACHERS,
    Budget,
    Row,
    model_kwargs,
    select_rows,
    survey_data,
)
from cnnzip.survey.report import write_report
from cnnzip.survey.results import Results
from cnnzip.train import TrainConfig, evaluate, fit
from cnnzip.train.loop import LossFn, cross_entropy

__all__ = ["LATENCY_THREADS", "cpu_name", "run_survey", "time_survey"]

LATENCY_THREADS = (1, 2)  # batch-1 latency is measured at each
SHAPE = (1, IMG_SIZE, IMG_SIZE)  # one sample (C, H, W)
DISTILL = "distill"  # the distillation row's name in results.json and --only
TEMPERATURE = 4.0  # Hinton et al.: 2.5-4 best for small students


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


@dataclass
class Task:
    """One step of one row: its numbers are ``run()``'s, stored under (row, step)."""

    row: str
    step: str
    run: Callable[[], dict[str, Any]]


@dataclass
class Survey:
    """The study in folder ``out`` at ``budget``; ``log`` gets the progress lines."""

    out: Path
    budget: Budget
    log: Callable[[str], None] = print
    results: Results = field(init=False)

    def __post_init__(self) -> None:
        self.results = Results(self.out)

    @cached_property
    def data(self) -> Dataset:
        """Loaded once, on the first step that needs it (a rerun with nothing to do never)."""
        return survey_data(self.budget)

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name

    def config(self, row: Row | None = None, epochs: int | None = None) -> TrainConfig:
        lr = row.lr if row is not None and row.lr is not None else self.budget.lr
        epochs = self.budget.epochs if epochs is None else epochs
        return TrainConfig(epochs=epochs, batch_size=self.budget.batch_size, lr=lr, seed=SEED)

    # ---- steps --------------------------------------------------------------------------

    def train(self, row: Row) -> dict[str, Any]:
        kwargs, cfg = model_kwargs(row, self.budget), self.config(row)
        run = self.trained(self.run_dir(row.name), row.arch, kwargs, cfg)
        return {**run.meta["metrics"], "run": str(run.path), "kwargs": kwargs, **self.spent(cfg)}

    def spent(self, cfg: TrainConfig) -> dict[str, Any]:
        """The row's training budget, for results.json."""
        return {"config": asdict(cfg), "train_images": self.budget.train_images}

    def trained(
        self,
        path: Path,
        arch: str,
        kwargs: dict[str, Any],
        cfg: TrainConfig,
        loss_fn: LossFn = cross_entropy,
    ) -> Run:
        """The run at ``path``, trained first unless it is finished (run.json is written
        last); an interrupted one resumes from its checkpoint."""
        if not (path / META).exists():
            torch.manual_seed(cfg.seed)  # the initial weights are part of the run's seed
            model = get_model(arch, **kwargs)
            start = time.perf_counter()
            result = fit(
                model, self.data, cfg, loss_fn=loss_fn, checkpoint=path / CHECKPOINT, resume=True
            )
            test = evaluate(model, self.data.test)
            metrics = {
                "test_accuracy": test["accuracy"],
                "test_loss": test["loss"],
                "val_accuracy": result.final.get("val_accuracy"),
                "train_seconds": time.perf_counter() - start,
            }
            history = result.history
            save_run(
                path,
                model,
                arch=arch,
                kwargs=kwargs,
                data=self.data.name,
                metrics=metrics,
                config=asdict(cfg),
                history=history,
            )
        return load_run(path)

    def float_run(self, row: Row) -> Run:
        """The row's trained model. Run folders are not committed (only their numbers
        are): where the row's train step is done but its folder is missing (a new
        checkout), the row is trained again from its seed and its train numbers replaced
        by the new run's, so that what follows reads the model it compresses or times."""
        path = self.run_dir(row.name)
        if not (path / META).exists() and self.results.get(row.name, "train") is not None:
            self.log(f"survey: {row.name}'s trained model is not in {path}: training it again")
            start = time.perf_counter()
            values = self.train(row)
            self.results.put(row.name, "train", {**values, "seconds": time.perf_counter() - start})
        return load_run(path)

    def profile(self, row: Row) -> dict[str, Any]:
        model = self.float_run(row).model
        report = profile(model, SHAPE)
        return {
            "params": report.params,
            "macs": report.macs,
            "float32_bytes": 4 * report.params,
            "latency_ms": self.latencies(model),
            "load_avg_1min": os.getloadavg()[0],  # > 0.5 or so: another job shared the cores
        }

    def latencies(self, model: nn.Module) -> dict[str, float]:
        """Median batch-1 latency at each of LATENCY_THREADS threads, in ms."""
        runs = self.budget.latency_runs
        return {str(t): self.latency(model, t, runs) for t in LATENCY_THREADS}

    @staticmethod
    def latency(model: nn.Module, threads: int, runs: int) -> float:
        report = profile(model, SHAPE, measure_latency=True, threads=threads, runs=runs)
        return report.latency.median_ms

    def compress(self, row: Row) -> dict[str, Any]:
        run = self.float_run(row)
        before = self.need(row.name, "train")["test_accuracy"]
        float_bytes = self.need(row.name, "profile")["float32_bytes"]
        result = compress(
            run.model,
            self.data,
            load_recipe("deep-compression", self.recipe_overrides(row, run.model)),
            arch={"name": run.arch, "kwargs": run.kwargs},
            meta={"source": str(run.path), "baseline_test_accuracy": before},
            log=self.log,
            work_dir=self.run_dir(f"{row.name}-compress"),  # a killed survey resumes here
        )
        path = self.cnnz_path(row.name)
        result.save(path)
        file = self.measured_file(path)
        return {
            **file,
            "ratio": float_bytes / file["bytes"],
            "drop_pp": 100 * (before - file["test_accuracy"]),
            "kept_fraction": next(
                (s["kept_fraction"] for s in result.log if "kept_fraction" in s), None
            ),
            "recipe": result.recipe.to_dict(),
        }

    def cnnz_path(self, name: str) -> Path:
        path = self.out / "cnnz" / f"{name}.cnnz"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def measured_file(self, path: Path) -> dict[str, Any]:
        """A written .cnnz: its bytes on disk and the test accuracy of the model decoded
        from it (the file's own, not the model's that wrote it)."""
        accuracy = evaluate(codec.load(path), self.data.test)["accuracy"]
        return {"file": str(path), "bytes": os.path.getsize(path), "test_accuracy": accuracy}

    def recipe_overrides(self, row: Row, model: nn.Module) -> dict[str, Any]:
        """The budget's overrides of the built-in recipe, then the row's lr (pruning at
        it, fine-tuning at a tenth) and, on the full budget, the row's own; with
        ``prune_ratio`` every layer pruned to it (no sensitivity sweep: what quick runs
        can afford)."""
        overrides = dict(self.budget.compress)
        if row.lr is not None:
            overrides.update({"prune.lr": row.lr, "finetune.lr": row.lr / 10})
        if self.budget.prune_ratio is None:
            overrides.update(row.compress)
        else:
            overrides["prune.ratios"] = {t: self.budget.prune_ratio for t in prune.prunable(model)}
        return overrides

    def binary(self, row: Row, mode: str) -> dict[str, Any]:
        """BWN or XNOR from the row's float run, fine-tuned, saved as a run and a .cnnz;
        XNOR also timed on the runtime's kernels against the float model."""
        path = self.run_dir(f"{row.name}-{mode}")
        if not (path / META).exists():  # binarize_run converts the float run's model in place
            cfg = self.config(row, self.budget.binary_epochs)
            binarize_run(
                self.float_run(row),
                self.data,
                path,
                mode=mode,
                config=cfg,
                log=self.log,
                resume=True,
            )
        run = load_run(path)
        file = self.cnnz_path(f"{row.name}-{mode}")
        codec.save(file, run.model, arch={"name": run.arch, "kwargs": run.kwargs})
        values = self.measured_file(file)
        float_bytes = self.need(row.name, "profile")["float32_bytes"]
        values.update(memory_ratio=float_bytes / values["bytes"], run=str(path))
        if mode == "xnor":
            values.update(self.xnor_speed(self.float_run(row).model, compile_binary(run.model)))
        return values

    @torch.no_grad()
    def xnor_speed(self, dense: nn.Module, fast: nn.Module) -> dict[str, Any]:
        """Batch-1 ms of the float model and its XNOR twin on the kernels, as the XNOR
        benchmarks measure them (``runtime.bench.median_ms``): calls interleaved, so the
        load of a shared machine falls on both; at 1 thread also the ratio of CPU times,
        which leaves out the time other processes took."""
        x = torch.randn(1, *SHAPE)
        calls = {"float": _forward(dense, x), "float-xnor": _forward(fast, x)}
        ms = {}
        for t in LATENCY_THREADS:
            with num_threads(t):
                ms[str(t)] = median_ms(calls, self.budget.latency_runs)
        return _xnor_times(ms, "float")

    def distill(self) -> dict[str, Any]:
        """The compact student trained again, with the same budget, from the teacher of
        the best validation accuracy, beside the same student trained alone."""
        trained = {t: self.need(t, "train") for t in TEACHERS}
        teacher = max(TEACHERS, key=lambda t: trained[t]["val_accuracy"] or 0.0)
        alone = self.need(STUDENT, "train")
        student = row_named(STUDENT)
        loss_fn = make_loss([self.float_run(row_named(teacher)).path], T=TEMPERATURE, cache=True)
        kwargs, cfg = model_kwargs(student, self.budget), self.config(student)
        path = self.run_dir(f"{DISTILL}-{STUDENT}")
        run = self.trained(path, student.arch, kwargs, cfg, loss_fn)
        distilled = run.meta["metrics"]["test_accuracy"]
        return {
            "student": STUDENT,
            "teacher": teacher,
            "teacher_accuracy": trained[teacher]["test_accuracy"],
            "alone_accuracy": alone["test_accuracy"],
            "distilled_accuracy": distilled,
            "gain_pp": 100 * (distilled - alone["test_accuracy"]),
            "T": TEMPERATURE,
            "run": str(path),
            **self.spent(cfg),
        }

    @torch.no_grad()
    def latency_pass(self) -> list[str]:
        """Every finished row's float model, and its XNOR twin on the kernels, timed
        again in one pass with all calls interleaved (``median_ms``), so that one quiet
        window times every row alike; the survey's own timings ran beside training and
        other jobs (their ``load_avg_1min`` says how much). Replaces the rows' latency
        numbers and records the pass; returns the names timed. A row whose trained model
        is not here (a new checkout) is timed on the same architecture freshly built (a
        dense float32 model's speed does not depend on its weights' values) and marked
        ``fresh_weights``; an XNOR twin whose run is not here keeps the study's numbers."""
        x = torch.randn(1, *SHAPE)
        calls: dict[str, Callable[[], Any]] = {}
        profiled = [n for n in self.results.data["rows"] if self.results.get(n, "profile")]
        fresh = [n for n in profiled if not (self.run_dir(n) / META).exists()]
        if fresh:
            self.log(f"survey: no trained model here for {', '.join(fresh)}: timed freshly built")
        for name in profiled:
            calls[name] = _forward(self.timing_model(name, name in fresh), x)
            if self.results.get(name, "xnor") and (self.run_dir(f"{name}-xnor") / META).exists():
                run = load_run(self.run_dir(f"{name}-xnor"))
                calls[f"{name}-xnor"] = _forward(compile_binary(run.model), x)
        load, ms = os.getloadavg()[0], {}
        for t in LATENCY_THREADS:
            with num_threads(t):
                ms[str(t)] = median_ms(calls, 3 * self.budget.latency_runs)
        stamp = {"load_avg_1min": load, "latency_pass": _now()}
        for name in profiled:
            lat = {t: ms[t][name]["wall"] for t in ms}
            values = {"latency_ms": lat, **stamp, "fresh_weights": name in fresh}
            self.results.put(name, "profile", {**self.need(name, "profile"), **values})
            if f"{name}-xnor" in calls:
                self.results.put(
                    name, "xnor", {**self.need(name, "xnor"), **_xnor_times(ms, name), **stamp}
                )
        return list(calls)

    def timing_model(self, name: str, fresh: bool) -> nn.Module:
        """The row's trained model, or (``fresh``) its architecture built from its seed."""
        if not fresh:
            return load_run(self.run_dir(name)).model
        row = row_named(name)
        torch.manual_seed(SEED)
        return get_model(row.arch, **model_kwargs(row, self.budget))

    def need(self, row: str, step: str) -> dict[str, Any]:
        """A step's numbers that a later step reads (the plan runs it first)."""
        values = self.results.get(row, step)
        if values is None:
            raise RunError(f"survey: {row}'s {step} step has not run; rerun `cnnzip survey`")
        return values

    # ---- plan ---------------------------------------------------------------------------

    def tasks(self, rows: list[Row], with_distill: bool) -> list[Task]:
        """Every step of ``rows`` in order (a step after the steps it reads)."""
        if with_distill:  # its teachers and student first
            rows = rows + [r for r in select_rows([*TEACHERS, STUDENT]) if r not in rows]
        tasks = []
        for row in rows:
            tasks += [
                Task(row.name, "train", lambda row=row: self.train(row)),
                Task(row.name, "profile", lambda row=row: self.profile(row)),
                Task(row.name, "compress", lambda row=row: self.compress(row)),
            ]
            if row.binary:
                tasks += [
                    Task(row.name, mode, lambda row=row, mode=mode: self.binary(row, mode))
                    for mode in ("bwn", "xnor")
                ]
        if with_distill:
            tasks.append(Task(DISTILL, "train", self.distill))
        return tasks

    def setting(self, threads: int | None) -> dict[str, Any]:
        return {
            "budget": self.budget.to_dict(),
            "data": f"Fashion-MNIST, upsampled bilinearly to {IMG_SIZE}x{IMG_SIZE}, seed {SEED}",
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "threads": threads or torch.get_num_threads(),
            "latency_threads": list(LATENCY_THREADS),
            "date": _now(),
            "torch": torch.__version__,
        }


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """A batch-1 call of ``model`` in eval mode, for ``median_ms``."""
    model.eval()
    return lambda: model(x)


def _xnor_times(ms: dict[str, dict[str, dict[str, float]]], name: str) -> dict[str, Any]:
    """The xnor step's timing fields from ``median_ms`` results per thread count, where
    ``name`` is the float model's key and ``name-xnor`` its twin's."""
    out: dict[str, Any] = {"float_ms": {}, "xnor_ms": {}, "speedup": {}}
    for t, times in ms.items():
        dense, fast = times[name], times[f"{name}-xnor"]
        out["float_ms"][t], out["xnor_ms"][t] = dense["wall"], fast["wall"]
        out["speedup"][t] = dense["wall"] / fast["wall"]
        if t == "1":
            out["cpu_speedup_1"] = dense["cpu"] / fast["cpu"]
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def row_named(name: str) -> Row:
    return select_rows([name])[0]


def run_survey(
    out: str | Path,
    *,
    quick: bool = False,
    only: tuple[str, ...] = (),
    threads: int | None = None,
    log: Callable[[str], None] = print,
    budget: Budget | None = None,
) -> Results:
    """Run every step of the survey missing from ``out``/results.json, then write
    ``out``/SURVEY.md and its plots (also when a step fails: the tables say "pending").

    ``only`` limits the rows (names of ``plan.ROWS``, or "distill"); ``threads`` sets
    torch's threads for training (latency is measured at 1 and 2 threads regardless).
    """
    budget = budget or (QUICK if quick else FULL)
    survey = Survey(Path(out), budget, log)
    _check_budget(survey.results, budget, survey.out)
    names = [n for n in only if n != DISTILL]
    rows = select_rows(names) if names or not only else []  # --only distill: no rows
    tasks = survey.tasks(rows, with_distill=not only or DISTILL in only)
    if threads is not None:
        torch.set_num_threads(threads)
    with survey.results.hold():
        survey.results.set_setting(survey.setting(threads))
        try:
            _run_tasks(survey, tasks)
        finally:
            write_report(survey.results.data, survey.out)
            log(f"survey: tables in {survey.out / 'SURVEY.md'}")
    return survey.results


def time_survey(out: str | Path, *, log: Callable[[str], None] = print) -> Results:
    """Time every finished row of the survey in ``out`` again, in one interleaved pass
    (``Survey.latency_pass``); nothing is trained. Run it with the machine otherwise
    idle: it is the pass the latency tables should come from. Rewrites the tables."""
    results = Results(out)
    budget = QUICK if results.data["setting"].get("budget", {}).get("name") == QUICK.name else FULL
    survey = Survey(Path(out), budget, log)
    with survey.results.hold():
        names = survey.latency_pass()
        write_report(survey.results.data, survey.out)
    log(f"survey: timed {len(names)} model(s) again: {', '.join(names) or 'none finished'}")
    return survey.results


def _check_budget(results: Results, budget: Budget, out: Path) -> None:
    """Numbers of another budget (quick vs full) are never mixed into one table."""
    done = results.data.get("setting", {}).get("budget", {}).get("name")
    if done is not None and done != budget.name and results.data["rows"]:
        raise RunError(
            f"{out} holds the survey's {done} results; write the {budget.name} one to "
            "another folder (-o DIR)"
        )


def _run_tasks(survey: Survey, tasks: list[Task]) -> None:
    """Run the tasks not yet in results.json, in order. A failed step is logged and the
    others go on (a study of hours runs unattended: one row's failure must not cost the
    rest); the steps that read its numbers fail after it; all are named at the end."""
    todo = [t for t in tasks if survey.results.get(t.row, t.step) is None]
    survey.log(f"survey: {len(tasks) - len(todo)} of {len(tasks)} steps done, {len(todo)} to run")
    failed = []
    for i, task in enumerate(todo, 1):
        where = f"survey [{i}/{len(todo)}] {task.row}: {task.step}"
        survey.log(f"{where} ...")
        start = time.perf_counter()
        try:
            values = task.run()
        except Exception as exc:  # reported below, with every other failure
            failed.append(f"{task.row} {task.step} ({type(exc).__name__}: {one_line(str(exc))})")
            survey.log(f"{where} FAILED: {failed[-1]}")
            continue
        values["seconds"] = time.perf_counter() - start
        survey.results.put(task.row, task.step, values)
        survey.log(f"{where} done in {values['seconds']:.1f}s")
    if failed:
        raise RunError(
            f"survey: {len(failed)} step(s) failed: {'; '.join(failed)}; their cells say "
            "pending; fix the cause and rerun `cnnzip survey` (finished steps are kept)"
        )
