"""Losses on unit-vector embeddings, and the batch statistics that reveal a collapsing space.

Each loss is a small `nn.Module`: `forward(...)` returns the scalar loss tensor and
`compute(...)` returns it with counts in a `LossResult`. The base class checks shapes; the
subclasses do the maths. All maths runs in float32 (call these outside any bf16 autocast region:
cosines near 1.0 are unreadable in bf16).

  TripletMarginLoss  max(0, d(a,p) - d(a,n) + margin) with d = 1 - cos, averaged over the
                     *active* triplets (loss > 0), so easy triplets do not dilute the signal.
  InfoNCELoss        in-batch softmax: each positive pair against all negatives of its anchor
                     (NT-Xent for two views per label; SSCD's form for more).
  KoLeoLoss          -mean log(distance to the nearest negative): SSCD's differential-entropy
                     regulariser, which spreads the embeddings over the sphere.
  CeilingLoss        mean(cos - ceiling) over the pairs of different labels scoring above a
                     fixed cosine: an absolute bound, where the triplet's is relative.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from simsearch.errors import TrainingError
from simsearch.train.memory import Remembered
from simsearch.train.miners import Triplets

__all__ = ["LossResult", "TripletMarginLoss", "InfoNCELoss", "KoLeoLoss", "CeilingLoss", "FloorLoss",
           "BatchStats", "batch_stats", "TrainingMonitor"]


@dataclass(frozen=True)
class LossResult:
    """A loss value and what it was computed over."""

    loss: torch.Tensor
    terms: int                        # triplets, pairs or anchors that were scored
    active_fraction: float | None     # triplet / ceiling: share of triplets / pairs with loss > 0


class _EmbeddingLoss(nn.Module):
    """Shape checks shared by the losses; subclasses implement `compute`."""

    @staticmethod
    def _unit(embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.shape[0] < 2:
            raise TrainingError(f"embeddings must be 2-D with at least 2 rows, "
                                f"got {tuple(embeddings.shape)}")
        if not embeddings.is_floating_point():
            raise TrainingError(f"embeddings must be floating point, got {embeddings.dtype}")
        if labels is not None and (labels.dim() != 1 or labels.numel() != embeddings.shape[0]):
            raise TrainingError(f"labels must be 1-D with one label per embedding: got shape "
                                f"{tuple(labels.shape)} for {embeddings.shape[0]} embeddings")
        return F.normalize(embeddings.float(), dim=1)

    def compute(self, *args, **kwargs) -> LossResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.compute(*args, **kwargs).loss


class TripletMarginLoss(_EmbeddingLoss):
    """Triplet margin loss in cosine distance, mean over active triplets."""

    def __init__(self, margin: float = 0.25):
        super().__init__()
        if not 0.0 < margin < 2.0:
            raise TrainingError(f"triplet margin {margin} is outside (0, 2), "
                                "the range of cosine distance")
        self.margin = float(margin)

    def compute(self, embeddings: torch.Tensor, triplets: Triplets) -> LossResult:
        x = self._unit(embeddings)
        a, p, n = triplets.anchors, triplets.positives, triplets.negatives
        if not (a.shape == p.shape == n.shape) or a.dim() != 1:
            raise TrainingError("triplet index tensors must be 1-D and of equal length")
        if len(triplets) == 0:
            return LossResult(x.sum() * 0.0, 0, 0.0)
        if int(torch.stack([a, p, n]).max()) >= x.shape[0] or int(torch.stack([a, p, n]).min()) < 0:
            raise TrainingError(f"triplet indices out of range for a batch of {x.shape[0]}")
        d_ap = 1.0 - (x[a] * x[p]).sum(dim=1)
        d_an = 1.0 - (x[a] * x[n]).sum(dim=1)
        losses = F.relu(d_ap - d_an + self.margin)
        active = losses > 0
        n_active = int(active.sum())
        loss = losses[active].mean() if n_active else losses.sum() * 0.0
        return LossResult(loss, len(triplets), n_active / len(triplets))


class InfoNCELoss(_EmbeddingLoss):
    """In-batch softmax (temperature `temperature`) over each anchor's positives vs its negatives.

    For an anchor i and a positive j: -log(exp(s_ij/t) / (exp(s_ij/t) + sum_negatives exp(s_ik/t))),
    averaged over all (i, j) pairs. Other positives of i are left out of the denominator.
    """

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        if temperature <= 0:
            raise TrainingError(f"InfoNCE temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossResult:
        x = self._unit(embeddings, labels)
        logits = (x @ x.T) / self.temperature
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=x.device)
        positive = same & ~eye
        if not bool(positive.any()) or bool(same.all()):
            raise TrainingError("InfoNCE needs at least one positive pair and one negative in the batch")
        # log(sum over negatives of exp(logit)) per anchor; -inf where an anchor has no negative
        neg_lse = torch.logsumexp(logits.masked_fill(same, float("-inf")), dim=1, keepdim=True)
        log_prob = logits - torch.logaddexp(logits, neg_lse)
        terms = int(positive.sum())
        return LossResult(-(log_prob[positive]).sum() / terms, terms, None)


class KoLeoLoss(_EmbeddingLoss):
    """-mean log of each embedding's L2 distance to its nearest neighbour.

    With labels, the neighbour is the nearest *negative* (items of other labels), as in SSCD, so
    the term does not push the views of one image apart. Without labels, any other item counts.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = float(eps)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> LossResult:
        x = self._unit(embeddings, labels)
        cos = x @ x.T
        if labels is not None:
            excluded = labels[:, None] == labels[None, :]
        else:
            excluded = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        has_neighbour = ~excluded.all(dim=1)
        if not bool(has_neighbour.any()):
            raise TrainingError("KoLeo needs at least two labels in the batch")
        nearest = cos.masked_fill(excluded, float("-inf")).max(dim=1).values[has_neighbour]
        distance = (2.0 - 2.0 * nearest).clamp(min=self.eps).sqrt()
        return LossResult(-distance.log().mean(), int(has_neighbour.sum()), None)


class CeilingLoss(_EmbeddingLoss):
    """Holds pictures of different labels under a fixed cosine `ceiling`.

    Dedupe groups every pair above one threshold, so two distinct look-alikes (two coins, two
    digits) at 0.88 make a false group whether or not some heavy crop of one of them scores
    lower. A triplet loss only orders a negative after its anchor's positive; this term bounds
    the negatives themselves. Pairs are the batch's pairs of different labels and, when a bank
    (the cross-batch memory: unit vectors and their labels) is given, each batch item against
    every remembered item of another label. The loss is the mean of (cos - ceiling) over the
    pairs above the ceiling, 0 when there are none; `terms` counts the pairs scored and
    `active_fraction` the share above the ceiling.
    """

    def __init__(self, ceiling: float):
        super().__init__()
        if not 0.0 < ceiling < 1.0:
            raise TrainingError(f"negative ceiling {ceiling} is outside (0, 1)")
        self.ceiling = float(ceiling)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor,
                bank: Remembered | None = None) -> LossResult:
        x = self._unit(embeddings, labels)
        pairs = [_pair_cosines(x, labels, same=False)]
        if bank is not None:
            if bank.vectors.dim() != 2 or bank.vectors.shape[1] != x.shape[1] \
                    or bank.labels.shape != bank.vectors.shape[:1]:
                raise TrainingError(f"the bank holds {tuple(bank.vectors.shape)} vectors with "
                                    f"{tuple(bank.labels.shape)} labels; need N x {x.shape[1]} "
                                    "and one label each")
            cos = x @ bank.vectors.to(x.dtype).T
            pairs.append(cos[labels[:, None] != bank.labels[None, :]])
        cos = torch.cat(pairs)
        over = cos[cos > self.ceiling] - self.ceiling
        share = over.numel() / max(1, cos.numel())
        loss = over.mean() if over.numel() else x.sum() * 0.0
        return LossResult(loss, int(cos.numel()), share)


def _pair_cosines(x: torch.Tensor, labels: torch.Tensor, same: bool) -> torch.Tensor:
    """Cosines of the batch's unit rows, each unordered pair once: pairs of one label (`same`)
    or of different labels."""
    upper = torch.triu(torch.ones(len(labels), len(labels), dtype=torch.bool, device=x.device),
                       diagonal=1)
    alike = labels[:, None] == labels[None, :]
    return (x @ x.T)[upper & (alike if same else ~alike)]


class FloorLoss(_EmbeddingLoss):
    """Lifts pictures of one label (an image's edited views) over a fixed cosine `floor`.

    The counterpart of `CeilingLoss` for recall: dedupe keeps a copy only when it scores above
    the threshold, so a heavy crop at 0.80 is missed whether or not every other picture scores
    lower. The pairs are the batch's pairs of one label; the loss is the mean of (floor - cos)
    over the pairs under the floor, 0 when there are none; `terms` counts the pairs scored and
    `active_fraction` the share under the floor.
    """

    def __init__(self, floor: float):
        super().__init__()
        if not 0.0 < floor < 1.0:
            raise TrainingError(f"positive floor {floor} is outside (0, 1)")
        self.floor = float(floor)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossResult:
        x = self._unit(embeddings, labels)
        cos = _pair_cosines(x, labels, same=True)
        under = self.floor - cos[cos < self.floor]
        share = under.numel() / max(1, cos.numel())
        loss = under.mean() if under.numel() else x.sum() * 0.0
        return LossResult(loss, int(cos.numel()), share)


@dataclass(frozen=True)
class BatchStats:
    """Cosine statistics of one batch: the signs of a collapsing embedding space.

    mean_cos              mean cosine over all distinct pairs (near 1.0: everything in one cone)
    positive_cos          mean cosine of positive pairs (views / images of the same label)
    nearest_negative_cos  mean over items of the cosine to their most similar negative
    """

    mean_cos: float
    positive_cos: float
    nearest_negative_cos: float

    def collapsed(self, mean_cos_limit: float = 0.9, nearest_limit: float = 0.97) -> bool:
        """True when the batch looks collapsed: a tight cone, or negatives as close as positives."""
        squeezed = self.nearest_negative_cos > nearest_limit and self.positive_cos > nearest_limit
        return self.mean_cos > mean_cos_limit or squeezed


def batch_stats(embeddings: torch.Tensor, labels: torch.Tensor) -> BatchStats:
    """Collapse statistics of a batch (no gradient; float32)."""
    with torch.no_grad():
        x = F.normalize(embeddings.detach().float(), dim=1)
        cos = x @ x.T
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        off = ~eye
        positive = same & off
        nearest = cos.masked_fill(same, float("-inf")).max(dim=1).values
        nearest = nearest[torch.isfinite(nearest)]
        return BatchStats(
            mean_cos=float(cos[off].mean()) if bool(off.any()) else 1.0,
            positive_cos=float(cos[positive].mean()) if bool(positive.any()) else float("nan"),
            nearest_negative_cos=float(nearest.mean()) if nearest.numel() else float("nan"))


class TrainingMonitor:
    """Watches the steps of a run for a loss stuck at exactly zero and for a collapsing space.

    A step counts as collapsed when `BatchStats.collapsed()` holds and it comes after
    `after_step` (a freshly initialised network always looks collapsed: every image lands in one
    cone until training spreads them). `update` returns a message the first time either
    condition has held for `patience` steps in a row, and again after each recovery.
    """

    def __init__(self, patience: int = 50, after_step: int = 0, mean_cos_limit: float = 0.9,
                 nearest_limit: float = 0.97):
        self.patience, self.after_step = max(1, int(patience)), int(after_step)
        self.limits = (mean_cos_limit, nearest_limit)
        self.zero_steps = self.collapse_steps = 0
        self.collapsed_at: int | None = None
        self._zero_run = self._collapse_run = 0

    def update(self, step: int, loss: float, stats: BatchStats) -> list[tuple[str, str]]:
        """Record one step; returns (kind, message) pairs, kind "warning" or "collapse"."""
        events = []
        self._zero_run = self._zero_run + 1 if loss == 0.0 else 0
        self.zero_steps += self._zero_run > 0
        if self._zero_run == self.patience:
            events.append(("warning", f"the loss has been exactly 0 for {self.patience} steps: every "
                                      "mined triplet is already satisfied; try a larger margin or "
                                      "miner 'hard'"))
        collapsed = step > self.after_step and stats.collapsed(*self.limits)
        self._collapse_run = self._collapse_run + 1 if collapsed else 0
        self.collapse_steps += collapsed
        if self._collapse_run == self.patience:
            self.collapsed_at = self.collapsed_at or step
            events.append(("collapse", (
                f"embedding collapse at step {step}: mean cosine {stats.mean_cos:.3f}, positives "
                f"{stats.positive_cos:.3f}, nearest negatives {stats.nearest_negative_cos:.3f} for "
                f"{self.patience} steps; lower the lr, raise koleo_weight, or use miner 'semihard'")))
        return events

    def state(self) -> dict:
        return {"zero_steps": self.zero_steps, "collapse_steps": self.collapse_steps,
                "collapsed_at": self.collapsed_at}

    def restore(self, state: dict) -> None:
        self.zero_steps = int(state.get("zero_steps", 0))
        self.collapse_steps = int(state.get("collapse_steps", 0))
        self.collapsed_at = state.get("collapsed_at")
