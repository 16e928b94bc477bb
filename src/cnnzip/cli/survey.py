"""The ``survey`` verb: the survey's comparison tables, measured here (``cnnzip.survey``)."""

from __future__ import annotations

import click

from cnnzip.cli.app import main
from cnnzip.cli.options import THREADS, out_option
from cnnzip.survey import ROWS, Results, run_survey, time_survey, write_report
from cnnzip.survey.pipeline import DISTILL


@main.command("survey")
@click.option(
    "--quick",
    is_flag=True,
    help="The same pipeline on tiny budgets and small-width models (about a minute).",
)
@out_option(
    "Folder of the study (runs/, cnnz/, results.json, SURVEY.md, plots)",
    default="survey, or survey-quick with --quick",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice([row.name for row in ROWS] + [DISTILL]),
    help="Run only this row (repeatable); the tables still show every row.",
)
@click.option(
    "--threads",
    type=THREADS,
    default=None,
    help="Torch threads for training [default: torch's]; latency is measured at 1 and 2.",
)
@click.option(
    "--tables-only",
    is_flag=True,
    help="Only rewrite SURVEY.md and the plots from results.json (e.g. while a survey runs).",
)
@click.option(
    "--latency",
    is_flag=True,
    help="Only time every finished row again, in one interleaved pass (run it with the "
    "machine otherwise idle: the latency tables should come from it).",
)
def survey_cmd(
    quick: bool,
    out: str | None,
    only: tuple[str, ...],
    threads: int | None,
    tables_only: bool,
    latency: bool,
) -> None:
    """Train, compress, binarize, distill and time the zoo on Fashion-MNIST at 64x64,
    resumably (finished steps are skipped), then write SURVEY.md and two PNG plots."""
    folder = out or ("survey-quick" if quick else "survey")
    if tables_only:
        click.echo(f"survey: tables in {write_report(Results(folder).data, folder)}")
        return
    if latency:
        time_survey(folder, log=click.echo)
        return
    run_survey(folder, quick=quick, only=only, threads=threads, log=click.echo)
