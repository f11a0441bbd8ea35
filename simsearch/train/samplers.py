"""Batch samplers: which dataset items go into each training batch.

`PKSampler` draws P labels x K items per batch, so every anchor in a batch has K-1 positives
and (P-1)*K negatives: the shape that triplet mining needs. `ItemSampler` is the plain version
for data whose items already carry their own positives (two random views of one image).

Both are seeded and deterministic per (seed, epoch), so a resumed run sees the same batches.
NumPy only: no torch here.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from simsearch.errors import TrainingError

__all__ = ["PKSampler", "ItemSampler", "SamplerSummary"]


@dataclass(frozen=True)
class SamplerSummary:
    """What a sampler could use: counts to report before training starts."""

    usable_labels: int
    usable_items: int
    short_labels: int      # labels with 2..K-1 items, drawn with replacement (or skipped)
    skipped_labels: int    # labels that cannot give a positive pair (1 item), or skipped short ones
    p: int                 # labels per batch actually used (may be below the requested P)
    k: int


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


class PKSampler:
    """Yields batches of `p` labels x `k` item indices (K >= 2).

    A label with fewer than `k` items but at least 2 is drawn with replacement
    (`short="replace"`, so its batch slots may repeat an item) or left out (`short="skip"`);
    a label with a single item can never give a positive pair and is always left out.
    Raises `TrainingError` when fewer than 2 labels are usable: no triplet could be formed.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, p: int, k: int, seed: int = 0,
                 short: str = "replace"):
        if k < 2:
            raise TrainingError(f"K (items per label) must be at least 2 to form a positive pair, got {k}")
        if p < 2:
            raise TrainingError(f"P (labels per batch) must be at least 2 to form a negative, got {p}")
        if short not in ("replace", "skip"):
            raise TrainingError(f"short must be 'replace' or 'skip', got {short!r}")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.k, self.seed, self.epoch = int(k), int(seed), 0
        self.replace_short = short == "replace"
        self.groups: list[np.ndarray] = []
        short_count = skipped = 0
        order = np.argsort(labels, kind="stable")
        values, starts = np.unique(labels[order], return_index=True)
        for group in np.split(order, starts[1:]) if len(values) else []:
            if len(group) >= self.k:
                self.groups.append(group)
            elif len(group) >= 2 and self.replace_short:
                self.groups.append(group)
                short_count += 1
            else:
                skipped += 1
        if len(self.groups) < 2:
            raise TrainingError(
                f"cannot form triplets: {len(self.groups)} of {len(values)} labels have at least "
                f"2 items (K={self.k}{', short labels skipped' if not self.replace_short else ''}); "
                "training needs at least 2 labels with 2 or more images each")
        self.p = min(int(p), len(self.groups))
        usable_items = int(sum(len(g) for g in self.groups))
        self.summary = SamplerSummary(len(self.groups), usable_items, short_count, skipped,
                                      self.p, self.k)
        self._batches = max(1, usable_items // (self.p * self.k))

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose (seeded) batch order `__iter__` yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = _epoch_rng(self.seed, self.epoch)
        queue: list[int] = []  # labels in shuffled passes, so each label gets its turn
        for _ in range(self._batches):
            chosen, queue = queue[:self.p], queue[self.p:]
            if len(chosen) < self.p:  # start a new pass, without repeating a label in this batch
                fresh = [int(i) for i in rng.permutation(len(self.groups)) if int(i) not in chosen]
                need = self.p - len(chosen)
                chosen, queue = chosen + fresh[:need], fresh[need:]
            batch: list[int] = []
            for g in chosen:
                group = self.groups[g]
                pick = rng.choice(len(group), self.k, replace=len(group) < self.k)
                batch.extend(int(group[i]) for i in pick)
            yield batch


class ItemSampler:
    """Shuffled batches of `batch_size` distinct items (for data that makes its own positives)."""

    def __init__(self, n_items: int, batch_size: int, seed: int = 0):
        if n_items < 2:
            raise TrainingError(f"cannot form triplets: {n_items} usable image(s); "
                                "training needs at least 2 distinct images")
        self.n_items, self.seed, self.epoch = int(n_items), int(seed), 0
        self.batch_size = max(2, min(int(batch_size), self.n_items))
        self.summary = SamplerSummary(self.n_items, self.n_items, 0, 0, self.batch_size, 2)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return max(1, self.n_items // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        perm = _epoch_rng(self.seed, self.epoch).permutation(self.n_items)
        for b in range(len(self)):
            yield [int(i) for i in perm[b * self.batch_size:(b + 1) * self.batch_size]]
