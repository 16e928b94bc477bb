"""A careless user at the command line: every misuse ends in one error line and exit code 2.

Each case must fail before any training or large allocation, so the whole list runs
in seconds; the run it needs is written once, untrained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.codec import save as save_cnnz
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model
from cnnzip.runs import CHECKPOINT, save_run

KWARGS = {"hidden": [16, 8]}
SYN = ["--data", "synthetic"]
TINY = ["--limit", "8", "--epochs", "1", "-k", "hidden=[16,8]"]

# (arguments, with RUN, RUN100, CNNZ, EMPTY, FILE and TMP for paths; what the error says)
MISUSES = [
    (["train", "lenet300", *SYN, "-k", "num_classes=3", "-o", "TMP/x"], "has 10 classes"),
    (["train", "lenet300", *SYN, "-k", "hidden=[-5,10]", "-o", "TMP/x"], "hidden"),
    (["train", "lenet5", *SYN, "-k", "in_chans=3", "-o", "TMP/x"], "cannot take"),
    (["train", "lenet300", *SYN, "-o", "FILE/run"], "cannot write"),
    (["train", "lenet300", *SYN, "-o", "CNNZ"], "is a file"),
    (["train", "lenet300", "--data-dir", "TMP/absent", "-o", "TMP/x"], "not found"),
    (["train", "lenet300", "--data-dir", "EMPTY", "-o", "TMP/x"], "not found"),
    (["train", "lenet300", *SYN, "--limit", "-5"], "--limit"),
    (["train", "lenet300", *SYN, "--lr", "nan"], "not a finite number"),
    (["train", "lenet300", *SYN, "--lr", "inf"], "--lr"),
    (["train", "lenet300", *SYN, "--epochs", "-1"], "--epochs"),
    (["train", "lenet300", *SYN, "--epochs", "1000000"], "--epochs"),
    (["train", "lenet300", *SYN, "--batch-size", "0"], "--batch-size"),
    (["train", "lenet300", *SYN, "--weight-decay", "-1"], "--weight-decay"),
    (["train", "lenet300", *SYN, "--seed", "-1"], "--seed"),
    (["train", "lenet300", *SYN, "--val-size", "-1"], "--val-size"),
    (["eval", "TMP/absent", *SYN], "does not exist"),
    (["eval", "EMPTY", *SYN], "not a run directory"),
    (["eval", "RUN/run.json", *SYN], "not a .cnnz file"),
    (["eval", "RUN", "--data", "mnist", "--data-dir", "EMPTY"], "not found"),
    (["eval", "RUN", *SYN, "--limit", "0"], "--limit"),
    (["eval", "RUN100", *SYN], "cannot take inputs of shape (1, 28, 28)"),
    (["compress", "RUN", *SYN], "Missing option '-o'"),
    (["compress", "CNNZ", *SYN, "-o", "TMP/y.cnnz"], "is a file"),
    (["compress", "EMPTY", *SYN, "-o", "TMP/y.cnnz"], "not a run directory"),
    (["compress", "RUN", *SYN, "-o", "FILE/y.cnnz"], "cannot write"),
    (["compress", "RUN", *SYN, "-o", "EMPTY"], "is a directory"),
    (["compress", "RUN", *SYN, "-o", "TMP/y.cnnz", "--recipe", "TMP/no.yaml"], "no recipe"),
    (["compress", "RUN", *SYN, "-o", "TMP/y.cnnz", "-s", "bogus"], "STAGE.OPTION=VALUE"),
    (["inspect", "RUN"], "is a directory"),
    (["inspect", "RUN/run.json"], "not a .cnnz file"),
    (["prune", "RUN", *SYN, "--sparsity", "0.5"], "Missing option '-o'"),
    (["prune", "CNNZ", *SYN, "--sparsity", "0.5", "-o", "TMP/p"], "not a run directory"),
    (["prune", "RUN", *SYN, "--sparsity", "0.5", "-o", "FILE/p"], "cannot write"),
    (
        ["prune", "RUN", *SYN, "--sparsity", "0.5", "--steps", "1000000000000", "-o", "TMP/p"],
        "--steps",
    ),
    (["prune", "RUN", *SYN, "--max-drop", "nan", "-o", "TMP/p"], "not a finite number"),
    (["prune", "RUN", *SYN, "--budget", "-1", "-o", "TMP/p"], "--budget"),
    (["prune", "RUN", *SYN, "--sparsity", "0.5", "--lr", "0", "-o", "TMP/p"], "--lr"),
    (["sensitivity", "CNNZ", *SYN], "not a run directory"),
    (["sensitivity", "RUN", *SYN, "--plot", "FILE/s.png"], "cannot write"),
    (["binarize", "RUN", *SYN, "-o", "TMP/b"], "Missing option '--mode'"),
    (["binarize", "RUN", *SYN, "--mode", "bwn", "-o", "FILE/b"], "cannot write"),
    (["binarize", "RUN", *SYN, "--mode", "bwn", "-o", "TMP/b", "--cnnz", "FILE/b"], "cannot write"),
    (["binarize", "RUN", *SYN, "--mode", "bwn", "--epochs", "-1", "-o", "TMP/b"], "--epochs"),
    (["distill", "--student", "lenet300", *SYN], "needs a teacher"),
    (["distill", "--student", "lenet300", *SYN, "--teacher", "CNNZ"], "is a file"),
    (["distill", "--student", "lenet300", *SYN, "--teacher", "RUN", "-T", "nan"], "finite"),
    (["distill", "--student", "lenet300", *SYN, "--teacher", "RUN", "--jitter", "-1"], "jitter"),
    (
        ["distill", "--student", "lenet300", *SYN, "--teacher", "RUN", "-o", "FILE/d"],
        "cannot write",
    ),
    (["profile", "resnet18", "--input", "100000"], "--max-memory"),
    (["profile", "resnet18", "--input", "0"], "--input"),
    (["profile", "lenet5", "--batch", "0"], "--batch"),
    (["profile", "lenet5", "--latency", "--warmup", "-1"], "--warmup"),
    (["profile", "lenet5", "--compare"], "two models"),
    (["profile", "EMPTY"], "not a run directory"),
    (["profile", "RUN/run.json"], "not a .cnnz file"),
    (["profile", "nomodel"], "unknown model"),
    (["bench", "sparse", "EMPTY"], "not a run directory"),
    (["bench", "xnor", "--threads", "0"], "--threads"),
    (["bench", "xnor", "--repeats", "0"], "--repeats"),
    (["bench", "sparse", "resnet18", "--batch", "100000"], "--max-memory"),
    (["profile", "lenet5", "--latency", "--threads", "1000000000000000000000"], "--threads"),
    (["models", "extra"], "unexpected extra argument"),
    (["binarize", "RUN", *SYN, "--mode", "foo", "-o", "TMP/b"], "'foo' is not one of"),
    (["compress", "RUN", *SYN, "-o", "TMP/y.cnnz", "--recipe", "BADYAML"], "not valid YAML"),
    (["compress", "RUN", *SYN, "-o", "TMP/y.cnnz", "--recipe", "TWICE"], "given twice"),
    (["train", "lenet300", *SYN, "-k", "hidden=[8]", "-o", "TMP/x"], "hidden=[8] must have 2"),
    (["train", "lenet300", *SYN, *TINY, "--resume", "-o", "CUT"], "cut short or corrupt"),
    (["train", "lenet300", *SYN, *TINY, "--resume", "-o", "PICKLE"], "holds more than tensors"),
    (["train", "lenet300", *SYN, *TINY, "--resume", "-o", "OTHER"], "size mismatch"),
]

# outputs that are the run a verb reads, or one of its files
OVERWRITES = [
    ["prune", "RUN", *SYN, "--sparsity", "0.5", "-o", "RUN"],
    ["prune", "RUN", *SYN, "--sparsity", "0.5", "-o", "RUN/."],
    ["prune", "RUN100", *SYN, "--sparsity", "0.5", "--teacher", "RUN", "-o", "RUN/"],
    ["compress", "RUN", *SYN, "-o", "RUN/model.safetensors"],
    ["compress", "RUN", *SYN, "-o", "RUN/run.json"],
    ["compress", "RUN100", *SYN, "--teacher", "RUN", "-o", "RUN/checkpoint.pt"],
    ["binarize", "RUN", *SYN, "--mode", "bwn", "-o", "RUN"],
    ["binarize", "RUN", *SYN, "--mode", "bwn", "-o", "TMP/b", "--cnnz", "RUN/model.safetensors"],
    ["distill", "--student", "lenet300", *SYN, "--teacher", "RUN", "-o", "RUN"],
    ["sensitivity", "RUN", *SYN, "--plot", "RUN/run.json"],
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An untrained run, its .cnnz, a run for other inputs, an empty folder and a file."""
    tmp = tmp_path_factory.mktemp("misuse")
    torch.manual_seed(0)
    model = get_model("lenet300", **KWARGS)
    save_run(tmp / "run", model, arch="lenet300", kwargs=KWARGS, data="synthetic")
    other = {**KWARGS, "in_features": 100}
    save_run(tmp / "run100", get_model("lenet300", **other), arch="lenet300", kwargs=other)
    save_cnnz(tmp / "m.cnnz", model, arch={"name": "lenet300", "kwargs": KWARGS})
    (tmp / "empty").mkdir()
    (tmp / "file").write_text("a file, not a folder")
    _write_recipes_and_checkpoints(tmp)
    names = {
        "RUN": "run",
        "RUN100": "run100",
        "CNNZ": "m.cnnz",
        "EMPTY": "empty",
        "FILE": "file",
        "TMP": ".",
        "BADYAML": "bad.yaml",
        "TWICE": "twice.yaml",
        "CUT": "cut",
        "PICKLE": "pickle",
        "OTHER": "other",
    }
    return {key: str(tmp / name) for key, name in names.items()}


def _write_recipes_and_checkpoints(tmp: Path) -> None:
    """Recipes PyYAML and our loader refuse with several lines of their own, and run
    folders whose checkpoint torch refuses with several lines: cut short, a pickled
    object, another model's weights."""
    (tmp / "bad.yaml").write_text("name: t\nstages: [\n  - prune: {}\n")
    (tmp / "twice.yaml").write_text("name: t\nstages:\n  - prune: {sparsity: 0.5, sparsity: 0.9}\n")
    other = get_model("lenet300", hidden=[32, 4]).state_dict()
    for name, payload in [("cut", {"model": other}), ("pickle", argparse.Namespace(x=1))]:
        (tmp / name).mkdir()
        torch.save(payload, tmp / name / CHECKPOINT)
    data = (tmp / "cut" / CHECKPOINT).read_bytes()
    (tmp / "cut" / CHECKPOINT).write_bytes(data[: len(data) // 2])
    (tmp / "other").mkdir()
    torch.save({"model": other, "epoch": 0, "step": 0}, tmp / "other" / CHECKPOINT)


def _fill(arg: str, paths: dict[str, str]) -> str:
    head, sep, tail = arg.partition("/")
    return paths.get(head, head) + sep + tail


@pytest.mark.parametrize(("args", "message"), MISUSES, ids=[" ".join(a) for a, _ in MISUSES])
def test_misuse_is_one_error_line_and_exit_code_2(
    args: list[str], message: str, paths: dict[str, str]
) -> None:
    result = CliRunner().invoke(main, [_fill(a, paths) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert message in result.output, result.output


@pytest.mark.parametrize("args", OVERWRITES, ids=[" ".join(a) for a in OVERWRITES])
def test_an_output_over_a_run_read_is_refused_before_any_work(
    args: list[str], paths: dict[str, str]
) -> None:
    run = Path(paths["RUN"])
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    result = CliRunner().invoke(main, [_fill(a, paths) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1, result.output
    assert (
        result.output.startswith("error: output ") and "which this command reads" in result.output
    )
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before


def test_a_multi_line_message_is_summed_up_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> list[str]:
        raise CnnzipError("first line:\n  second\n\n  third\n  fourth")

    monkeypatch.setattr("cnnzip.cli.train.list_models", fail)
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 2
    assert result.output == "error: first line: second (and 2 more lines)\n"


def test_help_and_version_still_exit_0() -> None:
    for args in (["--help"], ["train", "--help"], ["--version"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and not result.output.startswith("error:"), args
    assert "Usage: main train [OPTIONS] NAME" in CliRunner().invoke(main, ["train", "-h"]).output
