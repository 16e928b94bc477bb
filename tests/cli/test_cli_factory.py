"""The user's own model through the CLI: `cnnzip train pkg.mod:factory`, then every verb on
its run, a .cnnz of it read back only with --model repeating the factory, and each misuse
as one `error:` line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.errors import RunError
from cnnzip.runs import load_run

MODULE = "cz_cli_nets"
SPEC = f"{MODULE}:small_cnn"
SOURCE = """
import torch.nn as nn


def small_cnn(*, width: int = 8, in_chans: int = 1, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(width, num_classes),
    )


def grey(num_classes=10):  # says nothing of its input: 1 channel, any size
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, num_classes),
    )


def broken(*, width: int = 4) -> nn.Module:
    raise ValueError("width must be even")


def not_a_model() -> str:
    return "a string"
"""
ONE_EPOCH = ["--data", "tiny.npz", "--epochs", "1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with the factory module, an .npz of 72 grey 12x12 images in 3 classes, and
    a trained run of the factory (runs/small_cnn: its default name), as the current folder."""
    tmp = tmp_path_factory.mktemp("factory")
    (tmp / f"{MODULE}.py").write_text(SOURCE)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 72)
    x = rng.integers(0, 256, (72, 12, 12), dtype=np.uint8)
    x[y == 0, :6] = 255  # class 0 is learnable: a bright top half
    np.savez(tmp / "tiny.npz", x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        sys.modules.pop(MODULE, None)
        _ok(["train", SPEC, "-k", "width=4", *ONE_EPOCH])
        yield tmp
    sys.modules.pop(MODULE, None)


@pytest.fixture(autouse=True)
def _in_work(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the work folder, trusting the module's factories ($CNNZIP_TRUST) so that every
    verb may rebuild their runs (the refusals are tested without it)."""
    monkeypatch.chdir(work)
    monkeypatch.setenv("CNNZIP_TRUST", f"{SPEC}, {MODULE}:grey")


def _ok(args: list[str]) -> dict:
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])


def _error(args: list[str]) -> str:
    """The one error line of a refused command (exit 2)."""
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: "), res.output
    return res.output


def test_train_records_the_spec_and_eval_reloads_it(work: Path) -> None:
    run = load_run(work / "runs" / "small_cnn")
    assert run.arch == SPEC and run.kwargs == {"width": 4, "in_chans": 1, "num_classes": 3}
    trained = run.meta["metrics"]["test_accuracy"]
    assert _ok(["eval", "runs/small_cnn", "--data", "tiny.npz"])["accuracy"] == trained
    again = _ok(["train", "--model", SPEC, "-k", "width=4", *ONE_EPOCH, "-o", "again"])
    assert again["test_accuracy"] == trained  # the --model spelling: same seed, same run


def test_prune_binarize_and_distill_a_factory_run(work: Path) -> None:
    pruned = _ok(["prune", "runs/small_cnn", "--sparsity", "0.5", "--steps", "1",
                  "--epochs", "0", "--data", "tiny.npz", "-o", "pruned"])  # fmt: skip
    weights = [p for n, p in load_run("pruned").model.named_parameters() if "weight" in n]
    assert load_run("pruned").arch == SPEC and pruned["kept"] < sum(w.numel() for w in weights)
    binarized = _ok(["binarize", "runs/small_cnn", "--mode", "bwn", *ONE_EPOCH, "-o", "bin",
                     "--cnnz", "bin.cnnz"])  # fmt: skip
    assert load_run("bin").kwargs["base"] == SPEC
    evaluated = _ok(["eval", "bin.cnnz", "--data", "tiny.npz", "--model", SPEC])
    assert evaluated["accuracy"] == binarized["test_accuracy"]
    student = _ok(["distill", "--teacher", "runs/small_cnn", "--student", SPEC,
                   "-k", "width=2", *ONE_EPOCH])  # fmt: skip
    assert student["run"] == str(Path("runs/small_cnn-distilled"))
    assert load_run(student["run"]).kwargs["width"] == 2


def test_profile_a_factory_run(work: Path) -> None:
    report = _ok(["profile", "runs/small_cnn", "--input", "12"])
    # conv1 1->4, conv2 4->4 at 6x6 after the pool, fc 4->3: MACs by hand
    assert report["macs"] == 4 * 9 * 144 + 4 * 4 * 9 * 36 + 4 * 3
    assert report["input_shape"] == [1, 12, 12]
    assert report["params"] == 4 * 9 + 4 + 4 * 4 * 9 + 4 + 4 * 3 + 3


def test_compress_then_eval_the_cnnz_only_with_the_spec_repeated(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    over = ["-s", "prune.steps=1", "-s", "prune.epochs=0", "-s", "finetune.epochs=0"]
    compressed = _ok(["compress", "runs/small_cnn", "--data", "tiny.npz", *over, "-o", "m.cnnz"])
    evaluated = _ok(["eval", "m.cnnz", "--data", "tiny.npz", "--model", SPEC])
    assert evaluated["accuracy"] == compressed["test_accuracy"]
    monkeypatch.delenv("CNNZIP_TRUST")
    assert f"--model {SPEC}" in _error(["eval", "m.cnnz", "--data", "tiny.npz"])
    assert "saved from" in _error(["eval", "m.cnnz", "--data", "tiny.npz", "--model", "a:b"])
    profiled = _ok(["profile", "m.cnnz", "--model", SPEC, "--input", "12"])
    assert profiled["params"] == 4 * 9 + 4 + 4 * 4 * 9 + 4 + 4 * 3 + 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "cz_absent_mod:f"], "No module named 'cz_absent_mod': is it on PYTHONPATH"),
        (["train", f"{MODULE}:nope"], "has no attribute 'nope'"),
        (["train", f"{MODULE}:not_a_model"], "returned a str, not a torch nn.Module"),
        (["train", f"{MODULE}:broken"], "ValueError: width must be even"),
        (["train", SPEC, "-k", "depth=3"], "takes no argument depth"),
        (["train", SPEC, "--model", SPEC], "train takes one model"),
        (["train"], "train takes one model"),
        (["distill", "--teacher", "runs/small_cnn", "--student", f"{MODULE}:nope"], "nope"),
    ],
)
def test_each_misuse_is_one_error_line_and_nothing_written(
    work: Path, args: list[str], message: str
) -> None:
    out = work / "refused"
    extra = ["-o", str(out)] if args[0] in ("train", "distill") else []
    assert message in _error([*args, "--data", "tiny.npz", *extra])
    assert not out.exists()


def test_a_factory_that_names_no_input_is_profiled_at_its_datas_shape(work: Path) -> None:
    _ok(["train", f"{MODULE}:grey", *ONE_EPOCH, "-o", "grey"])
    assert _ok(["profile", "grey"])["input_shape"] == [1, 12, 12]  # not (3, 224, 224)
    assert _ok(["profile", "grey", "--input", "8"])["input_shape"] == [1, 8, 8]
    _ok(["prune", "grey", "--sparsity", "0.5", "--steps", "1", "--epochs", "0",
         "--data", "tiny.npz", "-o", "grey-pruned"])  # fmt: skip
    assert _ok(["profile", "grey-pruned"])["macs"] == 4 * 9 * 144 + 4 * 3
    _ok(["binarize", "grey", "--mode", "bwn", *ONE_EPOCH, "-o", "grey-bwn"])
    assert _ok(["profile", "grey-bwn"])["input_shape"] == [1, 12, 12]
    over = ["-s", "prune.steps=1", "-s", "prune.epochs=0", "-s", "finetune.epochs=0"]
    _ok(["compress", "grey", "--data", "tiny.npz", *over, "-o", "grey.cnnz"])
    profiled = _ok(["profile", "grey.cnnz", "--model", f"{MODULE}:grey"])
    assert profiled["input_shape"] == [1, 12, 12]


def test_a_run_of_a_factory_is_rebuilt_only_when_trusted(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run.json is shared like a .cnnz: without --model or $CNNZIP_TRUST naming its
    factory, no verb imports it; with either, it is rebuilt as trained."""
    monkeypatch.delenv("CNNZIP_TRUST")
    trained = json.loads((work / "runs/small_cnn/run.json").read_text())["metrics"]
    refused = (
        ["eval"],
        ["compress", "-o", "refused.cnnz"],
        ["binarize", "--mode", "bwn", "-o", "b"],
    )
    for verb in refused:
        message = _error([verb[0], "runs/small_cnn", *verb[1:], "--data", "tiny.npz"])
        assert f"CNNZIP_TRUST={SPEC}" in message and f"--model {SPEC}" in message
    assert not (work / "refused.cnnz").exists() and not (work / "b").exists()
    by_option = _ok(["eval", "runs/small_cnn", "--data", "tiny.npz", "--model", SPEC])
    assert by_option["accuracy"] == trained["test_accuracy"]
    assert "only a:b was given" in _error(["eval", "runs/small_cnn", "--model", "a:b"])


def test_a_run_json_naming_os_system_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack a shared run directory could carry: arch "os:system" with a shell command
    as its kwargs. Refused before anything is imported or called, in Python and the CLI."""
    monkeypatch.delenv("CNNZIP_TRUST")
    marker = tmp_path / "PWNED"
    run = tmp_path / "evil"
    run.mkdir()
    meta = {"format": "cnnzip-run", "version": 1, "arch": "os:system", "transforms": [],
            "kwargs": {"command": f"touch {marker}"}}  # fmt: skip
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="never imports code a file names"):
        load_run(run)
    assert "os:system" in _error(["eval", str(run)])
    assert not marker.exists()
