"""Plan -> apply (each action) -> undo gives back every byte, path, mtime and mode; changed,
protected and linked files are never acted on; a crash at any step, then undo or a resumed
apply, loses nothing."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from groups import group
from simsearch import actions
from simsearch.actions import apply, undo
from simsearch.errors import JournalError, PlanError
from simsearch.files import MOVED_MARK
from simsearch.plan import Plan, make_plan
from simsearch.keeprules import parse_rules


def _image(path: Path, size, seed: int, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 30 + seed).convert("RGB").save(path, quality=80 + seed % 10)
    os.chmod(path, mode)
    os.utime(path, ns=(1_500_000_000_123_456_789 + seed, 1_400_000_000_987_654_321 + seed * 1000))
    return path


@pytest.fixture
def library(tmp_path, monkeypatch):
    """Three groups under photos/: the largest copy of each is kept; one protected copy."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    groups = []
    for g in range(3):
        paths = [_image(photos / f"g{g}" / "best.jpg", (96, 72), seed=10 * g),
                 _image(photos / f"g{g}" / "copy one.jpg", (48, 36), seed=10 * g + 1, mode=0o600),
                 _image(photos / "inbox" / f"g{g}.jpg", (64, 48), seed=10 * g + 2)]
        groups.append(paths)
    protected = _image(photos / "archive" / "g0.jpg", (32, 24), seed=99)
    groups[0].append(protected)
    plan = make_plan([group(p) for p in groups], parse_rules(["largest"]),
                     protect=[str(photos / "archive")])
    plan.save(tmp_path / "plan.json")
    return tmp_path, photos, plan


def snapshot(root: Path) -> dict:
    """Every entry under root: kind, content hash, mtime and mode (links are not followed)."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ("link", os.readlink(p))
            else:
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                out[p] = ("file", digest, st.st_mtime_ns, oct(st.st_mode), st.st_ino)
    return out


def _without_inodes(snap: dict) -> dict:
    return {p: v[:4] for p, v in snap.items()}


def _acted(plan: Plan) -> list[str]:
    return [p for g in plan.groups for p in g.act_on]


@pytest.mark.parametrize("action", ["trash", "move", "hardlink", "symlink"])
def test_apply_then_undo_restores_every_byte_mtime_and_mode(library, action):
    tmp_path, photos, plan = library
    before = snapshot(photos)
    kept = {p for g in plan.groups for p in g.keep}
    journal = tmp_path / "journal"
    report = apply(plan, action, journal, to=tmp_path / "moved" if action == "move" else None)
    assert sorted(o.path for o in report.done) == sorted(_acted(plan)) and not report.skipped
    after = snapshot(photos)
    for p in kept:  # kept files untouched, the protected one included
        assert after[p] == before[p]
    for p in _acted(plan):
        if action in ("trash", "move"):
            assert p not in after
        elif action == "symlink":
            assert after[p][0] == "link" and os.readlink(p) in kept
        else:
            assert after[p][4] in {before[k][4] for k in kept}  # an inode of a kept file
    if action == "trash":
        trash = tmp_path / "data" / "Trash"
        assert len(os.listdir(trash / "files")) == len(_acted(plan))
        info = (trash / "info" / "copy one.jpg.trashinfo").read_text()
        assert info.startswith("[Trash Info]\nPath=") and "copy%20one.jpg" in info
    if action == "move":
        for p in _acted(plan):
            assert os.path.exists(str(tmp_path / "moved") + p)
        assert report.moved == {p: str(tmp_path / "moved") + p for p in _acted(plan)}
    restored = undo(journal)
    assert len(restored.restored) == len(_acted(plan)) and not restored.not_restored
    now = snapshot(photos)
    assert _without_inodes(now) == _without_inodes(before)
    if action in ("trash", "move", "hardlink", "symlink"):
        assert now == before  # the very same files (inodes) are back, not copies
    assert not os.listdir(journal / "held")
    if action == "trash":
        assert not os.listdir(tmp_path / "data" / "Trash" / "files")
        assert not os.listdir(tmp_path / "data" / "Trash" / "info")
    if action == "move":  # the folders the move made are gone again
        assert not (tmp_path / "moved").exists()
    assert not undo(journal).restored  # a second undo has nothing left to do


def test_delete_needs_confirmation_and_undo_says_it_cannot(library):
    tmp_path, photos, plan = library
    with pytest.raises(PlanError, match="--yes-delete"):
        apply(plan, "delete", tmp_path / "j")
    report = apply(plan, "delete", tmp_path / "j", confirm_delete=True)
    assert sorted(report.removed) == sorted(_acted(plan))
    assert not any(os.path.exists(p) for p in _acted(plan))
    back = undo(tmp_path / "j")
    assert not back.restored and {o.detail for o in back.not_restored} == \
        {"deleted: cannot be restored"}


def test_changed_files_and_changed_kept_copies_are_skipped(library):
    """A file edited in place (same size, other bytes) is skipped, and so is a group whose kept
    copy was edited. A file only touched (the same bytes, another mtime: a sync, a backup
    tool) is acted on, and undo gives it back with the mtime it had then."""
    tmp_path, photos, plan = library
    g0, g1 = plan.groups[0], plan.groups[1]
    touched, edited = g0.act_on[0], g0.act_on[1]
    os.utime(touched, ns=(0, 1))  # same bytes, another mtime
    for path in (edited, g1.keep[0]):  # edited in place (the kept copy of group 2 too)
        with open(path, "r+b") as fh:
            fh.seek(100)
            fh.write(b"\x00")
    before = snapshot(photos)
    report = apply(plan, "trash", tmp_path / "j")
    skipped = {o.path: o.detail for o in report.skipped}
    assert touched not in skipped and not os.path.exists(touched)
    assert skipped[edited] == "changed since the plan was made (content)"
    for p in g1.act_on:
        assert skipped[p].startswith("no kept copy of its group is intact")
    after = snapshot(photos)
    for p in [edited] + g1.act_on + g1.keep:
        assert after[p] == before[p]
    assert len(report.done) == len(_acted(plan)) - 1 - len(g1.act_on)
    undo(tmp_path / "j")
    assert snapshot(photos) == before  # the touched file with its new mtime (1 ns)
    assert os.stat(touched).st_mtime_ns == 1


def test_never_the_kept_file_under_another_name(library):
    tmp_path, photos, plan = library
    g = plan.groups[2]
    victim = g.act_on[0]
    os.unlink(victim)
    os.link(g.keep[0], victim)  # now a second name of the kept file
    data = plan.to_dict()
    f = next(f for f in data["groups"][2]["files"] if f["path"] == victim)
    st = os.stat(victim)
    kept = next(f for f in data["groups"][2]["files"] if f["path"] == g.keep[0])
    f.update(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=kept["sha256"])
    report = apply(Plan.from_dict(data), "trash", tmp_path / "j")
    assert any(o.path == victim and "the kept file under another name" in o.detail
               for o in report.skipped)
    assert os.path.exists(victim) and os.path.exists(g.keep[0])


def test_protected_files_are_never_acted_on_even_in_an_edited_plan(library):
    tmp_path, photos, plan = library
    data = plan.to_dict()
    g = data["groups"][0]
    protected = next(f["path"] for f in g["files"] if f["protected"])
    g["act_on"].append(protected)
    with pytest.raises(PlanError, match="protected"):
        Plan.from_dict(data)
    g["act_on"].remove(protected)
    next(f for f in g["files"] if f["path"] == protected)["protected"] = False
    g["act_on"].append(protected)  # the flag dropped too: the plan's protect list still holds
    with pytest.raises(PlanError, match="protected"):
        Plan.from_dict(data)


def test_a_journal_is_for_one_plan_and_action(library):
    tmp_path, photos, plan = library
    apply(plan, "trash", tmp_path / "j", plan_id="a")
    with pytest.raises(JournalError, match="undo it first with: simsearch undo"):
        apply(plan, "symlink", tmp_path / "j", plan_id="a")
    undo(tmp_path / "j")
    assert len(apply(plan, "symlink", tmp_path / "j", plan_id="a").done) == len(_acted(plan))
    assert len(undo(tmp_path / "j").restored) == len(_acted(plan))
    with pytest.raises(JournalError, match="no apply journal"):
        undo(tmp_path / "nothing")


class _Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup."""


class _CrashingOs:
    """The os module, but the k-th call that changes something on disk never returns."""

    CALLS = {"link", "unlink", "replace", "rename", "symlink", "write", "makedirs", "fsync"}

    def __init__(self, k: int):
        self.k, self.count = k, 0

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.CALLS:
            return real

        def call(*args, **kwargs):
            self.count += 1
            if self.count == self.k:
                raise _Crash(name)
            return real(*args, **kwargs)
        return call


@pytest.mark.parametrize("action", ["trash", "move", "hardlink", "symlink"])
def test_a_crash_at_every_step_then_undo_or_resume_loses_nothing(library, monkeypatch, action):
    tmp_path, photos, plan = library
    before = snapshot(photos)
    to = tmp_path / "moved" if action == "move" else None
    k = 0
    while True:
        k += 1
        journal = tmp_path / f"j{k}"
        fake = _CrashingOs(k)
        monkeypatch.setattr(actions, "os", fake)
        try:
            apply(plan, action, journal, to=to)
            crashed = False
        except _Crash:
            crashed = True
        finally:
            monkeypatch.setattr(actions, "os", os)
        if k % 2 and crashed:  # resume, then undo all
            report = apply(plan, action, journal, to=to)
            assert report.earlier + len(report.done) == len(_acted(plan)), k
        undo(journal)
        assert _without_inodes(snapshot(photos)) == _without_inodes(before), (action, k)
        if not crashed:
            break
    assert k > 10


def test_sigkill_at_random_moments_then_undo_or_resume(library):
    """`simsearch apply` in a real process killed at a random moment (seeded), several times."""
    tmp_path, photos, plan = library
    big = []  # more groups, so that a kill lands inside the run
    for g in range(24):
        big.append([_image(photos / "many" / f"{g}-a.jpg", (64, 48), seed=200 + 2 * g),
                    _image(photos / "many" / f"{g}-b.jpg", (32, 24), seed=201 + 2 * g)])
    many = make_plan([group(p) for p in big], parse_rules(["largest"]))
    plan = Plan(plan.groups + many.groups, protect=plan.protect)
    plan.save(tmp_path / "plan.json")
    before = snapshot(photos)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    total = len(_acted(plan))

    def done_count(journal) -> int:
        try:
            return (journal / "journal.jsonl").read_text().count('"op": "done"')
        except FileNotFoundError:
            return 0

    def run(journal, action, kill_at=None):
        """Run apply; with kill_at = (n, delay), SIGKILL it `delay` seconds after its journal
        records n files done (n = 0: after the journal appears). Kills are placed by progress,
        not by a time measured once, so a machine that speeds up or slows down mid-test still
        sees them land inside the run. Returns the exit status and the seconds from the
        journal's appearance to the process's end."""
        proc = subprocess.Popen([sys.executable, "-m", "simsearch.cli", "apply",
                                 str(tmp_path / "plan.json"), "--action", action, "--journal",
                                 str(journal), "-q"], env=env, stdout=subprocess.DEVNULL)
        while proc.poll() is None and not (journal / "journal.jsonl").exists():
            time.sleep(0.0005)
        start = time.monotonic()
        if kill_at is not None:
            n, delay = kill_at
            while proc.poll() is None and done_count(journal) < n:
                time.sleep(0.0005)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=300), time.monotonic() - start

    status, seconds = run(tmp_path / "whole", "hardlink")
    assert status == 0 and done_count(tmp_path / "whole") == total
    per_file = seconds / total  # a kill lands anywhere in a file's work, on a fast or a slow machine
    undo(tmp_path / "whole")
    assert _without_inodes(snapshot(photos)) == _without_inodes(before)
    rng = random.Random(13)
    interrupted = tries = 0
    while interrupted < 6 and tries < 30:  # six kills inside a run; one that lands after is checked too
        action = ["trash", "hardlink", "symlink"][tries % 3]
        journal = tmp_path / f"kill{tries}"
        tries += 1
        run(journal, action, kill_at=(rng.randrange(total), rng.uniform(0.0, 1.5 * per_file)))
        interrupted += done_count(journal) < total
        if tries % 2:
            assert run(journal, action)[0] == 0  # resumed to the end
            assert done_count(journal) >= total
            for p in _acted(plan):
                assert os.path.islink(p) if action == "symlink" else (
                    action == "hardlink" or not os.path.exists(p))
        if (journal / "journal.jsonl").exists():
            undo(journal)
        assert _without_inodes(snapshot(photos)) == _without_inodes(before), tries
    assert interrupted == 6


def test_cli_apply_and_undo(library):
    from click.testing import CliRunner

    from simsearch.cli import main

    tmp_path, photos, plan = library
    before = snapshot(photos)
    runner = CliRunner()
    plan_file = str(tmp_path / "plan.json")
    result = runner.invoke(main, ["apply", plan_file, "--action", "delete"])
    assert result.exit_code == 2 and "--yes-delete" in result.output
    result = runner.invoke(main, ["apply", plan_file, "--action", "move"])
    assert result.exit_code == 2 and "--to DIR" in result.output
    result = runner.invoke(main, ["apply", plan_file, "--action", "move", "--to",
                                  str(tmp_path / "moved"), "-q"])
    assert result.exit_code == 0, result.output
    journal = plan_file + ".journal"
    assert f"undo with: simsearch undo {journal}" in result.stderr
    assert "6 files moved" in result.stderr and result.stdout.count("moved ") == 6
    result = runner.invoke(main, ["apply", plan_file, "--action", "move", "--to",
                                  str(tmp_path / "moved"), "--json", "-q"])
    assert result.exit_code == 0 and json.loads(result.stdout)["earlier"] == 6, result.output
    result = runner.invoke(main, ["undo", journal])
    assert result.exit_code == 0 and "6 restored, 0 not restored" in result.stderr
    assert _without_inodes(snapshot(photos)) == _without_inodes(before)


def test_apply_exits_1_when_it_leaves_a_planned_file_as_it_was(library):
    """A script sees that not all was done: a file skipped as changed since the plan makes the
    exit status 1 (text and JSON); one that was already the kept file, nothing to free, not."""
    from click.testing import CliRunner

    from simsearch.cli import main

    tmp_path, photos, plan = library
    g = plan.groups[2]
    victim = g.act_on[0]
    os.unlink(victim)
    os.link(g.keep[0], victim)  # already the kept file under another name: nothing to do
    data = plan.to_dict()
    f = next(f for f in data["groups"][2]["files"] if f["path"] == victim)
    kept = next(f for f in data["groups"][2]["files"] if f["path"] == g.keep[0])
    st = os.stat(victim)
    f.update(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=kept["sha256"])
    Plan.from_dict(data).save(tmp_path / "linked.json")
    runner = CliRunner()
    result = runner.invoke(main, ["apply", str(tmp_path / "linked.json"), "--action", "trash",
                                  "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["left_undone"] == 0
    runner.invoke(main, ["undo", str(tmp_path / "linked.json.journal")])
    changed = plan.groups[0].act_on[0]
    with open(changed, "r+b") as fh:  # edited in place: same size, other bytes
        fh.seek(100)
        fh.write(b"\x00")
    for extra in ([], ["--json"]):
        result = runner.invoke(main, ["apply", str(tmp_path / "plan.json"), "--action", "trash",
                                      "-q", "--journal", str(tmp_path / f"j{len(extra)}")] + extra)
        assert result.exit_code == 1, result.output
        assert f"skipped {changed}: changed since the plan was made" in result.stderr
        runner.invoke(main, ["undo", str(tmp_path / f"j{len(extra)}")])
    assert "left as they were: 1 of the plan's files" in runner.invoke(
        main, ["apply", str(tmp_path / "plan.json"), "--action", "trash", "-q"]).stderr


def test_links_and_pipes_in_place_of_a_planned_file_are_skipped_without_blocking(library):
    tmp_path, photos, plan = library
    pipe, link = plan.groups[0].act_on[0], plan.groups[1].act_on[0]
    os.unlink(pipe)
    os.mkfifo(pipe)  # reading it would wait for ever
    os.unlink(link)
    os.symlink(plan.groups[1].keep[0], link)
    report = apply(plan, "trash", tmp_path / "j")
    skipped = {o.path: o.detail for o in report.skipped}
    assert skipped[pipe] == "not a regular file" and skipped[link] == "now a symbolic link"
    assert os.path.islink(link) and os.path.exists(pipe)


def test_undo_never_overwrites_a_file_changed_after_apply_and_says_where_the_original_is(library):
    tmp_path, photos, plan = library
    apply(plan, "hardlink", tmp_path / "j")
    changed = plan.groups[0].act_on[0]
    os.unlink(changed)
    Path(changed).write_bytes(b"the user's new file")
    emptied = plan.groups[1].act_on[0]
    back = undo(tmp_path / "j")
    not_restored = {o.path: o.detail for o in back.not_restored}
    assert list(not_restored) == [changed] and "the original is kept at" in not_restored[changed]
    assert Path(changed).read_bytes() == b"the user's new file"
    assert os.path.isfile(emptied) and not os.path.samefile(emptied, plan.groups[1].keep[0])


def test_a_file_emptied_from_the_trash_is_reported_not_restored(library):
    tmp_path, photos, plan = library
    apply(plan, "trash", tmp_path / "j")
    gone = plan.groups[2].act_on[0]
    from simsearch.trash import original_path

    trash = tmp_path / "data" / "Trash"
    for info in os.listdir(trash / "info"):
        if original_path(str(trash / "info" / info)) == gone:  # Path= percent-decoded back
            os.unlink(trash / "files" / info[:-len(".trashinfo")])
    back = undo(tmp_path / "j")
    assert [o.path for o in back.not_restored] == [gone]
    assert "emptied from the trash" in back.not_restored[0].detail
    assert len(back.restored) == len(_acted(plan)) - 1


def test_a_very_long_file_name_goes_to_the_trash_and_back(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    long = [_image(tmp_path / "p" / ("é" * 120 + ".jpg"), (64, 48), seed=1),
            _image(tmp_path / "p" / ("e" * 200 + ".jpg"), (32, 24), seed=2)]
    plan = make_plan([group(long)], parse_rules(["largest"]))
    before = snapshot(tmp_path / "p")
    assert len(apply(plan, "trash", tmp_path / "j").done) == 1
    undo(tmp_path / "j")
    assert snapshot(tmp_path / "p") == before


def test_undo_of_a_move_leaves_folders_that_were_there_or_hold_anything(library):
    tmp_path, photos, plan = library
    to = tmp_path / "moved"
    report = apply(plan, "move", tmp_path / "journal", to=to)
    assert report.done and not report.skipped
    (to / "mine").mkdir()  # the person's own empty folder under --to, made since
    first = str(to) + report.done[0].path
    note = os.path.join(os.path.dirname(first), "note.txt")
    with open(note, "w") as fh:  # something written beside a moved file since
        fh.write("mine")
    assert len(undo(tmp_path / "journal").restored) == len(report.done)
    assert (to / "mine").is_dir() and os.path.exists(note)
    # nothing else is left under --to but the folders that hold the note, and "mine"
    left = sorted(os.path.relpath(os.path.join(d, f), to)
                  for d, dirs, files in os.walk(to) for f in files + dirs)
    assert left == sorted(["mine", MOVED_MARK, os.path.relpath(note, to)] + [
        os.path.relpath(p, to) for p in _parents(os.path.dirname(note), str(to))])


def test_move_sets_its_folder_aside_and_refuses_a_folder_holding_other_files(library):
    """--to is set aside as a whole (never indexed, never a kept copy), so a folder holding
    anything else (a photo folder, /) is refused before any file moves; a folder an earlier
    move made is taken again. A journal is never made in a folder holding other files."""
    from simsearch.files import in_own_folder
    tmp_path, photos, plan = library
    before = snapshot(photos)
    for taken in (photos, photos / "inbox", Path("/")):
        with pytest.raises(PlanError, match="holds other files"):
            apply(plan, "move", tmp_path / "j", to=taken)
    assert snapshot(photos) == before and not (tmp_path / "j").exists()
    with pytest.raises(JournalError, match="holds other files .* is no apply journal"):
        apply(plan, "trash", photos / "g1")
    assert snapshot(photos) == before
    to = tmp_path / "new" / "aside"
    report = apply(plan, "move", tmp_path / "j", to=to)
    assert report.done and in_own_folder(str(to) + report.done[0].path) == str(to)
    again = make_plan([group([plan.groups[0].keep[0], str(to) + report.done[0].path])],
                      parse_rules(["largest"]))  # a set-aside copy is never acted on again
    assert apply(again, "trash", tmp_path / "j2").done == []
    undo(tmp_path / "j")
    assert not (tmp_path / "new").exists() and snapshot(photos) == before


def test_a_move_journal_of_an_earlier_version_resumes_into_its_folder(library):
    """An earlier simsearch moved into a folder it did not mark (and the person has put
    files there since): applying the same plan again with that journal resumes, not refused,
    and leaves the folder as it was (it may hold the person's photos: not set aside)."""
    tmp_path, photos, plan = library
    to = tmp_path / "aside"
    first = apply(plan, "move", tmp_path / "j", to=to)
    (to / MOVED_MARK).unlink()
    (to / "notes.txt").write_text("mine")
    again = apply(plan, "move", tmp_path / "j", to=to)
    assert again.earlier == len(first.done) and not again.done and not again.skipped
    assert not (to / MOVED_MARK).exists()
    unusable = tmp_path / "notes.txt"  # a --to that cannot be made: refused, naming it
    unusable.write_text("mine")
    with pytest.raises(PlanError, match=r"--to .*notes.txt/aside: cannot make it the folder"):
        apply(plan, "move", tmp_path / "j3", to=unusable / "aside")
    assert unusable.read_text() == "mine"


def test_a_failed_move_leaves_no_folders_behind_and_a_file_listed_twice_is_refused(
        library, monkeypatch):
    tmp_path, photos, plan = library

    def fails(path, place, op):
        raise OSError(28, "No space left on device", place)
    monkeypatch.setattr(actions, "_stash", fails)
    to = tmp_path / "aside"
    report = apply(plan, "move", tmp_path / "j", to=to)
    assert not report.done and all("No space left" in o.detail for o in report.skipped)
    assert os.listdir(to) == [MOVED_MARK]  # no folder a move made for its file is left
    data = plan.to_dict()
    data["groups"][0]["act_on"].append(data["groups"][0]["act_on"][0])
    with pytest.raises(PlanError, match="listed twice in keep or act_on"):
        Plan.from_dict(data)


def test_two_moves_into_one_folder_undone_in_either_order_leave_nothing(tmp_path, monkeypatch):
    """Two plans moved into one --to, undone oldest first: the second undo removes what the
    first could not (its folders held the other's files) and the mark. A --to inside the
    journal is refused; a new drive's lost+found is no file of the person's (and stays); a
    mark a person made (empty) sets nothing aside."""
    from simsearch.files import walk_images
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    plans = []
    for g in range(2):
        files = [_image(photos / f"g{g}" / "best.jpg", (96, 72), seed=10 * g),
                 _image(photos / f"g{g}" / "copy.jpg", (48, 36), seed=10 * g + 1)]
        plans.append(make_plan([group(files)], parse_rules(["largest"])))
    before = snapshot(photos)
    with pytest.raises(PlanError, match="lies in the journal folder"):
        apply(plans[0], "move", tmp_path / "ja", to=tmp_path / "ja" / "aside")
    with pytest.raises(PlanError, match="lies in the --to folder"):
        apply(plans[0], "move", tmp_path / "jb" / "j", to=tmp_path / "jb")
    to = tmp_path / "aside"
    (to / "lost+found").mkdir(parents=True)
    for n, plan in enumerate(plans):
        assert apply(plan, "move", tmp_path / f"j{n}", to=to).done
    undo(tmp_path / "j0")
    undo(tmp_path / "j1")
    assert snapshot(photos) == before
    assert os.listdir(to) == ["lost+found"]
    (photos / "g0" / MOVED_MARK).write_text("")
    assert len(list(walk_images([photos]))) == 4


def test_a_mark_cut_short_is_written_anew_and_a_drive_roots_own_entries_are_no_files(library):
    """A kill between making the mark and writing it left it empty: the folder is not refused
    for it, and the next move writes it; undo removes it and the folder. A drive's own
    entries (.Trash-1000, System Volume Information) do not make --to a folder of files, and a
    journal's missing parent folders are made."""
    from simsearch.files import marked
    tmp_path, photos, plan = library
    to = tmp_path / "new" / "aside"
    to.mkdir(parents=True)
    (to / MOVED_MARK).write_text("")
    (to / ".Trash-1000").mkdir()
    (to / "System Volume Information").mkdir()
    report = apply(plan, "move", tmp_path / "a" / "b" / "journal", to=to)
    assert report.done and marked(to, MOVED_MARK)
    undo(tmp_path / "a" / "b" / "journal")
    assert sorted(os.listdir(to)) == [".Trash-1000", "System Volume Information"]


@pytest.mark.parametrize("put_back", ["link", "copy"])
def test_an_undo_cut_short_before_removing_the_moved_name_is_finished_by_apply(library,
                                                                               put_back):
    """Undo puts a file back by a link (one drive) or a verified copy (across drives), then
    removes the moved name: killed between the two, the same apply run again finishes the
    move anew, not calling it done while the file is back at its path."""
    import shutil

    from simsearch.journal import Journal
    tmp_path, photos, plan = library
    to = tmp_path / "aside"
    first = apply(plan, "move", tmp_path / "j", to=to)
    path, place = first.done[0].path, first.done[0].detail
    with Journal(tmp_path / "j") as j:
        j.append({"op": "undo-start"})
    (os.link if put_back == "link" else shutil.copy2)(place, path)  # killed here
    again = apply(plan, "move", tmp_path / "j", to=to)
    assert [o.path for o in again.done] == [path] and not os.path.exists(path)
    assert os.path.isfile(again.done[0].detail) and again.earlier == len(first.done) - 1
    assert sorted(os.listdir(os.path.dirname(place))) == [os.path.basename(again.done[0].detail)]


def _parents(folder: str, root: str) -> list[str]:
    out = []
    while folder != root:
        out.append(folder)
        folder = os.path.dirname(folder)
    return out


# session 26: what a hostile newcomer tried against apply and undo

def _trash_entry(tmp_path, path):
    """(files/NAME, info/NAME.trashinfo) of the trash entry whose info names `path`."""
    from simsearch.trash import original_path
    trash = tmp_path / "data" / "Trash"
    for info in os.listdir(trash / "info"):
        if original_path(str(trash / "info" / info)) == path:
            return trash / "files" / info[:-len(".trashinfo")], trash / "info" / info
    return None


def test_undo_never_removes_another_file_that_took_a_trashed_files_name(library):
    """The user restores a trashed file from the desktop trash, and another file is trashed
    under the name it freed: undo leaves that file and its entry alone."""
    tmp_path, photos, plan = library
    apply(plan, "trash", tmp_path / "j")
    path = plan.groups[0].act_on[0]
    place, info = _trash_entry(tmp_path, path)
    os.rename(place, path)  # restored by hand, as a file manager does
    os.unlink(info)
    other = tmp_path / "elsewhere" / os.path.basename(path)
    _image(other, (40, 30), seed=77)
    os.rename(other, place)  # trashed by the desktop under the free name
    info.write_text(f"[Trash Info]\nPath={other}\nDeletionDate=2026-12-07T10:00:00\n")
    theirs = place.read_bytes()
    back = undo(tmp_path / "j")
    assert path in {o.path for o in back.restored}
    assert place.read_bytes() == theirs and info.is_file()  # the other file and its entry stay
    assert os.path.isfile(path)


def test_undo_of_trash_with_a_new_file_at_the_path_says_where_the_original_is(library):
    tmp_path, photos, plan = library
    apply(plan, "trash", tmp_path / "j")
    path = plan.groups[1].act_on[0]
    place, info = _trash_entry(tmp_path, path)
    Path(path).write_bytes(b"a new camera file under the same name")
    back = undo(tmp_path / "j")
    not_restored = {o.path: o.detail for o in back.not_restored}
    assert not_restored == {path: f"{path} is another file now; the original is at {place}"}
    assert Path(path).read_bytes() == b"a new camera file under the same name"
    assert place.is_file() and info.is_file()  # still in the trash, still restorable from it


def test_undo_never_removes_files_named_like_a_copy_in_progress(library, tmp_path):
    """A user's `NAME.part` beside a photo or in the trash is not a copy simsearch made."""
    tmp_path, photos, plan = library
    path = plan.groups[0].act_on[0]
    beside = Path(path + ".part")
    beside.write_bytes(b"an interrupted download")
    apply(plan, "trash", tmp_path / "j")
    place, _ = _trash_entry(tmp_path, path)
    in_trash = Path(str(place) + ".part")
    in_trash.write_bytes(b"trashed earlier by the user")
    undo(tmp_path / "j")
    assert beside.read_bytes() == b"an interrupted download"
    assert in_trash.read_bytes() == b"trashed earlier by the user"


def test_a_kept_copy_removed_during_apply_stops_the_rest_of_its_group(library):
    """The kept copies are checked again just before each file is acted on."""
    tmp_path, photos, plan = library
    group = plan.groups[1]
    assert len(group.act_on) == 2
    kept = group.keep[0]
    first = sum(len(g.act_on) for g in plan.groups[:1]) + 1  # the group's first file

    def removing(count, total):
        if count == first + 1:  # after the group's first file was acted on
            os.rename(kept, str(tmp_path / "taken away"))
    report = apply(plan, "delete", tmp_path / "j", confirm_delete=True, progress=removing)
    skipped = {o.path: o.detail for o in report.skipped}
    assert group.act_on[1] in skipped and "no kept copy of its group is intact" in skipped[
        group.act_on[1]]
    assert os.path.isfile(group.act_on[1])  # the picture's last copy here survives


def _linked(tmp_path, plan, group: int) -> tuple[str, str]:
    """Apply `plan` as hard links; the first file acted on in `group` and where its original
    is held."""
    apply(plan, "hardlink", tmp_path / "j")
    path = plan.groups[group].act_on[0]
    with actions.Journal(tmp_path / "j") as j:
        return path, next(op["held"] for op, _ in j.intents() if op["path"] == path)


def test_undo_of_a_link_whose_held_original_is_gone_says_so(library):
    tmp_path, photos, plan = library
    path, held = _linked(tmp_path, plan, 2)
    os.unlink(held)
    back = undo(tmp_path / "j")
    not_restored = {o.path: o.detail for o in back.not_restored}
    assert list(not_restored) == [path]
    assert not_restored[path] == (f"the original, held at {held}, is gone; {path} is still a "
                                  f"link to {plan.groups[2].keep[0]}")


def test_undo_of_hardlinks_after_the_kept_file_was_saved_anew(library):
    """An editor saves the kept photo under a new inode (write, then rename): the links apply
    made are still recognised, and every original comes back."""
    tmp_path, photos, plan = library
    before = snapshot(photos)
    apply(plan, "hardlink", tmp_path / "j")
    kept = plan.groups[0].keep[0]
    retouched = Path(kept + ".new")
    retouched.write_bytes(Path(kept).read_bytes() + b"retouched")
    os.replace(retouched, kept)
    back = undo(tmp_path / "j")
    assert not back.not_restored, back.not_restored
    after = snapshot(photos)
    assert {p: v for p, v in _without_inodes(after).items() if p != kept} == {
        p: v for p, v in _without_inodes(before).items() if p != kept}


def test_a_file_in_an_apply_journal_or_a_review_folder_is_never_acted_on(library):
    """A plan made from an index that took a journal's held originals for photos (an earlier
    simsearch indexed them) cannot act on them."""
    tmp_path, photos, plan = library
    journal = photos / "old.journal"
    (journal / "held").mkdir(parents=True)
    (journal / "journal.jsonl").write_text("")
    held = _image(journal / "held" / "000001.jpg", (40, 30), seed=5)
    kept = _image(photos / "elsewhere.jpg", (80, 60), seed=6)
    odd = make_plan([group([kept, held])], parse_rules(["largest"]))
    assert odd.groups[0].act_on == [str(held)]
    report = apply(odd, "trash", tmp_path / "j2")
    assert not report.done and report.skipped[0].detail == (
        f"in {journal}: {actions.OWN_FOLDERS}")
    assert held.is_file()


def test_two_applies_run_one_at_a_time(tmp_path, monkeypatch):
    import threading
    from simsearch.journal import one_at_a_time
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    held, waited, order = threading.Event(), [], []

    def first():
        with one_at_a_time():
            held.set()
            time.sleep(0.5)
            order.append("first done")
    t = threading.Thread(target=first)
    t.start()
    held.wait()
    with one_at_a_time(on_wait=lambda: waited.append(True)):
        order.append("second")
    t.join()
    assert waited == [True] and order == ["first done", "second"]


def test_a_file_name_that_is_not_utf8_survives_plan_apply_and_undo(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = tmp_path / "p"
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9 copy.jpg")
    files = [_image(folder / "best.jpg", (96, 72), seed=1), _image(Path(odd), (48, 36), seed=2)]
    plan = make_plan([group(files)], parse_rules(["largest"]))
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert again.groups[0].act_on == [odd]
    from simsearch.review import render_page
    assert "caf" in render_page(again, {})
    before = snapshot(folder)
    assert [o.path for o in apply(again, "trash", tmp_path / "j").done] == [odd]
    assert not os.path.lexists(odd)
    assert not undo(tmp_path / "j").not_restored
    assert snapshot(folder) == before


def test_a_reused_inode_number_is_not_taken_for_the_link_apply_made(tmp_path):
    """The kept file's recorded identity counts only with its size and mtime: a new file that
    got a freed inode number is the user's, and undo leaves it."""
    new = tmp_path / "copy.jpg"
    new.write_bytes(b"the user's new photo")
    st = os.stat(new)
    op = {"kept": str(tmp_path / "kept.jpg"), "kept_id": [st.st_dev, st.st_ino, 12345, 1]}
    assert not actions._is_link_to_kept(str(new), op)
    op["kept_id"] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
    assert actions._is_link_to_kept(str(new), op)


def test_a_trash_step_cut_short_before_the_move_is_done_whatever_became_of_the_file(library):
    """Killed after the trash entry was claimed and before the file moved; the user then edits
    the photo: undo (and a resumed apply) finish, and the entry is not left behind."""
    from simsearch import trash
    from simsearch.journal import Journal
    tmp_path, photos, plan = library
    path = plan.groups[0].act_on[0]
    files = {f.path: f for f in plan.groups[0].files}
    with Journal(tmp_path / "j", create=True) as j:
        j.append({"op": "begin", "version": 1, "action": "trash", "to": None, "plan": "",
                  "index": None, "restorable": True})
        op = actions._intent(1, "trash", path, plan.groups[0].keep[0], files[path], None, j)
        trash.write_info(trash.TrashEntry(op["place"], op["info"], op["recorded"]))
    Path(path).write_bytes(b"edited since")
    back = undo(tmp_path / "j")
    assert [o.path for o in back.restored] == [path] and not back.not_restored
    assert not os.path.lexists(op["info"]) and Path(path).read_bytes() == b"edited since"


def _with_another_picture_unconfirmed(library):
    """A plan of the library's second group, with another picture added to it that the
    picture check did not confirm (listed, neither kept nor acted on yet): (plan, its group,
    the other picture)."""
    import dataclasses

    from groups import member
    from simsearch.planfile import file_facts
    tmp_path, photos, plan = library
    g = plan.groups[1]
    other = _image(photos / "another picture.jpg", (50, 40), seed=55)
    odd = make_plan([group(g.keep + g.act_on)], parse_rules(["largest"]))
    extra = dataclasses.replace(member(other, 9), evidence="unchecked")
    odd.groups[0].files.append(dataclasses.replace(file_facts(extra), reason="kept: not confirmed"))
    return odd, odd.groups[0], other


def test_a_file_kept_only_as_not_confirmed_is_no_kept_copy(library):
    """A group keeps the rules' choice and, unconfirmed, another picture: with the rules'
    choice gone, the unconfirmed file is no copy of what is acted on, and nothing is."""
    tmp_path, photos, plan = library
    odd, group_, other = _with_another_picture_unconfirmed(library)
    group_.keep.append(str(other))
    os.unlink(group_.keep[0])  # the rules' choice is gone
    report = apply(odd, "delete", tmp_path / "j2", confirm_delete=True)
    assert not report.done and all("no kept copy of its group is intact" in o.detail
                                   for o in report.skipped)
    assert all(os.path.isfile(p) for p in group_.act_on)


def test_a_plan_keeping_only_an_unconfirmed_file_is_refused(library):
    """A plan edited so that its only kept file is one the picture check did not confirm
    (maybe another picture) while every confirmed copy is acted on: refused, by load and by
    apply, whatever file is first in keep; allowed once a person called that file a copy."""
    tmp_path, photos, plan = library
    odd, group_, other = _with_another_picture_unconfirmed(library)
    group_.act_on = group_.keep + group_.act_on
    group_.keep = [str(other)]
    before = snapshot(photos)
    with pytest.raises(PlanError, match="keeps only files the picture check did not confirm"):
        Plan.from_dict(odd.to_dict())
    with pytest.raises(PlanError, match="keeps only files the picture check did not confirm"):
        apply(odd, "delete", tmp_path / "j2", confirm_delete=True)
    assert snapshot(photos) == before
    group_.confirmed = [str(other)]  # "It is a copy", on the review page
    assert Plan.from_dict(odd.to_dict()).groups[0].keep == [str(other)]


def test_a_plan_path_with_dot_dot_parts_is_refused(library):
    """"D/lnk/../p.jpg" is D/sub/p.jpg on disk when lnk links to D/sub/deep, but D/p.jpg by
    name: a symlink made to it would point at another picture (a hostile newcomer's plan)."""
    tmp_path, photos, plan = library
    data = plan.to_dict()
    kept = data["groups"][0]["keep"][0]
    odd = os.path.join(os.path.dirname(kept), "lnk", "..", os.path.basename(kept))
    for bad in (odd, kept.replace("/", "//", 1),
                os.path.dirname(kept) + "/./" + os.path.basename(kept)):
        edited = json.loads(json.dumps(data).replace(json.dumps(kept)[1:-1], bad))
        with pytest.raises(PlanError, match="file paths must be plain"):
            Plan.from_dict(edited)


def test_a_journal_found_from_anywhere_puts_back_its_own_originals(library, monkeypatch):
    """apply run with a relative journal path records where its originals are held whatever
    the folder undo runs from; a journal moved elsewhere still finds them; a held file that is
    not the original is never put back."""
    tmp_path, photos, plan = library
    before = snapshot(photos)
    monkeypatch.chdir(tmp_path)
    apply(plan, "hardlink", "rel.journal")
    with actions.Journal(tmp_path / "rel.journal") as j:
        assert all(os.path.isabs(op["held"]) for op, _ in j.intents())
    os.rename(tmp_path / "rel.journal", tmp_path / "archived.journal")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    back = undo(tmp_path / "archived.journal")
    assert not back.not_restored, back.not_restored
    assert _without_inodes(snapshot(photos)) == _without_inodes(before)


def test_a_held_file_that_is_not_the_original_is_never_put_back(library):
    tmp_path, photos, plan = library
    path, held = _linked(tmp_path, plan, 0)
    os.unlink(held)
    Path(held).write_bytes(b"someone else's file")
    back = undo(tmp_path / "j")
    assert {o.path: o.detail for o in back.not_restored} == {
        path: f"{held} no longer holds the original's bytes; {path} is left as it is"}
    assert os.path.samefile(path, plan.groups[0].keep[0])  # still the link


def test_apply_refuses_to_start_without_a_lock(tmp_path, monkeypatch):
    from simsearch import journal
    from simsearch.journal import one_at_a_time
    monkeypatch.setattr(journal, "_lock_places", lambda: [tmp_path / "no" / "a", tmp_path / "no" / "b"])
    (tmp_path / "no").write_text("a file where the folder should be")
    with pytest.raises(JournalError, match="cannot take the lock that keeps two applies or "
                                           "undos apart .*nothing was done"):
        with one_at_a_time():
            pass


def test_undo_of_a_trashed_file_whose_entry_lost_its_info_and_path_another_file(library):
    """The trash entry's info is gone (the original is still in files/) and a new file sits at
    the path: undo says where the original is, and does not call the step done."""
    tmp_path, photos, plan = library
    apply(plan, "trash", tmp_path / "j")
    path = plan.groups[2].act_on[0]
    place, info = _trash_entry(tmp_path, path)
    os.unlink(info)
    Path(path).write_bytes(b"a new file")
    back = undo(tmp_path / "j")
    assert {o.path: o.detail for o in back.not_restored} == {
        path: f"{path} is another file now; the original is at {place}"}
    assert place.is_file()
    os.unlink(path)  # the user moves the new file away: undo then puts the original back
    assert not undo(tmp_path / "j").not_restored and os.path.isfile(path)


def test_the_lock_needs_a_place_every_run_shares(tmp_path, monkeypatch):
    """The /tmp and ~/.cache locks are what every run of a user shares; with neither, a lock in
    the environment's own cache folder (another run may not share it) is not enough."""
    from simsearch import journal
    from simsearch.journal import one_at_a_time
    (tmp_path / "blocked").write_text("a file where a folder should be")
    good = tmp_path / "cache" / "actions.lock"
    monkeypatch.setattr(journal, "_lock_places", lambda: [
        tmp_path / "blocked" / "a", tmp_path / "blocked" / "b", good])
    with pytest.raises(JournalError, match="cannot take the lock"):
        with one_at_a_time():
            pass
    monkeypatch.setattr(journal, "_lock_places", lambda: [
        tmp_path / "blocked" / "a", good, tmp_path / "other.lock"])
    with one_at_a_time():  # the second shared place is enough
        assert good.is_file()


def test_undo_of_a_moved_journal_uses_its_own_held_originals(library, monkeypatch):
    """A journal moved to an archive, and a new journal made where it was: undo of the moved
    one puts back its own originals, whatever its records say; a held original only touched
    since is still the original."""
    tmp_path, photos, plan = library
    before = snapshot(photos)
    apply(plan, "hardlink", tmp_path / "j")
    (tmp_path / "archive").mkdir()
    os.rename(tmp_path / "j", tmp_path / "archive" / "j")
    held = sorted((tmp_path / "archive" / "j" / "held").iterdir())
    os.utime(held[0], ns=(1, 1))  # touched: the same bytes
    decoy = tmp_path / "j" / "held"
    decoy.mkdir(parents=True)
    (tmp_path / "j" / "journal.jsonl").write_text("")
    for h in held:
        (decoy / h.name).write_bytes(b"another journal's file")
    back = undo(tmp_path / "archive" / "j")
    assert not back.not_restored, back.not_restored
    assert _without_inodes(snapshot(photos)) == _without_inodes(before)


def test_a_lock_reached_under_two_names_is_taken_once(tmp_path, monkeypatch):
    """~/.cache and $XDG_CACHE_HOME naming one file (a link, a relative path): locking it a
    second time would wait for ourselves for ever."""
    import signal as signals
    from simsearch import journal
    from simsearch.journal import one_at_a_time
    (tmp_path / "cache").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "cache")
    monkeypatch.setattr(journal, "_lock_places", lambda: [
        tmp_path / "cache" / "actions.lock", tmp_path / "alias" / "actions.lock"])
    signals.signal(signals.SIGALRM, lambda *_: pytest.fail("the lock waited for itself"))
    signals.alarm(10)
    try:
        with one_at_a_time():
            pass
    finally:
        signals.alarm(0)


def test_a_file_in_androids_trash_is_no_kept_copy(library):
    """Android trashes a photo by renaming it in place (.trashed-EXPIRY-NAME) and deletes it
    when that expires: it never counts as the copy a group keeps."""
    tmp_path, photos, plan = library
    trashed = _image(photos / "g9" / ".trashed-1700000000-IMG_0001.jpg", (96, 72), seed=3)
    photo = _image(photos / "g9" / "IMG_0001.jpg", (48, 36), seed=4)
    odd = make_plan([group([trashed, photo])], parse_rules(["largest"]))
    assert odd.groups[0].keep == [str(trashed)]
    report = apply(odd, "trash", tmp_path / "j2")
    assert not report.done and "no kept copy of its group is intact" in report.skipped[0].detail
    assert photo.is_file()


def test_a_move_into_the_desktop_trash_is_refused_before_its_info_folder_exists(library):
    """--to inside $XDG_DATA_HOME/Trash (its files/ made by hand, no info/ yet) is refused:
    emptying the trash would delete the duplicates set aside there. Nothing is touched."""
    tmp_path, photos, plan = library
    before = snapshot(photos)
    for to in (tmp_path / "data" / "Trash" / "files" / "dups", tmp_path / "data" / "Trash"):
        with pytest.raises(PlanError, match="lies in the trash .*emptying the trash"):
            apply(plan, "move", tmp_path / "j", to=to)
        assert not to.exists() and not (tmp_path / "j").exists()
    assert snapshot(photos) == before


def test_a_kept_copy_edited_during_the_run_stops_its_group(library):
    """The kept copy edited in place (same size) after its group's first file was acted on:
    the rest of the group is skipped, its content read again (its time changed), though only
    a changed time no longer counts as a change for the files acted on."""
    tmp_path, photos, plan = library
    g = plan.groups[1]
    assert len(g.act_on) >= 2
    first = len(plan.groups[0].act_on) + 1  # the count at group 2's first file

    def progress(count, total):
        if count == first + 1:  # group 2's first file is done: edit its kept copy
            with open(g.keep[0], "r+b") as fh:
                fh.seek(100)
                byte = fh.read(1)
                fh.seek(100)
                fh.write(b"\x01" if byte == b"\x00" else b"\x00")

    report = apply(plan, "trash", tmp_path / "j", progress=progress)
    done = [o.path for o in report.done]
    skipped = {o.path: o.detail for o in report.skipped}
    assert g.act_on[0] in done and g.act_on[1] not in done
    assert skipped[g.act_on[1]].startswith("no kept copy of its group is intact")
    assert "changed since the plan was made (content)" in skipped[g.act_on[1]]


@pytest.mark.parametrize("action", ["trash", "move"])
def test_a_file_touched_while_set_aside_is_put_back_with_its_time(library, action):
    """A trashed or moved file only touched there (a file manager's preview, a sync): undo
    still knows it by its bytes and puts it back with the mtime it had (a hostile tester found
    undo refusing it as another file)."""
    tmp_path, photos, plan = library
    before = snapshot(photos)
    report = apply(plan, action, tmp_path / "j", to=tmp_path / "aside" if action == "move"
                   else None)
    for o in report.done:
        os.utime(o.detail, ns=(5, 5))
    back = undo(tmp_path / "j")
    assert not back.not_restored and len(back.restored) == len(report.done)
    assert snapshot(photos) == before


def test_an_undo_cut_short_after_a_touch_while_set_aside_is_finished_by_apply(library):
    """Moved, touched under --to, then an undo across drives killed after its verified copy
    back: the same apply run again knows the set-aside file by its bytes and moves anew (a
    review found the step left done with the file in both places)."""
    import shutil

    from simsearch.journal import Journal
    tmp_path, photos, plan = library
    to = tmp_path / "aside"
    first = apply(plan, "move", tmp_path / "j", to=to)
    path, place = first.done[0].path, first.done[0].detail
    with Journal(tmp_path / "j") as j:
        op = next(op for op, st in j.intents() if op["path"] == path)
        j.append({"op": "undo-start"})
    os.utime(place, ns=(5, 5))
    shutil.copyfile(place, path)  # the verified copy, with the recorded time; killed here
    os.utime(path, ns=(op["atime_ns"], op["mtime_ns"]))
    again = apply(plan, "move", tmp_path / "j", to=to)
    assert [o.path for o in again.done] == [path] and not os.path.exists(path)
