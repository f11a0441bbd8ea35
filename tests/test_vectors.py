import numpy as np
import pytest

from simsearch.dedupe import complete_linkage
from simsearch.errors import IndexStoreError
from simsearch.store import write_atomic
from simsearch.vectors import VectorIndex, range_pairs


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_search_equals_numpy_brute_force():
    base, queries = _unit(500, 24, 0), _unit(20, 24, 1)
    ids = np.arange(1000, 1500, dtype=np.int64)
    store = VectorIndex(24)
    store.add(ids, base)
    scores, found = store.search(queries, 7)
    sims = queries @ base.T
    want = np.argsort(-sims, axis=1)[:, :7]
    np.testing.assert_array_equal(found, ids[want])
    np.testing.assert_allclose(scores, np.take_along_axis(sims, want, 1), rtol=1e-5, atol=1e-6)


def test_remove_and_ids_round_trip(tmp_path):
    store = VectorIndex(8)
    vectors = _unit(3, 8, 2)
    store.add(np.array([5, 9, 11]), vectors)
    assert store.remove(np.array([9])) == 1
    write_atomic(tmp_path / "v.faiss", store.save_to)
    loaded = VectorIndex.load(tmp_path / "v.faiss", 8)
    assert sorted(loaded.ids().tolist()) == [5, 11]
    np.testing.assert_array_equal(loaded.get(np.array([11, 5])), vectors[[2, 0]])
    assert loaded.search(_unit(1, 8, 3), 10)[1].shape == (1, 2)
    with pytest.raises(ValueError, match="k must be at least 1"):
        loaded.search(_unit(1, 8, 3), 0)


def test_a_vector_file_is_what_the_manifest_says_or_refused(tmp_path):
    import faiss

    other = faiss.IndexIDMap2(faiss.IndexHNSWFlat(8, 8, faiss.METRIC_INNER_PRODUCT))
    other.add_with_ids(_unit(3, 8, 2), np.arange(3))
    faiss.write_index(other, str(tmp_path / "hnsw.faiss"))
    with pytest.raises(IndexStoreError, match="manifest says 'Flat'"):
        VectorIndex.load(tmp_path / "hnsw.faiss", 8)
    faiss.write_index(faiss.IndexFlatIP(8), str(tmp_path / "bare.faiss"))
    with pytest.raises(IndexStoreError, match="no id map"):
        VectorIndex.load(tmp_path / "bare.faiss", 8)
    with pytest.raises(IndexStoreError, match="expected 4"):
        VectorIndex.load(tmp_path / "hnsw.faiss", 4)
    (tmp_path / "link.faiss").symlink_to(tmp_path / "hnsw.faiss")
    with pytest.raises(IndexStoreError, match="cannot read"):
        VectorIndex.load(tmp_path / "link.faiss", 8)  # never read through a link


def _brute_pairs(vectors, threshold):
    sims = vectors @ vectors.T
    i, j = np.nonzero(np.triu(sims >= threshold, k=1))
    return {(int(a), int(b)) for a, b in zip(i, j)}


def _planted(n_groups=40, per=3, noise=0.05, distractors=300, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = _unit(n_groups, d, seed)
    members = [c + noise * rng.standard_normal((per, d)).astype(np.float32) / np.sqrt(d)
               for c in centres]
    x = np.concatenate(members + [_unit(distractors, d, seed + 1)])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_range_pairs_equal_brute_force():
    x = _planted()
    got = set()
    for p in range_pairs(np.arange(len(x)), x, 0.9, batch=64):
        got.update(zip(p.left.tolist(), p.right.tolist()))
        assert np.all(p.scores >= 0.9)
    assert got == _brute_pairs(x, 0.9)


def test_ivf_range_pairs_find_planted_pairs():
    x = _planted(n_groups=200, distractors=3000)
    got = set()
    for p in range_pairs(np.arange(len(x)), x, 0.9, exact_limit=100, nprobe=8):
        got.update(zip(p.left.tolist(), p.right.tolist()))
    want = _brute_pairs(x, 0.9)
    assert got <= want and len(got) >= 0.95 * len(want)


def test_complete_linkage_never_chains():
    # a-b and b-c are near, a-c is not: b joins one side, never both
    left, right = np.array([1, 2]), np.array([2, 3])
    groups = complete_linkage(left, right, np.array([0.97, 0.96], np.float32))
    assert groups == [([1, 2], pytest.approx(0.97))]


def test_complete_linkage_reports_lowest_pairwise_score():
    pairs = [(1, 2, 0.99), (1, 3, 0.95), (2, 3, 0.96), (4, 5, 0.93)]
    left, right, scores = (np.array(v) for v in zip(*pairs))
    groups = sorted(complete_linkage(left, right, scores.astype(np.float32)))
    assert groups[0][0] == [1, 2, 3] and groups[0][1] == pytest.approx(0.95)
    assert groups[1][0] == [4, 5] and groups[1][1] == pytest.approx(0.93)


def test_centre_linkage_takes_the_best_connected_centre():
    from simsearch.dedupe import centre_linkage
    # 1 is near 2, 3 and 4 (an original and its copies); 2-3 near; 4-5 near; 6-7 near
    pairs = [(1, 2, 0.95), (1, 3, 0.93), (1, 4, 0.92), (2, 3, 0.91), (4, 5, 0.97), (6, 7, 0.99)]
    left, right, scores = (np.array(v) for v in zip(*pairs))
    groups = centre_linkage(left, right, scores.astype(np.float32))
    assert groups == [[1, 2, 3, 4], [6, 7]]  # 5 is near 4 only, not near the centre: left out


def test_centre_linkage_moves_a_member_to_the_centre_it_is_closest_to():
    from simsearch.dedupe import centre_linkage
    # 1 is the busiest centre (near 2, 3, 4); 4 also passes against 1 but is a copy of 5, the
    # centre of the next group (5 near 4, 6): it belongs with 5.
    pairs = [(1, 2, 0.95), (1, 3, 0.94), (1, 4, 0.81), (5, 4, 0.97), (5, 6, 0.96), (2, 3, 0.9)]
    left, right, scores = (np.array(v) for v in zip(*pairs))
    groups = centre_linkage(left, right, scores.astype(np.float32))
    assert groups == [[1, 2, 3], [5, 4, 6]]


def test_centre_linkage_members_always_pass_against_their_centre():
    from simsearch.dedupe import centre_linkage
    rng = np.random.default_rng(13)  # a seed where a first centre would lose every member
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gram = vectors @ vectors.T
    left, right = np.nonzero(np.triu(gram >= 0.7, 1))
    scores = gram[left, right]
    groups = centre_linkage(left, right, scores)
    seen = [i for g in groups for i in g]
    assert len(seen) == len(set(seen))  # no image in two groups
    # the same images as the greedy first pass groups (moving members loses no one)
    neighbours = {i: set(np.nonzero(gram[i] >= 0.7)[0].tolist()) - {i} for i in range(300)}
    grouped: set[int] = set()
    for c in sorted((i for i in neighbours if neighbours[i]),
                    key=lambda i: (-len(neighbours[i]), -float(sum(gram[i, j] for j in
                                                                   sorted(neighbours[i]))), i)):
        if c not in grouped and neighbours[c] - grouped:
            grouped |= {c} | (neighbours[c] - grouped)
    assert set(seen) == grouped
    for centre, *members in groups:
        assert members and all(gram[centre, m] >= 0.7 for m in members)
        # no member scores higher against another group's centre, but for the one that each
        # centre keeps so as not to be left alone
        others = [g[0] for g in groups if g[0] != centre]
        elsewhere = [m for m in members
                     if any(gram[m, c] > gram[m, centre] for c in others if gram[m, c] >= 0.7)]
        assert len(elsewhere) <= 1



def test_centre_linkage_never_leaves_a_centre_alone():
    from simsearch.dedupe import centre_linkage
    # 1 is the busiest centre (near 20, 21, 22); each of those is closer to a later centre
    # (2, 3, 4, each with two members of its own). 1 keeps its closest member rather than vanish.
    pairs = [(1, 20, 0.85), (1, 21, 0.86), (1, 22, 0.84),
             (2, 20, 0.9), (2, 5, 0.8), (2, 8, 0.8), (3, 21, 0.9), (3, 6, 0.8), (3, 10, 0.8),
             (4, 22, 0.9), (4, 7, 0.8), (4, 12, 0.8)]
    left, right, scores = (np.array(v) for v in zip(*pairs))
    groups = centre_linkage(left, right, scores.astype(np.float32))
    assert groups == [[1, 21], [2, 5, 8, 20], [3, 6, 10], [4, 7, 12, 22]]
