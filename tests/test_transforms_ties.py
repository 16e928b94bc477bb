"""Tied weights (``b.weight = a.weight``) stay one tensor through every transform and stage,
and ``profile`` counts them once (parameters, stored bytes) with their MACs at every use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

import cnnzip
from cnnzip import binary, codec
from cnnzip.data import Dataset
from cnnzip.errors import ModelError
from cnnzip.profiling import weight_bytes
from cnnzip.prune import Mask, allocate, analyze, enforce_masks, prunable, remove_masks, set_mask
from cnnzip.quantize import SharedWeight, share_weights, shared_of
from cnnzip.recipes.loader import parse_recipe
from cnnzip.train import TrainConfig, fit
from cnnzip.transforms import add_transform, describe, rebuild, remove_transforms, ties


class Tied(nn.Module):
    """A stem, two 32x32 layers with one weight (a decoder tied to an encoder), a classifier."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Linear(784, 32)
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x.flatten(1)))  # (N, 32)
        return self.fc(torch.relu(self.b(torch.relu(self.a(x)))))


# by hand: stem 784*32+32, a 32*32+32, b its bias only, fc 32*10+10
PARAMS = 25_120 + 1_056 + 32 + 330


def assert_one_tensor(model: Tied) -> None:
    """a and b share one ParametrizationList: one ``original``, the same transforms."""
    assert model.a.parametrizations.weight is model.b.parametrizations.weight
    names = [n for n, _ in model.named_parameters() if ".parametrizations.weight." in n]
    assert "a.parametrizations.weight.original" in names  # listed once, under its first name
    assert not [n for n in names if n.startswith("b.")]
    assert torch.equal(model.a.weight, model.b.weight)


def sgd_step(model: nn.Module) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 1, 28, 28)).pow(2).mean().backward()
        opt.step()


def test_ties_names_each_alias_with_its_first_name():
    assert ties(Tied()) == {"b.weight": "a.weight"}


def test_a_mask_on_a_tied_weight_is_one_mask_through_training():
    model = Tied()
    keep = torch.rand(32, 32) > 0.5
    set_mask(model, "a.weight", keep)
    assert_one_tensor(model)
    assert torch.equal(model.b.weight == 0, ~keep)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 1, 28, 28)).pow(2).mean().backward()
        opt.step()
        enforce_masks(model, opt)  # what MaskKeeper does after every step
    assert_one_tensor(model)
    original = model.a.parametrizations.weight.original
    assert torch.all(original[~keep] == 0)  # zeroed underneath: one tensor, one mask
    assert torch.all(opt.state[original]["momentum_buffer"][~keep] == 0)


def test_prunable_names_a_tied_weight_once():
    assert prunable(Tied()) == ["stem.weight", "a.weight", "fc.weight"]
    assert prunable(Tied(), ["b", "a"]) == ["b.weight"]


def test_sensitivity_and_allocation_count_a_tied_weight_once(toy_data: Dataset):
    model = Tied()
    sens = analyze(model, toy_data.val, prunable(model), [0.0, 0.5, 0.9])
    assert [(c.name, c.weights) for c in sens.curves] == [
        ("stem.weight", 784 * 32),
        ("a.weight", 32 * 32),
        ("fc.weight", 32 * 10),
    ]
    ratios = allocate(sens.curves, 0.5)
    removed = sum(round(r * c.weights) for r, c in zip(ratios.values(), sens.curves, strict=True))
    assert removed == round(0.5 * (784 * 32 + 32 * 32 + 32 * 10))
    assert model.a.weight is model.b.weight  # left as it was


def test_sharing_a_tied_weight_gives_one_codebook_and_one_index():
    model = Tied()
    set_mask(model, "a.weight", torch.rand(32, 32) > 0.3)
    shared = share_weights(model, bits={"linear": 3})
    assert list(shared) == ["stem.weight", "a.weight", "fc.weight"]
    assert shared_of(model)["b.weight"] is shared["a.weight"]
    assert_one_tensor(model)
    sgd_step(model)  # trains the one codebook
    assert_one_tensor(model)
    assert sum(isinstance(m, SharedWeight) for m in model.modules()) == 3


def test_bwn_on_tied_layers_is_one_transform_and_rebuilds_tied():
    model = binary.convert(Tied(), "bwn", keep=["stem", "fc"], log=None)
    assert_one_tensor(model)
    assert len(model.a.parametrizations.weight) == 1  # not a BWN per name
    assert [d["target"] for d in describe(model)] == ["a.weight"]
    sgd_step(model)
    assert_one_tensor(model)
    fresh = Tied(seed=1)
    rebuild(fresh, describe(model))
    fresh.load_state_dict(model.state_dict())
    assert_one_tensor(fresh)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(fresh(x), model(x))


def test_xnor_twins_of_tied_layers_share_the_weight():
    model = binary.convert(Tied(), "xnor", keep=["stem", "fc"], log=None)
    assert isinstance(model.a, binary.XnorLinear) and isinstance(model.b, binary.XnorLinear)
    assert_one_tensor(model)
    sgd_step(model)
    assert_one_tensor(model)


def test_a_tie_with_a_layer_kept_float_keeps_both_float():
    lines: list[str] = []
    model = binary.convert(Tied(), "bwn", keep=["a", "fc"], log=lines.append)
    assert not parametrize.is_parametrized(model.b)
    assert model.a.weight is model.b.weight
    assert binary.skipped_layers(Tied(), keep=["a", "fc"]) == [
        ("b", "its weight is tied to a, which stays float")
    ]
    assert lines == ["bwn: b stays float: its weight is tied to a, which stays float"]


@pytest.mark.parametrize("remove", [remove_masks, remove_transforms])
def test_removing_the_transforms_leaves_one_parameter(remove):
    model = Tied()
    keep = torch.rand(32, 32) > 0.5
    set_mask(model, "b.weight", keep)
    remove(model)
    assert not parametrize.is_parametrized(model.a) and not parametrize.is_parametrized(model.b)
    assert model.a.weight is model.b.weight
    assert torch.equal(model.a.weight == 0, ~keep)


def test_a_tied_name_with_transforms_of_its_own_is_refused():
    model = Tied()
    parametrize.register_parametrization(model.b, "weight", Mask(torch.ones(32, 32)))
    with pytest.raises(ModelError, match=r"b\.weight is tied to a transformed tensor"):
        add_transform(model, "a.weight", Mask(torch.ones(32, 32)))


def test_compress_keeps_the_tie_and_the_file_loads_into_a_tied_model(
    toy_data: Dataset, tmp_path: Path
):
    model = Tied()
    fit(model, toy_data, TrainConfig(epochs=1, batch_size=128), progress=False)
    recipe = parse_recipe(
        {
            "stages": [
                {"prune": {"ratios": {"stem": 0.8, "a": 0.6, "fc": 0.5}, "steps": 1, "epochs": 1}},
                {"share": {"bits": 4}},
                {"finetune": {"epochs": 1}},
                {"encode": {"dense_dtype": "float32"}},
            ]
        }
    )
    result = cnnzip.compress(model, toy_data, recipe, log=lambda _: None)
    assert_one_tensor(result.model)
    assert result.model.a.parametrizations.weight[-1].mask.sum() == round(0.4 * 32 * 32)
    result.save(tmp_path / "tied.cnnz")
    entries = {e["name"]: e for e in codec.container.read(tmp_path / "tied.cnnz").header["tensors"]}
    assert entries["a.weight"]["encoding"] == "shared"
    assert entries["b.weight"] == {"name": "b.weight", "shape": [32, 32], "encoding": "alias",
                                   "of": "a.weight"}  # fmt: skip
    loaded = codec.load(tmp_path / "tied.cnnz", model=Tied(seed=1))
    assert loaded.a.weight is loaded.b.weight
    x = torch.randn(16, 1, 28, 28)
    assert torch.equal(loaded(x), result.model.eval()(x))


def test_profile_counts_a_tied_weight_once_and_its_macs_at_each_use():
    model = Tied()
    report = cnnzip.profile(model, (1, 28, 28))
    assert report.params == PARAMS == sum(p.numel() for p in model.parameters())
    assert report.weight_bytes == 4 * PARAMS
    rows = {layer.name: layer for layer in report.layers}
    assert (rows["a"].params, rows["b"].params) == (1_056, 32)  # at its first layer
    assert sum(layer.params for layer in report.layers) == report.params
    assert rows["a"].macs == rows["b"].macs == 32 * 32  # each use multiplies
    assert report.macs == 784 * 32 + 2 * 32 * 32 + 32 * 10


def test_profile_stores_a_pruned_tied_weight_once():
    model = Tied()
    set_mask(model, "b.weight", torch.rand(32, 32) > 0.7)
    report = cnnzip.profile(model, (1, 28, 28))
    pruned = weight_bytes(model.a) - 4 * 32  # its sparse storage, without the bias
    assert pruned < 4 * 32 * 32
    assert report.params == PARAMS
    assert report.weight_bytes == 4 * (PARAMS - 32 * 32) + pruned


def test_profile_counts_a_module_used_twice_once_with_both_calls():
    layer = nn.Linear(8, 8)
    report = cnnzip.profile(nn.Sequential(layer, nn.ReLU(), layer), (8,))
    assert report.params == 72 and report.weight_bytes == 4 * 72
    assert report.macs == 2 * 64
