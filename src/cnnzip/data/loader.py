"""Mini-batches from in-memory splits or the user's torch data, sharded the same way for
1 or N processes.

A global batch is the same set of samples whatever the process count: under
data-parallel training each rank takes its slice of every global batch, so the
averaged gradient (and so the loss curve) matches a single process. The user's
map-style torch ``Dataset`` is read through a DataLoader whose batch sampler
yields exactly those global batches, so it trains as the same tensors in memory
would; the user's own ``DataLoader`` is iterated as it is (its sampler, its
batch size, its transforms).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import torch
from torch.utils.data import DataLoader, IterableDataset, Subset, TensorDataset
from torch.utils.data import Dataset as TorchDataset

from cnnzip.data.datasets import (
    DEFAULT_VAL_FRACTION,
    Dataset,
    Normalization,
    Split,
    as_inputs,
    as_labels,
    channel_moments,
    val_cut,
)
from cnnzip.errors import DataError

__all__ = [
    "StreamSplit",
    "as_split",
    "batches",
    "first_input",
    "from_loaders",
    "measure_stream",
    "num_batches",
    "steps",
]

# labels read to infer the class count when the data has no ``classes`` attribute
CLASS_SCAN = 2048
# images of a streamed training set read to measure its per-channel mean/std: each is a
# file read and decoded, so far fewer than in memory; 1,000 give the mean to ~1%
STREAM_SAMPLE = 1000


def _generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh generator per (seed, epoch): a resumed run sees the same draws."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _order(n: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=_generator(seed, epoch))


def num_batches(n: int, batch_size: int, world_size: int = 1) -> int:
    """Global batches per epoch; the last one is dropped when it cannot feed every rank."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= world_size else 0)


def _global_batches(
    n: int, batch_size: int, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int
) -> Iterator[torch.Tensor]:
    """This rank's sample indices of each global batch of an epoch."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    order = _order(n, shuffle, seed, epoch)
    for b in range(num_batches(n, batch_size, world_size)):
        idx = order[b * batch_size : (b + 1) * batch_size]
        yield torch.tensor_split(idx, world_size)[rank]


@dataclass(frozen=True)
class StreamSplit:
    """A split read on demand from the user's torch ``Dataset`` or ``DataLoader`` of
    (x, y) samples, never held in memory; ``workers`` are the DataLoader workers used
    for a ``Dataset`` (a ``DataLoader`` brings its own). With ``norm`` every batch is
    normalised per channel as it is read (an image folder's statistics)."""

    source: TorchDataset | DataLoader
    workers: int = 0
    norm: Normalization | None = None

    def __len__(self) -> int:
        data = self.source.dataset if isinstance(self.source, DataLoader) else self.source
        try:
            return len(data)  # type: ignore[arg-type]
        except TypeError:
            raise DataError(
                f"{type(data).__name__} has no length; give the iterable dataset a __len__ "
                "so epochs and the learning-rate schedule can be planned"
            ) from None

    @cached_property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the first sample."""
        return tuple(first_input(self).shape[1:])

    def batches(
        self, batch_size: int, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in _read(self._loader(batch_size, shuffle, seed, epoch, rank, world_size)):
            x, y = _as_batch(batch, f"{type(self.source).__name__}'s inputs")
            yield (self.norm.apply(x) if self.norm else x), y

    def steps(self, batch_size: int, world_size: int) -> int:
        if isinstance(self.source, DataLoader):
            return len(self.source)
        return num_batches(len(self), batch_size, world_size)

    def _loader(
        self, batch_size: int, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int
    ) -> DataLoader:
        if world_size > 1 and isinstance(self.source, DataLoader | IterableDataset):
            raise DataError(
                f"a {type(self.source).__name__} cannot be sharded across processes by "
                "cnnzip (every rank would read all of it); pass a map-style Dataset "
                "instead (cnnzip then gives each rank its slice of every batch)"
            )
        if isinstance(self.source, DataLoader):
            return self.source
        # every DataLoader iterator draws its workers' base seed from ``generator``; without
        # one it would draw from torch's global RNG and shift the dropout and augmentation
        # draws away from those of the same data in memory
        options = {"num_workers": self.workers, "generator": _generator(seed, epoch)}
        if isinstance(self.source, IterableDataset):
            return DataLoader(self.source, batch_size=batch_size, **options)
        order = _global_batches(len(self), batch_size, shuffle, seed, epoch, rank, world_size)
        sampler = [idx.tolist() for idx in order]
        if _tensor_backed(self.source):  # one indexing per batch, not one read per sample
            return DataLoader(self.source, sampler=sampler, batch_size=None, **options)
        return DataLoader(self.source, batch_sampler=sampler, **options)


def _tensor_backed(data: TorchDataset) -> bool:
    """A TensorDataset, or Subsets of one: indexed by a list of indices it returns the
    whole batch at once, the same values the per-sample path would stack."""
    while isinstance(data, Subset):
        data = data.dataset
    return isinstance(data, TensorDataset)


def _read(loader: Iterable[object]) -> Iterator[object]:
    """The batches of ``loader``, with the errors of reading them made plain: a DataError
    raised in a DataLoader worker arrives wrapped in torch's text ("Caught DataError in
    DataLoader worker process 0. Original Traceback ..."), which buries the message naming
    the bad file; and collating samples that are not tensors (PIL images) fails in torch."""
    try:
        yield from loader
    except DataError as exc:
        text = str(exc)
        if "Original Traceback" not in text:
            raise
        raise DataError(text.rsplit("DataError: ", 1)[-1].strip()) from None
    except TypeError as exc:
        if "collate" not in str(exc):
            raise
        raise DataError(
            "samples must be tensors or arrays; convert PIL images with a transform "
            f"(e.g. torchvision's ToTensor or PILToTensor): {str(exc).splitlines()[-1]}"
        ) from None


def _as_batch(batch: object, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A collated (x, y) as float (N, C, H, W) inputs and int64 labels, by the same rule
    as every other input (``as_inputs``: uint8 scaled, channel axis added or moved first),
    so a batch is laid out as the first sample was when it was checked."""
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise DataError(
            f"the data yields {type(batch).__name__} batches; each sample must be an (x, y) pair"
        )
    x, y = batch
    return as_inputs(torch.as_tensor(x), what), as_labels(torch.as_tensor(y), "labels")


def first_input(split: Split | StreamSplit) -> torch.Tensor:
    """One input of ``split`` as a (1, C, H, W) batch, checked as ``as_inputs`` checks
    arrays, to try a model on before training."""
    if isinstance(split, Split):
        return split.x[:1]
    source = split.source
    if isinstance(source, DataLoader):
        x = _as_batch(next(_read(source)), "the DataLoader's first input")[0][:1]
    else:
        sample = next(iter(source)) if isinstance(source, IterableDataset) else source[0]
        x = _sample_input(sample, source)
    return split.norm.apply(x) if split.norm else x


def _sample_input(sample: object, source: TorchDataset) -> torch.Tensor:
    """The input of one (x, y) sample of ``source`` as a checked (1, C, H, W) batch."""
    if not (isinstance(sample, tuple | list) and len(sample) == 2):
        raise DataError(f"{type(source).__name__} samples must be (x, y) pairs")
    x = torch.as_tensor(sample[0])
    return as_inputs(x.unsqueeze(0), f"{type(source).__name__}'s input")


def measure_stream(
    train: TorchDataset, name: str, limit: int = STREAM_SAMPLE, workers: int = 0
) -> Normalization:
    """Per-channel mean/std of at most ``limit`` samples of a map-style ``train``, drawn with
    a fixed seed (not the run's: every run of a folder normalises alike), read one by one
    (by ``workers`` DataLoader workers) and summed in float64, so no image is kept."""
    n = len(train)  # type: ignore[arg-type]
    picks = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].tolist()
    reads = DataLoader(
        Subset(train, picks), batch_size=None, num_workers=workers, generator=_generator(0, 0)
    )
    moments = (channel_moments(_sample_input(sample, train)) for sample in _read(reads))
    return Normalization.from_moments(moments, name)


def as_split(data: Split | StreamSplit | TorchDataset | DataLoader) -> Split | StreamSplit:
    """A split to batch: cnnzip's own kept, the user's torch Dataset or DataLoader streamed."""
    if isinstance(data, Split | StreamSplit):
        return data
    return StreamSplit(_source(data, "the data"))


def steps(split: Split | StreamSplit, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps (global batches) in one epoch over ``split``."""
    if isinstance(split, StreamSplit):
        return split.steps(batch_size, world_size)
    return num_batches(len(split), batch_size, world_size)


def batches(
    split: Split | StreamSplit,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches; with world_size > 1, this rank's slice of each global batch."""
    if isinstance(split, StreamSplit):
        yield from split.batches(batch_size, shuffle, seed, epoch, rank, world_size)
        return
    for idx in _global_batches(len(split), batch_size, shuffle, seed, epoch, rank, world_size):
        yield split.x[idx], split.y[idx]


def _labels_of(source: TorchDataset | DataLoader, limit: int) -> torch.Tensor:
    """The labels of (at most about) the first ``limit`` samples."""
    if isinstance(source, DataLoader | IterableDataset):
        seen: list[torch.Tensor] = []
        for item in source:
            seen.append(torch.as_tensor(item[1]).reshape(-1))
            if sum(len(s) for s in seen) >= limit:
                break
        return torch.cat(seen) if seen else torch.zeros(0, dtype=torch.long)
    count = min(len(source), limit)  # type: ignore[arg-type]
    return torch.as_tensor([int(source[i][1]) for i in range(count)])


def class_count(source: TorchDataset | DataLoader, limit: int = CLASS_SCAN) -> int:
    """Classes of the user's data: ``len(classes)`` where it has that attribute (as
    torchvision's ImageFolder and CIFAR do), else the largest label among the first
    ``limit`` samples + 1 (a bounded scan: labels beyond it that exceed the count fail
    at their batch with a message asking for ``num_classes``)."""
    data = source.dataset if isinstance(source, DataLoader) else source
    classes = getattr(data, "classes", None)
    if classes is not None:
        return len(classes)
    labels = as_labels(_labels_of(source, limit), "the training labels")
    if len(torch.unique(labels)) < 2:
        raise DataError(
            f"the first {len(labels)} training labels are all one class; pass num_classes "
            "(or a dataset with a classes attribute)"
        )
    return int(labels.max()) + 1


def _cut_val(train: TorchDataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    rest, val = val_cut(len(train), fraction, seed)  # type: ignore[arg-type]
    return Subset(train, rest), Subset(train, val)


def _source(value: object, which: str) -> TorchDataset | DataLoader:
    if not isinstance(value, TorchDataset | DataLoader):
        raise DataError(
            f"{which} is a {type(value).__name__}; pass a torch DataLoader or a "
            "torch.utils.data.Dataset of (x, y) samples (or arrays to cz.data.from_arrays)"
        )
    return value


def _check_settings(num_classes: int | None, workers: int) -> None:
    """Settings torch would only refuse later, and less clearly."""
    if num_classes is not None and not (_is_int(num_classes) and num_classes >= 2):
        raise DataError(f"num_classes={num_classes!r} must be an integer >= 2")
    if not (_is_int(workers) and workers >= 0):
        raise DataError(f"workers={workers!r} must be an integer >= 0 (0: read in this process)")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def from_loaders(
    train: TorchDataset | DataLoader,
    test: TorchDataset | DataLoader,
    val: TorchDataset | DataLoader | None = None,
    *,
    num_classes: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    workers: int = 0,
    stats: Normalization | None = None,
    name: str = "loaders",
) -> Dataset:
    """A ``Dataset`` streamed from the user's torch DataLoaders or Datasets of (x, y)
    samples, for ``fit`` and ``evaluate``; nothing is read into memory. Inputs arrive as
    the user's pipeline makes them (its normalisation and augmentation), uint8 scaled to
    [0, 1], and normalised per channel with ``stats`` when given (an image folder's).
    Without ``val``, ``val_fraction`` of a map-style training Dataset (chosen with
    ``seed``) validates. ``num_classes`` defaults to ``class_count`` of train."""
    _check_settings(num_classes, workers)
    train_src, test_src = _source(train, "train"), _source(test, "test")
    classes = num_classes if num_classes is not None else class_count(train_src)
    if val is None:
        if isinstance(train_src, DataLoader | IterableDataset):
            raise DataError(
                "no val given and train is a DataLoader or an iterable dataset, which cannot "
                "be cut; pass val=..., or train as a map-style Dataset to cut val_fraction"
            )
        train_src, val_src = _cut_val(train_src, val_fraction, seed)
    else:
        val_src = _source(val, "val")
    sources = {"train": train_src, "val": val_src, "test": test_src}
    splits = {k: StreamSplit(s, workers, stats) for k, s in sources.items()}
    return Dataset(name=name, num_classes=classes, normalization=stats, **splits)  # type: ignore[arg-type]
