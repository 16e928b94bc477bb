"""The shared-weight transform against plain torch: values, centroid gradients, pruning, runs."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnzip.models import get_model
from cnnzip.prune import get_mask, set_mask
from cnnzip.quantize import SharedWeight, share_layer, share_weights, shared_of
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, fit
from cnnzip.transforms import transforms_of


def _small() -> nn.Module:
    torch.manual_seed(0)
    return get_model("lenet300", hidden=(40, 20))


def test_weight_is_codebook_gather_and_gradients_sum_per_centroid() -> None:
    model = _small()
    shared = share_weights(model, bits={"linear": 3})
    t = shared["fc1.weight"]
    assert torch.equal(model.fc1.weight, t.codebook[t.index])
    # reference: the same net with the dense weight codebook[index] as a leaf
    dense = get_model("lenet300", hidden=(40, 20))
    dense.load_state_dict({k: v for k, v in _plain_state(model).items()})
    x = torch.randn(8, 1, 28, 28)
    model(x).square().sum().backward()
    dense(x).square().sum().backward()
    expected = torch.zeros(8).index_add_(
        0, t.index.flatten().long(), dense.fc1.weight.grad.flatten()
    )
    assert torch.allclose(t.codebook.grad, expected, rtol=1e-4, atol=1e-5)


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {k: v for k, v in model.state_dict().items() if "parametrizations" not in k}
    for target in transforms_of(model):
        module, _, name = target.rpartition(".")
        state[target] = getattr(model.get_submodule(module), name).detach().clone()
    return state


def test_pruned_weights_stay_plus_zero_through_fine_tuning(toy_data) -> None:
    model = _small()
    keep = torch.rand(model.fc1.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.2
    set_mask(model, "fc1.weight", keep)
    t = share_layer(model, "fc1.weight", 4)
    assert get_mask(model, "fc1.weight") is None  # the mask moved into the SharedWeight
    assert [type(x) for x in transforms_of(model)["fc1.weight"]] == [SharedWeight]
    before = t.codebook.detach().clone()
    fit(model, toy_data, TrainConfig(epochs=1, batch_size=64, lr=1e-2), progress=False)
    w = model.fc1.weight.detach()
    assert torch.equal(
        w[~keep].view(torch.int32), torch.zeros(int((~keep).sum()), dtype=torch.int32)
    )
    assert not torch.equal(t.codebook.detach(), before)  # the centroids were trained
    assert torch.equal(w[keep], t.codebook.detach()[t.index[keep]])


def test_sharing_uses_per_layer_bits_and_survives_a_run(tmp_path) -> None:
    model = _small()
    share_weights(model, bits={"fc1.weight": 2, "linear": 4})
    assert {k: v.codebook.numel() for k, v in shared_of(model).items()} == {
        "fc1.weight": 4,
        "fc2.weight": 16,
        "fc3.weight": 16,
    }
    save_run(tmp_path, model, arch="lenet300", kwargs={"hidden": [40, 20]})
    again = load_run(tmp_path).model
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), again(x))
