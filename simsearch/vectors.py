"""FAISS: the only module that imports faiss. Inner product on unit vectors = cosine score.

`VectorIndex` is the one search interface the rest of simsearch sees: add, remove, k nearest,
save, load. It is built from a factory description (FAISS's `index_factory` language) and
search parameters that the manifest records, so an index folder says how its vectors are
searched. `choose` picks the description from the vector count and a memory budget: exact
`Flat` up to `FLAT_LIMIT` vectors, then IVF with flat, SQ8 or PQ codes as memory asks (HNSW
only when asked for). Approximate indexes return candidates: a lossy one (SQ, PQ)
has their scores recomputed exactly from stored vectors (`rescore_with`), so approximation can
cost recall, never a wrong score; `measure_recall` records what it costs.

The score column: every vector is stored with one more coordinate, -o(b), its score offset
(see `simsearch.scoring`), padded with zeros to a width FAISS scans quickly. A query with a 0
there ranks by cosine; with a 1 it ranks by cos(q, b) - o(b), the order of adjusted scores
below the taper's knee (where no raise is capped at (1 + cos) / 2; results are re-scored), so an adjusted top k comes out of one search instead of rounds of
ever more candidates (`search(..., offsets=...)`). `column` records what the offsets were
made for (the background's fingerprint, as the catalog's "scoring"); an index whose column
is stale is searched by cosine until the next commit rebuilds it. PQ codes take the column as
one more sub-quantiser of the same width (`IVF..,PQ128` on 256-d vectors is `PQ129` on 258).

Removal: Flat and IVF remove ids in place. An HNSW graph cannot drop a node, so a removed
id becomes a tombstone (its slot in the id map is set to -1, which search never returns and
the saved file keeps); `tombstones` counts them, and the index folder rebuilds the graph from
the catalog when they pass `TOMBSTONE_LIMIT` of the index (see `Index`).
"""
from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import faiss
import numpy as np

from simsearch.errors import IndexStoreError

__all__ = ["VectorIndex", "Choice", "choose", "parse_ann", "measure_recall", "Pairs", "SelfJoin",
           "ClusterJoin",
           "range_pairs", "EXACT_LIMIT", "FLAT_LIMIT", "JOIN_EXACT_LIMIT", "DEFAULT_FACTORY",
           "ANN_KINDS", "TOMBSTONE_LIMIT", "factory_problem"]

EXACT_LIMIT = 200_000
# A self-join scans n x n scores when exact: above this many vectors an inverted file is used.
JOIN_EXACT_LIMIT = 50_000
DEFAULT_FACTORY = "Flat"
# Exact search scans every vector: one query over 256-d float32 rows took 5 ms at 100k, 18 ms
# at 300k and 56 ms at 1M on this 2-core machine (one thread, machine shared). Flat stays the
# choice while a warm query is a few tens of ms.
FLAT_LIMIT = 500_000
HNSW_M = 32
TOMBSTONE_LIMIT = 0.1  # removed HNSW nodes, as a share of the graph, before it is rebuilt
ANN_KINDS = ("auto", "flat", "hnsw", "ivf", "ivfsq", "ivfpq")
# The vector index descriptions simsearch builds, and so accepts in a manifest or from --ann:
# exact, HNSW over float32, IVF over float32 / SQ8 / PQ codes, with bounded parameters (a
# manifest from someone else cannot make faiss build something huge or exotic).
_FACTORY = re.compile(r"Flat|HNSW(?P<m>\d{1,3}),Flat|IVF(?P<nlist>\d{1,6}),"
                      r"(?:Flat|SQ8|PQ(?P<pq>\d{1,4})(?:x4)?)")


def factory_problem(factory) -> str | None:
    """What is wrong with a vector index description from a manifest or `--ann`, or None."""
    match = _FACTORY.fullmatch(factory) if isinstance(factory, str) else None
    bounded = match is not None and (
        (match["m"] is None or 4 <= int(match["m"]) <= 128)
        and (match["nlist"] is None or 1 <= int(match["nlist"]) <= 262144)
        and (match["pq"] is None or 1 <= int(match["pq"]) <= 1024))
    if not bounded:
        return (f"vector index {str(factory)[:40]!r} is not one this simsearch builds (Flat, "
                f"HNSW<M>,Flat, IVF<lists>,Flat|SQ8|PQ<bytes>)")
    return None
_THREADED_QUERIES = 8  # from this many queries on, a search uses every core
_MIN_TRAIN = 1000  # fewer vectors than this are searched exactly whatever the kind asked
_RESCORE_FACTOR = 4  # a lossy index is asked for this many candidates per result


@dataclass(frozen=True)
class Choice:
    """A vector index description: FAISS factory string and search parameters."""

    factory: str
    params: dict = field(default_factory=dict)  # nprobe (IVF), efSearch / efConstruction (HNSW)

    def to_dict(self) -> dict:
        return {"factory": self.factory, "params": dict(self.params)}


def default_memory() -> int:
    """Bytes an index may hold in memory when nobody says: a quarter of physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):
        return 4 << 30


def _nlist(count: int) -> int:
    """IVF lists: a power of two near 2 sqrt(n), between 64 and 65536, and at most n / 39
    (k-means wants about 39 training vectors a list)."""
    target = max(64, 2 * math.sqrt(max(count, 1)))
    trainable = 2 ** int(math.log2(max(count // 39, 1)))
    return int(max(1, min(65536, 2 ** round(math.log2(target)), trainable)))


def _pq_m(dim: int, budget_per_vector: float) -> int:
    """PQ sub-quantisers (bytes per vector): the most that fit, dividing dim, at most dim / 2."""
    for m in (dim // 2, dim // 4, dim // 8, dim // 16):
        if m >= 1 and dim % m == 0 and m + 9 <= budget_per_vector:  # + the column's byte
            return m
    return max(1, dim // 16)


def choose(count: int, dim: int, memory: int | None = None, kind: str = "auto") -> Choice:
    """The vector index for `count` vectors of `dim` under `memory` bytes (default: a quarter
    of physical memory). `kind`: auto, or force flat / hnsw / ivf / ivfsq / ivfpq (the
    parameters still follow the count)."""
    memory = default_memory() if memory is None else int(memory)
    flat_bytes = count * (4 * (dim + 1) + 8)  # with the score column
    per_vector = memory / max(count, 1)
    if kind == "auto":
        # HNSW is not chosen automatically: at 1M real-like vectors (benchmarks/query.py) it
        # found 0.928 of the exact 10 nearest at efSearch 128, IVF-flat 1.000 at nprobe 64, and
        # its file is read whole by a cold query. It stays a kind to ask for (--ann hnsw).
        if count <= FLAT_LIMIT and flat_bytes <= memory:
            kind = "flat"
        elif flat_bytes <= memory:
            kind = "ivf"
        elif count * (physical("SQ8", dim)[1] + 8) <= memory:
            kind = "ivfsq"
        else:
            kind = "ivfpq"
    if kind.startswith("ivf") and count < _MIN_TRAIN:
        kind = "flat"  # too few vectors to train lists on: exact, until there are enough
    nlist = _nlist(count)
    # nprobe: a share of the lists large enough for recall@10 >= 0.95 on real-like vectors
    # (measured at build time and recorded: see measure_recall)
    nprobe = min(nlist, max(16, nlist // 32))
    if kind == "flat":
        return Choice("Flat")
    if kind == "hnsw":
        return Choice(f"HNSW{HNSW_M},Flat", {"efSearch": 128, "efConstruction": 80})
    if kind == "ivf":
        return Choice(f"IVF{nlist},Flat", {"nprobe": nprobe})
    if kind == "ivfsq":
        return Choice(f"IVF{nlist},SQ8", {"nprobe": nprobe})
    if kind == "ivfpq":
        bits = "" if count >= 100 * 256 else "x4"  # 256 centroids a sub-quantiser want data
        return Choice(f"IVF{nlist},PQ{_pq_m(dim, per_vector)}{bits}", {"nprobe": nprobe})
    raise ValueError(f"unknown index kind {kind!r}; one of {', '.join(ANN_KINDS)}")


def parse_ann(text: str) -> str:
    """`--ann`: a kind (auto, flat, hnsw, ivf, ivfsq, ivfpq) or a FAISS factory string of a
    family simsearch builds (see `factory_problem`); checked here so that a typo is refused
    before any work."""
    if text.lower() in ANN_KINDS:
        return text.lower()
    problem = factory_problem(text)
    if problem:
        raise IndexStoreError(f"--ann {text!r}: neither one of {', '.join(ANN_KINDS)} nor a "
                              f"FAISS index description simsearch builds: {problem}")
    return text


def physical(factory: str, dim: int) -> tuple[str, int]:
    """The FAISS description and width that hold `dim`-d vectors described by `factory` plus
    the score column: PQ gets one more sub-quantiser of the same width (the column and zeros),
    SQ8 a width rounded up to 16 (FAISS's SIMD scalar-quantiser code wants it), the rest one
    more coordinate."""
    pq = re.search(r"PQ(\d+)", factory)
    if pq:
        m = int(pq[1])
        if m < 1 or dim % m:
            raise IndexStoreError(f"vector index {factory!r}: {m} PQ sub-quantisers do not divide "
                                  f"{dim} dimensions")
        return factory[:pq.start(1)] + str(m + 1) + factory[pq.end(1):], dim + dim // m
    if "SQ" in factory:
        return factory, dim + 16 - dim % 16
    return factory, dim + 1


def _is_ivf(index) -> bool:
    return isinstance(index, faiss.IndexIVF)


def _is_hnsw(index) -> bool:
    return isinstance(index, faiss.IndexHNSW)


class VectorIndex:
    """Unit vectors with stable int64 ids, searched by inner product (= cosine).

    Flat and HNSW live inside an id map; IVF keeps the ids itself in its lists (removal scans
    them; its vectors are not looked up by id: `get` is for Flat and HNSW)."""

    def __init__(self, dim: int, factory: str = DEFAULT_FACTORY, index: faiss.Index | None = None,
                 params: dict | None = None, column: str | None = None):
        self.dim = dim
        self.factory = factory
        self.params = dict(params or {})
        self.recall: float | None = None  # recall@10 against exact search, measured at build
        # what the score column's offsets were made for (None: no column, or not usable)
        self.column = column
        self._rescore: Callable[[np.ndarray], np.ndarray] | None = None
        if index is None:
            described, width = physical(factory, dim)
            try:
                made = faiss.index_factory(width, described, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as e:
                raise IndexStoreError(f"unknown vector index description {factory!r}") from e
            inner = faiss.downcast_index(made)
            self._owner = made
            if _is_ivf(inner):
                index = inner
            else:
                index = faiss.IndexIDMap2(made)
                made.this.disown()  # the id map owns it now
                index.own_fields = True
        self.index = index
        self.width = int(index.d)  # dim, or dim plus the score column and its padding
        self._apply(self.params)
        self.tombstones = self._count_tombstones()

    @property
    def has_column(self) -> bool:
        return self.width > self.dim

    def _widen(self, vectors: np.ndarray, column: np.ndarray | float) -> np.ndarray:
        """`vectors` [n, dim] as stored or searched: with the column (and zero padding)."""
        if not self.has_column:
            return np.ascontiguousarray(vectors, dtype=np.float32)
        out = np.zeros((len(vectors), self.width), np.float32)
        out[:, :self.dim] = vectors
        out[:, self.dim] = column
        return out

    # -- what kind ------------------------------------------------------------------------------
    @property
    def _inner(self):
        if isinstance(self.index, faiss.IndexIDMap2):
            return faiss.downcast_index(self.index.index)
        return self.index

    @property
    def exact(self) -> bool:
        """Whether search is exhaustive with exact cosines (a flat index)."""
        return isinstance(self._inner, faiss.IndexFlat)

    @property
    def lossy(self) -> bool:
        """Whether the index keeps compressed codes (SQ, PQ): its scores are approximations,
        recomputed from stored vectors before anyone sees them."""
        inner = self._inner
        if _is_hnsw(inner):
            return not isinstance(faiss.downcast_index(inner.storage), faiss.IndexFlat)
        return not isinstance(inner, (faiss.IndexFlat, faiss.IndexIVFFlat))

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    @property
    def training_size(self) -> int:
        """How many vectors to train on: about 40 for each IVF list, at least 100k."""
        inner = self._inner
        return max(100_000, 40 * int(inner.nlist)) if _is_ivf(inner) else 100_000

    def _apply(self, params: dict) -> None:
        inner = self._inner
        if _is_ivf(inner) and "nprobe" in params:
            inner.nprobe = int(params["nprobe"])
        if _is_hnsw(inner):
            if "efSearch" in params:
                inner.hnsw.efSearch = int(params["efSearch"])
            if "efConstruction" in params:
                inner.hnsw.efConstruction = int(params["efConstruction"])

    def describe(self) -> dict:
        """What the manifest records: factory, parameters, measured recall."""
        out = {"factory": self.factory, "params": dict(self.params)}
        if self.has_column:
            out["column"] = self.column
        if self.recall is not None:
            out["recall_at_10"] = round(float(self.recall), 4)
        return out

    @property
    def count(self) -> int:
        return int(self.index.ntotal) - self.tombstones

    def _count_tombstones(self) -> int:
        if isinstance(self.index, faiss.IndexIDMap2) and _is_hnsw(self._inner):
            return int((faiss.vector_to_array(self.index.id_map) == -1).sum())
        return 0

    # -- changing -------------------------------------------------------------------------------
    def train(self, sample: np.ndarray, offsets: np.ndarray | None = None) -> None:
        """Train an IVF / PQ / SQ index on a sample of the vectors it will hold, with their
        score offsets (quantisers trained on a column of zeros would code every offset as 0)."""
        sample = np.asarray(sample, dtype=np.float32).reshape(-1, self.dim)
        column = 0.0 if offsets is None else -np.asarray(offsets, np.float32).reshape(len(sample))
        inner = self._inner
        if isinstance(inner, faiss.IndexIVFPQ):
            # FAISS's default also anneals the codes for polysemous Hamming filtering, which
            # simsearch never uses: it took 27 of the 27.5 s of training IVF64,PQ16 on 10k vectors
            inner.do_polysemous_training = False
        self.index.train(self._widen(sample, column))

    def add(self, ids: np.ndarray, vectors: np.ndarray, offsets: np.ndarray | None = None) -> None:
        """Store `vectors` under `ids`, with their score `offsets` in the column (zeros when
        not given: then the column is for cosine only, and whoever adds records so)."""
        if len(ids) == 0:
            return
        if self.needs_training:
            raise IndexStoreError(f"the {self.factory} index must be trained before vectors "
                                  f"are added")
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        column = 0.0 if offsets is None else -np.asarray(offsets, np.float32).reshape(len(ids))
        try:
            self.index.add_with_ids(self._widen(vectors, column),
                                    np.ascontiguousarray(ids, dtype=np.int64))
        except RuntimeError as e:
            raise IndexStoreError(f"cannot add to the {self.factory} vector index "
                                  f"({str(e).strip().splitlines()[-1][:120]})") from e

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.tombstones or (isinstance(self.index, faiss.IndexIDMap2) and _is_hnsw(self._inner)):
            return self._bury(ids)
        try:
            return int(self.index.remove_ids(ids))
        except RuntimeError as e:
            raise IndexStoreError(f"cannot remove from the {self.factory} vector index "
                                  f"({str(e).strip().splitlines()[-1][:120]})") from e

    def _bury(self, ids: np.ndarray) -> int:
        """HNSW: mark the nodes of `ids` dead (-1 in the id map); search skips them."""
        id_map = faiss.vector_to_array(self.index.id_map)
        dead = np.isin(id_map, ids) & (id_map >= 0)
        n = int(dead.sum())
        if n:
            id_map[dead] = -1
            faiss.copy_array_to_vector(id_map, self.index.id_map)
            self.index.construct_rev_map()
            self.tombstones += n
        return n

    # -- searching ------------------------------------------------------------------------------
    def rescore_with(self, vectors_of: Callable[[np.ndarray], np.ndarray] | None) -> None:
        """Where a lossy index gets the stored vectors of candidate ids (float32 [n, dim]) to
        compute their exact scores."""
        self._rescore = vectors_of

    def search(self, queries: np.ndarray, k: int,
               offsets: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each [n, k'] with k' = min(k, count), best first: cosine scores, or
        with `offsets` (the stored o(b) of ids, as in the column) cos(q, b) - o(b), ranked in
        the index through the score column (which must hold those offsets: see `column`)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        k = min(k, self.count)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be [n, {self.dim}], not {list(queries.shape)}")
        if offsets is not None and not self.has_column:
            raise ValueError("this vector index has no score column")
        if k == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        fetch = k
        if self.lossy and self._rescore is not None:
            fetch = min(self.count, max(_RESCORE_FACTOR * k, k + 32))
        fetch = min(int(self.index.ntotal), fetch + self.tombstones)
        scores, ids = self._search(self._widen(queries, 0.0 if offsets is None else 1.0), fetch)
        if self.lossy and self._rescore is not None:
            scores = self._exact_scores(queries, ids)
            if offsets is not None:
                found = ids >= 0
                scores[found] -= offsets(ids[found])
        if fetch == k and not self.tombstones:
            return scores, ids
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def _exact_scores(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        flat = ids.ravel()
        found = flat >= 0
        stored = np.zeros((len(flat), self.dim), np.float32)
        if found.any():
            stored[found] = self._rescore(flat[found])
        scores = np.einsum("qkd,qd->qk", stored.reshape(*ids.shape, self.dim), queries)
        return np.where(ids >= 0, scores, -np.inf).astype(np.float32)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
        if isinstance(self.index, faiss.IndexIDMap2):
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            return ids[ids >= 0] if self.tombstones else ids
        lists = self.index.invlists
        out = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
               for i in range(lists.nlist) if lists.list_size(i)]
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (each must be present), float32 [len(ids), dim]; exact
        for a flat index, a reconstruction otherwise."""
        if not isinstance(self.index, faiss.IndexIDMap2):
            raise IndexStoreError(f"a {self.factory} index does not look vectors up by id")
        out = np.empty((len(ids), self.dim), np.float32)
        for row, i in enumerate(np.asarray(ids, dtype=np.int64).tolist()):
            out[row] = self.index.reconstruct(i)[:self.dim]
        return out

    def vectors(self) -> np.ndarray:
        """Every stored vector in the order of `ids()`, float32 [n, dim]."""
        if self.exact:
            stored = self._inner.reconstruct_n(0, int(self.index.ntotal))
            return np.ascontiguousarray(stored[:, :self.dim]) if self.has_column else stored
        return self.get(self.ids())

    def pairs(self, threshold: float, batch: int = 4096) -> Iterator["Pairs"]:
        """Every stored pair (i < j by row) scoring >= threshold; see `range_pairs`."""
        return range_pairs(self.ids(), self.vectors(), threshold, batch)

    # -- files ----------------------------------------------------------------------------------
    def save_to(self, f) -> None:
        """Write the index into `f`, a binary file open for writing (the caller owns where and
        how it lands: see `simsearch.store.write_atomic`)."""
        faiss.write_index(self.index, faiss.PyCallbackIOWriter(f.write))

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, factory: str = DEFAULT_FACTORY,
             params: dict | None = None, mapped: bool = False,
             column: str | None = None) -> "VectorIndex":
        """Read a vector file and check that it is what the manifest says: an index of
        `factory` on `dim`-dimensional vectors with ids. A file that is anything else raises
        `IndexStoreError` (it is derived data: the caller rebuilds it from the catalog).
        `mapped`: an IVF index's lists are memory-mapped, not read (for searching only: a
        query touches the lists it probes). `column`: what the manifest says the score column
        was made for (a file without a column, from before it, is read as one by cosine)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            raise IndexStoreError(f"{path}: cannot read the vector file ({e.strerror or e})") from e
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise IndexStoreError(f"{path}: not a regular file")
            try:
                if mapped and factory.startswith("IVF") and os.path.isdir("/proc/self/fd"):
                    # the file opened without following links, read by faiss through its fd
                    index = faiss.read_index(f"/proc/self/fd/{f.fileno()}",
                                             faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
                else:
                    index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
            except RuntimeError as e:
                # faiss's message names its C++ internals; the user needs only the verdict
                raise IndexStoreError(f"{path}: cannot read the vector file (truncated or "
                                      f"damaged)") from e
        described, width = physical(factory, dim)
        if index.d == dim:  # written before the score column
            described, width, column = factory, dim, None
        if index.d != width:
            raise IndexStoreError(f"{path}: vectors have {index.d} dimensions, expected {dim} "
                                  f"(or {width} with the score column)")
        read = index  # owns the C++ object: kept alive beside its downcast view
        index = faiss.downcast_index(read)
        try:
            made = faiss.index_factory(width, described, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise IndexStoreError(f"unknown vector index description {factory!r}") from e
        expected = type(faiss.downcast_index(made))
        if issubclass(expected, faiss.IndexIVF):
            inner = index
        elif isinstance(index, faiss.IndexIDMap2):
            inner = faiss.downcast_index(index.index)
        else:
            raise IndexStoreError(f"{path}: not a vector file simsearch wrote (no id map)")
        if not isinstance(inner, expected) or inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexStoreError(f"{path}: holds a {type(inner).__name__} index, the manifest "
                                  f"says {factory!r}")
        if not inner.is_trained:
            raise IndexStoreError(f"{path}: holds an untrained {factory} index")
        loaded = cls(dim, factory, index, params, column)
        loaded._owner = read
        return loaded


def measure_recall(index: VectorIndex, queries: np.ndarray,
                   batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
                   k: int = 10, offsets: Callable[[np.ndarray], np.ndarray] | None = None
                   ) -> float:
    """Recall@k of `index` against exact search: the share of each query's true `k` nearest
    stored vectors (by brute force over `batches()`, the stored (ids, vectors)) that the index
    returns in its top `k`, averaged over `queries`. `offsets`: rank by cos(q, b) - o(b) through
    the score column, as queries do (else by cosine)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.full((len(queries), k), -1, np.int64)
    for ids, vectors in batches():
        sims = queries @ np.ascontiguousarray(vectors, dtype=np.float32).T
        if offsets is not None:
            sims -= offsets(ids)[None, :]
        scores = np.concatenate([best_scores, sims], axis=1)
        every = np.concatenate([best_ids, np.broadcast_to(ids, sims.shape)], axis=1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else \
            np.argsort(-scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, top, 1)
        best_ids = np.take_along_axis(every, top, 1)
    _, found = index.search(queries, k, offsets=offsets)
    hits = [len(set(f.tolist()) & set(b[b >= 0].tolist())) / max(1, int((b >= 0).sum()))
            for f, b in zip(found, best_ids)]
    return float(np.mean(hits)) if hits else 1.0


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


def _joined(vectors: np.ndarray, offsets: np.ndarray, rows: np.ndarray, query: bool) -> np.ndarray:
    """float32 `vectors[rows]` with one more coordinate, 1 for a query and -offset for a
    candidate, so that their inner product is cos(a, b) - o(b)."""
    out = np.empty((len(rows), vectors.shape[1] + 1), np.float32)
    out[:, :-1] = vectors[rows]
    out[:, -1] = 1.0 if query else -offsets[rows]
    return out


class SelfJoin:
    """The exact self-join (up to `JOIN_EXACT_LIMIT` vectors; `ClusterJoin` above): the
    nearest neighbours of each of n vectors among the same vectors, ranked by
    `cos(a, b) - offset(b)` (for one query row a, the order of the adjusted score
    `cos(a, b) - o(a) - o(b)` below the knee and the raise cap; zeros give plain cosine), over a flat FAISS index: an inner
    product with one extra coordinate, -o(b) stored, 1 in the query."""

    exact = True
    error = 1e-4  # float rounding of a BLAS dot product, with room to spare

    def __init__(self, vectors: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None):
        """`rows`: the rows of `vectors` (and `offsets`) to join, numbered 0.. in that order
        (default all), read in chunks: the vectors are never copied whole."""
        self.vectors = vectors
        self.offsets = np.asarray(offsets, dtype=np.float32)
        self.rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, np.int64)
        n, d = len(self.rows), vectors.shape[1]
        self.order = np.arange(n)
        self.index = faiss.IndexFlatIP(d + 1)
        for start in range(0, n, 65536):
            self.index.add(self._stored(np.arange(start, min(n, start + 65536))))

    def _stored(self, rows: np.ndarray) -> np.ndarray:
        return _joined(self.vectors, self.offsets, self.rows[rows], query=False)

    def _queries(self, rows: np.ndarray) -> np.ndarray:
        return _joined(self.vectors, self.offsets, self.rows[rows], query=True)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def nearest(self, rows: np.ndarray, k: int, floor: np.ndarray | None = None,
                wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the `k` nearest vectors to each of `rows` (itself included when
        found), best first; -1 where fewer were found. `floor` and `wide` are the interface
        of `ClusterJoin`; an exact search needs neither."""
        return self.index.search(self._queries(rows), min(k, self.count))

    def within(self, rows: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (row, other row, score) with score >= radius for each of `rows`."""
        lims, scores, found = self.index.range_search(self._queries(rows), float(radius))
        left = np.repeat(np.asarray(rows, np.int64), np.diff(lims).astype(np.int64))
        return left, found.astype(np.int64), scores


class ClusterJoin:
    """The self-join for many vectors: k-means lists, then every list against its nearest
    lists by matrix products (BLAS), scored exactly.

    The n rows are split into about n / `list_size` lists by spherical k-means (trained on a
    sample). Rows of list l are compared with every row of the `probe` lists whose centroids
    are nearest to l's (l included): one dense product per block of rows, so the cost is
    n * probe * list_size * d multiply-adds at BLAS speed, with exact float32 scores
    (`cos(a, b) - o(b)`, as `SelfJoin`). With `spill`, each row also stands in the `spill`
    lists next nearest to it (the lists of rows near a border overlap, as in an IVF index
    with spilling), so the candidates of a list are its probed lists' members and spilled rows,
    each once: about (1 + spill) times the candidates. A near pair is missed only when
    neither end's probed lists hold the other, as a member or spilled; benchmarks/dedupe.py
    measures the pair recall. Nothing is copied: the rows are gathered from `vectors` (any
    array, a memory map included) list by list.
    """

    def __init__(self, vectors: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None,
                 probe: int = 8, list_size: int = 1024, seed: int = 0, spill: int = 0):
        self.vectors = vectors
        self.offsets = np.asarray(offsets, dtype=np.float32)
        self.rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, np.int64)
        n, d = len(self.rows), vectors.shape[1]
        self.exact, self.error = False, 1e-4
        nlist = max(1, n // max(1, list_size))
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, 48 * nlist), replace=False))
        kmeans = faiss.Kmeans(d, nlist, niter=12, spherical=True, seed=seed,
                              max_points_per_centroid=48)
        kmeans.train(self.gather(sample, plain=True))
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(kmeans.centroids)
        assign = np.empty(n, np.int64)
        self.spill = min(max(0, int(spill)), nlist - 1)
        following = np.empty((n, self.spill), np.int32)  # each row's next nearest lists
        for start in range(0, n, 65536):
            chunk = np.arange(start, min(n, start + 65536))
            nearest_lists = quantizer.search(self.gather(chunk, plain=True), 1 + self.spill)[1]
            assign[chunk] = nearest_lists[:, 0]
            following[chunk] = nearest_lists[:, 1:]
        self.list_of = assign
        self.centroids = kmeans.centroids
        # the rows spilled into each list, list by list (a row under each of its next lists)
        spill_lists = following.reshape(-1)
        by_spill = np.argsort(spill_lists, kind="stable")
        self.spill_rows = (by_spill // max(1, self.spill)).astype(np.int32 if n < 2**31 else np.int64)
        self.spill_starts = np.searchsorted(spill_lists[by_spill], np.arange(nlist + 1))
        del following, spill_lists, by_spill
        self.order = np.argsort(assign, kind="stable")   # rows list by list, ascending within
        self.starts = np.searchsorted(assign[self.order], np.arange(nlist + 1))
        # a list always probes itself, first; `wide`: 8 times the lists, for the rows with
        # more near neighbours than k (a burst of thousands of near-identical pictures draws
        # many centroids of its own, and one row's near duplicates spread over all of them)
        nearest = quantizer.search(kmeans.centroids, min(8 * probe, nlist))[1]
        self.wide = [np.array([l] + [int(p) for p in nearest[l] if p not in (l, -1)], np.int64)
                     for l in range(nlist)]  # int64 even for one list (no other to probe)
        self.probes = [lists[:probe] for lists in self.wide]

    @property
    def count(self) -> int:
        return len(self.rows)

    def members(self, lst: int) -> np.ndarray:
        return self.order[self.starts[lst]:self.starts[lst + 1]]

    def gather(self, rows: np.ndarray, plain: bool = False, query: bool = False) -> np.ndarray:
        """float32 rows: the vectors (`plain`), or as `_joined` gives them."""
        if plain:
            return np.ascontiguousarray(self.vectors[self.rows[rows]], dtype=np.float32)
        return _joined(self.vectors, self.offsets, self.rows[rows], query)

    def spilled(self, lst: int) -> np.ndarray:
        """Rows of other lists that have `lst` among their `spill` next nearest."""
        return self.spill_rows[self.spill_starts[lst]:self.spill_starts[lst + 1]]

    def _candidates(self, lst: int, wide: bool) -> np.ndarray:
        """The probed lists' members and spilled rows, each once, the list's own members
        first (in row order)."""
        probed = (self.wide if wide else self.probes)[lst]
        own = self.members(lst)
        if not self.spill:
            return np.concatenate([own, *(self.members(p) for p in probed[1:])])
        others = np.unique(np.concatenate([self.spilled(lst), *(
            part for p in probed[1:] for part in (self.members(p), self.spilled(p)))]))
        return np.concatenate([own, others[self.list_of[others] != lst]])

    def _blocks(self, rows: np.ndarray, wide: bool, chunk: int = 512):
        """(positions in `rows`, candidate rows, scores [len, candidates], each row's own
        column) block by block. A list probes itself first, so its members lead the
        candidates, in row order."""
        lists = self.list_of[rows]
        by_list = np.argsort(lists, kind="stable")
        bounds = np.flatnonzero(np.diff(lists[by_list])) + 1
        for positions in np.split(by_list, bounds):
            if not len(positions):
                continue
            lst = int(lists[positions[0]])
            candidates = self._candidates(lst, wide)
            stored = self.gather(candidates)
            own = self.members(lst)
            for s in range(0, len(positions), chunk):
                part = positions[s:s + chunk]
                yield (part, candidates, self.gather(rows[part], query=True) @ stored.T,
                       np.searchsorted(own, rows[part]))

    def nearest(self, rows: np.ndarray, k: int, floor: np.ndarray | None = None,
                wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the `k` best candidates of each of `rows` (itself left out),
        best first, -1 / -inf where fewer; with `floor` (one value per row of the join),
        candidates below their row's floor are left out too. `wide`: probe 8 times the lists."""
        rows = np.asarray(rows, np.int64)
        k = max(1, min(k, self.count - 1))
        best = np.full((len(rows), k), -np.inf, np.float32)
        found = np.full((len(rows), k), -1, np.int64)
        floor = None if floor is None else np.asarray(floor)
        for part, candidates, scores, own in self._blocks(rows, wide):
            scores[np.arange(len(part)), own] = -np.inf
            low = (np.full(len(part), -np.inf, np.float32) if floor is None
                   else floor[rows[part]].astype(np.float32))  # this block's rows only
            passing = scores >= low[:, None]
            passing[np.arange(len(part)), own] = False  # itself, even without a floor
            counts = np.count_nonzero(passing, axis=1)
            many = np.flatnonzero(counts > k)
            if len(many):  # the k best of a row with more than k
                top = np.argpartition(-scores[many], k - 1, axis=1)[:, :k]
                best[part[many]] = np.take_along_axis(scores[many], top, 1)
                found[part[many]] = candidates[top]
            few = np.flatnonzero((counts > 0) & (counts <= k))
            if len(few):
                r, c = np.nonzero(passing[few])
                rank = np.arange(len(r)) - np.repeat(np.cumsum(counts[few]) - counts[few], counts[few])
                best[part[few][r], rank] = scores[few[r], c]
                found[part[few][r], rank] = candidates[c]
        order = np.argsort(-best, axis=1, kind="stable")
        return np.take_along_axis(best, order, 1), np.take_along_axis(found, order, 1)

    def within(self, rows: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (row, candidate, score) with score >= radius for each of `rows` (itself
        left out), from 8 times the lists `nearest` probes (see `wide`), members and spilled
        rows."""
        rows = np.asarray(rows, np.int64)
        left, right, values = [], [], []
        for part, candidates, scores, own in self._blocks(rows, wide=True):
            scores[np.arange(len(part)), own] = -np.inf
            r, c = np.nonzero(scores >= radius)
            left.append(rows[part][r])
            right.append(candidates[c])
            values.append(scores[r, c])
        if not left:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(left), np.concatenate(right), np.concatenate(values)
