"""The apply journal: a folder holding journal.jsonl, one JSON record a line, each written and
fsynced before the step it announces, and held/, the originals kept while a link stands in
their place. It is what `undo` reads and what a resumed `apply` continues from.

Records: `begin` (a run: action, folder, plan hash, index), `intent` (a step: the file, its
identity, where it goes), `done`, `rolled-back` and `undone` (a step's fate), `skip`. A last line
cut short by a kill is dropped: its step was never started.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from simsearch.errors import JournalError
from simsearch.files import json_text

__all__ = ["JOURNAL_VERSION", "Journal", "one_at_a_time"]

JOURNAL_VERSION = 1


class Journal:
    """A folder: journal.jsonl (one JSON record a line, each fsynced before the step it
    announces) and held/ (originals kept while a link stands in their place). Locked while
    open, so that two runs never interleave."""

    def __init__(self, folder: str | os.PathLike, create: bool = False):
        # absolute: the paths it records (held/...) must not depend on where apply ran
        self.folder = Path(os.path.abspath(folder))
        self.held = self.folder / "held"
        # names this journal's temporary files carry in the photo folders
        self.token = hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:8]
        if create and self.folder.is_dir() and not os.path.lexists(self.folder / "journal.jsonl"):
            other = sorted(set(os.listdir(self.folder)) - {"held"})
            if other:  # a photo folder given as --journal: its files would be taken for ours
                raise JournalError(f"{self.folder} holds other files ({other[0]}...) and is no "
                                   f"apply journal: give a new or empty folder as --journal")
        if create:
            for d in (self.folder, self.held):
                try:
                    os.makedirs(d, 0o700, exist_ok=True)  # (a --journal a/b/c: a/b made too)
                except OSError as e:
                    raise JournalError(f"{d}: cannot make the journal folder "
                                       f"({e.strerror or e})") from None
        path = self.folder / "journal.jsonl"
        try:
            for d in (self.folder, self.held):
                if not stat.S_ISDIR(os.lstat(d).st_mode):
                    raise JournalError(f"{d}: not a folder (a link?); refusing to use it as a journal")
            flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
            self.fd = os.open(path, flags, 0o600)
            if create:  # the new name itself durable, not only what is written to it
                dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except FileNotFoundError as e:
            raise JournalError(f"{self.folder}: no apply journal there") from e
        except OSError as e:
            raise JournalError(f"{path}: cannot open the journal ({e.strerror or e})") from e
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self.fd)
            raise JournalError(f"{self.folder}: another apply or undo is using this journal") from e
        self.records = self._read()

    def _read(self) -> list[dict]:
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while block := os.read(self.fd, 1 << 20):
            chunks.append(block)
        lines = b"".join(chunks).split(b"\n")
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if i == len(lines) - 1:  # the last line, cut short by a kill: never acted on
                    os.ftruncate(self.fd, sum(len(x) + 1 for x in lines[:i]))
                    break
                raise JournalError(f"{self.folder}: journal line {i + 1} is damaged") from None
        return records

    def append(self, record: dict) -> None:
        os.write(self.fd, (json_text(record) + "\n").encode())
        os.fsync(self.fd)
        self.records.append(record)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def intents(self) -> list[tuple[dict, str]]:
        """Every step in order with its state: done, open (intent only), undone or
        rolled-back."""
        state: dict[int, str] = {}
        for r in self.records:
            if r["op"] == "intent":
                state[r["n"]] = "open"
            elif r["op"] in ("done", "undone", "rolled-back"):
                state[r["n"]] = r["op"]
        return [(self._anchored(r), state[r["n"]]) for r in self.records if r["op"] == "intent"]

    def _anchored(self, op: dict) -> dict:
        """A step as recorded, its held original found in this journal's own held/ (an earlier
        simsearch recorded it relative to where apply ran; the journal may have moved since,
        and another journal may sit where it was)."""
        held = op.get("held")
        if held:
            candidate = str(self.held / os.path.basename(held))
            if os.path.lexists(candidate) or not os.path.isabs(held):
                op = {**op, "held": candidate}
        return op

    def begin(self) -> dict | None:
        """The latest run's first record (a journal whose steps were all undone can hold a
        later run)."""
        return next((r for r in reversed(self.records) if r["op"] == "begin"), None)


@contextmanager
def one_at_a_time(on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Held by every apply and undo of this user on this machine, whatever their journals: two
    plans applied at once could each remove the copy the other keeps (each checks its kept
    files just before it acts, but not against a run beside it). A second run waits for the
    first (`on_wait` is called once when it must). The lock is a file in /tmp and one in
    ~/.cache/simsearch (the same for every run of this user, whatever its environment), and one
    in $XDG_CACHE_HOME/simsearch where that is elsewhere; a run takes each it can, in that
    order, and refuses to start when it can take neither of the first two."""
    problems: list[str] = []
    held: list[int] = []
    try:
        places = _lock_places()
        for place in places:
            if any(_same_lock(place, fd) for fd in held):  # one file under two names (a
                continue                                   # link, a relative XDG_CACHE_HOME)
            fd = _take(place, problems, on_wait if not held else None)
            if fd is not None:
                held.append(fd)
            if place == places[1] and not held:  # neither place every run shares: another
                break                             # run could not see this one
        if not held:
            raise JournalError("cannot take the lock that keeps two applies or undos apart ("
                               + "; ".join(problems) + "); nothing was done: remove what is in "
                               "the way, or make one of those folders writable")
        yield
    finally:
        for fd in held:
            os.close(fd)  # (closing releases the lock)


def _same_lock(place: Path, fd: int) -> bool:
    """Whether `place` is the file already open (and locked) as `fd`: locking it again would
    wait for ourselves."""
    try:
        st, mine = os.stat(place), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _lock_places() -> list[Path]:
    """Where the lock is: first two places every run of this user shares whatever its
    environment (one of them must be taken), then the cache folder the environment names."""
    home = Path.home() / ".cache" / "simsearch" / "actions.lock"
    places = [Path("/tmp") / f"simsearch-actions-{os.getuid()}.lock", home]
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg) / "simsearch" / "actions.lock" != home:
        places.append(Path(xdg) / "simsearch" / "actions.lock")
    return places


def _take(place: Path, problems: list[str], on_wait) -> int | None:
    """The locked file descriptor of `place`, waiting for another run's lock; None (and the
    reason in `problems`) where it cannot be taken."""
    try:
        os.makedirs(place.parent, exist_ok=True)
        fd = os.open(place, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        problems.append(f"{place}: {e.strerror or e}")
        return None
    st = os.fstat(fd)
    if st.st_uid != os.getuid() or not stat.S_ISREG(st.st_mode):  # another user's planted file
        os.close(fd)
        problems.append(f"{place}: not this user's file")
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another run holds it: wait for it
        if on_wait is not None:
            on_wait()
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:  # a file system without locks
        os.close(fd)
        problems.append(f"{place}: cannot be locked ({e.strerror or e})")
        return None
    return fd
