"""The ``report`` verb: one self-contained HTML page of a .cnnz file or a run (cnnzip.report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnnzip.cli.app import check_not_sources, emit, main
from cnnzip.cli.export import check_reads, dense_option, int8_of
from cnnzip.cli.factory import model_option
from cnnzip.cli.options import (
    COUNT,
    DataSpec,
    data_options,
    json_option,
    max_params_option,
    out_option,
)
from cnnzip.cli.profile import build_model
from cnnzip.errors import CnnzipError
from cnnzip.export.dense import dense_dir
from cnnzip.report import gather, gather_run, write_report
from cnnzip.train.checkpoint import check_writable


def report_path(source: str, out: str | None = None) -> Path:
    """Where the page of ``source`` goes, checked writable and not ``source`` itself:
    ``out``, else ``lenet5.cnnz`` -> ``lenet5.html``, a run directory -> ``RUN/report.html``."""
    path = Path(source)
    target = (
        Path(out) if out else path / "report.html" if path.is_dir() else path.with_suffix(".html")
    )
    check_not_sources([target], [source])
    check_writable(target)
    return target


@main.command("report")
@click.argument("source", metavar="RUN|FILE.cnnz", type=click.Path(exists=True))
@out_option("The HTML file", default="FILE.html, or RUN/report.html", file=True)
@click.option(
    "--runs",
    type=COUNT,
    default=20,
    show_default=True,
    help="Timed runs per latency of the speed section.",
)
@click.option("--no-speed", is_flag=True, help="Leave out the measured speed (no timing).")
@click.option(
    "--compare-int8",
    is_flag=True,
    help="Add the int8 PTQ baseline (onnxruntime; needs the data and the dense run).",
)
@dense_option("The dense run (the histograms' weights before, --compare-int8)")
@data_options
@max_params_option
@model_option()
@json_option
def report_cmd(
    source: str,
    out: str | None,
    runs: int,
    no_speed: bool,
    compare_int8: bool,
    dense: str | None,
    dataset: DataSpec,
    max_params: int,
    model_spec: str | None,
    as_json: bool,
) -> None:
    """Write one self-contained HTML report (images inline): the stage table, bytes per
    layer through dense -> pruned -> shared -> coded, weight histograms before and after
    sharing with the centroids, sensitivity curves when the run has them, measured vs
    theoretical speed, and accuracy against bytes (with --compare-int8, beside int8)."""
    target = report_path(source, out)
    check_reads([target], [source, *_dense_runs(source, dense)])
    model, shape = build_model(source, None, {}, max_params, model_spec)
    int8 = _int8(source, dense, dataset, model, model_spec) if compare_int8 else None
    speed = None if no_speed else runs
    if Path(source).is_dir():
        page = gather_run(source, shape, speed_runs=speed, int8=int8, trust=model_spec)
    else:
        page = gather(
            source, model, shape, speed_runs=speed, int8=int8, dense=dense, trust=model_spec
        )
    write_report(page, target)
    emit({"report": str(target), **page.to_json()}, as_json, lambda _: f"report: {target}")


def _dense_runs(source: str, dense: str | None) -> list[Path]:
    """The dense run the page reads beside .cnnz ``source`` (``export.dense``), if any."""
    if Path(source).is_dir():
        return []
    if dense:  # given: never written over, whether or not it turns out to match
        return [Path(dense)]
    try:
        return [dense_dir(source, dense)[0]]
    except CnnzipError:  # no dense run: the page is drawn without it
        return []


def _int8(
    source: str, dense: str | None, dataset: DataSpec, decoded: Any, spec: str | None
) -> dict[str, Any]:
    """The int8 rows of a .cnnz (``cli.export.int8_of``); a run has no file to compare."""
    if Path(source).is_dir():
        raise CnnzipError("--compare-int8 takes a .cnnz file (a run has no compressed file)")
    return int8_of(source, decoded, dense, dataset, spec)
