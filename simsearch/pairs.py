"""Near-duplicate pairs among n images in memory linear in n, whatever the pair density.

A pair (a, b) is near when its adjusted score (`simsearch.scoring.adjust`: `cos(a, b) - o(a) -
o(b)` below the knee, the adjustment fading to nothing as cos -> 1; a raise never past
(1 + cos) / 2, so only cos 1 scores 1; the
offsets o are the stored ones, zeros for plain cosine: see `simsearch.scoring`) is at least
the threshold. A range search over every pair at the lowest raw cosine that can still reach
the threshold returns every pair above that radius, and on real pictures there are many (about
5e-4 of all pairs for the default model: 2.6e8 at a million images). Instead:

1. a k-nearest-neighbour self-join (`simsearch.vectors.SelfJoin`, in blocks of rows) proposes
   each row a's `k` nearest by `cos(a, b) - o(b)`, which orders them as the adjusted score
   does wherever no raise is capped, and is re-scored exactly in any case (an inner product
   with one more coordinate: a raw-cosine join would have to reach
   down to the loosest radius, threshold + 2 * min(o), and would fill k with pairs that the
   adjustment then drops); those that could reach the threshold are re-scored exactly from
   the vectors and kept when they pass;
2. a row is *complete* when its k-th neighbour cannot reach the threshold: every
   near pair of the row is then among its k. A row that is not (more than k near-duplicates: a
   burst of frames) is searched again with `grow` neighbours; a row still not complete is
   *dense*: it keeps the near pairs among its `grow` nearest, and its whole list is fetched
   (`NearPairs.fetch`, a range search for that one row) only when grouping needs it.

Every near pair with one end complete is found; so is every pair of a burst of up to `grow`
images. With the exact join (up to `exact_limit` rows) nothing else is lost. Above, the join
is `simsearch.vectors.ClusterJoin`: k-means lists, each compared with its `probe` nearest
lists by BLAS matrix products, scores exact, each row standing in its own list and in its
`spill` next nearest (a row near a border is then a candidate on both sides of it); rows
searched again with `grow`, and dense rows' whole lists, probe 8 times the lists (a burst
spreads over many lists of its own). A near pair is missed only when neither end's probed
lists hold the other (benchmarks/dedupe.py measures the pair recall). Memory: the vectors are read in place, never copied; at most n * k + (rows not
complete) * grow pairs are kept.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simsearch.budget import available_memory
from simsearch.errors import SimsearchError, TooManyPairsError
from simsearch.scoring import KNEE, adjust
from simsearch.vectors import JOIN_EXACT_LIMIT, ClusterJoin, SelfJoin

SCORE_TOLERANCE = 1e-6  # float32 rounding: a score this close below the threshold counts as at it
_NORM_CHUNK = 1 << 16  # rows whose norms are measured at a time

__all__ = ["JoinSettings", "NearPairs", "near_pairs", "exact_scores"]

Progress = Callable[[int, int], None]
_VERIFY_CHUNK = 16384  # pairs re-scored at a time


@dataclass(frozen=True)
class JoinSettings:
    k: int = 16             # neighbours per row in the first pass
    grow: int = 256         # neighbours for rows with more than k near-duplicates
    block: int = 4096       # query rows per search in the first pass
    exact_limit: int = JOIN_EXACT_LIMIT
    probe: int = 2          # above exact_limit: lists each list is compared with (ClusterJoin)
    spill: int = 1          # above exact_limit: next nearest lists each row also stands in
                            # (ClusterJoin): a candidate there for every list probing them
    list_size: int = 0      # above exact_limit: rows per k-means list; 0: sqrt(n / probe), at
                            # least 1024 (the cost of assigning rows to lists, n * n / list_size,
                            # balances that of the join, n * probe * list_size)
    max_pairs: int = 0      # near pairs the search may keep before it stops with an error;
                            # 0: what the memory free when it starts can group (PAIR_BYTES each)

    def __post_init__(self):
        if not (1 <= self.k <= self.grow and self.block >= 1 and self.exact_limit >= 0
                and self.probe >= 1 and self.spill >= 0 and self.list_size >= 0
                and self.max_pairs >= 0):
            raise SimsearchError(f"join settings out of range: {self} (need 1 <= k <= grow, "
                                 "block >= 1, probe >= 1, spill >= 0, list_size >= 0, "
                                 "max_pairs >= 0)")


# Peak bytes a kept pair costs from the search to the end of grouping (two int32 rows and a
# score, their joins, sorts and both-way copies): 1M real-like vectors under the default model
# kept 8.7M pairs at a peak of 1.54 GB, 0.51 GB of it the vectors (benchmarks/dedupe.py)
PAIR_BYTES = 128
MIN_PAIR_LIMIT = 1_000_000  # pairs always allowed: 128 MB, whatever the free memory says


@dataclass
class NearPairs:
    """Near pairs by row (left < right), adjusted scores, which rows are dense, and `fetch`:
    every near neighbour of one row, (rows, scores), by a range search."""

    left: np.ndarray
    right: np.ndarray
    scores: np.ndarray
    dense: np.ndarray
    fetch: Callable[[int], tuple[np.ndarray, np.ndarray]]


def exact_scores(vectors: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray,
                 rows: np.ndarray | None = None, knee: float = KNEE) -> np.ndarray:
    """Adjusted scores of the pairs (a[i], b[i]), symmetric and row by row, so that a pair
    scores the same whichever way round and whichever search proposed it. `rows`: a and b
    number these rows of `vectors` and `offsets`. float16 `vectors` are scored as the cosine
    of the stored rows (each divided by its norm)."""
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), _VERIFY_CHUNK):
        x, y = a[s:s + _VERIFY_CHUNK], b[s:s + _VERIFY_CHUNK]
        if rows is not None:
            x, y = rows[x], rows[y]
        dtype = np.promote_types(vectors.dtype, np.float32)
        u, v = vectors[x].astype(dtype, copy=False), vectors[y].astype(dtype, copy=False)
        raw = np.einsum("ij,ij->i", u, v).astype(np.float64)
        if vectors.dtype == np.float16:  # rounded rows: a row scores 1.0 against itself again
            raw /= np.sqrt(np.einsum("ij,ij->i", u, u).astype(np.float64)
                           * np.einsum("ij,ij->i", v, v))
        both = offsets[x].astype(np.float64) + offsets[y]
        out[s:s + _VERIFY_CHUNK] = adjust(raw, both, knee)
    return out


def near_pairs(vectors: np.ndarray, offsets: np.ndarray, threshold: float,
               settings: JoinSettings = JoinSettings(),
               progress: Progress | None = None, rows: np.ndarray | None = None,
               knee: float = KNEE) -> NearPairs:
    """The near pairs among the rows of unit `vectors` [N, d] with score `offsets` [N]; with
    `rows`, among those rows only (the pairs then number positions in `rows`), without a copy
    of the vectors."""
    offsets = np.asarray(offsets, dtype=np.float32)
    subset = np.arange(len(vectors)) if rows is None else np.asarray(rows, np.int64)
    n = len(subset)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return NearPairs(empty, empty, np.zeros(0, np.float32), np.zeros(n, bool),
                         lambda row: (empty, np.zeros(0, np.float32)))
    if n <= settings.exact_limit:
        join = SelfJoin(vectors, offsets, subset)
    else:
        size = settings.list_size or max(1024, int(np.sqrt(n / settings.probe)))
        join = ClusterJoin(vectors, offsets, subset, settings.probe, size, spill=settings.spill)
    # the join's score, cos(a, b) - o(b), that a partner of row a must reach to pass: with the
    # full adjustment threshold + o(a); a pair above the knee, where the adjustment fades
    # (simsearch.scoring.adjust), may pass from cos >= knee, so from knee - max(o) on
    tolerance = join.error + SCORE_TOLERANCE + _norm_error(vectors, subset)
    need = np.minimum(threshold + offsets[subset].astype(np.float64),
                      knee - float(offsets[subset].max())) - tolerance
    found_left, found_right, found_scores = [], [], []
    limit = settings.max_pairs or _pair_limit()
    kept, check_at = 0, limit  # pairs held (a pair found from both ends counts twice until
                               # the parts are compacted) and when to compact them next
    # rows as int32 below 2^31 of them: a pair costs 12 bytes kept, not 20, and the sorting
    # below and in grouping moves half the bytes (the pairs dominate dedupe's own memory)
    position = np.int32 if n < 2 ** 31 else np.int64
    total, done = n, 0

    def scan(rows: np.ndarray, k: int, wide: bool = False) -> np.ndarray:
        """Search `rows` for k neighbours, keep the near pairs; return the rows not complete."""
        nonlocal kept, check_at
        scores, others = join.nearest(rows, k + 1, need, wide=wide)
        ok = (others >= 0) & (others != rows[:, None]) & (scores >= need[rows, None])
        left, right = np.broadcast_to(rows[:, None], ok.shape)[ok], others[ok]
        exact = exact_scores(vectors, offsets, left, right, subset, knee)
        keep = exact >= threshold - SCORE_TOLERANCE
        found_left.append(np.minimum(left, right)[keep].astype(position))
        found_right.append(np.maximum(left, right)[keep].astype(position))
        found_scores.append(exact[keep])
        kept += len(found_scores[-1])
        if kept > check_at:  # each pair once, then count again
            kept = _compact(found_left, found_right, found_scores, n)
            check_at = max(limit, kept + limit // 8)
            if kept > limit:
                raise TooManyPairsError(
                    f"dedupe of {n:,} distinct images at threshold {threshold:.2f} has found "
                    f"more than {limit:,} near pairs, more than memory can group (about "
                    f"{PAIR_BYTES} bytes each; {available_memory() / 2**30:.1f} GiB free now); "
                    "raise the threshold (--threshold: each 0.01 keeps far fewer pairs), or "
                    "index the collection in parts (one --index per folder) and dedupe each")
        if join.count <= k + 1:
            return rows[:0]
        return rows[(others[:, -1] >= 0) & (scores[:, -1] >= need[rows])]

    saturated = []
    order = join.order  # rows in the order the join scans them best
    for start in range(0, n, settings.block):
        saturated.append(scan(order[start:start + settings.block], settings.k))
        done = min(n, start + settings.block)
        if progress:
            progress(done, total)
    saturated = np.concatenate(saturated)
    if not join.exact:
        saturated = saturated[np.argsort(join.list_of[saturated], kind="stable")]
    dense = np.zeros(n, bool)
    if len(saturated):
        total += len(saturated)
        step = max(1, settings.block * settings.k // settings.grow)
        for start in range(0, len(saturated), step):
            dense[scan(saturated[start:start + step], settings.grow, wide=True)] = True
            done += len(saturated[start:start + step])
            if progress:
                progress(done, total)
    left, right, scores = _each_once(found_left, found_right, found_scores, n)

    def fetch(row: int) -> tuple[np.ndarray, np.ndarray]:
        _, others, _ = join.within(np.array([row]), need[row])
        others = others[others != row]
        exact = exact_scores(vectors, offsets, np.full(len(others), row), others, subset, knee)
        keep = exact >= threshold - SCORE_TOLERANCE
        return others[keep], exact[keep]

    return NearPairs(left, right, scores, dense, fetch)


def _pair_limit() -> int:
    """Near pairs that 80% of the free memory can group, never under MIN_PAIR_LIMIT (a small
    collection is never refused); no limit where the free memory cannot be read."""
    free = available_memory()
    return max(MIN_PAIR_LIMIT, int(0.8 * free) // PAIR_BYTES) if free else np.iinfo(np.int64).max


def _each_once(left: list[np.ndarray], right: list[np.ndarray], scores: list[np.ndarray],
               n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts joined (the lists emptied), each pair once, ordered by (left, right)."""
    a, b, s = _joined_parts(left), _joined_parts(right), _joined_parts(scores)
    _, first = np.unique(a.astype(np.int64) * n + b, return_index=True)
    return a[first], b[first], s[first]


def _compact(left: list[np.ndarray], right: list[np.ndarray], scores: list[np.ndarray],
             n: int) -> int:
    """Replace the parts by one part holding each pair once; return how many pairs that is."""
    for parts, joined in zip((left, right, scores), _each_once(left, right, scores, n)):
        parts.append(joined)
    return len(left[0])


def _norm_error(vectors: np.ndarray, rows: np.ndarray) -> float:
    """How far below its exact score a pair's join score may sit: exact scores of float16 rows
    (what `simsearch dedupe` holds: half the memory) divide by the rows' norms, the join's do
    not, and a rounded unit row's norm is 1 to within about 1e-4 (at most 2**-11); so twice
    the largest deviation measured, with room. 0 for float32 rows (scored as they are)."""
    if vectors.dtype != np.float16:
        return 0.0
    worst = 0.0
    for start in range(0, len(rows), _NORM_CHUNK):
        chunk = vectors[rows[start:start + _NORM_CHUNK]].astype(np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        worst = max(worst, float(np.abs(norms - 1.0).max()))
    return 2.5 * worst + 1e-5


def _joined_parts(parts: list[np.ndarray]) -> np.ndarray:
    """One array from the parts, emptying the list as it goes (the parts are not held twice)."""
    out = np.concatenate(parts)
    parts.clear()
    return out
