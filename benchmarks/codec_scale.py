"""The .cnnz codec at scale: save and load speed and peak memory, beside np.savez/np.load.

    .venv/bin/python benchmarks/codec_scale.py --models lenet300 alexnet
    .venv/bin/python benchmarks/codec_scale.py --models vgg16 --repeats 1
    .venv/bin/python benchmarks/codec_scale.py --models --epochs 5 --steps 30

``--epochs N`` also times Deep Compression's retraining epochs of LeNet-300-100
(Fashion-MNIST's shape, 16,384 synthetic images, batch 128, Adam), N of each,
interleaved after an untimed warm-up round, best of N: plain, pruned to 90% under
``MaskKeeper``, and shared (5-bit) fine-tuning its codebooks; the ratios to the
plain epoch are reported, best over best and the median and range of each repeat's
ratio to the plain epoch timed just before it. ``--steps N`` times N interleaved
blocks of 20 Adam steps of each on one batch (``Stepper``), the pruned ones also
under the keeper as it was before it filled Adam's second moment (zeros there:
torch's sqrt is slow on zeros).

Each zoo model at random init is pruned to 90% per layer (magnitude) and shared
(8-bit conv / 5-bit fc), as Deep Compression stores it; then, in this one
process and one thread: ``cnnzip.save`` and ``cnnzip.load`` of the model, and
the same weights decoded to float32 arrays through ``np.savez_compressed`` /
``np.load`` and safetensors (when installed). Speeds are MB/s of float32
weights (4 bytes a parameter, buffers excluded); peak additional memory is
both tracemalloc's (NumPy and Python allocations) and the growth of the
process's peak RSS (``/proc/self/status`` VmHWM, reset through
``/proc/self/clear_refs`` before each step), over the RSS before the step.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cnnzip
from cnnzip.data import synthetic
from cnnzip.models import get_model
from cnnzip.prune import MaskKeeper, enforce_masks, magnitude, set_mask
from cnnzip.quantize import share_weights
from cnnzip.train import TrainConfig, TrainState, fit

try:
    import safetensors.numpy as safetensors_numpy
except ImportError:  # optional: the table then has no safetensors columns
    safetensors_numpy = None

MODELS = {  # zoo name -> builder kwargs (the paper's ImageNet shapes; lenet300 on MNIST)
    "lenet300": {},
    "alexnet": {},
    "vgg16": {},
}
SPARSITY = 0.9
MB = 1e6


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def measure(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """(fn(), seconds and peak additional memory in bytes: tracemalloc and RSS)."""
    gc.collect()
    _reset_peak_rss()
    rss0 = _status_kb("VmRSS")
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = (_status_kb("VmHWM") - rss0) * 1024
    return out, {"seconds": seconds, "traced_peak": traced, "rss_peak": rss}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds) without tracemalloc, which slows allocation-heavy code."""
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def pruned(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every Conv/Linear weight pruned to ``SPARSITY`` by magnitude."""
    for module_name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            keep = magnitude(module.weight, SPARSITY).keep
            set_mask(model, f"{module_name}.weight", keep)
    return model


def compressed(name: str) -> tuple[torch.nn.Module, int, float, float]:
    """The zoo model pruned to 90% and shared; (model, its parameters, prune seconds,
    share seconds)."""
    torch.manual_seed(0)
    model = get_model(name, **MODELS[name])
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    pruned(model)
    prune_s = time.perf_counter() - start
    start = time.perf_counter()
    share_weights(model, bits={"conv": 8, "linear": 5})
    return model, params, prune_s, time.perf_counter() - start


def _npz_save(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _npz_load(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files}


def baselines(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Callable]]:
    """(sizes and save seconds of np.savez_compressed and safetensors of the decoded
    float32 arrays, the loads of those files by name)."""
    out: dict[str, Any] = {}
    blob, out["npz_save_s"] = timed(lambda: _npz_save(arrays))
    out["npz_bytes"] = len(blob)
    loads: dict[str, Callable] = {"npz": partial(_npz_load, blob)}
    if safetensors_numpy is not None:
        st, out["safetensors_save_s"] = timed(lambda: safetensors_numpy.save(arrays))
        out["safetensors_bytes"] = len(st)
        loads["safetensors"] = partial(safetensors_numpy.load, st)
    return out, loads


def best(first: dict[str, float], fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of the measured first call and ``repeats - 1`` more."""
    return min([first["seconds"]] + [timed(fn)[1] for _ in range(repeats - 1)])


def interleaved(loads: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Best seconds of each load, the loads taking turns ``repeats`` times (so a busy
    moment of the machine slows all of them, not one)."""
    seconds: dict[str, list[float]] = {name: [] for name in loads}
    for _ in range(repeats):
        for name, load in loads.items():
            seconds[name].append(timed(load)[1])
    return {f"{name}_load_s": min(s) for name, s in seconds.items()}


def run(name: str, folder: Path, repeats: int) -> dict[str, Any]:
    model, params, prune_s, share_s = compressed(name)
    weight_bytes = 4 * params
    path = folder / f"{name}.cnnz"
    save = partial(cnnzip.codec.save, path, model, arch={"name": name, "kwargs": {}})
    size, save_mem = measure(save)
    save_s = best(save_mem, save, repeats)
    del model, save  # the load is measured without the compressed model in memory
    loaded, load_mem = measure(lambda: cnnzip.load(path))
    arrays = {k: v.numpy() for k, v in loaded.state_dict().items()}
    del loaded
    row, loads = baselines(arrays)
    del arrays
    row.update(interleaved({"cnnz": partial(cnnzip.load, path), **loads}, repeats))
    load_s = row["cnnz_load_s"]
    row.update({
        "model": name, "params": params, "file_bytes": size,
        "ratio": weight_bytes / size, "prune_s": prune_s, "share_s": share_s,
        "save_s": save_s, "load_s": load_s,
        "save_MBps": weight_bytes / MB / save_s, "load_MBps": weight_bytes / MB / load_s,
        "save_peak_x": max(save_mem["traced_peak"], save_mem["rss_peak"]) / weight_bytes,
        "load_peak_x": max(load_mem["traced_peak"], load_mem["rss_peak"]) / weight_bytes,
        "save_mem": save_mem, "load_mem": load_mem,
        "npz_load_MBps": weight_bytes / MB / row["npz_load_s"],
        "load_vs_np_load": row["npz_load_s"] / load_s,
    })  # fmt: skip
    return row


def epoch_ratios(repeats: int) -> dict[str, float]:
    """Seconds of a LeNet-300-100 epoch, plain / pruned (MaskKeeper) / shared, best of
    ``repeats`` interleaved, and the ratios to the plain one."""
    data = synthetic(n_train=16384, n_val=256, n_test=256)
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1e-3, lr_schedule="constant")

    def plain() -> torch.nn.Module:
        torch.manual_seed(0)
        return get_model("lenet300")

    def shared() -> torch.nn.Module:
        model = pruned(plain())
        share_weights(model, bits={"linear": 5})
        return model

    kinds = {"plain": plain, "pruned": lambda: pruned(plain()), "shared": shared}
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    for repeat in range(repeats + 1):  # the first round warms up (lazy imports, allocator)
        for kind, make in kinds.items():
            keeper = [MaskKeeper()] if kind == "pruned" else []
            one = partial(fit, make(), data, cfg, callbacks=keeper, progress=False)
            spent = timed(one)[1]
            if repeat:
                seconds[kind].append(spent)
    best = {k: min(v) for k, v in seconds.items()}
    out: dict[str, Any] = dict(best)
    for kind in ("pruned", "shared"):  # best / best, and each repeat's ratio to its own plain
        out |= {f"{kind}_x": best[kind] / best["plain"], **paired(seconds, kind)}
    return out


def paired(seconds: dict[str, list[float]], kind: str) -> dict[str, Any]:
    """The median and range of each repeat's ratio of ``kind`` to the plain one before it."""
    pairs = sorted(t / p for t, p in zip(seconds[kind], seconds["plain"], strict=True))
    return {f"{kind}_x_median": float(np.median(pairs)), f"{kind}_x_range": [pairs[0], pairs[-1]]}


class Stepper:
    """LeNet-300-100 Adam steps on one fixed batch of 128, as ``fit`` takes them (zero_grad,
    backward, step, the keeper's on_step_end): ``kind`` is plain, pruned (90%, MaskKeeper)
    or pruned_zero_state (the keeper before it filled Adam's second moment: the state
    zeroed once, after the first step, and nothing per step, which it then needed)."""

    def __init__(self, kind: str) -> None:
        torch.manual_seed(0)
        self.model = get_model("lenet300")
        if kind != "plain":
            pruned(self.model)
        self.x, self.y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))  # (N, C, H, W)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.state = TrainState(model=self.model, optimizer=self.opt, config=TrainConfig())
        self.keeper = MaskKeeper() if kind == "pruned" else None
        if self.keeper:
            self.keeper.on_epoch_start(self.state)
        self(1)
        if kind == "pruned_zero_state":
            enforce_masks(self.model, self.opt)

    def __call__(self, n: int) -> None:
        for _ in range(n):
            loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if self.keeper:
                self.keeper.on_step_end(self.state)


def step_ratios(rounds: int, steps: int = 20) -> dict[str, Any]:
    """Per kind of ``Stepper``: the median seconds of a step over ``rounds`` interleaved
    blocks of ``steps``, and the median and range of each block's ratio to the plain
    block timed just before it."""
    kinds = {k: Stepper(k) for k in ("plain", "pruned", "pruned_zero_state")}
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind, stepper in kinds.items():
            seconds[kind].append(timed(partial(stepper, steps))[1] / steps)
    out: dict[str, Any] = {f"{k}_step_s": float(np.median(v)) for k, v in seconds.items()}
    for kind in ("pruned", "pruned_zero_state"):
        out |= paired(seconds, kind)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | params | file | x | save MB/s | load MB/s | np.load MB/s | load/np.load "
        "| save peak / weights | load peak / weights |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [
        f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['file_bytes'] / MB:.2f} MB "
        f"| {r['ratio']:.1f} | {r['save_MBps']:.0f} | {r['load_MBps']:.0f} "
        f"| {r['npz_load_MBps']:.0f} | {r['load_vs_np_load']:.2f} "
        f"| {r['save_peak_x']:.2f} | {r['load_peak_x']:.2f} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=0, help="time N training epochs of each")
    parser.add_argument("--steps", type=int, default=0, help="time N blocks of 20 steps of each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(run(name, Path(tmp), args.repeats))
            print(json.dumps(rows[-1]), flush=True)
    if rows:
        print(table(rows))
    if args.epochs:
        rows.append({"lenet300_epochs": epoch_ratios(args.epochs)})
        print(json.dumps(rows[-1]))
    if args.steps:
        rows.append({"lenet300_steps": step_ratios(args.steps)})
        print(json.dumps(rows[-1]))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
