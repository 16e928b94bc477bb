"""The one training loop (fit/evaluate), its checkpoints, and data-parallel setup."""

from cnnzip.train.loop import (
    Callback,
    FitResult,
    TrainConfig,
    TrainState,
    cross_entropy,
    evaluate,
    fit,
)

__all__ = ["Callback", "FitResult", "TrainConfig", "TrainState", "cross_entropy", "evaluate", "fit"]
