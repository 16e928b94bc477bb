"""int8 post-training quantization (onnxruntime) beside cnnzip's .cnnz, on trained runs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_baseline.py \
        lenet5.cnnz lenet300.cnnz [--repeats 300] [--json results.json]

For each .cnnz (written by ``cnnzip compress``, which records its dense run and data; the
run found as ``cnnzip bench int8`` finds it, ``cnnzip.export.dense``): the dense run as
float32 ONNX and as int8 PTQ ONNX (QDQ, per-channel int8 weights, uint8 activations,
min/max calibrated on 512 random training images) in onnxruntime, the file decoded (torch,
dense tensors) and on the sparse runtime (torch CSR where measured faster), and the dense
run in torch with a copy of it as the control (~1.00x): bytes, test accuracy, batch-1
latency. One thread, all six timed interleaved in this process, the order shuffled each
round (``cnnzip.export.int8.bench_int8``); speedups against torch's dense float32. Time
it on an otherwise idle machine. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import cnnzip
from cnnzip import data as cz_data
from cnnzip.codec import read as read_cnnz
from cnnzip.export.dense import load_dense
from cnnzip.export.int8 import bench_int8


def run_one(path: str, repeats: int) -> dict[str, Any]:
    meta = read_cnnz(path).header["meta"]
    run = load_dense(path)
    data = cz_data.load(meta.get("data", "fashion-mnist"), stats=run.normalization)
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_int8(run.model, data, tmp, cnnz=(path, cnnzip.load(path)), repeats=repeats)
    return {"file": path, "arch": run.arch, **result}


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | format | bytes | test accuracy | batch-1 ms | vs torch dense |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for row in r["rows"]:
            lines.append(
                f"| {r['arch']} | {row['name']} | {row['bytes']:,} | {row['accuracy']:.4f} "
                f"| {row['latency_ms']:.4f} | {row['speedup']:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help=".cnnz files written by cnnzip compress")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = [run_one(path, args.repeats) for path in args.files]
    print(table(results))
    for r in results:
        print(
            f"{r['arch']}: sparse layers {r['sparse_layers'] or 'none'}; " + "; ".join(r["verdict"])
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
