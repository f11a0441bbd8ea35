"""The picture check's verdicts kept between runs (simsearch/verdicts.py): a second dedupe reads
no picture and gives the same answer; a changed file, another order or other settings are
judged afresh; a damaged file is ignored and replaced."""
import json
import os
import random

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from simsearch.cli import main
from simsearch.verdicts import FILE, Verdicts, content_hash, fingerprint
from simsearch.edits import apply_edit
from simsearch.picturecheck import PictureCheck
from simsearch.verify import VerifySettings
from test_verify import busy, busy_index, glyph, write  # noqa: F401 (a fixture)

SHA = {i: f"{i:064x}" for i in range(1, 6)}
H = {i: content_hash(sha) for i, sha in SHA.items()}


def test_verdicts_come_back_only_for_the_same_contents_order_and_settings(tmp_path):
    print_ = fingerprint(settings=VerifySettings(), opencv="5.1.0")
    kept = Verdicts(tmp_path, print_)
    assert len(kept) == 0 and not kept.changed  # no file yet
    kept.put(1, 2, H[1], H[2], True, 1, False)
    kept.put(1, 3, H[1], H[3], False, 4, False)
    kept.put(2, 5, H[2], H[5], True, 2, True)   # 5 is no longer indexed at the save
    kept.put(3, 4, H[3], H[4], True, 0, False)  # 4's content changes before the save
    ids, contents = np.array([1, 2, 3, 4]), np.array([SHA[1], SHA[2], SHA[3], "changed"], object)
    kept.save(ids, contents)
    again = Verdicts(tmp_path, print_)
    assert len(again) == 2
    assert again.get(1, 2, SHA[1], SHA[2], True)[:2] == (1, False)
    assert again.get(1, 3, SHA[1], SHA[3], False)[:2] == (4, False)
    assert again.get(1, 2, SHA[1], SHA[3], True) is None   # another content
    assert again.get(1, 2, SHA[1], SHA[2], False) is None  # the other way round
    assert again.get(2, 5, SHA[2], SHA[5], True) is None   # pruned: 5 is gone
    # other settings, or another OpenCV: nothing comes back, and the file is replaced
    for other in (fingerprint(settings=VerifySettings(act_inliers=30), opencv="5.1.0"),
                  fingerprint(settings=VerifySettings(), opencv="4.9.0")):
        fresh = Verdicts(tmp_path, other)
        assert len(fresh) == 0 and fresh.changed
    # the size of the check's cache of pictures changes no verdict
    assert fingerprint(settings=VerifySettings(cache=16), opencv="5.1.0") == print_


def test_two_runs_at_once_keep_each_others_verdicts(tmp_path):
    """A dedupe and a review started on one index both save: the second save keeps what the
    first saved after the second run had started, and its own verdict of a pair wins."""
    print_ = fingerprint(settings=VerifySettings(), opencv="5.1.0")
    ids, contents = np.array([1, 2, 3, 4]), np.array([SHA[i] for i in range(1, 5)], object)
    first, second = Verdicts(tmp_path, print_), Verdicts(tmp_path, print_)
    first.put(1, 2, H[1], H[2], True, 1, False)
    first.put(3, 4, H[3], H[4], True, 0, False)
    second.put(1, 3, H[1], H[3], True, 2, False)
    second.put(3, 4, H[3], H[4], True, 4, False)
    first.save(ids, contents)
    second.save(ids, contents)
    again = Verdicts(tmp_path, print_)
    assert len(again) == 3
    assert again.get(1, 2, SHA[1], SHA[2], True)[:2] == (1, False)
    assert again.get(1, 3, SHA[1], SHA[3], True)[:2] == (2, False)
    assert again.get(3, 4, SHA[3], SHA[4], True)[:2] == (4, False)  # the later save's
    # a run that saved is up to date with the file: a second save of it loses nothing either
    second.put(2, 4, H[2], H[4], True, 1, True)
    second.save(ids, contents)
    assert len(Verdicts(tmp_path, print_)) == 4


def _huge_header(path, print_):
    """An npz whose `lo` member claims 2**44 items in a few bytes."""
    import io
    import zipfile
    with zipfile.ZipFile(path, "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.array(print_))
        z.writestr("fingerprint.npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<i8", "fortran_order": False,
                                                   "shape": (2 ** 44,)})
        z.writestr("lo.npy", buf.getvalue() + b"\0" * 64)


@pytest.mark.parametrize("damage", [b"not a zip", b"", "wrong shapes", "one array",
                                    "compressed", "huge header"])
def test_a_damaged_or_foreign_file_is_ignored_and_replaced(tmp_path, damage):
    path = tmp_path / FILE
    print_ = fingerprint(settings=VerifySettings(), opencv="5.1.0")
    columns = {k: np.zeros(3, t) for k, t in (("lo", np.int64), ("hi", np.int64),
                                              ("hash_lo", np.int64), ("hash_hi", np.int64),
                                              ("flags", np.uint8))}
    if damage == "wrong shapes":
        np.savez(path, fingerprint=np.array(print_), **columns | {"lo": np.zeros((2, 2))})
    elif damage == "one array":  # a plain .npy under the name
        with open(path, "wb") as f:
            np.save(f, np.zeros(4))
    elif damage == "compressed":  # a small file that could hold gigabytes
        np.savez_compressed(path, fingerprint=np.array(print_), **columns)
    elif damage == "huge header":
        _huge_header(path, print_)
    else:
        path.write_bytes(damage)
    kept = Verdicts(tmp_path, print_)
    assert len(kept) == 0 and kept.changed
    kept.put(1, 2, H[1], H[2], True, 1, False)
    kept.save(np.array([1, 2]), np.array([SHA[1], SHA[2]], object))
    assert Verdicts(tmp_path, kept.fingerprint).get(1, 2, SHA[1], SHA[2], True)[:2] == (1, False)


def test_dedupe_again_reads_no_picture_and_gives_the_same_answer(busy_index, monkeypatch):
    import simsearch.verify as verify
    photos, index = busy_index
    read = []
    features = verify.picture_features
    monkeypatch.setattr(verify, "picture_features",
                        lambda path, *a: read.append(path) or features(path, *a))
    runner = CliRunner()

    def dedupe(*args):
        out = runner.invoke(main, ["dedupe", "--index", str(index), "--threshold", "-1",
                                   "--json", *args])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    first = dedupe()
    assert len(read) == 5 and (index / FILE).exists() and first["check"]["remembered"] == 0
    read.clear()
    second = dedupe()
    assert read == []  # every pair was judged before
    assert second["groups"] == first["groups"]
    assert second["check"]["remembered"] == second["check"]["checked"] == first["check"]["checked"]
    assert {k: v for k, v in second["check"].items() if k != "remembered"} == {
        k: v for k, v in first["check"].items() if k != "remembered"}
    text = runner.invoke(main, ["dedupe", "--index", str(index), "--threshold", "-1"])
    assert "judged in an earlier run" in text.stderr
    # a file changed and indexed again: only its pairs are judged again
    write(photos, {"c.jpg": busy(7)})
    assert runner.invoke(main, ["index", str(photos), "--index", str(index), "-q"]).exit_code == 0
    third = dedupe()
    # c and the four files it pairs with; no pair without c is judged
    assert sorted(p.rsplit("/", 1)[1] for p in read) == ["a.jpg", "a_flip.jpg", "b.jpg", "c.jpg",
                                                         "d.jpg"]
    assert third["check"]["checked"] - third["check"]["remembered"] == 4  # c's four pairs
    assert third["groups"] == first["groups"]
    # --no-check reads nothing and keeps the verdicts as they are
    before = (index / FILE).read_bytes()
    dedupe("--no-check")
    assert (index / FILE).read_bytes() == before


def test_a_read_only_index_folder_still_dedupes(busy_index, monkeypatch):
    import os
    photos, index = busy_index
    if os.geteuid() == 0:  # root writes anywhere: make the save fail another way
        monkeypatch.setattr("simsearch.verdicts.write_atomic",
                            lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    else:
        index.chmod(0o555)
    try:
        out = CliRunner().invoke(main, ["dedupe", "--index", str(index), "--threshold", "-1"])
    finally:
        index.chmod(0o755)
    assert out.exit_code == 0, out.output
    assert not (index / FILE).exists()
    assert not (index / (FILE + ".tmp")).exists()


# the shipped settings; every pair found the same picture short of the act cuts (a verdict
# kept at a low score must still stand on its score at a high one, as a fresh check does); and
# no disagreement cut
@pytest.mark.parametrize("settings", [VerifySettings(), VerifySettings(act_inliers=1000),
                                      VerifySettings(act_disagree=None)])
def test_a_kept_verdict_decides_a_pair_as_a_fresh_check_would_at_any_score(tmp_path, monkeypatch,
                                                                           settings):
    import simsearch.verify as verify
    from test_verify import _changed_corner
    paths = write(tmp_path / "p", {"seven.png": glyph("7"),
                                   "seven_copy.png": apply_edit("jpeg20", glyph("7"),
                                                                random.Random(0)),
                                   "ell.png": glyph("L"), "ex.png": glyph("X"),
                                   "one.png": glyph("1"), "a.jpg": busy(1), "b.jpg": busy(2),
                                   "a_crop.jpg": apply_edit("crop70", busy(1), random.Random(0)),
                                   "a_changed.jpg": _changed_corner(1, 9)})
    (tmp_path / "p" / "broken.png").write_bytes(b"not a picture")
    by_id = dict(enumerate(list(paths.values()) + [str(tmp_path / "p" / "broken.png")]))
    sha = {i: f"{i:064x}" for i in by_id}
    a, b = np.array([0, 2, 2, 5, 5, 5, 5]), np.array([1, 3, 4, 6, 9, 7, 8])
    read = []
    features = verify.picture_features
    monkeypatch.setattr(verify, "picture_features",
                        lambda path, *r: read.append(path) or features(path, *r))

    def as_indexed(ids):
        out = {}
        for i in ids:
            if os.path.exists(by_id[i]):
                st = os.stat(by_id[i])
                out[i] = (sha[i], st.st_size, st.st_mtime_ns)
        return out
    indexed = as_indexed(by_id)

    def check(keep_in=tmp_path):
        return PictureCheck(lambda ids: {i: by_id[i] for i in ids}, settings, alone=0.86,
                            keep_in=keep_in, contents_of=lambda ids: {i: indexed[i] for i in ids})
    def said(c, x, y):
        try:
            return c.verdict(x, y)
        except KeyError:  # stood on its score: never judged
            return "stood"
    high, mid, low = (np.full(7, s, np.float32) for s in (0.97, 0.9, 0.82))
    first = check()
    for scores in (high, low):  # read above `below` first (busy pairs stand), then judged
        first(a, b, scores)
    first.save_verdicts(np.arange(len(by_id)), np.array([sha[i] for i in by_id], object))

    def counts(c):
        return {k: v for k, v in c.stats.to_dict().items() if k != "remembered"}
    for order in ((high, low), (low, high), (low,), (high,), (mid, high), (high, mid, low)):
        kept, fresh = check(), check(keep_in=None)
        for scores in order:
            assert kept(a, b, scores).tolist() == fresh(a, b, scores).tolist()
        assert [said(kept, x, y) for x, y in zip(a, b)] == [said(fresh, x, y) for x, y in zip(a, b)]
        assert counts(kept) == counts(fresh)
    # every readable pair came back without reading; the unreadable one is tried again
    read.clear()
    again = check()
    again(a, b, low)
    assert again.stats.remembered == 6 and again.stats.checked == 7
    assert sorted(read) == sorted([by_id[5], by_id[9]])
    # a file changed since it was indexed (its time) or gone: its pairs are judged afresh, as
    # a fresh check judges them (the gone file unjudged, not parted on its old verdict)
    os.utime(by_id[1], ns=(0, 0))
    os.unlink(by_id[3])
    read.clear()
    kept, fresh = check(), check(keep_in=None)
    assert kept(a, b, low).tolist() == fresh(a, b, low).tolist()
    assert counts(kept) == counts(fresh) and kept.stats.remembered == 4
    assert by_id[1] in read and by_id[0] in read


def test_check_warns_about_a_verdicts_file_it_cannot_read(busy_index):
    photos, index = busy_index
    runner = CliRunner()
    assert runner.invoke(main, ["dedupe", "--index", str(index), "-q"]).exit_code == 0
    clean = runner.invoke(main, ["check", "--index", str(index)])
    assert clean.exit_code == 0 and FILE not in clean.output
    (index / FILE).write_bytes(b"garbage")
    warned = runner.invoke(main, ["check", "--index", str(index)])
    assert warned.exit_code == 0, warned.output  # a warning: nothing depends on it
    assert f"{FILE} (the picture check's verdicts, kept between runs) cannot be read" in warned.output


def test_a_verdict_judged_on_a_changed_file_is_never_kept_under_its_indexed_hash(tmp_path):
    """A file changed since indexing is judged on what it holds now; that verdict must not come
    back once the file is restored as indexed (same bytes, size and time)."""
    import shutil
    paths = write(tmp_path / "p", {"a.jpg": busy(1), "a_crop.jpg": apply_edit(
        "crop70", busy(1), random.Random(0))})
    by_id = dict(enumerate(paths.values()))
    shutil.copy2(by_id[1], tmp_path / "saved.jpg")
    indexed = {}
    for i, path in by_id.items():
        st = os.stat(path)
        indexed[i] = (f"{i:064x}", st.st_size, st.st_mtime_ns)

    def check(keep_in=tmp_path):
        return PictureCheck(lambda ids: {i: by_id[i] for i in ids}, VerifySettings(), alone=0.86,
                            keep_in=keep_in, contents_of=lambda ids: {i: indexed[i] for i in ids})
    a, b, low = np.array([0]), np.array([1]), np.array([0.82])
    ids, contents = np.array([0, 1]), np.array([indexed[0][0], indexed[1][0]], object)
    write(tmp_path / "p", {"a_crop.jpg": busy(9)})  # changed since indexing: another picture
    changed = check()
    assert changed(a, b, low).tolist() == [False]
    changed.save_verdicts(ids, contents)
    shutil.copy2(tmp_path / "saved.jpg", by_id[1])  # restored as indexed
    kept, fresh = check(), check(keep_in=None)
    assert kept(a, b, low).tolist() == fresh(a, b, low).tolist() == [True]
    assert kept.stats.remembered == 0


def test_the_latest_verdict_of_a_pair_wins_and_the_newest_stay_under_the_cap(tmp_path,
                                                                              monkeypatch):
    import simsearch.verdicts as verdicts
    print_ = fingerprint(settings=VerifySettings(), opencv="5.1.0")
    ids, contents = np.arange(1, 6), np.array([SHA[i] for i in range(1, 6)], object)
    kept = Verdicts(tmp_path, print_)
    kept.put(1, 2, H[1], H[2], True, 0, False)
    kept.put(1, 2, H[1], H[2], True, 1, False)  # asked again in one run: the later one
    kept.save(ids, contents)
    again = Verdicts(tmp_path, print_)
    assert len(again) == 1 and again.get(1, 2, SHA[1], SHA[2], True)[:2] == (1, False)
    again.put(1, 2, H[1], H[2], True, 2, True)  # a later run's replaces the earlier run's
    again.put(3, 4, H[3], H[4], True, 0, False)
    monkeypatch.setattr(verdicts, "_MAX_PAIRS", 2)
    again.put(4, 5, H[4], H[5], False, 1, False)  # over the cap: the oldest row goes
    again.save(ids, contents)
    last = Verdicts(tmp_path, print_)
    assert len(last) == 2 and last.get(1, 2, SHA[1], SHA[2], True) is None
    assert last.get(3, 4, SHA[3], SHA[4], True)[:2] == (0, False)
    assert last.get(4, 5, SHA[4], SHA[5], False)[:2] == (1, False)
    # a crafted file naming one pair twice: the last row stands
    np.savez(tmp_path / FILE, fingerprint=np.array(print_), lo=np.array([1, 1]),
             hi=np.array([2, 2]), hash_lo=np.array([H[1], H[1]]), hash_hi=np.array([H[2], H[2]]),
             flags=np.array([8, 9], np.uint8),
             **{k: np.full(2, np.nan, np.float32) for k in verdicts._SHAPE})
    assert Verdicts(tmp_path, print_).get(1, 2, SHA[1], SHA[2], True)[:2] == (1, False)


def test_a_run_keeps_another_runs_verdicts_about_files_indexed_since_its_snapshot(tmp_path):
    """Run A's snapshot knows ids 1-4; run B, later, indexed 5 and saved a verdict about (4, 5):
    A's save keeps it (a review found it dropped); A's own verdicts about ids it no longer
    holds are pruned as before."""
    print_ = fingerprint(settings=VerifySettings(), opencv="5.1.0")
    first = Verdicts(tmp_path, print_)  # run A starts
    sha5 = f"{5:064x}"
    second = Verdicts(tmp_path, print_)  # run B, with 5 indexed
    second.put(4, 5, H[4], content_hash(sha5), True, 1, False)
    second.save(np.array([1, 2, 3, 4, 5]), np.array([SHA[i] for i in range(1, 5)] + [sha5], object))
    first.put(1, 2, H[1], H[2], True, 1, False)
    first.save(np.array([1, 2, 3, 4]), np.array([SHA[i] for i in range(1, 5)], object))
    again = Verdicts(tmp_path, print_)
    assert again.get(4, 5, SHA[4], sha5, True)[:2] == (1, False)
    assert again.get(1, 2, SHA[1], SHA[2], True)[:2] == (1, False)


def test_a_pairs_geometry_comes_back_with_its_verdict(tmp_path):
    """The map and shares the keep rule `largest` reads survive a save (float32), a pair
    without them comes back without, and the check turns them round for the other order."""
    print_ = fingerprint(settings=VerifySettings(), opencv="5.1.0")
    kept = Verdicts(tmp_path, print_)
    kept.put(1, 2, H[1], H[2], True, 1, False, ((0.5, 0.01, -0.02, 0.5), (0.25, 0.0)))
    kept.put(1, 3, H[1], H[3], True, 1, False, ((2.0, 0.0, 0.0, 2.0), None))
    kept.put(2, 3, H[2], H[3], True, 0, False)
    kept.save(np.array([1, 2, 3]), np.array([SHA[1], SHA[2], SHA[3]], object))
    again = Verdicts(tmp_path, print_)
    code, plain, (linear, shares) = again.get(1, 2, SHA[1], SHA[2], True)
    assert (code, plain) == (1, False)
    assert np.allclose(linear, (0.5, 0.01, -0.02, 0.5))
    assert np.allclose(shares, (0.25, 0.0))
    assert again.get(1, 3, SHA[1], SHA[3], True)[2] == ((2.0, 0.0, 0.0, 2.0), None)
    assert again.get(2, 3, SHA[2], SHA[3], True)[2] is None
    # the check asked the other way round: the inverse map, the shares swapped
    from simsearch.picturecheck import _turned
    back, swapped = _turned(((0.5, 0.01, -0.02, 0.5), (0.25, 0.0)))
    assert np.allclose(np.reshape(back, (2, 2)) @ [[0.5, 0.01], [-0.02, 0.5]], np.eye(2))
    assert swapped == (0.0, 0.25)


def test_a_dedupe_stopped_by_sigterm_keeps_the_verdicts_it_reached(tmp_path, tiny_model):
    """A hostile tester's case (session 32): a dedupe of thousands of tiny plain pictures
    checks a million pairs for hours, and a kill or Ctrl-C lost every verdict (they were
    saved only at the end). Stopped by SIGTERM, it saves what it judged, for the next run,
    and exits 143."""
    import signal
    import subprocess
    import sys
    import time
    photos = tmp_path / "photos"
    chars = "ABCDEFGHJKLMNPRSTUVWXYZ23456789"
    pictures = {f"g{i:03d}.png": glyph(a + b, (120, 120))
                for i, (a, b) in enumerate((a, b) for a in chars[:10] for b in chars[10:20])}
    photos.mkdir()
    for name, img in pictures.items():
        img.save(photos / name)
    index = tmp_path / "index"
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(index), "--model",
                                       str(tiny_model / "model.onnx"), "-q"])
    assert result.exit_code == 0, result.output
    # every pair of the 100 glyphs checked (4,950 pairs lined up: a minute or more on any
    # machine; a part of up to 256 pairs takes seconds), stopped after 15 s
    run = subprocess.Popen([sys.executable, "-m", "simsearch.cli", "dedupe", "--index",
                            str(index), "--threshold", "-1", "--json", "-q"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(15)
    assert run.poll() is None, "the check ended before it was stopped: make it longer"
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=120) == 143
    assert (index / FILE).is_file()
    with np.load(index / FILE) as kept:
        saved = len(kept["lo"])
    assert 0 < saved < 4950


def test_a_pair_half_written_when_stopped_is_dropped_and_the_rest_saved(tmp_path):
    """A review's case (session 32): a stop between two columns of one `put` left the columns
    of unequal length, and the save raised instead of keeping the verdicts."""
    print_ = fingerprint(settings=VerifySettings(), opencv="5.1.0")
    kept = Verdicts(tmp_path, print_)
    kept.put(1, 2, H[1], H[2], True, 1, False)
    kept.put(1, 3, H[1], H[3], False, 4, False)
    first = next(iter(kept._new))
    kept._new[first].append(kept._new[first][0])  # a third pair begun: its first column only
    kept.save(np.array([1, 2, 3]), np.array([SHA[1], SHA[2], SHA[3]], object))
    assert len(Verdicts(tmp_path, print_)) == 2


def test_a_check_with_many_pairs_says_so_once_unless_quiet(tmp_path, tiny_model, monkeypatch):
    """A hostile tester's case (session 32): thousands of tiny plain pictures held a million
    pairs to line up, and dedupe said nothing for hours (no progress bar without a terminal,
    none with -q). Past NOTICE_PAIRS it says how many, once, and how to go faster; -q keeps
    quiet."""
    import simsearch.picturecheck as picturecheck
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, ch in enumerate("ABCDEFGH"):
        glyph(ch, (96, 96)).save(photos / f"g{i}.png")
    index = str(tmp_path / "index")
    runner = CliRunner()
    assert runner.invoke(main, ["index", str(photos), "--index", index, "--model",
                                str(tiny_model / "model.onnx"), "-q"]).exit_code == 0
    monkeypatch.setattr(picturecheck, "NOTICE_PAIRS", 10)  # 28 pairs here
    result = runner.invoke(main, ["dedupe", "--index", index, "--threshold", "-1"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("picture check: 28 pairs to look at") == 1, result.stderr
    os.remove(os.path.join(index, FILE))  # the pairs are read again
    result = runner.invoke(main, ["dedupe", "--index", index, "--threshold", "-1", "-q"])
    assert result.exit_code == 0 and "pairs to look at" not in result.stderr
