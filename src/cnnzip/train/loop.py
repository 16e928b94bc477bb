"""The one training loop: ``fit`` and ``evaluate``.

Everything that retrains (pruning, codebook fine-tuning, binary training,
distillation) plugs in here through three seams instead of copying the loop:
``loss_fn(logits, y, x)`` (distillation needs the inputs), an optimizer
factory, and callbacks called at fixed points. Runs are deterministic for a
given seed, and resumable: each epoch ends with an atomic checkpoint, and a
resumed run ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from cnnzip.data import Dataset, Split, StreamSplit, as_split, batches, first_input, steps
from cnnzip.errors import CnnzipError
from cnnzip.models.running import eval_mode
from cnnzip.train import checkpoint as ckpt
from cnnzip.train.distributed import DistInfo, all_reduce_sum, setup

__all__ = ["Callback", "FitResult", "TrainConfig", "TrainState", "cross_entropy", "evaluate", "fit"]

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Augment = Callable[[torch.Tensor], torch.Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The default loss; ``x`` is unused here but part of every loss's signature."""
    return F.cross_entropy(logits, y)


# beyond these a setting is a typo, not a plan (and a seed must fit torch's generator)
MAX_EPOCHS = 1000
MAX_LR = 10.0
MAX_SEED = 2**32 - 1


@dataclass
class TrainConfig:
    """What a training run needs besides the model and the data."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" or "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # "cosine" or "constant"
    seed: int = 0
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        rules = {
            "epochs": (_is_int(self.epochs) and 0 <= self.epochs <= MAX_EPOCHS, f"0..{MAX_EPOCHS}"),
            "batch_size": (_is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            "eval_batch_size": (
                _is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
                "an integer >= 1",
            ),
            "lr": (_is_finite(self.lr) and 0 < self.lr <= MAX_LR, f"in (0, {MAX_LR:g}]"),
            "momentum": (_is_finite(self.momentum) and 0 <= self.momentum < 1, "in [0, 1)"),
            "weight_decay": (
                _is_finite(self.weight_decay) and self.weight_decay >= 0,
                "a finite number >= 0",
            ),
            "seed": (_is_int(self.seed) and 0 <= self.seed <= MAX_SEED, f"0..{MAX_SEED}"),
            "optimizer": (self.optimizer in ("adam", "sgd"), "adam or sgd"),
            "lr_schedule": (self.lr_schedule in ("cosine", "constant"), "cosine or constant"),
        }
        bad = [
            f"{k}={getattr(self, k)!r} (must be {want})"
            for k, (ok, want) in rules.items()
            if not ok
        ]
        if bad:
            raise CnnzipError(f"impossible training settings: {'; '.join(bad)}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """A real number that is neither NaN nor infinite (NaN passes every comparison test)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainState:
    """What callbacks see: the model being trained (unwrapped), optimizer, position, history."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    epoch: int = 0  # epochs completed before the current one
    step: int = 0  # optimizer steps taken so far
    steps_per_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class Callback:
    """Hooks into ``fit``. Override what you need; keep state derivable from TrainState
    (epoch, step) so that a resumed run behaves as an uninterrupted one."""

    def on_epoch_start(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None:
        """After each optimizer step (e.g. re-apply a mask, advance a pruning schedule)."""

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None: ...


@dataclass
class FitResult:
    history: list[dict[str, float]]

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    if cfg.lr_schedule == "constant" or total == 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


_MODEL_HINT = "build the model with num_classes set to the data's class count"
_STREAM_HINT = (
    "pass the true class count as from_loaders(num_classes=...) (it was inferred from "
    "the first labels) and build the model with it"
)


def _check_labels(y: torch.Tensor, num_classes: int, hint: str = _MODEL_HINT) -> None:
    """Labels must index the model's outputs; torch would fail mid-run on the first that
    does not, with an IndexError naming neither the model nor the data."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise CnnzipError(
            f"labels {int(y.min())}..{int(y.max())} do not fit a model with {num_classes} "
            f"outputs: {hint}"
        )


@contextmanager
def _shape_errors(what: str) -> Iterator[None]:
    """What torch raises when a model or loss meets inputs it was not built for (a shape
    mismatch), as one CnnzipError that says which inputs."""
    try:
        yield
    except (RuntimeError, ValueError, IndexError) as exc:
        raise CnnzipError(f"{what}: {exc}") from None


@torch.no_grad()
def _check_model_fits(model: nn.Module, data: Dataset, device: torch.device) -> None:
    """One training sample through the model (in eval mode: no statistics updated) before
    anything trains: a model that cannot take the data's inputs, or whose output size is
    not the data's class count, fails here in one line instead of after training starts."""
    if len(data.train) == 0:
        raise CnnzipError(f"{data.name}: the training split is empty")
    for split in (data.train, data.val, data.test):
        if isinstance(split, Split):  # streamed labels are checked batch by batch
            _check_labels(split.y, data.num_classes)
    x = first_input(data.train).to(device)
    shape = f"the model cannot take {data.name}'s inputs of shape {data.input_shape}"
    with _shape_errors(shape), eval_mode(model):
        out = model(x)
    if isinstance(out, torch.Tensor) and tuple(out.shape) != (1, data.num_classes):
        raise CnnzipError(
            f"the model outputs {tuple(out.shape[1:])} values per sample but {data.name} has "
            f"{data.num_classes} classes: build it with num_classes={data.num_classes}"
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split | StreamSplit | TorchDataset | DataLoader,
    *,
    batch_size: int = 1000,
    loss_fn: LossFn = cross_entropy,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy (a fraction in [0, 1]) of ``model`` on ``split``, in
    memory or streamed from the user's DataLoader or torch Dataset of (x, y) samples."""
    device = torch.device(device) if device else next(model.parameters()).device
    split = as_split(split)
    loss_sum, correct, seen = 0.0, 0, 0
    with eval_mode(model):
        for x, y in batches(split, batch_size):
            x, y = x.to(device), y.to(device)
            with _shape_errors(f"the model cannot take inputs of shape {tuple(x.shape[1:])}"):
                logits = model(x)
                _check_labels(y, logits.shape[-1])
                loss_sum += float(loss_fn(logits, y, x)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    n = max(seen, 1)
    return {"loss": loss_sum / n, "accuracy": correct / n}


def _train_epoch(
    net: nn.Module,
    state: TrainState,
    data: Dataset,
    loss_fn: LossFn,
    callbacks: Sequence[Callback],
    info: DistInfo,
    bar: tqdm,
    augment: Augment | None = None,
) -> tuple[float, float]:
    """One pass over the training split; returns (mean loss, accuracy) over all ranks."""
    cfg, opt = state.config, state.optimizer
    total_steps = cfg.epochs * state.steps_per_epoch
    loss_sum = correct = seen = 0.0
    streamed = isinstance(data.train, StreamSplit)
    net.train()
    for x, y in batches(
        data.train,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        epoch=state.epoch,
        rank=info.rank,
        world_size=info.world_size,
    ):
        if streamed:  # in memory, all labels were checked before training
            _check_labels(y, data.num_classes, _STREAM_HINT)
        x, y = x.to(info.device), y.to(info.device)
        if augment is not None:  # draws from the per-epoch seeded RNG: resumable
            x = augment(x)
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * _lr_factor(cfg, state.step, total_steps)
        logits = net(x)
        # a loss that cannot take this data (a teacher built for other inputs) fails on
        # the first batch, before any optimizer step
        with _shape_errors(f"the training loss fails on {data.name}"):
            loss = loss_fn(logits, y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        for cb in callbacks:
            cb.on_step_end(state)
        loss_sum += float(loss.detach()) * len(y)
        correct += float((logits.argmax(1) == y).sum())
        seen += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], info)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    loss_fn: LossFn = cross_entropy,
    optimizer: OptimizerFactory | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    augment: Augment | None = None,
) -> FitResult:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    ``data`` is held in memory (``cz.data.load``, ``cz.data.from_arrays``) or streamed
    from the user's torch DataLoaders or Datasets (``cz.data.from_loaders``); a map-style
    Dataset is batched as the same tensors in memory would be, so both give the same
    loss curve for a seed. Streamed labels are checked batch by batch.

    ``checkpoint`` is a file written atomically after each epoch; with
    ``resume`` training continues from it. Under torchrun (WORLD_SIZE > 1) the
    run is data-parallel. ``progress=None`` shows a bar only on a terminal.
    ``augment`` maps each training batch's inputs (N, C, H, W) to new ones
    (e.g. random jitter); it should draw from torch's global RNG, which is
    re-seeded every epoch, so augmented runs stay deterministic and resumable.
    Without it the data's own training augmentation (``data.augment``, e.g. crops
    and flips of a colour image folder) is used, so every stage that trains on the
    data augments alike; validation and test are never augmented.
    """
    cfg = config or TrainConfig()
    augment = augment if augment is not None else data.augment
    info = setup(device)
    model.to(info.device)
    _check_model_fits(model, data, info.device)
    if checkpoint and info.is_main:
        ckpt.check_writable(checkpoint)  # now, not after the first epoch
    torch.manual_seed(cfg.seed)
    net: nn.Module = model
    if info.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer(params) if optimizer else _make_optimizer(params, cfg)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    state = TrainState(
        model=model,
        optimizer=opt,
        config=cfg,
        steps_per_epoch=steps(data.train, cfg.batch_size, info.world_size),
    )
    if resume and checkpoint and Path(checkpoint).exists():
        ckpt.restore(checkpoint, state)
    show = (progress is not False) and info.is_main
    epoch_seconds: list[float] = []
    while state.epoch < cfg.epochs:
        # re-seed per epoch (and rank): dropout draws the same after a resume
        torch.manual_seed(cfg.seed * 1_000_003 + state.epoch * 101 + info.rank)
        for cb in callbacks:
            cb.on_epoch_start(state)
        start = time.perf_counter()
        eta = _eta(epoch_seconds, cfg.epochs - state.epoch)
        bar = tqdm(
            total=state.steps_per_epoch,
            desc=f"epoch {state.epoch + 1}/{cfg.epochs}{eta}",
            disable=None if show else True,
            leave=False,
            unit="batch",
        )
        train_loss, train_acc = _train_epoch(
            net, state, data, loss_fn, callbacks, info, bar, augment
        )
        bar.close()
        val = evaluate(model, data.val, batch_size=cfg.eval_batch_size, loss_fn=loss_fn)
        epoch_seconds.append(time.perf_counter() - start)
        metrics = {
            "epoch": state.epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "seconds": epoch_seconds[-1],
        }
        state.history.append(metrics)
        state.epoch += 1
        for cb in callbacks:
            cb.on_epoch_end(state, metrics)
        if show:
            tqdm.write(
                f"epoch {metrics['epoch']}/{cfg.epochs}: loss {train_loss:.4f} "
                f"acc {train_acc:.4f}  val_acc {val['accuracy']:.4f}  {epoch_seconds[-1]:.1f}s"
            )
        if checkpoint and info.is_main:
            ckpt.save(checkpoint, state)
    return FitResult(history=state.history)


def _eta(epoch_seconds: list[float], remaining: int) -> str:
    if not epoch_seconds:
        return ""
    left = sum(epoch_seconds) / len(epoch_seconds) * remaining
    return f" (~{left:.0f}s left)"
