"""Recipe stages: a config dataclass and a function each, applied in order to a model.

An option a recipe leaves out takes its dataclass default (below); the built-in
deep-compression.yaml (and slim-deep-compression.yaml) sets most of them itself.

channels  structured pruning (issue 15): whole channels removed so the model is physically
          smaller; exactly one target: ``macs`` or ``params`` (the fraction kept, e.g.
          0.5) or ``latency_ms`` (measured, batch 1); per-group ratios from each group's
          sensitivity (``sensitivity: true``, on ``sweep_images`` validation images) or
          uniform; channels ranked by ``importance`` l1, l2 or bn (network slimming),
          widths a multiple of ``round_to`` (1); ``by_latency`` (false): a MAC or
          params target cut where measured batch-1 time falls most per MAC (a latency
          table timed once); ``branches`` (0): residual branches removed whole
          first; then ``epochs`` (3) of retraining at lr 1e-3. Later
          stages see the slim model, and its .cnnz rebuilds it slim
prune     per-layer ratios reaching ``sparsity`` (0.94) overall, automatic from the
          sensitivity curves (cnnzip.prune: analyze -> allocate) unless ``ratios`` fixes
          them; then ``schedule`` "iterative" (default: 3 rounds of prune -> retrain,
          3 epochs each at lr 1e-4) or "gradual" (one run along the cubic curve); the
          sweep measures on ``sweep_images`` (1,000) validation images (null: all) at
          ``sweep_ratios`` (null: cnnzip.prune.DEFAULT_RATIOS, 15; fewer cost less, coarser)
share     k-means weight sharing of every Conv/Linear weight: 8 bits for convs and 5 for
          linear layers, linear init
finetune  retrain (the codebooks, biases...) through cnnzip.train.fit: 3 epochs at lr 1e-4
encode    how the .cnnz is written (read by ``Compressed.save``): dense tensors float16
          by default (``cnnzip.codec.save`` defaults to float32), index bits chosen per layer

Every stage function takes ``(model, options, StageRun)``: the stages that retrain
(channels, prune, finetune) train through ``StageRun.train`` with its one ``loss_fn``, so
one teacher (``cnnzip.distill.make_loss``) serves the whole recipe, and with its
checkpoint file, so a killed compression resumes (``compress(work_dir=...)``).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from cnnzip import prune
from cnnzip.data import Dataset, steps
from cnnzip.errors import CnnzipError
from cnnzip.models.slim import apply_slim, record_input_shape
from cnnzip.prune.masks import PRUNABLE_TYPES, PruneError
from cnnzip.prune.structured.allocate import allocate_channels, check_target
from cnnzip.quantize import INITS, MAX_BITS, share_weights, unshareable
from cnnzip.train import Callback, TrainConfig, cross_entropy, evaluate, fit
from cnnzip.train.loop import MAX_EPOCHS, MAX_LR, LossFn

__all__ = [
    "RECIPE_STAGES",
    "ChannelsStage",
    "EncodeStage",
    "FinetuneStage",
    "PruneStage",
    "RecipeError",
    "ShareStage",
    "check_layer_names",
]

# Upper bounds: far beyond any real recipe, low enough that a typo cannot run for days
# (epochs and lr share TrainConfig's bounds).
MAX_STEPS = 1000  # pruning rounds or events
MAX_BATCH = 65536
MAX_ROUND_TO = 1024  # a channels stage's width step


class RecipeError(CnnzipError):
    """A recipe that cannot be run: unknown stage or option, or a value out of range."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RecipeError(message)


def _check_training(stage: str, epochs: int, lr: float, batch_size: int) -> None:
    """The options of every stage that retrains, within their bounds (NaN fails too)."""
    _check(0 <= epochs <= MAX_EPOCHS, f"{stage}: epochs {epochs} must be in 0..{MAX_EPOCHS}")
    _check(0 < lr <= MAX_LR, f"{stage}: lr {lr} must be in (0, {MAX_LR:g}]")
    _check(
        1 <= batch_size <= MAX_BATCH, f"{stage}: batch_size {batch_size} must be in 1..{MAX_BATCH}"
    )


def unknown_name(where: str, what: str, name: object, known: list[str]) -> RecipeError:
    """The error for a name that is not one of ``known``, with the closest one suggested."""
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return RecipeError(f"{where}: unknown {what} {name!r}.{hint} Known: {shown}")


@dataclass
class PruneStage:
    """``iterative``: ``steps`` rounds of prune -> retrain (``epochs`` each), Han et al.;
    ``gradual``: one run of ``epochs`` pruning ``steps`` times along the cubic curve
    during its first ``prune_until`` share (Zhu & Gupta), then training on."""

    sparsity: float = 0.94
    schedule: str = "iterative"
    steps: int = 3
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 128
    prune_until: float = 0.6
    ratios: dict[str, float] | None = None  # fixed per-layer ratios instead of automatic ones
    sweep_images: int | None = prune.MAX_IMAGES  # validation images per sensitivity pass
    sweep_ratios: list[float] | None = None  # the sweep's grid; None: prune.DEFAULT_RATIOS

    def __post_init__(self) -> None:
        _check(0.0 <= self.sparsity < 1.0, f"prune: sparsity {self.sparsity} must be in [0, 1)")
        _check(
            self.schedule in ("iterative", "gradual"),
            f"prune: schedule {self.schedule!r} must be iterative or gradual",
        )
        _check(0.0 < self.prune_until <= 1.0, "prune: prune_until must be in (0, 1]")
        _check(1 <= self.steps <= MAX_STEPS, f"prune: steps {self.steps} must be in 1..{MAX_STEPS}")
        _check_training("prune", self.epochs, self.lr, self.batch_size)
        grid = list(prune.DEFAULT_RATIOS) if self.sweep_ratios is None else self.sweep_ratios
        _check(
            all(isinstance(r, int | float) for r in grid)
            and len(grid) >= 2
            and grid[0] == 0.0
            and all(a < b for a, b in itertools.pairwise(grid))
            and grid[-1] < 1.0,
            f"prune: sweep_ratios {grid} must grow from 0.0 and stay below 1",
        )
        _check(
            self.sweep_images is None or self.sweep_images >= 1,
            f"prune: sweep_images {self.sweep_images} must be >= 1 (or null: all)",
        )
        _check(
            all(0.0 <= r < 1.0 for r in (self.ratios or {}).values()),
            f"prune: every ratio must be in [0, 1), got {self.ratios}",
        )


@dataclass
class ChannelsStage:
    """Structured pruning to one target, then retraining (module docstring)."""

    macs: float | None = None
    params: float | None = None
    latency_ms: float | None = None
    importance: str = "l1"
    sensitivity: bool = True  # per-group ratios from sensitivity curves; false: uniform
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 128
    sweep_images: int | None = prune.MAX_IMAGES
    round_to: int = 1  # kept channel counts a multiple of this (e.g. 8: whole SIMD vectors)
    by_latency: bool = False  # cut where measured time falls most per MAC (a timed table)
    branches: int = 0  # residual branches removed whole first (fewer layers: batch-1 latency)

    def __post_init__(self) -> None:
        try:
            check_target(self.macs, self.params, self.latency_ms, self.importance)
        except PruneError as exc:  # a built-in's macs is cleared by -s channels.macs=null
            hint = " (clear another with null)" if "exactly one" in str(exc) else ""
            raise RecipeError(f"channels: {exc}{hint}") from None
        _check_training("channels", self.epochs, self.lr, self.batch_size)
        _check(
            self.sweep_images is None or self.sweep_images >= 1,
            f"channels: sweep_images {self.sweep_images} must be >= 1 (or null: all)",
        )
        _check(
            1 <= self.round_to <= MAX_ROUND_TO,
            f"channels: round_to {self.round_to} must be in 1..{MAX_ROUND_TO}",
        )
        _check(self.branches >= 0, f"channels: branches {self.branches} must be >= 0")


@dataclass
class ShareStage:
    bits: int | dict[str, int] = field(default_factory=lambda: {"conv": 8, "linear": 5})
    init: str = "linear"

    def __post_init__(self) -> None:
        values = self.bits.values() if isinstance(self.bits, dict) else [self.bits]
        _check(
            all(isinstance(b, int) and 1 <= b <= MAX_BITS for b in values),
            f"share: bits must be integers in 1..{MAX_BITS}, got {self.bits}",
        )
        _check(self.init in INITS, f"share: init {self.init!r} is not one of {', '.join(INITS)}")


@dataclass
class FinetuneStage:
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 128

    def __post_init__(self) -> None:
        _check_training("finetune", self.epochs, self.lr, self.batch_size)


@dataclass
class EncodeStage:
    dense_dtype: str = "float16"
    index_bits: int | None = None

    def __post_init__(self) -> None:
        _check(
            self.dense_dtype in ("float32", "float16"),
            f"encode: dense_dtype {self.dense_dtype!r} must be float32 or float16",
        )
        _check(
            self.index_bits is None or 1 <= self.index_bits <= 16,
            "encode: index_bits must be in 1..16 (or absent: best per layer)",
        )


def check_layer_names(model: nn.Module, stages: list[tuple[str, Any]]) -> None:
    """The layer names in ``share.bits`` and ``prune.ratios`` are Conv/Linear layers of
    ``model`` (``"fc1"`` or ``"fc1.weight"``; bits also take ``conv``/``linear``): checked
    before the first stage runs, so a misspelt one fails at once instead of being ignored."""
    layers = [n for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES) and n]
    names = [name for n in layers for name in (n, f"{n}.weight")]
    for stage, cfg in stages:
        if stage == "share" and isinstance(cfg.bits, dict):
            _known_keys("share.bits", cfg.bits, ["conv", "linear", *names])
        if stage == "prune" and cfg.ratios:
            _known_keys("prune.ratios", cfg.ratios, names)


def _known_keys(where: str, given: dict[str, Any], known: list[str]) -> None:
    for key in given:
        if key not in known:
            raise unknown_name(where, "layer", key, known)


Log = Callable[[str], None]


def _skipped(log: Log, stage: str, skipped: list[tuple[str, str]]) -> list[list[str]]:
    """Log each weight the stage left as it is (so none is skipped silently); for its report."""
    for name, reason in skipped:
        log(f"{stage}: {name} left as it is: {reason}")
    return [[name, reason] for name, reason in skipped]


@dataclass(frozen=True)
class StageRun:
    """What every stage runner gets beside the model and its options: the data, where to
    log, the loss of every stage that retrains, and the file its training checkpoints
    each epoch in and resumes from (``compress(work_dir=...)``; None: no checkpoints)."""

    data: Dataset
    log: Log
    loss_fn: LossFn = cross_entropy
    checkpoint: Path | None = None

    def train(self, model: nn.Module, cfg: Any, callbacks: Sequence[Callback] = ()) -> None:
        """``fit`` for ``cfg.epochs`` at ``cfg.lr`` and ``cfg.batch_size``."""
        fit(
            model,
            self.data,
            _train_config(cfg),
            loss_fn=self.loss_fn,
            callbacks=callbacks,
            checkpoint=self.checkpoint,
            resume=self.checkpoint is not None,
        )


def _train_config(cfg: Any) -> TrainConfig:
    return TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size)


def run_prune(model: nn.Module, cfg: PruneStage, run: StageRun) -> dict[str, Any]:
    targets = prune.prunable(model)
    skipped = _skipped(run.log, "prune", prune.unprunable(model))
    if cfg.ratios is not None:
        ratios = {prune.prunable(model, [t])[0]: r for t, r in cfg.ratios.items()}
    else:
        sens = prune.analyze(
            model,
            run.data.val,
            targets,
            cfg.sweep_ratios or prune.DEFAULT_RATIOS,
            max_images=cfg.sweep_images,
        )
        ratios = prune.allocate(sens.curves, cfg.sparsity)
    run.log("prune: per-layer ratios " + ", ".join(f"{t} {r:.3f}" for t, r in ratios.items()))
    if cfg.schedule == "iterative":
        plan = prune.growing_plan(ratios, cfg.steps)
        report = prune.iterative(
            model, run.data, plan, config=_train_config(cfg), loss_fn=run.loss_fn
        )
        run.log(report.table())
        return {"ratios": ratios, "kept_fraction": report.kept_fraction, "skipped": skipped}
    total = cfg.epochs * steps(run.data.train, cfg.batch_size)
    interval = max(1, int(cfg.prune_until * total) // cfg.steps)
    gradual = prune.GradualPruning(ratios, n=cfg.steps, interval=interval).prepare(model)
    run.train(model, cfg, callbacks=[gradual])
    stats = prune.layer_stats(model, targets)
    kept = sum(s.kept for s in stats) / sum(s.weights for s in stats)
    acc = evaluate(model, run.data.val)["accuracy"]
    run.log(
        f"prune: {100 * kept:.2f}% kept ("
        + ", ".join(f"{s.name} {100 * s.kept_fraction:.1f}%" for s in stats)
        + f"), val accuracy {acc:.4f}"
    )
    return {"ratios": ratios, "kept_fraction": kept, "val_accuracy": acc, "skipped": skipped}


def run_channels(model: nn.Module, cfg: ChannelsStage, run: StageRun) -> dict[str, Any]:
    """Slim ``model`` in place (its modules' tensors replaced by the kept slices; the plan
    rides on the model into the .cnnz) and retrain it."""
    chosen = allocate_channels(
        model,
        run.data.input_shape,
        run.data.val if cfg.sensitivity else None,
        macs=cfg.macs,
        params=cfg.params,
        latency_ms=cfg.latency_ms,
        importance=cfg.importance,
        max_images=cfg.sweep_images,
        round_to=cfg.round_to,
        by_latency=cfg.by_latency,
        branches=cfg.branches,
    )
    run.log(chosen.table())  # the groups left whole among its rows, with their reasons
    record_input_shape(apply_slim(model, chosen.plan), run.data.input_shape)  # for the .cnnz
    run.train(model, cfg)
    acc = evaluate(model, run.data.val)["accuracy"]
    run.log(f"channels: val accuracy {acc:.4f} after retraining")
    return {**chosen.to_dict(), "val_accuracy": acc}


def run_share(model: nn.Module, cfg: ShareStage, run: StageRun) -> dict[str, Any]:
    bits = cfg.bits if isinstance(cfg.bits, dict) else {"conv": cfg.bits, "linear": cfg.bits}
    shared = share_weights(model, bits=bits, init=cfg.init)
    skipped = _skipped(run.log, "share", unshareable(model))
    acc = evaluate(model, run.data.val)["accuracy"]
    run.log(f"share: {len(shared)} layers clustered, val accuracy {acc:.4f} before fine-tuning")
    bits_used = {t: s.bits for t, s in shared.items()}
    return {"bits": bits_used, "val_accuracy": acc, "skipped": skipped}


def run_finetune(model: nn.Module, cfg: FinetuneStage, run: StageRun) -> dict[str, Any]:
    run.train(model, cfg)
    acc = evaluate(model, run.data.val)["accuracy"]
    run.log(f"finetune: val accuracy {acc:.4f}")
    return {"val_accuracy": acc}


def run_encode(model: nn.Module, cfg: EncodeStage, run: StageRun) -> dict[str, Any]:
    return {}  # the options are read when the result is saved


RECIPE_STAGES: dict[str, tuple[type, Callable[..., dict[str, Any]]]] = {
    "channels": (ChannelsStage, run_channels),
    "prune": (PruneStage, run_prune),
    "share": (ShareStage, run_share),
    "finetune": (FinetuneStage, run_finetune),
    "encode": (EncodeStage, run_encode),
}
