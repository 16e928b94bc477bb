"""Datasets held in memory as normalised tensors.

The datasets cnnzip trains on (Fashion-MNIST, MNIST, a synthetic one for
tests) fit in memory many times over, so a dataset is three tensor splits and
batches are cut by indexing (see ``loader``), which is far faster than a
per-sample DataLoader on 2 cores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cnnzip.data.augment import crop_flip, default_augment
from cnnzip.data.idx import read_idx
from cnnzip.errors import DataError

if TYPE_CHECKING:  # loader builds on this module
    from cnnzip.data.loader import StreamSplit

__all__ = [
    "DEFAULT_VAL_FRACTION",
    "MEASURE_SAMPLE",
    "Dataset",
    "Normalization",
    "Split",
    "as_inputs",
    "as_labels",
    "data_dirs",
    "from_arrays",
    "list_datasets",
    "load",
    "synthetic",
    "val_cut",
]


@dataclass(frozen=True)
class Split:
    """One split: inputs (N, C, H, W) float32, normalised; labels (N,) int64.

    Built by hand from arrays, it is checked at the door (``as_inputs``,
    ``as_labels``): numpy or torch, uint8 scaled to [0, 1], labels of any integer
    dtype, a missing channel axis added, so a bad array fails here in one line
    instead of mid-training as a raw torch error. An ``x`` that is neither an array
    nor a tensor (a lazy, indexable stand-in) is kept as given.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        y = as_labels(self.y, "labels")
        x = self.x
        if isinstance(x, (np.ndarray, torch.Tensor)):
            x = as_inputs(x, "inputs")
        if hasattr(x, "__len__") and len(x) != len(y):
            raise DataError(
                f"{len(x)} inputs but {len(y)} labels: a split needs one label per input"
            )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one sample."""
        return tuple(self.x.shape[1:])


Augment = Callable[[torch.Tensor], torch.Tensor]
Moments = tuple[torch.Tensor, torch.Tensor, int]  # per-channel sums, sums of squares, count

# training images a per-channel mean/std is measured on (a fixed-seed sample): enough for
# three significant digits, and bounded however large the set
MEASURE_SAMPLE = 10_000
MEASURE_CHUNK = 256  # images summed at once


@dataclass(frozen=True)
class Normalization:
    """Per-channel statistics inputs are normalised with, ``(x - mean[c]) / std[c]``.

    Measured once on training images and stored with every model trained on them (run.json,
    the .cnnz metadata), so evaluating or compressing that model later normalises the same
    way instead of re-measuring on a differently cut split."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean, std = _floats(self.mean), _floats(self.std)
        if mean is None or std is None or not mean or len(mean) != len(std):
            raise DataError(
                f"normalization mean {self.mean!r:.80} and std {self.std!r:.80} must be lists "
                "of one finite number per channel, of the same length"
            )
        if not all(s > 0 for s in std):
            raise DataError(f"normalization std {std!r:.80} must be > 0 for every channel")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        return len(self.mean)

    @classmethod
    def identity(cls, channels: int) -> Normalization:
        """Inputs kept as they are (mean 0, std 1 per channel)."""
        return cls((0.0,) * channels, (1.0,) * channels)

    @classmethod
    def from_moments(cls, parts: Iterable[Moments], where: str = "data") -> Normalization:
        """From ``channel_moments`` of batches of ``where``'s training inputs, summed (so
        images are measured a batch at a time, never all at once); the population std, as
        numpy computes it."""
        sums = list(parts)
        total = torch.stack([p[0] for p in sums]).sum(0)  # (C,)
        squares = torch.stack([p[1] for p in sums]).sum(0)  # (C,)
        count = sum(p[2] for p in sums)
        mean = total / count  # (C,)
        std = (squares / count - mean**2).clamp(min=0).sqrt()  # (C,)
        if not bool((std > 0).all()):
            raise DataError(
                f"{where}: training inputs have std {std.tolist()} per channel; a constant "
                "channel cannot be normalised: pass stats=Normalization(mean, std)"
            )
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    @classmethod
    def measure(cls, x: torch.Tensor, where: str = "data") -> Normalization:
        """The statistics of ``where``'s training images ``x`` (N, C, H, W)."""
        return cls.from_moments([channel_moments(x)], where)

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, value: Any) -> Normalization:
        """As ``to_json`` wrote it, checked (one DataError on anything else)."""
        if not (isinstance(value, dict) and set(value) == {"mean", "std"}):
            raise DataError(
                f'normalization must be {{"mean": [...], "std": [...]}}, got {value!r:.80}'
            )
        return cls(value["mean"], value["std"])

    def check_channels(self, channels: int, where: str) -> None:
        """The statistics fit inputs of ``channels`` channels."""
        if channels != self.channels:
            raise DataError(
                f"{where}: the normalization has {self.channels} channel(s) but the data has "
                f"{channels}; normalise with statistics of data like this one (a model records "
                "those of the data it was trained on)"
            )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, H, W) normalised."""
        self.check_channels(x.shape[1], "normalising inputs")
        shape = (1, self.channels, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std


def _floats(values: Any) -> tuple[float, ...] | None:
    """``values`` as a tuple of finite floats, or None when it is not one."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    out = tuple(float(v) for v in values)
    return out if all(map(math.isfinite, out)) else None


def channel_moments(x: torch.Tensor) -> Moments:
    """Per-channel sums of ``x`` (N, C, H, W) and of its squares, in float64 (so sums over
    many batches stay exact enough), and the count of values per channel."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()  # (C, N * H * W)
    return flat.sum(1), (flat**2).sum(1), flat.shape[1]


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits plus what a model needs to know; a split is
    held in memory (``Split``) or streamed from the user's torch data (``StreamSplit``,
    see ``from_loaders``). ``normalization`` holds the per-channel statistics the inputs
    were normalised with (None: as the user's pipeline made them); ``augment`` maps
    training batches (N, C, H, W) to augmented ones and is applied by ``fit`` to the
    training split only. ``classes`` holds the class names where the data names them (an
    image folder's sub-folders, an .npz's ``classes``), recorded with a model so that a
    later evaluation on data with other classes is refused instead of mis-mapping labels."""

    name: str
    train: Split | StreamSplit
    val: Split | StreamSplit
    test: Split | StreamSplit
    num_classes: int
    normalization: Normalization | None = None
    augment: Augment | None = None
    classes: tuple[str, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample (read from the data, in memory or streamed)."""
        return self.train.input_shape  # type: ignore[return-value]

    @property
    def stats(self) -> Normalization:
        """The statistics to record with a model trained on this data: ``normalization``,
        else mean 0 and std 1 per channel (read lazily: it needs the channel count)."""
        return self.normalization or Normalization.identity(self.input_shape[0])

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean subtracted from the inputs."""
        return self.stats.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel std the inputs were divided by."""
        return self.stats.std

    def record(self) -> dict[str, Any]:
        """What a model trained on this data records of it (run.json, a .cnnz file's
        metadata) besides its normalization: the data's name, its input shape, and its
        class names where the data names them, so later verbs can find the same data and
        refuse other data."""
        named = {"classes": list(self.classes)} if self.classes is not None else {}
        return {"data": self.name, "input_shape": list(self.input_shape), **named}

    def with_augment(self, augment: bool | None = None) -> Dataset:
        """This dataset training with ``crop_flip`` (True), without augmentation (False),
        or by default with it for colour images of at least ``AUGMENT_MIN_SIDE`` px (None)."""
        on = default_augment(self.input_shape) if augment is None else augment
        return replace(self, augment=crop_flip if on else None)


def _as_tensor(value: object, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise DataError(f"{what} are stored as {value.dtype}; they must be numbers")
        if not value.dtype.isnative:  # e.g. '>f4' from an .npz or IDX file: torch refuses it
            value = value.astype(value.dtype.newbyteorder("="))
        if not value.flags.writeable:  # e.g. a read-only memory map: torch needs its own copy
            value = value.copy()
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DataError(f"{what} are a {type(value).__name__}; pass a numpy array or a torch tensor")


def _channels_first(x: torch.Tensor, what: str, from_numpy: bool) -> torch.Tensor:
    """(N, H, W) gains a channel axis; (N, H, W, C) with C in 1/3/4 becomes (N, C, H, W)
    only when axis 1 cannot be the channels. When both axes could be, a tensor follows
    torch's channels-first convention and a numpy array (often channels-last) is refused:
    guessing wrong would train on scrambled images without any error."""
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() != 4:
        raise DataError(
            f"{what} have shape {tuple(x.shape)}; expected (N, H, W), (N, C, H, W) "
            "or (N, H, W, C) images"
        )
    first, last = x.shape[1] in _CHANNELS, x.shape[3] in _CHANNELS
    if first and last and from_numpy:
        raise DataError(
            f"{what} have shape {tuple(x.shape)}: axis 1 and axis 3 could both be the "
            "channels; pass a torch tensor laid out (N, C, H, W)"
        )
    return x.permute(0, 3, 1, 2).contiguous() if last and not first else x


_CHANNELS = (1, 3, 4)


def as_inputs(x: object, what: str = "inputs") -> torch.Tensor:
    """Images as float32 (N, C, H, W): uint8 scaled to [0, 1], float kept as is (finite),
    other integer types refused (their range is unknown)."""
    t = _as_tensor(x, what)
    from_numpy = isinstance(x, np.ndarray)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        t = t.float()
        if not bool(torch.isfinite(t).all()):
            raise DataError(f"{what} hold NaN or infinite values (or values beyond float32)")
    else:
        raise DataError(f"{what} are {t.dtype}; images must be uint8 (0..255) or floating point")
    return _channels_first(t, what, from_numpy)


def as_labels(y: object, what: str = "labels") -> torch.Tensor:
    """Class labels as int64 (N,), from any integer dtype, never negative."""
    t = _as_tensor(y, what)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise DataError(f"{what} are {t.dtype}; class labels must be integers")
    if t.dim() != 1:
        raise DataError(f"{what} have shape {tuple(t.shape)}; expected one label per input (N,)")
    t = t.long()
    if t.numel() and int(t.min()) < 0:
        raise DataError(f"{what} include {int(t.min())}; class labels must be >= 0")
    return t


# name -> Debian default folder and how a user gets the files
_SOURCES: dict[str, tuple[str, str]] = {
    "fashion-mnist": (
        "/usr/share/datasets/fashion-mnist",
        "apt-get install dataset-fashion-mnist (Debian), or download the four "
        "*-ubyte.gz files of zalandoresearch/fashion-mnist into a folder and set CNNZIP_DATA",
    ),
    "mnist": (
        "/usr/share/datasets/mnist",
        "download the four *-ubyte.gz files of MNIST into a folder and set CNNZIP_DATA",
    ),
}
_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def list_datasets() -> list[str]:
    """Names ``load`` accepts (plus ``synthetic``)."""
    return [*sorted(_SOURCES), "synthetic"]


def data_dirs(name: str, root: str | Path | None = None) -> list[Path]:
    """Folders searched for ``name``: those of ``root`` if given, else of $CNNZIP_DATA if
    set, else the Debian folder. A location the user named is the only one searched, so
    one that lacks the set is an error instead of a silent fallback to another copy."""
    base = root or os.environ.get("CNNZIP_DATA")
    if base:
        return [Path(base), Path(base) / name]
    return [Path(_SOURCES[name][0])]


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_raw(name: str, root: str | Path | None) -> dict[str, np.ndarray]:
    """The four IDX arrays of ``name`` from the first searched folder that has them all."""
    gaps = []
    for folder in data_dirs(name, root):
        paths = {key: _find_file(folder, stem) for key, stem in _FILES.items()}
        if all(paths.values()):
            return {key: read_idx(path) for key, path in paths.items()}  # type: ignore[arg-type]
        missing = [_FILES[key] for key, path in paths.items() if path is None]
        if not folder.is_dir():
            gaps.append(f"{folder} does not exist")
        elif len(missing) < len(_FILES):
            gaps.append(f"{folder} lacks {', '.join(missing)} (raw or .gz)")
        else:
            gaps.append(f"{folder} holds none of its four files")
    raise DataError(f"{name} not found: {'; '.join(gaps)}. To get it: {_SOURCES[name][1]}")


def _check_pair(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """One split's files: matching counts, images (N, H, W) with sane pixels, usable labels."""
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{name}: images {images.shape} and labels {labels.shape} do not match "
            "(expected (N, H, W) images and N labels)"
        )
    if min(images.shape) < 1:
        raise DataError(f"{name}: images of shape {images.shape} hold no pixels")
    _check_pixels(name, images)
    _check_labels(name, labels, num_classes)


def _check_pixels(name: str, images: np.ndarray) -> None:
    """Integer images are 8-bit grey levels (0..255); float ones must be finite in float32."""
    if images.dtype.kind == "u" and images.dtype.itemsize == 1:
        return  # uint8: in range by construction
    if images.dtype.kind in "iu":
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise DataError(f"{name}: pixel values {low}..{high} are outside 0..255")
    elif not np.isfinite(images.astype(np.float32)).all():
        raise DataError(f"{name}: images hold NaN or infinite pixels (or values beyond float32)")


def _check_labels(name: str, labels: np.ndarray, num_classes: int) -> None:
    """Integer labels in [0, num_classes), at least two classes.

    A split with a single class is refused: on a one-class test set a model that
    always answers that class scores 100%, and a one-class training set teaches
    nothing; such a file is nearly always truncated or mislabelled. The check is
    on the files, before ``limit``, so a tiny ``limit`` still works.
    """
    if labels.dtype.kind not in "iu":
        raise DataError(
            f"{name}: labels are stored as {labels.dtype.name}; they must be integers "
            "(IDX type 0x08 to 0x0C)"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(f"{name}: labels {low}..{high} are outside 0..{num_classes - 1}")
    if low == high:
        raise DataError(
            f"{name}: every label is {low}; a split needs at least two classes "
            "(is the label file truncated or the wrong one?)"
        )


def _check_splits(name: str, raw: dict[str, np.ndarray], num_classes: int) -> None:
    """Both splits valid and of one image size, so nothing fails after an epoch."""
    _check_pair(f"{name} train", raw["train_x"], raw["train_y"], num_classes)
    _check_pair(f"{name} test", raw["test_x"], raw["test_y"], num_classes)
    train_hw, test_hw = raw["train_x"].shape[1:], raw["test_x"].shape[1:]
    if train_hw != test_hw:
        raise DataError(
            f"{name}: training images are {train_hw[0]}x{train_hw[1]} but test images "
            f"{test_hw[0]}x{test_hw[1]}; both splits must have one image size"
        )


def _to_split(images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> Split:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, H, W)
    return Split(x=(x - mean) / std, y=torch.from_numpy(labels.astype(np.int64)))


def default_val_size(n_train: int) -> int:
    """Validation images taken from ``n_train`` training images: the conventional 5,000 of
    a full-size set (Fashion-MNIST's 60,000 -> 55,000 / 5,000), a tenth of a smaller one
    so a user's folder of a few thousand images still loads, and at least one while
    one image is left to train on."""
    if n_train >= 50_000:
        return 5000
    return min(max(1, n_train // 10), n_train - 1)


def _split_train_val(
    x: np.ndarray, y: np.ndarray, val_size: int, seed: int
) -> tuple[np.ndarray, ...]:
    """A fixed-seed random train/validation split, so every run validates on the same images."""
    if not 0 <= val_size < len(y):
        raise DataError(
            f"val_size={val_size} must be in [0, {len(y)}): the training split has {len(y)} "
            "images; leave val_size unset for a tenth of them"
        )
    order = np.random.default_rng(seed).permutation(len(y))
    val, train = order[:val_size], order[val_size:]
    return x[train], y[train], x[val], y[val]


def load(
    name: str = "fashion-mnist",
    *,
    root: str | Path | None = None,
    val_size: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    limit: int | None = None,
    stats: Normalization | None = None,
) -> Dataset:
    """Load an IDX image-classification dataset, normalised with its training mean and std
    (or with ``stats``, e.g. those a model was trained with).

    The files are looked for in ``root`` if given, else $CNNZIP_DATA, else the
    Debian folder (``data_dirs``), and checked before anything trains on them. The
    validation split is ``val_size`` training images chosen with ``seed``, or
    ``val_fraction`` of them (after ``limit``), by default ``default_val_size`` of the
    training split before ``limit`` (Fashion-MNIST's 5,000 = 1/12 of 60,000); the
    test split is the official one. ``limit`` keeps only the first ``limit``
    training and test images (for quick tests).
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1 image, got {limit}")
    if name == "synthetic":
        return synthetic(seed=seed)
    if name not in _SOURCES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    raw = _read_raw(name, root)
    num_classes = 10
    _check_splits(name, raw, num_classes)
    train_x, train_y, test_x, test_y = raw["train_x"], raw["train_y"], raw["test_x"], raw["test_y"]
    if val_size is not None and val_fraction is not None:
        raise DataError("pass val_size or val_fraction, not both")
    default = val_size is None and val_fraction is None
    if default:
        val_size = default_val_size(len(train_y))
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
        test_x, test_y = test_x[:limit], test_y[:limit]
        if val_fraction is None:  # as before val_fraction existed
            val_size = min(val_size, len(train_y) // 5)  # type: ignore[type-var]
    if val_fraction is not None:
        val_size = val_size_of(len(train_y), val_fraction)
    mean, std = _grey_stats(name, raw["train_x"], stats)
    tx, ty, vx, vy = _split_train_val(train_x, train_y, val_size, seed)
    return Dataset(
        name=name,
        train=_to_split(tx, ty, mean, std),
        val=_to_split(vx, vy, mean, std),
        test=_to_split(test_x, test_y, mean, std),
        num_classes=num_classes,
        normalization=Normalization((mean,), (std,)),
    )


def _grey_stats(name: str, train_x: np.ndarray, stats: Normalization | None) -> tuple[float, float]:
    """(mean, std) of a grey IDX set: ``stats`` if given, else those of the whole official
    training set, as is conventional (python floats: the tensors stay those of every
    earlier cnnzip, bit for bit)."""
    if stats is not None:
        stats.check_channels(1, name)
        return stats.mean[0], stats.std[0]
    pixels = train_x.astype(np.float32) / 255.0
    mean, std = float(pixels.mean()), float(pixels.std())
    if not (math.isfinite(std) and std > 0):
        raise DataError(f"{name}: training pixels have std {std}; cannot normalise them")
    return mean, std


DEFAULT_VAL_FRACTION = 1 / 12  # Fashion-MNIST's conventional 5,000 of 60,000


def val_size_of(n_train: int, fraction: float) -> int:
    """Validation images cut from ``n_train`` for ``fraction``: rounded, at least one,
    and at least one left to train on."""
    if not (isinstance(fraction, float | int) and 0 < fraction < 1):
        raise DataError(f"val_fraction={fraction!r} must be a number in (0, 1)")
    if n_train < 2:
        raise DataError(
            f"the training split has {n_train} image(s); cutting a validation split needs >= 2"
        )
    return min(max(1, round(n_train * fraction)), n_train - 1)


def _class_count(splits: dict[str, Split], num_classes: int | None) -> int:
    """The class count: given (and then checked) or the largest label + 1; at least two
    classes in training, for the reason ``_check_labels`` gives."""
    high = max(int(s.y.max()) for s in splits.values() if len(s))
    if num_classes is not None and high >= num_classes:
        name = next(k for k, s in splits.items() if len(s) and int(s.y.max()) == high)
        raise DataError(
            f"{name} labels reach {high} but num_classes={num_classes}; "
            f"labels must be in 0..{num_classes - 1}"
        )
    if len(torch.unique(splits["train"].y)) < 2:
        raise DataError("every training label is the same; a classifier needs >= 2 classes")
    return num_classes if num_classes is not None else high + 1


def from_arrays(
    x_train: object,
    y_train: object,
    x_test: object,
    y_test: object,
    x_val: object = None,
    y_val: object = None,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    num_classes: int | None = None,
    normalize: bool = True,
    stats: Normalization | None = None,
    name: str = "arrays",
) -> Dataset:
    """A ``Dataset`` from the user's own arrays or tensors, checked and converted at the
    door (see ``Split``). Without ``x_val``/``y_val``, ``val_fraction`` of the training
    images (chosen with ``seed``, so every run validates on the same ones) become the
    validation split. ``num_classes`` defaults to the largest label + 1. With
    ``normalize`` every split is shifted and scaled per channel by ``stats``, by default
    measured on (a fixed-seed sample of ``MEASURE_SAMPLE``) training inputs before the
    validation cut, so they do not depend on ``val_fraction``."""
    if (x_val is None) != (y_val is None):
        raise DataError("pass both x_val and y_val, or neither (to cut val_fraction of train)")
    splits = {
        "train": _door_split(x_train, y_train, "train"),
        "test": _door_split(x_test, y_test, "test"),
    }
    channels = splits["train"].input_shape[0]
    if stats is None:
        train_x = splits["train"].x
        stats = _sample_stats(train_x, name) if normalize else Normalization.identity(channels)
    stats.check_channels(channels, name)
    if x_val is None:
        splits["train"], splits["val"] = _cut_val(splits["train"], val_fraction, seed)
    else:
        splits["val"] = _door_split(x_val, y_val, "val")
    _check_same_shape(splits)
    classes = _class_count(splits, num_classes)
    splits = {k: Split(x=stats.apply(s.x), y=s.y) for k, s in splits.items()}
    return Dataset(name=name, num_classes=classes, normalization=stats, **splits)


def _sample_stats(x: torch.Tensor, name: str) -> Normalization:
    """Per-channel statistics of at most ``MEASURE_SAMPLE`` images of ``x`` (N, C, H, W),
    drawn with a fixed seed (the run's seed would make them differ between runs), read
    ``MEASURE_CHUNK`` at a time so large images never need a float64 copy of them all."""
    picks = torch.arange(len(x))
    if len(x) > MEASURE_SAMPLE:
        picks = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:MEASURE_SAMPLE]
    chunks = (channel_moments(x[idx]) for idx in picks.split(MEASURE_CHUNK))
    return Normalization.from_moments(chunks, name)


def _door_split(x: object, y: object, which: str) -> Split:
    """``Split`` of one pair, its errors prefixed with the split's name."""
    if x is None or y is None:
        raise DataError(f"x_{which} and y_{which} are required")
    try:
        split = Split(x=as_inputs(x, f"x_{which}"), y=as_labels(y, f"y_{which}"))
    except DataError as exc:
        raise DataError(f"{which} split: {exc}") from None
    if len(split) == 0:
        raise DataError(f"{which} split: x_{which} holds no images")
    return split


def val_cut(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices of ``n`` training samples: ``val_fraction`` of them
    drawn with ``seed`` (the permutation ``load`` uses), so every run validates on the
    same samples, in memory or streamed."""
    n_val = val_size_of(n, fraction)
    order = np.random.default_rng(seed).permutation(n).tolist()
    return order[n_val:], order[:n_val]


def _cut_val(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    rest, val = (torch.tensor(i) for i in val_cut(len(train), fraction, seed))
    return Split(x=train.x[rest], y=train.y[rest]), Split(x=train.x[val], y=train.y[val])


def _check_same_shape(splits: dict[str, Split]) -> None:
    shapes = {k: tuple(s.x.shape[1:]) for k, s in splits.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise DataError(f"the splits' images differ in shape ({listed}); all must match")


def synthetic(
    *,
    n_train: int = 1024,
    n_val: int = 256,
    n_test: int = 256,
    num_classes: int = 10,
    shape: tuple[int, int, int] = (1, 28, 28),
    noise: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """A learnable toy dataset: one random prototype image per class plus Gaussian noise.

    For tests that need real learning in seconds without any files.
    """
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn((num_classes, *shape), generator=gen)  # (K, C, H, W)

    def make(n: int) -> Split:
        y = torch.randint(0, num_classes, (n,), generator=gen)
        x = prototypes[y] + noise * torch.randn((n, *shape), generator=gen)
        return Split(x=x, y=y)

    return Dataset(
        name="synthetic",
        train=make(n_train),
        val=make(n_val),
        test=make(n_test),
        num_classes=num_classes,
    )
