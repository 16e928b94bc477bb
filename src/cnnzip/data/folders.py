"""Image folders: one sub-folder per class, PNG or JPEG files read with Pillow.

A folder is either the classes themselves, or holds ``train/`` and ``test/`` (and
optionally ``val/``), each with one sub-folder per class. Images are read lazily,
one per ``__getitem__``, so a set larger than memory streams; only each file's
header is read when the folder is opened, to check that every image has one size
(or that ``size`` is given to resize them) and to learn grey or RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnzip.errors import DataError

__all__ = ["FolderSet", "ImageFolder", "find_image_folder", "read_image_folder"]

SUFFIXES = {".png", ".jpg", ".jpeg"}
GREY_MODES = {"1", "L", "LA"}
# 16/32-bit and float modes: Pillow's convert("L") clips them to 255 instead of scaling
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SPLITS = ("train", "val", "test")


def _visible(path: Path) -> bool:
    """Not a hidden file: macOS archives carry ``._name.png`` resource forks that are
    not images, and every tool hides dot-files."""
    return not path.name.startswith(".")


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in SUFFIXES
    )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and mode of one image, from its header only."""
    try:
        with Image.open(path) as img:
            size, mode = img.size, img.mode
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"{path}: not a readable PNG/JPEG image ({exc}); remove or re-save it"
        ) from None
    if mode in WIDE_MODES:
        raise DataError(
            f"{path}: a {mode} (16/32-bit or float) image; cnnzip reads 8-bit grey or "
            "colour images only: re-save it as 8 bits"
        )
    return size, mode


class ImageFolder(torch.utils.data.Dataset):
    """Map-style Dataset over one split's class folders: item i is (uint8 tensor
    (C, H, W), int label), read from disk on each call."""

    def __init__(self, root: Path, classes: tuple[str, ...], size: int | None = None) -> None:
        self.root = root
        self.classes = classes
        self.size = size
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            files = _images(root / name) if (root / name).is_dir() else []
            if not files:
                raise DataError(
                    f"{root / name}: class folder holds no PNG/JPEG images; add some or remove it"
                )
            self.samples += [(path, label) for path in files]
        self.channels, self.hw = self._scan()

    def _scan(self) -> tuple[int, tuple[int, int]]:
        """Channels (3 if any image is colour) and (H, W), refusing mixed sizes without
        ``size``: a batch cannot stack them, and failing at batch 100 wastes a run."""
        first_size, channels = None, 1
        for path, _ in self.samples:
            wh, mode = _header(path)
            channels = channels if mode in GREY_MODES else 3
            if first_size is None:
                first_size, first_path = wh, path
            elif wh != first_size and self.size is None:
                raise DataError(
                    f"{path}: image is {wh[1]}x{wh[0]} (HxW) but {first_path} is "
                    f"{first_size[1]}x{first_size[0]}; resize all with size=N (--input N)"
                )
        w, h = first_size if self.size is None else (self.size, self.size)
        return channels, (h, w)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.hw)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
                if self.size is not None:
                    img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
                pixels = np.array(img, dtype=np.uint8)  # a writable copy for torch
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: cannot decode image ({exc}); the file is corrupt") from None
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(pixels)), label


@dataclass(frozen=True)
class FolderSet:
    """The splits found (``val`` None when the folder has none; ``test`` None when the
    folder is only classes), one class list and one input shape for all."""

    train: ImageFolder
    val: ImageFolder | None
    test: ImageFolder | None
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    named = True  # the classes are the sub-folders' names (see ``ArraySet.named``)


def find_image_folder(folder: Path) -> bool:
    """True when ``folder`` (or its ``train/``) has class sub-folders holding images."""
    base = folder / "train" if (folder / "train").is_dir() else folder
    return any(_images(d) for d in _class_dirs(base))


def read_image_folder(folder: str | Path, *, size: int | None = None) -> FolderSet:
    """Open an image folder (see module docstring); class names are the sorted
    sub-folder names of train, and every other split must have the same ones."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    if size is not None and size < 1:
        raise DataError(f"image size must be >= 1 pixel, got {size}")
    roots = {s: folder / s for s in SPLITS if (folder / s).is_dir()}
    if "train" not in roots:
        roots = {"train": folder}
    classes = tuple(d.name for d in _class_dirs(roots["train"]))
    if not classes:
        raise DataError(f"{roots['train']}: no class sub-folders; put each class's images in one")
    for root in roots.values():
        names = tuple(d.name for d in _class_dirs(root))
        if names != classes:
            raise DataError(
                f"{root}: class folders {', '.join(names)} differ from train's "
                f"{', '.join(classes)}; every split needs the same classes"
            )
    sets = {split: ImageFolder(root, classes, size) for split, root in roots.items()}
    channels = max(s.channels for s in sets.values())  # one colour image: all read as RGB
    for s in sets.values():
        s.channels = channels
    shapes = {split: s.input_shape for split, s in sets.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(
            f"{folder}: splits have different image sizes {shapes}; "
            "resize all with size=N (--input N)"
        )
    return FolderSet(
        train=sets["train"],
        val=sets.get("val"),
        test=sets.get("test"),
        classes=classes,
        input_shape=shapes["train"],
    )
