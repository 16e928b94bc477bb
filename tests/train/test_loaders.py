"""fit and evaluate on the user's torch data: same curve as in memory, streamed, inferred."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from torch.utils.data import Dataset as TorchDataset

from cnnzip.data import Dataset, StreamSplit, batches, first_input, from_loaders, steps
from cnnzip.errors import CnnzipError, DataError
from cnnzip.models import get_model
from cnnzip.train import Callback, TrainConfig, TrainState, evaluate, fit


def small_mlp(num_classes: int = 10, side: int = 28) -> nn.Module:
    torch.manual_seed(0)
    return get_model("lenet300", hidden=[16, 8], num_classes=num_classes, in_features=side * side)


class PerSample(TorchDataset):
    """The same tensors read one sample at a time (what an image folder does)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def as_torch(data: Dataset, kind: type = TensorDataset) -> dict[str, TorchDataset]:
    return {
        k: kind(s.x, s.y)
        for k, s in (("train", data.train), ("val", data.val), ("test", data.test))
    }


class Counting(TorchDataset):
    """A map-style dataset that counts reads and returns uint8 (H, W) images."""

    def __init__(self, n: int = 60, side: int = 8) -> None:
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randint(0, 256, (n, side, side), generator=gen, dtype=torch.uint8)
        self.y = torch.arange(n) % 3
        self.reads = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads += 1
        return self.x[i], int(self.y[i])


class ReadsPerEpoch(Callback):
    def __init__(self, *sources: Counting) -> None:
        self.sources, self.per_epoch, self.start = sources, [], 0

    def _reads(self) -> int:
        return sum(s.reads for s in self.sources)

    def on_epoch_start(self, state: TrainState) -> None:
        self.start = self._reads()

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        self.per_epoch.append(self._reads() - self.start)


@pytest.mark.parametrize("kind", [TensorDataset, PerSample])
def test_a_map_style_dataset_gives_the_in_memory_loss_curve(toy_data: Dataset, kind: type) -> None:
    """Bit-identical, tolerance 0: the batch sampler yields the in-memory path's global
    batches, whole (TensorDataset) or stacked by collate from single samples, so the
    same float32 values meet the same ops in the same order and no reduction is
    reordered."""
    cfg = TrainConfig(epochs=2, batch_size=64, seed=3)
    streamed = from_loaders(**as_torch(toy_data, kind), num_classes=10)
    a = fit(small_mlp(), toy_data, cfg, progress=False).history
    b = fit(small_mlp(), streamed, cfg, progress=False).history
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    assert [[h[k] for k in keys] for h in a] == [[h[k] for k in keys] for h in b]


def test_evaluate_on_a_dataloader_matches_in_memory(toy_data: Dataset) -> None:
    model = small_mlp()
    loader = DataLoader(TensorDataset(toy_data.test.x, toy_data.test.y), batch_size=100)
    streamed = from_loaders(train=loader, val=loader, test=loader, num_classes=10)
    want = evaluate(model, toy_data.test, batch_size=100)
    got = evaluate(model, streamed.test)
    assert got == want  # the same batches in the same order: bit-identical
    assert evaluate(model, loader) == got  # a DataLoader (or torch Dataset) as it is
    assert evaluate(model, loader.dataset, batch_size=100) == got


def test_a_map_style_dataset_is_streamed_one_epoch_of_reads_per_epoch() -> None:
    train, test = Counting(60), Counting(20)
    data = from_loaders(train=train, test=test, val_fraction=0.25)
    before_fit = train.reads  # the bounded class-count scan
    counter = ReadsPerEpoch(train)
    fit(
        small_mlp(3, 8),
        data,
        TrainConfig(epochs=3, batch_size=16),
        callbacks=[counter],
        progress=False,
    )
    # each epoch reads the 45 training and 15 validation samples once, nothing more
    assert counter.per_epoch == [60, 60, 60]
    assert before_fit == 60 and test.reads == 0
    assert data.num_classes == 3 and data.input_shape == (1, 8, 8)


def test_the_class_count_comes_from_a_classes_attribute() -> None:
    train = Counting(30)
    train.classes = ["a", "b", "c", "d"]
    data = from_loaders(train=train, test=Counting(10))
    assert data.num_classes == 4 and train.reads == 0  # no scan; the shape is read lazily


class Stream(IterableDataset):
    def __init__(self, n: int) -> None:
        self.inner = Counting(n)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        return (self.inner[i] for i in range(len(self.inner)))


def test_an_iterable_dataset_trains_with_a_given_val() -> None:
    data = from_loaders(train=Stream(40), val=Stream(10), test=Stream(10))
    result = fit(small_mlp(3, 8), data, TrainConfig(epochs=1, batch_size=16), progress=False)
    assert result.history[0]["epoch"] == 1 and data.num_classes == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": [1, 2]}, r"train is a list; pass a torch DataLoader"),
        ({"num_classes": 1}, r"num_classes=1 must be an integer >= 2"),
        ({"workers": -1}, r"workers=-1 must be an integer >= 0"),
        ({"train": Stream(10)}, r"no val given and train is a DataLoader or an iterable"),
        ({"train": TensorDataset(torch.zeros(10, 4, 4), torch.zeros(10).long())}, r"all one class"),
    ],
)
def test_unusable_torch_data_is_refused(kwargs: dict, message: str) -> None:
    args = {"train": Counting(10), "test": Counting(10), **kwargs}
    with pytest.raises(DataError, match=message):
        from_loaders(**args)


def test_a_streamed_label_beyond_the_class_count_fails_at_its_batch() -> None:
    train = Counting(30)
    data = dataclasses.replace(from_loaders(train=train, test=Counting(10)), num_classes=2)
    with pytest.raises(
        CnnzipError, match=r"labels 0\.\.2 do not fit .* from_loaders\(num_classes="
    ):
        fit(small_mlp(2, 8), data, TrainConfig(epochs=1, batch_size=8), progress=False)


def test_the_users_own_dataloader_trains_as_it_is() -> None:
    """Its batch size and sampler are the user's: 40 samples in batches of 10 = 4 steps."""
    train = Counting(40)
    loader = DataLoader(train, batch_size=10, shuffle=True)
    steps: list[int] = []

    class Steps(Callback):
        def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
            steps.append(state.step)

    data = from_loaders(train=loader, val=DataLoader(Counting(10)), test=Counting(10))
    fit(
        small_mlp(3, 8),
        data,
        TrainConfig(epochs=2, batch_size=64),
        callbacks=[Steps()],
        progress=False,
    )
    assert steps == [4, 8]


def test_worker_processes_give_the_same_curve_as_none() -> None:
    cfg = TrainConfig(epochs=1, batch_size=16)
    curves = []
    for workers in (0, 2):
        data = from_loaders(train=Counting(48), test=Counting(8), workers=workers)
        curves.append(fit(small_mlp(3, 8), data, cfg, progress=False).history[0]["train_loss"])
    assert curves[0] == curves[1]


class Endless(IterableDataset):
    def __iter__(self):
        return iter(Counting(10)[i] for i in range(10))


def test_an_iterable_dataset_without_length_is_refused_before_training() -> None:
    data = from_loaders(train=Endless(), val=Endless(), test=Endless(), num_classes=3)
    with pytest.raises(
        DataError, match=r"Endless has no length; give the iterable dataset a __len__"
    ):
        fit(small_mlp(3, 8), data, TrainConfig(epochs=1), progress=False)


class StopAt(Callback):
    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch == 2:
            raise KeyboardInterrupt


def test_a_streamed_run_resumes_to_the_same_weights(tmp_path) -> None:
    """The batch sampler's order is a function of (seed, epoch), as in memory."""
    cfg = TrainConfig(epochs=3, batch_size=16, seed=2)
    data = from_loaders(train=Counting(48), test=Counting(8))
    straight = small_mlp(3, 8)
    fit(straight, data, cfg, progress=False)
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(small_mlp(3, 8), data, cfg, checkpoint=ckpt, callbacks=[StopAt()], progress=False)
    resumed = small_mlp(3, 8)
    fit(resumed, data, cfg, checkpoint=ckpt, resume=True, progress=False)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", [TensorDataset, PerSample])
def test_each_rank_reads_its_slice_of_the_in_memory_global_batches(
    toy_data: Dataset, kind: type
) -> None:
    stream = StreamSplit(kind(toy_data.val.x, toy_data.val.y))
    for rank in (0, 1):
        args = {"shuffle": True, "seed": 1, "epoch": 2, "rank": rank, "world_size": 2}
        want = list(batches(toy_data.val, 24, **args))
        got = list(batches(stream, 24, **args))
        assert len(got) == len(want) == steps(stream, 24, 2)
        for (xa, ya), (xb, yb) in zip(want, got, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("source", [DataLoader(Counting(10), batch_size=5), Stream(10)])
def test_a_dataloader_or_stream_is_not_sharded_behind_the_users_back(source) -> None:
    with pytest.raises(DataError, match=r"cannot be sharded .* pass a map-style Dataset"):
        next(batches(StreamSplit(source), 5, rank=0, world_size=2))


class NotPairs(TorchDataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.zeros(4, 4)


def test_samples_that_are_not_pairs_are_refused() -> None:
    with pytest.raises(DataError, match=r"NotPairs samples must be \(x, y\) pairs"):
        first_input(StreamSplit(NotPairs()))
    with pytest.raises(DataError, match=r"yields Tensor batches; each sample must be an \(x, y\)"):
        next(batches(StreamSplit(DataLoader(NotPairs(), batch_size=2)), 2))
