"""The survey's tables (DIR/SURVEY.md) and plots (two PNGs) from results.json's numbers.

Pure functions of the results mapping, so partial results render too: a missing number
is "pending". Where a measurement disagrees with a paper's claim, a sentence says so with
both numbers (the claims are those of ../shared/REFERENCE.md, on ImageNet).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: no backend, no window, no global state

from cnnzip.fileio import atomic_write_bytes, atomic_write_text
from cnnzip.survey.plan import ROWS

__all__ = ["PLOT_BYTES", "PLOT_LATENCY", "REPORT", "render", "write_report"]

REPORT = "SURVEY.md"
PLOT_BYTES = "accuracy_vs_bytes.png"
PLOT_LATENCY = "accuracy_vs_latency.png"
PENDING = "pending"

Rows = dict[str, dict[str, dict[str, Any]]]  # row -> step -> numbers

# The papers' claims (ImageNet), for the tables' "paper" columns and the sentences
DC_ALEXNET_RATIO = 35.0  # 240 MB -> 6.9 MB at no loss
DC_VGG16_RATIO = 49.0
SQUEEZENET_VS_ALEXNET = 510.0  # SqueezeNet + Deep Compression (6-bit) vs float32 AlexNet
XNOR_MEMORY = 32.0
XNOR_SPEEDUP = 58.0
BINARY_PAPER = {  # top-1: float / BWN / XNOR
    "alexnet": (56.6, 56.8, 44.2),
    "resnet18": (69.3, 60.8, 51.2),
}
SHUFFLENET_PAPER_ERROR = {  # ImageNet top-1 error at 1x (140 MFLOPs)
    "shufflenet_g1": "33.6%",
    "shufflenet_g3": "32.6%",
    "shufflenet_g8": "32.4%",
    "shufflenet_g3_noshuffle": "worse than with shuffle (g=8: 37.6% vs 32.4%)",
}
MOBILENET_PAPER = {  # top-1, mult-adds at 224
    "mobilenet_1.0": "70.6%, 569M MACs",
    "mobilenet_0.5": "63.7%, 149M MACs",
}


# ---- cells -----------------------------------------------------------------------------


def _get(rows: Rows, row: str, step: str, *keys: str) -> Any:
    """rows[row][step][k1][k2]..., or None where any part is missing."""
    value: Any = rows.get(row, {}).get(step)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _cell(value: Any, fmt: Callable[[Any], str]) -> str:
    return PENDING if value is None else fmt(value)


def pct(value: float | None) -> str:
    return _cell(value, lambda v: f"{100 * v:.2f}%")


def count(value: int | None) -> str:
    return _cell(value, lambda v: f"{v:,}")


def mega(value: float | None) -> str:
    return _cell(value, lambda v: f"{v / 1e6:.1f}M")


def ms(value: float | None) -> str:
    return _cell(value, lambda v: f"{v:.2f}")


def times(value: float | None) -> str:
    return _cell(value, lambda v: f"{v:.1f}x")


def pp(value: float | None) -> str:
    return _cell(value, lambda v: f"{v:+.2f}")


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is missing (or b is 0)."""
    return None if a is None or not b else a / b


def table(header: list[str], lines: Iterable[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])


def _names(table_name: str | None = None) -> list[str]:
    return [r.name for r in ROWS if table_name is None or r.table == table_name]


# ---- sections --------------------------------------------------------------------------


def header(setting: dict[str, Any]) -> str:
    b = setting.get("budget", {})
    tests = b.get("test_images") or 10_000
    compress = _options(b.get("compress", {}))
    pruned = (
        f"; every layer pruned to {b['prune_ratio']} (no sensitivity sweep)"
        if b.get("prune_ratio")
        else ""
    )
    width = f"; small-width stand-ins: {b['width']}" if b.get("width") else ""
    own_lr = "".join(f", {r.name} {r.lr:g}" for r in ROWS if r.lr is not None)
    if b.get("name") != "quick":  # the full budget's rows with recipe options of their own
        own: dict[str, list[str]] = {}
        for r in (r for r in ROWS if r.compress):
            own.setdefault(_options(r.compress), []).append(r.name)
        compress += "".join(f"; {', '.join(names)}: {opts}" for opts, names in own.items())
        compress += "".join(
            f"; {r.name} pruned at lr {r.lr:g}, fine-tuned at {r.lr / 10:g}"
            for r in ROWS
            if r.lr is not None
        )
    return "\n".join(
        [
            "# The survey's tables, measured here",
            "",
            f"Written by `cnnzip survey` on {setting.get('date', PENDING)}; CPU: "
            f"{setting.get('cpu', PENDING)} ({setting.get('cores', '?')} cores), "
            f"torch {setting.get('torch', '?')}, training at {setting.get('threads', '?')} "
            "thread(s).",
            "",
            f"Setting: {setting.get('data', PENDING)}, 10 classes, 1 channel. Budget "
            f'"{b.get("name", PENDING)}": {b.get("epochs")} epoch(s) (batch '
            f"{b.get('batch_size')}, Adam, lr {b.get('lr')}{own_lr}, cosine) on the "
            f"first {b.get('train_images')} images of the fixed-seed training split; "
            f"{b.get('val_images')} validation images; {tests} test images. Deep "
            f"Compression: the built-in recipe with {compress or 'its defaults'}{pruned}. "
            f"BWN/XNOR: {b.get('binary_epochs')} fine-tuning epoch(s). Latency: median of "
            f"{b.get('latency_runs')} batch-1 forwards{width}.",
            "",
            "The papers' numbers are ImageNet's (../shared/REFERENCE.md); ours are "
            "Fashion-MNIST's, so accuracies compare in direction, ratios directly.",
        ]
    )


def _options(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items())


def zoo_section(rows: Rows) -> str:
    def line(name: str) -> list[str]:
        lat = _get(rows, name, "profile", "latency_ms") or {}
        macs = _get(rows, name, "profile", "macs")
        return [
            name,
            pct(_get(rows, name, "train", "test_accuracy")),
            count(_get(rows, name, "profile", "params")),
            mega(macs),
            mega(_get(rows, name, "profile", "float32_bytes")),
            ms(lat.get("1")),
            ms(lat.get("2")),
            _cell(ratio(macs, lat.get("1")), lambda v: f"{v / 1e6:.2f}"),
        ]

    head = ["model", "test acc", "params", "MACs", "float32 bytes", "ms (1 thread)"]
    head += ["ms (2 threads)", "GMAC/s (1 thread)"]
    notes = [n for n in (_timing_note(rows), _macs_vs_speed(rows)) if n]
    return "## The zoo\n\n" + table(head, map(line, _names())) + "".join(f"\n\n{n}" for n in notes)


def _timing_note(rows: Rows) -> str | None:
    """Where the latencies come from: one quiet interleaved pass (``survey --latency``)
    or the study's own steps, beside other work (the load average says how much)."""
    named = {n: p for n in _names() if (p := _get(rows, n, "profile"))}
    profiles = list(named.values())
    if not profiles:
        return None
    passes = sorted({p["latency_pass"] for p in profiles if p.get("latency_pass")})
    loads = [p["load_avg_1min"] for p in profiles if p.get("load_avg_1min") is not None]
    load = f"1-minute load average {min(loads):.2f}-{max(loads):.2f}" if loads else "load unknown"
    study = [n for n, p in named.items() if not p.get("latency_pass")]
    fresh = [n for n, p in named.items() if p.get("fresh_weights")]
    fresh_note = (
        f" {', '.join(fresh)} timed on freshly built weights (the trained ones were not in "
        "this checkout; a dense float32 model's speed does not depend on their values)."
        if fresh
        else ""
    )
    if len(passes) == 1 and not study:
        return (
            f"Latencies: every model timed in one interleaved pass (`cnnzip survey --latency`), "
            f"{passes[0]}, {load} at its start.{fresh_note}"
        )
    if len(passes) == 1:  # the others' trained models were not there to time
        return (
            f"Latencies: {len(profiles) - len(study)} of {len(profiles)} models timed in one "
            f"interleaved pass (`cnnzip survey --latency`), {passes[0]}; "
            f"{', '.join(study)} timed during the study, beside other work ({load})."
        )
    return (
        "Latencies: timed during the study, each model after its training, with other work "
        f"on the machine ({load}; above ~0.5 another job shared the 2 cores): rerun "
        "`cnnzip survey --latency` in a quiet window for comparable numbers."
    )


def _macs_vs_speed(rows: Rows) -> str | None:
    """The starkest case of fewer MACs running slower (1 thread), if there is one."""
    cost = {
        n: (_get(rows, n, "profile", "macs"), _get(rows, n, "profile", "latency_ms", "1"))
        for n in _names()
    }
    cost = {n: c for n, c in cost.items() if None not in c}
    pairs = [
        (a, b) for a in cost for b in cost if cost[a][0] < cost[b][0] and cost[a][1] > cost[b][1]
    ]
    if not pairs:
        return None
    a, b = max(pairs, key=lambda p: cost[p[0]][1] / cost[p[1]][1])
    return (
        f"Fewer MACs are not the same as speed: {a} has {cost[b][0] / cost[a][0]:.1f}x fewer "
        f"MACs than {b} but takes {cost[a][1] / cost[b][1]:.1f}x as long at 1 thread."
    )


def compression_section(rows: Rows) -> str:
    alexnet_bytes = _get(rows, "alexnet", "profile", "float32_bytes")

    def line(name: str) -> list[str]:
        size = _get(rows, name, "compress", "bytes")
        claim = {"alexnet": f"{DC_ALEXNET_RATIO:.0f}x at no loss (240 MB -> 6.9 MB)"}.get(name)
        if name.startswith("squeezenet"):
            claim = f"{SQUEEZENET_VS_ALEXNET:.0f}x smaller than AlexNet (0.47 MB, 6-bit)"
        return [
            name,
            count(_get(rows, name, "profile", "float32_bytes")),
            count(size),
            times(_get(rows, name, "compress", "ratio")),
            times(ratio(alexnet_bytes, size)),
            pct(_get(rows, name, "train", "test_accuracy")),
            pct(_get(rows, name, "compress", "test_accuracy")),
            pp(_get(rows, name, "compress", "drop_pp")),
            claim or "",
        ]

    head = ["model", "float32 bytes", ".cnnz bytes", "ratio", "vs float32 AlexNet"]
    head += ["acc before", "acc of the decoded file", "drop (pp)", "paper"]
    notes = [s for s in (_alexnet_claim(rows), _squeezenet_claim(rows)) if s]
    notes.append(f"VGG-16 ({DC_VGG16_RATIO:.0f}x in the paper) is not a row of this survey.")
    title = "## Deep Compression (prune, share, encode into .cnnz)"
    return "\n\n".join([title, table(head, map(line, _names())), *notes])


def _alexnet_claim(rows: Rows) -> str | None:
    r, drop = (
        _get(rows, "alexnet", "compress", "ratio"),
        _get(rows, "alexnet", "compress", "drop_pp"),
    )
    if r is None or drop is None:
        return None
    verdict = "agrees with" if r >= DC_ALEXNET_RATIO and drop <= 0.5 else "falls short of"
    return (
        f"AlexNet: the .cnnz file is {r:.1f}x smaller than float32 at {drop:+.2f} pp test "
        f"accuracy drop; this {verdict} the paper's {DC_ALEXNET_RATIO:.0f}x at no loss."
    )


def _squeezenet_claim(rows: Rows) -> str | None:
    alexnet = _get(rows, "alexnet", "profile", "float32_bytes")
    done = [n for n in _names("squeezenet") if _get(rows, n, "compress", "bytes")]
    if alexnet is None or not done:
        return None
    best = max(done, key=lambda n: _get(rows, n, "compress", "test_accuracy"))
    r = alexnet / _get(rows, best, "compress", "bytes")
    acc, ref = (
        _get(rows, best, "compress", "test_accuracy"),
        _get(rows, "alexnet", "train", "test_accuracy"),
    )
    gap = "" if ref is None else f", {100 * (acc - ref):+.2f} pp against AlexNet's accuracy"
    # the paper's claim is both: 510x smaller *and* AlexNet's accuracy (within 1 pp here)
    small, lost = r >= SQUEEZENET_VS_ALEXNET, ref is not None and ref - acc > 0.01
    verdict = "agrees with" if small and ref is not None and not lost else "falls short of"
    verdict += " (accuracy lost)" if small and lost else ""  # small enough, but not as good
    return (
        f"SqueezeNet (best variant, {best}) + Deep Compression: {r:.1f}x smaller than float32 "
        f"AlexNet{gap}; this {verdict} the paper's {SQUEEZENET_VS_ALEXNET:.0f}x at AlexNet's "
        "accuracy."
    )


def _trade_line(rows: Rows, name: str, paper: str) -> list[str]:
    lat = _get(rows, name, "profile", "latency_ms") or {}
    return [
        name,
        pct(_get(rows, name, "train", "test_accuracy")),
        count(_get(rows, name, "profile", "params")),
        mega(_get(rows, name, "profile", "macs")),
        ms(lat.get("1")),
        ms(lat.get("2")),
        paper,
    ]


TRADE_HEAD = ["model", "test acc", "params", "MACs", "ms (1 thread)", "ms (2 threads)", "paper"]


def mobilenet_section(rows: Rows) -> str:
    lines = [_trade_line(rows, n, MOBILENET_PAPER.get(n, "")) for n in _names("mobilenet")]
    parts = ["## MobileNet: the width multiplier alpha", table(TRADE_HEAD, lines)]
    pair = _pair_sentence(rows, "mobilenet_1.0", "mobilenet_0.5", "alpha 0.5", "alpha 1.0")
    parts.append(pair + " The paper: 3.8x fewer MACs for 6.9 pp less top-1 (70.6% -> 63.7%).")
    return "\n\n".join(parts)


def _pair_sentence(
    rows: Rows, big: str, small: str, small_name: str, big_name: str, paper_more: bool = False
) -> str:
    """``small`` against ``big``: MACs, measured latency and accuracy, as numbers, and
    whether the accuracy goes the paper's way (``paper_more``: the paper has the smaller
    net more accurate, as ShuffleNet against MobileNet; else less, as a thinner alpha)."""
    macs = ratio(_get(rows, big, "profile", "macs"), _get(rows, small, "profile", "macs"))
    lat = ratio(
        _get(rows, big, "profile", "latency_ms", "1"),
        _get(rows, small, "profile", "latency_ms", "1"),
    )
    a, b = _get(rows, small, "train", "test_accuracy"), _get(rows, big, "train", "test_accuracy")
    if macs is None or lat is None or a is None or b is None:
        return f"Here: {PENDING}."
    if paper_more:
        direction = (
            "as in the paper" if a >= b else f"unlike the paper, {small_name} is less accurate"
        )
    else:
        direction = (
            "as in the paper"
            if a <= b
            else "unlike the paper, the smaller net is not less accurate"
        )
    speed = f"runs {lat:.1f}x faster" if lat >= 1 else f"takes {1 / lat:.1f}x as long"
    return (
        f"Here {small_name} has {macs:.1f}x fewer MACs than {big_name} and {speed} "
        f"at 1 thread, at {100 * (a - b):+.2f} pp accuracy ({direction})."
    )


def shufflenet_section(rows: Rows) -> str:
    lines = [_trade_line(rows, n, SHUFFLENET_PAPER_ERROR.get(n, "")) for n in _names("shufflenet")]
    parts = ["## ShuffleNet: groups and the channel shuffle", table(TRADE_HEAD, lines)]
    on = _get(rows, "shufflenet_g3", "train", "test_accuracy")
    off = _get(rows, "shufflenet_g3_noshuffle", "train", "test_accuracy")
    if on is not None and off is not None:
        verdict = "helped, as in the paper" if on > off else "did not help here, unlike the paper"
        parts.append(
            f"Shuffle ablation (g=3): {100 * on:.2f}% with the shuffle, {100 * off:.2f}% "
            f"without ({100 * (on - off):+.2f} pp): the shuffle {verdict}."
        )
    parts += [s for s in [_groups_sentence(rows)] if s]
    parts.append(
        _pair_sentence(
            rows, "mobilenet_0.5", "shufflenet_g3", "ShuffleNet g=3", "MobileNet 0.5", True
        )
        + " The paper: ShuffleNet beats MobileNet at equal cost (41.6% vs 49.4% error)."
    )
    return "\n\n".join(parts)


def _groups_sentence(rows: Rows) -> str | None:
    """More groups (wider channels at the same MACs) gave lower error in the paper."""
    names = ("shufflenet_g1", "shufflenet_g3", "shufflenet_g8")
    accs = [_get(rows, n, "train", "test_accuracy") for n in names]
    if any(a is None for a in accs):
        return None
    order = "as in the paper" if accs == sorted(accs) else "not the paper's order"
    shown = ", ".join(f"g={n[-1]} {100 * a:.2f}%" for n, a in zip(names, accs, strict=True))
    return (
        f"Groups: {shown} ({order}: 33.6%, 32.6%, 32.4% error for g=1, 3, 8, more groups "
        "better at equal cost)."
    )


def binary_section(rows: Rows) -> str:
    def line(name: str, mode: str) -> list[str]:
        get = lambda *k: _get(rows, name, mode, *k)  # noqa: E731
        paper = BINARY_PAPER.get(name)
        claim = f"top-1 {paper[0]} -> {paper[1 if mode == 'bwn' else 2]}" if paper else ""
        claim += f"; {XNOR_MEMORY:.0f}x memory" + (
            f", {XNOR_SPEEDUP:.0f}x speed" if mode == "xnor" else ""
        )
        return [
            name,
            mode.upper(),
            pct(_get(rows, name, "train", "test_accuracy")),
            pct(get("test_accuracy")),
            count(get("bytes")),
            times(get("memory_ratio")),
            "/".join(ms((get("float_ms") or {}).get(t)) for t in ("1", "2"))
            if mode == "xnor"
            else "",
            "/".join(ms((get("xnor_ms") or {}).get(t)) for t in ("1", "2"))
            if mode == "xnor"
            else "",
            "/".join(times((get("speedup") or {}).get(t)) for t in ("1", "2"))
            if mode == "xnor"
            else "",
            claim,
        ]

    head = ["model", "mode", "float acc", "binary acc", ".cnnz bytes", "memory vs float32"]
    head += ["float ms (1/2 threads)", "XNOR ms (1/2)", "speedup (1/2)", "paper"]
    names = [r.name for r in ROWS if r.binary]
    lines = [line(n, m) for n in names for m in ("bwn", "xnor")]
    notes = []
    for name in names:
        mem, speed = (
            _get(rows, name, "bwn", "memory_ratio"),
            _get(rows, name, "xnor", "speedup", "1"),
        )
        cpu = _get(rows, name, "xnor", "cpu_speedup_1")
        if mem is not None and speed is not None:
            notes.append(
                f"{name}: the BWN file is {mem:.1f}x smaller than float32 (claimed "
                f"{XNOR_MEMORY:.0f}x: the first and last layers stay float) and XNOR runs "
                f"{speed:.1f}x faster than float32 at 1 thread on the kernels"
                + ("" if cpu is None else f" ({cpu:.1f}x in CPU time)")
                + f" (claimed {XNOR_SPEEDUP:.0f}x for one conv, without memory traffic)."
            )
    notes += [
        s for s in (_binary_accuracy(rows, n, m) for n in names for m in ("bwn", "xnor")) if s
    ]
    return "\n\n".join(["## Binary networks: BWN and XNOR-Net", table(head, lines), *notes])


def _binary_accuracy(rows: Rows, name: str, mode: str) -> str | None:
    """The binary net's accuracy change against its float net, beside the paper's."""
    base, acc = _get(rows, name, "train", "test_accuracy"), _get(rows, name, mode, "test_accuracy")
    paper = BINARY_PAPER.get(name)
    if base is None or acc is None or paper is None:
        return None
    claimed = paper[1 if mode == "bwn" else 2] - paper[0]
    return (
        f"{name} {mode.upper()}: {100 * (acc - base):+.2f} pp test accuracy against the float "
        f"net (paper, ImageNet top-1: {claimed:+.1f} pp)."
    )


def distill_section(rows: Rows) -> str:
    d = rows.get("distill", {}).get("train") or {}
    line = [
        d.get("student", PENDING),
        d.get("teacher", PENDING),
        pct(d.get("teacher_accuracy")),
        pct(d.get("alone_accuracy")),
        pct(d.get("distilled_accuracy")),
        pp(d.get("gain_pp")),
        "MNIST 2x800 student: 146 -> 74 errors (teacher 67)",
    ]
    head = ["student", "teacher", "teacher acc", "student alone", "student distilled"]
    head += ["gain (pp)", "paper"]
    text = ["## Distillation (same student, same budget)", table(head, [line])]
    if d.get("gain_pp") is not None and d["gain_pp"] <= 0:
        text.append(
            f"Distillation did not help here ({d['gain_pp']:+.2f} pp), unlike the paper's "
            "student that halved its errors."
        )
    return "\n\n".join(text)


def render(results: dict[str, Any]) -> str:
    """SURVEY.md's text for ``results`` (results.json's mapping), complete or not."""
    rows: Rows = results.get("rows", {})
    sections = [
        header(results.get("setting", {})),
        zoo_section(rows),
        compression_section(rows),
        mobilenet_section(rows),
        shufflenet_section(rows),
        binary_section(rows),
        distill_section(rows),
        f"![accuracy vs bytes on disk]({PLOT_BYTES})\n\n"
        f"![accuracy vs measured latency]({PLOT_LATENCY})",
    ]
    return "\n\n".join(sections) + "\n"


# ---- plots -----------------------------------------------------------------------------


Point = tuple[str, float, float, str]  # label, x, accuracy, method

# method -> (step of the size, its key, step of the accuracy, label suffix)
SIZES = {
    "float32": ("profile", "float32_bytes", "train", ""),
    "Deep Compression": ("compress", "bytes", "compress", " DC"),
    "BWN": ("bwn", "bytes", "bwn", " BWN"),
    "XNOR": ("xnor", "bytes", "xnor", " XNOR"),
}


def _points(
    rows: Rows, x: Callable[[str, str], Any], y: Callable[[str, str], Any], kinds: Iterable[str]
) -> list[Point]:
    """Every (row, method) with both numbers measured."""
    out = [
        (f"{name}{SIZES[kind][3]}", x(name, kind), y(name, kind), kind)
        for kind in kinds
        for name in _names()
    ]
    return [p for p in out if p[1] is not None and p[2] is not None]


def _accuracy(rows: Rows, name: str, kind: str) -> Any:
    return _get(rows, name, SIZES[kind][2], "test_accuracy")


def points_bytes(rows: Rows) -> list[Point]:
    """Every model measured, at its bytes on disk: float32, .cnnz, BWN/XNOR .cnnz."""
    size = lambda name, kind: _get(rows, name, *SIZES[kind][:2])  # noqa: E731
    return _points(rows, size, lambda n, k: _accuracy(rows, n, k), SIZES)


def points_latency(rows: Rows) -> list[Point]:
    """Float models and XNOR on the kernels, at their batch-1 ms at 1 thread."""
    where = {"float32": ("profile", "latency_ms"), "XNOR": ("xnor", "xnor_ms")}
    ms_of = lambda name, kind: _get(rows, name, *where[kind], "1")  # noqa: E731
    return _points(rows, ms_of, lambda n, k: _accuracy(rows, n, k), where)


def claims(rows: Rows) -> list[tuple[str, float]]:
    """Where the papers' ratios would put a file, from our float32 AlexNet's bytes."""
    alexnet = _get(rows, "alexnet", "profile", "float32_bytes")
    if alexnet is None:
        return []
    return [
        (f"paper: AlexNet + DC ({DC_ALEXNET_RATIO:.0f}x)", alexnet / DC_ALEXNET_RATIO),
        (f"paper: SqueezeNet + DC ({SQUEEZENET_VS_ALEXNET:.0f}x)", alexnet / SQUEEZENET_VS_ALEXNET),
    ]


def plot(
    points: list[Point], xlabel: str, title: str, lines: Iterable[tuple[str, float]] = ()
) -> bytes:
    """A labelled scatter plot (log x, one colour per method) as PNG bytes; ``lines`` are
    labelled vertical marks (the papers' claims)."""
    fig = Figure(figsize=(10, 6.5))
    ax = fig.subplots()
    for kind in dict.fromkeys(p[3] for p in points):
        mine = [p for p in points if p[3] == kind]
        ax.scatter([p[1] for p in mine], [100 * p[2] for p in mine], s=20, label=kind)
    for label, x, y, _ in points:
        ax.annotate(label, (x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for label, x in lines:
        ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(
            label,
            (x, 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            color="grey",
            xytext=(-9, 0),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if points:
        ax.legend(loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # Agg renders PNG
    return buf.getvalue()


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """SURVEY.md and the two plots in ``out``; returns SURVEY.md's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = results.get("rows", {})
    size_plot = plot(points_bytes(rows), "bytes on disk (log)", "Accuracy vs size", claims(rows))
    atomic_write_bytes(out / PLOT_BYTES, size_plot)
    atomic_write_bytes(
        out / PLOT_LATENCY,
        plot(
            points_latency(rows),
            "batch-1 latency at 1 thread, ms (log)",
            "Accuracy vs measured latency",
        ),
    )
    atomic_write_text(out / REPORT, render(results))
    return out / REPORT
