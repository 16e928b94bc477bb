"""Training augmentation for colour images: a random crop with zero padding and a
horizontal flip, as batch operations on (N, C, H, W) tensors.

Both draw from torch's global RNG, which ``fit`` re-seeds every epoch, so an
augmented run is deterministic for a seed and resumable. The padding is zero in
the normalised space, i.e. the training mean colour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["AUGMENT_MIN_SIDE", "crop_flip", "default_augment", "random_crop", "random_flip"]

# colour images at least this many pixels on both sides are augmented by default (CIFAR's
# 32); grey ones are not, whatever their size, nor smaller ones: they are mostly digits and
# glyphs (MNIST-like, also padded to 32 px), where a flipped 3 or a cropped 7 is another glyph
AUGMENT_MIN_SIDE = 32
PADDING = 4  # pixels, as in the CIFAR ResNet papers


def random_crop(x: torch.Tensor, padding: int = PADDING) -> torch.Tensor:
    """Each image shifted by its own random offset: zero-padded by ``padding`` on every side,
    then cropped back to (H, W) at a random corner in [0, 2 * padding] on each axis."""
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)  # (N, C, H + 2p, W + 2p), zeros
    top, left = torch.randint(0, 2 * padding + 1, (2, n, 1), device=x.device)  # (N, 1) each
    rows = top + torch.arange(h, device=x.device)  # (N, H)
    cols = left + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5  # (N,)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def crop_flip(x: torch.Tensor) -> torch.Tensor:
    """The standard training augmentation of 32 px colour sets: ``random_crop`` (4 px)
    then ``random_flip``."""
    return random_flip(random_crop(x))


def default_augment(input_shape: tuple[int, ...]) -> bool:
    """Whether images of ``input_shape`` (C, H, W) are augmented unless told otherwise:
    colour (3 channels) and at least ``AUGMENT_MIN_SIDE`` px on both sides."""
    return (
        len(input_shape) == 3 and input_shape[0] == 3 and min(input_shape[1:]) >= AUGMENT_MIN_SIDE
    )
