"""Files on disk: walking folders for images, file identity (size, mtime), content hashes."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from simsearch.formats import SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "FileInfo", "WalkProblem", "walk_images", "stat_file", "sha256",
           "json_text", "absolute", "marked", "no_ones", "own_folder", "in_own_folder",
           "REVIEW_MARK", "MOVED_MARK", "REVIEW_TEXT", "MOVED_TEXT", "OWN_FOLDER",
           "CACHE_FOLDER", "TRASH_FOLDER"]

# simsearch's own work, not photos: an apply journal (journal.jsonl beside held/, the originals
# it holds) or a review page's folder (this mark beside its thumbnails); walk_images never
# enters one, and apply never acts on a file in one
REVIEW_MARK = ".simsearch-review"
# ... or the folder `apply --action move --to` set duplicates aside in (this mark in it): they
# would otherwise be grouped with their kept copies again, and a later plan could keep the copy
# set aside and act on the library's
MOVED_MARK = ".simsearch-moved"
OWN_FOLDER = ("simsearch's own folder (an apply journal, a review page, or where apply moved "
              "duplicates aside): not indexed")
# ... and a trash folder (the freedesktop trash: files/ and info/), whose files were deleted:
# indexed, a later plan could keep the trashed copy and act on the photo
TRASH_FOLDER = "a trash folder (what is there was deleted): not indexed"
# the trash and recycle folders of other systems a drive or share can carry, spelt as those
# systems spell them: Windows ($RECYCLE.BIN in any case; RECYCLER, RECYCLED), macOS, Samba,
# Synology, QNAP (a folder named so is a trash, whatever it holds); the freedesktop .Trash and
# .Trash-UID too; a plain "Trash" only with its files/ and info/
RECYCLE_NAMES = frozenset({"RECYCLER", "RECYCLED", ".Trashes", ".recycle", "#recycle",
                           "@Recycle",
                           "files_trashbin", ".globalTrash"})  # Nextcloud's, MIUI's
# thumbnail caches other programs keep among the photos, made from them: a phone's
# DCIM/.thumbnails, Synology's @eaDir, QNAP's .@__thumb, netatalk's .AppleDouble (indexed,
# every photo would group with its own thumbnails)
CACHE_NAMES = frozenset({".thumbnails", "@eaDir", ".@__thumb", ".AppleDouble"})
CACHE_FOLDER = "a thumbnail cache another program made from the photos: not indexed"
# ._NAME.jpg beside NAME.jpg on a drive without macOS's own metadata: its resource data
# (AppleDouble, these first bytes), no picture
APPLEDOUBLE = b"\x00\x05\x16\x07"
APPLEDOUBLE_REASON = "macOS's data for a file (an AppleDouble ._ file), not a picture: not indexed"
# a file Android's trash renamed in place (.trashed-EXPIRY-NAME), deleted when it expires
TRASHED_FILE = ".trashed-"
TRASHED_REASON = "a trashed file (Android's trash): not indexed"


# the first words of each mark simsearch writes: a file of the mark's name without them (an
# empty one a person or program made) marks nothing
REVIEW_TEXT = "simsearch review page"
MOVED_TEXT = "Duplicates simsearch apply moved aside"


# what a new drive, a system or a file manager leaves in an otherwise empty folder
NO_ONES = frozenset({"lost+found", ".DS_Store", ".directory", "Thumbs.db", "desktop.ini",
                     ".localized", "System Volume Information", "$RECYCLE.BIN", ".Trashes",
                     ".Spotlight-V100", ".fseventsd", ".TemporaryItems",
                     ".DocumentRevisions-V100", ".Trash", "RECYCLER", "RECYCLED", ".apdisk",
                     ".VolumeIcon.icns"})


def no_ones(name: str) -> bool:
    """Whether a folder's entry is none of the person's (NO_ONES; a drive's .Trash-UID): a
    folder holding only such entries counts as empty where simsearch asks for one."""
    return name in NO_ONES or name.startswith(".Trash-")


def marked(folder: str | os.PathLike, mark: str) -> bool:
    """Whether `folder` holds `mark` (REVIEW_MARK or MOVED_MARK) as simsearch writes it."""
    return _begins(os.path.join(folder, mark),
                   (REVIEW_TEXT if mark == REVIEW_MARK else MOVED_TEXT).encode())


def _begins(path: str, prefix: bytes) -> bool:
    """Whether `path` is a regular file whose bytes begin with `prefix` (opened without
    blocking: a named pipe is none)."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            return stat.S_ISREG(os.fstat(f.fileno()).st_mode) and f.read(len(prefix)) == prefix
    except OSError:
        return False


def own_folder(folder: str) -> str | None:
    """Why `folder` is no photo folder (OWN_FOLDER: an apply journal, a review page's thumbnails
    or moved duplicates; TRASH_FOLDER: a trash; CACHE_FOLDER: another program's thumbnails), or
    None. A review page's own folder is not one: only its thumbs/ (photos an earlier simsearch
    let a page be written beside stay photos)."""
    if (os.path.lexists(os.path.join(folder, "journal.jsonl"))
            and os.path.isdir(os.path.join(folder, "held"))) or marked(folder, MOVED_MARK) or (
            os.path.basename(os.path.normpath(folder)) == "thumbs"
            and marked(os.path.dirname(os.path.normpath(folder)), REVIEW_MARK)):
        return OWN_FOLDER
    name = os.path.basename(os.path.normpath(folder))
    if name in RECYCLE_NAMES or name.lower() == "$recycle.bin" or name.startswith(".Trash") or (
            name == "Trash" and all(os.path.isdir(os.path.join(folder, sub))
                                    for sub in ("files", "info"))):
        return TRASH_FOLDER
    if name in CACHE_NAMES:
        return CACHE_FOLDER
    return None


def in_own_folder(path: str) -> str | None:
    """The apply journal, review folder or trash `path` lies in, at any depth (or `path` itself
    when Android's trash renamed it); None when none."""
    if os.path.basename(path).startswith(TRASHED_FILE):
        return path
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        if own_folder(folder):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent

# JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF and camera RAW (see simsearch.formats)
IMAGE_SUFFIXES = SUFFIXES


@dataclass(frozen=True)
class FileInfo:
    """A file's identity as the catalog sees it: absolute path, size and mtime in ns."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class WalkProblem:
    """A path the walk could not use, and why."""

    path: str
    reason: str


def absolute(path: str | os.PathLike) -> str:
    """`path` absolute and normalised, as the catalog names files: a leading "//" (which
    POSIX leaves to the system, and Linux reads as "/") is "/", so that one file never has two
    names there and plan paths stay plain."""
    path = os.path.abspath(os.fspath(path))
    return "/" + path.lstrip("/") if path.startswith("//") else path


def stat_file(path: str) -> FileInfo:
    st = os.stat(path)
    return FileInfo(path, st.st_size, st.st_mtime_ns)


def walk_images(roots: Iterable[str | os.PathLike],
                on_problem: Callable[[WalkProblem], None] | None = None) -> Iterator[FileInfo]:
    """Yield every image file under `roots`, recursively, in a stable (sorted) order.

    Image files are recognised by suffix. Symbolic links to files are followed; links to folders
    are not (that is how loops and escapes out of the tree are avoided). Paths are absolute and
    normalised, but symlinks are not resolved, so a file keeps the name the user knows it by.
    Unreadable folders and broken entries are reported through `on_problem` and skipped.
    """
    report = on_problem or (lambda problem: None)
    roots = [absolute(r) for r in roots]
    folders = [r for r in roots if os.path.isdir(r)]

    def covered(path: str, by: list[str]) -> bool:
        return any(path.startswith(f.rstrip(os.sep) + os.sep) for f in by)

    # Memory must not grow with the tree, so no set of every path seen: a folder inside another
    # root folder, or a file inside one, is left to that folder's walk (which never repeats a
    # path: links to folders are not followed). Only explicitly named files are remembered.
    walked: set[str] = set()
    named_files: set[str] = set()
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as e:
            report(WalkProblem(root, f"cannot read: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if root in walked or covered(root, [f for f in folders if f != root]):
                continue
            walked.add(root)
            inside = in_own_folder(os.path.join(root, "x"))  # the folder or one above it
            if inside:
                report(WalkProblem(root, own_folder(inside) or OWN_FOLDER))
                continue
            yield from _walk_dir(root, report)
        elif stat.S_ISREG(st.st_mode):
            inside = in_own_folder(root)
            if inside:
                report(WalkProblem(root, TRASHED_REASON if inside == root
                                   else own_folder(inside) or OWN_FOLDER))
                continue
            if root not in named_files and not covered(root, folders):
                named_files.add(root)
                yield FileInfo(root, st.st_size, st.st_mtime_ns)
        else:
            report(WalkProblem(root, "not a regular file or folder"))


def _walk_dir(top: str, report: Callable[[WalkProblem], None]) -> Iterator[FileInfo]:
    """Depth first in name order, with a stack of folders rather than recursion: a tree deeper
    than Python's recursion limit is walked like any other."""
    stack = [iter(_entries(top, report))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = entry.path
        try:
            if entry.is_dir(follow_symlinks=False):
                why = own_folder(path)
                if why:
                    report(WalkProblem(path, why))
                    continue
                stack.append(iter(_entries(path, report)))
                continue
            if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if entry.name.startswith(TRASHED_FILE):
                report(WalkProblem(path, TRASHED_REASON))
                continue
            if entry.name.startswith("._") and _begins(path, APPLEDOUBLE):
                report(WalkProblem(path, APPLEDOUBLE_REASON))
                continue
            st = entry.stat(follow_symlinks=True)
        except OSError as e:
            if e.errno == errno.ELOOP:
                report(WalkProblem(path, "symbolic link loop"))
            elif e.errno == errno.ENOENT and entry.is_symlink():
                report(WalkProblem(path, "broken symbolic link"))
            else:
                report(WalkProblem(path, f"cannot read: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if not entry.is_symlink():
                report(WalkProblem(path, "folder with an image suffix"))
            continue
        if not stat.S_ISREG(st.st_mode):
            report(WalkProblem(path, "not a regular file"))
            continue
        yield FileInfo(path, st.st_size, st.st_mtime_ns)


def _entries(folder: str, report: Callable[[WalkProblem], None]) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        report(WalkProblem(folder, f"cannot list folder: {e.strerror or e}"))
        return []


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB blocks.

    Opened without blocking and refused unless it is a regular file: a path the walk saw as a
    file may be a named pipe by now, and reading one would wait forever."""
    h = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_text(value, **kwargs) -> str:
    """JSON that names files as they are: plain text where every name is valid UTF-8, and
    \\u escapes where one is not (a name Python read as undecodable bytes, which no UTF-8 file
    can hold as it is); either reads back as the same names."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, **kwargs)
    return text
