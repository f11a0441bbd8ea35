"""Files on disk: walking folders for images, file identity (size, mtime), content hashes."""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "FileInfo", "WalkProblem", "walk_images", "stat_file", "sha256"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".dib",
                            ".tif", ".tiff"})


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
    seen: set[str] = set()
    for root in roots:
        root = os.path.abspath(os.fspath(root))
        try:
            st = os.stat(root)
        except OSError as e:
            report(WalkProblem(root, f"cannot read: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(root, seen, report)
        elif stat.S_ISREG(st.st_mode):
            if root not in seen:
                seen.add(root)
                yield FileInfo(root, st.st_size, st.st_mtime_ns)
        else:
            report(WalkProblem(root, "not a regular file or folder"))


def _walk_dir(top: str, seen: set[str], report: Callable[[WalkProblem], None]) -> Iterator[FileInfo]:
    try:
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        report(WalkProblem(top, f"cannot list folder: {e.strerror or e}"))
        return
    for entry in entries:
        path = entry.path
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_dir(path, seen, report)
                continue
            if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if entry.is_symlink() and not os.path.exists(path):
                report(WalkProblem(path, "broken symbolic link"))
                continue
            st = entry.stat(follow_symlinks=True)
        except OSError as e:
            report(WalkProblem(path, f"cannot read: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if not entry.is_symlink():
                report(WalkProblem(path, "folder with an image suffix"))
            continue
        if not stat.S_ISREG(st.st_mode):
            report(WalkProblem(path, "not a regular file"))
            continue
        if path in seen:
            continue
        seen.add(path)
        yield FileInfo(path, st.st_size, st.st_mtime_ns)


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
