"""Which weights to prune: per-layer magnitude, Han's std threshold, global magnitude.

Each rule maps weights to bool keep-masks (True = kept) and reports the
threshold it used: the smallest magnitude kept, so that the per-layer report
can show it beside Han et al.'s ``q x std`` thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnzip.prune.masks import PruneError

__all__ = ["Pruned", "check_sparsity", "global_magnitude", "magnitude", "std_threshold"]


@dataclass(frozen=True)
class Pruned:
    """A rule's answer for one layer: the keep-mask and the magnitude threshold."""

    keep: torch.Tensor  # bool, the weight's shape
    threshold: float  # smallest |w| kept (inf when nothing is kept)

    @property
    def kept(self) -> int:
        return int(self.keep.sum())


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    """``sparsity`` as a float in [0, 1), or a clear error."""
    if not 0.0 <= sparsity < 1.0:
        raise PruneError(f"{what} must be in [0, 1) (a fraction of the weights), got {sparsity}")
    return float(sparsity)


def _keep_top(scores: torch.Tensor, keep: int) -> Pruned:
    """Keep exactly ``keep`` entries of largest score; scores is (n,) float."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if keep == 0:
        return Pruned(mask, float("inf"))
    top = torch.topk(scores, keep, sorted=False)
    mask[top.indices] = True
    return Pruned(mask, float(top.values.min()))


@torch.no_grad()
def magnitude(weight: torch.Tensor, sparsity: float) -> Pruned:
    """Keep the ``n - round(sparsity * n)`` weights of largest magnitude (exactly that many)."""
    n = weight.numel()
    keep = n - round(check_sparsity(sparsity) * n)
    out = _keep_top(weight.detach().abs().flatten(), keep)
    return Pruned(out.keep.view_as(weight), out.threshold)


@torch.no_grad()
def std_threshold(weight: torch.Tensor, quality: float) -> Pruned:
    """Han et al.'s rule: remove every weight with |w| < quality x std(weight).

    The std is torch's (Bessel-corrected) over the whole tensor, pruned zeros
    included, so applying the rule again to a pruned layer tightens it.
    """
    if quality < 0:
        raise PruneError(f"the quality parameter q must be >= 0, got {quality}")
    w = weight.detach()
    threshold = quality * float(w.std())
    keep = w.abs() >= threshold
    kept = w.abs()[keep]
    return Pruned(keep, float(kept.min()) if kept.numel() else float("inf"))


@torch.no_grad()
def global_magnitude(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, Pruned]:
    """One magnitude threshold across all layers: exactly ``n - round(sparsity * n)`` kept."""
    flat = [w.detach().abs().flatten() for w in weights.values()]
    n = sum(f.numel() for f in flat)
    keep = _keep_top(torch.cat(flat), n - round(check_sparsity(sparsity) * n))
    parts = torch.split(keep.keep, [f.numel() for f in flat])
    out = {}
    for (name, w), part in zip(weights.items(), parts, strict=True):
        kept = w.detach().abs().flatten()[part]
        out[name] = Pruned(part.view_as(w), float(kept.min()) if kept.numel() else float("inf"))
    return out
