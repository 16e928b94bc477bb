"""Random pixel jitter, the augmentation of Hinton et al.'s MNIST teacher (+-2 pixels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["jitter"]


def jitter(x: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """Shift each image by its own random whole number of pixels in [-pixels, pixels] on each
    axis. The edge pixels are repeated into the gap (they are background in (Fashion-)MNIST,
    whatever the normalisation). Draws from torch's global RNG, which ``fit`` seeds per epoch,
    so ``fit(..., augment=jitter)`` stays deterministic and resumable."""
    if pixels == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, mode="replicate")  # (N, C, H + 2p, W + 2p)
    top, left = torch.randint(0, 2 * pixels + 1, (2, n, 1), device=x.device)  # (N, 1) each
    rows = top + torch.arange(h, device=x.device)  # (N, H)
    cols = left + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)
