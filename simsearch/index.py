"""An index folder: manifest + SQLite catalog + FAISS vectors, a writer lock, atomic commits.

    indexes/default/
      manifest.json    format version, model (config, id, name), vector count, generation
      catalog.sqlite   source of truth: paths, sizes, mtimes, hashes, image sizes, vectors
      vectors.faiss    derived: rebuilt from the catalog whenever its generation is stale
      lock             held (flock) by the one process allowed to write

Readers never take the lock: they see the last committed catalog state.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simsearch.catalog import Catalog
from simsearch.config import ModelConfig
from simsearch.embedder import Embedder, ModelRef, resolve_model
from simsearch.errors import (DecodeError, IndexLockedError, IndexStoreError, ModelError,
                              ModelMismatchError, SimsearchError)
from simsearch.images import load_image
from simsearch.ingest import IngestReport, Progress, ingest
from simsearch.vectors import VectorStore

if TYPE_CHECKING:
    from simsearch.dedupe import DuplicateReport

__all__ = ["Index", "Match", "QueryResult", "CheckReport", "check_index", "open_index", "default_index_dir", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MANIFEST, CATALOG, VECTORS, LOCK = "manifest.json", "catalog.sqlite", "vectors.faiss", "lock"


def default_index_dir() -> Path:
    return Path(os.environ.get("SIMSEARCH_INDEX") or os.path.join("indexes", "default"))


@dataclass(frozen=True)
class Match:
    path: str
    score: float


@dataclass
class QueryResult:
    query: str
    matches: list[Match] = field(default_factory=list)
    error: str | None = None


def open_index(folder: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
               create: bool = False) -> "Index":
    """Open (or with `create`, start) the index in `folder` (default: `$SIMSEARCH_INDEX` or
    `indexes/default`). `model` is a model path or `default`; without it, the index's own model."""
    folder = Path(folder) if folder is not None else default_index_dir()
    if not (folder / MANIFEST).is_file() and not create:
        raise IndexStoreError(f"no index at {folder}; create one with: simsearch index PHOTOS"
                              + ("" if folder == default_index_dir() else f" --index {folder}"))
    return Index(folder, model)


class Index:
    """A handle on one index folder. Cheap to open: the model and vectors load when used."""

    def __init__(self, folder: str | os.PathLike, model: str | os.PathLike | None = None):
        self.folder = Path(folder)
        self._model_spec = model
        self._model: ModelRef | None = None
        self._embedder: Embedder | None = None
        self._store: VectorStore | None = None
        self.manifest = self._read_manifest()

    # -- model --------------------------------------------------------------------------
    @property
    def model(self) -> ModelRef:
        if self._model is None:
            self._model = self._resolve_model()
        return self._model

    def _resolve_model(self) -> ModelRef:
        built = self.manifest.get("model") if self.manifest else None
        spec = self._model_spec
        if spec is None and built and built.get("name") not in (None, "default", "default (random init)"):
            if Path(built["name"]).exists():
                spec = built["name"]
        ref = resolve_model(spec)
        if built and built.get("id") != ref.model_id:
            raise ModelMismatchError(
                f"{self.folder} was built with model {built.get('name')} ({built.get('id', '?')[:12]}), "
                f"this run uses {ref.name} ({ref.model_id[:12]}); vectors of different models cannot "
                f"be compared. Use --model {built.get('name')}, or rebuild with: "
                f"simsearch index PHOTOS --rebuild --index {self.folder}")
        return ref

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.model)
        return self._embedder

    @property
    def dim(self) -> int:
        if self.manifest:
            return int(self.manifest["dim"])
        return self.model.config.dim

    # -- manifest and vectors -----------------------------------------------------------------
    def _read_manifest(self) -> dict | None:
        path = self.folder / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise IndexStoreError(f"{path}: unreadable manifest ({e}); "
                                  f"repair with: simsearch check --repair --index {self.folder}") from e
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise IndexStoreError(f"{path}: index format {data.get('format_version') if isinstance(data, dict) else '?'}"
                                  f", this simsearch reads {FORMAT_VERSION}")
        for key in ("model", "dim", "count", "generation"):
            if key not in data:
                raise IndexStoreError(f"{path}: manifest lacks {key!r}")
        ModelConfig.from_dict(data["model"]["config"])
        return data

    def _model_record(self) -> dict:
        model = self.model
        return {"name": model.name, "id": model.model_id, "config": model.config.to_dict()}

    def _write_manifest(self, catalog: Catalog, store: VectorStore) -> None:
        self.manifest = _write_manifest(self.folder, catalog, store, self._model_record())

    def catalog(self, readonly: bool = True) -> Catalog:
        path = self.folder / CATALOG
        if readonly and not path.exists():
            raise IndexStoreError(f"{self.folder}: catalog.sqlite is missing")
        return Catalog(path, readonly=readonly)

    def store(self, catalog: Catalog | None = None) -> VectorStore:
        """The vectors, from vectors.faiss when it matches the catalog, else rebuilt from it."""
        if self._store is not None:
            return self._store
        own = catalog is None
        catalog = catalog or self.catalog()
        try:
            path = self.folder / VECTORS
            fresh = (self.manifest and path.is_file()
                     and int(self.manifest["generation"]) == catalog.generation)
            store = VectorStore.load(path, self.dim) if fresh else None
            if store is None or store.count != catalog.count():
                store = self._rebuild(catalog)
        finally:
            if own:
                catalog.close()
        self._store = store
        return store

    def _rebuild(self, catalog: Catalog) -> VectorStore:
        store = VectorStore(self.dim)
        for ids, vectors in catalog.vectors():
            store.add(ids, vectors)
        return store

    # -- writing -----------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | os.PathLike], progress: Progress | None = None,
                  workers: int | None = None, batch_size: int = 32,
                  rebuild: bool = False) -> IngestReport:
        """Ingest image files and folders (recursively, incrementally). With `rebuild`, every
        stored vector is dropped first and all files are embedded again (e.g. with a new model)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with _WriterLock(self.folder / LOCK):
            if rebuild:
                self.manifest = None
                self._model = None
                self._embedder = None
            self.model  # resolve and check before touching anything
            catalog = self.catalog(readonly=False)
            try:
                if rebuild or catalog.get_meta("model") is None:
                    with catalog.transaction():
                        if rebuild:
                            catalog.clear()
                        catalog.set_meta("model", json.dumps(self._model_record()))
                if rebuild:
                    store = VectorStore(self.dim)
                else:
                    self._store = None
                    store = self.store(catalog)
                self._store = store
                report = ingest(catalog, store, lambda: self.embedder, [os.fspath(p) for p in paths],
                                progress=progress, workers=workers, batch_size=batch_size)
                store.save(self.folder / VECTORS)
                self._write_manifest(catalog, store)
            finally:
                catalog.close()
        return report

    # -- reading ---------------------------------------------------------------------------
    def count(self) -> int:
        catalog = self.catalog()
        try:
            return catalog.count()
        finally:
            catalog.close()

    def search(self, images: Sequence[str | os.PathLike], k: int = 10,
               batch_size: int = 32) -> list[QueryResult]:
        """The `k` most similar indexed images for each query image, best first. A query image
        that cannot be decoded gets a result with `error` set; the others are still answered."""
        results = [QueryResult(os.path.abspath(os.fspath(p))) for p in images]
        arrays, wanted = [], []
        for i, result in enumerate(results):
            try:
                picture = load_image(result.query, target=self.model.config.input_size)
            except DecodeError as e:
                result.error = e.reason
                continue
            arrays.append(self.embedder.prepare(picture.image))
            wanted.append(i)
        if not wanted:
            return results
        vectors = np.concatenate([self.embedder.embed_arrays(np.stack(arrays[s:s + batch_size]))
                                  for s in range(0, len(arrays), batch_size)])
        for i, matches in zip(wanted, self.search_vectors(vectors, k)):
            results[i].matches = matches
        return results

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> list[list[Match]]:
        store = self.store()
        scores, ids = store.search(vectors, k)
        catalog = self.catalog()
        try:
            paths = catalog.paths(np.unique(ids[ids >= 0]))
        finally:
            catalog.close()
        return [[Match(paths[int(i)], float(s)) for s, i in zip(srow, irow) if int(i) in paths]
                for srow, irow in zip(scores, ids)]

    def duplicates(self, threshold: float | None = None) -> "DuplicateReport":
        """Exact (same content) and near-duplicate groups, from the stored vectors alone."""
        from simsearch.dedupe import find_duplicates

        if threshold is None:
            threshold = self.default_threshold()
        catalog = self.catalog()
        try:
            return find_duplicates(catalog, self.store(catalog), threshold)
        finally:
            catalog.close()

    def default_threshold(self) -> float:
        """The dedupe threshold calibrated for the index's model, without loading the model."""
        from simsearch.dedupe import DEFAULT_THRESHOLD

        name = (self.manifest or {}).get("model", {}).get("name")
        try:
            ref = resolve_model(None if name in (None, "default", "default (random init)") else name)
        except ModelError:
            return DEFAULT_THRESHOLD
        if self.manifest and ref.model_id != self.manifest["model"]["id"]:
            return DEFAULT_THRESHOLD
        return ref.dedupe_threshold if ref.dedupe_threshold is not None else DEFAULT_THRESHOLD

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """Every stored (path, vector), in id order: a list of paths and a float32 [n, d]."""
        catalog = self.catalog()
        try:
            ids, vectors = [], []
            for batch_ids, batch_vectors in catalog.vectors():
                ids.append(batch_ids)
                vectors.append(batch_vectors)
            ids_arr = np.concatenate(ids) if ids else np.zeros(0, np.int64)
            paths = catalog.paths(ids_arr)
        finally:
            catalog.close()
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)
        return [paths[int(i)] for i in ids_arr], matrix

    def export(self, out: str | os.PathLike) -> int:
        """Write the stored vectors and their paths to an .npz (`vectors` [n, d] float32,
        `paths`). Returns the number of vectors written."""
        paths, vectors = self.vectors()
        out = Path(out)
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez(tmp, vectors=vectors.astype(np.float32), paths=np.array(paths, dtype=str))
        os.replace(tmp, out)
        return len(paths)


@dataclass
class CheckReport:
    """What `Index.check` found; `problems` is empty for a consistent index."""

    folder: str
    count: int = 0
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems or bool(self.repaired)


def check_index(folder: str | os.PathLike, repair: bool = False) -> CheckReport:
    """Verify manifest <-> catalog <-> FAISS consistency; with `repair`, rebuild the derived
    files (FAISS vectors, manifest) from the catalog, which is the source of truth."""
    folder = Path(folder)
    report = CheckReport(str(folder))
    if not (folder / CATALOG).is_file():
        raise IndexStoreError(f"no index at {folder} (catalog.sqlite missing)")
    catalog = Catalog(folder / CATALOG, readonly=True)
    try:
        report.problems += [f"catalog: {p}" for p in catalog.integrity_problems()]
        report.count = catalog.count()
        record = json.loads(catalog.get_meta("model") or "null")
        manifest = None
        try:
            manifest = Index(folder).manifest
            if manifest is None:
                report.problems.append("manifest.json is missing")
        except SimsearchError as e:
            report.problems.append(str(e))
        dim = int((manifest or {}).get("dim") or (record or {}).get("config", {}).get("dim") or 0)
        if manifest and record and manifest["model"]["id"] != record["id"]:
            report.problems.append("manifest and catalog name different models")
        if manifest and manifest["generation"] != catalog.generation:
            report.problems.append(f"vectors.faiss is stale (generation {manifest['generation']}, "
                                   f"catalog {catalog.generation})")
        store = None
        try:
            store = VectorStore.load(folder / VECTORS, dim) if (folder / VECTORS).is_file() else None
            if store is None:
                report.problems.append("vectors.faiss is missing")
        except IndexStoreError as e:
            report.problems.append(str(e))
        catalog_ids, norms = [], []
        for ids, vectors in catalog.vectors():
            catalog_ids.append(ids)
            norms.append(np.linalg.norm(vectors, axis=1))
            if vectors.shape[1] != dim:
                report.problems.append(f"catalog vectors have {vectors.shape[1]} dimensions, "
                                       f"expected {dim}")
                break
        ids = np.concatenate(catalog_ids) if catalog_ids else np.zeros(0, np.int64)
        if norms and np.abs(np.concatenate(norms) - 1).max() > 1e-3:
            report.problems.append("catalog holds vectors that are not unit length")
        if store is not None and set(store.ids().tolist()) != set(ids.tolist()):
            report.problems.append(f"vectors.faiss holds {store.count} vectors, the catalog "
                                   f"{len(ids)}, and their ids differ")
    finally:
        catalog.close()
    if repair and report.problems:
        report.repaired = _repair(folder, record, manifest)
    return report


def _repair(folder: Path, record: dict | None, manifest: dict | None) -> list[str]:
    record = record or (manifest or {}).get("model")
    if record is None:
        raise IndexStoreError(f"{folder}: neither the catalog nor the manifest says which model "
                              f"built this index; rebuild with: simsearch index PHOTOS --rebuild "
                              f"--index {folder}")
    with _WriterLock(folder / LOCK):
        catalog = Catalog(folder / CATALOG)
        try:
            store = VectorStore(int(record["config"]["dim"]))
            for ids, vectors in catalog.vectors():
                store.add(ids, vectors)
            store.save(folder / VECTORS)
            _write_manifest(folder, catalog, store, record)
        finally:
            catalog.close()
    return ["rebuilt vectors.faiss from the catalog", "rewrote manifest.json"]


class _WriterLock:
    """An exclusive `flock` on the index's lock file; refuses at once if another writer has it."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise IndexLockedError(f"{self.path.parent} is being written by another simsearch "
                                   f"process (pid {holder}); wait for it to finish and run again")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock
        return False


def _write_manifest(folder: Path, catalog: Catalog, store: VectorStore, record: dict) -> dict:
    data = {"format_version": FORMAT_VERSION, "model": record,
            "dim": int(record["config"]["dim"]), "count": store.count,
            "generation": catalog.generation, "metric": "cosine"}
    _write_atomic(folder / MANIFEST, json.dumps(data, indent=2) + "\n")
    return data


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
