"""A cross-batch memory of recent embeddings, mined for look-alike negatives.

A batch of 64 pictures rarely holds two that look alike (two coins, two leaves), so in-batch
mining seldom shows the network the negatives that make a dedupe run group distinct pictures.
The memory keeps the last `size` embeddings (detached, unit length) with their labels; each
anchor of the next batch is paired with its semi-hard memory negative: the closest remembered
embedding of another label that is still farther from the anchor than its positive. That adds
one triplet per anchor whose negative comes from thousands of pictures instead of 63 (the idea
of cross-batch memory, Wang et al. 2020). With `--negative-ceiling`, the remembered pictures are
also the bank that `CeilingLoss` holds each batch item's look-alikes under a fixed cosine against.

Remembered embeddings come from slightly older weights; that drift is small once a model is
trained (the memory is meant for fine-tuning stages). The memory is not checkpointed: after a
resume it refills within `size / batch` steps, and until it holds anything the term is off.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from simsearch.errors import TrainingError

__all__ = ["EmbeddingMemory", "Remembered"]


class Remembered(NamedTuple):
    """What the memory holds: unit vectors and the label of each."""

    vectors: torch.Tensor
    labels: torch.Tensor


class EmbeddingMemory:
    """A ring buffer of `size` embeddings and labels; see the module docstring."""

    def __init__(self, size: int):
        if size < 1:
            raise TrainingError(f"memory size must be at least 1, got {size}")
        self.size = int(size)
        self.vectors: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.filled = 0
        self._next = 0

    def push(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Remember a batch (the oldest entries make room)."""
        x = F.normalize(embeddings.detach().float(), dim=1)
        labels = torch.as_tensor(labels, device=x.device).reshape(-1)
        if x.shape[0] != labels.shape[0]:
            raise TrainingError("memory: embeddings and labels differ in length")
        if self.vectors is None:
            self.vectors = torch.zeros(self.size, x.shape[1], device=x.device)
            self.labels = torch.full((self.size,), -1, dtype=labels.dtype, device=x.device)
        if x.shape[1] != self.vectors.shape[1]:
            raise TrainingError(f"memory holds {self.vectors.shape[1]}-d embeddings, got {x.shape[1]}-d")
        x, labels = x[-self.size:], labels[-self.size:]
        slots = (self._next + torch.arange(x.shape[0], device=x.device)) % self.size
        self.vectors[slots] = x
        self.labels[slots] = labels
        self._next = int((self._next + x.shape[0]) % self.size)
        self.filled = min(self.size, self.filled + x.shape[0])

    def remembered(self) -> Remembered | None:
        """The filled part (None while empty). Views of the ring: a loss computed on them must be
        backpropagated before the next push writes the ring in place."""
        if self.filled == 0:
            return None
        return Remembered(self.vectors[:self.filled], self.labels[:self.filled])

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each anchor that has a positive in the batch: (anchor, positive, memory slot).

        The positive is the anchor's farthest batch item of its label; the memory negative is the
        closest remembered item of another label that is farther than that positive.
        Anchors without such a negative are left out.
        """
        empty = torch.zeros(0, dtype=torch.long, device=embeddings.device)
        held = self.remembered()
        if held is None:
            return empty, empty, empty
        labels = torch.as_tensor(labels, device=embeddings.device).reshape(-1)
        with torch.no_grad():
            x = F.normalize(embeddings.detach().float(), dim=1)
            d = 1.0 - x @ x.T
            same = labels[:, None] == labels[None, :]
            same.fill_diagonal_(False)
            has_positive = same.any(dim=1)
            d_ap, positive = d.masked_fill(~same, float("-inf")).max(dim=1)
            d_an = 1.0 - x @ held.vectors.T
            allowed = (held.labels[None, :] != labels[:, None]) & (d_an > d_ap[:, None])
            d_an = d_an.masked_fill(~allowed, float("inf"))
            best, slot = d_an.min(dim=1)
            keep = has_positive & torch.isfinite(best)
            anchors = torch.nonzero(keep, as_tuple=True)[0]
        return anchors, positive[anchors], slot[anchors]

    def triplet_loss(self, embeddings: torch.Tensor, labels: torch.Tensor,
                     margin: float) -> torch.Tensor | None:
        """Mean triplet margin loss (cosine distance) over the active memory triplets; None
        while the memory is empty or no anchor has a memory negative."""
        anchors, positives, slots = self.mine(embeddings, labels)
        if anchors.numel() == 0:
            return None
        x = F.normalize(embeddings.float(), dim=1)
        d_ap = 1.0 - (x[anchors] * x[positives]).sum(dim=1)
        d_an = 1.0 - (x[anchors] * self.vectors[slots]).sum(dim=1)
        losses = F.relu(d_ap - d_an + margin)
        active = losses > 0
        return losses[active].mean() if bool(active.any()) else losses.sum() * 0.0
