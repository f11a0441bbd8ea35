"""The SQLite catalog: the source of truth for which files are indexed, their identity, content
hash, size in pixels, and their vectors. The FAISS file is derived from it and can be rebuilt.

Paths are stored as bytes (`os.fsencode`), so names that are not valid UTF-8 survive.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from simsearch.errors import IndexStoreError

__all__ = ["Catalog", "Row"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
"""


@dataclass(frozen=True)
class Row:
    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int


def _path_key(path: str) -> bytes:
    return os.fsencode(path)


def _path_str(key: bytes) -> str:
    return os.fsdecode(key)


class Catalog:
    """One SQLite file. Writers use transactions (`with catalog.transaction():`); every write
    transaction bumps `generation`, which is how a stale FAISS file is recognised."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = os.fspath(path)
        self.readonly = readonly
        self._local = threading.local()
        try:
            if readonly:
                if not os.path.exists(self.path):
                    raise IndexStoreError(f"{self.path}: catalog not found")
                uri = "file:" + _quote(self.path) + "?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
                if self.get_meta("schema_version") is None:
                    with self.transaction():
                        self.set_meta("schema_version", str(SCHEMA_VERSION))
            self.db.execute("PRAGMA busy_timeout=30000")
            version = self.get_meta("schema_version")
        except sqlite3.DatabaseError as e:
            raise IndexStoreError(f"{self.path}: not a usable catalog ({e})") from e
        if version != str(SCHEMA_VERSION):
            raise IndexStoreError(f"{self.path}: catalog schema {version}, this simsearch reads "
                                  f"{SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # -- transactions and metadata -------------------------------------------------------
    def transaction(self):
        return _Transaction(self)

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- reads -----------------------------------------------------------------------------
    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def get(self, path: str) -> Row | None:
        row = self.db.execute("SELECT id, path, size, mtime_ns, sha256, width, height FROM images "
                              "WHERE path = ?", (_path_key(path),)).fetchone()
        return _row(row) if row else None

    def by_sha256(self, sha: str) -> list[Row]:
        rows = self._reader().execute(
            "SELECT id, path, size, mtime_ns, sha256, width, height FROM images WHERE sha256 = ? "
            "ORDER BY id", (sha,)).fetchall()
        return [_row(r) for r in rows]

    def has_sha256(self, sha: str) -> bool:
        """Thread-safe: worker threads ask this through their own read connection."""
        return self._reader().execute("SELECT 1 FROM images WHERE sha256 = ? LIMIT 1",
                                      (sha,)).fetchone() is not None

    def vector(self, row_id: int) -> np.ndarray:
        blob = self.db.execute("SELECT vector FROM images WHERE id = ?", (row_id,)).fetchone()[0]
        return np.frombuffer(blob, dtype=np.float32)

    def paths(self, ids: Iterable[int]) -> dict[int, str]:
        ids = [int(i) for i in ids]
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row_id, key in self.db.execute(
                    f"SELECT id, path FROM images WHERE id IN ({marks})", chunk):
                out[row_id] = _path_str(key)
        return out

    def rows(self) -> Iterator[Row]:
        for row in self.db.execute("SELECT id, path, size, mtime_ns, sha256, width, height "
                                   "FROM images ORDER BY id"):
            yield _row(row)

    def vectors(self, batch: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) in id order, `batch` rows at a time: memory stays bounded."""
        last = -1
        while True:
            rows = self.db.execute("SELECT id, vector FROM images WHERE id > ? ORDER BY id LIMIT ?",
                                   (last, batch)).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            yield ids, vecs.reshape(len(rows), -1)
            last = int(ids[-1])

    def sha256_groups(self) -> Iterator[list[Row]]:
        """Sets of rows sharing a content hash (exact duplicates), largest hash order."""
        shas = [r[0] for r in self.db.execute(
            "SELECT sha256 FROM images GROUP BY sha256 HAVING COUNT(*) > 1 ORDER BY sha256")]
        for sha in shas:
            yield self.by_sha256(sha)

    def paths_under(self, root: str) -> Iterator[tuple[int, str]]:
        prefix = _path_key(root.rstrip(os.sep) + os.sep)
        for row_id, key in self.db.execute(
                "SELECT id, path FROM images WHERE substr(path, 1, ?) = ?", (len(prefix), prefix)):
            yield row_id, _path_str(key)

    # -- writes (inside a transaction) ---------------------------------------------------------
    def insert(self, path: str, size: int, mtime_ns: int, sha: str, width: int, height: int,
               vector: np.ndarray) -> int:
        cur = self.db.execute(
            "INSERT INTO images (path, size, mtime_ns, sha256, width, height, vector) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_path_key(path), size, mtime_ns, sha, width, height, _blob(vector)))
        return cur.lastrowid

    def update(self, row_id: int, size: int, mtime_ns: int, sha: str, width: int, height: int,
               vector: np.ndarray) -> None:
        self.db.execute("UPDATE images SET size = ?, mtime_ns = ?, sha256 = ?, width = ?, "
                        "height = ?, vector = ? WHERE id = ?",
                        (size, mtime_ns, sha, width, height, _blob(vector), row_id))

    def touch(self, row_id: int, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?",
                        (size, mtime_ns, row_id))

    def move(self, row_id: int, new_path: str, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE images SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
                        (_path_key(new_path), size, mtime_ns, row_id))

    def delete(self, row_ids: Iterable[int]) -> None:
        self.db.executemany("DELETE FROM images WHERE id = ?", ((int(i),) for i in row_ids))

    def clear(self) -> None:
        self.db.execute("DELETE FROM images")

    def integrity_problems(self) -> list[str]:
        rows = self.db.execute("PRAGMA integrity_check").fetchall()
        return [r[0] for r in rows if r[0] != "ok"]

    def _reader(self) -> sqlite3.Connection:
        """The main connection in the main thread; a private read-only one in any other."""
        if threading.current_thread() is threading.main_thread():
            return self.db
        return self._own()

    def _own(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect("file:" + _quote(self.path) + "?mode=ro", uri=True,
                                   check_same_thread=False)
            self._local.conn = conn
        return conn


class _Transaction:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def __enter__(self):
        self.catalog.db.execute("BEGIN IMMEDIATE")
        return self.catalog

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.catalog.set_meta("generation", str(self.catalog.generation + 1))
            self.catalog.db.execute("COMMIT")
        else:
            self.catalog.db.execute("ROLLBACK")
        return False


def _row(r) -> Row:
    return Row(r[0], _path_str(r[1]), r[2], r[3], r[4], r[5], r[6])


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _quote(path: str) -> str:
    from urllib.parse import quote
    return quote(os.path.abspath(path))
