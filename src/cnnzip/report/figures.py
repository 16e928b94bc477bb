"""The report's plots, each a PNG as base64 text for an inline ``<img src="data:...">``.

Every function takes plain numbers (no models, no files), so a plot is a pure function of
what the page shows beside it in its tables.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the report is written by servers and CI too

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["accuracy_vs_bytes", "histograms", "png", "sensitivity", "speed", "stage_bars"]

STAGES = ("dense", "pruned", "shared", "coded")
MAX_SEGMENTS = 12  # layers drawn apart in the stacked bars; the rest as one


def png(fig: Figure) -> str:
    """``fig`` as base64 PNG text; the figure is closed (matplotlib keeps open ones)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def stage_bars(layers: Sequence[dict[str, Any]], overhead: int) -> str:
    """Bytes after each stage, one stacked segment per layer (plus the file's header and
    tables in the last bar); each bar labelled with its total and ratio to dense."""
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(STAGES))
    for name, kb in _largest(layers):
        ax.bar(STAGES, kb, bottom=bottom, label=name)
        bottom += kb
    extra = np.array([0, 0, 0, overhead], dtype=float) / 1024
    ax.bar(STAGES, extra, bottom=bottom, label="header, tables", color="0.6")
    bottom += extra
    for i, total in enumerate(bottom):
        ax.annotate(f"{total:,.1f} KB\n{bottom[0] / max(total, 1e-9):.1f}x", (i, total),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylabel("KB")
    ax.set_ylim(0, bottom[0] * 1.2)
    ax.set_title("bytes per layer through the stages")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return png(fig)


def _largest(layers: Sequence[dict[str, Any]]) -> list[tuple[str, np.ndarray]]:
    """(name, KB per stage) of the MAX_SEGMENTS - 1 layers largest when dense, in model
    order, and the rest summed as one segment: a ResNet's 60 layers would not read."""
    kb = {layer["name"]: np.array([layer["bytes"][s] for s in STAGES], float) / 1024
          for layer in layers}  # fmt: skip
    if len(kb) <= MAX_SEGMENTS:
        return list(kb.items())
    top = set(sorted(kb, key=lambda n: -kb[n][0])[: MAX_SEGMENTS - 1])
    rest = sum((v for n, v in kb.items() if n not in top), np.zeros(len(STAGES)))
    return [(n, v) for n, v in kb.items() if n in top] + [(f"{len(kb) - len(top)} others", rest)]


def histograms(layers: Sequence[dict[str, Any]]) -> str:
    """Per layer: the dense weights (when known) and the file's nonzero weights, with its
    shared centroids as vertical lines (log counts: pruning leaves a spike elsewhere)."""
    n = max(len(layers), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.2 * n), squeeze=False)
    for ax, layer in zip(axes[:, 0], layers, strict=False):
        after = np.asarray(layer["after"])
        bins = np.linspace(*_span(layer), 121)
        if layer.get("before") is not None:
            ax.hist(layer["before"], bins=bins, alpha=0.5, label="dense (before)", color="C0")
        ax.hist(after, bins=bins, alpha=0.7, label="file, nonzero (after)", color="C1")
        for c in layer.get("centroids") or []:
            ax.axvline(c, color="C3", lw=0.4, alpha=0.6)
        ax.set_yscale("log")
        k = len(layer.get("centroids") or [])
        ax.set_title(f"{layer['name']}" + (f": {k} shared centroids (red)" if k else ""),
                     fontsize=9)  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def _span(layer: dict[str, Any]) -> tuple[float, float]:
    values = [np.asarray(layer["after"])]
    if layer.get("before") is not None:
        values.append(np.asarray(layer["before"]))
    joined = np.concatenate([v.ravel() for v in values]) if values else np.zeros(1)
    lo, hi = (float(joined.min()), float(joined.max())) if joined.size else (-1.0, 1.0)
    return (lo, hi) if hi > lo else (lo - 1.0, hi + 1.0)


def sensitivity(curves: Sequence[dict[str, Any]]) -> str:
    """Validation accuracy against the share of one layer pruned, that layer alone."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in curves:
        ax.plot([100 * r for r in c["ratios"]], c["accuracy"], marker=".", label=c["name"])
    return _finish(fig, ax, "weights pruned (%), this layer alone", "validation accuracy")


def speed(rows: Sequence[dict[str, Any]]) -> str:
    """Measured speedup beside the MAC theory, per batch size."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["theoretical"] for r in rows], 0.4, label="theory (MACs / nonzero MACs)")
    ax.bar(x + 0.2, [r["measured"] for r in rows], 0.4, label="measured (dense ms / sparse ms)")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(x, [f"batch {r['batch']}" for r in rows])
    ax.set_ylabel("speedup over dense (x)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png(fig)


def accuracy_vs_bytes(points: Sequence[dict[str, Any]]) -> str:
    """Test accuracy against bytes on disk (log scale), one labelled point per model."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, p in enumerate(points):
        ax.scatter(p["bytes"], p["accuracy"], s=60, color=f"C{i}", label=p["name"])
    ax.set_xscale("log")
    return _finish(fig, ax, "bytes on disk (log)", "test accuracy")


def _finish(fig: Figure, ax: Any, xlabel: str, ylabel: str) -> str:
    """Labels, a light grid, the legend; the figure as base64 PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
