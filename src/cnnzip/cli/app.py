"""The ``cnnzip`` group and what every verb shares at run time: JSON or text output,
-k parsing, output checks. Bad input ends with one ``error:`` line, exit code 2.

Every verb that reports numbers takes ``--json`` and then prints exactly one
JSON object as its last line. The shared options are in ``cli.options``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

import cnnzip
from cnnzip.errors import CnnzipError, one_line
from cnnzip.runs import CHECKPOINT, META, WEIGHTS
from cnnzip.train.checkpoint import check_writable


def check_run_out(run_dir: str | Path) -> None:
    """Fail now if run directory ``run_dir`` cannot be written, not after the training."""
    check_writable(Path(run_dir) / "run.json")


def check_not_sources(outputs: Iterable[str | Path | None], sources: Iterable[str | Path]) -> None:
    """Fail now if an output (a run directory or a file) is a run the verb reads, or one
    of the files that run consists of: writing it would destroy the input, or fail only
    after the work with the input already overwritten."""
    outs = [out for out in outputs if out]
    for source in sources:
        run = Path(source).resolve()
        taken = {run, run / WEIGHTS, run / META, run / CHECKPOINT}
        for out in outs:
            if Path(out).resolve() in taken:
                raise CnnzipError(
                    f"output {out} would overwrite run {source}, which this command reads; "
                    "write to another path"
                )


def parse_kwargs(items: tuple[str, ...]) -> dict[str, Any]:
    """``-k name=value`` pairs; values are read as JSON (numbers, true, lists) or kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise CnnzipError(f"-k expects name=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """Print ``result`` as one JSON line, or as human text."""
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(text(result))


class _Group(click.Group):
    """Every failure ends as one ``error:`` line on stderr and exit code 2: click's usage
    errors (a bad option value, a missing path), CnnzipError and OSError (a full disk, a
    folder that went away), never a traceback or click's three-line usage report."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a bare `cnnzip`: the help, as click prints it
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message())
        except click.Abort:
            _fail("interrupted")
        except (CnnzipError, OSError) as exc:
            _fail(str(exc))
        sys.exit(code if isinstance(code, int) else 0)  # --help and --version exit with 0


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cnnzip.__version__, prog_name="cnnzip")
def main() -> None:
    """cnnzip: make convolutional networks small and fast, and measure what was gained."""
