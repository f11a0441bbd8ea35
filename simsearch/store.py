"""The index folder and its one commit path.

    indexes/default/
      manifest.json    format version, model (config, id, name), vector index description,
                       vector count, generation
      catalog.sqlite   source of truth: paths, sizes, mtimes, hashes, image sizes, vectors,
                       score offsets, which model made each vector, pairs kept apart
      vectors.faiss    derived: rebuilt from the catalog whenever its generation is stale
      vectors.f16      derived: the vectors (float16), ids and score offsets, memory-mapped by
                       queries (see simsearch.vectorfile)
      lock             held (flock) by the one process allowed to write

A writer holds the lock (`Store.writer()`), commits catalog transactions, then calls
`Store.commit()`, which writes vectors.faiss, vectors.f16 and then manifest.json, each
atomically. Readers
never take the lock: they see the last committed catalog state. Nothing is ever written through
a symbolic link: an index folder holding a link where simsearch writes is refused.
"""
from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from simsearch.catalog import Catalog
from simsearch.config import ModelConfig
from simsearch.errors import IndexLockedError, IndexStoreError, ModelError
from simsearch.vectorfile import write_vector_file
from simsearch.vectors import factory_problem

__all__ = ["Store", "write_atomic", "write_error", "FORMAT_VERSION", "MANIFEST", "CATALOG",
           "VECTORS", "VECTOR_FILE", "LOCK", "model_record_problem"]

FORMAT_VERSION = 2  # 2: score offsets live in the catalog, the vector index is described
READABLE_FORMATS = (1, 2)
MANIFEST, CATALOG, VECTORS, LOCK = "manifest.json", "catalog.sqlite", "vectors.faiss", "lock"
VECTOR_FILE = "vectors.f16"
CHECKED = "checked.npz"  # the picture check's verdicts, kept between runs (simsearch.verdicts)
# Every name simsearch opens for writing inside an index folder (SQLite's side files too).
_WRITTEN = (MANIFEST, MANIFEST + ".tmp", CATALOG, CATALOG + "-wal", CATALOG + "-shm",
            CATALOG + "-journal", VECTORS, VECTORS + ".tmp", VECTOR_FILE, VECTOR_FILE + ".tmp",
            LOCK, CHECKED, CHECKED + ".tmp")
# A manifest is a few hundred bytes; a huge one is not ours, and is refused before it is read.
_MAX_MANIFEST_BYTES = 1 << 20


def write_atomic(path: str | os.PathLike, write: Callable[[object], None] | bytes,
                 own_folder: bool = True) -> None:
    """Replace `path` with new content, or leave it as it was: a temp file beside it, created
    anew (never through a link or over another file: O_EXCL | O_NOFOLLOW), written by
    `write(file)` (or with the bytes given), fsynced, then renamed over `path` (a rename
    replaces a link at `path`, never its target). In simsearch's own folder the temp name is
    fixed (`NAME.tmp`, one left by a killed run is removed; a link there is removed, never
    followed); elsewhere (`own_folder=False`, e.g. `export --out`) it is a fresh name, so that
    no file of the user's is touched. Raises OSError as the system reports it."""
    path = os.fspath(path)
    if own_folder:
        tmp = path + ".tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    else:
        tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with open(fd, "wb") as f:
            if isinstance(write, (bytes, bytearray)):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_error(folder: Path, e: Exception) -> IndexStoreError:
    if isinstance(e, OSError):
        reason = e.strerror or str(e)
    else:
        lines = str(e).strip().splitlines()
        reason = lines[-1] if lines else type(e).__name__
    return IndexStoreError(f"{folder}: cannot write the index ({reason}); the last committed "
                           f"state is kept. Free disk space or make the folder writable, then "
                           f"run again")


def model_record_problem(record) -> str | None:
    """What is wrong with a model record ({name, id, config}), or None."""
    if (not isinstance(record, dict) or not isinstance(record.get("name"), str)
            or not isinstance(record.get("id"), str) or not isinstance(record.get("config"), dict)):
        return "model record is malformed"
    try:
        ModelConfig.from_dict(record["config"])
    except (ModelError, TypeError, ValueError, OverflowError) as e:
        return f"model record is malformed ({e})"
    if type(record["config"].get("dim")) is not int:
        return "model record is malformed (dim)"
    return None


class Store:
    """One index folder: where its files are, how they are read, and the one way to write."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @property
    def exists(self) -> bool:
        return (self.folder / MANIFEST).is_file() or (self.folder / CATALOG).is_file()

    # -- reading --------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        """The manifest, checked field by field: it may come from someone else's folder."""
        self.refuse_links()
        path = self.folder / MANIFEST
        if not path.is_file():
            return None
        repair = f"repair with: simsearch check --repair --index {self.folder}"
        try:
            size = path.stat().st_size
            if size > _MAX_MANIFEST_BYTES:
                raise ValueError(f"{size} bytes, far more than a manifest holds")
            data = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError) as e:
            raise IndexStoreError(f"{path}: unreadable manifest ({e}); {repair}") from e
        if not isinstance(data, dict) or "format_version" not in data:
            if not (self.folder / CATALOG).is_file():
                raise IndexStoreError(f"{self.folder} is not a simsearch index (its {MANIFEST} "
                                      f"is someone else's); choose another folder with --index")
            raise IndexStoreError(f"{path}: damaged manifest (not a simsearch manifest); {repair}")
        version = data["format_version"]
        if version not in READABLE_FORMATS:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise IndexStoreError(f"{path}: index format {version!r:.40}, this simsearch reads "
                                  f"{FORMAT_VERSION}; " + ("upgrade simsearch to read it" if newer
                                                           else repair))
        problem = _manifest_problem(data)
        if problem:
            raise IndexStoreError(f"{path}: {problem}; {repair}")
        return data

    def catalog(self, readonly: bool = True) -> Catalog:
        path = self.folder / CATALOG
        if readonly and not path.exists():
            raise IndexStoreError(f"{self.folder}: catalog.sqlite is missing")
        if not readonly:
            self.refuse_links()
        return Catalog(path, readonly=readonly)

    def refuse_links(self) -> None:
        """Refuse a folder where a name simsearch writes is a link (or not a regular file): an
        index folder from someone else could point `lock` at a photo, and writing the pid would
        overwrite it. Checked on every open, reading too (SQLite readers write side files)."""
        for name in _WRITTEN:
            path = self.folder / name
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise IndexStoreError(f"{path}: cannot read ({e.strerror or e})") from e
            if stat.S_ISLNK(st.st_mode):
                if name.endswith(".tmp"):
                    continue  # removed, never followed, by write_atomic
                raise IndexStoreError(
                    f"{path} is a symbolic link (to {os.readlink(path)}); simsearch never writes "
                    f"through a link in an index folder. Remove the link, or choose another "
                    f"folder with --index")
            if not stat.S_ISREG(st.st_mode):
                raise IndexStoreError(f"{path} is not a regular file; remove it, or choose "
                                      f"another folder with --index")
            if st.st_nlink > 1 and not name.endswith(".tmp"):
                raise IndexStoreError(
                    f"{path} is a hard link ({st.st_nlink} names for one file): writing it would "
                    f"change the file's other names too. Remove it, or choose another folder "
                    f"with --index")

    # -- writing --------------------------------------------------------------------------------
    @contextmanager
    def writer(self):
        """Hold the writer lock (refused at once when another process holds it)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(self.folder, e) from e
        self.refuse_links()
        path = self.folder / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise write_error(self.folder, e) from e
        try:
            if os.fstat(fd).st_nlink > 1:  # made a hard link since refuse_links looked
                raise IndexStoreError(f"{path} is a hard link; remove it, or choose another "
                                      f"folder with --index")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                raise IndexLockedError(f"{self.folder} is being written by another simsearch "
                                       f"process (pid {holder}); wait for it to finish and run "
                                       f"again") from None
            except OSError as e:
                raise write_error(self.folder, e) from e
            try:  # the pid is only for the message above; not being able to write it is harmless
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
            except OSError:
                pass
            yield self
        finally:
            os.close(fd)  # closing releases the lock

    def commit(self, catalog: Catalog, vectors, record: dict, scoring: str,
               ann: str = "auto") -> dict:
        """The derived files after catalog transactions: vectors.faiss, vectors.f16, then
        manifest.json (its generation says which catalog state all describe; it records the
        vector index's factory, parameters, measured recall and the `ann` choice that made
        it). Call with the writer lock held."""
        dim = int(record["config"]["dim"])
        try:
            write_atomic(self.folder / VECTORS, vectors.save_to)
            write_atomic(self.folder / VECTOR_FILE, lambda f: write_vector_file(
                f, catalog.count(), dim, catalog.generation, catalog.get_meta("scoring"),
                catalog.vectors_and_offsets()))
            data = {"format_version": FORMAT_VERSION, "model": record,
                    "dim": dim, "count": vectors.count,
                    "generation": catalog.generation, "metric": "cosine",
                    "vectors": {**vectors.describe(), "ann": ann}, "scoring": scoring}
            write_atomic(self.folder / MANIFEST, (json.dumps(data, indent=2) + "\n").encode())
        except (OSError, RuntimeError) as e:  # faiss reports a failed write as RuntimeError
            raise write_error(self.folder, e) from e
        return data


def _manifest_problem(data: dict) -> str | None:
    """What is wrong with a parsed manifest, or None: every field the code relies on is typed."""
    for key in ("model", "dim", "count", "generation"):
        if key not in data:
            return f"manifest lacks {key!r}"
    for key in ("dim", "count", "generation"):
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"manifest {key} is {str(value)[:40]!r}, not a count"
    problem = model_record_problem(data["model"])
    if problem:
        return f"manifest: {problem}"
    if data["model"]["config"]["dim"] != data["dim"]:
        return "manifest dim differs from its model's"
    vectors = data.get("vectors", {"factory": "Flat"})
    if (not isinstance(vectors, dict) or not isinstance(vectors.get("factory"), str)
            or not isinstance(vectors.get("params", {}), dict)
            or not all(isinstance(v, int) and not isinstance(v, bool)
                       for v in vectors.get("params", {}).values())
            or not isinstance(vectors.get("ann", "auto"), str)
            or not isinstance(vectors.get("recall_at_10", 0.0), (int, float))):
        return "manifest vectors description is malformed"
    problem = factory_problem(vectors["factory"])
    if problem:
        return f"manifest: {problem}"
    return None
