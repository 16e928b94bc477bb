"""Verbs for pruning: ``prune`` (prune -> retrain to a target; ``--structured`` removes
whole channels instead) and ``sensitivity``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from cnnzip import prune as P
from cnnzip.cli.app import check_not_sources, check_run_out, emit, main
from cnnzip.cli.distill import Teaching, teacher_options
from cnnzip.cli.options import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    DataSpec,
    FiniteFloat,
    Recorded,
    data_options,
    json_option,
    out_option,
    train_options,
)
from cnnzip.data import Dataset
from cnnzip.profiling import ProfileReport, comparison, comparison_text, profile
from cnnzip.prune.sensitivity import CACHE
from cnnzip.prune.structured import IMPORTANCES, slim
from cnnzip.prune.structured.allocate import Allocation, allocate_channels
from cnnzip.recipes.stages import MAX_ROUND_TO, MAX_STEPS
from cnnzip.runs import Run, load_run, save_run
from cnnzip.train import TrainConfig, evaluate, fit
from cnnzip.train.checkpoint import check_writable

# overall sparsities tried in turn by --max-drop, each followed by retraining
SEARCH = (0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


def _ratios_option(text: str | None) -> tuple[float, ...]:
    if not text:
        return P.DEFAULT_RATIOS
    try:
        ratios = sorted({0.0, *(float(r) for r in text.split(","))})
    except ValueError:
        raise P.PruneError(f"--ratios expects numbers separated by commas, got {text!r}") from None
    return tuple(P.check_sparsity(r, "each ratio") for r in ratios)


@main.command("sensitivity")
@click.argument("source", type=click.Path())
@data_options
@click.option("--layer", "layers", multiple=True, help="Only this layer (repeatable).")
@click.option("--ratios", default=None, help="Comma-separated ratios [default: 0 to 0.995].")
@click.option(
    "--plot", "plot_path", default=None, help="PNG to write [default: RUN/sensitivity.png]."
)
@json_option
def sensitivity_cmd(
    source: str,
    dataset: DataSpec,
    layers: tuple[str, ...],
    ratios: str | None,
    plot_path: str | None,
    as_json: bool,
) -> None:
    """Prune each layer of run SOURCE alone at a sweep of ratios and measure (no retraining).

    The curves are cached as SOURCE/sensitivity.json and plotted to a PNG."""
    png = Path(plot_path or Path(source) / "sensitivity.png")
    check_not_sources([png], [source])
    run = load_run(source)
    check_writable(png)
    targets = P.prunable(run.model, layers)
    data = dataset.load(run.normalization, trained=Recorded(source, run.meta))  # as trained
    sens = P.cached(run.path, run.model, data.val, targets, _ratios_option(ratios))
    P.plot(sens, png)
    result = {
        "layers": [vars(c) for c in sens.curves],
        "curves": str(run.path / CACHE),
        "plot": str(png),
    }
    emit(result, as_json, lambda r: f"{sens.table()}\ncurves: {r['curves']}\nplot: {r['plot']}")


@main.command("prune")
@click.argument("source", type=click.Path())
@click.option("--sparsity", type=float, default=None, help="Fraction of the weights to remove.")
@click.option("--auto", "auto", is_flag=True, help="Per-layer ratios from the sensitivity curves.")
@click.option("--max-drop", type=NON_NEGATIVE, default=None, help="Largest validation drop, in pp.")
@click.option("--budget", type=COUNT, default=None, help="Size budget in bytes (sparse fp32).")
@click.option("--layer", "layers", multiple=True, help="Prune only this layer (repeatable).")
@click.option(
    "--structured", is_flag=True, help="Remove whole channels: a smaller dense model (below)."
)
@click.option(
    "--macs",
    type=FiniteFloat(0.0, 1.0, min_open=True),
    default=None,
    help="--structured: fraction of the MACs to keep, e.g. 0.5.",
)
@click.option(
    "--params",
    "params_kept",
    type=FiniteFloat(0.0, 1.0, min_open=True),
    default=None,
    help="--structured: fraction of the parameters to keep.",
)
@click.option(
    "--latency-ms",
    type=POSITIVE,
    default=None,
    help="--structured: measured batch-1 latency to reach, in ms.",
)
@click.option(
    "--importance",
    type=click.Choice(IMPORTANCES),
    default="l1",
    show_default=True,
    help="--structured: channel ranking: filter L1/L2 norm, or BatchNorm |gamma| (bn).",
)
@click.option(
    "--round-to",
    type=click.IntRange(1, MAX_ROUND_TO),
    default=1,
    show_default=True,
    help="--structured: keep channel counts multiples of N (8: whole SIMD vectors); "
    "groups cut in whole shuffle columns or conv groups keep their own step.",
)
@click.option(
    "--uniform",
    is_flag=True,
    help="--structured: no sensitivity sweep: one ratio for every channel group (with "
    "--by-latency, skewed toward the groups saving more time per MAC).",
)
@click.option(
    "--by-latency",
    is_flag=True,
    help="--structured: cut more where a per-group latency table (measured once, 1 "
    "thread) saves more time per MAC, at the same target.",
)
@click.option(
    "--branches",
    type=click.IntRange(0, None),
    default=0,
    show_default=True,
    help="--structured: first remove N residual branches whole (those whose loss costs "
    "least per MAC saved): fewer layers, for batch-1 latency.",
)
@click.option(
    "--steps",
    type=click.IntRange(1, MAX_STEPS),
    default=3,
    show_default=True,
    help="Prune -> retrain steps.",
)
@train_options(
    epochs=3, base=P.RETRAIN, epochs_help="Retraining epochs/step.", lr_help="Retraining lr (Adam)."
)
@out_option("Run to write")
@data_options
@teacher_options
@json_option
def prune_cmd(
    source: str,
    sparsity: float | None,
    auto: bool,
    max_drop: float | None,
    budget: int | None,
    layers: tuple[str, ...],
    structured: bool,
    macs: float | None,
    params_kept: float | None,
    latency_ms: float | None,
    importance: str,
    round_to: int,
    uniform: bool,
    by_latency: bool,
    branches: int,
    steps: int,
    cfg: TrainConfig,
    out: str,
    dataset: DataSpec,
    teaching: Teaching,
    as_json: bool,
) -> None:
    """Prune run SOURCE by magnitude with retraining, and save it (masks included) as OUT.

    Give one target: --sparsity S (uniform per layer; --auto chooses per-layer
    ratios from the sensitivity curves), --max-drop PP (the sparsest point of
    the automatic path within PP of the dense validation accuracy), or
    --budget BYTES (automatic ratios that fit the size). With --teacher the
    retraining distills from the teacher runs.

    --structured removes whole filters and channels (coupled ones together) for a
    physically smaller dense model, faster on any runtime; give one target: --macs F
    or --params F (the fraction kept) or --latency-ms T (measured at batch 1). Per-group
    ratios follow each group's sensitivity on the validation data (--uniform: one
    ratio); then --epochs of retraining. OUT records the kept channels, so load_run and
    a .cnnz rebuild the slim model."""
    by_weight = [sparsity, max_drop, budget] != [None] * 3 or auto or bool(layers)
    _check_mode(structured, [macs, params_kept, latency_ms].count(None) != 3, by_weight)
    if structured:
        target = {"macs": macs, "params": params_kept, "latency_ms": latency_ms}
        options = {"importance": importance, "round_to": round_to, "uniform": uniform,
                   "by_latency": by_latency, "branches": branches, "cfg": cfg}  # fmt: skip
        _structured(source, out, dataset, teaching, target, options, as_json)
        return
    if [sparsity, max_drop, budget].count(None) != 2:
        raise P.PruneError("give exactly one of --sparsity, --max-drop, --budget")
    target = {"sparsity": sparsity, "auto": auto, "max_drop": max_drop, "budget": budget}
    _by_magnitude(source, out, dataset, teaching, layers, target, steps, cfg, as_json)


def _check_mode(structured: bool, channel_targets: bool, weight_targets: bool) -> None:
    """One mode's options with the other's are refused, never silently ignored."""
    given = _given(["importance", "round_to", "uniform", "by_latency", "branches", "steps"])
    if not structured and (channel_targets or given - {"steps"}):
        raise P.PruneError(
            "--macs, --params, --latency-ms, --importance, --round-to, --uniform, "
            "--by-latency and --branches go with --structured; without it single weights "
            "are pruned"
        )
    if structured and "steps" in given:
        raise P.PruneError("--steps is for weight pruning; --structured prunes once, then retrains")
    if structured and weight_targets:
        raise P.PruneError(
            "--structured takes --macs, --params or --latency-ms, not --sparsity, --auto, "
            "--max-drop, --budget or --layer (those prune single weights)"
        )


def _given(names: list[str]) -> set[str]:
    """Those of the command's ``names`` the user set (not left at their defaults): an
    option that does not apply to the chosen mode is refused, not silently ignored."""
    ctx = click.get_current_context()
    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)  # not default_map's
    return {n for n in names if ctx.get_parameter_source(n) in typed}


def _by_magnitude(
    source: str,
    out: str,
    dataset: DataSpec,
    teaching: Teaching,
    layers: tuple[str, ...],
    target: dict[str, Any],
    steps: int,
    cfg: TrainConfig,
    as_json: bool,
) -> None:
    """``prune`` of single weights: the plan ``target`` asks for (see ``_plan``), then
    iterative pruning with retraining, saved as run ``out``."""
    check_run_out(out)
    check_not_sources([out], [source, *teaching.teachers])
    start = time.perf_counter()
    run = load_run(source)
    targets = P.prunable(run.model, layers)
    data = dataset.load(run.normalization, trained=Recorded(source, run.meta))  # as trained
    plan, max_val_drop = _plan(run, data, targets, steps=steps, **target)
    loss_fn = teaching.loss(data.name, cache=data.augment is None)
    report = P.iterative(
        run.model, data, plan, config=cfg, max_val_drop=max_val_drop, loss_fn=loss_fn
    )
    result = _result(report, run, Path(out), time.perf_counter() - start)
    save_run(
        out,
        run.model,
        arch=run.arch,
        kwargs=run.kwargs,
        **data.record(),  # name, classes, input shape (a factory's profile reads it)
        normalization=data.stats.to_json(),
        source=str(source),
        metrics={k: result[k] for k in ("test_accuracy", "baseline_test_accuracy", "drop_pp")},
        config=vars(cfg),
        prune=report.to_dict(),
    )
    emit(result, as_json, lambda r: f"{report.table()}\n-> {out}")


def _plan(
    run: Run,
    data: Dataset,
    targets: list[str],
    sparsity: float | None,
    auto: bool,
    max_drop: float | None,
    budget: int | None,
    steps: int,
) -> tuple[list[dict[str, float]], float | None]:
    """The ratios of each prune step, and the validation drop that stops the search."""
    if sparsity is not None and not auto:
        P.check_sparsity(sparsity)
        return P.growing_plan(dict.fromkeys(targets, sparsity), steps), None
    curves = P.cached(run.path, run.model, data.val, targets).curves
    if max_drop is not None:
        return P.sparsity_path(curves, SEARCH), max_drop / 100
    if budget is not None:
        prunable = sum(c.weights for c in curves)
        dense = sum(p.numel() for p in run.model.parameters()) - prunable
        sparsity = P.budget_sparsity(prunable, dense, budget)
    assert sparsity is not None
    return P.growing_plan(P.allocate(curves, sparsity), steps), None


def _result(report: P.PruneReport, run: Run, out: Path, seconds: float) -> dict[str, Any]:
    base, last = report.steps[0], report.steps[-1]
    assert base.test_accuracy is not None and last.test_accuracy is not None
    return {
        "test_accuracy": last.test_accuracy,
        "baseline_test_accuracy": base.test_accuracy,
        "drop_pp": 100 * (base.test_accuracy - last.test_accuracy),
        "kept_fraction": report.kept_fraction,
        "kept": report.kept,
        "weights": report.weights,
        "layers": [s.to_dict() for s in report.layers],
        "steps": [vars(s) for s in report.steps],
        "skipped": [list(s) for s in report.skipped],
        "source": str(run.path),
        "run": str(out),
        "seconds": seconds,
    }


def _structured(
    source: str,
    out: str,
    dataset: DataSpec,
    teaching: Teaching,
    target: dict[str, float | None],
    options: dict[str, Any],
    as_json: bool,
) -> None:
    """``prune --structured``: allocate channels, slim, retrain, save; MACs, params and
    measured batch-1 latency before and after."""
    if list(target.values()).count(None) != 2:
        raise P.PruneError("--structured needs exactly one of --macs, --params, --latency-ms")
    check_run_out(out)
    check_not_sources([out], [source, *teaching.teachers])
    start = time.perf_counter()
    run = load_run(source)
    data = dataset.load(run.normalization, trained=Recorded(source, run.meta))  # as trained
    shape = data.input_shape
    chosen = allocate_channels(
        run.model,
        shape,
        None if options["uniform"] else data.val,
        importance=options["importance"],
        round_to=options["round_to"],
        by_latency=options["by_latency"],
        branches=options["branches"],
        **target,
    )
    small = slim(run.model, chosen.plan, shape)
    cfg: TrainConfig = options["cfg"]
    fit(small, data, cfg, loss_fn=teaching.loss(data.name, cache=data.augment is None))
    before, after = _measured(run.model, shape), _measured(small, shape)
    result = {
        **chosen.to_dict(),
        "baseline_test_accuracy": evaluate(run.model, data.test)["accuracy"],
        "test_accuracy": evaluate(small, data.test)["accuracy"],
        "profile": comparison((str(out), str(source)), after, before),
        "source": str(run.path),
        "run": str(out),
        "seconds": time.perf_counter() - start,
    }
    result["drop_pp"] = 100 * (result["baseline_test_accuracy"] - result["test_accuracy"])
    save_run(
        out,
        small,
        arch=run.arch,
        kwargs=run.kwargs,
        **data.record(),  # name, classes, input shape
        normalization=data.stats.to_json(),
        source=str(source),
        metrics={k: result[k] for k in ("test_accuracy", "baseline_test_accuracy", "drop_pp")},
        config=vars(cfg),
        structured={k: v for k, v in result.items() if k not in ("profile", "seconds")},
    )
    emit(result, as_json, lambda r: _structured_text(chosen, r))


def _measured(model: Any, shape: tuple[int, ...]) -> ProfileReport:
    """Counts and the measured batch-1 latency (one thread as set, median of 20 runs)."""
    return profile(model, shape, measure_latency=True, runs=20, warmup=3)


def _structured_text(chosen: Allocation, r: dict[str, Any]) -> str:
    return (  # the table says whether a latency target was met
        f"{chosen.table()}\n{comparison_text(r['profile'])}\n"
        f"test accuracy {r['baseline_test_accuracy']:.4f} -> {r['test_accuracy']:.4f} "
        f"({-r['drop_pp']:+.2f} pp)\n-> {r['run']}"
    )
