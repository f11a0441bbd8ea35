"""The whole clean-up through the CLI on an indexed folder with planted copies: dedupe --plan,
review, apply (the index follows), undo, and "not duplicates" remembered by later runs."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from conftest import make_picture, write_pictures
from simsearch.cli import main
from simsearch.index import open_index
from simsearch.plan import Plan
from test_actions import snapshot


def _run(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def _groups(idx):
    result = _run(["dedupe", "--index", idx, "--json"])
    assert result.exit_code == 0, result.output
    return [sorted(g["files"]) if "files" in g else sorted(m["path"] for m in g["members"])
            for g in json.loads(result.stdout)["groups"]]


def test_plan_review_apply_undo_and_not_duplicates(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    originals = write_pictures(photos / "a", 6)
    (photos / "b").mkdir()
    copy0, copy1 = photos / "b" / "copy0.jpg", photos / "b" / "copy1.jpg"
    shutil.copy2(originals[0], copy0)
    shutil.copy2(originals[1], copy1)
    big2 = photos / "b" / "big2.jpg"  # a larger version of a/img002.jpg
    make_picture(2, (320, 240)).save(big2, quality=92)
    idx = tmp_path / "idx"
    assert _run(["index", photos, "--index", idx, "--model", tiny_model / "model.onnx",
                 "-q"]).exit_code == 0
    groups = _groups(idx)
    assert [str(originals[2]), str(big2)] in groups
    before = snapshot(photos)

    plan_file = tmp_path / "plan.json"
    # a misspelt folder to protect, or format, is refused before any work, and writes no plan
    for wrong, said in ((["--protect", photos / "aa"], "does not exist"),
                        (["--keep", "format=bogus"], "unknown format 'bogus'")):
        result = _run(["dedupe", "--index", idx, "--plan", plan_file, *wrong])
        assert result.exit_code != 0 and not plan_file.exists()
        assert said in result.output, result.output
    result = _run(["dedupe", "--index", idx, "--keep", "largest", "--protect", photos / "a",
                   "--plan", plan_file])
    assert result.exit_code == 0, result.output
    assert "kept: 320x240, largest" in result.stdout
    plan = Plan.load(plan_file)
    assert sorted(p for g in plan.groups for p in g.act_on) == [str(copy0), str(copy1)]
    near = next(g for g in plan.groups if str(big2) in g.keep)
    assert near.keep == [str(big2), str(originals[2])] and near.act_on == []  # a/ is protected

    result = _run(["review", "--index", idx, "--out", tmp_path / "review", "-q"])
    assert result.exit_code == 0 and "open file://" in result.stdout
    assert (tmp_path / "review" / "index.html").exists()
    assert Plan.load(tmp_path / "review" / "plan.json").groups
    assert snapshot(photos) == before  # dedupe --plan and review only read

    result = _run(["apply", plan_file, "--action", "trash", "-q"])
    assert result.exit_code == 0, result.output
    assert not copy0.exists() and not copy1.exists()
    assert not any(str(copy0) in g or str(copy1) in g for g in _groups(idx))  # forgotten
    n_after = json.loads(_run(["index", photos, "--index", idx, "-q", "--json"]).stdout)
    assert n_after["removed"] == 0 and n_after["added"] == 0

    result = _run(["undo", f"{plan_file}.journal"])
    assert result.exit_code == 0, result.output
    assert "2 restored files are in the index again" in result.stderr
    assert snapshot(photos) == before
    assert json.loads(_run(["index", photos, "--index", idx, "-q", "--json"]).stdout)["added"] == 0
    assert groups == _groups(idx)  # the index is as it was before apply
    # undo again: nothing left, and it says why rather than only "0 restored"
    again = _run(["undo", f"{plan_file}.journal"])
    assert again.exit_code == 0 and "0 restored, 0 not restored" in again.stderr
    assert "nothing left to undo: 2 steps of this journal were already undone" in again.stderr
    out = json.loads(_run(["undo", f"{plan_file}.journal", "--json"]).stdout)
    assert out["undone_before"] == 2 and out["restored"] == [] and snapshot(photos) == before

    # a hostile tester's case (session 32): files not indexed, a name typed wrong, one file
    # twice were "remembered" all the same; each is named, and nothing is remembered unless
    # two different indexed pictures remain
    before_pairs = open_index(idx).not_duplicate_pairs()
    for args, named in (([originals[2], originals[2]], []),
                        ([originals[2], str(originals[2]).upper()], [str(originals[2]).upper()]),
                        ([tmp_path / "typo.jpg", tmp_path / "other.jpg"],
                         [str(tmp_path / "typo.jpg"), str(tmp_path / "other.jpg")])):
        result = _run(["not-duplicates", *args, "--index", idx])
        assert result.exit_code == 1 and "nothing remembered" in result.output, result.output
        for path in named:
            assert f"not remembered: {path}: no such file" in result.stderr
    (tmp_path / "stray.jpg").write_bytes(Path(originals[0]).read_bytes())
    assert open_index(idx).not_duplicate_pairs() == before_pairs
    result = _run(["not-duplicates", originals[2], big2, tmp_path / "stray.jpg", "--index", idx])
    assert result.exit_code == 1, result.output  # one left out: said, and the status says so
    assert f"not remembered: {tmp_path / 'stray.jpg'}: not in the index" in result.stderr
    assert "remembered: 2 files (2 pictures, 1 pair)" in result.stdout
    assert not any(str(big2) in g and str(originals[2]) in g for g in _groups(idx))


def test_moved_duplicates_are_set_aside_and_undo_brings_them_back(tmp_path, tiny_model,
                                                                 monkeypatch):
    """Duplicates moved under --to (here inside the indexed folder) leave the index and never
    come back as duplicates, nor as a kept copy: the next index run passes the folder over.
    Undo brings them back into the index."""
    photos = tmp_path / "photos"
    originals = write_pictures(photos, 3)
    shutil.copy2(originals[0], photos / "dup.jpg")
    idx = tmp_path / "idx"
    _run(["index", photos, "--index", idx, "--model", tiny_model / "model.onnx", "-q"])
    plan_file = tmp_path / "plan.json"
    assert _run(["dedupe", "--index", idx, "--plan", plan_file]).exit_code == 0
    moved = photos / "duplicates"
    result = _run(["apply", plan_file, "--action", "move", "--to", moved, "-q", "--json"])
    assert result.exit_code == 0, result.output
    gone = [p for g in Plan.load(plan_file).groups for p in g.act_on]
    assert len(gone) == 1 and os.path.isfile(str(moved) + gone[0])
    assert not any(gone[0] in f for g in _groups(idx) for f in g)  # forgotten, not followed
    indexed = _run(["index", photos, "--index", idx, "--json"])
    assert json.loads(indexed.stdout)["added"] == 0, indexed.output
    assert _groups(idx) == []
    assert _run(["undo", f"{plan_file}.journal"]).exit_code == 0
    assert any(gone[0] in g for g in _groups(idx)) and os.path.exists(gone[0])
    assert not moved.exists()  # made by apply, left with nothing: removed


def test_not_duplicates_from_a_saved_page_plan_are_remembered(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    originals = write_pictures(photos, 4)
    big2 = photos / "big2.jpg"
    make_picture(2, (320, 240)).save(big2, quality=92)
    shutil.copy2(originals[0], photos / "dup0.jpg")
    idx = tmp_path / "idx"
    _run(["index", photos, "--index", idx, "--model", tiny_model / "model.onnx", "-q"])
    plan_file = tmp_path / "plan.json"
    assert _run(["dedupe", "--index", idx, "--plan", plan_file]).exit_code == 0
    data = json.loads(plan_file.read_text())
    near = next(g for g in data["groups"] if str(big2) in [f["path"] for f in g["files"]])
    # what the page's "Not duplicates" button does to a group
    near.update(decision="not-duplicates", keep=[f["path"] for f in near["files"]], act_on=[])
    plan_file.write_text(json.dumps(data))
    result = _run(["apply", plan_file, "--action", "trash", "-q", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["not_duplicates"] == [[f["path"] for f in near["files"]]] and len(out["done"]) == 1
    groups = _groups(idx)
    assert not any(str(big2) in g for g in groups) and big2.exists() and originals[2].exists()


def _planned_copy(tmp_path, tiny_model, monkeypatch):
    """Three pictures and a copy of the first, indexed (with a copy of the tiny model), and a
    plan made. Returns (photos, originals, model, index, plan)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    originals = write_pictures(photos, 3)
    shutil.copy2(originals[0], photos / "dup.jpg")
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_model / "model.onnx", model)
    idx = tmp_path / "idx"
    _run(["index", photos, "--index", idx, "--model", model, "-q"])
    plan_file = tmp_path / "plan.json"
    assert _run(["dedupe", "--index", idx, "--plan", plan_file]).exit_code == 0
    return photos, originals, model, idx, plan_file


def _trashed_copy(tmp_path, tiny_model, monkeypatch):
    """_planned_copy, and the plan applied with trash."""
    made = _planned_copy(tmp_path, tiny_model, monkeypatch)
    assert _run(["apply", made[-1], "--action", "trash", "-q"]).exit_code == 0
    return made


def test_undo_of_trash_names_the_command_when_the_index_cannot_take_the_files_back(
        tmp_path, tiny_model, monkeypatch):
    photos, originals, model, idx, plan_file = _trashed_copy(tmp_path, tiny_model, monkeypatch)
    model.unlink()  # the index's model is gone: the files come back, the index cannot embed them
    result = _run(["undo", f"{plan_file}.journal"])
    assert result.exit_code == 1, result.output
    assert "the index was not updated" in result.stderr
    assert f"simsearch index {photos} --index {idx}" in result.stderr
    assert all(p.exists() for p in originals) and (photos / "dup.jpg").exists()


def test_undo_without_a_known_index_says_so_and_json_names_the_files_indexed_again(
        tmp_path, tiny_model, monkeypatch):
    photos, _, _, idx, plan_file = _trashed_copy(tmp_path, tiny_model, monkeypatch)
    trashed = [p for g in Plan.load(plan_file).groups for p in g.act_on]
    result = _run(["undo", f"{plan_file}.journal", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["reindexed"] == trashed and out["index"] == ""

    data = json.loads(plan_file.read_text())
    data["index"] = None  # a plan that does not say which index it came from
    plan_file.write_text(json.dumps(data))
    assert _run(["apply", plan_file, "--action", "trash", "-q"]).exit_code == 0
    result = _run(["undo", f"{plan_file}.journal"])
    assert result.exit_code == 0, result.output
    assert "in the index again" not in result.stderr
    assert f"to index them: simsearch index {photos} --index DIR" in result.stderr
    # apply --index is what the journal records for undo, whatever the plan says
    journal = tmp_path / "second.journal"
    assert _run(["apply", plan_file, "--action", "trash", "-q", "--index", idx,
                 "--journal", journal]).exit_code == 0
    result = _run(["undo", journal])
    assert result.exit_code == 0 and "restored files are in the index again" in result.stderr


def test_apply_exits_1_when_the_index_cannot_follow(tmp_path, tiny_model, monkeypatch):
    """A mistyped --index: the files are trashed as planned, the index is not updated, and
    the exit status says so (a script would otherwise take the index to be up to date)."""
    photos, originals, _, idx, plan_file = _planned_copy(tmp_path, tiny_model, monkeypatch)
    result = _run(["apply", plan_file, "--action", "trash", "-q", "--index", tmp_path / "typo"])
    assert result.exit_code == 1 and "the index was not updated" in result.stderr
    assert "1 files trashed" in result.stderr


def test_moves_an_earlier_version_followed_into_the_index_are_forgotten(tmp_path, tiny_model,
                                                                        monkeypatch):
    """An earlier simsearch followed moved files under --to in the index (and set no folder
    aside): the same apply run again forgets them there, so they do not group again."""
    from simsearch.actions import apply
    from simsearch.files import MOVED_MARK, sha256
    from simsearch.index import open_index
    photos, originals, _, idx, plan_file = _planned_copy(tmp_path, tiny_model, monkeypatch)
    moved = tmp_path / "moved"
    report = apply(Plan.load(plan_file), "move", f"{plan_file}.journal", to=moved,
                   plan_id=sha256(plan_file))
    open_index(idx).relocate(report.moved)  # as the earlier version did
    (moved / MOVED_MARK).unlink()
    assert len(_groups(idx)) == 1
    again = _run(["apply", plan_file, "--action", "move", "--to", moved, "--json", "-q"])
    assert again.exit_code == 0 and json.loads(again.stdout)["earlier"] == 1, again.output
    assert _groups(idx) == []


def test_undo_again_after_an_interrupted_one_puts_the_files_back_in_the_index(
        tmp_path, tiny_model, monkeypatch):
    """An undo killed after putting the files back, before the index took them: the next
    undo finds nothing left to restore, and still gives the index the files put back."""
    from simsearch.actions import undo
    from simsearch.index import open_index
    photos, originals, _, idx, plan_file = _planned_copy(tmp_path, tiny_model, monkeypatch)
    for action in (["move", "--to", tmp_path / "aside"], ["trash"]):
        assert _run(["apply", plan_file, "--action", *action, "-q"]).exit_code == 0
        assert open_index(idx).count() == 3
        undo(f"{plan_file}.journal")  # the files are back; the index was not told
        result = _run(["undo", f"{plan_file}.journal"])
        assert result.exit_code == 0 and "0 restored" in result.stderr, result.output
        assert "1 restored files are in the index again" in result.stderr, (action, result.stderr)
        assert open_index(idx).count() == 4
        again = _run(["undo", f"{plan_file}.journal"])  # nothing new: nothing said of it
        assert "in the index again" not in again.stderr, again.output


def test_an_undo_cut_short_before_it_wrote_so_is_finished_by_undo_or_apply_again(
        tmp_path, tiny_model, monkeypatch):
    """Killed after a file was back at its path, before the journal said so: undo again gives
    it to the index; apply again moves it anew (it used to call it moved, and the index lost
    it). A file named inside the folder moves set aside is not indexed either."""
    from simsearch.index import open_index
    photos, originals, _, idx, plan_file = _planned_copy(tmp_path, tiny_model, monkeypatch)
    aside = tmp_path / "aside"
    assert _run(["apply", plan_file, "--action", "move", "--to", aside, "-q"]).exit_code == 0
    [gone] = [p for g in Plan.load(plan_file).groups for p in g.act_on]
    moved = str(aside) + gone
    from simsearch.journal import Journal
    with Journal(f"{plan_file}.journal") as j:  # what undo did before its kill
        j.append({"op": "undo-start"})
    os.rename(moved, gone)
    assert _run(["index", os.path.dirname(moved), "--index", idx, "-q"]).exit_code == 0
    assert open_index(idx).count() == 3  # (inside the set-aside folder: passed over)
    result = _run(["apply", plan_file, "--action", "move", "--to", aside, "--json", "-q"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["done"]) == 1, result.output
    assert os.path.isfile(moved) and not os.path.exists(gone)
    with Journal(f"{plan_file}.journal") as j:  # cut short again; this time undo is run
        j.append({"op": "undo-start"})
    os.rename(moved, gone)
    result = _run(["undo", f"{plan_file}.journal"])
    assert result.exit_code == 0 and "1 restored files are in the index again" in result.stderr
    assert open_index(idx).count() == 4 and not aside.exists()


def test_a_file_put_back_by_hand_is_left_there_by_apply_run_again(tmp_path, tiny_model,
                                                                  monkeypatch):
    """Trashed, then restored by hand from the desktop trash: the same apply run again (to
    resume something else, say) leaves it where the person put it, and the index takes it."""
    from simsearch.index import open_index
    photos, originals, _, idx, plan_file = _planned_copy(tmp_path, tiny_model, monkeypatch)
    assert _run(["apply", plan_file, "--action", "trash", "-q"]).exit_code == 0
    [gone] = [p for g in Plan.load(plan_file).groups for p in g.act_on]
    trash = tmp_path / "data" / "Trash"
    [name] = os.listdir(trash / "files")
    os.rename(trash / "files" / name, gone)  # the file manager's "Restore"
    os.unlink(trash / "info" / f"{name}.trashinfo")
    result = _run(["apply", plan_file, "--action", "trash", "-q"])
    assert result.exit_code == 0 and f"left {gone} where you put it back" in result.stderr, result.output
    assert os.path.isfile(gone) and open_index(idx).count() == 4
    again = _run(["apply", plan_file, "--action", "trash", "-q", "--json"])  # and again
    assert again.exit_code == 0 and json.loads(again.stdout)["done"] == [], again.output
    assert os.path.isfile(gone)
    # a whole cycle later (apply, undo, apply again), the same: an old undo is not this one
    j2 = str(tmp_path / "j2")
    for step in (["apply", plan_file, "--action", "trash", "-q", "--journal", j2],
                 ["undo", j2], ["apply", plan_file, "--action", "trash", "-q", "--journal", j2]):
        out = _run(step)
        assert out.exit_code == 0, out.output
    [name] = os.listdir(trash / "files")
    os.rename(trash / "files" / name, gone)
    os.unlink(trash / "info" / f"{name}.trashinfo")
    result = _run(["apply", plan_file, "--action", "trash", "-q", "--journal", j2])
    assert result.exit_code == 0 and f"left {gone} where you put it back" in result.stderr
    # copied out of the trash, not moved: the step stays done, and the index keeps the copy
    j3 = str(tmp_path / "j3")
    assert _run(["apply", plan_file, "--action", "trash", "-q", "--journal", j3]).exit_code == 0
    [name] = os.listdir(trash / "files")
    shutil.copy2(trash / "files" / name, gone)
    assert open_index(idx).count() == 3
    result = _run(["apply", plan_file, "--action", "trash", "-q", "--journal", j3])
    assert result.exit_code == 0 and open_index(idx).count() == 4, result.output
    assert os.path.isfile(gone) and os.path.isfile(trash / "files" / name)


def test_a_file_with_other_indexed_names_is_kept_and_hard_links_free_nothing(tmp_path, tiny_model,
                                                                            monkeypatch):
    """A hostile tester's case (session 32): after `apply --action symlink`, a later plan acted
    on the file the link pointed at (its two names were one file, listed once) and the trash
    left the link pointing at nothing; with hard links apply counted bytes as freed that the
    other name still held. A file with other indexed names is kept, and says so; a file acted
    on while another name holds its bytes is not counted as freed, and apply says so."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    make_picture(7, (320, 240)).save(photos / "a" / "p.jpg", quality=92)
    make_picture(7, (640, 480)).save(photos / "b" / "p_full.jpg", quality=92)
    (photos / "b" / "p_link.jpg").symlink_to(photos / "a" / "p.jpg")
    idx = str(tmp_path / "idx")
    assert _run(["index", photos, "--index", idx, "--model", tiny_model / "model.onnx",
                 "-q"]).exit_code == 0
    plan_file = tmp_path / "plan.json"
    result = _run(["dedupe", "--index", idx, "--threshold", "0.5", "--plan", plan_file])
    assert result.exit_code == 0, result.output
    group = next(g for g in Plan.load(plan_file).groups
                 if str(photos / "b" / "p_full.jpg") in [f.path for f in g.files])
    files = {f.path: f for f in group.files}
    linked = next(p for p in files if p.endswith(("a/p.jpg", "b/p_link.jpg")))
    assert group.keep[0] == str(photos / "b" / "p_full.jpg") and linked in group.keep
    assert files[linked].reason.startswith("kept: also indexed as") and files[linked].aliases
    assert group.act_on == []
    dedupe = json.loads(_run(["dedupe", "--index", idx, "--threshold", "0.5", "--json"]).stdout)
    member = next(m for g in dedupe["groups"] for m in g["members"] if m["path"] == linked)
    assert len(member["aliases"]) == 1

    # a hard link outside the index holds a file's bytes: acted on, it frees nothing
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.link(photos / "b" / "p_full.jpg", other / "p_full.jpg")
    (photos / "b" / "p_link.jpg").unlink()
    (photos / "a" / "p.jpg").unlink()
    shutil.copy2(photos / "b" / "p_full.jpg", photos / "a" / "copy.jpg")
    assert _run(["index", photos, "--index", idx, "-q"]).exit_code == 0
    plan_file = tmp_path / "plan2.json"
    assert _run(["dedupe", "--index", idx, "--threshold", "0.5", "--plan", plan_file,
                 "--keep", f"path={photos / 'a'}"]).exit_code == 0
    group = next(g for g in Plan.load(plan_file).groups if g.act_on)
    assert group.act_on == [str(photos / "b" / "p_full.jpg")]
    result = _run(["apply", plan_file, "--action", "trash", "--index", idx, "--json"])
    out = json.loads(result.stdout)
    assert out["held_by_other_names"] == [str(photos / "b" / "p_full.jpg")]
    assert out["freed_bytes"] == 0


def test_a_folder_indexed_under_two_names_is_acted_on_as_one(tmp_path, tiny_model, monkeypatch):
    """A review's case (session 32): one folder indexed under two names (a linked folder, a
    mount) gave every file an alias, and a plan kept them all for it. The same entry reached
    through another folder name is no other name of the file: its duplicates are acted on."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    real = tmp_path / "real"
    real.mkdir()
    make_picture(9, (320, 240)).save(real / "a.jpg", quality=92)
    make_picture(9, (160, 120)).save(real / "a_small.jpg", quality=92)
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    idx = str(tmp_path / "idx")
    assert _run(["index", real, tmp_path / "alias", "--index", idx, "--model",
                 tiny_model / "model.onnx", "-q"]).exit_code == 0
    plan_file = tmp_path / "plan.json"
    assert _run(["dedupe", "--index", idx, "--threshold", "0.5", "--plan",
                 plan_file]).exit_code == 0
    group = Plan.load(plan_file).groups[0]
    assert [os.path.basename(p) for p in group.keep] == ["a.jpg"], [f.reason for f in group.files]
    assert [os.path.basename(p) for p in group.act_on] == ["a_small.jpg"]
    assert not any("also indexed as" in f.reason for f in group.files)


def test_a_unique_picture_added_to_a_group_by_hand_is_not_acted_on(tmp_path, tiny_model,
                                                                    monkeypatch):
    """Left alone in session 33: `apply` trusted a hand-edited plan's groups, re-checking each
    file's bytes but not that it is a copy, so a unique photo added to a group (its hash and
    size right, marked checked) was trashed. The index's vectors are asked first: a file
    acted on that scores under the plan's threshold with every kept file of its group and its
    centre is skipped, with the reason; the real copies are acted on."""
    import hashlib
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    originals = write_pictures(photos / "a", 4)
    copy0 = photos / "b" / "copy0.jpg"
    copy0.parent.mkdir()
    shutil.copy2(originals[0], copy0)
    idx = tmp_path / "idx"
    assert _run(["index", photos, "--index", idx, "--model", tiny_model / "model.onnx",
                 "-q"]).exit_code == 0
    plan_file = tmp_path / "plan.json"
    assert _run(["dedupe", "--index", idx, "--plan", plan_file]).exit_code == 0
    data = json.loads(plan_file.read_text())
    (g,) = data["groups"]
    assert len(g["act_on"]) == 1
    unique = str(originals[3])
    scores = open_index(idx).scores_between([(unique, p) for p in g["keep"] + g["act_on"]])
    assert max(scores) < data["threshold"] - 0.02, scores  # (a picture of its own)
    st = os.stat(unique)
    g["files"].append({**g["files"][-1], "path": unique, "size": st.st_size,
                       "mtime_ns": str(st.st_mtime_ns), "reason": "added by hand",
                       "sha256": hashlib.sha256(Path(unique).read_bytes()).hexdigest(),
                       "evidence": "checked"})
    g["act_on"].append(unique)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    before = Path(unique).read_bytes()
    result = _run(["apply", edited, "--action", "trash"])
    assert result.exit_code == 1, result.output
    assert f"skipped {unique}: not alike any kept file of its group by the index's vectors" \
        in result.output, result.output
    assert Path(unique).read_bytes() == before
    assert not os.path.exists(g["act_on"][0])  # the real copy was trashed
    # the plan as dedupe wrote it asks nothing of the index that holds it back
    index = open_index(idx)
    assert Plan.load(plan_file).not_alike(index.scores_between, index.contents_of) == {}
    # a tester's case: a file indexed as a copy, overwritten since with another picture and
    # given its new hash in the plan by hand: its vector is the old picture's; held back
    undone = _run(["undo", str(edited) + ".journal"])
    assert undone.exit_code == 0, undone.output
    data = json.loads(plan_file.read_text())
    (g,) = data["groups"]
    (copy,) = g["act_on"]
    shutil.copy2(originals[3], copy)
    st = os.stat(copy)
    entry = next(f for f in g["files"] if f["path"] == copy)
    entry.update(size=st.st_size, mtime_ns=str(st.st_mtime_ns),
                 sha256=hashlib.sha256(Path(copy).read_bytes()).hexdigest())
    edited.write_text(json.dumps(data))
    result = _run(["apply", edited, "--action", "trash", "--journal", tmp_path / "j2"])
    assert result.exit_code == 1 and os.path.exists(copy), result.output
    assert f"skipped {copy}: the index holds other content under its name" in result.output
