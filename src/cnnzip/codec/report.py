"""What a .cnnz file holds, layer by layer, as Deep Compression's Tables 2 and 3 show it.

For each tensor: its weights, the share kept, the bits per weight and per
index, and its bytes after each stage: dense float32; pruned (float32 values
plus fixed p-bit relative indices, p the best for fixed width); + sharing
(b-bit cluster indices, the same indices, the codebook); + entropy coding
(the real sections in the file). A binary (BWN) weight is not pruned; its
sign bits and per-channel alpha are its shared and coded stages. Every coded
stream is reported beside its empirical entropy (the Shannon bound), its
table counted separately.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnzip.codec import container
from cnnzip.codec.bits import histogram
from cnnzip.codec.header import MAX_PARAMS, check_tensors, numel
from cnnzip.codec.model import decode_state, positions
from cnnzip.codec.sizes import FLOAT32_BYTES, index_bytes, shared_bytes, sparse_bytes
from cnnzip.codec.streams import decode_stream, entropy_bits

__all__ = ["Report", "inspect"]

STAGES = ("dense", "pruned", "shared", "coded")


def _ratio(num: float, den: float) -> float | None:
    """``num / den``, or None where ``den`` is 0: a file with no tensors is valid
    to inspect and has no compression ratio (``null`` in JSON, ``-`` in the table)."""
    return num / den if den else None


def _times(ratio: float | None) -> str:
    """A ratio as the table prints it: ``12.3x``, or ``-`` where there is none."""
    return "-" if ratio is None else f"{ratio:.1f}x"


@dataclass
class Report:
    """``inspect``'s result; ``to_dict`` is the ``--json`` object, ``table`` the text."""

    file_bytes: int
    dense_bytes: int
    layers: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return _ratio(self.dense_bytes, self.file_bytes)

    def stage_bytes(self) -> dict[str, int]:
        """Total bytes after each stage; the last stage is the file itself."""
        totals = {s: sum(layer["bytes"][s] for layer in self.layers) for s in STAGES}
        totals["coded"] = self.file_bytes  # header, padding and all
        return totals

    def to_dict(self) -> dict[str, Any]:
        stages = self.stage_bytes()
        return {
            "file_bytes": self.file_bytes,
            "dense_bytes": self.dense_bytes,
            "ratio": self.ratio,
            "stages": {
                s: {"bytes": b, "ratio": _ratio(self.dense_bytes, b)} for s, b in stages.items()
            },
            "layers": self.layers,
            "meta": self.meta,
        }

    def table(self) -> str:
        head = (
            f"{'layer':<24}{'weights':>10}{'kept':>8}{'w bits':>8}{'idx bits':>9}"
            f"{'dense B':>10}{'pruned B':>10}{'+shared B':>11}{'+coded B':>10}{'ratio':>8}"
        )
        rows = [head, "-" * len(head)]
        for layer in self.layers:
            b = layer["bytes"]
            wb = f"{layer['weight_bits']:.2f}" if layer["weight_bits"] is not None else "-"
            ib = f"{layer['index_bits']:.2f}" if layer["index_bits"] is not None else "-"
            rows.append(
                f"{layer['name']:<24}{layer['weights']:>10}{layer['kept_pct']:>7.1f}%{wb:>8}"
                f"{ib:>9}{b['dense']:>10}{b['pruned']:>10}{b['shared']:>11}{b['coded']:>10}"
                f"{_times(_ratio(b['dense'], b['coded'])):>8}"
            )
        stages = self.stage_bytes()
        overhead = self.file_bytes - sum(layer["bytes"]["coded"] for layer in self.layers)
        rows.append(f"{'header, tables, padding':<24}{'':>66}{overhead:>10}")
        rows.append("-" * len(head))
        ratios = " -> ".join(
            f"{s} {stages[s] / 1024:.1f} KB ({_times(_ratio(self.dense_bytes, stages[s]))})"
            for s in STAGES
        )
        rows.append(f"stages: {ratios}")
        rows.append(
            f"file {self.file_bytes} bytes, {self.dense_bytes} float32 parameter bytes: "
            f"{_times(self.ratio)}"
        )
        rows.append("")
        rows.append(
            f"{'stream':<30}{'coder':>9}{'symbols':>10}{'entropy B':>11}{'coded B':>9}"
            f"{'table B':>9}{'over H':>8}"
        )
        for layer in self.layers:
            for s in layer["streams"]:
                over = s["data_bytes"] / s["entropy_bytes"] - 1 if s["entropy_bytes"] else 0.0
                rows.append(
                    f"{layer['name'] + ' ' + s['stream']:<30}{s['coder']:>9}{s['symbols']:>10}"
                    f"{s['entropy_bytes']:>11.0f}{s['data_bytes']:>9}{s['table_bytes']:>9}"
                    f"{100 * over:>7.1f}%"
                )
        return "\n".join(rows)


def _stream_stats(
    cf: container.CnnzFile, entry: dict[str, Any], key: str
) -> tuple[dict[str, Any], np.ndarray]:
    """(what the report shows of a stream, its symbols)."""
    desc = entry[key]
    blob = cf.section(desc["section"])
    symbols = decode_stream(desc, blob)
    h = 0.0 if desc["coder"] == "const" else entropy_bits(histogram(symbols, desc["alphabet"]))
    stats = {
        "stream": "indices" if key == "codes" else "gaps",
        "coder": desc["coder"],
        "symbols": desc["n"],
        "alphabet": desc["alphabet"],
        "entropy_bytes": h / 8,
        "data_bytes": len(blob) - desc.get("table_bytes", 0),
        "table_bytes": desc.get("table_bytes", 0),
    }
    return stats, symbols


def _layer(cf: container.CnnzFile, entry: dict[str, Any]) -> dict[str, Any]:
    size, enc = numel(entry), entry["encoding"]
    dense = FLOAT32_BYTES * size
    layer: dict[str, Any] = {"name": entry["name"], "encoding": enc, "weights": size}
    if enc == "dense":
        coded = len(cf.section(entry["section"]))
        return {
            **layer, "kept": size, "kept_pct": 100.0, "weight_bits": None, "index_bits": None,
            "bytes": {"dense": dense, "pruned": dense, "shared": dense, "coded": coded},
            "streams": [], "buffer": bool(entry.get("buffer")),
        }  # fmt: skip
    if enc == "binary":
        stored = len(cf.section(entry["bits"])) + len(cf.section(entry["alpha"]))
        return {
            **layer, "kept": size, "kept_pct": 100.0,
            "weight_bits": 8 * len(cf.section(entry["bits"])) / max(size, 1), "index_bits": None,
            "bytes": {"dense": dense, "pruned": dense, "shared": stored, "coded": stored},
            "streams": [], "buffer": False,
        }  # fmt: skip
    count = entry["count"]
    gaps, symbols = _stream_stats(cf, entry, "gaps")
    index = index_bytes(positions(entry, symbols), size)
    streams = [gaps]
    coded = len(cf.section(entry["gaps"]["section"]))
    pruned = sparse_bytes(count, index)
    if enc == "shared":
        shared = shared_bytes(count, entry["k"], index)
        streams.insert(0, _stream_stats(cf, entry, "codes")[0])
        coded += len(cf.section(entry["codebook"])) + len(cf.section(entry["codes"]["section"]))
        weight_bits = 8 * len(cf.section(entry["codes"]["section"])) / max(count, 1)
    else:
        shared = pruned
        coded += len(cf.section(entry["values"]))
        weight_bits = 32.0
    return {
        **layer, "kept": count, "kept_pct": 100.0 * count / max(size, 1),
        "weight_bits": weight_bits,
        "index_bits": 8 * len(cf.section(entry["gaps"]["section"])) / max(count, 1),
        "index_bits_p": entry["index_bits"],
        "bytes": {"dense": dense, "pruned": pruned, "shared": shared, "coded": coded},
        "streams": streams, "buffer": False,
    }  # fmt: skip


def inspect(path: str | Path, *, max_params: int = MAX_PARAMS) -> Report:
    """Read, check and decode ``path`` and report it per layer and per stage (a tied
    tensor under its first name only: it is stored once)."""
    cf = container.read(path)
    decode_state(cf, max_params=max_params)  # checks the whole file before any report
    entries = check_tensors(cf.header["tensors"], max_params)
    layers = [_layer(cf, e) for e in entries if e["encoding"] != "alias"]
    dense = sum(FLOAT32_BYTES * layer["weights"] for layer in layers if not layer["buffer"])
    meta = cf.header.get("meta") if isinstance(cf.header.get("meta"), dict) else {}
    return Report(file_bytes=os.path.getsize(path), dense_bytes=dense, layers=layers, meta=meta)
