"""The SQLite catalog: the source of truth for which files are indexed, their identity, content
hash, size in pixels, and their vectors. The FAISS file is derived from it and can be rebuilt.

Paths are stored as bytes (`os.fsencode`), so names that are not valid UTF-8 survive.

Every SQLite failure leaves this module as an `IndexStoreError` naming the file: a full disk or a
read-only folder ("cannot write"), or a damaged file ("damaged"); a failed write transaction is
rolled back, so the last committed state is what stays on disk.
"""
from __future__ import annotations

import functools
import inspect
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from simsearch.errors import IndexStoreError

__all__ = ["Catalog", "Row"]

SCHEMA_VERSION = 2

# Version 2 adds each image's score offset (see simsearch.scoring), which model made its
# vector (so that vectors of two models are never mixed unnoticed), and the pairs of contents
# a user said are not duplicates.
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    vector BLOB NOT NULL,
    score_offset REAL,
    model INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX images_sha256 ON images (sha256);
CREATE TABLE models (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
CREATE TABLE not_duplicates (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
"""
_UPGRADE_1_TO_2 = """
ALTER TABLE images ADD COLUMN score_offset REAL;
ALTER TABLE images ADD COLUMN model INTEGER NOT NULL DEFAULT 1;
CREATE TABLE models (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
CREATE TABLE not_duplicates (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
"""
# Every object simsearch creates; anything else (a trigger that fires on each write, a view,
# another program's tables) means the file is not one simsearch wrote, and it is refused.
_OWN_OBJECTS = {("table", "meta"), ("table", "images"), ("table", "models"),
                ("table", "not_duplicates"), ("table", "sqlite_sequence"),
                ("index", "images_sha256")}


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
    if not isinstance(key, (bytes, str)):
        raise IndexStoreError(f"catalog holds a path of type {type(key).__name__}; the catalog is "
                              f"damaged")
    return os.fsdecode(key)


def _store_error(path: str, e: sqlite3.Error) -> IndexStoreError:
    """An SQLite error as a message that says what happened to which file and what to do."""
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_PERM")):
        return IndexStoreError(f"{path}: cannot write the catalog ({e}); the last committed state "
                               f"is kept. Free disk space or make the index folder writable, then "
                               f"run again")
    if name.startswith("SQLITE_CONSTRAINT"):
        return IndexStoreError(f"{path}: a change was refused by the catalog ({e}); nothing of it "
                               f"was written, the catalog is intact")
    if name.startswith("SQLITE_CANTOPEN"):
        return IndexStoreError(f"{path}: cannot open the catalog ({e}); check that the index "
                               f"folder exists and is readable and writable")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return IndexStoreError(f"{path}: the catalog is busy ({e}); another process holds it, "
                               f"try again")
    return IndexStoreError(f"{path}: catalog is damaged or unreadable ({e}). It is the source of "
                           f"truth: move the index folder aside and index your photos again")


def _guarded(method):
    """Turn `sqlite3.Error` raised by a Catalog method (or while iterating it) into an
    `IndexStoreError`: sqlite3 stays inside this module, tracebacks stay out of the CLI."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.Error as e:
                raise _store_error(self.path, e) from e
        return generator

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise _store_error(self.path, e) from e
    return wrapper


class Catalog:
    """One SQLite file. Writers use transactions (`with catalog.transaction():`); every write
    transaction bumps `generation`, which is how a stale FAISS file is recognised."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = os.fspath(path)
        self.readonly = readonly
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []  # the worker threads' connections
        self._readers_lock = threading.Lock()
        try:
            if readonly:
                if not os.path.exists(self.path):
                    raise IndexStoreError(f"{self.path}: catalog not found")
                self.db = self._open_readonly()
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=30000")
            self._check_objects()
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self._create_or_upgrade()
            version = self._version()
        except sqlite3.Error as e:
            self._close_quietly()
            raise _store_error(self.path, e) from e
        except IndexStoreError:
            self._close_quietly()
            raise
        if version is None and not self._objects():
            self._close_quietly()
            folder = os.path.dirname(os.path.abspath(self.path))
            raise IndexStoreError(f"{self.path}: the index was never finished being created (its "
                                  f"first run stopped early); run: simsearch index PHOTOS "
                                  f"--index {folder}")
        if version not in ("1", str(SCHEMA_VERSION)):
            self._close_quietly()
            newer = version is not None and version.isdecimal() and int(version) > SCHEMA_VERSION
            raise IndexStoreError(f"{self.path}: catalog schema {version}, this simsearch reads "
                                  f"{SCHEMA_VERSION}" + ("; upgrade simsearch to read it" if newer
                                                         else ""))
        self.schema = int(version)  # 1: read-only open of an index not yet upgraded

    @staticmethod
    def is_blank(path: str | os.PathLike) -> bool:
        """Whether the file is an SQLite database with nothing in it yet (empty, or a first run
        killed before its first transaction): a writer creates the catalog there."""
        path = os.fspath(path)
        if os.path.getsize(path) == 0:
            return True
        try:
            db = sqlite3.connect("file:" + _quote(path) + "?mode=ro", uri=True)
            try:
                return db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
            finally:
                db.close()
        except sqlite3.Error:
            return False  # not a database: the open that follows says so

    def _version(self) -> str | None:
        """The schema version; "1" for a catalog an older simsearch began and never finished
        (killed inside its first transaction: tables, no version, no rows), which a writer
        completes."""
        objects = self._objects()
        version = self.get_meta("schema_version") if ("table", "meta") in objects else None
        if version is None and ("table", "images") in objects and not self.db.execute(
                "SELECT 1 FROM images LIMIT 1").fetchone():
            return "1"
        return version

    def _objects(self) -> set[tuple[str, str]]:
        return {(kind, name) for kind, name in self.db.execute(
            "SELECT type, name FROM sqlite_master") if not name.startswith("sqlite_autoindex_")}

    def _check_objects(self) -> None:
        """Refuse a file holding objects simsearch never creates: a trigger planted there would
        run on every write, and another program's database must not be taken over."""
        objects = self._objects()
        foreign = sorted(objects - _OWN_OBJECTS)
        if not foreign:
            return
        if ("table", "images") not in objects:
            raise IndexStoreError(f"{self.path} is an SQLite file but not a simsearch catalog "
                                  f"(it holds {foreign[0][0]} {foreign[0][1]!r}); choose another "
                                  f"index folder with --index")
        kind, name = foreign[0]
        raise IndexStoreError(f"{self.path} holds a {kind} {name!r} that simsearch never creates; "
                              f"the file was changed by something else. Move the index folder "
                              f"aside and index your photos again")

    def _create_or_upgrade(self) -> None:
        """A new catalog is created, and an old one upgraded, in one transaction: a process
        killed half-way leaves the file as it was (empty, or at the old version)."""
        objects = self._objects()
        version = self.get_meta("schema_version") if ("table", "meta") in objects else None
        if version == str(SCHEMA_VERSION):
            return
        if objects and version is None:
            empty = ("table", "images") in objects and not self.db.execute(
                "SELECT 1 FROM images LIMIT 1").fetchone()
            if not empty:
                raise IndexStoreError(f"{self.path}: catalog without a schema version; move the "
                                      f"index folder aside and index your photos again")
            # left by an older simsearch killed while creating it: nothing in it to keep
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for kind, name in objects:
                    if kind == "table" and name != "sqlite_sequence":
                        self.db.execute(f'DROP TABLE IF EXISTS "{name}"')
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            objects = set()
        if version not in (None, "1"):
            return  # a newer schema: refused by the caller with its message
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if version is None:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
            else:
                for statement in _UPGRADE_1_TO_2.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                record = self.db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
                if record is not None:
                    self._add_model_row(1, record[0])
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _add_model_row(self, key: int, record_json: str) -> None:
        import json
        try:
            model_id = json.loads(record_json)["id"]
        except (ValueError, TypeError, KeyError):
            model_id = f"unknown-{key}"
        self.db.execute("INSERT OR REPLACE INTO models (key, id, record) VALUES (?, ?, ?)",
                        (key, str(model_id), record_json))

    def _close_quietly(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def _open_readonly(self) -> sqlite3.Connection:
        uri = "file:" + _quote(self.path) + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.OperationalError:
            db.close()
            if os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK) or \
                    os.path.exists(self.path + "-wal"):
                raise
        # A read-only folder without a write-ahead log: SQLite cannot create the shared-memory
        # file that WAL readers go through, but then every commit is in the file itself.
        return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)

    def close(self) -> None:
        """Close every connection, the worker threads' too: only when the last one closes does
        SQLite fold the write-ahead log back into catalog.sqlite, which is then the whole catalog."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self.db.close()

    # -- transactions and metadata -------------------------------------------------------
    def transaction(self):
        return _Transaction(self)

    @_guarded
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @_guarded
    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @_guarded
    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key = ?", (key,))

    @property
    def generation(self) -> int:
        value = self.get_meta("generation") or 0
        try:
            return int(value)
        except ValueError:
            raise IndexStoreError(f"{self.path}: catalog generation {value!r} is not a number; "
                                  f"the catalog is damaged") from None

    @contextmanager
    def snapshot(self):
        """Read inside one transaction: every query sees the same committed state, however many
        commits a writer makes meanwhile (WAL readers never block it). Re-entrant."""
        if self.db.in_transaction:
            yield self
            return
        try:
            self.db.execute("BEGIN")
        except sqlite3.Error as e:
            raise _store_error(self.path, e) from e
        try:
            yield self
        finally:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                pass  # nothing was written; the read transaction ends with the connection anyway

    # -- reads -----------------------------------------------------------------------------
    @_guarded
    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    @_guarded
    def empty(self) -> bool:
        """Whether no image is stored (one row read, where COUNT(*) reads them all)."""
        return self.db.execute("SELECT 1 FROM images LIMIT 1").fetchone() is None

    @_guarded
    def get(self, path: str) -> Row | None:
        row = self.db.execute("SELECT id, path, size, mtime_ns, sha256, width, height FROM images "
                              "WHERE path = ?", (_path_key(path),)).fetchone()
        return _row(row) if row else None

    @_guarded
    def by_sha256(self, sha: str) -> list[Row]:
        rows = self._reader().execute(
            "SELECT id, path, size, mtime_ns, sha256, width, height FROM images WHERE sha256 = ? "
            "ORDER BY id", (sha,)).fetchall()
        return [_row(r) for r in rows]

    @_guarded
    def has_sha256(self, sha: str) -> bool:
        """Thread-safe: worker threads ask this through their own read connection."""
        return self._reader().execute("SELECT 1 FROM images WHERE sha256 = ? LIMIT 1",
                                      (sha,)).fetchone() is not None

    @_guarded
    def vector(self, row_id: int) -> np.ndarray:
        blob = self.db.execute("SELECT vector FROM images WHERE id = ?", (row_id,)).fetchone()[0]
        return np.frombuffer(self._vector_bytes(blob, row_id), dtype=np.float32)

    @_guarded
    def offset(self, row_id: int) -> float | None:
        if self.schema < 2:
            return None
        return self.db.execute("SELECT score_offset FROM images WHERE id = ?",
                               (row_id,)).fetchone()[0]

    @_guarded
    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row's (id, score offset), NaN where none is stored: what a query needs besides
        the vector index, without reading the vectors."""
        if self.schema < 2:
            ids = np.array([r[0] for r in self.db.execute("SELECT id FROM images")], np.int64)
            return ids, np.full(len(ids), np.nan, np.float32)
        rows = self.db.execute("SELECT id, score_offset FROM images").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float32,
                             count=len(rows))
        return ids, values

    @_guarded
    def id_range(self) -> tuple[int, int] | None:
        """(smallest, largest) row id, or None for an empty catalog (from the primary key)."""
        # two statements: SQLite reads each bound from the primary key's ends, but scans every
        # row for MIN and MAX asked together
        low = self.db.execute("SELECT MIN(id) FROM images").fetchone()[0]
        high = self.db.execute("SELECT MAX(id) FROM images").fetchone()[0]
        return None if low is None else (int(low), int(high))

    @_guarded
    def centre_order(self) -> np.ndarray:
        """Every row's place (0 first), in id order (as `contents`), among would-be group
        centres that tie: the larger picture first, then the older file (mostly the original,
        where a copy's folder was read first)."""
        rows = np.fromiter(self.db.execute("SELECT width * height, mtime_ns FROM images ORDER BY id"),
                           dtype=[("pixels", np.int64), ("mtime", np.int64)])
        rank = np.empty(len(rows), np.int64)
        rank[np.lexsort((rows["mtime"], -rows["pixels"]))] = np.arange(len(rows))
        return rank

    @_guarded
    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row's (id, content hash), in id order."""
        rows = self.db.execute("SELECT id, sha256 FROM images ORDER BY id").fetchall()
        return (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                np.array([r[1] for r in rows], dtype=object))

    @_guarded
    def vectors_by_id(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row_id, blob in self.db.execute(
                    f"SELECT id, vector FROM images WHERE id IN ({marks})", chunk):
                out[row_id] = np.frombuffer(self._vector_bytes(blob, row_id), dtype=np.float32)
        return out

    @_guarded
    def rows_by_id(self, ids: Iterable[int]) -> dict[int, Row]:
        ids = [int(i) for i in ids]
        out: dict[int, Row] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute("SELECT id, path, size, mtime_ns, sha256, width, height "
                                     f"FROM images WHERE id IN ({marks})", chunk):
                out[r[0]] = _row(r)
        return out

    @_guarded
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

    @_guarded
    def rows(self) -> Iterator[Row]:
        for row in self.db.execute("SELECT id, path, size, mtime_ns, sha256, width, height "
                                   "FROM images ORDER BY id"):
            yield _row(row)

    def vectors(self, batch: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) in id order, `batch` rows at a time: memory stays bounded."""
        for ids, vectors, _ in self.vectors_and_offsets(batch):
            yield ids, vectors

    @_guarded
    def vectors_and_offsets(self, batch: int = 65536
                            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """All (ids, vectors, score offsets) in id order, `batch` rows at a time; an offset not
        computed yet is NaN."""
        last = -1
        column = "score_offset" if self.schema >= 2 else "NULL"
        while True:
            rows = self.db.execute(f"SELECT id, vector, {column} FROM images WHERE id > ? "
                                   f"ORDER BY id LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            blobs = [self._vector_bytes(r[1], r[0]) for r in rows]
            if len({len(b) for b in blobs}) != 1:
                raise IndexStoreError(f"{self.path}: catalog vectors differ in length; the catalog "
                                      f"is damaged")
            vecs = np.frombuffer(b"".join(blobs), dtype=np.float32)
            offsets = np.array([np.nan if r[2] is None else r[2] for r in rows], np.float32)
            yield ids, vecs.reshape(len(rows), -1), offsets
            last = int(ids[-1])

    @_guarded
    def sha256_groups(self) -> Iterator[list[Row]]:
        """Sets of rows sharing a content hash (exact duplicates), largest hash order."""
        shas = [r[0] for r in self.db.execute(
            "SELECT sha256 FROM images GROUP BY sha256 HAVING COUNT(*) > 1 ORDER BY sha256")]
        for sha in shas:
            yield self.by_sha256(sha)

    @_guarded
    def paths_under(self, root: str) -> Iterator[tuple[int, str]]:
        prefix = _path_key(root.rstrip(os.sep) + os.sep)
        # a range on the UNIQUE path's index (every key that starts with prefix sorts between
        # prefix and prefix with its last byte raised), not a scan of every row
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        for row_id, key in self.db.execute(
                "SELECT id, path FROM images WHERE path >= ? AND path < ?", (prefix, end)):
            yield row_id, _path_str(key)

    # -- writes (inside a transaction) ---------------------------------------------------------
    @_guarded
    def insert(self, path: str, size: int, mtime_ns: int, sha: str, width: int, height: int,
               vector: np.ndarray, offset: float | None = None) -> int:
        """A new row; its vector is the current model's (`set_model`)."""
        cur = self.db.execute(
            "INSERT INTO images (path, size, mtime_ns, sha256, width, height, vector, "
            "score_offset, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_path_key(path), size, mtime_ns, sha, width, height, _blob(vector),
             _real(offset), self.model_key()))
        return cur.lastrowid

    @_guarded
    def update(self, row_id: int, size: int, mtime_ns: int, sha: str, width: int, height: int,
               vector: np.ndarray, offset: float | None = None) -> None:
        self.db.execute("UPDATE images SET size = ?, mtime_ns = ?, sha256 = ?, width = ?, "
                        "height = ?, vector = ?, score_offset = ?, model = ? WHERE id = ?",
                        (size, mtime_ns, sha, width, height, _blob(vector), _real(offset),
                         self.model_key(), row_id))

    @_guarded
    def set_offsets(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        self.db.executemany("UPDATE images SET score_offset = ? WHERE id = ?",
                            zip(np.asarray(offsets, np.float64).tolist(),
                                np.asarray(ids, np.int64).tolist()))

    # -- the model that made the vectors -------------------------------------------------------
    @_guarded
    def set_model(self, record_json: str) -> None:
        """Name the model whose vectors new rows hold (inside a transaction)."""
        import json
        model_id = json.loads(record_json)["id"]
        row = self.db.execute("SELECT key FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            key = (self.db.execute("SELECT MAX(key) FROM models").fetchone()[0] or 0) + 1
            self._add_model_row(key, record_json)
        else:
            self.db.execute("UPDATE models SET record = ? WHERE key = ?", (record_json, row[0]))
        self.set_meta("model", record_json)
        self._model_key = None

    @_guarded
    def model_key(self) -> int:
        key = getattr(self, "_model_key", None)
        if key is None:
            raw = self.get_meta("model")
            if raw is None:
                raise IndexStoreError(f"{self.path}: no model recorded; the catalog is incomplete")
            import json
            try:
                model_id = json.loads(raw)["id"]
            except (ValueError, TypeError, KeyError):
                raise IndexStoreError(f"{self.path}: malformed model record") from None
            row = self.db.execute("SELECT key FROM models WHERE id = ?", (model_id,)).fetchone()
            if row is None:
                raise IndexStoreError(f"{self.path}: the model record names a model the catalog "
                                      f"does not list; the catalog is damaged")
            key = self._model_key = int(row[0])
        return key

    @_guarded
    def models_in_use(self) -> dict[str, int]:
        """How many rows hold vectors of each model (model id -> rows). One entry when the
        index is whole; more after a model change that did not finish."""
        if self.schema < 2:
            raw = self.get_meta("model")
            import json
            try:
                model_id = json.loads(raw)["id"] if raw else "?"
            except (ValueError, TypeError, KeyError):
                model_id = "?"
            n = self.count()
            return {model_id: n} if n else {}
        return {model_id or f"unknown model {key}": n for key, model_id, n in self.db.execute(
            "SELECT images.model, models.id, COUNT(*) FROM images LEFT JOIN models "
            "ON images.model = models.key GROUP BY images.model")}

    # -- pairs a user said are not duplicates ----------------------------------------------------
    @_guarded
    def add_not_duplicates(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO not_duplicates (a, b) VALUES (?, ?)",
                            (tuple(sorted(p)) for p in pairs if p[0] != p[1]))

    @_guarded
    def not_duplicates(self) -> set[tuple[str, str]]:
        """Pairs of content hashes (a < b) that are never to be grouped."""
        if self.schema < 2:
            return set()
        return {(a, b) for a, b in self.db.execute("SELECT a, b FROM not_duplicates")}

    @_guarded
    def touch(self, row_id: int, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?",
                        (size, mtime_ns, row_id))

    @_guarded
    def move(self, row_id: int, new_path: str, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE images SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
                        (_path_key(new_path), size, mtime_ns, row_id))

    @_guarded
    def delete(self, row_ids: Iterable[int]) -> None:
        self.db.executemany("DELETE FROM images WHERE id = ?", ((int(i),) for i in row_ids))

    @_guarded
    def clear(self) -> None:
        self.db.execute("DELETE FROM images")

    @_guarded
    def integrity_problems(self) -> list[str]:
        rows = self.db.execute("PRAGMA integrity_check").fetchall()
        return [r[0] for r in rows if r[0] != "ok"]

    def _vector_bytes(self, blob, row_id: int) -> bytes:
        if not isinstance(blob, bytes) or not blob or len(blob) % 4:
            raise IndexStoreError(f"{self.path}: the vector of row {row_id} is not a float32 array; "
                                  f"the catalog is damaged")
        return blob

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
            with self._readers_lock:
                self._readers.append(conn)
        return conn


class _Transaction:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def __enter__(self):
        try:
            self.catalog.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _store_error(self.catalog.path, e) from e
        return self.catalog

    def __exit__(self, exc_type, exc, tb):
        db = self.catalog.db
        if exc_type is None:
            try:
                self.catalog.set_meta("generation", str(self.catalog.generation + 1))
                db.execute("COMMIT")
                return False
            except sqlite3.Error as e:
                self._rollback()
                raise _store_error(self.catalog.path, e) from e
            except BaseException:
                self._rollback()
                raise
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise _store_error(self.catalog.path, exc) from exc
        return False

    def _rollback(self) -> None:
        """Best effort: SQLite may already have rolled back (a full disk does that)."""
        if self.catalog.db.in_transaction:
            try:
                self.catalog.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def _row(r) -> Row:
    return Row(r[0], _path_str(r[1]), r[2], r[3], r[4], r[5], r[6])


def _real(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _quote(path: str) -> str:
    from urllib.parse import quote
    return quote(os.path.abspath(path))
