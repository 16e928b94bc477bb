"""One registry of model builders: ``register_model``, ``get_model``, ``list_models``.

A builder is a plain function taking keyword-only arguments and returning an
nn.Module; the name it is registered under is what the CLI and run files use.
"""

from __future__ import annotations

import difflib
import inspect
import math
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn as nn

from cnnzip.errors import CnnzipError, ModelError

__all__ = [
    "MAX_PARAMS",
    "build_model",
    "check_model_kwargs",
    "data_kwargs",
    "get_model",
    "get_model_builder",
    "list_models",
    "register_model",
]

MAX_PARAMS = 1 << 28  # elements (parameters + buffers) of one model: VGG-16 has 138M
MAX_ITEMS = 256  # entries of any list or dict argument (an MLP's hidden sizes, ...)
MAX_DEPTH = 4  # nesting of list/dict arguments (binarized's base_kwargs holds lists)
MAX_INT = 1 << 31  # no size or count of a real model is larger

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


def check_model_kwargs(name: str, kwargs: dict[str, Any], *, max_params: int = MAX_PARAMS) -> None:
    """Refuse arguments that cannot build ``name`` or would build something absurd, before
    any memory is spent: names the builder does not take, containers over ``MAX_ITEMS``
    entries, ints beyond ``MAX_INT`` or non-finite floats anywhere, sizes below 1 where
    the builder's default is a positive size, and more than ``max_params`` elements
    (parameters and buffers, counted on the meta device). Kwargs come from run.json
    files, .cnnz headers and ``-k``: none of them is trusted."""
    params = inspect.signature(get_model_builder(name), eval_str=True).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not takes_any:
        accepted = ", ".join(p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY)
        raise ModelError(
            f"model {name!r} takes no argument {', '.join(unknown)}; accepted: {accepted}"
        )
    for key, value in kwargs.items():
        _check_value(name, key, value, depth=0)
        default = params[key].default if key in params else None
        if _is_size(default) and not _is_size(value):
            what = "a non-empty list of positive integers" if _many(default) else "an integer >= 1"
            raise ModelError(f"model {name!r}: {key}={value!r:.80} must be {what}")
        length = _fixed_length(params[key].annotation) if key in params else None
        if length is not None and len(value) != length:
            raise ModelError(f"model {name!r}: {key}={value!r:.80} must have {length} entries")
    with torch.device("meta"):  # shapes only: counting costs no memory
        n = _count(_build(name, kwargs))
    if n > max_params:
        raise ModelError(
            f"model {name!r} with {kwargs!r:.200} would hold {n:,} elements, over the cap of "
            f"{max_params:,}; check the sizes, or pass a larger max_params if it is real"
        )


def _check_value(name: str, key: str, value: Any, depth: int) -> None:
    """Bounded structure: containers small and shallow, numbers finite and in range."""
    if isinstance(value, list | tuple | dict):
        if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
            raise ModelError(
                f"model {name!r}: argument {key} is nested deeper than {MAX_DEPTH} or has "
                f"more than {MAX_ITEMS} entries; no real model needs that"
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            _check_value(name, f"{key}[{k!r}]", v, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ModelError(f"model {name!r}: argument {key}={value} must be finite")
    elif isinstance(value, int) and abs(value) > MAX_INT:
        raise ModelError(f"model {name!r}: argument {key}={value} is beyond {MAX_INT}")


def _many(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _fixed_length(hint: Any) -> int | None:
    """The length a ``tuple[int, int]`` annotation demands; None for any other hint. The
    builder would unpack a list of another length with an error about unpacking."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is not tuple or Ellipsis in args:
        return None
    return len(args)


def _is_size(value: Any) -> bool:
    """A positive int, or a non-empty list/tuple of them (``hidden``)."""
    values = value if _many(value) else [value]
    return bool(values) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
    )


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def _build(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call the builder; whatever it raises on bad arguments ends as a ModelError."""
    try:
        return get_model_builder(name)(**kwargs)
    except CnnzipError:
        raise
    except Exception as exc:  # builders raise anything (ZeroDivisionError, ...) on bad sizes
        raise ModelError(
            f"cannot build {name!r} with {kwargs!r:.200}: {type(exc).__name__}: {exc}"
        ) from None


def get_model(name: str, /, **kwargs: Any) -> nn.Module:
    """Build model ``name`` from checked arguments (see ``check_model_kwargs``); bad ones
    fail naming what is wrong. A model over ``MAX_PARAMS`` elements: ``build_model``."""
    return build_model(name, kwargs)


def build_model(name: str, kwargs: dict[str, Any], *, max_params: int = MAX_PARAMS) -> nn.Module:
    """``get_model`` with an explicit element cap, for a model that really is that big.
    The cap is not a builder argument, so kwargs from a file can never raise it."""
    check_model_kwargs(name, kwargs, max_params=max_params)
    return _build(name, kwargs)


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
    params = inspect.signature(get_model_builder(name), eval_str=True).parameters
    return {**{k: v for k, v in implied.items() if k in params}, **kwargs}
