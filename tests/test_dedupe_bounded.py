"""Dedupe in bounded memory (simsearch.pairs): a k-nearest-neighbour self-join verified exactly
gives the same pairs and the same groups as an exhaustive search, at several densities and with
bursts larger than k, while keeping at most n * k + (rows not complete) * grow pairs."""
from __future__ import annotations

import numpy as np
import pytest

from simsearch.dedupe import find_groups
from simsearch.pairs import JoinSettings, exact_scores, near_pairs
from simsearch.scoring import build_background


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _data(n: int, d: int, spread: float, bursts: tuple[int, ...], seed: int):
    """Clustered vectors (`spread`: how far members stray from their cluster), plus bursts of
    near-identical frames, plus offsets from a background."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((max(1, n // 8), d)))
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal((n, d)) / np.sqrt(d)
    parts = [x]
    for size in bursts:
        base = rng.standard_normal(d)
        parts.append(base + 0.05 * rng.standard_normal((size, d)) * np.linalg.norm(base) / np.sqrt(d))
    vectors = _unit(np.concatenate(parts))
    bg = build_background(_unit(rng.standard_normal((40, d))), "m", beta=1.0, delta=0.1)
    return vectors, bg.offsets(vectors)


def _brute_pairs(vectors, offsets, threshold):
    a, b = np.triu_indices(len(vectors), 1)
    s = exact_scores(vectors, offsets, a, b)
    keep = s >= threshold
    return set(zip(a[keep].tolist(), b[keep].tolist()))


def _groups(vectors, offsets, threshold, settings, linkage="centre", seed=0):
    n = len(vectors)
    ids = np.random.default_rng(seed).permutation(n).astype(np.int64) + 100  # ids not rows
    content = np.arange(n)
    content[5] = content[6]  # one exact copy
    groups = find_groups(ids, vectors, offsets, content, threshold, linkage, settings=settings)
    return sorted((g.ids, [round(s, 6) for s in g.scores]) for g in groups)


CASES = [  # (spread, threshold, bursts): sparse to dense
    (1.2, 0.80, ()),
    (0.9, 0.70, (12,)),
    (0.6, 0.75, (40, 25)),
    (0.5, 0.60, (60,)),
]


@pytest.mark.parametrize("spread,threshold,bursts", CASES)
def test_near_pairs_equal_exhaustive_search(spread, threshold, bursts):
    vectors, offsets = _data(400, 16, spread, bursts, seed=1)
    found = near_pairs(vectors, offsets, threshold, JoinSettings(k=4, grow=128, block=64))
    got = set(zip(found.left.tolist(), found.right.tolist()))
    assert got == _brute_pairs(vectors, offsets, threshold)
    assert not found.dense.any()


@pytest.mark.parametrize("linkage", ["centre", "complete"])
@pytest.mark.parametrize("spread,threshold,bursts", CASES)
def test_bounded_groups_equal_exhaustive_grouping(spread, threshold, bursts, linkage):
    vectors, offsets = _data(400, 16, spread, bursts, seed=2)
    everything = JoinSettings(k=len(vectors), grow=len(vectors))  # every pair scored
    want = _groups(vectors, offsets, threshold, everything, linkage)
    got = _groups(vectors, offsets, threshold, JoinSettings(k=4, grow=128, block=50), linkage)
    assert got == want
    assert len(want) >= 3
    assert not bursts or any(len(ids) > 4 for ids, _ in want)  # a group bigger than k


def test_a_burst_bigger_than_grow_keeps_memory_bounded_and_groups_whole():
    """300 frames of one burst, k=4, grow=16: rows with more near-duplicates than grow keep
    only 16 pairs each (not 300 x 299 / 2); the burst is still one group, every member passes
    against its centre, and the other groups are unchanged."""
    vectors, offsets = _data(300, 16, 1.2, (300,), seed=3)
    threshold = 0.8
    settings = JoinSettings(k=4, grow=16, block=64)
    found = near_pairs(vectors, offsets, threshold, settings)
    assert found.dense[300:].all()
    assert len(found.left) <= 600 * 4 + found.dense.sum() * 16
    want = _groups(vectors, offsets, threshold, JoinSettings(k=600, grow=600))
    got = _groups(vectors, offsets, threshold, settings)
    assert sorted(sorted(ids) for ids, _ in got) == sorted(sorted(ids) for ids, _ in want)
    assert all(min(scores) >= threshold for _, scores in got)
    burst = [ids for ids, _ in got if len(ids) >= 290]
    assert len(burst) == 1


def test_progress_reports_every_row():
    vectors, offsets = _data(300, 16, 0.6, (40,), seed=4)
    seen = []
    near_pairs(vectors, offsets, 0.7, JoinSettings(k=4, grow=64, block=64),
               progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] and seen[-1][1] > 340  # rows, then the rows searched again
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cluster_join_finds_nearly_every_pair():
    vectors, offsets = _data(3000, 32, 0.6, (30,), seed=5)
    want = _brute_pairs(vectors, offsets, 0.75)
    settings = JoinSettings(k=8, grow=64, exact_limit=500, probe=8, list_size=300)
    found = near_pairs(vectors, offsets, 0.75, settings)
    got = set(zip(found.left.tolist(), found.right.tolist()))
    assert got <= want and len(got) >= 0.95 * len(want)
    # probing every list is exhaustive: the same pairs and groups as the exact join
    every = JoinSettings(k=8, grow=64, exact_limit=500, probe=10_000, list_size=100)
    full = near_pairs(vectors, offsets, 0.75, every)
    assert set(zip(full.left.tolist(), full.right.tolist())) == want


@pytest.mark.parametrize("spread, threshold, bursts", CASES[1:3])
def test_cluster_join_probing_every_list_groups_as_the_exact_join(spread, threshold, bursts):
    vectors, offsets = _data(400, 24, spread, bursts, seed=11)
    exact = _groups(vectors, offsets, threshold, JoinSettings(k=4, grow=128, block=50))
    clustered = _groups(vectors, offsets, threshold, JoinSettings(
        k=4, grow=128, block=50, exact_limit=10, probe=1000, list_size=40))
    assert clustered == exact


def test_cluster_join_nearest_is_the_brute_force_top_k_above_the_floor():
    from simsearch.vectors import ClusterJoin
    vectors, offsets = _data(900, 16, 0.8, (20,), seed=2)
    join = ClusterJoin(vectors, offsets, probe=100, list_size=60)  # every list probed: exact
    rows = np.arange(0, 900, 7)
    floor = np.full(len(vectors), 0.55, np.float32)
    scores, found = join.nearest(rows, 5, floor)
    raw = vectors[rows] @ vectors.T - offsets[None, :]
    raw[np.arange(len(rows)), rows] = -np.inf  # itself left out
    for i, row in enumerate(rows):
        passing = np.flatnonzero(raw[i] >= 0.55)
        want = passing[np.argsort(-raw[i, passing], kind="stable")][:5]
        got = found[i][found[i] >= 0]
        assert np.allclose(np.sort(raw[i, want]), np.sort(scores[i][:len(got)]), atol=1e-5)
        assert len(got) == len(want) and (found[i][len(got):] == -1).all()
    # within: every candidate at or above the radius, itself left out
    left, right, values = join.within(rows[:10], 0.6)
    for row in rows[:10]:
        want = set(np.flatnonzero(vectors[row] @ vectors.T - offsets >= 0.6).tolist()) - {row}
        assert set(right[left == row].tolist()) == want


def test_spilled_rows_join_more_candidates_each_once_and_find_border_pairs():
    """With `spill`, a row also stands in its next nearest list: a list's candidates are its own
    members first (in row order), then every other probed member or spilled row once, and the
    join finds every pair it found without spilling, and more, never a pair that is not near."""
    from simsearch.vectors import ClusterJoin
    vectors, offsets = _data(3000, 16, 1.0, (), seed=5)
    plain = ClusterJoin(vectors, offsets, probe=1, list_size=100)
    spilled = ClusterJoin(vectors, offsets, probe=1, list_size=100, spill=2)
    assert len(spilled.spill_rows) == 2 * len(vectors)
    # each row stands in its 2nd and 3rd nearest lists by centroid, and in no other
    ranked = np.argsort(-(vectors @ spilled.centroids.T), axis=1, kind="stable")
    assert (ranked[:, 0] == spilled.list_of).mean() > 0.99  # faiss and numpy may tie differently
    for lst in range(len(spilled.starts) - 1):
        rows = spilled.spilled(lst)
        assert set(rows.tolist()) == set(np.flatnonzero((ranked[:, 1:3] == lst).any(1)).tolist())
    for lst in range(0, len(spilled.starts) - 1, 5):
        own = spilled.members(lst)
        got = spilled._candidates(lst, wide=False)
        assert (got[:len(own)] == own).all() and (np.diff(own) > 0).all()
        assert len(np.unique(got)) == len(got)
        assert set(plain._candidates(lst, wide=False).tolist()) <= set(got.tolist())
        # every row whose next nearest lists include this one is a candidate
        assert set(spilled.spilled(lst).tolist()) <= set(got.tolist())
    want = _brute_pairs(vectors, offsets, 0.8)
    found = {}
    for spill in (0, 1, 2):
        pairs = near_pairs(vectors, offsets, 0.8, JoinSettings(k=8, grow=64, exact_limit=10, probe=1,
                                                               list_size=100, spill=spill))
        found[spill] = set(zip(pairs.left.tolist(), pairs.right.tolist()))
        assert found[spill] <= want
    assert found[0] < found[1] < found[2] and len(want) > len(found[0])


@pytest.mark.parametrize("bad", [dict(probe=0), dict(k=0), dict(k=300, grow=256), dict(list_size=-1),
                                 dict(spill=-1)])
def test_join_settings_out_of_range_are_named(bad):
    from simsearch.errors import SimsearchError
    with pytest.raises(SimsearchError, match="join settings out of range"):
        JoinSettings(**bad)


@pytest.mark.parametrize("exact_limit", [JoinSettings.exact_limit, 10])
def test_float16_rows_find_every_pair_of_their_own_scores_and_score_a_copy_one(exact_limit):
    """`simsearch dedupe` holds the vectors in float16 (half the memory): both joins still find
    every pair an exhaustive search over the same float16 rows finds, the scores stay within
    float16 rounding of the float32 ones, and two identical rows score 1.0, not a rounded norm."""
    vectors, offsets = _data(400, 16, 0.6, (40, 25), seed=7)
    vectors[7] = vectors[8]  # the same picture under two contents (a metadata edit)
    half = vectors.astype(np.float16)
    settings = JoinSettings(k=4, grow=128, block=64, exact_limit=exact_limit, probe=1000,
                            list_size=40)
    found = near_pairs(half, offsets, 0.75, settings)
    got = dict(zip(zip(found.left.tolist(), found.right.tolist()), found.scores.tolist()))
    assert set(got) == _brute_pairs(half, offsets, 0.75)
    assert got[(7, 8)] == pytest.approx(1.0, abs=1e-6)
    a, b = np.array(list(got)).T
    assert np.abs(exact_scores(vectors, offsets, a, b) - found.scores).max() < 1e-3
    # pairs of the float32 rows that float16 loses or gains sit at the threshold
    full = _brute_pairs(vectors, offsets, 0.75)
    for pair in full ^ set(got):
        x, y = np.array([pair[0]]), np.array([pair[1]])
        assert abs(exact_scores(vectors, offsets, x, y)[0] - 0.75) < 1e-3


def test_pairs_set_apart_are_dropped_as_a_python_filter_drops_them():
    """`find_groups(apart=...)` drops the pairs a user set apart by one vectorised lookup: the
    same pairs as filtering each pair in Python, in the kept pairs and in a dense row's fetched
    list; ids not in the index are ignored; no group holds a pair set apart."""
    from simsearch.dedupe import _without_apart
    vectors, offsets = _data(300, 16, 0.6, (40,), seed=8)
    ids = np.random.default_rng(0).permutation(len(vectors)).astype(np.int64) * 3 + 7
    found = near_pairs(vectors, offsets, 0.75, JoinSettings(k=4, grow=16, block=64))
    assert found.dense.any()
    chosen = np.random.default_rng(1).choice(len(found.left), 25, replace=False)
    apart = {tuple(sorted((int(ids[found.left[i]]), int(ids[found.right[i]])))) for i in chosen}
    dense = int(np.flatnonzero(found.dense)[0])
    others, _ = found.fetch(dense)
    apart |= {tuple(sorted((int(ids[dense]), int(ids[o])))) for o in others[:3]}
    apart |= {(1, 2), (int(ids[0]), 10 ** 9)}  # ids the index does not hold
    kept = _without_apart(found, ids, apart)
    want = [(a, b) for a, b in zip(found.left.tolist(), found.right.tolist())
            if tuple(sorted((int(ids[a]), int(ids[b])))) not in apart]
    assert list(zip(kept.left.tolist(), kept.right.tolist())) == want
    assert len(want) <= len(found.left) - len(chosen)
    fetched, _ = kept.fetch(dense)
    assert fetched.tolist() == [o for o in others.tolist()
                                if tuple(sorted((int(ids[dense]), int(ids[o])))) not in apart]
    assert not set(fetched.tolist()) & set(others[:3].tolist())
    for linkage in ("centre", "complete"):
        groups = find_groups(ids, vectors, offsets, np.arange(len(ids)), 0.75, linkage, apart,
                             settings=JoinSettings(k=4, grow=16, block=64))
        assert groups and all((min(a, b), max(a, b)) not in apart
                              for g in groups for a in g.ids for b in g.ids if a != b)


def test_more_pairs_than_memory_can_group_stop_the_search_with_a_clear_error():
    """A search that would keep more near pairs than `max_pairs` (by default what the free
    memory can group) stops while searching, saying how many and what to do, rather than
    running the machine out of memory at the end."""
    from simsearch.errors import TooManyPairsError
    vectors, offsets = _data(400, 16, 0.6, (40, 25), seed=1)
    everything = near_pairs(vectors, offsets, 0.75, JoinSettings(k=4, grow=128, block=64))
    limit = len(everything.left) // 2
    with pytest.raises(TooManyPairsError, match=rf"more than {limit:,} near pairs.*raise the threshold"):
        near_pairs(vectors, offsets, 0.75, JoinSettings(k=4, grow=128, block=64, max_pairs=limit))
    with pytest.raises(TooManyPairsError):
        find_groups(np.arange(len(vectors)), vectors, offsets, np.arange(len(vectors)), 0.75,
                    settings=JoinSettings(k=4, grow=128, block=64, max_pairs=limit))
    # exactly at the limit it passes: a pair found from both ends counts once
    exact = near_pairs(vectors, offsets, 0.75, JoinSettings(k=4, grow=128, block=64,
                                                            max_pairs=len(everything.left)))
    assert len(exact.left) == len(everything.left)


def test_the_default_pair_limit_follows_free_memory_but_never_refuses_a_small_collection(monkeypatch):
    import simsearch.pairs as pairs
    from simsearch.errors import TooManyPairsError
    vectors, offsets = _data(400, 16, 0.6, (40, 25), seed=1)
    settings = JoinSettings(k=4, grow=128, block=64)
    monkeypatch.setattr(pairs, "available_memory", lambda: 1000)  # almost nothing free
    assert len(near_pairs(vectors, offsets, 0.75, settings).left) > 100  # the floor: 1M pairs
    monkeypatch.setattr(pairs, "MIN_PAIR_LIMIT", 10)
    with pytest.raises(TooManyPairsError, match="GiB free now"):
        near_pairs(vectors, offsets, 0.75, settings)
    monkeypatch.setattr(pairs, "available_memory", lambda: 0)  # unreadable: no limit
    assert len(near_pairs(vectors, offsets, 0.75, settings).left) > 100


@pytest.mark.parametrize("exact_limit", [JoinSettings.exact_limit, 10])
def test_float16_rows_off_unit_length_lose_no_pair_at_the_threshold(exact_limit):
    """Exact scores divide by the float16 rows' norms and the join's do not: the join's
    tolerance must grow with the norms' error, or a pair whose cosine passes is dropped."""
    rng = np.random.default_rng(3)
    a = _unit(rng.standard_normal((1, 16)))[0]
    r = rng.standard_normal(16)
    other = _unit((r - (r @ a) * a)[None])[0]
    b = 0.7905 * a + np.sqrt(1 - 0.7905 ** 2) * other  # cosine 0.7905 with a
    rest = _unit(rng.standard_normal((60, 16)))
    vectors = (0.995 * np.vstack([a, b, rest])).astype(np.float16)  # norms 0.995: raw dot 0.783
    offsets = np.zeros(len(vectors), np.float32)
    settings = JoinSettings(k=4, grow=16, exact_limit=exact_limit, probe=100, list_size=8)
    assert exact_scores(vectors, offsets, np.array([0]), np.array([1]))[0] >= 0.79
    found = near_pairs(vectors, offsets, 0.79, settings)
    assert (0, 1) in set(zip(found.left.tolist(), found.right.tolist()))
