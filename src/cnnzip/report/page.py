"""``cnnzip report``: one self-contained HTML page of what compression did to a model.

Gathered from a .cnnz file (or a run directory, encoded to a temporary .cnnz so both read
the same way): the stage table (each recipe stage's time and validation accuracy, and the
bytes after dense -> pruned -> shared -> coded, ``codec.inspect``'s sizes), per-layer
bytes through the stages, weight histograms before (the dense run the file names, when it
is still there) and after sharing with the centroids marked, the sensitivity curves when
the run has them (``sensitivity.json``), measured against theoretical speed (the sparse
runtime, ``runtime.bench_sparse``), and accuracy against bytes beside the dense baseline
and, when given, the int8 PTQ baseline, with a sentence wherever int8 wins.
Images are inline base64 PNGs: the page is one file that opens anywhere.
"""

from __future__ import annotations

import copy
import html
import json
import math
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnzip.codec import inspect
from cnnzip.codec import save as save_cnnz
from cnnzip.codec.report import Report
from cnnzip.errors import CnnzipError
from cnnzip.export.dense import dense_dir
from cnnzip.fileio import atomic_write_text
from cnnzip.models.registry import trust_factories
from cnnzip.models.running import eval_mode, example_input
from cnnzip.profiling.latency import num_threads
from cnnzip.prune.sensitivity import CACHE
from cnnzip.report import figures
from cnnzip.runs import load_run
from cnnzip.runtime.bench import median_ms
from cnnzip.runtime.sparse import bench_sparse, sparsify
from cnnzip.transforms import effective_tensor

__all__ = ["Page", "bar_segments", "gather", "gather_run", "render", "write_report"]

MAX_HIST_VALUES = 200_000  # per layer and side: a histogram needs no more
MAX_HISTOGRAMS = 8  # the largest compressed layers get one each (a ResNet has 60 layers)


@dataclass
class Page:
    """Everything the page shows, as plain numbers (``to_json`` is the --json object)."""

    title: str
    report: Report
    stages: list[dict[str, Any]] = field(default_factory=list)  # the recipe's log
    accuracy: float | None = None
    baseline: float | None = None
    weights: list[dict[str, Any]] = field(default_factory=list)  # histograms' inputs
    curves: list[dict[str, Any]] = field(default_factory=list)
    speed: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "file_bytes": self.report.file_bytes,
            "dense_bytes": self.report.dense_bytes,
            "stage_bytes": self.report.stage_bytes(),
            "stages": self.stages,
            "test_accuracy": self.accuracy,
            "baseline_accuracy": self.baseline,
            "sensitivity_layers": [c["name"] for c in self.curves],
            "speed": self.speed,
            "int8": self.int8,
        }


def _sample(values: np.ndarray) -> np.ndarray:
    """At most MAX_HIST_VALUES of ``values``, evenly strided (deterministic)."""
    step = max(1, values.size // MAX_HIST_VALUES)
    return values.ravel()[::step]


def _weights(decoded: nn.Module, report: Report, dense: nn.Module | None) -> list[dict[str, Any]]:
    """Per pruned/shared/binary weight: the file's nonzero values, its centroids (the
    distinct values of a shared layer), and the dense run's values of the same name."""
    dense_state = dense.state_dict() if dense is not None else {}
    shown = [
        layer for layer in report.layers if layer["encoding"] in ("sparse", "shared", "binary")
    ]
    largest = set(sorted((-layer["weights"], layer["name"]) for layer in shown)[:MAX_HISTOGRAMS])
    out = []
    for layer in shown:
        if (-layer["weights"], layer["name"]) not in largest:
            continue
        name = layer["name"]
        after = effective_tensor(decoded, name).numpy()
        after = after[after != 0]
        before = dense_state.get(name)
        centroids = np.unique(after).tolist() if layer["encoding"] == "shared" else []
        out.append({
            "name": name,
            "after": _sample(after),
            "before": None if before is None else _sample(before.detach().float().numpy()),
            "centroids": centroids,
        })  # fmt: skip
    return out


def _curves(run_dir: Path | None) -> list[dict[str, Any]]:
    """The sensitivity curves cached in ``run_dir``: those with a name and as many finite
    accuracies as ratios (none when the file is absent or unreadable)."""
    path = run_dir / CACHE if run_dir else None
    if path is None or not path.is_file():
        return []
    try:
        curves = json.loads(path.read_text())["curves"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, OSError):
        return []
    return [c for c in curves if _curve_ok(c)] if isinstance(curves, list) else []


def _curve_ok(curve: Any) -> bool:
    """A plottable curve: a name, and ratios and accuracies as equally long lists of
    finite numbers."""
    if not isinstance(curve, dict) or not isinstance(curve.get("name"), str):
        return False
    ratios, accuracy = curve.get("ratios"), curve.get("accuracy")
    if not (isinstance(ratios, list) and isinstance(accuracy, list)):
        return False
    values = ratios + accuracy
    return len(ratios) == len(accuracy) > 0 and all(_number(v) is not None for v in values)


def _speed(decoded: nn.Module, shape: tuple[int, ...], runs: int) -> dict[str, Any]:
    """The decoded model dense and with its pruned layers as CSR products
    (``runtime.sparsify``) at batch 1 and 64 on one thread, beside the theory
    (``runtime.bench_sparse``'s MACs / nonzero MACs; its own timing runs the two one
    after the other, so the rows are timed here, interleaved)."""
    speed = bench_sparse(decoded, shape, (), threads=1)  # the theory, no timing
    with num_threads(1), eval_mode(decoded), torch.no_grad():
        speed["batches"] = [_speed_row(decoded, (batch, *shape), runs) for batch in (1, 64)]
    return speed


def _speed_row(decoded: nn.Module, shape: tuple[int, ...], runs: int) -> dict[str, Any]:
    """One batch (``shape``: (B, ...)): dense and sparsified timed interleaved, each after
    the other equally often (``runtime.bench.median_ms``), and each layer's choice."""
    fast = copy.deepcopy(decoded)
    x = example_input(decoded, shape)  # (B, ...)
    choices = sparsify(fast, x)
    calls = {"dense": lambda: decoded(x), "sparse": lambda: fast(x)}
    ms = {k: v["wall"] for k, v in median_ms(calls, runs, rotate=True).items()}
    layers = [asdict(c) for c in choices]
    return {"batch": shape[0], "dense_ms": ms["dense"], "sparse_ms": ms["sparse"],
            "speedup": ms["dense"] / ms["sparse"], "layers": layers}  # fmt: skip


def _number(value: Any) -> float | None:
    """A metadata number, or None for anything else (the file's meta is free-form)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def _dense_model(run_dir: Path | None, trust: str | None) -> nn.Module | None:
    """The dense run's model, or None where it cannot be loaded (gone, or a factory
    this process does not trust): the page then shows the file's weights alone."""
    try:
        with _trusting(trust):
            return load_run(run_dir).model if run_dir else None
    except CnnzipError:
        return None


def _trusting(trust: str | None) -> AbstractContextManager[Any]:
    """Within the block the factory ``trust`` (``--model``) may be built, besides
    $CNNZIP_TRUST's."""
    return trust_factories(trust) if trust else nullcontext()


def _accuracy(recorded: Any, int8: dict[str, Any] | None, key: str) -> float | None:
    """The test accuracy the file's metadata records, else the one ``bench_int8``
    measured for row ``key`` (``cnnz``: the file, ``torch``: the dense run), else None."""
    rows = {r["key"]: r for r in int8["rows"]} if int8 else {}
    if _number(recorded) is not None or key not in rows:
        return _number(recorded)
    return _number(rows[key]["accuracy"])


def _dense_dir(path: str | Path, given: str | None) -> Path | None:
    """The dense run of ``path`` (``export.dense``: beside the file or in the working
    folder, of the file's architecture), or None: the page is drawn without it."""
    try:
        return dense_dir(path, given)[0]
    except CnnzipError:
        return None


def gather(
    path: str | Path,
    decoded: nn.Module,
    shape: tuple[int, ...],
    *,
    title: str | None = None,
    speed_runs: int | None = 20,
    int8: dict[str, Any] | None = None,
    dense: str | None = None,
    trust: str | None = None,
) -> Page:
    """The page of .cnnz ``path`` whose decoded model is ``decoded`` (one sample's input
    ``shape``); ``speed_runs=None`` skips the timing; ``dense``: the dense run (else the
    one the file names, ``export.dense``); ``trust``: a factory spec it may be built with."""
    report = inspect(path)
    meta = report.meta
    run_dir = _dense_dir(path, dense)
    stages = meta.get("stages")
    return Page(
        title=title or str(path),
        report=report,
        stages=[s for s in stages if isinstance(s, dict)] if isinstance(stages, list) else [],
        accuracy=_accuracy(meta.get("file_test_accuracy", meta.get("test_accuracy")), int8, "cnnz"),
        baseline=_accuracy(meta.get("baseline_test_accuracy"), int8, "torch"),
        weights=_weights(decoded, report, _dense_model(run_dir, trust)),
        curves=_curves(run_dir),
        speed=_speed(decoded, shape, speed_runs) if speed_runs else None,
        int8=int8,
    )


def gather_run(run_dir: str | Path, shape: tuple[int, ...], **kwargs: Any) -> Page:
    """The page of a run directory: its model encoded to a temporary .cnnz (the bytes it
    would take), its own sensitivity curves, its metrics' test accuracy."""
    with _trusting(kwargs.get("trust")):
        run = load_run(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.cnnz"
        metrics = run.meta.get("metrics")
        accuracy = metrics.get("test_accuracy") if isinstance(metrics, dict) else None
        meta = {"source": None, "test_accuracy": accuracy}
        save_cnnz(path, run.model, arch={"name": run.arch, "kwargs": run.kwargs}, meta=meta)
        page = gather(path, run.model, shape, title=str(run_dir), **kwargs)
    page.curves = _curves(Path(run_dir))
    return page


# ---- HTML --------------------------------------------------------------------------------

CSS = """body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:1em 0}.note{color:#a33;font-weight:bold}"""


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(value: Any, spec: str = ".4f") -> str:
    """A number as ``spec`` formats it; ``-`` for anything that is not one."""
    number = _number(value)
    return "-" if number is None else format(number, spec)


def _stage_section(page: Page) -> str:
    totals = page.report.stage_bytes()
    dense = page.report.dense_bytes
    byte_rows = [[s, f"{b:,}", f"{dense / b:.1f}x" if b else "-"] for s, b in totals.items()]
    recipe = [
        [s.get("stage", "?"), _fmt(s.get("seconds"), ".1f"), _fmt(s.get("val_accuracy")),
         _fmt(s.get("kept_fraction"), ".3f")]
        for s in page.stages
    ]  # fmt: skip
    drop = None if None in (page.accuracy, page.baseline) else page.baseline - page.accuracy
    summary = (
        f"<p>{page.report.file_bytes:,} bytes on disk, {dense:,} float32 parameter bytes "
        f"({_fmt(page.report.ratio, '.1f')}x); test accuracy {_fmt(page.accuracy)} against "
        f"the dense {_fmt(page.baseline)} ({_fmt(None if drop is None else -100 * drop, '+.2f')}"
        " pp).</p>"
    )
    tables = _table(["stage", "bytes", "vs dense"], byte_rows)
    if recipe:
        tables += _table(["recipe stage", "seconds", "val accuracy", "kept"], recipe)
    return f"<h2>Stages</h2>{summary}{tables}"


def bar_segments(report: Report) -> tuple[list[dict[str, Any]], int]:
    """(the stacked bars' segments, the file's header and tables bytes): each weight
    layer, the buffers (BatchNorm statistics) as one segment, so each bar sums to the
    stage table's bytes and the coded one to the file's size."""
    layers = [layer for layer in report.layers if not layer["buffer"]]
    buffers = [layer["bytes"] for layer in report.layers if layer["buffer"]]
    if buffers:
        stages = figures.STAGES
        layers.append({"name": "buffers", "bytes": {s: sum(b[s] for b in buffers) for s in stages}})
    coded = sum(layer["bytes"]["coded"] for layer in report.layers)
    return layers, report.file_bytes - coded


def _layers_section(page: Page) -> str:
    bars = figures.stage_bars(*bar_segments(page.report))
    out = f"<h2>Bytes per layer</h2>{_img(bars, 'bytes per layer through the stages')}"
    if page.weights:
        hist = figures.histograms(page.weights)
        out += f"<h2>Weights before and after</h2>{_img(hist, 'weight histograms')}"
    if page.curves:
        out += f"<h2>Sensitivity</h2>{_img(figures.sensitivity(page.curves), 'sensitivity')}"
    return out


def _speed_section(speed: dict[str, Any] | None) -> str:
    if not speed:
        return ""
    rows = [
        {"batch": b["batch"], "theoretical": speed["theoretical_speedup"],
         "measured": b["speedup"]}
        for b in speed["batches"]
    ]  # fmt: skip
    table = _table(
        ["batch", "dense ms", "sparse ms", "measured", "theory"],
        [[b["batch"], f"{b['dense_ms']:.3f}", f"{b['sparse_ms']:.3f}", f"{b['speedup']:.2f}x",
          f"{speed['theoretical_speedup']:.1f}x"] for b in speed["batches"]],
    )  # fmt: skip
    note = (
        f"<p>The decoded model dense against its pruned layers as CSR products "
        f"(cnnzip.runtime.sparsify), {speed['threads']} thread; theory: MACs / MACs by "
        "nonzero weights.</p>"
    )
    return (
        f"<h2>Speed: measured and theoretical</h2>{note}{table}{_img(figures.speed(rows), 'speed')}"
    )


def _verdict(line: str) -> str:
    """A verdict sentence; where int8 wins, highlighted."""
    wins = line.startswith("int8 PTQ is ") and " is not " not in line
    return f'<p class="{"note" if wins else ""}">{html.escape(line)}</p>'


def _accuracy_section(page: Page) -> str:
    rows = {r["key"]: r for r in page.int8["rows"]} if page.int8 else {}
    dense = rows.get("torch", {}).get("bytes")  # its safetensors file, where measured
    points = [
        {"name": "dense float32 (safetensors)" if dense else "dense float32 (4 B per value)",
         "bytes": dense or page.report.dense_bytes, "accuracy": page.baseline},
        {"name": ".cnnz", "bytes": page.report.file_bytes, "accuracy": page.accuracy},
    ]  # fmt: skip
    extra = ""
    if page.int8:
        q = rows["int8"]
        points.append({"name": "int8 PTQ ONNX", "bytes": q["bytes"], "accuracy": q["accuracy"]})
        extra = _table(
            ["model", "bytes", "accuracy", "batch-1 ms", "vs torch dense"],
            [[r["name"], f"{r['bytes']:,}", f"{r['accuracy']:.4f}", f"{r['latency_ms']:.4f}",
              f"{r['speedup']:.2f}x"] for r in page.int8["rows"]],
        )  # fmt: skip
        extra += "".join(_verdict(v) for v in page.int8["verdict"])
    shown = [p for p in points if p["accuracy"] is not None]
    plot = _img(figures.accuracy_vs_bytes(shown), "accuracy vs bytes") if shown else ""
    return f"<h2>Accuracy and bytes</h2>{plot}{extra}"


def render(page: Page) -> str:
    """The page as one HTML document."""
    title = html.escape(f"cnnzip report: {page.title}")
    body = "".join(
        [_stage_section(page), _layers_section(page), _speed_section(page.speed),
         _accuracy_section(page)]
    )  # fmt: skip
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><h1>{title}</h1>{body}</body></html>\n"
    )


def write_report(page: Page, out: str | Path) -> Path:
    """Render ``page`` to ``out`` atomically; returns the path."""
    atomic_write_text(out, render(page))
    return Path(out)
