"""The profile of a model: per-layer rows, totals, shares by layer kind, measured latency."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "MAC_CONVENTION",
    "SHARE_GROUPS",
    "Latency",
    "LayerProfile",
    "ProfileReport",
    "compare",
    "comparison",
    "comparison_text",
]

MAC_CONVENTION = (
    "MACs = multiply-accumulates of conv, fc and matmul layers (biases not counted); "
    "other ops: one per output element of norms, activations, add/mul, and one per "
    "window element of pooling"
)

# layer kind -> the MobileNet paper's Table 2 group it is shared under
SHARE_GROUPS = {
    "conv1x1": "1x1 conv",
    "depthwise": "depthwise conv",
    "conv": "full conv",
    "fc": "fully connected",
}


@dataclass
class LayerProfile:
    """One leaf module (or one tensor op, named ``owner:op``), summed over its calls."""

    name: str
    kind: str
    params: int = 0
    macs: int = 0
    # the MACs whose weight is nonzero (pruned layers: fewer); from a module's own
    # ``weight``, so an ``owner:op`` row (a functional conv in a custom forward)
    # counts all its MACs
    nonzero_macs: int = 0
    ops: int = 0
    weight_bytes: int = 0  # as stored (sparse/codebook/binary before entropy coding; storage.py)
    activation_bytes: int = 0  # bytes of its outputs, per image
    output_shape: tuple[int, ...] = ()
    calls: int = 0
    counted: bool = True  # False: a leaf module the profiler has no counter for


@dataclass
class Latency:
    """Wall-clock time of one forward of a batch, in milliseconds, over ``runs`` runs."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    batch: int
    threads: int
    device: str

    @classmethod
    def from_times(cls, times_ms: list[float], **setting: Any) -> Latency:
        """Median, quartiles and range of timed runs; ``setting``: warmup, batch, threads, device"""
        q1, median, q3 = (
            statistics.quantiles(times_ms, n=4, method="inclusive")
            if len(times_ms) > 1
            else times_ms * 3
        )
        return cls(
            median_ms=median,
            q1_ms=q1,
            q3_ms=q3,
            min_ms=min(times_ms),
            max_ms=max(times_ms),
            runs=len(times_ms),
            **setting,
        )

    def __str__(self) -> str:
        return (
            f"latency: median {self.median_ms:.2f} ms (IQR {self.q1_ms:.2f}-{self.q3_ms:.2f}, "
            f"min {self.min_ms:.2f}, max {self.max_ms:.2f}) over {self.runs} runs after "
            f"{self.warmup} warm-up, batch {self.batch}, {self.threads} thread(s), {self.device}"
        )


@dataclass
class ProfileReport:
    """What ``cnnzip.profile`` returns. Counts are per image (one sample of ``input_shape``)."""

    input_shape: tuple[int, ...]
    params: int
    weight_bytes: int
    layers: list[LayerProfile]
    latency: Latency | None = None

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def nonzero_macs(self) -> int:
        """MACs that multiply a nonzero weight: what sparse kernels would have to do."""
        return sum(layer.nonzero_macs for layer in self.layers)

    @property
    def ops(self) -> int:
        return sum(layer.ops for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def uncounted(self) -> list[str]:
        """Leaf modules with no counter: their cost is missing from the totals."""
        return [layer.name for layer in self.layers if not layer.counted]

    def shares(self) -> dict[str, dict[str, float]]:
        """Fractions of MACs and of parameters by Table 2 group; the rest is ``other``."""
        groups = [*SHARE_GROUPS.values(), "other"]
        macs = dict.fromkeys(groups, 0)
        params = dict.fromkeys(groups, 0)
        for layer in self.layers:
            group = SHARE_GROUPS.get(layer.kind, "other")
            macs[group] += layer.macs
            params[group] += layer.params
        params["other"] += self.params - sum(params.values())  # weights outside leaf layers
        return {
            "macs": {g: macs[g] / max(self.macs, 1) for g in groups},
            "params": {g: params[g] / max(self.params, 1) for g in groups},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "params": self.params,
            "macs": self.macs,
            "nonzero_macs": self.nonzero_macs,
            "ops": self.ops,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "convention": MAC_CONVENTION,
            "shares": self.shares(),
            "uncounted": self.uncounted,
            "layers": [
                {**asdict(layer), "output_shape": list(layer.output_shape)} for layer in self.layers
            ],
            "latency": asdict(self.latency) if self.latency else None,
        }

    def __str__(self) -> str:
        head = ("layer", "kind", "output", "params", "MACs", "other ops", "stored B", "act B")
        rows = [
            (
                layer.name,
                layer.kind if layer.counted else f"UNCOUNTED {layer.kind}",
                "x".join(map(str, layer.output_shape)),
                _short(layer.params),
                _short(layer.macs),
                _short(layer.ops),
                _short(layer.weight_bytes),
                _short(layer.activation_bytes),
            )
            for layer in self.layers
        ]
        lines = _table(head, rows)
        lines += [
            "",
            f"input {'x'.join(map(str, self.input_shape))} (per image)",
            f"params            {self.params:,}",
            f"MACs              {self.macs:,}  ({_short(self.macs)})",
            *self._nonzero_line(),
            f"other ops         {self.ops:,}",
            f"weight bytes      {self.weight_bytes:,}  (as stored, before entropy coding)",
            f"activation bytes  {self.activation_bytes:,}",
            MAC_CONVENTION + ".",
            "",
        ]
        shares = self.shares()
        share_rows = [
            (g, f"{shares['macs'][g]:.2%}", f"{shares['params'][g]:.2%}") for g in shares["macs"]
        ]
        lines += _table(("share by kind", "MACs", "params"), share_rows)
        if self.uncounted:
            lines.append(f"uncounted (cost missing from totals): {', '.join(self.uncounted)}")
        if self.latency:
            lines.append(str(self.latency))
        return "\n".join(lines)

    def _nonzero_line(self) -> list[str]:
        """The MACs by nonzero weights, when pruning made them fewer than the dense MACs."""
        if self.nonzero_macs >= self.macs:
            return []
        fewer = self.macs / max(self.nonzero_macs, 1)
        return [
            f"  by nonzero w    {self.nonzero_macs:,}  ({_short(self.nonzero_macs)}, "
            f"{fewer:.1f}x fewer; dense kernels still do all MACs)"
        ]


def _short(n: int) -> str:
    """1234567 -> '1.23M': compact columns; the totals below the table stay exact."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned first two columns, right-aligned numbers."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs).rstrip()

    return [line(head), *(line(r) for r in rows)]


def compare(a: ProfileReport, b: ProfileReport) -> dict[str, float]:
    """Theory beside measurement: how many times fewer MACs A needs than B, the same
    counting only MACs by nonzero weights (what sparse kernels could reach), and how
    many times faster A measured (all B / A). Both reports need a measured latency."""
    if a.latency is None or b.latency is None:
        raise ValueError("compare needs reports profiled with measure_latency=True")
    return {
        "mac_ratio": b.macs / max(a.macs, 1),
        "nonzero_mac_ratio": b.nonzero_macs / max(a.nonzero_macs, 1),
        "latency_ratio": b.latency.median_ms / a.latency.median_ms,
    }


def comparison(names: tuple[str, str], a: ProfileReport, b: ProfileReport) -> dict[str, Any]:
    """``compare`` with both models' figures, as ``cnnzip profile --compare`` and
    ``cnnzip compress`` report them (JSON)."""
    ratios = compare(a, b)
    assert a.latency is not None and b.latency is not None  # compare checked
    return {
        "a": names[0],
        "b": names[1],
        **ratios,
        "macs": [a.macs, b.macs],
        "nonzero_macs": [a.nonzero_macs, b.nonzero_macs],
        "params": [a.params, b.params],
        "latency_ms": [a.latency.median_ms, b.latency.median_ms],
        "latency_iqr_ms": [[a.latency.q1_ms, a.latency.q3_ms], [b.latency.q1_ms, b.latency.q3_ms]],
        "batch": a.latency.batch,
        "threads": a.latency.threads,
        "runs": a.latency.runs,
    }


def comparison_text(r: dict[str, Any]) -> str:
    """``comparison`` as text: one row per model, then B/A in theory and measured."""
    rows = [
        f"{tag}: {name:<16} {p / 1e6:8.2f}M params {m / 1e6:10.3f}M MACs "
        f"{ms:9.3f} ms (IQR {iqr[0]:.3f}-{iqr[1]:.3f})"
        for tag, name, p, m, ms, iqr in zip(
            "AB", (r["a"], r["b"]), r["params"], r["macs"], r["latency_ms"], r["latency_iqr_ms"],
            strict=True,
        )
    ]  # fmt: skip
    lines = [
        *rows,
        f"B/A: {r['mac_ratio']:.2f}x the MACs (multiply-accumulates), "
        f"{r['latency_ratio']:.2f}x the measured latency "
        f"(batch {r['batch']}, {r['threads']} thread(s), median of {r['runs']} runs)",
    ]
    if abs(r["nonzero_mac_ratio"] - r["mac_ratio"]) > 0.005 * r["mac_ratio"]:
        lines.append(
            f"     {r['nonzero_mac_ratio']:.2f}x counting only MACs by nonzero weights: what "
            "sparse kernels could reach at best; dense kernels, as measured here, do all MACs "
            "(`cnnzip bench sparse` measures sparse products)"
        )
    return "\n".join(lines)
