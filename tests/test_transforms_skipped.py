"""A weight no transform can handle (a raw Parameter used through F.conv2d) is kept as it is
and listed, with the reason, in the prune and share stages' reports and in one log line each."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import cnnzip
from cnnzip import codec, prune, quantize
from cnnzip.data import Dataset
from cnnzip.recipes.loader import parse_recipe
from cnnzip.train import TrainConfig
from cnnzip.transforms import transforms_of

REASON = "RawKernel: not the weight of a Conv1d/Conv2d/Conv3d/Linear layer"


class RawKernel(nn.Module):
    """A conv, a raw kernel applied with F.conv2d in the forward, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.kernel = nn.Parameter(0.2 * torch.randn(6, 4, 3, 3))
        self.scale = nn.Parameter(torch.ones(6))  # 1-D: dense by design, like a bias
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))  # (N, 4, 14, 14)
        x = torch.relu(F.conv2d(x, self.kernel, stride=2) * self.scale[:, None, None])
        return self.fc(x.mean((2, 3)))


def test_unprunable_and_unshareable_list_the_raw_kernel_once():
    model = RawKernel()
    assert prune.unprunable(model) == [("kernel", REASON)]
    assert quantize.unshareable(model) == [("kernel", REASON)]
    model.other = nn.Linear(2, 2)
    model.other.weight = model.kernel  # a raw tensor tied into a layer is that layer's now
    assert prune.unprunable(model) == []


def test_prune_report_lists_the_raw_kernel(toy_data: Dataset):
    model = RawKernel()
    plan = [{"conv.weight": 0.5, "fc.weight": 0.5}]
    report = prune.iterative(model, toy_data, plan, config=TrainConfig(epochs=0))
    assert report.skipped == [("kernel", REASON)]
    assert report.to_dict()["skipped"] == [["kernel", REASON]]
    assert report.table().splitlines()[-1] == f"left as it is: kernel: {REASON}"


def test_compress_keeps_the_raw_kernel_reports_it_and_stores_it_exactly(
    toy_data: Dataset, tmp_path: Path
):
    model = RawKernel()
    recipe = parse_recipe(
        {
            "stages": [
                {"prune": {"ratios": {"conv": 0.5, "fc": 0.5}, "steps": 1, "epochs": 0}},
                {"share": {"bits": 3}},
                {"encode": {"dense_dtype": "float32"}},
            ]
        }
    )
    lines: list[str] = []
    kernel = model.kernel.detach().clone()
    result = cnnzip.compress(model, toy_data, recipe, log=lines.append)
    assert torch.equal(result.model.kernel, kernel)
    assert sorted(transforms_of(result.model)) == ["conv.weight", "fc.weight"]
    stages = {entry["stage"]: entry for entry in result.log}
    assert stages["prune"]["skipped"] == stages["share"]["skipped"] == [["kernel", REASON]]
    assert f"prune: kernel left as it is: {REASON}" in lines
    assert f"share: kernel left as it is: {REASON}" in lines
    result.save(tmp_path / "raw.cnnz")
    loaded = codec.load(tmp_path / "raw.cnnz", model=RawKernel())
    assert torch.equal(loaded.kernel, kernel)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(loaded(x), result.model.eval()(x))
