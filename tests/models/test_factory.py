"""The user's own model as ``package.module:factory``: imported from the current folder,
checked like a zoo builder, reloaded from runs, and never imported because a file names it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import cnnzip as cz
from cnnzip.errors import ModelError
from cnnzip.models import UntrustedFactoryError, trust_factories
from cnnzip.models.registry import build_model, check_model_kwargs, data_kwargs

MODULE = "cz_factory_nets"
SPEC = f"{MODULE}:small_cnn"
SOURCE = """
from pathlib import Path
import torch
import torch.nn as nn

Path("imported.txt").write_text("the module ran")  # a marker: was this code run?
WIDTH = 8


def small_cnn(*, width: int = 8, in_chans: int = 1, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(width, num_classes),
    )


class Zoo:
    class Net(nn.Module):
        def __init__(self, width: int = 4) -> None:
            super().__init__()
            self.fc = nn.Linear(width, 2)


def measured(*, width: int = 4) -> nn.Module:
    scale = torch.ones(1).item()  # a real value: fails on the meta device
    return nn.Linear(width, int(scale) * width)


def not_a_model() -> str:
    return "a string"


def broken(*, width: int = 4) -> nn.Module:
    raise ValueError("width must be even")
"""


@pytest.fixture
def nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module of factories in the current folder, and only there (not on sys.path)."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    sys.modules.pop(MODULE, None)
    yield tmp_path
    sys.modules.pop(MODULE, None)


def _small_cnn_elements(width: int, in_chans: int, num_classes: int) -> int:
    """Conv2d 3x3 weights and bias, then Linear weights and bias: counted by hand."""
    return width * in_chans * 9 + width + num_classes * width + num_classes


def test_a_factory_is_imported_from_the_current_folder_and_built(nets: Path) -> None:
    path_before = list(sys.path)
    model = cz.models.get_model(SPEC, width=4, in_chans=3, num_classes=5)
    assert sum(p.numel() for p in model.parameters()) == _small_cnn_elements(4, 3, 5)
    assert model(torch.zeros(2, 3, 12, 12)).shape == (2, 5)
    assert sys.path == path_before  # the folder was on the path for the import only
    cls = cz.models.get_model(f"{MODULE}:Zoo.Net", width=6)  # a dotted path to a class
    assert cls.fc.in_features == 6


def test_data_kwargs_fills_only_what_the_factory_names(nets: Path) -> None:
    got = data_kwargs(SPEC, {"width": 4}, (3, 12, 12), 5)
    assert got == {"num_classes": 5, "in_chans": 3, "width": 4}  # no img_size, in_features
    assert data_kwargs(f"{MODULE}:measured", {}, (3, 12, 12), 5) == {}


def test_factory_kwargs_are_checked_like_a_zoo_builders(nets: Path) -> None:
    with pytest.raises(ModelError, match=r"takes no argument depth; accepted: width, in_chans"):
        check_model_kwargs(SPEC, {"depth": 3})
    with pytest.raises(ModelError, match=r"width=0 must be an integer >= 1"):
        check_model_kwargs(SPEC, {"width": 0})
    n = _small_cnn_elements(8, 1, 10)
    check_model_kwargs(SPEC, {}, max_params=n)
    with pytest.raises(ModelError, match=f"would hold {n:,} elements, over the cap of {n - 1:,}"):
        build_model(SPEC, {}, max_params=n - 1)


def test_a_factory_that_cannot_build_on_meta_is_counted_on_the_cpu(nets: Path) -> None:
    spec = f"{MODULE}:measured"
    check_model_kwargs(spec, {"width": 4}, max_params=20)  # 4*4 weights + 4 biases
    with pytest.raises(ModelError, match="would hold 20 elements, over the cap of 19"):
        check_model_kwargs(spec, {"width": 4}, max_params=19)
    with torch.device("meta"):  # as load_run builds its skeleton: moved there after
        assert build_model(spec, {"width": 4}).weight.device.type == "meta"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cz_no_such_module:f", "No module named 'cz_no_such_module': is it on PYTHONPATH"),
        (f"{MODULE}:nope", f"{MODULE!r} has no attribute 'nope'"),
        (f"{MODULE}:Zoo.nope", "'Zoo' has no attribute 'nope'"),
        (f"{MODULE}:WIDTH", "is a int, not callable"),
        (f"{MODULE}:not_a_model", "returned a str, not a torch nn.Module"),
        (f"{MODULE}:broken", "cannot build .* ValueError: width must be even"),
        ("my-nets:f", "neither a zoo name nor package.module:factory"),
        (f"{MODULE}:", "neither a zoo name nor package.module:factory"),
    ],
)
def test_each_factory_failure_is_one_model_error_naming_the_spec(
    nets: Path, spec: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message) as info:
        cz.models.get_model(spec)
    assert spec in str(info.value)


def test_a_module_that_fails_to_import_names_the_error(nets: Path) -> None:
    (nets / "cz_bad_nets.py").write_text("import cz_missing_dependency\n")
    with pytest.raises(ModelError, match="importing cz_bad_nets failed: No module named 'cz_miss"):
        cz.models.get_model("cz_bad_nets:f")
    (nets / "cz_bad_syntax.py").write_text("def f(:\n")
    with pytest.raises(ModelError, match="importing cz_bad_syntax failed: SyntaxError"):
        cz.models.get_model("cz_bad_syntax:f")
    sys.modules.pop("cz_bad_nets", None)


def test_a_zoo_name_with_a_colon_cannot_be_registered() -> None:
    with pytest.raises(ValueError, match=r"marks package\.module:factory"):
        cz.models.register_model("a:b")(lambda: nn.Linear(1, 1))


def test_a_run_of_a_factory_reloads_it_only_when_trusted(
    nets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run.json is shared like a .cnnz: its factory is imported only where trusted, by
    trust_factories or $CNNZIP_TRUST."""
    model = cz.models.get_model(SPEC, width=4)
    cz.save_run(nets / "run", model, arch=SPEC, kwargs={"width": 4})
    with pytest.raises(cz.RunError, match=f"CNNZIP_TRUST={SPEC}"):
        cz.load_run(nets / "run")
    monkeypatch.setenv("CNNZIP_TRUST", f"other:spec, {SPEC}")
    by_env = cz.load_run(nets / "run").model
    monkeypatch.delenv("CNNZIP_TRUST")
    with trust_factories(SPEC):
        run = cz.load_run(nets / "run")
    assert run.arch == SPEC and torch.equal(by_env[0].weight, model[0].weight)
    for a, b in zip(run.model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_cnnz_naming_a_factory_never_imports_it(nets: Path) -> None:
    model = cz.models.get_model(SPEC, width=4)
    sys.modules.pop(MODULE, None)
    (nets / "imported.txt").unlink()
    cz.codec.save(nets / "m.cnnz", model, arch={"name": SPEC, "kwargs": {"width": 4}})
    with pytest.raises(UntrustedFactoryError, match=rf"--model {SPEC} .* model=\.\.\.\)"):
        cz.load(nets / "m.cnnz")
    with trust_factories("other:spec"), pytest.raises(UntrustedFactoryError, match="only other"):
        cz.load(nets / "m.cnnz")
    assert not (nets / "imported.txt").exists() and MODULE not in sys.modules
    given = cz.load(nets / "m.cnnz", model=_same_cnn(width=4))  # the user builds it
    with trust_factories(SPEC):
        trusted = cz.load(nets / "m.cnnz")
    for a, b, c in zip(*(m.state_dict().values() for m in (model, given, trusted)), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def _same_cnn(width: int) -> nn.Module:
    """small_cnn as the user has it at hand, built without importing the module."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(width, 10),
    )  # fmt: skip


def test_a_binarized_cnnz_of_a_factory_is_refused_too(nets: Path) -> None:
    kwargs = {"base": SPEC, "base_kwargs": {"width": 4}, "mode": "bwn", "keep": []}
    model = cz.models.get_model("binarized", **kwargs)
    sys.modules.pop(MODULE, None)
    (nets / "imported.txt").unlink()
    cz.codec.save(nets / "b.cnnz", model, arch={"name": "binarized", "kwargs": kwargs})
    with pytest.raises(UntrustedFactoryError, match=f"your own model {SPEC!r}"):
        cz.load(nets / "b.cnnz")
    assert not (nets / "imported.txt").exists()
    with trust_factories(SPEC):
        again = cz.load(nets / "b.cnnz")
    assert torch.equal(again[0].weight, model[0].weight)
