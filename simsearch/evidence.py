"""What the figures of one eval run are computed from, kept per original, so that one piece of
code gives both the figures (every original counted once) and their bootstrap intervals
(originals drawn with replacement, each draw carrying all of its copies). `Truth` says which
file is whose; `score_search` and `score_groups` turn a run's answers into evidence.

Units are the references: originals first (resampled), then distractors (weight 1 in every
draw: they are the background the originals are tested against, not a sample of it). A weight
vector has one count per unit: all ones for the figures themselves.

- Retrieval: each query (an edited copy) belongs to its original's unit; its (query, reference,
  score) pairs feed uAP and its top hit Recall@1. A query drawn w times counts w times.
- Dedupe: a predicted group is a set of files, each of some unit; its pairs are tallied per
  pair of units. Pairs inside one unit (an original and its copies) are right and weigh w_u;
  pairs across units are wrong and weigh w_u * w_v (each draw of either side meets each draw of
  the other). Pairs across units that are versions of one picture (see `simsearch.families`)
  are dropped before they get here. Recall counts (copy, original) pairs found in one group.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simsearch.errors import SimsearchError
from simsearch.evaluate import (Calibration, DedupeScore, Metrics, Neighbors,
                                micro_average_precision)
from simsearch.mistakes import FileRef

__all__ = ["Truth", "Retrieval", "Grouping", "Interval", "score_search", "score_groups", "uap",
           "recall_at_1", "precision", "recall", "dedupe_score", "metrics_of", "draws",
           "intervals", "FIGURES"]


@dataclass(frozen=True)
class Truth:
    """Who is who: units are the references (originals, then distractors); every file
    (reference or copy) belongs to one; `set_of[unit]` joins originals that look alike."""

    refs: list[str]
    queries: list[str]
    true_ref: np.ndarray
    edits: list[str]
    set_of: np.ndarray
    n_originals: int

    @functools.cached_property
    def unit_of(self) -> dict[str, int]:
        out = {p: i for i, p in enumerate(self.refs)}
        out.update(zip(self.queries, self.true_ref.tolist()))
        return out

    def true_pairs(self) -> list[tuple[str, str]]:
        return [(q, self.refs[r]) for q, r in zip(self.queries, self.true_ref.tolist())]

    def describe(self, path: str) -> FileRef:
        unit = self.unit_of[path]
        if path in self._query_row:
            i = self._query_row[path]
            return FileRef("copy", None, self.refs[unit], self.edits[i], Path(path).name)
        return FileRef("original" if unit < self.n_originals else "distractor", path)

    @functools.cached_property
    def _query_row(self) -> dict[str, int]:
        return {q: i for i, q in enumerate(self.queries)}


@dataclass(frozen=True)
class Retrieval:
    """Search results of every query, flattened; ignored pairs already dropped."""

    query_unit: np.ndarray     # (q,) int: the unit (original) each query is a copy of
    hit: np.ndarray            # (q,) bool: its top result is right
    pair_query: np.ndarray     # (p,) int: the query of each scored (query, reference) pair
    pair_score: np.ndarray     # (p,) float
    pair_positive: np.ndarray  # (p,) bool: the reference is the query's original


@dataclass(frozen=True)
class Grouping:
    """Dedupe groups as pair tallies per pair of units, and the true pairs found or not."""

    unit_a: np.ndarray      # (t,) int
    unit_b: np.ndarray      # (t,) int: unit_a == unit_b for pairs inside one family
    count: np.ndarray       # (t,) int: how many predicted pairs
    true_unit: np.ndarray   # (c,) int: the unit of each (copy, original) pair
    true_found: np.ndarray  # (c,) bool: that pair ended up in one group
    set_aside: int = 0      # pairs across look-alike originals, counted neither way


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high}


def uap(r: Retrieval, w: np.ndarray) -> float:
    """Micro-average precision with each query's pairs repeated w[unit] times."""
    reps = w[r.query_unit]
    n_positives = int(reps.sum())
    if n_positives == 0:
        return 0.0
    per_pair = reps[r.pair_query]
    scores = np.repeat(r.pair_score, per_pair)
    positive = np.repeat(r.pair_positive, per_pair)
    return micro_average_precision(scores, positive, n_positives)


def recall_at_1(r: Retrieval, w: np.ndarray) -> float:
    reps = w[r.query_unit]
    total = reps.sum()
    return float((reps * r.hit).sum() / total) if total else 0.0


def _pair_weights(g: Grouping, w: np.ndarray) -> np.ndarray:
    wa, wb = w[g.unit_a].astype(np.float64), w[g.unit_b].astype(np.float64)
    return np.where(g.unit_a == g.unit_b, wa, wa * wb) * g.count


def precision(g: Grouping, w: np.ndarray) -> float:
    """Right predicted pairs over all predicted pairs; 1 when nothing is predicted."""
    weights = _pair_weights(g, w)
    total = weights.sum()
    return float(weights[g.unit_a == g.unit_b].sum() / total) if total else 1.0


def recall(g: Grouping, w: np.ndarray) -> float:
    """(copy, original) pairs found in one group over all of them; 1 when there are none."""
    reps = w[g.true_unit].astype(np.float64)
    total = reps.sum()
    return float((reps * g.true_found).sum() / total) if total else 1.0


FIGURES: dict[str, Callable] = {"uap": lambda r, g, w: uap(r, w),
                                "recall_at_1": lambda r, g, w: recall_at_1(r, w),
                                "precision": lambda r, g, w: precision(g, w),
                                "recall": lambda r, g, w: recall(g, w)}


def draws(n_originals: int, n_fixed: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, n_originals + n_fixed) weights: how often each original is drawn when
    n_originals are drawn with replacement, then ones for the fixed units."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_originals, size=(rounds, n_originals))
    counts = np.zeros((rounds, n_originals), np.int64)
    np.add.at(counts, (np.arange(rounds)[:, None], picks), 1)
    return np.hstack([counts, np.ones((rounds, n_fixed), np.int64)])


def intervals(retrieval: Retrieval, grouping: Grouping, n_originals: int, n_units: int,
              rounds: int = 1000, seed: int = 0, level: float = 0.95,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Interval]:
    """Percentile bootstrap intervals over originals for uAP, Recall@1 and dedupe
    precision and recall. Seeded: the same inputs give the same intervals."""
    if n_originals < 1 or rounds < 1:
        raise ValueError(f"need at least one original and one round, got {n_originals}, {rounds}")
    weights = draws(n_originals, n_units - n_originals, rounds, seed)
    values = {name: np.empty(rounds) for name in FIGURES}
    for i, w in enumerate(weights):
        for name, figure in FIGURES.items():
            values[name][i] = figure(retrieval, grouping, w)
        if progress is not None:
            progress(i + 1, rounds)
    tail = (1 - level) / 2 * 100
    return {name: Interval(float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
            for name, v in values.items()}


# --- from a run's answers to evidence, and evidence to figures --------------------------


def score_search(neighbours: Neighbors, truth: Truth) -> Retrieval:
    idx = np.asarray(neighbours.indices, np.int64)
    found = idx >= 0
    want = truth.true_ref[:, None]
    same_set = found & (truth.set_of[np.where(found, idx, 0)] == truth.set_of[want])
    positive = found & (idx == want)
    kept = found & (positive | ~same_set)  # another version of the original: neither
    top = idx[:, 0] if idx.shape[1] else np.full(len(idx), -1)
    hit = (top >= 0) & (truth.set_of[np.where(top >= 0, top, 0)] == truth.set_of[truth.true_ref])
    rows = np.repeat(np.arange(len(idx)), idx.shape[1]).reshape(idx.shape)
    return Retrieval(truth.true_ref, hit, rows[kept], np.asarray(neighbours.scores)[kept],
                     positive[kept])


def score_groups(groups: list[list[str]], truth: Truth) -> Grouping:
    unit_of = truth.unit_of
    a, b, count = [], [], []
    set_aside = 0
    group_of: dict[str, int] = {}
    for gi, files in enumerate(groups):
        tally: dict[int, int] = {}
        for f in files:
            unit = unit_of.get(f)
            if unit is None:
                raise SimsearchError(f"dedupe grouped {f}, which is not part of the benchmark")
            tally[unit] = tally.get(unit, 0) + 1
            group_of.setdefault(f, gi)
        units = sorted(tally)
        for i, u in enumerate(units):
            if tally[u] > 1:
                a.append(u), b.append(u), count.append(tally[u] * (tally[u] - 1) // 2)
            for v in units[i + 1:]:
                if truth.set_of[u] != truth.set_of[v]:
                    a.append(u), b.append(v), count.append(tally[u] * tally[v])
                else:
                    set_aside += tally[u] * tally[v]
    pairs = truth.true_pairs()
    found = [c in group_of and group_of.get(o) == group_of[c] for c, o in pairs]
    return Grouping(np.array(a, np.int64), np.array(b, np.int64), np.array(count, np.int64),
                    truth.true_ref.copy(), np.array(found, bool), set_aside)


def dedupe_score(g: Grouping, threshold: float, unit: str) -> DedupeScore:
    ones = np.ones(int(max(g.unit_a.max(initial=0), g.unit_b.max(initial=0),
                           g.true_unit.max(initial=0))) + 1, np.int64)
    p, r = precision(g, ones), recall(g, ones)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    right = int(g.count[g.unit_a == g.unit_b].sum())
    return DedupeScore(p, r, f1, threshold, int(g.count.sum()), len(g.true_found), right, unit)


def metrics_of(retrieval: Retrieval, grouping: Grouping, truth: Truth, threshold: float,
             unit: str, calibrated: Calibration | None, why: str | None) -> Metrics:
    ones = np.ones(len(truth.refs), np.int64)
    per_edit: dict[str, float] = {}
    for edit in dict.fromkeys(truth.edits):
        rows = np.array([e == edit for e in truth.edits])
        per_edit[edit] = float(retrieval.hit[rows].mean())
    return Metrics(uap(retrieval, ones), recall_at_1(retrieval, ones), per_edit,
                   dedupe_score(grouping, threshold, unit), calibrated, why)
