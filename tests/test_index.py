import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from conftest import make_picture, write_pictures
from simsearch import open_index
from simsearch.errors import IndexLockedError, IndexStoreError, ModelMismatchError, SimsearchError


def _index(tmp_path, tiny_model, name="idx"):
    return open_index(tmp_path / name, model=tiny_model / "model.onnx", create=True)


def test_round_trip_each_image_is_its_own_top_hit(tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    report = index.add_paths([photos])
    assert report.added == 8 and not report.skipped
    files = sorted(str(p) for p in photos.iterdir())
    for result in index.search(files, k=3):
        assert result.error is None
        assert result.matches[0].path == result.query
        assert result.matches[0].score > 0.99
        scores = [m.score for m in result.matches]
        assert scores == sorted(scores, reverse=True)


def test_an_indexed_query_comes_first_among_files_that_tie_with_it(tmp_path, tiny_model):
    """A newcomer's case (session 31): a file listed after another scoring the same 1.0000
    (identical pixels, other bytes), whichever was indexed first."""
    folder = tmp_path / "p"
    folder.mkdir()
    picture = make_picture(5)
    picture.save(folder / "a.png")
    picture.save(folder / "b.png", compress_level=1)  # other bytes, the same pixels
    index = _index(tmp_path, tiny_model)
    index.add_paths([folder])
    for name in ("a.png", "b.png"):
        result, = index.search([folder / name], k=2)
        assert result.matches[0].score == result.matches[1].score == pytest.approx(1.0)
        assert result.matches[0].path == str(folder / name)


def test_query_from_outside_the_index_and_bad_query(tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    outside = tmp_path / "q.png"
    Image.open(photos / "img003.jpg").resize((120, 90)).save(outside)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    good, bad = index.search([outside, tmp_path / "bad.jpg"], k=2)
    assert good.matches[0].path == str(photos / "img003.jpg")
    assert bad.error and not bad.matches


def test_incremental_add_modify_delete_rename(tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    again = index.add_paths([photos])
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 8, 0)

    vector_before = _vectors(index)[str(photos / "img002.jpg")]
    os.rename(photos / "img002.jpg", photos / "renamed.jpg")
    (photos / "img005.jpg").unlink()
    make_picture(99).save(photos / "img001.jpg", quality=92)  # new content, same name
    st = os.stat(photos / "img001.jpg")
    os.utime(photos / "img001.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    write_pictures(photos / "sub", 1, seed=7)
    report = index.add_paths([photos])
    assert (report.added, report.updated, report.moved, report.removed) == (1, 1, 1, 1)
    assert report.unchanged == 5
    vectors = _vectors(index)
    assert str(photos / "img002.jpg") not in vectors and str(photos / "img005.jpg") not in vectors
    np.testing.assert_array_equal(vectors[str(photos / "renamed.jpg")], vector_before)
    assert index.count() == 8
    # the FAISS file agrees with the catalog after the incremental run
    result = index.search([photos / "img001.jpg"], k=1)[0]
    assert result.matches[0].path == str(photos / "img001.jpg")


def test_touch_without_content_change_is_unchanged(tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    os.utime(photos / "img000.jpg", ns=(time.time_ns(), time.time_ns()))
    report = index.add_paths([photos])
    assert (report.added, report.updated, report.unchanged) == (0, 0, 8)


def test_other_roots_are_not_pruned(tmp_path, tiny_model, photos):
    other = tmp_path / "other"
    write_pictures(other, 2, seed=3)
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos, other])
    report = index.add_paths([other])
    assert report.removed == 0 and index.count() == 10


def test_skipped_files_are_listed_with_reasons(tmp_path, tiny_model, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_pictures(photos / "dir.jpg", 1, seed=5)  # a folder with an image's name is walked
    index = _index(tmp_path, tiny_model)
    with pytest.raises(SimsearchError, match="nowhere: no such file or folder; nothing was indexed"):
        index.add_paths([photos, tmp_path / "nowhere"])  # as the CLI refuses it
    assert not (tmp_path / "idx" / "catalog.sqlite").exists()
    report = index.add_paths([photos])
    reasons = {os.path.basename(s.path): s.reason for s in report.skipped}
    assert set(reasons) == {"broken.jpg"}
    assert report.added == 9


def test_dedupe_finds_planted_copies_and_not_unrelated(tmp_path, tiny_model, photos):
    shutil.copy(photos / "img000.jpg", photos / "exact_copy.jpg")
    Image.open(photos / "img004.jpg").resize((120, 90)).save(photos / "small.png")
    Image.open(photos / "img006.jpg").save(photos / "reencoded.jpg", quality=60)
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    seen = []
    report = index.duplicates(progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] >= 10  # every distinct content searched
    assert report.threshold == pytest.approx(0.95)  # the model's calibrated threshold
    groups = {(g.kind, tuple(os.path.basename(f) for f in g.files)) for g in report.groups}
    assert ("exact", ("exact_copy.jpg", "img000.jpg")) in groups
    assert ("near", ("img004.jpg", "small.png")) in groups
    assert ("near", ("img006.jpg", "reencoded.jpg")) in groups
    assert len(groups) == 3, groups
    for g in report.groups:
        assert g.min_score >= report.threshold


def test_of_two_would_be_centres_the_larger_picture_is_the_centre(tmp_path, tiny_model, photos):
    """A newcomer's case (session 31): a copy indexed before its original (its folder read
    first) was the centre of their pair, whichever was the original; the larger picture is."""
    Image.open(photos / "img004.jpg").resize((120, 90)).save(photos / "a_small.png")
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    group = next(g for g in index.duplicates().groups if str(photos / "a_small.png") in g.files)
    assert group.centre == str(photos / "img004.jpg")
    assert [os.path.basename(m.path) for m in group.members] == ["img004.jpg", "a_small.png"]
    # at one size, the older file: a flipped copy made later, indexed first
    (photos / "a_small.png").unlink()
    flipped = photos / "a_flipped.jpg"
    Image.open(photos / "img006.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    old = os.stat(photos / "img006.jpg").st_mtime_ns
    os.utime(flipped, ns=(old + 10**9, old + 10**9))
    index.add_paths([photos])
    group = next((g for g in index.duplicates(check=False, threshold=0.5).groups
                  if str(flipped) in g.files), None)
    assert group is not None and group.centre == str(photos / "img006.jpg")


def test_model_mismatch_is_refused(tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    other = tmp_path / "other.onnx"
    import onnx
    proto = onnx.load(str(tiny_model / "model.onnx"))
    for p in proto.metadata_props:
        if p.key == "simsearch_model_id":
            p.value = "another-model"
    onnx.save(proto, str(other))
    with pytest.raises(ModelMismatchError, match="--rebuild"):
        open_index(tmp_path / "idx", model=other).search([photos / "img000.jpg"])
    # the index remembers its model: no --model needed afterwards
    assert open_index(tmp_path / "idx").search([photos / "img000.jpg"], k=1)[0].matches
    rebuilt = open_index(tmp_path / "idx", model=other).add_paths([photos], rebuild=True)
    assert rebuilt.added == 8


def test_a_changed_model_under_the_same_name_says_to_re_embed(tmp_path, tiny_model, photos):
    """As when a newer simsearch ships another default model: same name, another network."""
    import shutil

    import onnx
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    open_index(tmp_path / "idx", model=model, create=True).add_paths([photos])
    proto = onnx.load(str(model / "model.onnx"))
    for p in proto.metadata_props:
        if p.key == "simsearch_model_id":
            p.value = "a-newer-model"
    onnx.save(proto, str(model / "model.onnx"))
    with pytest.raises(ModelMismatchError, match="earlier .* --rebuild --index") as e:
        open_index(tmp_path / "idx").search([photos / "img000.jpg"])
    assert "Use --model" not in str(e.value)  # naming the same model again would not help


def test_missing_index_message(tmp_path):
    with pytest.raises(IndexStoreError, match="simsearch index PHOTOS"):
        open_index(tmp_path / "none")


def test_stale_faiss_file_is_rebuilt_from_catalog(tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    (tmp_path / "idx" / "vectors.faiss").unlink()
    result = open_index(tmp_path / "idx").search([photos / "img001.jpg"], k=1)[0]
    assert result.matches[0].path == str(photos / "img001.jpg")


def test_second_writer_is_refused(tmp_path, tiny_model, photos):
    from simsearch.store import Store
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    with Store(tmp_path / "idx").writer():
        with pytest.raises(IndexLockedError, match="another simsearch process"):
            open_index(tmp_path / "idx").add_paths([photos])


def test_export_npz(tmp_path, tiny_model, photos):
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    n = index.export(tmp_path / "v.npz")
    data = np.load(tmp_path / "v.npz")
    assert n == 8 and data["vectors"].shape == (8, 32) and data["vectors"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(data["vectors"], axis=1), 1.0, rtol=1e-5)
    assert sorted(data["paths"]) == sorted(str(p) for p in photos.iterdir())


def _vectors(index):
    paths, vectors = index.vectors()
    return dict(zip(paths, vectors))


def test_check_finds_and_repairs_derived_files(tmp_path, tiny_model, photos):
    from simsearch.integrity import check_index
    index = _index(tmp_path, tiny_model)
    index.add_paths([photos])
    assert check_index(tmp_path / "idx").problems == []
    (tmp_path / "idx" / "vectors.faiss").write_bytes(b"junk")
    (tmp_path / "idx" / "manifest.json").unlink()
    report = check_index(tmp_path / "idx")
    assert not report.ok and len(report.problems) >= 2
    repaired = check_index(tmp_path / "idx", repair=True)
    assert repaired.repaired
    assert check_index(tmp_path / "idx").problems == []
    result = open_index(tmp_path / "idx").search([photos / "img002.jpg"], k=1)[0]
    assert result.matches[0].path == str(photos / "img002.jpg")


def test_walk_streams_through_a_bounded_look_ahead(tmp_path, tiny_model, photos, monkeypatch):
    import simsearch.ingest

    monkeypatch.setattr(simsearch.ingest, "LOOKAHEAD", 3)
    calls = []
    index = open_index(tmp_path / "idx", model=tiny_model, create=True)
    report = index.add_paths([photos], progress=lambda done, total: calls.append((done, total)),
                             batch_size=2, workers=1)
    assert report.added == 8 and index.count() == 8
    totals = [total for _, total in calls]
    assert totals[0] == 3 and totals == sorted(totals) and calls[-1] == (8, 8)
    assert all(done <= total for done, total in calls)
    (photos / "img003.jpg").unlink()  # removal still works without a list of every file seen
    report = index.add_paths([photos])
    assert (report.removed, report.unchanged, index.count()) == (1, 7, 7)


def test_overlapping_roots_index_each_file_once(tmp_path, tiny_model, photos):
    sub = photos / "sub"
    write_pictures(sub, 2, seed=7)
    index = _index(tmp_path, tiny_model)
    report = index.add_paths([sub, photos, photos / "img001.jpg", photos, sub / "img000.jpg"])
    assert report.added == 10 and not report.skipped and index.count() == 10


def test_simsearchs_own_folders_in_a_photo_folder_are_not_indexed(tmp_path, tiny_model, photos):
    """An apply journal (its held originals) and a review page (its thumbnails) inside the
    folder being indexed are simsearch's own work: never taken for photos (a newcomer's next
    plan trashed the originals held in a journal under the photo folder)."""
    from simsearch.files import REVIEW_MARK, REVIEW_TEXT
    journal = photos / "plan.json.journal"
    write_pictures(journal / "held", 2, seed=7)
    review = photos / "review"
    write_pictures(review / "thumbs", 2, seed=8)
    trash = photos / ".Trash-1000"  # a drive's trash, indexed from the drive's top
    write_pictures(trash / "files", 2, seed=9)
    recycle = photos / "$RECYCLE.BIN"  # Windows' recycle bin on the same drive
    write_pictures(recycle / "S-1-5-21", 1, seed=10)
    write_pictures(photos / "Recycled", 1, seed=11)  # a user's folder, named so: photos
    android = photos / "DCIM" / ".trashed-1700000000-IMG_0001.jpg"  # Android's trash
    write_pictures(android.parent, 1, seed=12)
    (android.parent / "img000.jpg").rename(android)
    (recycle / "S-1-5-21" / "img000.jpg").rename(recycle / "S-1-5-21" / "$R0AB1C0.jpg")
    index = _index(tmp_path, tiny_model)
    with pytest.MonkeyPatch.context() as m:  # as an earlier simsearch did: no folder passed over
        m.setattr("simsearch.files.own_folder", lambda folder: None)
        for module in ("simsearch.files", "simsearch.ingest"):
            m.setattr(f"{module}.TRASHED_FILE", "\0 none")
        assert index.add_paths([photos]).added == 17
    (journal / "journal.jsonl").write_text("")
    (review / REVIEW_MARK).write_text(REVIEW_TEXT)
    report = index.add_paths([photos])
    assert report.removed == 8 and index.count() == 9  # what it took from them is forgotten
    assert not any(part in p for p in index.vectors()[0] for part in (
        "/held/", "/thumbs/", "/.Trash-1000/", "/$RECYCLE.BIN/"))
    reasons = {s.path: s.reason for s in report.skipped}
    own = ("simsearch's own folder (an apply journal, a review page, or where apply moved "
           "duplicates aside): not indexed")
    assert reasons == {str(journal): own, str(review / "thumbs"): own,
                       str(trash): "a trash folder (what is there was deleted): not indexed",
                       str(recycle): "a trash folder (what is there was deleted): not indexed",
                       str(android): "a trashed file (Android's trash): not indexed"}


def test_thumbnail_caches_other_trashes_and_macos_data_files_are_not_indexed(
        tmp_path, tiny_model, photos):
    """A phone's DCIM/.thumbnails, a NAS's @eaDir / .@__thumb, Nextcloud's and MIUI's trash,
    and macOS's ._ files (AppleDouble data, named like the photo) are no photos; a picture
    that merely has a name starting with ._ is one."""
    from simsearch.files import APPLEDOUBLE, APPLEDOUBLE_REASON, CACHE_FOLDER, TRASH_FOLDER
    for folder in ("DCIM/.thumbnails", "share/@eaDir/img.jpg", "q/.@__thumb",
                   "nc/files_trashbin/files", "phone/.globalTrash"):
        write_pictures(photos / folder, 1, seed=20 + len(folder))
    (photos / "._img000.jpg").write_bytes(APPLEDOUBLE + b"\0" * 200)
    write_pictures(photos / "dots", 1, seed=30)
    (photos / "dots" / "img000.jpg").rename(photos / "dots" / "._mine.jpg")
    index = _index(tmp_path, tiny_model)
    report = index.add_paths([photos])
    reasons = {os.path.relpath(s.path, photos): s.reason for s in report.skipped}
    assert reasons == {"DCIM/.thumbnails": CACHE_FOLDER, "share/@eaDir": CACHE_FOLDER,
                       "q/.@__thumb": CACHE_FOLDER, "nc/files_trashbin": TRASH_FOLDER,
                       "phone/.globalTrash": TRASH_FOLDER, "._img000.jpg": APPLEDOUBLE_REASON}
    assert report.added == 9 and any(p.endswith("._mine.jpg") for p in index.vectors()[0])


def test_a_root_named_with_a_leading_double_slash_is_indexed_under_plain_paths(
        tmp_path, tiny_model, photos):
    """"//photos" is "/photos" on Linux: the catalog names files one way, so plans made from
    it stay plain (a plan refuses paths with doubled slashes)."""
    index = _index(tmp_path, tiny_model)
    assert index.add_paths(["/" + str(photos)]).added == 8
    assert all(not p.startswith("//") for p in index.vectors()[0])
    assert index.add_paths([photos]).unchanged == 8
