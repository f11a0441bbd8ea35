"""Approximate vector search: the automatic choice, every kind against the exact oracle,
removal, what the manifest and check record, vectors.f16, and `simsearch serve`."""
import json
import os
import shutil
import threading
import urllib.request

import numpy as np
import pytest

from conftest import write_pictures
from simsearch import open_index
from simsearch import vectors as vectors_module
from simsearch.catalog import Catalog
from simsearch.errors import IndexStoreError
from simsearch.integrity import check_index
from simsearch.scoring import Offsets, adjust, adjusted_search, build_background
from simsearch.store import write_atomic
from simsearch.vectorfile import VectorFile
from simsearch.vectors import (FLAT_LIMIT, VectorIndex, choose, measure_recall,
                               parse_ann)

GB = 1 << 30


def _clustered(n, d, seed, clusters=40):
    """Unit vectors around `clusters` centres (pair scores like real pictures: most far, some
    near), seeded."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_choice_follows_count_and_memory():
    assert choose(1000, 256, 8 * GB).factory == "Flat"
    assert choose(FLAT_LIMIT, 256, 8 * GB).factory == "Flat"
    assert choose(FLAT_LIMIT + 1, 256, 8 * GB).factory.startswith("IVF")
    big = choose(3_000_000, 256, 16 * GB)
    assert big.factory.endswith(",Flat") and big.factory.startswith("IVF") and big.params["nprobe"] >= 16
    # memory decides the codes: float32 (1 KB), SQ8 (256 B), PQ (a few dozen bytes) a vector
    assert choose(10_000_000, 256, 12 * GB).factory.endswith(",Flat")
    assert choose(10_000_000, 256, 4 * GB).factory.endswith(",SQ8")
    pq = choose(10_000_000, 256, 1 * GB)
    assert ",PQ" in pq.factory and 10_000_000 * (int(pq.factory.split("PQ")[1]) + 8) <= 1 * GB
    # a small budget takes even a small index off Flat
    assert choose(FLAT_LIMIT // 2, 256, 100 << 20).factory.startswith("IVF")
    # kinds are forced; IVF needs vectors to train on, so a tiny index stays exact
    assert choose(50, 256, 8 * GB, "hnsw").factory.startswith("HNSW")
    assert choose(50, 256, 8 * GB, "ivf").factory == "Flat"
    assert choose(5000, 256, 8 * GB, "ivfpq").factory.startswith("IVF")
    assert parse_ann("HNSW16,Flat") == "HNSW16,Flat" and parse_ann("Auto") == "auto"
    with pytest.raises(IndexStoreError, match="--ann 'HNWS'"):
        parse_ann("HNWS")
    for foreign in ("IVF1000000000,Flat", "PQ8", "HNSW32", "OPQ16,IVF64,PQ16"):
        with pytest.raises(IndexStoreError, match="not one this simsearch builds"):
            parse_ann(foreign)  # only the families simsearch builds, with bounded parameters


@pytest.mark.parametrize("kind,bound", [("hnsw", 0.95), ("ivf", 0.9), ("ivfsq", 0.9),
                                        ("ivfpq", 0.85)])
def test_each_kind_against_the_exact_oracle(kind, bound):
    base, queries = _clustered(4000, 32, 0), _clustered(60, 32, 1)
    ids = np.arange(4000, dtype=np.int64) * 3 + 7
    choice = choose(len(base), 32, GB, kind)
    store = VectorIndex(32, choice.factory, params=choice.params)
    if store.needs_training:
        store.train(base)
    store.add(ids, base)
    stored = dict(zip(ids.tolist(), base))
    store.rescore_with(lambda wanted: np.stack([stored[int(i)] for i in wanted]))
    assert not store.exact
    recall = measure_recall(store, queries, lambda: iter([(ids, base)]))
    assert recall >= bound, (kind, recall)
    # every returned score is the exact adjusted score, whatever the index compressed
    background = build_background(_clustered(300, 32, 2), "m", beta=1.0, delta=0.1)
    offsets = Offsets(ids, background.offsets(base))
    scores, found = adjusted_search(store, queries, 10, background, offsets)
    assert (found >= 0).all()
    rows = (found - 7) // 3
    cosines = np.einsum("qd,qkd->qk", queries, base[rows])
    want = adjust(cosines, background.offsets(queries)[:, None] + offsets.of(found))
    np.testing.assert_allclose(scores, want, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivfsq", "ivfpq"])
def test_removal_works_for_every_kind(tmp_path, kind):
    base = _clustered(2000, 16, 3)
    ids = np.arange(2000, dtype=np.int64) + 100
    choice = choose(len(base), 16, GB, kind)
    store = VectorIndex(16, choice.factory, params=choice.params)
    if store.needs_training:
        store.train(base)
    store.add(ids, base)
    gone = ids[::3]
    assert store.remove(gone) == len(gone)
    assert store.remove(gone[:5]) == 0  # already gone
    write_atomic(tmp_path / "v.faiss", store.save_to)
    loaded = VectorIndex.load(tmp_path / "v.faiss", 16, choice.factory, choice.params)
    for index in (store, loaded):
        assert index.count == 2000 - len(gone)
        assert sorted(index.ids().tolist()) == sorted(set(ids.tolist()) - set(gone.tolist()))
        _, found = index.search(base[:50], 20)
        assert not np.isin(found, gone).any() and (found >= 0).all()
        kept = ids[1]
        assert kept in index.search(base[1:2], 5)[1][0]


def _index(tmp_path, tiny_model, name="idx"):
    return open_index(tmp_path / name, model=tiny_model / "model.onnx", create=True)


def test_manifest_records_factory_parameters_and_recall_and_check_reports_it(
        tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos], ann="hnsw")
    described = json.loads((index.folder / "manifest.json").read_text())["vectors"]
    assert described["factory"].startswith("HNSW") and described["ann"] == "hnsw"
    assert described["params"]["efSearch"] >= 16 and described["recall_at_10"] == 1.0
    report = check_index(index.folder)
    assert report.ok and report.recall == 1.0 and report.factory.startswith("HNSW")
    exact = _index(tmp_path, tiny_model, "flat")
    exact.add_paths([photos])
    assert json.loads((exact.folder / "manifest.json").read_text())["vectors"] == {
        "factory": "Flat", "params": {}, "ann": "auto", "column": "cosine"}
    files = sorted(str(p) for p in photos.iterdir())
    for a, b in zip(index.search(files, k=5), exact.search(files, k=5)):
        assert [m.path for m in a.matches] == [m.path for m in b.matches]
        np.testing.assert_allclose([m.score for m in a.matches], [m.score for m in b.matches],
                                   atol=1e-6)
    # a lossy index (SQ8 codes) still gives exact scores: re-scored from vectors.f16
    lossy = _index(tmp_path, tiny_model, "sq")
    lossy.add_paths([photos], ann="IVF2,SQ8")
    for a, b in zip(open_index(lossy.folder).search(files, k=5), exact.search(files, k=5)):
        assert {m.path for m in a.matches} <= {m.path for m in b.matches} | {a.matches[-1].path}
        for m in a.matches:
            want = next((x.score for x in b.matches if x.path == m.path), None)
            if want is not None:
                assert abs(m.score - want) < 2e-3  # float16 stored vectors
    # a low recall is flagged by check, not hidden
    manifest = json.loads((lossy.folder / "manifest.json").read_text())
    manifest["vectors"]["recall_at_10"] = 0.5
    (lossy.folder / "manifest.json").write_text(json.dumps(manifest))
    report = check_index(lossy.folder)
    assert report.recall == 0.5 and "recall@10 below 0.95" in report.warnings[0]


def test_removal_and_size_boundaries_through_the_index(tmp_path, tiny_model, monkeypatch):
    photos = tmp_path / "photos"
    write_pictures(photos, 6)
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos], ann="hnsw")
    os.remove(photos / "img002.jpg")
    index.add_paths([photos])  # stays HNSW (recorded), the removed picture is never returned
    assert index.factory.startswith("HNSW") and index.count() == 5
    files = sorted(str(p) for p in photos.iterdir())
    assert all(str(photos / "img002.jpg") not in [m.path for m in r.matches]
               for r in open_index(index.folder).search(files, k=10))
    auto = _index(tmp_path, tiny_model, "auto")
    monkeypatch.setattr(vectors_module, "FLAT_LIMIT", 7)
    monkeypatch.setattr(vectors_module, "_MIN_TRAIN", 4)  # IVF lists on a handful of vectors
    auto.add_paths([photos])
    assert auto.factory == "Flat"
    more = tmp_path / "more"
    write_pictures(more, 4, seed=7)
    auto.add_paths([photos, more])
    assert auto.count() == 9 and auto.factory.startswith("IVF")  # crossed: rebuilt
    assert check_index(auto.folder).ok
    auto.forget([str(more / "img000.jpg"), str(more / "img001.jpg")])  # back under: Flat again
    assert auto.count() == 7 and auto.factory == "Flat" and check_index(auto.folder).ok


def test_vector_file_is_rebuilt_when_stale_and_refused_through_a_link(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    write_pictures(photos, 6)
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    shelf = VectorFile(index.folder / "vectors.f16")
    catalog = Catalog(index.folder / "catalog.sqlite", readonly=True)
    ids, vectors = next(catalog.vectors())
    catalog.close()
    assert shelf.count == 6 and np.array_equal(shelf.ids, ids)
    np.testing.assert_allclose(shelf.get(ids[::-1]), vectors[::-1], atol=1e-3)
    old = tmp_path / "old.f16"
    shutil.copy(index.folder / "vectors.f16", old)
    write_pictures(tmp_path / "more", 2, seed=5)
    index.add_paths([tmp_path / "more"])
    shutil.copy(old, index.folder / "vectors.f16")  # a stale copy: ignored, reported, repaired
    files = [str(p) for p in sorted((tmp_path / "more").iterdir())]
    assert [r.matches[0].path for r in open_index(index.folder).search(files, k=1)] == files
    report = check_index(index.folder)
    assert not report.ok and any("vectors.f16 is stale" in p for p in report.problems)
    assert check_index(index.folder, repair=True).ok and check_index(index.folder).ok
    assert VectorFile(index.folder / "vectors.f16").count == 8
    os.remove(index.folder / "vectors.f16")
    os.symlink(old, index.folder / "vectors.f16")
    with pytest.raises(IndexStoreError, match="symbolic link"):
        open_index(index.folder)
    with pytest.raises(IndexStoreError):
        VectorFile(index.folder / "vectors.f16")


def test_paths_under_uses_a_path_range(tmp_path):
    catalog = Catalog(tmp_path / "c.sqlite")
    paths = ["/a/b/x.jpg", "/a/b/c/y.jpg", "/a/b2/z.jpg", "/a/b.jpg", "/a/c.jpg", "/a/b/\xe9.jpg"]
    with catalog.transaction():
        catalog.set_model(json.dumps({"name": "m", "id": "m", "config": {}}))
        for i, p in enumerate(paths):
            catalog.insert(p, 1, 1, f"{i:064x}", 1, 1, np.ones(4, np.float32))
    assert sorted(p for _, p in catalog.paths_under("/a/b")) == sorted(
        ["/a/b/x.jpg", "/a/b/c/y.jpg", "/a/b/\xe9.jpg"])
    plan = catalog.db.execute("EXPLAIN QUERY PLAN SELECT id, path FROM images WHERE path >= ? "
                              "AND path < ?", (b"/a/b/", b"/a/b0")).fetchall()
    assert "USING" in str(plan) and "INDEX" in str(plan)
    catalog.close()


def test_serve_answers_on_localhost(tmp_path, tiny_model, photos):
    from simsearch.server import make_server

    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    server = make_server(open_index(index.folder), "127.0.0.1", 0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(12)])
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=30).read())
        assert health["ok"] and health["images"] == 8
        first = sorted(photos.iterdir())[0]
        req = urllib.request.Request(url + "/query", json.dumps({"path": str(first), "k": 3}).encode(),
                                     {"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
        want = index.search([first], k=3)[0]
        assert [r["path"] for r in answer["results"]] == [m.path for m in want.matches]
        form = urllib.request.Request(url + "/query", json.dumps({"path": str(first), "k": 3}).encode(),
                                      {"Content-Type": "application/x-www-form-urlencoded"})
        assert json.loads(urllib.request.urlopen(form, timeout=30).read()) == answer  # curl -d
        req = urllib.request.Request(url + "/query?k=2", first.read_bytes(),
                                     {"Content-Type": "application/octet-stream"})
        answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
        assert answer["results"][0]["path"] == str(first) and len(answer["results"]) == 2
        req = urllib.request.Request(url + "/query", b"not a picture",
                                     {"Content-Type": "application/octet-stream"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 422
        # the picture check: on by default, off with "check": false or ?check=0; nothing else
        plain = urllib.request.Request(url + "/query", json.dumps(
            {"path": str(first), "k": 3, "check": False}).encode(), {"Content-Type": "application/json"})
        want = index.search([first], k=3, check=False)[0]
        assert [r["path"] for r in json.loads(urllib.request.urlopen(plain, timeout=30).read())[
            "results"]] == [m.path for m in want.matches]
        upload = urllib.request.Request(url + "/query?k=2&check=0", first.read_bytes(),
                                        {"Content-Type": "application/octet-stream"})
        assert len(json.loads(urllib.request.urlopen(upload, timeout=30).read())["results"]) == 2
        bad = json.dumps({"path": str(first), "check": "yes"}).encode()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(
                url + "/query", bad, {"Content-Type": "application/json"}), timeout=30)
        assert e.value.code == 400 and b"check must be true or false" in e.value.read()
        # what a web page sends is refused: cross-site (Origin), or through a rebound name
        for headers in ({"Content-Type": "text/plain", "Origin": "https://example.com"},
                        {"Content-Type": "application/json", "Host": f"evil.example:{port}"},
                        {"Content-Type": "application/json", "Host": f"127.evil.example:{port}"},
                        {"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}):
            page = urllib.request.Request(url + "/query", json.dumps(
                {"path": "/etc/shadow"}).encode(), headers)
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(page, timeout=30)
            assert e.value.code == 403 and b"refused" in e.value.read()
    finally:
        thread.join(timeout=60)
        server.server_close()
    assert not thread.is_alive()


def test_serve_refuses_a_body_that_is_not_a_query_with_a_reason(tmp_path, tiny_model, photos):
    """A hostile tester's requests (session 32): a JSON body that is no object dropped the
    connection with a traceback; k = 1e9 returned the whole index, true read as 1, a list as
    a path. Each is a 400 naming what is wrong; the server answers the next request."""
    from simsearch.server import make_server

    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    first = str(sorted(photos.iterdir())[0])
    bodies = {b"[1, 2]": b"must be an object", b"null": b"must be an object",
              b'"x"': b"must be an object",
              json.dumps({"path": first, "k": 1e9}).encode(): b"k must be a whole number",
              json.dumps({"path": first, "k": True}).encode(): b"k must be a whole number",
              json.dumps({"path": first, "k": 0}).encode(): b"k must be a whole number",
              json.dumps({"path": ["a"]}).encode(): b"path must be a file's path"}
    server = make_server(open_index(index.folder), "127.0.0.1", 0)
    port = server.server_address[1]
    thread = threading.Thread(target=lambda: [server.handle_request()
                                              for _ in range(len(bodies) + 3)])
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        for body, why in bodies.items():
            req = urllib.request.Request(url + "/query", body, {"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=30)
            assert e.value.code == 400 and why in e.value.read(), body
        req = urllib.request.Request(url + "/query?k=100000", open(first, "rb").read(),
                                     {"Content-Type": "application/octet-stream"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 400
        ok = urllib.request.Request(url + "/query", json.dumps({"path": first, "k": 2}).encode(),
                                    {"Content-Type": "application/json"})
        assert len(json.loads(urllib.request.urlopen(ok, timeout=30).read())["results"]) == 2
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=30).read())
        assert os.path.isabs(health["index"])
    finally:
        thread.join(timeout=60)
        server.server_close()
    assert not thread.is_alive()


def test_cli_ann_check_and_serve(tmp_path, tiny_model, photos):
    import subprocess
    import sys

    env = {**os.environ, "SIMSEARCH_INDEX": str(tmp_path / "idx")}
    cli = [sys.executable, "-m", "simsearch.cli"]
    model = ["--model", str(tiny_model / "model.onnx")]
    bad = subprocess.run(cli + ["index", str(photos), "--ann", "HNWS"] + model, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--ann 'HNWS'" in bad.stderr
    assert not (tmp_path / "idx" / "catalog.sqlite").exists() or \
        check_index(tmp_path / "idx").count == 0
    done = subprocess.run(cli + ["index", str(photos), "--ann", "hnsw", "-q"] + model, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    checked = subprocess.run(cli + ["check", "--json"], env=env, capture_output=True, text=True,
                             timeout=300)
    report = json.loads(checked.stdout)
    assert report["ok"] and report["vectors"]["recall_at_10"] == 1.0
    server = subprocess.Popen(cli + ["serve", "--port", "0"], env=env, stderr=subprocess.PIPE,
                              text=True)
    try:
        line = server.stderr.readline()
        assert "http://127.0.0.1:" in line
        url = line.split()[-3]  # "serving FOLDER on URL (Ctrl-C stops)"
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=60).read())
        assert health == {"ok": True, "index": str(tmp_path / "idx"), "images": 8}
    finally:
        server.terminate()
        server.wait(timeout=60)


def numbered_catalog(path, n: int) -> Catalog:
    """A catalog of n rows whose vectors hold their row number (id - 1)."""
    catalog = Catalog(path)
    with catalog.transaction():
        catalog.set_model(json.dumps({"name": "m", "id": "m", "config": {}}))
        for i in range(n):
            catalog.insert(f"/p/{i}.jpg", 1, 1, f"{i:064x}", 1, 1, np.full(4, i, np.float32))
    return catalog


def test_a_sample_of_a_catalog_is_distinct_rows_not_all_of_them(tmp_path):
    from simsearch.derived import sample_with_ids

    catalog = numbered_catalog(tmp_path / "c.sqlite", 3000)
    for seed in range(5):  # 500 draws of 3000 with replacement would repeat one: not all rows
        ids, vectors = sample_with_ids(catalog, 500, seed=seed)
        assert len(ids) == len(set(ids.tolist())) == 500
        np.testing.assert_array_equal(vectors[:, 0], ids - 1)
    assert len(sample_with_ids(catalog, 5000)[0]) == 3000  # more than there are: every row
    catalog.close()


def test_a_sample_makes_up_for_the_holes_removed_rows_leave(tmp_path):
    from simsearch.derived import sample_with_ids

    catalog = numbered_catalog(tmp_path / "c.sqlite", 4000)
    with catalog.transaction():
        catalog.delete(list(range(1, 4001, 4)) + list(range(2, 4001, 4)))  # half the ids: holes
    ids, vectors = sample_with_ids(catalog, 1000, seed=2)
    assert len(ids) == len(set(ids.tolist())) == 1000
    assert set(ids.tolist()) <= set(range(3, 4001, 4)) | set(range(4, 4001, 4))
    np.testing.assert_array_equal(vectors[:, 0], ids - 1)
    assert len(sample_with_ids(catalog, 5000)[0]) == 2000
    catalog.close()
