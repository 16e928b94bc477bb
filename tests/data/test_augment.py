"""Training augmentation: random 4 px crops with zero padding and horizontal flips, checked
against a hand computation for a fixed seed; on by default for images of 32 px or more;
applied by ``fit`` to training batches only, deterministic for a seed and resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from cnnzip.data import Dataset, crop_flip, from_arrays, random_crop, random_flip
from cnnzip.data.augment import default_augment
from cnnzip.train import TrainConfig, TrainState, evaluate, fit
from cnnzip.train.loop import Callback


def test_random_crop_is_a_slice_of_the_zero_padded_image() -> None:
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6) + 1  # no zeros
    torch.manual_seed(7)
    out = random_crop(x, padding=2)
    torch.manual_seed(7)
    top, left = torch.randint(0, 5, (2, 2, 1))  # the same draws, (N, 1) each
    padded = torch.zeros(2, 3, 9, 10)
    padded[:, :, 2:7, 2:8] = x
    for i in range(2):
        t, c = int(top[i]), int(left[i])
        assert torch.equal(out[i], padded[i, :, t : t + 5, c : c + 6])
    assert out.shape == x.shape and torch.equal(random_crop(x, padding=0), x)


def test_random_crop_shifts_differ_per_image_and_pad_with_zeros() -> None:
    torch.manual_seed(0)
    out = random_crop(torch.ones(64, 1, 8, 8))
    zeros = (out == 0).flatten(1).sum(1)  # (N,) pixels from the padding
    assert int(zeros.min()) == 0 and int(zeros.max()) > 0  # some unshifted, some shifted
    assert len(set(zeros.tolist())) > 3


def test_random_flip_mirrors_the_images_torch_rand_picks() -> None:
    x = torch.randn(16, 3, 4, 5)
    torch.manual_seed(3)
    out = random_flip(x)
    torch.manual_seed(3)
    flipped = torch.rand(16) < 0.5
    assert 0 < int(flipped.sum()) < 16
    assert torch.equal(out[flipped], torch.flip(x[flipped], dims=[3]))
    assert torch.equal(out[~flipped], x[~flipped])


def test_crop_flip_is_crop_then_flip() -> None:
    x = torch.randn(8, 3, 32, 32)
    torch.manual_seed(11)
    out = crop_flip(x)
    torch.manual_seed(11)
    assert torch.equal(out, random_flip(random_crop(x, 4)))


@pytest.mark.parametrize(
    ("shape", "on"), [((3, 32, 32), True), ((1, 28, 28), False), ((3, 32, 31), False)]
)
def test_on_by_default_from_32_px(shape: tuple[int, ...], on: bool) -> None:
    assert default_augment(shape) is on


def _rgb(n: int = 40, side: int = 32) -> Dataset:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    x[y == 1, :, : side // 2] = 255  # class 1: a bright left half, which a flip moves
    return from_arrays(x, y, x[:8], y[:8], val_fraction=0.25)


def test_with_augment_default_and_forced() -> None:
    big, small = _rgb(), _rgb(side=12)
    assert big.with_augment().augment is crop_flip and small.with_augment().augment is None
    assert small.with_augment(True).augment is crop_flip
    assert big.with_augment(False).augment is None


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 2))  # fmt: skip


CFG = TrainConfig(epochs=3, batch_size=8, lr=0.01, seed=2)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_fit_applies_the_datas_augmentation_to_training_only() -> None:
    data = _rgb()
    plain, augmented, explicit = _net(), _net(), _net()
    fit(plain, data.with_augment(False), CFG, progress=False)
    fit(augmented, data.with_augment(True), CFG, progress=False)
    fit(explicit, data.with_augment(False), CFG, progress=False, augment=crop_flip)
    assert not torch.equal(_weights(plain)[0], _weights(augmented)[0])
    for a, b in zip(_weights(augmented), _weights(explicit), strict=True):
        assert torch.equal(a, b)  # the data's augmentation is fit's augment=
    # evaluation never augments: the same scores with and without it
    on, off = data.with_augment(True), data.with_augment(False)
    assert evaluate(augmented, on.test) == evaluate(augmented, off.test)


class _StopAt(Callback):
    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch == 2:
            raise KeyboardInterrupt


def test_augmented_training_is_deterministic_and_resumable(tmp_path: Path) -> None:
    data = _rgb().with_augment(True)
    first, second = _net(), _net()
    fit(first, data, CFG, progress=False)
    fit(second, data, CFG, progress=False)
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(_net(), data, CFG, checkpoint=ckpt, callbacks=[_StopAt()], progress=False)
    resumed = _net()
    fit(resumed, data, CFG, checkpoint=ckpt, resume=True, progress=False)
    for a, b, c in zip(_weights(first), _weights(second), _weights(resumed), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
