"""Masks: exact zeros through SGD (momentum, weight decay) and Adam, remove(), save/load, resume."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnzip.data import Dataset
from cnnzip.models import get_model
from cnnzip.prune import (
    GradualPruning,
    Mask,
    MaskKeeper,
    PruneError,
    enforce_masks,
    get_mask,
    one_shot,
    prunable,
    remove_masks,
    set_mask,
)
from cnnzip.runs import load_run, save_run
from cnnzip.train import Callback, TrainConfig, TrainState, fit
from cnnzip.transforms import describe, original_tensor

KWARGS = {"num_classes": 10, "in_features": 784, "hidden": [32, 16]}
RATIOS = {"fc1.weight": 0.8, "fc2.weight": 0.5}


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_model("lenet300", **KWARGS)


class PruneAt(Callback):
    """Prunes once, mid-training, while the optimizer already has momentum/moments,
    and does nothing to keep the pruned weights at zero afterwards."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            one_shot(state.model, RATIOS)


OPTIMIZERS = {
    "sgd-momentum-wd": TrainConfig(
        epochs=2, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-2
    ),
    "adam-wd": TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=1e-2, weight_decay=1e-2),
}


def pruned_mid_training(data: Dataset, cfg: TrainConfig, callback: Callback) -> nn.Module:
    model = small_mlp()
    one_shot(model, dict.fromkeys(RATIOS, 0.0))  # all-ones masks before the optimizer exists
    fit(model, data, cfg, callbacks=[callback], progress=False)
    return model


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero(toy_data: Dataset, name: str) -> None:
    cfg = OPTIMIZERS[name]
    model = pruned_mid_training(toy_data, cfg, GradualPruning(RATIOS, n=1, interval=5, start=3))
    for target, ratio in RATIOS.items():
        dead = ~get_mask(model, target).mask
        assert int(dead.sum()) == round(ratio * dead.numel())
        assert torch.all(original_tensor(model, target)[dead] == 0)  # underneath, too
        opt_free = model.get_submodule(target.removesuffix(".weight")).weight
        assert torch.all(opt_free[dead] == 0)
    remove_masks(model)
    assert describe(model) == []
    for target in RATIOS:
        weight = model.get_submodule(target.removesuffix(".weight")).weight
        assert isinstance(weight, nn.Parameter)
        assert int((weight == 0).sum()) == round(RATIOS[target] * weight.numel())


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_without_the_keeper_the_optimizer_state_revives_the_original(
    toy_data: Dataset, name: str
) -> None:
    """The control for the test above: momentum and moments do move masked entries."""
    model = pruned_mid_training(toy_data, OPTIMIZERS[name], PruneAt(step=8))
    dead = ~get_mask(model, "fc1.weight").mask
    assert torch.any(original_tensor(model, "fc1.weight")[dead] != 0)
    assert torch.all(model.fc1.weight[dead] == 0)  # the forward still sees zeros


def test_save_and_load_round_trip_masks(toy_data: Dataset, tmp_path: Path) -> None:
    model = small_mlp()
    one_shot(model, RATIOS)
    save_run(tmp_path / "run", model, arch="lenet300", kwargs=KWARGS)
    loaded = load_run(tmp_path / "run").model
    assert [d["kind"] for d in describe(loaded)] == ["mask", "mask"]
    for target in RATIOS:
        assert torch.equal(get_mask(loaded, target).mask, get_mask(model, target).mask)
    assert torch.equal(loaded(toy_data.test.x), model(toy_data.test.x))


class StopAtEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def test_gradual_pruning_resumes_like_an_uninterrupted_run(
    toy_data: Dataset, tmp_path: Path
) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64)  # 8 steps/epoch: pruning spans the interruption

    def gradual() -> GradualPruning:
        return GradualPruning(RATIOS, n=4, interval=4)

    straight = small_mlp()
    fit(straight, toy_data, cfg, callbacks=[gradual().prepare(straight)], progress=False)
    ckpt = tmp_path / "checkpoint.pt"
    first = small_mlp()
    with pytest.raises(KeyboardInterrupt):
        fit(first, toy_data, cfg, callbacks=[gradual().prepare(first), StopAtEpoch(1)],
            checkpoint=ckpt, progress=False)  # fmt: skip
    resumed = small_mlp(seed=1)  # different init: everything must come from the checkpoint
    fit(resumed, toy_data, cfg, callbacks=[gradual().prepare(resumed)], checkpoint=ckpt,
        resume=True, progress=False)  # fmt: skip
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    assert int(get_mask(resumed, "fc1.weight").mask.sum()) == round(0.2 * 784 * 32)


def test_mask_is_a_weight_transform_with_a_bool_buffer() -> None:
    model = small_mlp()
    keep = torch.rand(16, 32) > 0.5
    set_mask(model, "fc2.weight", keep)
    mask = get_mask(model, "fc2.weight")
    assert isinstance(mask, Mask) and mask.kind == "mask" and mask.mask.dtype == torch.bool
    assert torch.equal(model.fc2.weight, original_tensor(model, "fc2.weight") * keep)
    with pytest.raises(PruneError, match="shape"):
        set_mask(model, "fc2.weight", keep.T)


def test_prunable_layers_by_name_and_type() -> None:
    torch.manual_seed(0)
    model = get_model("lenet5")
    assert prunable(model) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert prunable(model, ["conv2", "fc1.weight"]) == ["conv2.weight", "fc1.weight"]
    assert prunable(model, types=(nn.Linear,)) == ["fc1.weight", "fc2.weight"]


@pytest.mark.parametrize(
    ("model", "names", "message"),
    [
        (
            nn.Sequential(nn.Linear(4, 4)),
            ["fc9"],
            "unknown or unprunable layer.*fc9.*prunable layers: 0",
        ),
        (nn.Sequential(nn.ReLU(), nn.Flatten()), None, "nothing to prune"),
    ],
)
def test_prunable_errors(model: nn.Module, names: list[str] | None, message: str) -> None:
    with pytest.raises(PruneError, match=message):
        prunable(model, names)


def prune(model: nn.Module) -> None:
    one_shot(model, RATIOS)


def regrow(model: nn.Module) -> None:
    """Keep every other weight of fc1 again, pruned ones included (a schedule that regrows)."""
    keep = get_mask(model, "fc1.weight").mask.clone()
    keep.view(-1)[::2] = True
    set_mask(model, "fc1.weight", keep)


Changes = dict[int, Callable[[nn.Module], None]]  # step -> what it does to the masks (0: before)

SCHEDULES: dict[str, Changes] = {
    "pruned-before-fit": {0: prune},
    "pruned-mid-run": {8: prune},
    "pruned-then-regrown": {4: prune, 9: regrow},
}


class EveryStep(Callback):
    """The keeper as it was: changes the masks at the steps of ``changes``, then zeroes the
    weights and the optimizer state after every step, whether a mask changed or not."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes

    def on_epoch_start(self, state: TrainState) -> None:
        enforce_masks(state.model, state.optimizer)

    def on_step_end(self, state: TrainState) -> None:
        if state.step in self.changes:
            self.changes[state.step](state.model)
        enforce_masks(state.model, state.optimizer)


class ChangesKept(MaskKeeper):
    """The same changes with the keeper, which enforces only when a mask changed."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes

    def on_step_end(self, state: TrainState) -> None:
        if state.step in self.changes:
            self.changes[state.step](state.model)
        super().on_step_end(state)


def trained_with(
    data: Dataset, cfg: TrainConfig, callback: EveryStep | ChangesKept, kind: str = ""
) -> tuple[nn.Module, dict]:
    """The model and its optimizer state after ``fit``, for a bit-for-bit comparison."""
    model = small_mlp()
    one_shot(model, dict.fromkeys(RATIOS, 0.0))
    callback.changes.get(0, lambda _: None)(model)
    states: dict = {}

    def optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:  # kept to read
        opt = OPTIMIZER_CLASSES[kind or cfg.optimizer](params, cfg)
        states["opt"] = opt
        return opt

    fit(model, data, cfg, callbacks=[callback], optimizer=optimizer, progress=False)
    return model, states["opt"].state_dict()["state"]


def pruned_entries(model: nn.Module) -> dict[int, torch.Tensor]:
    """Optimizer state index (the trained parameters' order) -> that weight's pruned entries."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = {}
    for target in RATIOS:
        weight = original_tensor(model, target)
        out[next(i for i, p in enumerate(params) if p is weight)] = ~get_mask(model, target).mask
    return out


OPTIMIZER_CLASSES = {
    "sgd": lambda params, cfg: torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    ),
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "amsgrad": lambda params, cfg: torch.optim.Adam(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True
    ),
}
KEEPER_CASES = {  # name -> (config, OPTIMIZER_CLASSES key, state keys holding a fill)
    "sgd-momentum-wd": (OPTIMIZERS["sgd-momentum-wd"], "sgd", ()),
    "adam-wd": (OPTIMIZERS["adam-wd"], "adam", ("exp_avg_sq",)),
    "adam-amsgrad-wd": (OPTIMIZERS["adam-wd"], "amsgrad", ("exp_avg_sq", "max_exp_avg_sq")),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", sorted(KEEPER_CASES))
def test_keeper_enforcing_only_on_change_trains_bit_for_bit_the_same(
    toy_data: Dataset, name: str, schedule: str
) -> None:
    """Skipping the multiply while no mask changes gives every weight and moment the
    per-step keeper gives, bit for bit (pruning before or mid-run, regrowing, with momentum
    and weight decay), but for Adam's second moment at pruned entries: a positive fill
    there (torch's sqrt is slow on zeros), zero again once an entry is kept again."""
    cfg, kind, rooted = KEEPER_CASES[name]
    model, state = trained_with(toy_data, cfg, ChangesKept(SCHEDULES[schedule]), kind)
    reference, ref_state = trained_with(toy_data, cfg, EveryStep(SCHEDULES[schedule]), kind)
    pairs = zip(model.state_dict().items(), reference.state_dict().items(), strict=True)
    for (k, v), (_, r) in pairs:
        assert torch.equal(v, r) and torch.equal(torch.signbit(v), torch.signbit(r)), k
    dead = pruned_entries(model)
    filled = 0
    for i in ref_state:
        for key, value in ref_state[i].items():
            got = state[i][key]
            if key in rooted and i in dead:
                assert torch.all(got[dead[i]] > 0), (i, key)
                got, filled = got.masked_fill(dead[i], 0.0), filled + 1
            assert torch.equal(got, value) and torch.equal(got.signbit(), value.signbit()), (i, key)
    assert filled == len(RATIOS) * len(rooted)
    pruned = ~get_mask(model, "fc1.weight").mask
    assert torch.all(original_tensor(model, "fc1.weight")[pruned] == 0)


def test_keeper_fills_the_second_moment_in_the_first_epoch_too(toy_data: Dataset) -> None:
    """Adam makes its state at the first step, after the epoch start's enforcement: the
    keeper fills it then (a one-epoch retraining, as the benchmark times)."""
    cfg = TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=1e-2)
    model, state = trained_with(toy_data, cfg, ChangesKept(SCHEDULES["pruned-before-fit"]))
    for i, dead in pruned_entries(model).items():
        assert torch.all(state[i]["exp_avg_sq"][dead] > 0)
        assert torch.all(state[i]["exp_avg"][dead] == 0)


def test_mask_factor_follows_the_mask() -> None:
    """The cached 1.0 / 0.0 factor is remade when the mask changes in place."""
    mask = Mask(torch.tensor([True, False, True]))
    w = torch.tensor([1.5, -2.0, -0.0])
    assert torch.equal(mask(w), w * mask.mask)
    mask.mask.copy_(torch.tensor([False, True, True]))
    assert torch.equal(mask(w), torch.tensor([0.0, -2.0, -0.0]))
    assert torch.equal(mask(w.double()), w.double() * mask.mask)
