"""FAISS: the only module that imports faiss. Inner product on unit vectors = cosine score.

Collections up to `EXACT_LIMIT` vectors use an exact flat index; beyond that, dedupe switches to
an inverted-file index so that all-pairs range search stays sub-quadratic.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from simsearch.errors import IndexStoreError

__all__ = ["VectorStore", "Pairs", "range_pairs", "EXACT_LIMIT"]

EXACT_LIMIT = 200_000
_THREADED_QUERIES = 8  # from this many queries on, a search uses every core


class VectorStore:
    """Vectors with stable int64 ids (`IndexIDMap2` over `IndexFlatIP`).

    Each row holds the unit vector plus one more column, -o(vector), its score offset against
    a background set (`simsearch.scoring`; 0 without one). A plain query [q, 0] scores cosine;
    an adjusted query [q, 1] scores cos(q, b) - o(b) in the same single scan, so the exact
    top-k of adjusted scores needs no second pass. `scoring` names the background the offsets
    came from ("cosine" for none)."""

    def __init__(self, dim: int, index: faiss.Index | None = None, background=None):
        self.dim = dim
        self.background = background
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim + 1))

    @property
    def scoring(self) -> str:
        return "cosine" if self.background is None else self.background.fingerprint

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        extra = (-self.background.offsets(vectors) if self.background is not None
                 else np.zeros(len(ids), np.float32))
        rows = np.ascontiguousarray(np.hstack([vectors, extra[:, None]]), dtype=np.float32)
        self.index.add_with_ids(rows, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def search(self, queries: np.ndarray, k: int, adjusted: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each [n, k'] with k' = min(k, count), best first: cosine scores, or
        with `adjusted` cos(q, b) - o(b) (the query's own offset is the caller's to subtract)."""
        k = min(k, self.count)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be [n, {self.dim}], not {list(queries.shape)}")
        if k == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        column = np.full((len(queries), 1), 1.0 if adjusted else 0.0, np.float32)
        rows = np.ascontiguousarray(np.hstack([queries, column]))
        if len(queries) >= _THREADED_QUERIES:
            return self.index.search(rows, k)
        # A few queries scan memory once: one thread does it faster than waking a team that
        # competes with the BLAS threads numpy just used (4 ms vs 10-30 ms at 100k vectors).
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(rows, k)
        finally:
            faiss.omp_set_num_threads(threads)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def vectors(self) -> np.ndarray:
        return self.vectors_and_offsets()[0]

    def vectors_and_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored vector, float32 [n, dim], and its stored score offset o(b), [n]."""
        rows = self.index.index.reconstruct_n(0, self.count)
        return np.ascontiguousarray(rows[:, :self.dim]), np.ascontiguousarray(-rows[:, self.dim])

    def get(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (each must be present), float32 [len(ids), dim]."""
        out = np.empty((len(ids), self.dim), np.float32)
        for row, i in enumerate(np.asarray(ids, dtype=np.int64).tolist()):
            out[row] = self.index.reconstruct(i)[:self.dim]
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Atomic: a temp file, flushed, then `os.replace`."""
        path = os.fspath(path)
        tmp = path + ".tmp"
        faiss.write_index(self.index, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, background=None) -> "VectorStore":
        """Read a vector file; `background` must be the one its offsets were made with (the
        manifest records which: see `scoring`)."""
        try:
            index = faiss.read_index(os.fspath(path))
        except RuntimeError as e:
            # faiss's message names its C++ internals; the user needs only the verdict
            reason = "truncated or damaged"
            if "could not open" in str(e):
                try:
                    open(path, "rb").close()
                except OSError as why:
                    reason = why.strerror or "cannot be opened"
            raise IndexStoreError(f"{path}: cannot read the vector file ({reason})") from e
        if index.d == dim:
            raise IndexStoreError(f"{path}: written by an older simsearch (no score offsets); "
                                  f"it is rebuilt from the catalog when the index is opened")
        if index.d != dim + 1:
            raise IndexStoreError(f"{path}: vectors have {index.d - 1} dimensions, expected {dim}")
        return cls(dim, index, background)


@dataclass
class Pairs:
    """A batch of scored pairs (ids of the left and right image, cosine score)."""

    left: np.ndarray
    right: np.ndarray
    scores: np.ndarray


def range_pairs(ids: np.ndarray, vectors: np.ndarray, threshold: float,
                batch: int = 4096, exact_limit: int = EXACT_LIMIT,
                nprobe: int = 16) -> Iterator[Pairs]:
    """Every pair (i < j) with cosine score >= threshold, in batches of query rows.

    Memory is linear in n plus the number of pairs found: no n x n matrix is ever built. Up to
    `exact_limit` vectors the search is exact; above, an IVF index with `nprobe` lists is used
    (approximate: a near-duplicate pair is missed only if its vectors fall in lists that are far
    apart, which is rare at the high scores that dedupe asks for).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    n, dim = vectors.shape
    if n < 2:
        return
    if n <= exact_limit:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(sample)
        index.nprobe = nprobe
    index.add(vectors)
    for start in range(0, n, batch):
        lims, dist, labels = index.range_search(vectors[start:start + batch], float(threshold))
        rows = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = labels > rows  # each unordered pair once, no self pairs
        yield Pairs(ids[rows[keep]], ids[labels[keep]], dist[keep].astype(np.float32))
