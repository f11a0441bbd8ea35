"""FAISS: the only module that imports faiss. Inner product on unit vectors = cosine score.

`VectorIndex` is the one search interface the rest of simsearch sees: add, remove, k nearest,
pairs above a score, save, load. It is built from a factory description (FAISS's
`index_factory` language) that the manifest records, so an index folder says how its vectors
are searched. Today every index is exact (`Flat`); an approximate description returns
candidates whose scores the caller re-computes exactly from the stored vectors
(`simsearch.scoring`), so approximation can cost recall, never a wrong score.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from simsearch.errors import IndexStoreError

__all__ = ["VectorIndex", "Pairs", "SelfJoin", "range_pairs", "EXACT_LIMIT", "JOIN_EXACT_LIMIT",
           "DEFAULT_FACTORY", "FACTORIES", "factory_problem"]

EXACT_LIMIT = 200_000
# A self-join scans n x n scores when exact: above this many vectors an inverted file is used.
JOIN_EXACT_LIMIT = 50_000
DEFAULT_FACTORY = "Flat"
# The vector index descriptions simsearch builds (and so accepts in a manifest).
FACTORIES = ("Flat",)


def factory_problem(factory) -> str | None:
    """What is wrong with a vector index description from a manifest, or None."""
    if factory not in FACTORIES:
        return (f"vector index {str(factory)[:40]!r} is not one this simsearch builds "
                f"({', '.join(FACTORIES)})")
    return None
_THREADED_QUERIES = 8  # from this many queries on, a search uses every core


class VectorIndex:
    """Unit vectors with stable int64 ids, searched by inner product (= cosine)."""

    def __init__(self, dim: int, factory: str = DEFAULT_FACTORY, index: faiss.Index | None = None):
        self.dim = dim
        self.factory = factory
        if index is None:
            try:
                inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as e:
                raise IndexStoreError(f"unknown vector index description {factory!r}") from e
            index = faiss.IndexIDMap2(inner)
        self.index = index

    @property
    def exact(self) -> bool:
        """Whether search scores are exact cosines (a flat index) or candidates to re-score."""
        return isinstance(faiss.downcast_index(self.index.index), faiss.IndexFlat)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        try:
            self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        except RuntimeError as e:
            raise IndexStoreError(f"cannot add to the {self.factory} vector index "
                                  f"({str(e).strip().splitlines()[-1][:120]})") from e

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        try:
            return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))
        except RuntimeError as e:
            raise IndexStoreError(f"cannot remove from the {self.factory} vector index "
                                  f"({str(e).strip().splitlines()[-1][:120]})") from e

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each [n, k'] with k' = min(k, count), best first (cosine scores)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        k = min(k, self.count)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be [n, {self.dim}], not {list(queries.shape)}")
        if k == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        if len(queries) >= _THREADED_QUERIES:
            return self.index.search(queries, k)
        # A few queries scan memory once: one thread does it faster than waking a team that
        # competes with the BLAS threads numpy just used (4 ms vs 10-30 ms at 100k vectors).
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(threads)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (each must be present), float32 [len(ids), dim]; exact
        for a flat index, a reconstruction otherwise."""
        out = np.empty((len(ids), self.dim), np.float32)
        for row, i in enumerate(np.asarray(ids, dtype=np.int64).tolist()):
            out[row] = self.index.reconstruct(i)
        return out

    def vectors(self) -> np.ndarray:
        """Every stored vector in storage order (that of `ids()`), float32 [n, dim]."""
        return self.index.index.reconstruct_n(0, self.count)

    def pairs(self, threshold: float, batch: int = 4096) -> Iterator["Pairs"]:
        """Every stored pair (i < j by row) scoring >= threshold; see `range_pairs`."""
        return range_pairs(self.ids(), self.vectors(), threshold, batch)

    def save_to(self, f) -> None:
        """Write the index into `f`, a binary file open for writing (the caller owns where and
        how it lands: see `simsearch.store.write_atomic`)."""
        faiss.write_index(self.index, faiss.PyCallbackIOWriter(f.write))

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, factory: str = DEFAULT_FACTORY) -> "VectorIndex":
        """Read a vector file and check that it is what the manifest says: an id map over an
        index of `factory` on `dim`-dimensional vectors. A file that is anything else raises
        `IndexStoreError` (it is derived data: the caller rebuilds it from the catalog)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            raise IndexStoreError(f"{path}: cannot read the vector file ({e.strerror or e})") from e
        with open(fd, "rb") as f:
            import stat
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise IndexStoreError(f"{path}: not a regular file")
            try:
                index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
            except RuntimeError as e:
                # faiss's message names its C++ internals; the user needs only the verdict
                raise IndexStoreError(f"{path}: cannot read the vector file (truncated or "
                                      f"damaged)") from e
        if index.d == dim + 1:
            raise IndexStoreError(f"{path}: written by an older simsearch (score offsets in the "
                                  f"vectors); it is rebuilt from the catalog")
        if index.d != dim:
            raise IndexStoreError(f"{path}: vectors have {index.d} dimensions, expected {dim}")
        read = index  # owns the C++ object: kept alive beside its downcast view
        index = faiss.downcast_index(read)
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexStoreError(f"{path}: not a vector file simsearch wrote (no id map)")
        expected = type(faiss.downcast_index(
            faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)))
        inner = faiss.downcast_index(index.index)
        if not isinstance(inner, expected) or inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexStoreError(f"{path}: holds a {type(inner).__name__} index, the manifest "
                                  f"says {factory!r}")
        loaded = cls(dim, factory, index)
        loaded._owner = read
        return loaded


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


class SelfJoin:
    """The nearest neighbours of each of n vectors among the same vectors, ranked by
    `cos(a, b) - offset(b)` (for one query row a, the order of the adjusted score
    `cos(a, b) - o(a) - o(b)`; zeros give plain cosine), over one FAISS index: an inner product
    with one extra coordinate, -o(b) stored, 1 in the query. Exact (flat) up to `exact_limit`
    vectors; above, an inverted file with 8-bit scalar codes (a quarter of the vectors'
    memory) probed in `nprobe` lists. The scores it returns are the index's: exact from a flat
    index, estimates (within about `error`) from an inverted file, where a neighbour in a list
    not probed is missed. Callers re-score the candidates they keep exactly."""

    def __init__(self, vectors: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None,
                 exact_limit: int = JOIN_EXACT_LIMIT, nprobe: int = 12):
        """`rows`: the rows of `vectors` (and `offsets`) to join, numbered 0.. in that order
        (default all), read in chunks: the vectors are never copied whole."""
        self.vectors = vectors
        self.offsets = np.asarray(offsets, dtype=np.float32)
        self.rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, np.int64)
        n, d = len(self.rows), vectors.shape[1]
        # -o(b) in column d, then zeros to a multiple of 16: FAISS's SIMD scalar-quantizer
        # code runs on whole 8/16-lane blocks only (257 columns fall back to scalar code, ~20x
        # slower)
        dim = self.width = -(-(d + 1) // 16) * 16 - 1
        self.exact = n <= exact_limit
        if self.exact:
            self.index = faiss.IndexFlatIP(dim + 1)
            self.error = 1e-4  # float rounding of a BLAS dot product, with room to spare
        else:
            # the cost per query is nlist centroids + nprobe * n / nlist vectors: least when
            # nlist = sqrt(nprobe * n)
            nlist = max(1, int(np.sqrt(nprobe * n)))
            self.index = faiss.index_factory(dim + 1, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(n, size=min(n, 32 * nlist), replace=False))
            self.index.train(self._stored(sample))
            self.index.nprobe = min(nprobe, nlist)
            # 8-bit codes: at most 0.0072 off on 40,000 neighbour pairs of the real-like
            # vectors of benchmarks/dedupe.py (256 dims, 60k)
            self.error = 0.02
        for start in range(0, n, 65536):
            self.index.add(self._stored(np.arange(start, min(n, start + 65536))))

    def _stored(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.width + 1), np.float32)
        out[:, :self.vectors.shape[1]] = self.vectors[self.rows[rows]]
        out[:, self.vectors.shape[1]] = -self.offsets[self.rows[rows]]
        return out

    def _queries(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.width + 1), np.float32)
        out[:, :self.vectors.shape[1]] = self.vectors[self.rows[rows]]
        out[:, self.vectors.shape[1]] = 1.0
        return out

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def nearest(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the `k` nearest vectors to each of `rows` (itself included when
        found), best first; -1 where fewer were found."""
        return self.index.search(self._queries(rows), min(k, self.count))

    def within(self, rows: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (row, other row, score) with score >= radius for each of `rows`. An inverted
        file probes 8 times the lists here: a burst of thousands of near-identical vectors
        draws many centroids of its own when the file is trained, and one row's whole list
        of near duplicates spreads over all of them."""
        if not self.exact:
            params = faiss.SearchParametersIVF(nprobe=min(self.index.nlist, 8 * self.index.nprobe))
            lims, scores, found = self.index.range_search(self._queries(rows), float(radius),
                                                          params=params)
        else:
            lims, scores, found = self.index.range_search(self._queries(rows), float(radius))
        left = np.repeat(np.asarray(rows, np.int64), np.diff(lims).astype(np.int64))
        return left, found.astype(np.int64), scores
