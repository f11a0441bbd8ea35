"""Background score adjustment: formulas by hand, exact top-k against brute force, files, dedupe."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import write_pictures
from simsearch.errors import ModelError
from simsearch.index import open_index
from simsearch.scoring import (KNEE, Background, Offsets, adjust, adjusted_search,
                               background_path, build_background, load_background, lowest_cosine)
from simsearch.vectors import VectorIndex


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


def test_centre_is_the_median_nearest_other_background_vector():
    vectors = unit([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]])
    bg = build_background(vectors, "m")
    # nearest other member: 0.8, 0.8, 0.6, 0.0 -> median 0.7
    assert bg.centre == pytest.approx(0.7)


def test_offsets_are_clipped_half_beta_times_distance_from_centre():
    bg = Background(unit([[1, 0], [0, 1]]), centre=0.5, beta=1.0, delta=0.1, model_id="m")
    x = unit([[1, 0], [np.cos(1.0), np.sin(1.0)], [-1, -1]])
    h = np.array([1.0, max(np.cos(1.0), np.sin(1.0)), -np.sqrt(0.5)])
    expected = 0.5 * np.clip(h - 0.5, -0.1, 0.1)
    np.testing.assert_allclose(bg.offsets(x), expected, atol=1e-6)
    assert bg.max_shift == pytest.approx(0.1)


def tapered(cosines, offset_sums, knee=KNEE):
    """The score by hand: the full adjustment up to the knee, fading linearly to none at 1, and
    never raised past half the distance to 1."""
    weight = np.clip((1 - cosines) / (1 - knee), 0, 1)
    return np.minimum(np.minimum(cosines - offset_sums * weight, (1 + cosines) / 2), 1)


def gram_of(vectors, offsets):
    return tapered(vectors @ vectors.T, offsets[:, None] + offsets[None, :])


def test_adjusted_score_is_one_for_identical_pairs_symmetric_capped_and_bounded():
    rng = np.random.default_rng(0)
    cosines = np.concatenate([rng.uniform(-1, 1, 500), 1 - rng.uniform(0, 0.1, 500), [1.0, KNEE]])
    o_a, o_b = rng.uniform(-0.1, 0.1, (2, len(cosines)))
    scores = adjust(cosines, o_a + o_b)
    np.testing.assert_allclose(scores, tapered(cosines, o_a + o_b), atol=1e-6)
    np.testing.assert_array_equal(scores, adjust(cosines, o_b + o_a))  # either way round
    assert scores.max() <= 1.0
    assert adjust(np.array([1.0]), np.array([0.2]))[0] == 1.0  # identical: no adjustment at all
    assert np.all(np.abs(scores - np.minimum(cosines, 1)) <= np.abs(o_a + o_b) + 1e-6)  # max_shift
    # below the knee the full adjustment, as before the taper, but for a raise past (1 + cos) / 2
    below = (cosines <= KNEE) & (cosines - o_a - o_b <= (1 + cosines) / 2)
    np.testing.assert_allclose(scores[below], np.minimum(cosines - o_a - o_b, 1)[below], atol=1e-6)
    # closer to identical moves less: |score - cos| shrinks as cos -> 1 for one pair of offsets
    near = np.linspace(KNEE, 1, 50)
    moved = np.abs(adjust(near, np.full(50, 0.15)) - near)
    assert np.all(np.diff(moved) <= 1e-7) and moved[-1] == 0
    np.testing.assert_allclose(adjust(cosines, o_a + o_b, knee=1.0),  # knee 1: no taper
                               np.minimum(np.minimum(cosines - o_a - o_b, (1 + cosines) / 2), 1), atol=1e-6)


@pytest.mark.parametrize("knee", [0.9, 0.96, 0.97, 1.0])
def test_only_identical_content_scores_one_and_the_score_rises_with_the_cosine(knee):
    # the largest raise the default model's background can give (o(a) + o(b) = -max_shift = -0.1)
    # is more than 1 - knee: tapered alone, it would lift a near-identical pair to 1 and then fall
    cosines = np.linspace(0.5, 1, 20001, dtype=np.float32)
    for sums in (-0.1, -0.05, -0.02, 0.0, 0.05, 0.1):
        scores = adjust(cosines, np.full(len(cosines), sums, np.float32), knee)
        assert np.all(np.diff(scores) >= -1e-6), sums  # never lower for a higher cosine
        assert np.all(scores[:-1] < 1.0), sums
        assert scores[-1] == 1.0 or knee == 1.0, sums  # knee 1: no taper, so identical pairs move too
    # two different shirts at cosine 0.985 in a sparse corner: high, but not "the image itself"
    assert adjust(np.array([0.985]), np.array([-0.1]), 0.96)[0] == pytest.approx(0.9925)


@pytest.mark.parametrize("min_offset", [-0.07, 0.0, 0.02, 0.07])
def test_lowest_cosine_is_a_true_bound(min_offset):
    """No pair below the search radius can reach the threshold, whatever its offsets."""
    rng = np.random.default_rng(1)
    for threshold in (0.5, 0.84, 0.93, 0.97, 0.999):
        radius = lowest_cosine(threshold, min_offset)
        cosines = rng.uniform(radius - 0.3, radius, 20000)
        cosines = cosines[cosines < radius]
        sums = rng.uniform(2 * min_offset, 2 * min_offset + 0.3, len(cosines))
        sums[:100] = 2 * min_offset  # the pairs that move most
        assert adjust(cosines, sums).max() < threshold
        assert radius <= threshold + 2 * max(min_offset, 0) + 1e-9


def brute_force(queries, refs, bg, k):
    adjusted = tapered(queries @ refs.T, bg.offsets(queries)[:, None] + bg.offsets(refs)[None, :])
    order = np.argsort(-adjusted, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(adjusted, order, 1), order


class CountingStore(VectorIndex):
    """Records how many candidates each FAISS search was asked for."""

    def __init__(self, dim):
        super().__init__(dim)
        self.fetches = []

    def search(self, queries, k):
        self.fetches.append((len(queries), k))
        return super().search(queries, k)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_adjusted_search_is_exact_top_k(k):
    dim = 6  # few dimensions: many close raw scores, so the adjustment reorders a lot
    refs, queries = random_unit(2000, dim, 1), random_unit(300, dim, 2)
    bg = build_background(random_unit(40, dim, 3), "m", beta=2.0, delta=0.3)
    store = CountingStore(dim)
    store.add(np.arange(2000) + 1000, refs)
    scores, ids = adjusted_search(store, queries, k, bg)
    want_scores, want_rows = brute_force(queries, refs, bg, k)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    uncapped = want_scores < 1 - 1e-6  # scores capped at 1 tie, in any order
    np.testing.assert_array_equal((ids - 1000)[uncapped], want_rows[uncapped])
    assert uncapped.mean() > 0.5
    raw_scores, _ = store.search(queries, k)
    assert not np.allclose(raw_scores, want_scores)  # the adjustment did something
    first, *more = store.fetches[:-1]
    assert first == (300, max(2 * k, k + 16))
    assert any(n < 300 for n, _ in more)  # only the queries that needed more candidates ask again
    assert max(f for _, f in store.fetches[:-1]) < 2000  # and the search stopped early


def test_adjusted_search_edge_cases():
    bg = build_background(random_unit(10, 4, 0), "m", beta=1.0, delta=0.1)
    empty = VectorIndex(4)
    scores, ids = adjusted_search(empty, random_unit(2, 4, 1), 5, bg)
    assert scores.shape == (2, 0) and ids.shape == (2, 0)
    store = VectorIndex(4)
    refs = random_unit(3, 4, 2)
    store.add(np.arange(3), refs)
    queries = np.vstack([random_unit(1, 4, 3), np.zeros((1, 4), np.float32)])  # a zero vector too
    scores, ids = adjusted_search(store, queries, 10, bg)  # k > count
    want_scores, want_rows = brute_force(queries, refs, bg, 3)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    np.testing.assert_array_equal(ids[0], want_rows[0])


def test_no_background_is_plain_cosine():
    store = VectorIndex(8)
    store.add(np.arange(20), random_unit(20, 8, 0))
    q = random_unit(3, 8, 1)
    for a, b in zip(adjusted_search(store, q, 5, None), store.search(q, 5)):
        np.testing.assert_array_equal(a, b)


def test_background_file_round_trip_and_refusals(tmp_path):
    bg = build_background(random_unit(10, 4, 0), "model-a", beta=0.75, delta=0.2)
    path = tmp_path / "m.background.npz"
    bg.save(path)
    back = load_background(path, "model-a", 4)
    np.testing.assert_allclose(back.vectors, bg.vectors, atol=1e-3)  # stored as fp16
    assert (back.centre, back.beta, back.delta) == pytest.approx((bg.centre, 0.75, 0.2))
    with pytest.raises(ModelError, match="belongs to model"):
        load_background(path, "model-b", 4)
    with pytest.raises(ModelError, match="expected"):
        load_background(path, "model-a", 8)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.npz"):
        load_background(tmp_path / "bad.npz", "model-a", 4)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, vectors=np.array([object()], dtype=object), params=np.zeros(3),
             model_id=np.array("model-a"))
    with pytest.raises(ModelError, match="pickled.npz"):
        load_background(pickled, "model-a", 4)


def test_background_path_beside_the_model(tmp_path):
    assert background_path(tmp_path / "default.onnx") == tmp_path / "default.background.npz"
    assert background_path(tmp_path / "default.int8.onnx") == tmp_path / "default.background.npz"
    assert background_path(tmp_path / "model.safetensors") == tmp_path / "model.background.npz"


def indexed_copy_of_model(tmp_path, tiny_model, name, n, seed):
    """A copy of the tiny model (free to gain a background file) and an index of n pictures."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    photos = tmp_path / "photos"
    write_pictures(photos, n, seed=seed)
    index = open_index(tmp_path / name, model=model_dir, create=True)
    index.add_paths([photos])
    return model_dir, photos, index


def test_index_uses_the_models_background_for_query_and_dedupe(tmp_path, tiny_model):
    model_dir, photos, plain = indexed_copy_of_model(tmp_path, tiny_model, "plain", 12, 3)
    paths, vectors = plain.vectors()
    bg = build_background(vectors[:6], plain.model.model_id, beta=2.0, delta=0.3)
    bg.save(model_dir / "model.background.npz")

    index = open_index(tmp_path / "adjusted", model=model_dir, create=True)
    index.add_paths([photos])
    assert index.background is not None
    offsets = bg.offsets(vectors)
    gram = gram_of(vectors, offsets)
    result = index.search([paths[0]], k=3)[0]
    order = np.argsort(-gram[0], kind="stable")[:3]
    np.testing.assert_allclose([m.score for m in result.matches], gram[0][order], atol=1e-4)

    threshold = float(np.sort(gram[np.triu_indices(12, 1)])[-4])  # a few pairs pass
    for linkage in ("complete", "centre"):
        report = index.duplicates(threshold, linkage=linkage, check=False)  # the scores
        near = [g for g in report.groups if g.kind == "near"]
        assert near, "the threshold was chosen so that pairs pass"
        for group in near:
            centre = paths.index(group.centre)
            for member in group.members[1:]:  # each member's score to the centre, exactly
                assert member.score == pytest.approx(gram[centre, paths.index(member.path)], abs=1e-4)
                assert member.score >= threshold - 1e-5
            assert group.min_score == min(m.score for m in group.members)
            if linkage == "complete":
                rows = [paths.index(f) for f in group.files]
                assert gram[np.ix_(rows, rows)][np.triu_indices(len(rows), 1)].min() >= threshold - 1e-5


def test_near_pairs_match_brute_force():
    from simsearch.pairs import JoinSettings, near_pairs

    vectors = random_unit(300, 6, 5)
    bg = build_background(random_unit(30, 6, 6), "m", beta=1.0, delta=0.2)
    offsets = bg.offsets(vectors)
    gram = gram_of(vectors, offsets)
    threshold = 0.9
    rows_a, rows_b = np.triu_indices(300, 1)
    want = {(int(a), int(b)) for a, b in zip(rows_a, rows_b) if gram[a, b] >= threshold}
    found = near_pairs(vectors, offsets, threshold, JoinSettings(k=4, grow=300))
    assert set(zip(found.left.tolist(), found.right.tolist())) == want
    raw = np.array([vectors[a] @ vectors[b] for a, b in zip(found.left, found.right)])
    assert (raw < threshold).any()  # pairs that only the adjustment lifts over the threshold
    np.testing.assert_allclose(found.scores, gram[found.left, found.right], atol=1e-5)


def test_stored_offsets_give_the_same_exact_top_k_as_computed_ones():
    dim = 6
    refs, queries = random_unit(1500, dim, 8), random_unit(100, dim, 9)
    bg = build_background(random_unit(40, dim, 10), "m", beta=1.5, delta=0.3)
    store = CountingStore(dim)
    store.add(np.arange(1500) + 7, refs)
    stored = Offsets(np.arange(1500) + 7, bg.offsets(refs))
    for k in (1, 10):
        want_scores, want_rows = brute_force(queries, refs, bg, k)
        scores, ids = adjusted_search(store, queries, k, bg, stored)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        uncapped = want_scores < 1 - 1e-6
        np.testing.assert_array_equal(ids[uncapped], want_rows[uncapped] + 7)
        np.testing.assert_allclose(adjusted_search(store, queries, k, bg)[0], scores, atol=1e-6)
    assert np.isinf(stored.of(np.array([-1, 0, 99999]))).all()  # not stored: never ranks


def test_offsets_made_without_a_background_are_not_trusted_once_it_exists(tmp_path, tiny_model):
    from simsearch.integrity import check_index

    model_dir, _, index = indexed_copy_of_model(tmp_path, tiny_model, "idx", 10, 4)
    assert index.manifest["scoring"] == "cosine"
    assert check_index(tmp_path / "idx").problems == []
    paths, vectors = index.vectors()
    bg = build_background(vectors[:5], index.model.model_id, beta=2.0, delta=0.3)
    bg.save(model_dir / "model.background.npz")

    reopened = open_index(tmp_path / "idx")  # same model, which now has a background
    offsets = bg.offsets(vectors)
    gram = gram_of(vectors, offsets)
    result = reopened.search([paths[3]], k=4)[0]
    np.testing.assert_allclose([m.score for m in result.matches], np.sort(gram[3])[::-1][:4], atol=1e-4)
    report = check_index(tmp_path / "idx")
    assert any("background" in p for p in report.problems)
    check_index(tmp_path / "idx", repair=True)
    assert check_index(tmp_path / "idx").problems == []
    assert open_index(tmp_path / "idx").manifest["scoring"] == bg.fingerprint


@pytest.mark.parametrize("beta, centre_shift", [(1.0, 0.0), (2.0, -0.6)])
def test_near_pairs_match_brute_force_near_identical(beta, centre_shift):
    """Clusters of near-identical vectors (cosines above the knee), also with every offset
    positive (a centre far below h): the search radius still finds every tapered pair."""
    from simsearch.pairs import JoinSettings, near_pairs

    rng = np.random.default_rng(7)
    centres = random_unit(40, 8, 11)
    vectors = unit(np.repeat(centres, 5, axis=0) + rng.normal(0, 0.05, (200, 8)))
    bg = build_background(random_unit(30, 8, 12), "m", beta=beta, delta=0.2)
    bg = Background(bg.vectors, bg.centre + centre_shift, beta, 0.2, "m")
    offsets = bg.offsets(vectors)
    if centre_shift:
        assert offsets.min() > 0
    gram = gram_of(vectors, offsets)
    rows_a, rows_b = np.triu_indices(200, 1)
    assert (vectors @ vectors.T)[rows_a, rows_b].max() > KNEE  # pairs in the taper
    for threshold in (0.8, 0.9, 0.96):
        want = {(int(a), int(b)) for a, b in zip(rows_a, rows_b) if gram[a, b] >= threshold}
        for settings in (JoinSettings(), JoinSettings(k=2, grow=300)):  # the join, and its growth
            found = near_pairs(vectors, offsets, threshold, settings)
            assert set(zip(found.left.tolist(), found.right.tolist())) == want
            np.testing.assert_allclose(found.scores, [gram[a, b] for a, b in zip(
                found.left.tolist(), found.right.tolist())], atol=1e-5)
        assert want
