"""Structure-aware fuzzing of .cnnz files: every case loads, or fails with a CnnzipError.

Two files are built with cnnzip's own API in a second: a Deep Compression
LeNet-300 (64 inputs, 32 and 8 hidden: one layer pruned and shared, one
pruned, one shared unpruned; streams forced onto every coder: huffman, rans,
raw, const) and a binarized (BWN) one, small so a case takes milliseconds.
Each case stacks 1-3 mutations of the header JSON (numbers, types, names,
lists, shapes, kwargs, dtypes, encodings, coders, section refs, the section
table), of section bytes and stream tables (checksums recomputed so the
mutation reaches the decoder), or of the raw file (truncated, extended,
flipped). A case runs in a forked child that loads
the file (and inspects it when it loads) under a wall-clock alarm; the child
reports its outcome, seconds and peak RSS growth.

    python benchmarks/fuzz_cnnz.py --cases 20000   # the acceptance: 0 other, <= 5 s, <= 512 MB
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import json
import os
import resource
import signal
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import cnnzip
from cnnzip.binary import convert
from cnnzip.codec import container, decode_stream, encode, encode_stream, inspect, load_file
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model
from cnnzip.prune import Mask
from cnnzip.quantize import share_weights
from cnnzip.transforms import add_transform

LIMIT_S = 5.0
LIMIT_MB = 512
WORDS = [
    "dense", "binary", "sparse", "shared", "alias", "float32", "float16", "float64", "int64",
    "int32", "uint8", "bool", "const", "raw", "huffman", "rans", "fc1.weight", "fc2.bias",
    "fc3.weight", "lenet300", "binarized", "mlp", "vgg16", "", "x" * 300, "gaps", "codes",
]  # fmt: skip


# ---- the two files ----------------------------------------------------------------------


def _recode(data: bytes, choices: dict[tuple[str, str], str]) -> bytes:
    """``data`` with the streams (tensor, key) re-encoded by the coder given."""
    cf = container.unpack(data)
    header, sections = copy.deepcopy(cf.header), list(cf.sections)
    for entry in header["tensors"]:
        for key in ("gaps", "codes"):
            coder = choices.get((entry["name"], key))
            if coder is None:
                continue
            desc = entry[key]
            symbols = decode_stream(desc, sections[desc["section"]])
            coded = encode_stream(symbols, desc["alphabet"], coder=coder)
            sections[desc["section"]] = coded.table + coded.data
            entry[key] = {**coded.describe(), "section": desc["section"]}
    del header["sections"]
    return container.pack(header, sections)


def deep_compression_file() -> bytes:
    torch.manual_seed(0)
    kwargs = {"in_features": 64, "hidden": [32, 8]}
    model = get_model("lenet300", **kwargs)
    for name in ("fc1", "fc2"):
        w = model.get_submodule(name).weight.detach()
        add_transform(model, f"{name}.weight", Mask(w.abs() > w.abs().quantile(0.7)))
    share_weights(model, ["fc1.weight", "fc3.weight"], bits={"fc1.weight": 5, "fc3.weight": 3})
    data = encode(model, arch={"name": "lenet300", "kwargs": kwargs}, dense_dtype="float16")
    coders = {  # rANS on a short stream only: its decoder steps symbol by symbol per lane
        ("fc1.weight", "codes"): "huffman",
        ("fc1.weight", "gaps"): "raw",
        ("fc2.weight", "gaps"): "huffman",
        ("fc3.weight", "codes"): "rans",
    }
    return _recode(data, coders)


def binary_file() -> bytes:
    torch.manual_seed(0)
    base_kwargs = {"in_features": 64, "hidden": [32, 8]}
    kwargs = {"base": "lenet300", "base_kwargs": base_kwargs, "mode": "bwn"}
    model = convert(get_model("lenet300", **base_kwargs), "bwn").eval()
    return encode(model, arch={"name": "binarized", "kwargs": kwargs})


# ---- mutations ------------------------------------------------------------------------------


def _assemble(header: dict[str, Any], sections: list[bytes]) -> bytes:
    """Like ``container.pack`` but writing the header as given, section table included."""
    raw = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 6)
    head = struct.pack("<4sHHI", container.MAGIC, container.VERSION, 1, len(raw)) + raw
    head += struct.pack("<I", zlib.crc32(raw))
    head += b"\0" * (-len(head) % 8)
    return head + b"".join(s + b"\0" * (-len(s) % 8) for s in sections)


def _table(sections: list[bytes]) -> list[list[int]]:
    out, offset = [], 0
    for s in sections:
        out.append([offset, len(s), zlib.crc32(s)])
        offset += len(s) + (-len(s) % 8)
    return out


def _slots(value: Any, path: tuple = ()) -> list[tuple]:
    """Every (path to a JSON value) in ``value``."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _slots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _slots(v, (*path, i))
    return out


def _new_value(rng: np.random.Generator, old: Any) -> Any:
    """A replacement for a JSON value: a near or far number, another type, another word."""
    r = rng.random()
    if isinstance(old, int) and not isinstance(old, bool) and r < 0.6:
        near_or_far = [
            old + 1, old - 1, 0, 1, -1, old * 2, old // 2, 2**31, 2**32 + old, 2**62, 10**18,
            -(2**63), old + int(rng.integers(-8, 9)), int(rng.integers(0, 70000)),
        ]  # fmt: skip
        return near_or_far[int(rng.integers(len(near_or_far)))]
    if isinstance(old, str) and r < 0.6:
        return WORDS[int(rng.integers(len(WORDS)))]
    if isinstance(old, list) and old and r < 0.6:
        new = list(old)
        i = int(rng.integers(len(new)))
        op = int(rng.integers(4))
        if op == 0:
            del new[i]
        elif op == 1:
            new.insert(i, copy.deepcopy(new[i]))
        elif op == 2:
            new.reverse()
        else:
            new[i] = _new_value(rng, new[i])
        return new
    if isinstance(old, dict) and old and r < 0.6:
        new = dict(old)
        key = list(new)[int(rng.integers(len(new)))]
        if rng.random() < 0.5:
            del new[key]
        else:
            new[str(rng.choice(["x", "symbol", "buffer", "of", "dtype", key + "2"]))] = 1
        return new
    others = [None, True, 0.5, -1, "x", [], {}, [1, 2], {"a": 1}, 2**70, float("1e300")]
    return others[int(rng.integers(len(others)))]


def _set(header: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    if not path:
        return value if isinstance(value, dict) else header
    obj = header
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value
    return header


def _mutate_header(rng: np.random.Generator, header: dict, sections: list[bytes]) -> dict:
    r = rng.random()
    tensors = header.get("tensors")
    if r < 0.1 and isinstance(tensors, list) and tensors:  # whole entries
        i, j = (int(x) for x in rng.integers(len(tensors), size=2))
        op = int(rng.integers(3))
        if op == 0:
            tensors.append(copy.deepcopy(tensors[i]))
        elif op == 1:
            del tensors[i]
        elif isinstance(tensors[i], dict) and isinstance(tensors[j], dict):
            key = str(rng.choice(["name", "shape", "gaps", "codes", "section", "encoding"]))
            if key in tensors[i] and key in tensors[j]:
                tensors[i][key], tensors[j][key] = tensors[j][key], tensors[i][key]
        return header
    slots = _slots(header)
    path = slots[int(rng.integers(len(slots)))]
    obj = header
    for key in path:
        obj = obj[key]
    return _set(header, path, _new_value(rng, obj))


def _mutate_section(rng: np.random.Generator, sections: list[bytes], header: dict) -> None:
    if not sections:
        return
    i = int(rng.integers(len(sections)))
    blob = bytearray(sections[i])
    op = int(rng.integers(6))
    if op == 0 and blob:  # flip bits
        for pos in rng.integers(0, len(blob), size=int(rng.integers(1, 4))):
            blob[pos] ^= 1 << int(rng.integers(8))
    elif op == 1 and blob:  # a stream table's counts (varints at the start)
        pos = int(rng.integers(0, min(len(blob), 12)))
        blob[pos] = (blob[pos] + int(rng.choice([1, -1, 2, 127, 128]))) % 256
    elif op == 2:
        blob = blob[: int(rng.integers(0, len(blob) + 1))]
    elif op == 3:
        blob += bytes(rng.integers(0, 256, size=int(rng.integers(1, 9)), dtype=np.uint8))
    elif op == 4:
        j = int(rng.integers(len(sections)))
        blob = bytearray(sections[j])
    elif blob:  # overwrite a run
        start = int(rng.integers(len(blob)))
        n = min(int(rng.integers(1, 16)), len(blob) - start)
        blob[start : start + n] = bytes(rng.integers(0, 256, size=n, dtype=np.uint8))
    sections[i] = bytes(blob)


def _mutate_raw(rng: np.random.Generator, data: bytes) -> bytes:
    op = int(rng.integers(3))
    if op == 0:
        return data[: int(rng.integers(0, len(data)))]
    if op == 1:
        return data + bytes(rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8))
    blob = bytearray(data)
    blob[int(rng.integers(len(blob)))] ^= 1 << int(rng.integers(8))
    return bytes(blob)


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One fuzz case from a valid file: 1-3 structure-aware mutations."""
    cf = container.unpack(data)
    header, sections = copy.deepcopy(cf.header), list(cf.sections)  # header holds its table
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        if r < 0.55:
            header = _mutate_header(rng, header, sections)
        elif r < 0.9:
            _mutate_section(rng, sections, header)
        else:
            return _mutate_raw(rng, _assemble({**header, "sections": _table(sections)}, sections))
    if rng.random() < 0.85:  # checksums follow the bytes; else the (maybe mutated) table stays
        header = {**header, "sections": _table(sections)}
    return _assemble(header, sections)


# ---- running a case -----------------------------------------------------------------------


@dataclass
class Outcome:
    result: str  # "ok", a CnnzipError class name, or "OTHER <type>: message"
    seconds: float
    mb: float


def _statm_mb() -> tuple[float, float]:
    """(virtual size, resident size) of this process in MB."""
    with open("/proc/self/statm") as f:
        pages = [int(v) for v in f.read().split()[:2]]
    return pages[0] * os.sysconf("SC_PAGE_SIZE") / 2**20, pages[1] * os.sysconf(
        "SC_PAGE_SIZE"
    ) / 2**20


def _case(data: bytes, folder: str) -> str:
    try:
        load_file(container.unpack(data))
        path = os.path.join(folder, f"case-{os.getpid()}.cnnz")
        with open(path, "wb") as f:
            f.write(data)
        inspect(path)
        os.unlink(path)
        return "ok"
    except CnnzipError as exc:
        return type(exc).__name__
    except Exception as exc:  # what the fuzz is looking for
        return f"OTHER {type(exc).__name__}: {str(exc)[:200]}"


def _child(cases: list[bytes], folder: str, write: int) -> None:
    """Run ``cases`` and write [[result, seconds, peak MB], ...]; never returns."""
    signal.alarm(int(LIMIT_S * 4 * len(cases)))
    faulthandler.dump_traceback_later(LIMIT_S * 3 * len(cases))  # where a hang hangs
    vm, base = _statm_mb()  # a guard: a runaway case fails instead of swapping the machine
    resource.setrlimit(resource.RLIMIT_AS, (int(vm * 2**20) + (4 << 30), resource.RLIM_INFINITY))
    out = []
    for data in cases:
        start = time.perf_counter()
        result = _case(data, folder)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        out.append([result, seconds, max(peak, 0.0)])
    os.write(write, json.dumps(out).encode())
    os._exit(0)


def run_cases(cases: list[bytes], folder: str) -> list[Outcome]:
    """Run ``cases`` one after another in a forked child under an alarm and a 4 GB
    address-space guard. A case's MB is the child's peak RSS growth so far: with one
    case per child (the benchmark) exactly its own, in a batch (the test) an upper bound."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(cases, folder, write)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return [Outcome(f"OTHER killed (status {status})", LIMIT_S * 4, 0.0)] * len(cases)
    return [Outcome(*o) for o in json.loads(b"".join(chunks))]


def fuzz(
    cases: int, seed: int = 0, batch: int = 1
) -> tuple[Counter, list[tuple[int, Outcome]], float, float]:
    """(outcome counts, the failing cases, max seconds, max MB) over ``cases`` cases,
    alternating between the two files, ``batch`` cases per forked child."""
    torch.set_num_threads(1)
    files = [deep_compression_file(), binary_file()]
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    bad: list[tuple[int, Outcome]] = []
    worst_s = worst_mb = 0.0
    with tempfile.TemporaryDirectory() as folder:
        assert [o.result for o in run_cases(files, folder)] == ["ok", "ok"]
        for first in range(0, cases, batch):
            todo = range(first, min(first + batch, cases))
            outcomes = run_cases([mutate(rng, files[i % 2]) for i in todo], folder)
            for i, out in zip(todo, outcomes, strict=True):
                counts["OTHER" if out.result.startswith("OTHER") else out.result] += 1
                worst_s, worst_mb = max(worst_s, out.seconds), max(worst_mb, out.mb)
                if out.result.startswith("OTHER") or out.seconds > LIMIT_S or out.mb > LIMIT_MB:
                    bad.append((i, out))
    return counts, bad, worst_s, worst_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1, help="cases per forked child")
    args = parser.parse_args()
    start = time.perf_counter()
    counts, bad, worst_s, worst_mb = fuzz(args.cases, args.seed, args.batch)
    print(f"cnnzip {cnnzip.__version__}, {args.cases} cases, seed {args.seed}")
    print(f"{'outcome':<28}{'cases':>8}")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{name:<28}{n:>8}")
    print(f"{'other exceptions':<28}{counts['OTHER']:>8}")
    print(f"max seconds per case {worst_s:.2f} (limit {LIMIT_S}), max MB {worst_mb:.0f} "
          f"(limit {LIMIT_MB}), total {time.perf_counter() - start:.0f} s")  # fmt: skip
    for i, out in bad[:20]:
        print(f"case {i}: {out}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
