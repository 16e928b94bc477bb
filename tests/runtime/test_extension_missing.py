"""Without the compiled kernels, cnnzip says so once and runs the torch fallback."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

from cnnzip.runtime import xnor
from cnnzip.runtime.xnor import BinaryConvKernel, pack_signs


@pytest.fixture
def no_extension(monkeypatch: pytest.MonkeyPatch) -> str:
    """The module as it is when ``import cnnzip._xnor`` fails; returns the import error."""
    monkeypatch.setitem(sys.modules, "cnnzip._xnor", None)  # None there: the import fails
    ext, why = xnor._import_extension()
    assert ext is None
    monkeypatch.setattr(xnor, "_xnor", None)
    monkeypatch.setattr(xnor, "_missing_because", why)
    monkeypatch.setattr(xnor, "_fallback_reported", False)
    monkeypatch.delenv("CNNZIP_KERNEL", raising=False)
    return why


def test_a_missing_extension_is_reported_once_with_how_to_rebuild(no_extension: str) -> None:
    assert "cnnzip._xnor" in no_extension
    torch.manual_seed(0)
    w, x = torch.randn(4, 3, 3, 3), torch.randn(2, 3, 6, 6)
    kernel = BinaryConvKernel(pack_signs(w), 3, torch.ones(4), torch.zeros(4), padding=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert xnor.available_paths() == ["torch"]
        assert xnor.default_path() == "torch"
        out = kernel(x)
    (warning,) = caught  # once, however many calls
    assert warning.category is RuntimeWarning
    message = str(warning.message)
    assert "torch fallback" in message and "make install" in message
    assert "pip install --no-deps --no-build-isolation -e ." in message
    assert no_extension in message
    assert torch.equal(out, kernel(x, path="torch"))


def test_a_built_extension_says_nothing() -> None:
    if xnor._xnor is None:
        pytest.skip("the C extension is not built here")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "portable" in xnor.available_paths()
