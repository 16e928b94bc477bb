"""Verbs for binary networks: ``binarize`` and the ``bench`` group (``bench xnor``)."""

from __future__ import annotations

from typing import Any

import click

from cnnzip.cli.app import emit, main
from cnnzip.runtime.bench import bench_layers
from cnnzip.runtime.xnor import available_paths


@main.group("bench")
def bench() -> None:
    """Measure speed against what a user would otherwise run (torch float32)."""


@bench.command("xnor")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True)
@click.option(
    "--path",
    type=click.Choice(available_paths()),
    default=None,
    help="Kernel path [default: the fastest this CPU runs; $CNNZIP_KERNEL overrides].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object as the last line.")
def bench_xnor(threads: int, repeats: int, path: str | None, as_json: bool) -> None:
    """Binary 3x3 convs (256@56, 128@28, 512@7, batch 1) vs torch float32 conv2d.

    The binary time runs from the float input: binarize + pack + conv + output transform.
    """
    emit(bench_layers(threads=threads, repeats=repeats, path=path), as_json, _table)


def _table(r: dict[str, Any]) -> str:
    cpu = all("cpu_speedup" in row for row in r["layers"])
    head = f"{'layer':>14} {'float ms':>9} {'binary ms':>10} {'speedup':>8}"
    lines = [
        f"path {r['path']}, {r['threads']} thread(s), median of {r['repeats']}",
        head + ("   (CPU time: float ms, binary ms, speedup)" if cpu else ""),
    ]
    for row in r["layers"]:
        name = f"{row['cin']}->{row['cout']} @{row['hw']}"
        line = f"{name:>14} {row['float_ms']:9.2f} {row['binary_ms']:10.3f} {row['speedup']:7.1f}x"
        if cpu:
            line += (
                f"   {row['float_cpu_ms']:9.2f} {row['binary_cpu_ms']:9.3f}"
                f" {row['cpu_speedup']:6.1f}x"
            )
        lines.append(line)
    return "\n".join(lines)
