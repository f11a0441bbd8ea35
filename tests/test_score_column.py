"""The score column: vectors stored with -o(b) beside them, so that an index ranks by
cos(q, b) - o(b) and an adjusted top k comes out of one search (see `simsearch.vectors`)."""
from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest

from conftest import write_pictures
from simsearch.errors import IndexStoreError
from simsearch.index import open_index
from simsearch.integrity import check_index
from simsearch.scoring import Offsets, adjusted_search, build_background
from simsearch.vectors import VectorIndex, physical
from test_scoring import brute_force, gram_of, random_unit, unit


class Counting(VectorIndex):
    """Records how many candidates each search was asked for, and in which ranking."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fetches = []

    def search(self, queries, k, offsets=None):
        self.fetches.append((len(queries), k, offsets is not None))
        return super().search(queries, k, offsets)


def test_physical_width_of_each_kind():
    assert physical("Flat", 256) == ("Flat", 257)
    assert physical("HNSW32,Flat", 256) == ("HNSW32,Flat", 257)
    assert physical("IVF1024,Flat", 256) == ("IVF1024,Flat", 257)
    assert physical("IVF1024,SQ8", 256) == ("IVF1024,SQ8", 272)  # FAISS's SIMD SQ code: 16s
    assert physical("IVF1024,PQ128", 256) == ("IVF1024,PQ129", 258)  # one more 2-d sub-quantiser
    assert physical("IVF64,PQ16x4", 64) == ("IVF64,PQ17x4", 68)
    with pytest.raises(IndexStoreError, match="do not divide"):
        physical("IVF64,PQ7", 64)


def crowded(n: int, dim: int, seed: int):
    """Vectors crowding around a few centres (cosine ranks and adjusted ranks disagree a lot),
    queries among them, and near-copies of some queries (above the taper's knee)."""
    rng = np.random.default_rng(seed)
    centres = random_unit(8, dim, seed + 1)
    refs = unit(centres[rng.integers(0, 8, n)] + 1.2 * rng.standard_normal((n, dim)) / np.sqrt(dim))
    queries = unit(centres[rng.integers(0, 8, 60)] + 1.2 * rng.standard_normal((60, dim)) / np.sqrt(dim))
    refs[:20] = unit(queries[:20] + 0.01 * rng.standard_normal((20, dim)) / np.sqrt(dim))
    return refs, queries


@pytest.mark.parametrize("k", [1, 5, 40])
def test_shifted_search_gives_the_exact_adjusted_top_k_in_fewer_candidates(k):
    dim = 16
    refs, queries = crowded(3000, dim, 0)
    bg = build_background(random_unit(60, dim, 9), "m", beta=1.5, delta=0.25)
    offsets = bg.offsets(refs)
    ids = np.arange(len(refs)) + 500
    stored = Offsets(ids, offsets)
    want_scores, want_rows = brute_force(queries, refs, bg, k)
    fetched = {}
    for shifted in (False, True):
        store = Counting(dim, column="bg")
        store.add(ids, refs, offsets)
        scores, found = adjusted_search(store, queries, k, bg, stored, shifted=shifted)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        uncapped = want_scores < 1 - 1e-6  # scores capped at 1 tie, in any order
        np.testing.assert_array_equal((found - 500)[uncapped], want_rows[uncapped])
        assert all(f[2] == shifted for f in store.fetches)
        fetched[shifted] = sum(n * f for n, f, _ in store.fetches)
    assert (want_scores > 0.97).any()  # the near-copies put some results above the knee
    assert fetched[True] < fetched[False] / 2


def inverted(factory: str, n: int, seed: int):
    """An inverted-file index probing all its 16 lists over `crowded` vectors with their
    offsets in the column: (store, refs, queries, background, offsets, ids)."""
    dim = 16
    refs, queries = crowded(n, dim, seed)
    bg = build_background(random_unit(60, dim, seed + 7), "m", beta=1.5, delta=0.25)
    offsets = bg.offsets(refs)
    ids = np.arange(len(refs))
    store = VectorIndex(dim, factory, params={"nprobe": 16}, column="bg")
    store.train(refs, offsets)
    store.add(ids, refs, offsets)
    return store, refs, queries, bg, offsets, ids


def test_shifted_search_on_an_inverted_file_probing_every_list_is_exact():
    store, refs, queries, bg, offsets, ids = inverted("IVF16,Flat", 4000, 1)
    scores, found = adjusted_search(store, queries, 10, bg, Offsets(ids, offsets), shifted=True)
    want_scores, want_rows = brute_force(queries, refs, bg, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_pq_codes_keep_the_column_and_rescored_results_are_exact_scores():
    store, refs, queries, bg, offsets, ids = inverted("IVF16,PQ8", 6000, 2)
    dim = store.dim
    inner = faiss.downcast_index(store.index)
    wide = store._widen(refs[:500], -offsets[:500])
    decoded = inner.sa_decode(inner.sa_encode(wide))[:, dim]
    assert np.corrcoef(decoded, -offsets[:500])[0, 1] > 0.9  # trained on real offsets, not zeros
    store.rescore_with(lambda wanted: refs[wanted])
    scores, found = adjusted_search(store, queries, 10, bg, Offsets(ids, offsets), shifted=True)
    exact = gram_of(np.concatenate([queries, refs]), np.concatenate([bg.offsets(queries), offsets]))
    exact = exact[:len(queries), len(queries):]
    np.testing.assert_allclose(scores, np.take_along_axis(exact, found, 1), atol=1e-5)
    _, want_rows = brute_force(queries, refs, bg, 10)
    recall = np.mean([len(set(f) & set(w)) / 10 for f, w in zip(found.tolist(), want_rows.tolist())])
    assert recall >= 0.9


def test_a_search_by_column_needs_one():
    store = VectorIndex(4)
    store.add(np.arange(3), random_unit(3, 4, 0))
    old = VectorIndex(4, index=faiss.IndexIDMap2(faiss.IndexFlatIP(4)))
    assert store.has_column and not old.has_column
    with pytest.raises(ValueError, match="no score column"):
        old.search(random_unit(1, 4, 1), 1, offsets=lambda ids: np.zeros(len(ids), np.float32))


def loaded(index):
    vectors, _ = index._load()
    return vectors


def test_index_column_follows_the_background_and_old_files_still_load(tmp_path, tiny_model):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    photos = tmp_path / "photos"
    write_pictures(photos, 14, seed=4)
    plain = open_index(tmp_path / "plain", model=model_dir, create=True)
    plain.add_paths([photos])
    paths, vectors = plain.vectors()
    bg = build_background(vectors[:6], plain.model.model_id, beta=2.0, delta=0.3)
    bg.save(model_dir / "model.background.npz")

    folder = tmp_path / "adjusted"
    index = open_index(folder, model=model_dir, create=True)
    index.add_paths([photos])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["vectors"]["column"] == bg.fingerprint == manifest["scoring"]
    store = loaded(open_index(folder, model=model_dir))
    assert store.has_column and store.column == bg.fingerprint
    assert not any("score column" in w for w in check_index(folder).warnings)

    def check(index, bg):
        gram = gram_of(vectors, bg.offsets(vectors))
        for row in (0, 5):
            got = index.search([paths[row]], k=4)[0].matches
            order = np.argsort(-gram[row], kind="stable")[:4]
            np.testing.assert_allclose([m.score for m in got], gram[row][order], atol=1e-4)
    check(open_index(folder, model=model_dir), bg)

    # a recalibrated background: the column is stale, searched by cosine, then rebuilt
    other = build_background(vectors[6:12], plain.model.model_id, beta=1.0, delta=0.2)
    other.save(model_dir / "model.background.npz")
    reopened = open_index(folder, model=model_dir)
    assert loaded(reopened).column == bg.fingerprint != other.fingerprint
    check(reopened, other)
    reopened.add_paths([photos])
    assert loaded(open_index(folder, model=model_dir)).column == other.fingerprint

    # a vectors.faiss from before the column (as wide as the vectors) is read and searched
    ids, rows = [], []
    catalog = reopened.catalog()
    for batch_ids, batch in catalog.vectors():
        ids.append(batch_ids)
        rows.append(batch)
    catalog.close()
    before = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    before.add_with_ids(np.concatenate(rows), np.concatenate(ids))
    faiss.write_index(before, str(folder / "vectors.faiss"))
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["vectors"]["column"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = open_index(folder, model=model_dir)
    assert not loaded(old).has_column
    assert any("no score column" in w for w in check_index(folder).warnings)
    check(open_index(folder, model=model_dir), other)
    old.add_paths([photos])  # the next commit adds the column
    assert loaded(open_index(folder, model=model_dir)).column == other.fingerprint


def test_an_identical_copy_ranked_last_by_the_column_is_still_found():
    """The copy (cosine 1, offset +half) ranks behind every look-alike (cosine 0.85-0.9, offset
    -half) by cos - o(b), yet scores 1: only the taper's share of the bound fetches it."""
    dim, half = 8, 0.1
    q = np.eye(dim, dtype=np.float32)[:1]
    rng = np.random.default_rng(0)
    cos = rng.uniform(0.85, 0.9, 200).astype(np.float32)
    side = unit(rng.standard_normal((200, dim - 1)))
    others = np.concatenate([cos[:, None], np.sqrt(1 - cos ** 2)[:, None] * side], 1)
    refs = np.concatenate([q, others]).astype(np.float32)
    offsets = np.concatenate([[half], np.full(200, -half)]).astype(np.float32)
    bg = build_background(np.concatenate([q, random_unit(20, dim, 5)]), "m", beta=1.0,
                          delta=2 * half)
    assert bg.offsets(q)[0] == pytest.approx(half)  # the query sits on a background picture
    ids = np.arange(201)
    store = Counting(dim, column="bg")
    store.add(ids, refs, offsets)
    scores, found = adjusted_search(store, q, 1, bg, Offsets(ids, offsets), shifted=True)
    assert found[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0)
    assert len(store.fetches) > 1  # the first round did not reach it
