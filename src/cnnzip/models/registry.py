"""One registry of model builders: ``register_model``, ``get_model``, ``list_models``.

A builder is a plain function taking keyword-only arguments and returning an
nn.Module; the name it is registered under is what the CLI and run files use.

A name with a colon, ``package.module:factory``, is the user's own model: the module is
imported (the current folder on the path, as ``python -m`` does) and ``factory`` called
with the kwargs, so ``cnnzip train mynets:small_cnn`` and every run of it work like a
zoo name. Importing runs the module's code, so what a file names (a .cnnz header, a
run.json: both are what users download and share) is never imported unless its reader
says so: ``trust_factories`` in Python, ``--model SPEC`` or ``CNNZIP_TRUST=SPEC,...`` on
the command line.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
import torch.nn as nn

from cnnzip.errors import CnnzipError, ModelError

__all__ = [
    "MAX_PARAMS",
    "UntrustedFactoryError",
    "build_model",
    "check_model_kwargs",
    "data_kwargs",
    "get_model",
    "get_model_builder",
    "is_factory",
    "list_models",
    "register_model",
    "trust_factories",
    "untrusted",
]

MAX_PARAMS = 1 << 28  # elements (parameters + buffers) of one model: VGG-16 has 138M
MAX_ITEMS = 256  # entries of any list or dict argument (an MLP's hidden sizes, ...)
MAX_DEPTH = 4  # nesting of list/dict arguments (binarized's base_kwargs holds lists)
MAX_INT = 1 << 31  # no size or count of a real model is larger

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])
# the factory specs that may be imported now; None: any (the user's own code and runs)
_TRUSTED: ContextVar[frozenset[str] | None] = ContextVar("cnnzip_trusted", default=None)


class UntrustedFactoryError(ModelError):
    """A file names a ``package.module:factory`` its reader did not trust: not imported."""


def is_factory(name: str) -> bool:
    """Whether ``name`` is a ``package.module:factory`` spec rather than a zoo name."""
    return ":" in name


@contextmanager
def trust_factories(*specs: str) -> Iterator[None]:
    """Within the block only these factory specs are imported (none given: none is), also
    where a file names them: ``with trust_factories("mynets:small_cnn"): cnnzip.load(p)``."""
    token = _TRUSTED.set(frozenset(specs))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


TRUST_ENV = "CNNZIP_TRUST"  # comma-separated factory specs a user trusts in every file


def env_trusted() -> frozenset[str]:
    """The specs $CNNZIP_TRUST names: the command line's way to trust a factory in verbs
    that read a run of it (compress, prune, binarize, distill --teacher, ...)."""
    return frozenset(s.strip() for s in os.environ.get(TRUST_ENV, "").split(",") if s.strip())


@contextmanager
def untrusted() -> Iterator[None]:
    """Around building what a file names: importing a module runs its code, and a .cnnz or
    a run directory is what users download from others (run.json naming ``os:system``
    would run a shell command), so only the factories the caller trusted
    (``trust_factories``, $CNNZIP_TRUST) are imported, by default none."""
    with trust_factories(*(_TRUSTED.get() or ()), *env_trusted()):
        yield


def register_model(name: str | None = None) -> Callable[[F], F]:
    """Register a builder under ``name`` (default: the function's name); duplicates are refused."""

    def wrap(fn: F) -> F:
        key = name or fn.__name__
        if is_factory(key):
            raise ValueError(f"model name {key!r} has a colon, which marks package.module:factory")
        if key in _BUILDERS:
            raise ValueError(f"model {key!r} is already registered")
        _BUILDERS[key] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Registered names, sorted."""
    return sorted(_BUILDERS)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder for ``name`` (a zoo name or ``package.module:factory``); an unknown
    name fails with the known ones and the closest."""
    if is_factory(name):
        return _factory(name)
    try:
        return _BUILDERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _BUILDERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}; "
            "or your own as package.module:factory"
        ) from None


def _factory(spec: str) -> Callable[..., nn.Module]:
    """The callable ``spec`` names, its module imported if the current context trusts it."""
    module_name, _, path = spec.partition(":")
    if not all(part.isidentifier() for part in [*module_name.split("."), *path.split(".")]):
        raise ModelError(
            f"model {spec!r} is neither a zoo name nor package.module:factory "
            "(dotted Python names around one colon), e.g. mynets:small_cnn"
        )
    trusted = _TRUSTED.get()
    if trusted is not None and spec not in trusted:
        given = f"only {', '.join(sorted(trusted))} was given" if trusted else "none was given"
        raise UntrustedFactoryError(
            f"the file names your own model {spec!r}, and cnnzip never imports code a file "
            f"names unless you trust it ({given}): on the command line repeat it with "
            f"--model {spec} (eval, profile, bench) or set {TRUST_ENV}={spec} (any verb); in "
            f"Python pass the model (cnnzip.load(path, model=...)) or use "
            f"cnnzip.models.trust_factories({spec!r})"
        )
    target: Any = _import(module_name, spec)
    for attr in path.split("."):
        if not hasattr(target, attr):
            raise ModelError(
                f"model {spec!r}: {target.__name__!r} has no attribute {attr!r}; "
                "name a function or class that returns the nn.Module"
            )
        target = getattr(target, attr)
    if not callable(target):
        raise ModelError(
            f"model {spec!r} is a {type(target).__name__}, not callable: name a function "
            "or class that returns the nn.Module"
        )
    return typing.cast(Callable[..., nn.Module], target)


def _import(module_name: str, spec: str) -> Any:
    """Import ``module_name`` with the current folder on sys.path, as ``python -m`` has it
    (the ``cnnzip`` script does not); its failures end as one ModelError naming ``spec``."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise ModelError(
                f"model {spec!r}: No module named {exc.name!r}: is it on PYTHONPATH or in the "
                f"current folder ({cwd})?"
            ) from None
        raise ModelError(f"model {spec!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the module's own code raises anything (SyntaxError, ...)
        raise ModelError(
            f"model {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)


def _parameters(name: str) -> Mapping[str, inspect.Parameter]:
    """The builder's parameters; a callable without a readable signature takes anything."""
    builder = get_model_builder(name)
    try:
        return inspect.signature(builder, eval_str=True).parameters
    except NameError:  # a user's annotation that does not evaluate: names are enough
        return inspect.signature(builder).parameters
    except (ValueError, TypeError):  # a builtin or C callable: nothing to check against
        anything = inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)
        return {"kwargs": anything}


def check_model_kwargs(name: str, kwargs: dict[str, Any], *, max_params: int = MAX_PARAMS) -> None:
    """Refuse arguments that cannot build ``name`` or would build something absurd, before
    any memory is spent: names the builder does not take, containers over ``MAX_ITEMS``
    entries, ints beyond ``MAX_INT`` or non-finite floats anywhere, sizes below 1 where
    the builder's default is a positive size, and more than ``max_params`` elements
    (parameters and buffers, counted on the meta device; a factory of the user's that
    cannot build there is built on the CPU and counted). Kwargs come from run.json
    files, .cnnz headers and ``-k``: none of them is trusted."""
    params = _parameters(name)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not takes_any:
        by_name = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        accepted = ", ".join(p for p in params if params[p].kind in by_name)
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
    """Call the builder; whatever it raises on bad arguments, or a factory returning
    something else than a module, ends as a ModelError."""
    builder = get_model_builder(name)
    try:
        model = builder(**kwargs)
    except CnnzipError:
        raise
    except Exception as exc:  # builders raise anything (ZeroDivisionError, ...) on bad sizes
        if is_factory(name) and _on_meta():
            with torch.device("cpu"):  # user code may need real values (.item(), torch.load)
                return _build(name, kwargs).to("meta")
        raise ModelError(
            f"cannot build {name!r} with {kwargs!r:.200}: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model {name!r} returned a {type(model).__name__}, not a torch nn.Module: "
            "make the factory return the model"
        )
    return model


def _on_meta() -> bool:
    """Whether new tensors go to the meta device now (torch 2.2 has no get_default_device)."""
    return torch.empty(0).device.type == "meta"


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
    dataset where the builder (or the user's factory) names them, so ``cnnzip train
    vgg16 --data fashion-mnist`` builds a 1-channel, 28x28, 10-class VGG.
    """
    chans, height, width = input_shape
    implied = {
        "num_classes": num_classes,
        "in_chans": chans,
        "img_size": height,
        "in_features": chans * height * width,
    }
    params = _parameters(name)
    return {**{k: v for k, v in implied.items() if k in params}, **kwargs}
