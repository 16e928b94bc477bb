"""A careless user at the command line: every misuse ends in one error line and exit code 2.

Each case must fail before any training or large allocation, so the whole list runs
in seconds; the run it needs is written once, untrained.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.codec import save as save_cnnz
from cnnzip.models import get_model
from cnnzip.runs import save_run

KWARGS = {"hidden": [16, 8]}
SYN = ["--data", "synthetic"]

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
    names = {
        "RUN": "run",
        "RUN100": "run100",
        "CNNZ": "m.cnnz",
        "EMPTY": "empty",
        "FILE": "file",
        "TMP": ".",
    }
    return {key: str(tmp / name) for key, name in names.items()}


def _fill(arg: str, paths: dict[str, str]) -> str:
    head, sep, tail = arg.partition("/")
    return paths.get(head, head) + sep + tail


@pytest.mark.parametrize(("args", "message"), MISUSES, ids=[" ".join(a) for a, _ in MISUSES])
def test_misuse_is_one_error_line_and_exit_code_2(
    args: list[str], message: str, paths: dict[str, str]
) -> None:
    result = CliRunner().invoke(main, [_fill(a, paths) for a in args])
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error:")]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(errors) == 1, result.output
    assert message in errors[0], result.output
