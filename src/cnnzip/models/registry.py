"""One registry of model builders: ``register_model``, ``get_model``, ``list_models``.

A builder is a plain function taking keyword-only arguments and returning an
nn.Module; the name it is registered under is what the CLI and run files use.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

from cnnzip.errors import ModelError

__all__ = ["data_kwargs", "get_model", "get_model_builder", "list_models", "register_model"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str | None = None) -> Callable[[F], F]:
    """Register a builder under ``name`` (default: the function's name); duplicates are refused."""

    def wrap(fn: F) -> F:
        key = name or fn.__name__
        if key in _BUILDERS:
            raise ValueError(f"model {key!r} is already registered")
        _BUILDERS[key] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Registered names, sorted."""
    return sorted(_BUILDERS)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder for ``name``; an unknown name fails with the known ones and the closest."""
    try:
        return _BUILDERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _BUILDERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}"
        ) from None


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name``; bad keyword arguments fail naming the ones it accepts."""
    builder = get_model_builder(name)
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not takes_any:
        accepted = ", ".join(p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY)
        raise ModelError(
            f"model {name!r} takes no argument {', '.join(unknown)}; accepted: {accepted}"
        )
    try:
        return builder(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {name!r} with {kwargs}: {exc}") from None


def data_kwargs(
    name: str, kwargs: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int
) -> dict[str, Any]:
    """Fill the builder arguments that follow from the data, unless the user set them.

    ``num_classes``, ``in_chans``, ``img_size`` and ``in_features`` are set from the
    dataset where the builder accepts them, so ``cnnzip train vgg16 --data
    fashion-mnist`` builds a 1-channel, 28x28, 10-class VGG.
    """
    chans, height, width = input_shape
    implied = {
        "num_classes": num_classes,
        "in_chans": chans,
        "img_size": height,
        "in_features": chans * height * width,
    }
    params = inspect.signature(get_model_builder(name)).parameters
    return {**{k: v for k, v in implied.items() if k in params}, **kwargs}
