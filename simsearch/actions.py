"""Carrying out a plan (simsearch.plan) on the user's files, and undoing it.

These two functions are the only code in simsearch that writes, moves or removes a user's
file, and they do only what the plan says, to files that are still what the plan saw:

- every file acted on is checked just before: a regular file (not a link, not a pipe) with
  the plan's size and SHA-256 (a time changed alone, the same bytes, is no change; undo puts
  back the time it finds), not protected, and not the kept file under another
  name (a hard link, or a link the kept path points through); otherwise it is skipped with
  the reason;
- each group's kept file is checked the same way first: a group whose kept copies are all
  gone or changed is skipped whole, so the last copy of a picture is never removed;
- every step is written ahead to a journal (a folder: journal.jsonl, fsynced, and held/ for
  the originals a link replaces): the intent before the file is touched, "done" after.
  `undo(journal)` puts every file back, byte-identical with its mtime and mode, from whatever
  state it finds (a run killed half-way included); `apply` run again with the same journal
  first rolls back an interrupted step, then carries on.

Actions: trash (the freedesktop trash: see simsearch.trash), move (to a folder, under the
file's absolute path), hardlink / symlink (the duplicate becomes a link to the kept file,
swapped in atomically; the original stays in the journal's held/ until undo), delete (needs
`confirm_delete`; cannot be undone, and the journal says so).
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simsearch import trash
from simsearch.errors import JournalError, PlanError
from simsearch.files import MOVED_MARK, MOVED_TEXT, in_own_folder, marked, no_ones, sha256
from simsearch.journal import JOURNAL_VERSION, Journal, one_at_a_time
from simsearch.plan import Plan
from simsearch.planfile import under

__all__ = ["ACTIONS", "Outcome", "ApplyReport", "UndoReport", "apply", "undo",
           "default_journal"]

ACTIONS = ("trash", "move", "hardlink", "symlink", "delete")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Outcome:
    path: str
    detail: str  # where it went, or why it was skipped / not restored


# where no file is acted on or counts as a kept copy (simsearch.files.own_folder)
OWN_FOLDERS = ("simsearch's own folder (an apply journal, a review page, duplicates moved "
               "aside), a trash or another program's thumbnail cache")
# why a file is skipped that is already the kept file (a hard link, or a link to it)
NOTHING_TO_FREE = "the kept file under another name (a hard link or a link to it); nothing to free"


@dataclass
class ApplyReport:
    journal: str
    action: str
    done: list[Outcome] = field(default_factory=list)        # acted on in this run
    skipped: list[Outcome] = field(default_factory=list)
    earlier: int = 0              # acted on by an earlier, interrupted run of this journal
    rolled_back: int = 0          # steps an earlier run left half done, put back first
    removed: list[str] = field(default_factory=list)          # gone from their place: forget
    moved: dict[str, str] = field(default_factory=dict)       # old -> new path: relocate
    not_duplicates: list[list[str]] = field(default_factory=list)
    freed: int = 0  # bytes acted on (the trash and held/ keep them until emptied or purged)
    # files acted on whose bytes another name of theirs (a hard link) still holds: not in
    # `freed` (a hostile tester's apply counted them as freed)
    linked: list[str] = field(default_factory=list)
    back: list[str] = field(default_factory=list)  # put back by the person since: reindex
    # paths of steps done that hold a file again, and any step re-opened that was then skipped:
    # the index must hold them
    there: list[str] = field(default_factory=list)

    @property
    def left_undone(self) -> list[Outcome]:
        """The files skipped that the plan's action was still to be taken on (changed since,
        protected, no intact kept copy, a failure): all but those already the kept file under
        another name, where there was nothing to do."""
        return [o for o in self.skipped if o.detail != NOTHING_TO_FREE]

    def to_dict(self) -> dict:
        return {"journal": self.journal, "action": self.action,
                "done": [o.__dict__ for o in self.done],
                "skipped": [o.__dict__ for o in self.skipped],
                "left_undone": len(self.left_undone), "earlier": self.earlier,
                "rolled_back": self.rolled_back, "freed_bytes": self.freed,
                "held_by_other_names": self.linked,
                "not_duplicates": self.not_duplicates, "put_back_by_hand": self.back}


@dataclass
class UndoReport:
    journal: str
    index: str | None = None  # the index folder the plan came from
    restored: list[Outcome] = field(default_factory=list)
    not_restored: list[Outcome] = field(default_factory=list)
    moved_back: dict[str, str] = field(default_factory=dict)  # place -> original path
    reappeared: list[str] = field(default_factory=list)       # back on disk, not in the index
    # files an earlier, interrupted undo of this journal put back (the index may lack them)
    back_earlier: list[str] = field(default_factory=list)
    # the --to folder left set aside after every move was undone (it holds other files)
    still_aside: str | None = None
    # steps an earlier undo of this journal had already put back (or found deleted)
    undone_before: int = 0

    def to_dict(self) -> dict:
        return {"journal": self.journal, "restored": [o.__dict__ for o in self.restored],
                "not_restored": [o.__dict__ for o in self.not_restored],
                "back_earlier": self.back_earlier, "still_aside": self.still_aside,
                "undone_before": self.undone_before}


def default_journal(plan_path: str | os.PathLike) -> Path:
    """Beside the plan, so that running the same `apply` again finds it and resumes."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + ".journal")


def apply(plan: Plan, action: str, journal: str | os.PathLike, to: str | os.PathLike | None = None,
          confirm_delete: bool = False, plan_id: str = "", progress: Progress | None = None,
          index: str | os.PathLike | None = None,
          on_wait: Callable[[], None] | None = None,
          held: dict[str, str] | None = None) -> ApplyReport:
    """Carry out `plan` with `action`, journalled in the folder `journal` (created, or resumed
    when it holds an earlier run of this plan and action). `plan_id` (the plan file's SHA-256)
    ties the journal to its plan. `index`: the index folder the caller updates (default the
    plan's), recorded in the journal for undo. One apply or undo runs at a time
    (`simsearch.journal.one_at_a_time`; `on_wait` is called when this one must wait).
    `held`: files of the plan not to act on, each with the reason it is skipped (`Plan.not_alike`:
    by the index's vectors, not a copy of its group)."""
    with one_at_a_time(on_wait):
        return _apply(plan, action, journal, to, confirm_delete, plan_id, progress, index,
                      held or {})


def _apply(plan: Plan, action: str, journal: str | os.PathLike, to, confirm_delete: bool,
           plan_id: str, progress: Progress | None, index, held: dict[str, str]) -> ApplyReport:
    if action not in ACTIONS:
        raise PlanError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if action == "move" and not to:
        raise PlanError("--action move needs --to FOLDER")
    if action == "delete" and not confirm_delete:
        raise PlanError("delete removes files for good (undo cannot bring them back); give "
                        "--yes-delete to confirm, or use --action trash")
    plan.validate()
    to = os.path.abspath(to) if to else None
    resuming = action == "move" and _resumes(journal, action, to, plan_id)
    if action == "move" and not resuming:
        _check_aside(to, journal)
    with Journal(journal, create=True) as j:
        head = j.begin()
        outstanding = any(st in ("done", "open") for _, st in j.intents())
        if head is None or ((head.get("action"), head.get("to"), head.get("plan")) !=
                            (action, to, plan_id) and not outstanding):
            # a new journal, or one whose every step was undone: a new run starts in it
            j.append({"op": "begin", "version": JOURNAL_VERSION, "action": action, "to": to,
                      "plan": plan_id, "index": os.fspath(index) if index else plan.index,
                      "restorable": action != "delete"})
        elif (head.get("action"), head.get("to"), head.get("plan")) != (action, to, plan_id):
            was = head.get("action", "?") + (f" --to {head['to']}" if head.get("to") else "")
            why = ("another --to" if (head.get("action"), head.get("plan")) == (action, plan_id)
                   else "another plan or action")
            raise JournalError(f"{journal} holds an apply of {why} ({was}) that was not undone; "
                               f"finish it with that, undo it first with: simsearch undo "
                               f"{journal}, or give another --journal")
        report = ApplyReport(str(journal), action)
        for op, st in j.intents():  # a step an earlier run left half done: put it back first
            if st != "open":
                continue
            if action == "delete" and not os.path.lexists(op["path"]):
                j.append({"op": "done", "n": op["n"]})
                continue
            try:
                restored, what = _undo_step(op)
            except OSError as e:
                restored, what = False, f"{e.strerror or e}"
            if not restored:
                raise JournalError(f"{journal}: cannot put back {op['path']}, left half done by "
                                   f"an earlier run ({what}); see what is left with: simsearch "
                                   f"undo {journal}")
            j.append({"op": "rolled-back", "n": op["n"], "detail": what})
            report.rolled_back += 1
        # a file back at its path though its step is done: put back by an undo cut short
        # before it wrote so (acted on again, as the run is finished), or by the person (from
        # the desktop trash, say: left where they put it, and given back to the index)
        undo_at, done_at = _undo_and_done_at(j)
        for op, st in j.intents():
            if (st != "done" or op["action"] not in ("move", "trash")
                    or not os.path.lexists(op["path"])):  # (the usual: nothing at its path)
                continue
            path, place = op["path"], op["place"]
            # an undo that began after the step was done, the step still done: cut short
            # before it wrote that it put the file back (one from before: an earlier cycle)
            cut_short = undo_at > done_at.get(op["n"], -1)
            # an undo cut short between its link and unlink (two names of one file), or
            # between its verified copy across drives and the unlink of the source
            halfway = _same_file(path, place) or (
                cut_short and os.path.lexists(place) and _holds_original(place, op)
                and (op["action"] != "trash" or _info_is_ours(op)))
            if not (halfway or not os.path.lexists(place)) or not _holds_original(path, op):
                continue
            if halfway:
                os.unlink(place)
            if op["action"] == "trash" and _info_is_ours(op):
                os.unlink(op["info"])  # (its entry, which the undo had not yet removed)
            j.append({"op": "undone", "n": op["n"], "by_hand": not cut_short,
                      "detail": "back at its path" + ("" if cut_short else ", put back by hand")})
        done = {op["path"]: op for op, st in j.intents() if st == "done"}
        report.earlier = len(done)  # (before the files put back by hand join it)
        if action == "move" and not (resuming and os.path.isdir(to) and os.listdir(to)):
            _set_aside(to, j)  # (a folder an earlier simsearch moved into, holding files
            # now, may hold the person's photos: resumed as it was, not set aside)
        # files the person put back, now or in an earlier run: left where they put them
        report.back = sorted(_put_back_by_hand(j))  # (every run: a kill may have cut the
        done.update({path: None for path in report.back})  # one that found them short)
        _act(plan, action, to, j, done, report, progress, held)
        report.there += [o.path for o in report.skipped if os.path.lexists(o.path)]
        for op in filter(None, done.values()):
            if os.path.lexists(op["path"]):  # a file there again (a copy taken out of the
                report.there.append(op["path"])  # trash, an edited one): the index has it
                continue
            if op["action"] in ("trash", "delete"):
                report.removed.append(op["path"])
            elif op["action"] == "move":
                report.moved[op["path"]] = op["place"]
        report.not_duplicates = [[f.path for f in g.files] for g in plan.groups
                                 if g.decision == "not-duplicates"]
    return report


def _resumes(journal, action: str, to: str | None, plan_id: str) -> bool:
    """Whether `journal` holds an unfinished run of this plan and action into `to` (one an
    earlier simsearch began into a folder it did not set aside resumes all the same)."""
    if not os.path.lexists(os.path.join(journal, "journal.jsonl")):
        return False
    try:
        with Journal(journal) as j:
            head = j.begin() or {}
            return ((head.get("action"), head.get("to"), head.get("plan")) == (action, to, plan_id)
                    and any(st in ("done", "open") for _, st in j.intents()))
    except JournalError:
        return False


def _undo_and_done_at(j: Journal) -> tuple[int, dict[int, int]]:
    """Where in the journal's records the latest undo began (-1: none), and where each step
    was last marked done, in one pass."""
    undo_at, done_at = -1, {}
    for i, r in enumerate(j.records):
        if r["op"] == "undo-start":
            undo_at = i
        elif r["op"] == "done":
            done_at[r["n"]] = i
    return undo_at, done_at


def _put_back_by_hand(j: Journal) -> set[str]:
    """The paths of this run's steps whose latest state is "put back by hand" (see _apply),
    since the latest begin or undo (an apply after an undo acts on the whole plan again)."""
    since = max((i for i, r in enumerate(j.records) if r["op"] in ("begin", "undo-start")),
                default=-1)
    latest: dict[int, dict] = {}
    paths: dict[int, str] = {}
    for r in j.records[since + 1:]:
        if r["op"] in ("done", "undone", "rolled-back"):
            latest[r["n"]] = r
        elif r["op"] == "intent":
            paths[r["n"]] = r["path"]
    return {paths[n] for n, r in latest.items() if r.get("by_hand") and n in paths}


def _check_aside(to: str, journal) -> None:
    """Refuse a --to folder that holds anything but what earlier moves set aside there: the
    folder is set aside as a whole (never indexed, never acted on, no kept copy), so a photo
    folder given by mistake would drop out of the index. Nor one inside the journal."""
    journal, to_real = os.path.realpath(journal), os.path.realpath(to)
    if to_real == journal or to_real.startswith(journal.rstrip(os.sep) + os.sep):
        raise PlanError(f"--to {to} lies in the journal folder {journal}: give a folder "
                        f"outside it")
    from simsearch.trash import home_trash
    bin_ = os.path.realpath(home_trash())
    if to_real == bin_ or to_real.startswith(bin_.rstrip(os.sep) + os.sep):
        raise PlanError(f"--to {to} lies in the trash {bin_}: emptying the trash would delete "
                        f"the duplicates; give a folder outside it (or --action trash)")
    own = in_own_folder(os.path.join(to, "x"))
    if own is not None and not marked(own, MOVED_MARK):
        raise PlanError(f"--to {to} lies in {own}, {OWN_FOLDERS}: give a new or empty folder "
                        f"to move duplicates to")
    if own is None and os.path.lexists(to):
        _check_empty(to)
    if journal.startswith(to_real.rstrip(os.sep) + os.sep):
        raise PlanError(f"--journal {journal} lies in the --to folder {to}: give a journal "
                        f"folder outside it")


def _check_empty(to: str) -> None:
    """Refuse a --to that is no folder, or holds files (see files.no_ones)."""
    if not os.path.isdir(to):
        raise PlanError(f"--to {to} is not a folder")
    try:
        other = os.listdir(to)
    except OSError as e:
        raise PlanError(f"--to {to}: cannot read it ({e.strerror or e})") from None
    other = sorted(n for n in other if not no_ones(n) and not (
        n == MOVED_MARK and _empty_file(os.path.join(to, n))))  # (a mark cut short)
    if other:
        raise PlanError(f"--to {to} holds other files ({other[0]}"
                        f"{', ...' if len(other) > 1 else ''}): duplicates are moved to a folder "
                        f"set aside for them (simsearch never indexes it, so they do not come "
                        f"back as duplicates), so give a new or empty folder, or one that "
                        f"earlier moves made")


def _set_aside(to: str, j: Journal) -> None:
    """Mark the --to folder as the place duplicates are set aside in (files.MOVED_MARK),
    making it first; the journal records what was made, for undo to remove when it is left
    with nothing else."""
    mark = os.path.join(to, MOVED_MARK)
    if in_own_folder(mark) is not None:  # marked already (by an earlier move), or inside one
        return
    if _empty_file(mark):  # a mark a kill cut short (or a person's empty file): written anew
        os.unlink(mark)
    made, folder = [], to
    while not os.path.lexists(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    j.append({"op": "set-aside", "mark": mark, "made": made})
    try:
        os.makedirs(to, exist_ok=True)
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with open(fd, "w") as fh:
            fh.write(f"{MOVED_TEXT} (journal {j.folder}). simsearch does not index this "
                     f"folder; simsearch undo {j.folder} puts them back.\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:  # (nothing was moved: undo finds nothing to do)
        _remove_empty(made)
        raise PlanError(f"--to {to}: cannot make it the folder duplicates are moved to "
                        f"({e.strerror or e}); nothing was moved") from None


def _remove_empty(folders: list[str]) -> None:
    """Remove `folders` (deepest first), stopping at the first that is not empty."""
    for d in folders:
        try:
            os.rmdir(d)
        except OSError:
            break


def _empty_file(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


def _put_aside_back(j: Journal) -> str | None:
    """With every move of the journal undone: the set-aside --to folder loses its empty
    folders (another apply's moves into it, undone while this one's files were there, left
    theirs) and, holding nothing else, its mark; then the folders this journal made for it.
    Returns the folder when it stays set aside, holding other files."""
    to = (j.begin() or {}).get("to")
    ours = any(r["op"] == "set-aside" for r in j.records)
    mark = os.path.join(to, MOVED_MARK) if to else None
    # (this journal's mark, cut short by a kill, or never written: its folder is still ours)
    if not to or not (marked(to, MOVED_MARK) or (ours and (
            _empty_file(mark) or not os.path.lexists(mark)))):
        return None
    for folder, _, _ in sorted(os.walk(to), key=lambda w: -w[0].count(os.sep)):
        # a move's folder mirrors a folder of the photos (a person's own one there stays)
        if folder != to and os.path.isdir(folder[len(to.rstrip(os.sep)):]) and not (
                os.path.dirname(folder) == to.rstrip(os.sep)
                and no_ones(os.path.basename(folder))):
            try:
                os.rmdir(folder)  # only ever an empty folder
            except OSError:
                pass
    try:
        left = {n for n in os.listdir(to) if not no_ones(n)} - {MOVED_MARK}
        if left:
            return to if os.path.lexists(mark) else None
        if os.path.lexists(mark):
            os.unlink(mark)
    except OSError:
        return None
    for r in j.records:
        if r["op"] == "set-aside":
            _remove_empty(r["made"])
    return None


def _act(plan: Plan, action: str, to: str | None, j: Journal, done: dict[str, dict],
         report: ApplyReport, progress: Progress | None, held: dict[str, str]) -> None:
    groups = [g for g in plan.groups if g.decision == "act" and g.act_on]
    total = sum(len(g.act_on) for g in groups)
    hashes: dict[tuple, str] = {}  # (path, device, inode, size, mtime) -> SHA-256
    kept_ok: dict[int, list[str]] = {}
    kept_inodes: set[tuple[int, int]] = set()
    for n, g in enumerate(groups):  # every kept file first: the last copy is never acted on
        files = {f.path: f for f in g.files}
        # a copy of what is acted on: the rules' choice, or another kept file the picture check
        # confirmed (one kept only because it was not confirmed may be another picture)
        copies = [p for p in g.keep if not plan.doubted(g, files[p])
                  and in_own_folder(p) is None]  # a trashed file, a held original: no copy
        kept_ok[n] = [p for p in copies if _unchanged(p, files[p], hashes, follow=True) is None]
        for p in g.keep:
            try:
                st = os.stat(p)
                kept_inodes.add((st.st_dev, st.st_ino))
            except OSError:
                pass
    count = 0
    next_n = 1 + max((op["n"] for op, _ in j.intents()), default=0)
    for n, g in enumerate(groups):
        files = {f.path: f for f in g.files}
        for path in g.act_on:
            count += 1
            if progress is not None:
                progress(count, total)
            if path in done:
                continue
            # the kept copies again, just before: another program may have removed or changed
            # one since the run began (their content is read again whenever their identity,
            # size or time differs from when it was read: `_unchanged`)
            kept_ok[n] = [p for p in kept_ok[n]
                          if _unchanged(p, files[p], hashes, follow=True) is None]
            if not kept_ok[n]:
                why = "; ".join(f"{p}: {_no_copy(p, plan.doubted(g, files[p]), files[p], hashes)}"
                                for p in g.keep)
                report.skipped.append(Outcome(path, f"no kept copy of its group is intact ({why})"))
                continue
            kept = kept_ok[n][0]
            why = held.get(path) or _refusal(path, files[path], kept, kept_inodes, plan, action,
                                             hashes)
            if why:
                report.skipped.append(Outcome(path, why))
                j.append({"op": "skip", "path": path, "reason": why})
                continue
            try:
                op = _intent(next_n, action, path, kept, files[path], to, j)
            except OSError as e:  # no trash on that drive, an unwritable --to folder
                where = f" ({e.filename})" if e.filename and e.filename != path else ""
                report.skipped.append(Outcome(path, f"cannot {action}: {e.strerror or e}{where}"))
                continue
            next_n += 1
            try:
                names = os.lstat(path).st_nlink  # other names keep the bytes on disk
            except OSError:
                names = 1
            try:
                _do_step(op)
            except OSError as e:
                restored, what = _undo_step(op)
                j.append({"op": "rolled-back", "n": op["n"], "detail": what})
                _remove_empty(op.get("made", []))  # the folders the move made for it
                where = f": {e.filename}" if e.filename and e.filename != path else ""
                report.skipped.append(Outcome(path, f"failed ({e.strerror or e}{where}); " + (
                    "left as it was" if restored else what)))
                continue
            j.append({"op": "done", "n": op["n"]})
            done[path] = op
            report.done.append(Outcome(path, op.get("place") or kept))
            if names > 1:
                report.linked.append(path)
            else:
                report.freed += files[path].size


def _no_copy(path: str, doubted: bool, f, hashes: dict[tuple, str]) -> str:
    """Why the kept file `path` is no intact copy (`doubted`: see Plan.doubted)."""
    own = in_own_folder(path)
    if own is not None:
        return f"in {own}, {OWN_FOLDERS}"
    if doubted:
        return "kept only as not confirmed to be a copy"
    return _unchanged(path, f, hashes, follow=True) or "intact"


def _unchanged(path: str, f, hashes: dict[tuple, str], follow: bool = False) -> str | None:
    """None when `path` is a regular file with the plan's size and content (SHA-256), else why
    not. Its mtime may differ: undo puts back the one it finds (`_intent` records it)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return "gone"
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISLNK(st.st_mode):
        return "now a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size != f.size:
        return "changed since the plan was made (size)"
    # only its time changed (touched, or a sync or backup that rewrote it as it was): its
    # content decides, read whenever, so the plan stands for the same bytes
    # the content, read once for this file as it stands (a file edited in place, or replaced
    # by a rename, during the run is read again: its time or inode differs)
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in hashes:
        try:
            hashes[key] = sha256(path)
        except OSError as e:
            return f"cannot read: {e.strerror or e}"
    if hashes[key] != f.sha256:
        return "changed since the plan was made (content)"
    return None


def _refusal(path: str, f, kept: str, kept_inodes: set, plan: Plan, action: str,
             hashes: dict[tuple, str]) -> str | None:
    if f.protected or any(under(path, d) for d in plan.protect):
        return "protected"
    own = in_own_folder(path)
    if own is not None:  # an original an apply journal holds, a thumbnail, a trashed file
        return f"in {own}: {OWN_FOLDERS}"
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None and (st.st_dev, st.st_ino) in kept_inodes:
        return NOTHING_TO_FREE
    why = _unchanged(path, f, hashes)
    if why:
        return why
    if action == "hardlink" and st.st_dev != os.stat(kept).st_dev:
        return "on another drive than the kept file; a hard link cannot cross drives"
    return None


def _intent(n: int, action: str, path: str, kept: str, f, to: str | None, j: Journal) -> dict:
    st = os.lstat(path)
    op = {"op": "intent", "n": n, "action": action, "path": path, "kept": kept, "size": f.size,
          "mtime_ns": st.st_mtime_ns, "sha256": f.sha256, "mode": stat.S_IMODE(st.st_mode),
          "atime_ns": st.st_atime_ns, "token": j.token}
    if action == "hardlink":  # the kept file's identity: its link stays recognisable after
        kept_st = os.stat(kept)  # an editor saves the kept file under a new inode
        op["kept_id"] = [kept_st.st_dev, kept_st.st_ino, kept_st.st_size, kept_st.st_mtime_ns]
    if action == "trash":
        entry = trash.reserve(path)
        op.update(place=entry.file, info=entry.info, recorded=entry.recorded_path)
    elif action == "move":
        op["place"] = _free_name(os.path.join(to, os.path.relpath(os.path.abspath(path), os.sep)))
        op["made"] = _missing_folders(os.path.dirname(op["place"]), to)
    elif action in ("hardlink", "symlink"):
        op["held"] = str(j.held / f"{n:06d}{os.path.splitext(path)[1][:16]}")
        op["tmp"] = os.path.join(os.path.dirname(path), f".simsearch-{j.token}-{n}.tmp")
    j.append(op)
    return op


def _free_name(path: str) -> str:
    stem, suffix = os.path.splitext(path)
    k = 1
    while os.path.lexists(path):
        k += 1
        path = f"{stem}.{k}{suffix}"
    return path


def _missing_folders(folder: str, root: str) -> list[str]:
    """The folders from `folder` up to `root` (itself included) that do not exist yet: those a
    move makes, deepest first, for undo to remove again when they are left empty."""
    made, root = [], os.path.abspath(root)
    folder = os.path.abspath(folder)
    while not os.path.lexists(folder) and (folder == root or folder.startswith(root + os.sep)):
        made.append(folder)
        if folder == root:
            break
        folder = os.path.dirname(folder)
    return made


def _do_step(op: dict) -> None:
    path, action = op["path"], op["action"]
    if action == "trash":
        trash.write_info(trash.TrashEntry(op["place"], op["info"], op["recorded"]))
        _stash(path, op["place"], op)
    elif action == "move":
        os.makedirs(os.path.dirname(op["place"]), exist_ok=True)
        _stash(path, op["place"], op)
    elif action == "delete":
        os.unlink(path)
    else:
        _hold(path, op["held"], op)
        if action == "hardlink":
            os.link(op["kept"], op["tmp"])
        else:
            os.symlink(os.path.abspath(op["kept"]), op["tmp"])
        os.replace(op["tmp"], path)


def _stash(path: str, place: str, op: dict) -> None:
    """Move `path` to `place` without ever overwriting anything there: a second name and then
    the first removed on one drive, a verified copy across drives."""
    _hold(path, place, op)
    os.unlink(path)


def _hold(path: str, held: str, op: dict) -> None:
    """Keep the original under held/: a second name (no bytes copied) on the same drive,
    otherwise a verified copy."""
    try:
        os.link(path, held, follow_symlinks=False)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_exact(path, held, op)


def _copy_exact(src: str, dst: str, op: dict) -> None:
    """Bytes, mode and mtime of `src` into a new `dst` (never an existing one), through a
    temporary name, fsynced, and checked against the plan's SHA-256."""
    tmp = _part(dst, op)
    if os.path.lexists(tmp):  # ours: a copy an interrupted run of this step left
        os.unlink(tmp)
    h = hashlib.sha256()
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while block := os.read(fin, 1 << 20):
                h.update(block)
                os.write(fout, block)
            os.fchmod(fout, op["mode"])
            os.utime(fout, ns=(op["atime_ns"], op["mtime_ns"]))
            os.fsync(fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    if h.hexdigest() != op["sha256"]:
        os.unlink(tmp)
        raise OSError(errno.EIO, f"{src} changed while being copied")
    if os.path.lexists(dst):
        os.unlink(tmp)
        raise OSError(errno.EEXIST, f"{dst} appeared meanwhile")
    os.rename(tmp, dst)


def _part(dst: str, op: dict) -> str:
    """The temporary name a copy to `dst` is written under: this step's own (the journal's
    token and the step's number), never a name a user's file could have."""
    return os.path.join(os.path.dirname(dst), f".simsearch-{op.get('token', 'x')}-{op['n']}.part")


def _drop_part(dst: str, op: dict) -> None:
    """Remove what an interrupted copy of this step to `dst` left (a journal of an earlier
    simsearch named its copies `dst`.part, which may be a user's file: those are left)."""
    part = _part(dst, op)
    if "token" in op and os.path.lexists(part):
        os.unlink(part)


def _info_is_ours(op: dict) -> bool:
    """Whether the trash entry's info file is there and still names the original."""
    return os.path.lexists(op["info"]) and trash.original_path(op["info"]) == op["recorded"]


def _same_file(a: str, b: str) -> bool:
    try:
        x, y = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


def _is_original(path: str, op: dict) -> bool:
    """The original's bytes and its time (`_holds_original`, checked after the cheap time)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_mtime_ns == op["mtime_ns"] and _holds_original(path, op)


def _undo_step(op: dict) -> tuple[bool, str]:
    """Put one step back from whatever state it reached. Returns (restored, what happened)."""
    path, action = op["path"], op["action"]
    if action == "delete":
        if os.path.lexists(path):
            return True, "never deleted"
        return False, "deleted: cannot be restored"
    if action in ("trash", "move"):
        place = op["place"]
        _drop_part(place, op)
        # what is at `place` is ours only while it is the original itself (and, in the trash,
        # its entry still names the original): the user may have restored it from the desktop
        # trash and another file taken the free name since
        # (its bytes, whatever its time: a file touched in the trash or under --to is still
        # the original, and goes back with its own time)
        ours = os.path.lexists(place) and (_same_file(path, place) or (
            _holds_original(place, op) and (action != "trash" or _info_is_ours(op)
                                            or not os.path.lexists(op["info"]))))
        if os.path.lexists(path):
            if _same_file(path, place):  # moved half way on one drive: two names of one file
                os.unlink(place)
                restored, what = True, "was not moved"
            elif not _is_original(path, op):
                if ours:  # the original is in the trash (or under --to): say where
                    return False, f"{path} is another file now; the original is at {place}"
                restored, what = True, "is at its place (changed since the plan)"
            elif ours:  # a verified copy across drives, its source not removed yet
                os.unlink(place)
                restored, what = True, "was not moved"
            else:
                restored, what = True, "was not moved"
        elif ours:
            _restore(place, path, op)
            restored, what = True, f"restored from {place}"
        elif os.path.lexists(place):
            return False, (f"{place} holds another file now (the original was emptied from the "
                           f"trash, restored from it, or moved on)")
        else:
            return False, f"{place} is gone (emptied from the trash, or moved on)"
        if action == "trash" and _info_is_ours(op):
            os.unlink(op["info"])
        return restored, what
    # hardlink / symlink
    held, tmp = op["held"], op["tmp"]
    for name in (tmp, tmp + ".undo"):  # named with this journal's token: ours
        if os.path.lexists(name):
            os.unlink(name)
    _drop_part(held, op)
    if not os.path.lexists(held):
        if _is_link_to_kept(path, op) and not _is_original(path, op):
            return False, (f"the original, held at {held}, is gone; {path} is still a link to "
                           f"{op['kept']}")
        if not os.path.lexists(path):
            return False, f"{path} and the original held at {held} are both gone"
        return True, "was not replaced"
    if _same_file(path, held) or (not os.path.islink(path) and not _is_link_to_kept(path, op)
                                  and _is_original(path, op)):
        os.unlink(held)  # the original never left its place
        return True, "was not replaced"
    if os.path.lexists(path) and not _is_link_to_kept(path, op):
        return False, f"changed after apply; the original is kept at {held}"
    if not _holds_original(held, op):  # never put back anything but the original's bytes
        return False, (f"{held} no longer holds the original's bytes; {path} is left as it "
                       f"is")
    if _same_device(held, path):
        os.rename(held, path)  # atomic: the link is replaced by the original itself
        os.utime(path, ns=(op["atime_ns"], op["mtime_ns"]), follow_symlinks=False)
    else:
        tmp_back = op["tmp"] + ".undo"
        _copy_exact(held, tmp_back, op)
        os.replace(tmp_back, path)
        os.unlink(held)
    return True, "original put back"


def _holds_original(path: str, op: dict) -> bool:
    """The original's bytes, whatever its times (a held file only touched since)."""
    try:
        st = os.lstat(path)
        return (stat.S_ISREG(st.st_mode) and st.st_size == op["size"]
                and sha256(path) == op["sha256"])
    except OSError:  # (gone, or unreadable now)
        return False


def _is_link_to_kept(path: str, op: dict) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path) == os.path.abspath(op["kept"])
    if op.get("kept_id") and [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns] == list(
            op["kept_id"]):
        return True  # the link apply made, whatever became of the kept file's name since (its
        # size and time too: a freed inode number is soon another file's)
    try:
        k = os.stat(op["kept"])
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (k.st_dev, k.st_ino)


def _same_device(a: str, b: str) -> bool:
    return os.lstat(a).st_dev == os.lstat(os.path.dirname(os.path.abspath(b))).st_dev


def _restore(place: str, path: str, op: dict) -> None:
    """`place` back to `path`, never over a file that is there, with the time it had."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _stash(place, path, op)
    if os.lstat(path).st_mtime_ns != op["mtime_ns"]:  # touched while set aside
        os.utime(path, ns=(op["atime_ns"], op["mtime_ns"]), follow_symlinks=False)


def undo(journal: str | os.PathLike, progress: Progress | None = None,
         on_wait: Callable[[], None] | None = None) -> UndoReport:
    """Put back every step of an apply journal, newest first, from whatever state each reached.
    Steps already undone are left alone, so running it twice is harmless. One apply or undo
    runs at a time, as `apply` says."""
    with one_at_a_time(on_wait):
        return _undo(journal, progress)


def _undo(journal: str | os.PathLike, progress: Progress | None) -> UndoReport:
    folder = Path(journal)
    if folder.name == "journal.jsonl":
        folder = folder.parent
    report = UndoReport(str(folder))
    with Journal(folder) as j:
        report.index = (j.begin() or {}).get("index")
        steps = [(op, st) for op, st in j.intents() if st in ("done", "open")]
        report.undone_before = sum(st == "undone" for _, st in j.intents())
        if steps:  # (an apply run again after this is cut short acts on what it put back)
            j.append({"op": "undo-start"})
        report.back_earlier = [op["path"] for op, st in j.intents() if st == "undone"
                               and op["action"] in ("move", "trash")
                               and os.path.lexists(op["path"])]
        for count, (op, st) in enumerate(reversed(steps), 1):
            if progress is not None:
                progress(count, len(steps))
            try:
                restored, what = _undo_step(op)
            except OSError as e:
                restored, what = False, f"cannot restore: {e.strerror or e}"
            if restored:
                j.append({"op": "undone", "n": op["n"], "detail": what})
                report.restored.append(Outcome(op["path"], what))
                if op["action"] == "move" and what.startswith("restored"):
                    report.moved_back[op["place"]] = op["path"]
                elif op["action"] == "trash" and what.startswith("restored"):
                    report.reappeared.append(op["path"])
                elif op["action"] in ("move", "trash") and st == "done":
                    # back at its path already (an undo cut short before it wrote so): the
                    # index forgot it when apply was done
                    report.back_earlier.append(op["path"])
            else:
                if op["action"] == "delete":
                    j.append({"op": "undone", "n": op["n"], "detail": what})
                report.not_restored.append(Outcome(op["path"], what))
        # the folders moves made under --to, deepest first, where nothing is left in them
        # (those of steps an interrupted undo put back too)
        made = {d for op, st in j.intents() if op["action"] == "move" and st != "done"
                for d in op.get("made", [])}
        for d in sorted(made, key=lambda d: -d.count(os.sep)):
            try:
                os.rmdir(d)  # only ever an empty folder
            except OSError:
                pass
        if not any(st == "done" for _, st in j.intents()):
            report.still_aside = _put_aside_back(j)
        report.back_earlier = list(dict.fromkeys(report.back_earlier))
    return report
