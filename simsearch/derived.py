"""Derived vector data, built and checked from the catalog (the source of truth): seeded
samples of stored vectors, whether a vector index agrees with the catalog, the stand-ins an
ingest grows its index through, and score offsets computed from a background set."""
from __future__ import annotations

import numpy as np

from simsearch.catalog import Catalog
from simsearch.scoring import Background, Offsets
from simsearch.vectors import VectorIndex

__all__ = ["vectors_agree", "by_id", "sample_with_ids", "sample", "Deferred", "Growing",
           "computed_offsets", "VERIFY_SAMPLE"]

VERIFY_SAMPLE = 16  # stored vectors compared with the catalog whenever vectors.faiss is read


def vectors_agree(catalog: Catalog, vectors: VectorIndex, sample: int = VERIFY_SAMPLE) -> bool:
    """Whether a spread sample of the vector index's rows holds, under the same ids, the
    vectors the catalog keeps (a foreign or shuffled file with the right count does not). An
    index that does not look vectors up by id (IVF) must find each sampled catalog vector's
    own id among its 10 best matches."""
    if vectors.count == 0:
        return True
    if vectors.factory.startswith("IVF"):
        ids, stored = sample_with_ids(catalog, sample)
        _, found = vectors.search(stored, 10)
        return bool(np.mean([i in row for i, row in zip(ids.tolist(), found.tolist())]) >= 0.9)
    ids = vectors.ids()
    picks = ids[np.unique(np.linspace(0, len(ids) - 1, min(sample, len(ids))).astype(np.int64))]
    stored = catalog.vectors_by_id(picks)
    if len(stored) != len(picks):
        return False
    got = vectors.get(picks)
    want = np.stack([stored[int(i)] for i in picks])
    return got.shape == want.shape and bool(np.allclose(got, want, atol=1e-4 if not vectors.lossy
                                                        else 0.05))


def by_id(catalog: Catalog, ids: np.ndarray) -> np.ndarray:
    found = catalog.vectors_by_id(ids)
    return np.stack([found[int(i)] for i in ids])


def sample_with_ids(catalog: Catalog, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of `size` distinct stored (ids, vectors) (every row when there are no
    more), in id order, read by id: picks in the catalog's id range, more of them while some
    fall in the holes that removed rows leave."""
    bounds = catalog.id_range()
    if bounds is None:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    low, high = bounds
    span = high - low + 1
    rng = np.random.default_rng(seed)
    found: dict[int, np.ndarray] = {}
    tried = np.zeros(0, np.int64)
    while len(found) < size and len(tried) < span:
        missing = size - len(found)
        # as many as should hit at the rate seen so far, and a margin
        rate = len(found) / len(tried) if len(tried) else 1.0
        want = min(span - len(tried), int(missing / max(rate, 0.01) * 1.1) + 16)
        if want >= span - len(tried):
            picks = np.setdiff1d(np.arange(low, high + 1), tried)
        else:
            picks = low + rng.choice(span, want, replace=False)
            picks = np.setdiff1d(picks, tried)
        tried = np.union1d(tried, picks)
        got = catalog.vectors_by_id(picks)
        for i in rng.permutation(list(got))[:missing].tolist():
            found[int(i)] = got[int(i)]
    ids = np.array(sorted(found), np.int64)
    return ids, np.stack([found[int(i)] for i in ids]) if len(ids) else np.zeros((0, 0), np.float32)


def sample(catalog: Catalog, size: int, seed: int = 0) -> np.ndarray:
    return sample_with_ids(catalog, size, seed)[1]


class Deferred:
    """Stands in for the vector index while an ingest grows it past its kind's size: nothing
    is held in memory, and the commit builds the index from the catalog (`Index._settled`).
    Ingest memory stays bounded by the largest index kept whole (`FLAT_LIMIT` vectors flat,
    0.5 GB at 256-d, in the automatic choice) whatever the number of files."""

    factory = "deferred"
    tombstones = 0

    def __init__(self, count: int):
        self.count = count

    def add(self, ids: np.ndarray, vectors: np.ndarray, offsets: np.ndarray | None = None) -> None:
        self.count += len(ids)

    def remove(self, ids: np.ndarray) -> int:
        self.count -= len(ids)
        return len(ids)


class Growing:
    """The vector index an ingest adds to: drops it for a `Deferred` as soon as the count
    leaves the size range of its kind (the commit rebuilds it anyway)."""

    def __init__(self, vectors: VectorIndex, choice_for):
        self.vectors = vectors
        self._choice_for = choice_for

    def add(self, ids: np.ndarray, vectors: np.ndarray, offsets: np.ndarray | None = None) -> None:
        current = self.vectors
        if (not isinstance(current, Deferred)
                and self._choice_for(current.count + len(ids)).factory != current.factory):
            self.vectors = Deferred(current.count)
        self.vectors.add(ids, vectors, offsets)

    def remove(self, ids: np.ndarray) -> int:
        return self.vectors.remove(ids)


def computed_offsets(catalog: Catalog, background: Background) -> Offsets:
    all_ids, all_offsets = [], []
    for ids, batch in catalog.vectors():
        all_ids.append(ids)
        all_offsets.append(background.offsets(batch))
    if not all_ids:
        return Offsets.zeros(np.zeros(0, np.int64))
    return Offsets(np.concatenate(all_ids), np.concatenate(all_offsets))
