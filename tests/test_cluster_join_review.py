"""Review findings on ClusterJoin (simsearch.vectors) as used by near_pairs."""
from __future__ import annotations

import numpy as np

from simsearch.pairs import JoinSettings, near_pairs
from simsearch.vectors import ClusterJoin


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n // 10, d)))
    return _unit(centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, d)) / np.sqrt(d))


def test_one_list_join_works():
    """n just above exact_limit with list_size >= n / 2: k-means makes one list; its probe
    list was np.concatenate([[0], []]) -> float64, and members(0.0) raised IndexError."""
    vectors = _clustered(300)
    offsets = np.zeros(len(vectors), np.float32)
    join = ClusterJoin(vectors, offsets, probe=2, list_size=1024)
    assert join.probes[0].dtype.kind == "i"
    scores, found = join.nearest(np.arange(5), 3)
    assert (found >= 0).all()
    exact = near_pairs(vectors, offsets, 0.8, JoinSettings(k=4, grow=32))
    found = near_pairs(vectors, offsets, 0.8, JoinSettings(k=4, grow=32, exact_limit=299))
    assert (set(zip(found.left.tolist(), found.right.tolist()))
            == set(zip(exact.left.tolist(), exact.right.tolist())))


def test_nearest_without_floor_leaves_itself_out():
    """Without a floor, the self column (set to -inf) still passes `scores >= -inf`; a row
    with at most k candidates got itself back at score -inf."""
    vectors = _clustered(300)
    join = ClusterJoin(vectors, np.zeros(len(vectors), np.float32), probe=1, list_size=10)
    rows = np.arange(len(vectors))
    scores, found = join.nearest(rows, 50)
    assert not (found == rows[:, None]).any()
    assert np.isfinite(scores[found >= 0]).all()


def test_exact_scores_of_float16_vectors_are_float32_accurate():
    """(Pre-existing, simsearch/pairs.py exact_scores) einsum of float16 rows returns float16:
    scores rounded to ~2.4e-4, which decides pairs at the threshold (SCORE_TOLERANCE 1e-6).
    Float16 rows are scored as the cosine of the stored rows (each divided by its norm, so
    that a row scores 1.0 against itself), to float32 accuracy."""
    from simsearch.pairs import exact_scores
    half = _clustered(300).astype(np.float16)
    offsets = np.zeros(len(half), np.float32)
    a, b = np.arange(0, 150), np.arange(150, 300)
    x, y = half[a].astype(np.float64), half[b].astype(np.float64)
    want = np.einsum("ij,ij->i", x, y) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert np.abs(exact_scores(half, offsets, a, b) - want).max() < 1e-6
