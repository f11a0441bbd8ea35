"""Benchmark generation and metrics: uAP, Recall@1, pairwise P/R/F1, threshold calibration.

A benchmark is a folder of edited copies of some originals plus ``ground_truth.json``
saying which original each copy came from.  The metrics take plain numpy arrays and
lists, so the model (via FAISS) and the perceptual-hash baselines are scored the same way.
Scores are similarities: higher means closer.  No torch, no faiss here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence

import numpy as np
from PIL import Image

from simsearch.edits import EDIT_NAMES, JPEG_MAX_SIDE, apply_edit
from simsearch.errors import CalibrationError, DecodeError, SimsearchError
from simsearch.images import load_image

__all__ = [
    "GROUND_TRUTH", "BenchmarkItem", "SkippedFile", "Benchmark", "make_benchmark", "load_benchmark",
    "micro_average_precision", "recall_at_1", "recall_at_1_per_edit", "pair_precision_recall_f1",
    "calibrate_threshold", "CalibrationError", "DedupeScore", "Calibration", "Metrics", "Neighbors",
    "LabelledPairs", "label_neighbors", "hash_baseline", "image_hashes", "hash_neighbors",
    "hamming_to_score", "score_to_hamming", "popcount"]

GROUND_TRUTH = "ground_truth.json"
_FORMAT_VERSION = 1


# --- benchmark ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkItem:
    """One query: an edited copy of ``original`` made by the edit named ``edit``."""

    query: Path
    original: Path
    edit: str


@dataclass(frozen=True)
class SkippedFile:
    """An original that could not be decoded, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Benchmark:
    """Queries with their ground truth; ``originals`` are the decodable inputs, in order."""

    items: tuple[BenchmarkItem, ...]
    originals: tuple[Path, ...]
    skipped: tuple[SkippedFile, ...] = ()
    seed: int = 0

    def true_pairs(self) -> set[tuple[Path, Path]]:
        """The (query, original) pairs a perfect system would report."""
        return {(item.query, item.original) for item in self.items}


def make_benchmark(
    originals: Sequence[Path],
    out_dir: Path,
    seed: int = 0,
    edits: Sequence[str] = EDIT_NAMES,
    per_image: int | None = None,
    image_format: str = "jpeg",
    progress: Callable[[int, int], None] | None = None,
) -> Benchmark:
    """Write edited copies of each original into ``out_dir/queries`` and the ground truth.

    Each original gets one copy per edit, or with ``per_image`` a seeded sample of that many
    edits.  Copies are saved as JPEG (quality 95) or PNG and named ``q000000.jpg`` and so
    on, so the names say nothing about the original.  The randomness of each copy depends
    only on (seed, position of the original, edit name): the same call writes the same
    bytes.  Originals that cannot be decoded are skipped and listed in ``skipped``.
    ``ground_truth.json`` is written last, atomically; it is the authority on which files
    belong to the benchmark.  ``progress(done, total)`` is called after each original.
    """
    unknown = [e for e in edits if e not in EDIT_NAMES]
    if unknown or not edits:
        raise ValueError(f"unknown or no edits {unknown}; choose from {', '.join(EDIT_NAMES)}")
    if per_image is not None and not 1 <= per_image <= len(edits):
        raise ValueError(f"per_image must be between 1 and {len(edits)}, got {per_image}")
    if image_format not in ("jpeg", "png"):
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    out_dir = Path(out_dir)
    (out_dir / "queries").mkdir(parents=True, exist_ok=True)
    items, kept, skipped = [], [], []
    for i, original in enumerate(originals):
        original = Path(original)
        try:
            img = load_image(original).image
        except DecodeError as e:
            skipped.append(SkippedFile(original, e.reason))
        else:
            kept.append(original)
            chosen = list(edits)
            if per_image is not None:
                chosen = random.Random(f"{seed}:{i}:sample").sample(chosen, per_image)
            for edit in chosen:
                copy = apply_edit(edit, img, random.Random(f"{seed}:{i}:{edit}"))
                query = _save(copy, out_dir / "queries" / f"q{len(items):06d}", image_format)
                items.append(BenchmarkItem(query, original, edit))
        if progress is not None:
            progress(i + 1, len(originals))
    bench = Benchmark(tuple(items), tuple(kept), tuple(skipped), seed)
    _write_ground_truth(bench, out_dir)
    return bench


def _save(img: Image.Image, stem: Path, image_format: str) -> Path:
    if image_format == "jpeg" and max(img.size) <= JPEG_MAX_SIDE:
        path = stem.with_suffix(".jpg")
        img.save(path, format="JPEG", quality=95)
    else:
        path = stem.with_suffix(".png")
        img.save(path, format="PNG")
    return path


def _write_ground_truth(bench: Benchmark, out_dir: Path) -> None:
    data = {
        "version": _FORMAT_VERSION,
        "seed": bench.seed,
        "originals": [str(p) for p in bench.originals],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in bench.skipped],
        # Queries are stored relative to the benchmark folder so it can be moved.
        "items": [
            {"query": item.query.relative_to(out_dir).as_posix(), "original": str(item.original),
             "edit": item.edit}
            for item in bench.items
        ],
    }
    tmp = out_dir / (GROUND_TRUTH + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / GROUND_TRUTH)


def load_benchmark(out_dir: Path) -> Benchmark:
    """Read a benchmark folder written by ``make_benchmark``."""
    out_dir = Path(out_dir)
    path = out_dir / GROUND_TRUTH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        items = tuple(BenchmarkItem(out_dir / it["query"], Path(it["original"]), it["edit"])
                      for it in data["items"])
        skipped = tuple(SkippedFile(Path(s["path"]), s["reason"]) for s in data["skipped"])
        return Benchmark(items, tuple(Path(p) for p in data["originals"]), skipped, int(data["seed"]))
    except FileNotFoundError:
        raise SimsearchError(f"{path} not found; create a benchmark with make_benchmark first") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SimsearchError(f"{path} is not a simsearch benchmark ground truth: {e}") from None


# --- result types ------------------------------------------------------------------------


@dataclass(frozen=True)
class DedupeScore:
    """Pairwise precision/recall/F1 of near-duplicate groups (at ``threshold``, if known).

    ``unit`` says what the threshold is: "score" (a similarity, higher is closer) or
    "hamming" (a perceptual hash's bit distance, at most this many bits apart)."""

    precision: float
    recall: float
    f1: float
    threshold: float | None = None
    n_predicted: int = 0
    n_true: int = 0
    n_correct: int = 0
    unit: str = "score"

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "unit": self.unit, "precision": self.precision,
                "recall": self.recall, "f1": self.f1, "n_predicted": self.n_predicted,
                "n_correct": self.n_correct, "n_true": self.n_true}


@dataclass(frozen=True)
class Calibration:
    """The threshold that meets a precision target, and what it achieves (``unit`` as in
    ``DedupeScore``)."""

    threshold: float
    precision: float
    recall: float
    unit: str = "score"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Metrics:
    """The headline numbers of one evaluation run; ``to_dict()`` is the JSON report."""

    uap: float
    recall_at_1: float
    per_edit: dict[str, float] = field(default_factory=dict)
    dedupe: DedupeScore | None = None
    calibrated: Calibration | None = None
    calibration_error: str | None = None  # why ``calibrated`` is None, when it was tried

    def to_dict(self) -> dict:
        return {
            "uap": self.uap,
            "recall_at_1": self.recall_at_1,
            "per_edit": dict(self.per_edit),
            "dedupe": None if self.dedupe is None else self.dedupe.to_dict(),
            "calibrated": None if self.calibrated is None else self.calibrated.to_dict(),
            "calibration_error": self.calibration_error,
        }


# --- ranking metrics ---------------------------------------------------------------------


def _ranked(scores: Sequence[float] | np.ndarray, is_positive: Sequence[bool] | np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels sorted by score, highest first; within a tie, negatives first.

    Tie order is pessimistic, as in the ISC2021/DISC21 reference code: a system cannot
    gain by giving many predictions the same score.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(is_positive, dtype=bool).ravel()
    if s.shape != pos.shape:
        raise ValueError(f"{s.size} scores but {pos.size} labels")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    order = np.lexsort((pos, -s))  # primary key last: score descending, then False before True
    return s[order], pos[order]


def _check_positives(pos: np.ndarray, n_positives: int) -> None:
    if n_positives < 1:
        raise ValueError(f"n_positives must be at least 1, got {n_positives}")
    if pos.sum() > n_positives:
        raise ValueError(f"{int(pos.sum())} positive predictions but only {n_positives} "
                         "ground-truth pairs: is a (query, reference) pair predicted twice?")


def micro_average_precision(scores: Sequence[float] | np.ndarray,
                            is_positive: Sequence[bool] | np.ndarray, n_positives: int) -> float:
    """Micro-average precision (uAP) over all predicted (query, reference, score) pairs.

    ``sum over ranks r of precision@r * is_positive[r] / n_positives`` with all pairs ranked
    by score; ground-truth pairs never predicted count as misses.  Ties: see ``_ranked``.
    Each (query, reference) pair must appear at most once.
    """
    _, pos = _ranked(scores, is_positive)
    _check_positives(pos, n_positives)
    if pos.size == 0:
        return 0.0
    tp = np.cumsum(pos)
    precision = tp / np.arange(1, pos.size + 1)
    return float(precision[pos].sum() / n_positives)


def calibrate_threshold(scores: Sequence[float] | np.ndarray, is_positive: Sequence[bool] | np.ndarray,
                        n_positives: int, min_precision: float = 0.99) -> Calibration:
    """The lowest threshold t such that the pairs with score >= t have precision >= min_precision.

    Recall there is counted against ``n_positives``.  Raises ``CalibrationError`` when no
    threshold gets there (not even the highest score).
    """
    s, pos = _ranked(scores, is_positive)
    _check_positives(pos, n_positives)
    if s.size == 0:
        raise CalibrationError("no scored pairs to calibrate a threshold on")
    tp = np.cumsum(pos)
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last rank of each distinct score
    precision = tp[ends] / (ends + 1)
    ok = np.flatnonzero(precision >= min_precision)
    if ok.size == 0:
        best = int(np.argmax(precision))
        raise CalibrationError(
            f"no threshold reaches precision {min_precision:g}; the best is {precision[best]:.4f} "
            f"at score >= {s[ends[best]]:.4f}")
    end = ends[ok[-1]]
    return Calibration(float(s[end]), float(tp[end] / (end + 1)), float(tp[end] / n_positives))


def recall_at_1(top1_refs: Sequence[Hashable | None], true_refs: Sequence[Hashable]) -> float:
    """Fraction of queries whose first result is their true reference (None = no result)."""
    if len(top1_refs) != len(true_refs):
        raise ValueError(f"{len(top1_refs)} results but {len(true_refs)} true references")
    if len(true_refs) == 0:
        raise ValueError("no queries")
    hits = sum(1 for got, want in zip(top1_refs, true_refs) if got is not None and got == want)
    return hits / len(true_refs)


def recall_at_1_per_edit(top1_refs: Sequence[Hashable | None], true_refs: Sequence[Hashable],
                         edits: Sequence[str]) -> dict[str, float]:
    """Recall@1 for each edit name, in order of first appearance."""
    if not len(top1_refs) == len(true_refs) == len(edits):
        raise ValueError(f"{len(top1_refs)} results, {len(true_refs)} true refs, {len(edits)} edits")
    rows: dict[str, list[int]] = {}
    for i, edit in enumerate(edits):
        rows.setdefault(edit, []).append(i)
    return {edit: recall_at_1([top1_refs[i] for i in idx], [true_refs[i] for i in idx])
            for edit, idx in rows.items()}


def pair_precision_recall_f1(predicted_groups: Iterable[Iterable[Hashable]],
                             true_pairs: Iterable[tuple[Hashable, Hashable]],
                             threshold: float | None = None) -> DedupeScore:
    """Pairwise precision, recall and F1 of near-duplicate groups.

    A group of n items claims its n(n-1)/2 unordered pairs; true pairs are unordered and
    self-pairs are ignored.  With nothing predicted precision is 1 (nothing wrong was
    claimed); with nothing to find recall is 1.  Disjoint groups (the usual case) are
    scored without listing their pairs, so one huge group costs O(n), not O(n^2).
    """
    groups = [set(g) for g in predicted_groups]
    truth = {frozenset(p) for p in true_pairs if len(set(p)) == 2}
    group_of: dict[Hashable, int] = {}
    overlapping = False
    for gi, g in enumerate(groups):
        for item in g:
            overlapping |= group_of.setdefault(item, gi) != gi
    if overlapping:
        predicted = {frozenset(p) for g in groups for p in combinations(g, 2)}
        n_predicted, n_correct = len(predicted), len(predicted & truth)
    else:
        n_predicted = sum(len(g) * (len(g) - 1) // 2 for g in groups)
        n_correct = 0
        for pair in truth:
            a, b = tuple(pair)
            n_correct += a in group_of and group_of.get(b) == group_of[a]
    precision = n_correct / n_predicted if n_predicted else 1.0
    recall = n_correct / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return DedupeScore(precision, recall, f1, threshold, n_predicted, len(truth), n_correct)


# --- search results and hash baselines ---------------------------------------------------


@dataclass(frozen=True)
class Neighbors:
    """The k nearest references of each query: ``indices`` and ``scores``, both (n, k).

    Rows are sorted by score, highest first (but where the picture check moved a copy of the
    query first: `simsearch.verify.copy_first`); an index of -1 means no result (as in FAISS).
    """

    indices: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class LabelledPairs:
    """Predicted pairs flattened for ``micro_average_precision`` / ``calibrate_threshold``."""

    scores: np.ndarray
    is_positive: np.ndarray
    n_positives: int


def label_neighbors(neighbors: Neighbors, true_ref: Sequence[int] | np.ndarray) -> LabelledPairs:
    """Flatten search results into labelled pairs.

    ``true_ref[i]`` is the reference index of query i's original, or -1 for a query with no
    original among the references (a distractor).  Missing results (index -1) are dropped.
    """
    idx = np.asarray(neighbors.indices, dtype=np.int64)
    sc = np.asarray(neighbors.scores, dtype=np.float64)
    truth = np.asarray(true_ref, dtype=np.int64).ravel()
    if idx.ndim != 2 or idx.shape != sc.shape or idx.shape[0] != truth.size:
        raise ValueError(f"indices {idx.shape}, scores {sc.shape} and {truth.size} true references "
                         "do not line up")
    found = idx >= 0
    positive = (idx == truth[:, None]) & found & (truth[:, None] >= 0)
    return LabelledPairs(sc[found], positive[found], int((truth >= 0).sum()))


_HASH_BITS = 64
_BLOCK = 1 << 22  # query x reference distances held at once


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element, as int64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    bits = np.unpackbits(np.ascontiguousarray(x).view(np.uint8), axis=-1)
    return bits.reshape(*x.shape, 64).sum(-1, dtype=np.int64)


def hamming_to_score(distance: int) -> float:
    """The similarity the hash baselines rank by: ``1 - distance / 64``."""
    return 1.0 - distance / _HASH_BITS


def score_to_hamming(score: float) -> int:
    """The Hamming distance a hash similarity stands for (the inverse of ``hamming_to_score``)."""
    return int(round((1.0 - score) * _HASH_BITS))


def image_hashes(kind: str, paths: Sequence[Path],
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """64-bit perceptual hashes ("phash" or "dhash", from the optional ``imagehash`` package)
    of each image, as uint64.  Raises ``DecodeError`` for an unreadable image and
    ``SimsearchError`` when imagehash is not installed.  ``progress(done, total)`` per image."""
    if kind not in ("phash", "dhash"):
        raise ValueError(f"unknown hash kind {kind!r}; choose phash or dhash")
    try:
        import imagehash
    except ImportError:
        raise SimsearchError("the phash/dhash baselines need the imagehash package; "
                             "install it with: pip install imagehash") from None
    out = np.empty(len(paths), dtype=np.uint64)
    for i, path in enumerate(paths):
        img = load_image(Path(path), target=256).image  # the hashes work on 32x32 or smaller
        h = imagehash.phash(img) if kind == "phash" else imagehash.dhash(img)
        out[i] = int.from_bytes(np.packbits(np.asarray(h.hash, dtype=bool).ravel()).tobytes(), "big")
        if progress is not None:
            progress(i + 1, len(paths))
    return out


def hash_neighbors(queries: np.ndarray, references: np.ndarray, k: int | None = 10) -> Neighbors:
    """The k references nearest each query hash by Hamming distance, as similarities
    ``1 - hamming / 64`` in [0, 1].  Ties go to the lower reference index.  ``k=None`` ranks
    every reference."""
    q = np.asarray(queries, dtype=np.uint64)
    r = np.asarray(references, dtype=np.uint64)
    if r.size == 0:
        raise ValueError("no reference images")
    k = r.size if k is None else min(k, r.size)
    indices = np.empty((q.size, k), dtype=np.int64)
    dist = np.empty((q.size, k), dtype=np.int64)
    step = max(1, _BLOCK // r.size)
    for start in range(0, q.size, step):
        d = popcount(q[start:start + step, None] ^ r[None, :])
        # Unique keys make the order total (distance, then reference index) and deterministic.
        key = d * r.size + np.arange(r.size)
        top = np.argpartition(key, k - 1, axis=1)[:, :k] if k < r.size else np.argsort(key, axis=1)
        top = np.take_along_axis(top, np.argsort(np.take_along_axis(key, top, 1), axis=1), 1)
        indices[start:start + step] = top
        dist[start:start + step] = np.take_along_axis(d, top, 1)
    return Neighbors(indices, (1.0 - dist / _HASH_BITS).astype(np.float32))


def hash_baseline(kind: str, queries: Sequence[Path], references: Sequence[Path],
                  k: int | None = 10) -> Neighbors:
    """Perceptual-hash baseline: the k most similar references of each query image.

    ``kind`` is "phash" or "dhash" (64-bit hashes from the optional ``imagehash`` package);
    similarity is ``1 - hamming / 64`` in [0, 1], so the same metrics apply as for cosine
    scores.  Ties go to the lower reference index.  ``k=None`` ranks every reference.
    Raises ``DecodeError`` for an unreadable image.
    """
    if kind not in ("phash", "dhash"):
        raise ValueError(f"unknown hash kind {kind!r}; choose phash or dhash")
    q, r = image_hashes(kind, queries), image_hashes(kind, references)
    if r.size == 0:
        raise ValueError("no reference images")
    return hash_neighbors(q, r, k)
