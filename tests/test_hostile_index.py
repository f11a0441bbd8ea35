"""Hostile index folders and stale rows (issue 17, points 1, 2, 3 and 7): links planted where
simsearch writes, a model change cut short, rows that no longer describe their file, two paths
of one file, planted SQLite objects and foreign vector files. Each test is named after its point.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_pictures
from simsearch import open_index
from simsearch.cli import main
from simsearch.errors import IndexStoreError, ModelMismatchError
from simsearch.integrity import check_index


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _indexed(tmp_path, tiny_model, photos):
    index_dir = tmp_path / "idx"
    result = _run("index", photos, "--index", index_dir, "--model", tiny_model / "model.onnx", "-q")
    assert result.exit_code == 0, result.output
    return index_dir


@pytest.fixture
def holiday(tmp_path):
    """A user's photo that a planted link points at."""
    path = tmp_path / "Pictures" / "holiday.jpg"
    write_pictures(path.parent, 1, seed=42)
    (path.parent / "img000.jpg").rename(path)
    return path


# -- 17.1: links in an index folder are never followed for writing -------------------------------
@pytest.mark.parametrize("name", ["lock", "manifest.json", "vectors.faiss", "catalog.sqlite-wal",
                                  "checked.npz"])
def test_17_1_a_link_where_simsearch_writes_is_refused(tmp_path, tiny_model, photos, holiday, name):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    before = _digest(holiday)
    (index_dir / name).unlink(missing_ok=True)
    (index_dir / name).symlink_to(holiday)
    write_pictures(tmp_path / "new", 2, seed=9)
    for args in (["index", photos, tmp_path / "new", "--index", index_dir, "-q"],
                 ["check", "--repair", "--index", index_dir]):
        result = _run(*args)
        assert result.exit_code == 1, result.output
        assert "is a symbolic link" in result.output and name in result.output
        assert "Traceback" not in result.output
    assert _digest(holiday) == before


@pytest.mark.parametrize("name", ["manifest.json.tmp", "vectors.faiss.tmp"])
def test_17_1_a_planted_temp_link_is_removed_not_written_through(tmp_path, tiny_model, photos,
                                                                  holiday, name):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    before = _digest(holiday)
    (index_dir / name).symlink_to(holiday)
    write_pictures(tmp_path / "new", 2, seed=9)
    assert _run("index", photos, tmp_path / "new", "--index", index_dir, "-q").exit_code == 0
    assert _digest(holiday) == before and not os.path.lexists(index_dir / name)
    (index_dir / name).symlink_to(holiday)
    (index_dir / "vectors.faiss").unlink()  # so that the repair writes both files
    assert _run("check", "--repair", "--index", index_dir).exit_code == 0
    assert _digest(holiday) == before and not os.path.lexists(index_dir / name)
    assert open_index(index_dir).count() == 10


def test_17_1_the_check_never_writes_its_verdicts_through_a_planted_link(tmp_path, tiny_model,
                                                                          photos, holiday):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    before = _digest(holiday)
    (index_dir / "checked.npz.tmp").symlink_to(holiday)
    result = _run("dedupe", "--index", index_dir, "--threshold", "-1", "-q")
    assert result.exit_code == 0, result.output
    assert _digest(holiday) == before and not os.path.lexists(index_dir / "checked.npz.tmp")
    assert (index_dir / "checked.npz").is_file()  # written beside it instead
    (index_dir / "checked.npz").unlink()
    (index_dir / "checked.npz").symlink_to(holiday)
    result = _run("dedupe", "--index", index_dir, "--threshold", "-1", "-q")
    assert result.exit_code == 1 and "is a symbolic link" in result.output
    assert _digest(holiday) == before


def test_17_1_export_never_writes_through_its_temp_name(tmp_path, tiny_model, photos, holiday):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    before = _digest(holiday)
    out = tmp_path / "out.npz"
    (tmp_path / "out.npz.tmp").symlink_to(holiday)
    result = _run("export", "--out", out, "--index", index_dir)
    assert result.exit_code == 0, result.output
    assert _digest(holiday) == before and len(np.load(out)["paths"]) == 8


# -- 17.2: a model change is all or nothing ---------------------------------------------------------
def _other_model(tmp_path, tiny_model):
    """The tiny model under another identity: to simsearch, a different model."""
    import onnx

    proto = onnx.load(str(tiny_model / "model.onnx"))
    for prop in proto.metadata_props:
        if prop.key == "simsearch_model_id":
            prop.value = "b" * 64
    path = tmp_path / "other" / "model.onnx"
    path.parent.mkdir()
    onnx.save(proto, str(path))
    return path


def test_17_2_a_rebuild_cut_short_is_finished_by_the_next_run(tmp_path, tiny_model, photos):
    write_pictures(photos / "more", 30, seed=3)
    index_dir = _indexed(tmp_path, tiny_model, photos)
    other = _other_model(tmp_path, tiny_model)
    index = open_index(index_dir, model=other)

    def stop(done, total):
        if done >= 8:
            raise KeyboardInterrupt  # the process dies after some batches were committed
    with pytest.raises(KeyboardInterrupt):
        index.add_paths([photos], progress=stop, batch_size=4, workers=1, rebuild=True)
    # right after the kill: the catalog, not the stale manifest, says which model made its
    # vectors, so a query embeds with that model and finds the picture itself
    reopened = open_index(index_dir)
    assert reopened.model.model_id == "b" * 64
    assert reopened.unfinished_rebuild() == [str(photos)]
    hit = reopened.search([photos / "img005.jpg"], k=1)[0].matches
    assert not hit or hit[0].score > 0.99
    assert any("--rebuild was stopped" in p for p in check_index(index_dir).problems)
    # resuming with the old model is refused with the command that finishes the job
    result = _run("index", photos, "--index", index_dir, "--model", tiny_model / "model.onnx")
    assert result.exit_code == 1 and f"--model {other}" in result.output
    # a plain run finishes the rebuild with the new model
    assert _run("index", photos, "--index", index_dir, "-q").exit_code == 0
    index = open_index(index_dir)
    assert index.count() == 38 and index.unfinished_rebuild() is None
    catalog = index.catalog()
    assert catalog.models_in_use() == {"b" * 64: 38}
    catalog.close()
    assert check_index(index_dir).problems == []


def test_17_2_vectors_of_two_models_are_found_and_refused(tmp_path, tiny_model, photos):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    db = sqlite3.connect(index_dir / "catalog.sqlite")
    db.execute("INSERT INTO models (key, id, record) VALUES (7, ?, '{}')", ("c" * 64,))
    db.execute("UPDATE images SET model = 7 WHERE id IN (SELECT id FROM images LIMIT 3)")
    db.commit()
    db.close()
    report = check_index(index_dir)
    assert any("vectors of 2 models" in p for p in report.problems) and not report.ok
    with pytest.raises(IndexStoreError, match="several models"):
        check_index(index_dir, repair=True)
    with pytest.raises(ModelMismatchError, match="vectors of 2 models"):
        open_index(index_dir).add_paths([photos])


# -- 17.3: rows that no longer describe a file leave every group ------------------------------------
def test_17_3_a_file_damaged_after_indexing_leaves_its_group(tmp_path, tiny_model, photos):
    shutil.copy(photos / "img001.jpg", photos / "copy.jpg")
    index_dir = _indexed(tmp_path, tiny_model, photos)
    assert any(set(g.files) == {str(photos / "img001.jpg"), str(photos / "copy.jpg")}
               for g in open_index(index_dir).duplicates(0.99).groups)
    data = (photos / "copy.jpg").read_bytes()
    (photos / "copy.jpg").write_bytes(data[:200])  # damaged: no longer decodes
    result = _run("index", photos, "--index", index_dir, "-q")
    assert result.exit_code == 0 and "copy.jpg" in result.output
    groups = open_index(index_dir).duplicates(0.99).groups
    assert all(str(photos / "copy.jpg") not in g.files for g in groups)
    assert open_index(index_dir).count() == 8


def test_17_3_two_paths_of_one_file_are_not_duplicates(tmp_path, tiny_model, photos):
    (photos / "link.jpg").symlink_to(photos / "img002.jpg")
    os.link(photos / "img003.jpg", photos / "hard.jpg")
    index_dir = _indexed(tmp_path, tiny_model, photos)
    assert open_index(index_dir).count() == 10
    for group in open_index(index_dir).duplicates(0.99).groups:
        stats = {(os.stat(f).st_dev, os.stat(f).st_ino) for f in group.files}
        assert len(stats) == len(group.files), group.files


# -- 17.7: check verifies vectors; files simsearch did not write are refused -------------------------
def test_17_7_a_planted_trigger_is_refused(tmp_path, tiny_model, photos):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    db = sqlite3.connect(index_dir / "catalog.sqlite")
    db.execute("CREATE TABLE log (x)")
    db.execute("CREATE TRIGGER spy AFTER UPDATE ON meta BEGIN INSERT INTO log VALUES (1); END")
    db.commit()
    db.close()
    for args in (["index", photos], ["query", photos / "img001.jpg"], ["dedupe"], ["check"]):
        result = _run(*args, "--index", index_dir)
        assert result.exit_code == 1 and "never creates" in result.output, (args, result.output)
    db = sqlite3.connect(index_dir / "catalog.sqlite")
    assert db.execute("SELECT COUNT(*) FROM log").fetchone()[0] == 0
    db.close()


def test_17_7_a_foreign_sqlite_file_is_not_taken_over(tmp_path, tiny_model, photos):
    index_dir = tmp_path / "idx"
    index_dir.mkdir()
    db = sqlite3.connect(index_dir / "catalog.sqlite")
    db.execute("CREATE TABLE contacts (name, phone)")
    db.execute("INSERT INTO contacts VALUES ('a', '1')")
    db.commit()
    db.close()
    before = _digest(index_dir / "catalog.sqlite")
    result = _run("index", photos, "--index", index_dir, "--model", tiny_model / "model.onnx")
    assert result.exit_code == 1 and "not a simsearch catalog" in result.output
    assert _digest(index_dir / "catalog.sqlite") == before


def test_17_7_a_catalog_left_by_a_kill_inside_its_first_transaction(tmp_path, tiny_model, photos):
    index_dir = tmp_path / "idx"
    index_dir.mkdir()
    db = sqlite3.connect(index_dir / "catalog.sqlite")  # tables made, version never written
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY AUTOINCREMENT, path BLOB NOT NULL "
               "UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, "
               "width INTEGER NOT NULL, height INTEGER NOT NULL, vector BLOB NOT NULL)")
    db.commit()
    db.close()
    result = _run("index", photos, "--index", index_dir, "--model", tiny_model / "model.onnx", "-q")
    assert result.exit_code == 0, result.output
    assert check_index(index_dir).problems == [] and open_index(index_dir).count() == 8


def _foreign_vectors(index_dir, make):
    """Replace vectors.faiss by another index over the same ids (8 vectors)."""
    catalog = open_index(index_dir).catalog()
    ids, vectors = next(catalog.vectors())
    catalog.close()
    index = faiss.IndexIDMap2(make(vectors.shape[1]))
    if not index.is_trained:
        index.train(np.tile(vectors, (40, 1)) + np.random.default_rng(0).normal(
            0, 0.01, (320, vectors.shape[1])).astype(np.float32))
    index.add_with_ids(np.roll(vectors, 1, axis=0), ids)  # each id holds its neighbour's vector
    faiss.write_index(index, str(index_dir / "vectors.faiss"))


@pytest.mark.parametrize("kind", ["rotated flat", "hnsw", "ivf", "pq"])
def test_17_7_a_foreign_vector_file_with_the_right_ids_is_never_used(tmp_path, tiny_model, photos,
                                                                      kind):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    make = {"rotated flat": lambda d: faiss.IndexFlatIP(d),
            "hnsw": lambda d: faiss.IndexHNSWFlat(d, 8, faiss.METRIC_INNER_PRODUCT),
            "ivf": lambda d: faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 2,
                                                faiss.METRIC_INNER_PRODUCT),
            "pq": lambda d: faiss.IndexPQ(d, 4, 4, faiss.METRIC_INNER_PRODUCT)}[kind]
    _foreign_vectors(index_dir, make)
    report = check_index(index_dir)
    assert not report.ok and any("vectors.faiss" in p for p in report.problems), report.problems
    for name in sorted(os.listdir(photos)):
        match = open_index(index_dir).search([photos / name], k=1)[0].matches[0]
        assert match.path == str(photos / name)
    check_index(index_dir, repair=True)
    assert check_index(index_dir).problems == []


# -- found in review: hard links, stale handles and files, a first run cut short -----------------
@pytest.mark.parametrize("name", ["lock", "catalog.sqlite-shm"])
def test_17_1_a_hard_link_where_simsearch_writes_is_refused(tmp_path, tiny_model, photos, holiday,
                                                             name):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    before = _digest(holiday)
    (index_dir / name).unlink(missing_ok=True)
    os.link(holiday, index_dir / name)
    for args in (["index", photos, "--index", index_dir, "-q"],
                 ["query", photos / "img001.jpg", "--index", index_dir]):
        result = _run(*args)
        assert result.exit_code == 1 and "hard link" in result.output, result.output
    assert _digest(holiday) == before


def test_17_2_a_handle_opened_before_another_writer_changed_the_model(tmp_path, tiny_model, photos):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    stale = open_index(index_dir, model=tiny_model / "model.onnx")
    open_index(index_dir, model=_other_model(tmp_path, tiny_model)).add_paths([photos], rebuild=True)
    with pytest.raises(ModelMismatchError):
        stale.add_paths([photos])  # the model is read again under the writer lock
    catalog = open_index(index_dir).catalog()
    assert catalog.models_in_use() == {"b" * 64: 8}
    catalog.close()


def test_17_3_files_changed_or_gone_since_indexing_leave_every_group(tmp_path, tiny_model, photos):
    shutil.copy(photos / "img001.jpg", photos / "copy1.jpg")
    shutil.copy(photos / "img002.jpg", photos / "copy2.jpg")
    index_dir = _indexed(tmp_path, tiny_model, photos)
    shutil.copy(photos / "img003.jpg", photos / "img001.jpg")  # overwritten, not re-indexed
    (photos / "img002.jpg").unlink()
    report = open_index(index_dir).duplicates(0.99)
    assert sorted(report.stale) == [str(photos / "img001.jpg"), str(photos / "img002.jpg")]
    assert not {str(photos / "img001.jpg"), str(photos / "img002.jpg")} & {
        f for g in report.groups for f in g.files}
    result = _run("dedupe", "--index", index_dir)
    assert "left out 2 files that changed or are gone" in result.output


def test_17_7_a_first_run_killed_before_its_first_transaction(tmp_path, tiny_model, photos):
    index_dir = tmp_path / "idx"
    index_dir.mkdir()
    db = sqlite3.connect(index_dir / "catalog.sqlite")
    db.execute("PRAGMA journal_mode=WAL")  # the header is written, nothing else
    db.close()
    for args in (["query", photos / "img001.jpg"], ["check"], ["dedupe"]):
        result = _run(*args, "--index", index_dir)
        assert result.exit_code == 1 and "never finished being created" in result.output
    result = _run("index", photos, "--index", index_dir, "--model", tiny_model / "model.onnx", "-q")
    assert result.exit_code == 0, result.output
    assert check_index(index_dir).problems == []


def test_17_7_a_manifest_naming_a_vector_index_simsearch_does_not_build(tmp_path, tiny_model, photos):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    for factory in ("bogus", "IVF16,Flat", "HNSW32"):
        (index_dir / "manifest.json").write_text(json.dumps(dict(manifest, vectors={"factory": factory})))
        result = _run("query", photos / "img001.jpg", "--index", index_dir)
        assert result.exit_code == 1 and "check --repair" in result.output
        assert "Traceback" not in result.output
        assert _run("check", "--repair", "--index", index_dir).exit_code == 0
        assert check_index(index_dir).problems == []


def test_a_pair_exactly_at_the_threshold_is_grouped():
    from simsearch.dedupe import find_groups

    vectors = np.array([[1, 0], [0.5, np.sqrt(0.75)]], np.float32)
    groups = find_groups(np.array([1, 2]), vectors, np.zeros(2, np.float32),
                         np.array(["a", "b"]), 0.5)
    assert [sorted(g.ids) for g in groups] == [[1, 2]]


def test_relocate_refuses_a_file_that_is_not_the_one_indexed(tmp_path, tiny_model, photos):
    from simsearch.errors import SimsearchError

    index_dir = _indexed(tmp_path, tiny_model, photos)
    index = open_index(index_dir)
    with pytest.raises(SimsearchError, match="cannot follow"):
        index.relocate({photos / "img001.jpg": tmp_path / "nowhere.jpg"})
    with pytest.raises(SimsearchError, match="is not the file indexed"):
        index.relocate({photos / "img001.jpg": photos / "img002.jpg"})
    os.rename(photos / "img001.jpg", tmp_path / "moved.jpg")
    assert index.relocate({photos / "img001.jpg": tmp_path / "moved.jpg"}) == 1
    assert open_index(index_dir).search([tmp_path / "moved.jpg"], k=1)[0].matches[0].path == \
        str(tmp_path / "moved.jpg")


def test_check_repair_does_not_call_an_unfinished_rebuild_ok(tmp_path, tiny_model, photos):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    catalog = open_index(index_dir).catalog(readonly=False)
    with catalog.transaction():
        catalog.set_meta("rebuild", json.dumps([str(photos)]))
    catalog.close()
    result = _run("check", "--repair", "--index", index_dir)
    assert result.exit_code == 1 and f"simsearch index {photos} --index {index_dir}" in result.output


def test_an_index_of_the_previous_format_is_named_as_such_and_upgraded(tmp_path, tiny_model, photos):
    index_dir = _indexed(tmp_path, tiny_model, photos)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    (index_dir / "manifest.json").write_text(json.dumps(dict(manifest, format_version=1)))
    report = check_index(index_dir)
    assert "written by an older simsearch (index format 1" in report.problems[0]
    assert open_index(index_dir).search([photos / "img001.jpg"], k=1)[0].matches  # still answers
    assert check_index(index_dir, repair=True).ok and check_index(index_dir).problems == []


def test_a_link_whose_target_is_gone_leaves_the_index(tmp_path, tiny_model, photos,
                                                     monkeypatch):
    """A hostile tester's case (session 32): a symbolic link indexed while its target existed
    stayed in the index for ever once the target was deleted (each run said "broken symbolic
    link" and kept its row), and query answered it. It is forgotten as a deleted file is; a
    file that cannot be read today is kept."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "far.jpg"
    shutil.copy(photos / "img003.jpg", target)
    (photos / "img003.jpg").unlink()
    (photos / "link.jpg").symlink_to(target)
    index_dir = _indexed(tmp_path, tiny_model, photos)
    query = _run("query", target, "--index", index_dir, "-k", "1", "--json")
    assert json.loads(query.stdout)["results"][0]["path"] == str(photos / "link.jpg")
    target.unlink()
    locked, real_stat = photos / "img004.jpg", os.stat

    def stat(path, *args, **kwargs):  # img004 cannot be read today (a folder's rights)
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", stat)
    result = _run("index", photos, "--index", index_dir, "--json", "-q")
    monkeypatch.setattr(os, "stat", real_stat)
    assert result.exit_code == 0 and json.loads(result.stdout)["removed"] == 1, result.output
    query = _run("query", photos / "img001.jpg", "--index", index_dir, "-k", "100", "--json")
    found = {r["path"] for r in json.loads(query.stdout)["results"]}
    assert str(photos / "link.jpg") not in found and str(locked) in found
