"""Triplet miners: which (anchor, positive, negative) index triplets of a batch to train on.

Distances are cosine distances d = 1 - cos between unit vectors (0 = same direction, 2 =
opposite), computed in float32 without gradient: mining only chooses indices, the loss then
recomputes the chosen distances with gradient.

Strategies, for every anchor-positive pair (a, p) of the batch:
  semihard  every negative n with d(a,p) < d(a,n) < d(a,p) + margin (FaceNet). A pair with none
            falls back (if `fallback`) to its least-hard violating negative: the largest d(a,n)
            that is still <= d(a,p), as TF-Addons' semi-hard loss does. A pair whose negatives
            are all beyond the margin is satisfied and contributes nothing.
  hard      the single hardest negative (smallest d(a,n)).
  all       every negative.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from simsearch.config import MINER_STRATEGIES
from simsearch.errors import NoTripletsError, TrainingError

__all__ = ["MINER_STRATEGIES", "NoTripletsError", "Triplets", "cosine_distances", "mine_triplets"]


@dataclass(frozen=True)
class Triplets:
    """Index tensors (int64, same length) into the batch, plus how they were found."""

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    pairs: int = 0          # anchor-positive pairs in the batch
    fallbacks: int = 0      # semi-hard pairs that used the fallback negative

    def __len__(self) -> int:
        return int(self.anchors.numel())

    def as_set(self) -> set[tuple[int, int, int]]:
        """The triplets as a set of Python int tuples (for tests and debugging)."""
        return set(zip(self.anchors.tolist(), self.positives.tolist(), self.negatives.tolist()))


def cosine_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """All pairwise cosine distances (n x n) of a batch of row vectors, in float32."""
    x = torch.nn.functional.normalize(embeddings.float(), dim=1)
    return (1.0 - x @ x.T).clamp_(0.0, 2.0)


def _check(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.dim() != 2:
        raise TrainingError(f"embeddings must be 2-D (batch x dim), got shape {tuple(embeddings.shape)}")
    if labels.dim() != 1 or labels.numel() != embeddings.shape[0]:
        raise TrainingError(f"labels must be 1-D with one label per embedding: got shape "
                            f"{tuple(labels.shape)} for {embeddings.shape[0]} embeddings")


def mine_triplets(embeddings: torch.Tensor, labels: torch.Tensor, strategy: str = "semihard",
                  margin: float = 0.25, fallback: bool = True) -> Triplets:
    """Pick triplets of the batch by `strategy` (see the module docstring).

    Raises `NoTripletsError` when the batch holds no valid triplet at all. A batch where every
    valid triplet is already satisfied returns empty `Triplets` (len 0): nothing to learn.
    """
    if strategy not in MINER_STRATEGIES:
        raise TrainingError(f"unknown miner {strategy!r}; choose one of {', '.join(MINER_STRATEGIES)}")
    labels = torch.as_tensor(labels, device=embeddings.device).reshape(-1)
    _check(embeddings, labels)
    with torch.no_grad():
        dist = cosine_distances(embeddings)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=dist.device)
        a, p = torch.nonzero(same & ~eye, as_tuple=True)
        negative = ~same[a]                    # (pairs x n): which items are negatives of a
        if a.numel() == 0 or not bool(negative.any()):
            raise NoTripletsError(
                f"batch of {len(labels)} items with {int(labels.unique().numel())} label(s) holds no "
                "valid triplet: it needs 2 or more labels and at least one label with 2 items")
        d_an = dist[a]                         # (pairs x n)
        d_ap = dist[a, p][:, None]             # (pairs x 1)
        fallbacks = 0
        if strategy == "all":
            rows, n = torch.nonzero(negative, as_tuple=True)
        elif strategy == "hard":
            rows = torch.arange(a.numel(), device=dist.device)
            n = d_an.masked_fill(~negative, float("inf")).argmin(dim=1)
        else:
            band = negative & (d_an > d_ap) & (d_an < d_ap + margin)
            rows, n = torch.nonzero(band, as_tuple=True)
            if fallback:
                inside = negative & (d_an <= d_ap)
                needs = ~band.any(dim=1) & inside.any(dim=1)
                if bool(needs.any()):
                    least_hard = d_an.masked_fill(~inside, float("-inf")).argmax(dim=1)
                    extra = torch.nonzero(needs, as_tuple=True)[0]
                    rows = torch.cat([rows, extra])
                    n = torch.cat([n, least_hard[extra]])
                    fallbacks = int(extra.numel())
        return Triplets(a[rows], p[rows], n, pairs=int(a.numel()), fallbacks=fallbacks)
