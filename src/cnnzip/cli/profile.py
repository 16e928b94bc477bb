"""The ``profile`` verb: what a zoo model or a saved run costs, and theory against measurement."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import click
import torch.nn as nn

from cnnzip.cli.app import emit, main, parse_kwargs
from cnnzip.cli.factory import factories_of, load_cnnz, model_option, trusting
from cnnzip.cli.options import (
    COUNT,
    POSITIVE,
    THREADS,
    json_option,
    kwargs_option,
    max_params_option,
)
from cnnzip.codec import read as read_cnnz
from cnnzip.codec.header import MAX_PARAMS
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model, get_model_builder
from cnnzip.profiling import ProfileReport, comparison, comparison_text, measure_latency, profile
from cnnzip.runs import load_run

max_memory_option = click.option(
    "--max-memory",
    type=POSITIVE,
    default=8.0,
    show_default=True,
    metavar="GB",
    help="Refuse an input whose forward would need more memory than this.",
)


@main.command("profile")
@click.argument("sources", nargs=-1, required=True, metavar="NAME|RUN|FILE.cnnz [B]")
@click.option(
    "--input",
    "size",
    type=COUNT,
    default=None,
    help="Input side in pixels [default: the model's img_size, else 224].",
)
@kwargs_option(
    "Builder keyword argument (repeatable), e.g. -k width_mult=0.5; with --compare, "
    "for both models."
)
@click.option("--batch", type=COUNT, default=1, show_default=True, help="Batch size for latency.")
@click.option(
    "--threads", type=THREADS, default=None, help="Threads for latency [default: torch's]."
)
@click.option("--latency", is_flag=True, help="Also measure latency.")
@click.option("--runs", type=COUNT, default=10, show_default=True, help="Timed runs.")
@click.option(
    "--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed runs first."
)
@max_memory_option
@click.option(
    "--compare", "compare_two", is_flag=True, help="Profile A and B: MAC ratio beside latency."
)
@max_params_option
@model_option()
@json_option
def profile_cmd(
    sources: tuple[str, ...],
    size: int | None,
    kwargs: tuple[str, ...],
    batch: int,
    threads: int | None,
    latency: bool,
    runs: int,
    warmup: int,
    compare_two: bool,
    max_memory: float,
    max_params: int,
    model_spec: str | None,
    as_json: bool,
) -> None:
    """Parameters, MACs (multiply-accumulates), bytes per layer and measured latency.

    NAME is a zoo name (see `cnnzip models`), RUN a run directory, FILE.cnnz a
    compressed file of a zoo model (profiled as it decodes: dense tensors). With
    --compare, give two models A B: it prints how many times fewer MACs A
    needs than B beside how many times faster A runs (both B/A).
    """
    if len(sources) != (2 if compare_two else 1):
        want = "two models A B with --compare" if compare_two else "one NAME or RUN"
        raise CnnzipError(f"profile takes {want}, got {len(sources)}: {' '.join(sources)}")
    timing = {"runs": runs, "warmup": warmup, "threads": threads, "batch": batch}
    reports = []
    for source in sources:
        model, shape = build_model(source, size, parse_kwargs(kwargs), max_params, model_spec)
        check_memory(source, model, shape, 1, max_memory)  # the traced sample itself
        report = profile(model, shape)
        if latency or compare_two:
            check_memory(source, model, shape, batch, max_memory, report)
            report.latency = measure_latency(model, shape, **timing)
        reports.append(report)
    if compare_two:
        _emit_comparison(sources, reports, as_json)
    else:
        emit({"model": sources[0], **reports[0].to_dict()}, as_json, lambda r: str(reports[0]))


def check_memory(
    source: str,
    model: nn.Module,
    shape: tuple[int, ...],
    batch: int,
    max_gb: float,
    report: ProfileReport | None = None,
) -> None:
    """Refuse before allocating: ``batch`` inputs of ``shape``, plus as many of the largest
    layer output of ``report`` (a traced forward; without one, before tracing, the input
    alone) must fit ``max_gb``: ``--input 100000`` would ask for a 120 GB tensor."""
    itemsize = next((p.element_size() for p in model.parameters() if p.is_floating_point()), 4)
    layers = report.layers if report else []
    largest = max((layer.activation_bytes for layer in layers), default=0)
    need = batch * (math.prod(shape) * itemsize + largest)
    if need > max_gb * 2**30:
        raise CnnzipError(
            f"{source} at input {shape} and batch {batch} needs about {need / 2**30:,.1f} GB, "
            f"over --max-memory {max_gb:g} GB: lower --input or --batch, or raise "
            "--max-memory if the machine has the memory"
        )


def build_model(
    source: str,
    size: int | None,
    kwargs: dict[str, Any],
    max_params: int = MAX_PARAMS,
    spec: str | None = None,
) -> tuple[nn.Module, tuple]:
    """The model and one sample's input shape, for a zoo name, a run directory or a .cnnz
    (decoded within ``max_params`` elements; of the user's factory only with ``spec``,
    ``--model``, repeating it)."""
    if (Path(source).is_dir() or Path(source).is_file()) and kwargs:
        raise CnnzipError(f"-k applies to zoo names; {source} says how it is built")
    if Path(source).is_dir():
        with trusting(spec):
            run = load_run(source)
        return run.model, recorded_input_shape(run.arch, run.kwargs, run.meta, size)
    if Path(source).is_file():
        header = read_cnnz(source).header
        arch = header.get("arch") or {}
        if not arch:
            raise CnnzipError(
                f"{source} names no zoo architecture, so this command cannot rebuild its "
                "model: load it in Python with cnnzip.load(path, model) and call "
                "cnnzip.profile or cnnzip.runtime.bench_sparse on it"
            )
        model = load_cnnz(source, spec, max_params)
        meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
        return model, recorded_input_shape(arch["name"], arch.get("kwargs") or {}, meta, size)
    params = inspect.signature(get_model_builder(source)).parameters
    if size is not None and "img_size" in params:
        kwargs = {"img_size": size, **kwargs}  # the head is sized for the input
    return get_model(source, **kwargs), input_shape(source, kwargs, size)


def recorded_input_shape(
    arch: str, kwargs: dict[str, Any], meta: dict[str, Any], size: int | None
) -> tuple[int, ...]:
    """``input_shape``; of the user's own factory, whose arguments need not name its
    input, the data's shape its run.json or .cnnz ``meta`` records (side set by ``size``)."""
    recorded = meta.get("input_shape")
    valid = isinstance(recorded, list) and len(recorded) in (1, 3)
    if not factories_of(arch, kwargs) or not valid or not all(map(_is_side, recorded)):
        return input_shape(arch, kwargs, size)
    return (recorded[0], size, size) if size and len(recorded) == 3 else tuple(recorded)


def _is_side(value: Any) -> bool:
    return type(value) is int and 1 <= value <= 1 << 20  # check_memory bounds the product


def input_shape(arch: str, kwargs: dict[str, Any], size: int | None) -> tuple[int, ...]:
    """(C, H, W) from in_chans/img_size (given, else the builder's defaults, else 3 and 224);
    (in_features,) for a model that takes flat vectors."""
    params = inspect.signature(get_model_builder(arch)).parameters

    def setting(key: str, fallback: Any) -> Any:
        default = params[key].default if key in params else inspect.Parameter.empty
        return kwargs.get(key, fallback if default is inspect.Parameter.empty else default)

    if "base" in params:  # a wrapper of another zoo model (binarized): the base's input
        given = {k: v for k, v in kwargs.items() if k in ("in_chans", "img_size") and v}
        base_kwargs = {**(kwargs.get("base_kwargs") or {}), **given}
        return input_shape(setting("base", None), base_kwargs, size)
    if "in_features" in params and "in_chans" not in params:
        if size is not None:
            raise CnnzipError(f"{arch} takes flat inputs; set -k in_features=N instead of --input")
        return (int(setting("in_features", 0)),)
    side = size or int(setting("img_size", 224))
    return (int(setting("in_chans", 3)), side, side)


def _emit_comparison(sources: tuple[str, ...], reports: list[ProfileReport], as_json: bool) -> None:
    a, b = reports
    emit(comparison((sources[0], sources[1]), a, b), as_json, comparison_text)
