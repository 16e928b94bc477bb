"""Compressed-domain kernels vs dense and CSR: is a pruned + shared layer faster as stored?

    .venv/bin/python benchmarks/compressed_kernels.py                  # the issue's table
    .venv/bin/python benchmarks/compressed_kernels.py --cnnz demo/lenet300.cnnz
    .venv/bin/python benchmarks/compressed_kernels.py --layers fc:300:100:0.1:5 \\
        --batch 1 --repeats 3 --json /tmp/c.json                      # smoke test

Each layer (AlexNet's fc6 9216->4096 and fc7 4096->4096 at 9% / 4% / 2% kept with
5-bit sharing, and a 256->256 3x3 conv at 14x14 kept 20% / 10% with 8-bit sharing,
random weights: speed depends on the sparsity pattern's statistics, not the values)
is timed at batch 1 / 8 / 64, with one thread, in this one process, interleaved call
by call (cnnzip.runtime.bench.median_ms), as:

- dense: torch's own float32 Linear / Conv2d (MKL / oneDNN) on the decoded weight;
- torch CSR: ``cnnzip.runtime.sparsify``'s twin (torch.addmm with a CSR matrix);
- C CSR (batch 1, fc): scipy's csr_matvec loop in C (float32 values, int32 columns);
  scipy itself cannot be installed here (scipy 1.18.1 needs Python >= 3.12);
- kernels: cnnzip.runtime.compressed (3 bytes per kept weight + the codebook), as
  the nn.Module a model runs; "kernels call" (batch 1, fc): the same C kernel as a
  bare call wrapped exactly like the C CSR one, so those two columns compare like for
  like (a module's Python costs ~5 us warm, ~50 us after a cache-sweeping call).

Beside each speed-up over dense: its bytes-moved bound (dense bytes / the form's
bytes; what it could reach if only memory traffic counted). With ``--cnnz`` the file's
shared layers on their real inputs and the whole model (its layers on the kernels
where measured faster) are timed too. Prints markdown; writes JSON to ``--json``
(default benchmarks/results/compressed_kernels.json). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from cnnzip.codec import load, read
from cnnzip.runtime.bench import LayerSpec, bench_compressed_model, bench_compressed_spec

LAYERS = [
    "fc:9216:4096:0.09:5", "fc:9216:4096:0.04:5", "fc:9216:4096:0.02:5",
    "fc:4096:4096:0.09:5", "fc:4096:4096:0.04:5", "fc:4096:4096:0.02:5",
    "conv:256:256:3:14:0.2:8", "conv:256:256:3:14:0.1:8",
]  # fmt: skip
FORMS = (
    ("csr", "torch CSR"), ("kernel", "kernels"), ("c_csr", "C CSR call"),
    ("kernel_call", "kernels call"),
)  # fmt: skip


def _cell(row: dict[str, Any], key: str) -> str:
    if key not in row["ms"]:
        return "-"
    bound = f", bound {row['bound'][key]:.1f}x" if key in row["bound"] else ""
    return f"{row['ms'][key]:.3f} ({row['speedup'][key]:.2f}x{bound})"


def layer_table(results: list[dict[str, Any]]) -> str:
    head = "| layer | weights dense / layout | batch | dense ms | " + " | ".join(
        f"{name} ms (x dense)" for _, name in FORMS
    )
    lines = [head + " |", "|" + "---|" * (4 + len(FORMS))]
    for r in results:
        size = f"{r['dense_bytes'] / 1e6:.1f} MB / {r['kernel_bytes'] / 1e6:.2f} MB"
        for row in r["batches"]:
            cells = [_cell(row, key) for key, _ in FORMS]
            lines.append(
                f"| {r['layer']} | {size} | {row['batch']} | {row['ms']['dense']:.3f} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def model_table(result: dict[str, Any]) -> str:
    lines = [
        "| batch | dense ms | compressed ms | speed-up | on the kernels |",
        "|---|---|---|---|---|",
    ]
    for row in result["model"]:
        lines.append(
            f"| {row['batch']} | {row['dense_ms']:.3f} | {row['compressed_ms']:.3f} | "
            f"{row['speedup']:.2f}x | {', '.join(row['on_kernels']) or 'none'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="*", default=LAYERS, help="layer specs")
    parser.add_argument("--batch", type=int, action="append", help="[default: 1, 8, 64]")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cnnz", type=Path, help="also a zoo .cnnz, layer by layer and whole")
    parser.add_argument("--input-shape", type=int, nargs="+", default=[1, 28, 28])
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/compressed_kernels.json")
    )
    args = parser.parse_args(argv)
    batches = tuple(args.batch or (1, 8, 64))
    results = []
    for text in args.layers:
        results.append(
            bench_compressed_spec(
                LayerSpec.parse(text), batches, repeats=args.repeats, threads=args.threads
            )
        )
        print(f"done: {text}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"layers": results, "threads": args.threads, "repeats": args.repeats}
    print(layer_table(results))
    if args.cnnz:
        model = load(args.cnnz)
        out["cnnz"] = {"file": str(args.cnnz)} | bench_compressed_model(
            model, read(args.cnnz), tuple(args.input_shape), batches,
            repeats=args.repeats, threads=args.threads,
        )  # fmt: skip
        print(f"\n{args.cnnz}, per layer:\n")
        print(layer_table([{"layer": x["name"], "dense_bytes": x["dense_bytes"],
                            "kernel_bytes": x["kernel_bytes"], "batches": x["batches"]}
                           for x in out["cnnz"]["layers"]]))  # fmt: skip
        print(f"\n{args.cnnz}, whole model:\n")
        print(model_table(out["cnnz"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
