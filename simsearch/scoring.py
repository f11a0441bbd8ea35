"""Scores between images: cosine similarity, adjusted against a background set of pictures.

Some pictures look a little like everything: plain skies, clip art on white, pages of text.
Their cosine scores against unrelated images run high, so one fixed threshold (and one ranking
across many queries) treats them unfairly. Copy-detection work corrects this by comparing each
vector with a background set of ordinary pictures (the "score normalisation" of the DISC 2021
winners and SSCD). simsearch does it symmetrically, so that a pair's score does not depend on
which image is the query:

    score(a, b) = min(cos(a, b) - (o(a) + o(b)) * w(cos(a, b)), (1 + cos(a, b)) / 2, 1)
    o(x) = beta / 2 * clip(h(x) - centre, -delta, delta)
    w(c) = clip((1 - c) / (1 - KNEE), 0, 1)

where h(x) is the cosine of x to its nearest background vector and `centre` the median of h over
the background itself. The taper w is 1 up to the knee and falls linearly to 0 at cosine 1, so
the adjustment moves a pair less the closer it is to identical: an image scores 1.0 against
itself and a light re-save stays near its cosine, while pairs below the knee (everything that a
dedupe threshold decides) are adjusted in full. A pair is never raised by more than half its
distance to 1, (1 + cos) / 2: so only identical content scores 1.0 (two near-identical but
different pictures in a sparse corner, such as two clip-art shirts at cosine 0.985, scored 1.0
without it) and the score rises with the cosine everywhere (without it a large raise, tapered,
would fall as the cosine rises towards 1). That bound only binds above cosine 1 - 2 * max_shift
(0.8 for the default model), where every score is above 0.9 either way. A pair's score moves by
at most `beta * delta` (the `max_shift`), never above 1, and the same both ways round. The background set belongs to a
model (vectors of a seeded sample of its training images, chosen and tuned on validation
images by the model's recipe) and lives beside it as `NAME.background.npz`. A model without
one scores plain cosine.
"""
from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from simsearch.errors import ModelError
from simsearch.models import background_path  # a model's files are named in simsearch.models

__all__ = ["Background", "Offsets", "build_background", "background_path", "load_background",
           "adjusted_search", "adjust", "lowest_cosine", "KNEE"]

_CHUNK = 4096
# Where the taper starts, set on the default model's validation images (never the evaluation
# set) by recipes/default_model/calibrate.py's grid; the model card has it. 0.96 since stage 7,
# set by hand: the grid puts 0.98 ahead by 0.0004 uAP (0.9717 against 0.9713), within noise, and
# 0.96 keeps more half-size re-saves at >= 0.95 (0.926 against 0.899). 0.97 for stages 3-6.
KNEE = 0.96


def adjust(cosines: np.ndarray, offset_sums: np.ndarray, knee: float = KNEE) -> np.ndarray:
    """Adjusted scores from raw cosines and the pairs' summed offsets o(a) + o(b) (broadcast):
    min(cos - sum * w(cos), (1 + cos) / 2, 1), with the taper w of the module docstring (knee >= 1:
    no taper)."""
    cosines = np.asarray(cosines, np.float32)
    weight = _taper(cosines, knee)
    moved = cosines - np.asarray(offset_sums, np.float32) * weight
    return np.minimum(np.minimum(moved, (1.0 + cosines) / 2), 1.0).astype(np.float32)


def _taper(cosines: np.ndarray, knee: float):
    """w(c): 1 up to the knee, falling linearly to 0 at cosine 1 (knee >= 1: always 1)."""
    if knee >= 1.0:
        return np.float32(1.0)
    return np.clip((1.0 - cosines) / np.float32(1.0 - knee), 0.0, 1.0)


def lowest_cosine(threshold: float, min_offset: float, knee: float = KNEE) -> float:
    """The lowest raw cosine at which a pair of vectors whose offsets are all >= `min_offset`
    can still score >= `threshold`. Below the knee a pair moves by its full offset sum (>= 2 *
    min_offset); above it, a pair lowered by its offsets (min_offset > 0) scores at most its
    cosine, so the search must reach the threshold itself there."""
    if min_offset <= 0:
        return threshold + 2 * min_offset
    return min(threshold + 2 * min_offset, max(threshold, knee))


@dataclass(frozen=True)
class Background:
    vectors: np.ndarray  # float32 [m, dim], unit rows
    centre: float
    beta: float
    delta: float
    model_id: str
    stored: np.ndarray | None = field(default=None, repr=False, compare=False)  # float16, as read

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies model, parameters and vectors: offsets stored with one are valid for it.
        Hashes the vectors as stored (float16), so every machine computes the same value."""
        import hashlib

        h = hashlib.sha256(self.model_id.encode())
        h.update(np.array([self.centre, self.beta, self.delta], np.float64).tobytes())
        half = self.stored if self.stored is not None else self.vectors.astype(np.float16)
        h.update(np.ascontiguousarray(half).tobytes())
        return h.hexdigest()[:16]

    @property
    def max_shift(self) -> float:
        """The most that adjustment can raise (or lower) one pair's score."""
        return self.beta * self.delta

    def nearest(self, vectors: np.ndarray) -> np.ndarray:
        """h(x): cosine of each vector to its nearest background vector."""
        vectors = np.asarray(vectors).reshape(-1, self.dim)  # float32 chunk by chunk: no copy
        out = np.empty(len(vectors), np.float32)
        for start in range(0, len(vectors), _CHUNK):
            chunk = np.asarray(vectors[start:start + _CHUNK], dtype=np.float32)
            out[start:start + _CHUNK] = (chunk @ self.vectors.T).max(axis=1)
        return out

    def offsets(self, vectors: np.ndarray) -> np.ndarray:
        """o(x) for each vector: subtract o(a) + o(b) from cos(a, b)."""
        h = self.nearest(vectors)
        return (self.beta / 2 * np.clip(h - self.centre, -self.delta, self.delta)).astype(np.float32)

    def with_params(self, beta: float, delta: float) -> "Background":
        return Background(self.vectors, self.centre, beta, delta, self.model_id, self.stored)

    def save(self, path: str | os.PathLike) -> None:
        from simsearch.store import write_atomic

        write_atomic(path, lambda f: np.savez(
            f, vectors=self.vectors.astype(np.float16),
            params=np.array([self.centre, self.beta, self.delta], np.float64),
            model_id=np.array(self.model_id)), own_folder=False)


def build_background(vectors: np.ndarray, model_id: str, beta: float = 1.0,
                     delta: float = 0.1) -> Background:
    """A background from the vectors of ordinary pictures (not the ones to be searched).
    `centre` is the median over the background of each vector's nearest other member."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError("a background needs at least two vectors")
    nearest = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), _CHUNK):
        sims = vectors[start:start + _CHUNK] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = -np.inf
        nearest[start:start + _CHUNK] = sims.max(axis=1)
    return Background(vectors, float(np.median(nearest)), beta, delta, model_id)


def load_background(path: str | os.PathLike, model_id: str, dim: int) -> Background:
    """Read and check a background file (no pickles are ever loaded)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = np.ascontiguousarray(data["vectors"])
            vectors = np.asarray(stored, dtype=np.float32)
            centre, beta, delta = (float(x) for x in data["params"])
            owner = str(data["model_id"])
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise ModelError(f"{path}: not a readable background file ({e})") from None
    if owner != model_id:
        raise ModelError(f"{path}: background belongs to model {owner[:12]}, not {model_id[:12]}")
    if vectors.ndim != 2 or vectors.shape[1] != dim or len(vectors) == 0:
        raise ModelError(f"{path}: background vectors have shape {vectors.shape}, expected [m, {dim}]")
    if not all(np.isfinite([centre, beta, delta])) or beta < 0 or delta < 0:
        raise ModelError(f"{path}: malformed background parameters")
    if not np.isfinite(vectors).all():
        raise ModelError(f"{path}: background vectors are not finite")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return Background(vectors / np.maximum(norms, 1e-12), centre, beta, delta, owner,
                      stored.astype(np.float16))


class Offsets:
    """The stored score offset o(b) of each indexed image, looked up by id."""

    def __init__(self, ids: np.ndarray, values: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.values = np.asarray(values, dtype=np.float32)[order]

    @classmethod
    def zeros(cls, ids: np.ndarray) -> "Offsets":
        return cls(ids, np.zeros(len(ids), np.float32))

    def of(self, ids: np.ndarray) -> np.ndarray:
        """o(b) for each id; +inf for an id that is not stored (FAISS's -1 for "no result")."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.full(ids.shape, np.inf, np.float32)
        where = np.clip(np.searchsorted(self.ids, ids), 0, len(self.ids) - 1)
        return np.where(self.ids[where] == ids, self.values[where], np.inf).astype(np.float32)


def adjusted_search(index, queries: np.ndarray, k: int, background: Background | None,
                    offsets: Offsets | None = None, knee: float = KNEE, shifted: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the `k` best adjusted scores per query, exactly, over any vector index
    with `search(queries, k)` and `count`: it is asked for more candidates, for the queries
    that need them, until no unseen vector could still enter the top `k`. `offsets`: the stored
    o(b) of every indexed vector (computed from `index.get` when not given).

    By cosine, an unseen vector b scores at most raw - o(q) + max_shift / 2 (o(b) >= -max_shift
    / 2, the taper weight <= 1): where many pictures crowd together that takes rounds of ever
    more candidates. `shifted`: the index ranks by cos(q, b) - o(b) through its score column
    (`VectorIndex.search(..., offsets=)`, whose column holds these `offsets`), the order of
    adjusted scores below the knee (where no raise is capped at (1 + cos) / 2); an unseen b then
    scores at most its rank score - o(q), plus what the taper can give back near cosine 1 (the
    cap only lowers a score, so the bound holds), and one round is nearly always enough."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if background is None or background.max_shift == 0:
        return index.search(queries, k)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, index.count)
    if k == 0 or len(queries) == 0:
        return index.search(queries, max(k, 1))
    if offsets is None:
        ids = index.ids()
        offsets = Offsets(ids, background.offsets(index.get(ids)))
    query_offsets = background.offsets(queries)
    norms = np.linalg.norm(queries, axis=1)
    scores = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    todo = np.arange(len(queries))
    half = background.max_shift / 2
    fetch = min(index.count, max(2 * k, k + 16))
    while len(todo):
        if shifted:
            ranked, found = index.search(queries[todo], fetch, offsets=offsets.of)
        else:
            raw, found = index.search(queries[todo], fetch)
        stored = offsets.of(found)  # +inf where FAISS found nothing (-1)
        if shifted:
            raw = np.where(found >= 0, ranked + np.where(found >= 0, stored, 0), -np.inf)
        adjusted = adjust(raw, query_offsets[todo, None] + stored, knee)
        top = np.argsort(-adjusted, axis=1, kind="stable")[:, :k]
        scores[todo] = np.take_along_axis(adjusted, top, axis=1)
        ids[todo] = np.take_along_axis(found, top, axis=1)
        if fetch >= index.count:
            break
        oq = query_offsets[todo]
        if shifted:  # b unseen: cos - o(b) <= last; the taper gives back (1 - w)(o(q) + o(b))
            last = ranked[:, -1]
            weight = _taper(np.minimum(1.0, last + half), knee)
            best_unseen = last - oq + (1.0 - weight) * np.maximum(0.0, oq + half)
        else:
            best_unseen = raw[:, -1] - oq + half
        # a zero vector (an unreadable query) scores 0 against everything: nothing to refine;
        # a k-th score at the cap of 1 cannot be beaten (a burst of identical frames)
        todo = todo[(best_unseen >= scores[todo, -1]) & (scores[todo, -1] < 1.0)
                    & (norms[todo] > 1e-6)]
        fetch = min(index.count, fetch * 4)
    return scores, ids
