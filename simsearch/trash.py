"""The freedesktop.org trash (what file managers show as Trash), so that a trashed photo can be
restored from the desktop as well as by `simsearch undo`.

A file on the drive of $XDG_DATA_HOME goes to $XDG_DATA_HOME/Trash (default
~/.local/share/Trash); a file on another drive to that drive's $topdir/.Trash/$uid (when the
administrator made one, sticky and not a link) or $topdir/.Trash-$uid. A file is never copied
across drives to be trashed. Each entry is two names: files/NAME and info/NAME.trashinfo,
which holds the original path and the date.
"""
from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

__all__ = ["TrashEntry", "home_trash", "trash_for", "reserve", "write_info", "original_path"]


@dataclass(frozen=True)
class TrashEntry:
    """Where a file goes in the trash: `file` (files/NAME) and `info` (info/NAME.trashinfo),
    and the Path= value written into the info file."""

    file: str
    info: str
    recorded_path: str


def home_trash() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(os.path.abspath(data)) / "Trash"


def trash_for(path: str) -> tuple[Path, str | None]:
    """The trash folder for `path` and, for a drive's own trash, that drive's top folder (the
    info file's Path= is then relative to it). Raises OSError when the drive has no usable
    trash."""
    device = os.lstat(path).st_dev
    home = home_trash()
    if _device(home) == device:
        return home, None
    top = _mount_point(path)
    uid = os.getuid()
    shared = Path(top) / ".Trash"
    try:
        st = os.lstat(shared)
        if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            return shared / str(uid), top
    except FileNotFoundError:
        pass
    return Path(top) / f".Trash-{uid}", top


def reserve(path: str) -> TrashEntry:
    """A free name in the right trash for `path` (nothing is written yet; `write_info` claims
    it). Creates the trash folders when missing; refuses a trash folder that is a link."""
    trash, top = trash_for(path)
    if top is None:
        os.makedirs(trash.parent, exist_ok=True)  # $XDG_DATA_HOME itself may not exist yet
    for folder in (trash, trash / "files", trash / "info"):
        _make_private_dir(folder)
    name = os.path.basename(path)
    stem, suffix = os.path.splitext(name)
    while len(os.fsencode(stem + suffix)) > 230:  # room for ".N" and ".trashinfo" in 255 bytes
        stem = stem[:-1]
    name = stem + suffix
    for k in range(1, 100000):
        candidate = name if k == 1 else f"{stem}.{k}{suffix}"
        file, info = trash / "files" / candidate, trash / "info" / (candidate + ".trashinfo")
        if not os.path.lexists(file) and not os.path.lexists(info):
            recorded = (os.path.relpath(os.path.join(os.path.realpath(os.path.dirname(
                os.path.abspath(path))), os.path.basename(path)), top) if top
                else os.path.abspath(path))
            return TrashEntry(str(file), str(info), recorded)
    raise OSError(f"no free name in {trash / 'files'} for {name}")


def write_info(entry: TrashEntry) -> None:
    """Claim the entry: info/NAME.trashinfo created exclusively (never through a link)."""
    text = ("[Trash Info]\nPath=" + quote(os.fsencode(entry.recorded_path), safe="/") +
            "\nDeletionDate=" + dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    fd = os.open(entry.info, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "w", encoding="ascii") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def original_path(info: str) -> str | None:
    """The Path= of a .trashinfo file, decoded, or None."""
    try:
        with open(info, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Path="):
                    return os.fsdecode(unquote_to_bytes(line[5:].strip()))
    except OSError:
        return None
    return None


def _make_private_dir(folder: Path) -> None:
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{folder} is not a folder (a link?); refusing to trash through it")


def _device(path: Path) -> int:
    """The device of `path`, or of its nearest existing ancestor."""
    p = path
    while True:
        try:
            return os.stat(p).st_dev
        except FileNotFoundError:
            if p.parent == p:
                raise
            p = p.parent


def _mount_point(path: str) -> str:
    # the folder the file is really in: a folder reached through a link to another drive is
    # on that drive (the file itself is never a link here)
    p = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    device = os.lstat(p).st_dev
    while p != os.sep:
        parent = os.path.dirname(p)
        if os.lstat(parent).st_dev != device:
            break
        p = parent
    return p
