"""An index folder: manifest + SQLite catalog + FAISS vectors, a writer lock, atomic commits.

    indexes/default/
      manifest.json    format version, model (config, id, name), vector count, generation
      catalog.sqlite   source of truth: paths, sizes, mtimes, hashes, image sizes, vectors
      vectors.faiss    derived: rebuilt from the catalog whenever its generation is stale
      lock             held (flock) by the one process allowed to write

Readers never take the lock: they see the last committed catalog state.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simsearch.catalog import Catalog
from simsearch.config import ModelConfig
from simsearch.embedder import Embedder, ModelRef, resolve_device, resolve_model
from simsearch.scoring import Background, adjusted_search, load_background
from simsearch.errors import (DecodeError, IndexLockedError, IndexStoreError, ModelError,
                              ModelMismatchError)
from simsearch.images import load_image
from simsearch.ingest import IngestReport, Progress, ingest
from simsearch.vectors import VectorStore

if TYPE_CHECKING:
    from simsearch.dedupe import DuplicateReport

__all__ = ["Index", "Match", "QueryResult", "open_index", "default_index_dir", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MANIFEST, CATALOG, VECTORS, LOCK = "manifest.json", "catalog.sqlite", "vectors.faiss", "lock"
THRESHOLD_KEY = "dedupe_threshold"  # catalog meta: a calibrated threshold, JSON (save_threshold)
# A manifest is a few hundred bytes; a huge one is not ours, and is refused before it is read.
_MAX_MANIFEST_BYTES = 1 << 20


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
               create: bool = False, device: str | None = None) -> "Index":
    """Open (or with `create`, start) the index in `folder` (default: `$SIMSEARCH_INDEX` or
    `indexes/default`). `model` is a model path or `default`; without it, the index's own model.
    `device`: where the network runs (auto, cpu, cuda, cuda:N; see `resolve_device`)."""
    folder = Path(folder) if folder is not None else default_index_dir()
    if not (folder / MANIFEST).is_file() and not create:
        raise IndexStoreError(f"no index at {folder}; create one with: simsearch index PHOTOS"
                              + ("" if folder == default_index_dir() else f" --index {folder}"))
    return Index(folder, model, device)


class Index:
    """A handle on one index folder. Cheap to open: the model and vectors load when used."""

    def __init__(self, folder: str | os.PathLike, model: str | os.PathLike | None = None,
                 device: str | None = None):
        self.folder = Path(folder)
        self._model_spec = model
        self._device_spec = device
        self._device: str | None = None
        self._model: ModelRef | None = None
        self._background: Background | None | bool = False  # False: not loaded yet
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
        try:
            ref = resolve_model(spec)
        except ModelError as e:
            if spec is None or spec == self._model_spec:
                raise
            raise ModelError(f"{self.folder / MANIFEST} names the model that built it, and that "
                             f"model cannot be used: {e}. Name one with --model") from e
        if built and built.get("id") != ref.model_id:
            raise ModelMismatchError(
                f"{self.folder} was built with model {built.get('name')} ({built.get('id', '?')[:12]}), "
                f"this run uses {ref.name} ({ref.model_id[:12]}); vectors of different models cannot "
                f"be compared. Use --model {built.get('name')}, or rebuild with: "
                f"simsearch index PHOTOS --rebuild --index {self.folder}")
        return ref

    @property
    def device(self) -> str:
        """"cpu" or "cuda:N": where this index runs its network."""
        if self._device is None:
            self._device = resolve_device(self._device_spec)
        return self._device

    @property
    def background(self) -> "Background | None":
        """The model's background set for score adjustment (`simsearch.scoring`), if it has one."""
        if self._background is False:
            ref = self.model
            self._background = None if ref.background_file is None else load_background(
                ref.background_file, ref.model_id, ref.config.dim)
        return self._background

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            ref = self.model
            if self.device != "cpu" and ref.precision == "int8":  # int8 pays off on CPUs only
                fp32 = ref.onnx_path.with_name(ref.onnx_path.name[:-len(".int8.onnx")] + ".onnx")
                ref = dataclasses.replace(ref, onnx_path=fp32, precision="fp32")
            self._embedder = Embedder(ref, device=self.device)
        return self._embedder

    @property
    def dim(self) -> int:
        if self.manifest:
            return int(self.manifest["dim"])
        return self.model.config.dim

    # -- manifest and vectors -----------------------------------------------------------------
    def _read_manifest(self) -> dict | None:
        """The manifest, checked field by field: it may come from someone else's folder."""
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
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise IndexStoreError(f"{path}: index format {version!r:.40}, this simsearch reads "
                                  f"{FORMAT_VERSION}; " + ("upgrade simsearch to read it" if newer
                                                           else repair))
        problem = _manifest_problem(data)
        if problem:
            raise IndexStoreError(f"{path}: {problem}; {repair}")
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
            loaded = self._read_vectors_file(catalog)
            with catalog.snapshot():
                store = self._agreeing(catalog, loaded)
        finally:
            if own:
                catalog.close()
        self._store = store
        return store

    def _read_vectors_file(self, catalog: Catalog) -> VectorStore | None:
        """vectors.faiss if the manifest says it is current, else None. Must run before the
        snapshot that `_agreeing` checks it in: a writer commits the catalog, then saves
        vectors.faiss, then the manifest, so a file read after the manifest and before a
        snapshot of the same generation is that generation's file."""
        path = self.folder / VECTORS
        if not self.manifest or not path.is_file():
            return None
        if int(self.manifest["generation"]) != catalog.generation:
            return None
        background = self._background_if_usable()
        wanted = "cosine" if background is None else background.fingerprint
        if self.manifest.get("scoring") != wanted:
            return None  # offsets made for another background (or none): rebuild
        try:
            store = VectorStore.load(path, self.dim, background)
            store.ids()  # an id map, as simsearch writes; any other faiss index is not ours
            return store
        except (IndexStoreError, AttributeError, RuntimeError):
            return None  # derived data: a damaged or foreign file is rebuilt from the catalog

    def _agreeing(self, catalog: Catalog, store: VectorStore | None) -> VectorStore:
        """`store` if it matches the catalog's current generation and count, else a rebuild."""
        if (store is None or int(self.manifest["generation"]) != catalog.generation
                or store.count != catalog.count()):
            store = self._rebuild(catalog)
        return store

    def _rebuild(self, catalog: Catalog) -> VectorStore:
        store = VectorStore(self.dim, background=self._background_if_usable())
        for ids, vectors in catalog.vectors():
            if vectors.shape[1] != self.dim:
                raise IndexStoreError(
                    f"{catalog.path}: catalog vectors have {vectors.shape[1]} dimensions, the index "
                    f"{self.dim}; repair with: simsearch check --repair --index {self.folder}")
            store.add(ids, vectors)
        return store

    # -- writing -----------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | os.PathLike], progress: Progress | None = None,
                  workers: int | None = None, batch_size: int = 32,
                  rebuild: bool = False) -> IngestReport:
        """Ingest image files and folders (recursively, incrementally). With `rebuild`, every
        stored vector is dropped first and all files are embedded again (e.g. with a new model).

        A failure to write (full disk, read-only folder) raises `IndexStoreError`; what was
        committed before it stays, and the next run carries on from there."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _write_error(self.folder, e) from e
        with _WriterLock(self.folder / LOCK):
            if rebuild:
                self.manifest = None
                self._model = None
                self._background = False
                self._embedder = None
            self.model  # resolve and check before touching anything
            self.device
            catalog = self.catalog(readonly=False)
            try:
                if rebuild or catalog.get_meta("model") is None:
                    with catalog.transaction():
                        if rebuild:
                            catalog.clear()
                        catalog.set_meta("model", json.dumps(self._model_record()))
                if rebuild:
                    store = VectorStore(self.dim, background=self.background)
                else:
                    self._store = None
                    store = self.store(catalog)
                self._store = store
                report = ingest(catalog, store, lambda: self.embedder, [os.fspath(p) for p in paths],
                                progress=progress, workers=workers, batch_size=batch_size)
                _save_vectors(store, self.folder / VECTORS)
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
        scores, ids = adjusted_search(store, vectors, k, self.background)
        catalog = self.catalog()
        try:
            paths = catalog.paths(np.unique(ids[ids >= 0]))
        finally:
            catalog.close()
        return [[Match(paths[int(i)], float(s)) for s, i in zip(srow, irow) if int(i) in paths]
                for srow, irow in zip(scores, ids)]

    def duplicates(self, threshold: float | None = None, linkage: str = "centre",
                   background: "Background | None | str" = "model") -> "DuplicateReport":
        """Exact (same content) and near-duplicate groups, from the stored vectors alone.
        `linkage`: "centre" or "complete" (see `simsearch.dedupe`); `background`: the score
        adjustment ("model": the model's own, None: plain cosine; see `simsearch.scoring`)."""
        from simsearch.dedupe import find_duplicates

        source = "command line"
        if threshold is None:
            threshold, source = self._threshold_to_use()
        catalog = self.catalog()
        try:
            loaded = self._read_vectors_file(catalog)
            with catalog.snapshot():  # vectors and paths from one committed state
                report = find_duplicates(catalog, self._agreeing(catalog, loaded), threshold,
                                         linkage, self._background_if_usable()
                                         if background == "model" else background)
        finally:
            catalog.close()
        report.threshold_source = source
        return report

    def _background_if_usable(self) -> "Background | None":
        """Dedupe needs no network; where the model itself cannot be found it scores plain
        cosine. A background file that exists but cannot be used is an error."""
        try:
            self.model
        except (ModelError, ModelMismatchError):
            return None
        return self.background

    def default_threshold(self) -> float:
        """The dedupe threshold calibrated for the index's model (read from the model's
        metadata, no torch), or `DEFAULT_THRESHOLD` when that model cannot be used here."""
        from simsearch.dedupe import DEFAULT_THRESHOLD

        try:
            ref = self.model
        except (ModelError, ModelMismatchError):
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
        try:
            np.savez(tmp, vectors=vectors.astype(np.float32), paths=np.array(paths, dtype=str))
            os.replace(tmp, out)
        except OSError as e:
            _remove_quietly(tmp)
            raise IndexStoreError(f"{out}: cannot write ({e.strerror or e})") from e
        return len(paths)

    # -- a dedupe threshold kept in the catalog (issue 18) -------------------------------------
    def save_threshold(self, value: float, source: str, details: dict) -> None:
        """Keep a dedupe threshold in the catalog (meta key `dedupe_threshold`, JSON: value,
        source, then `details`: model_id, precision target, measured precision and recall,
        number of originals...) for `duplicates` to use when none is given. A threshold is a
        score of one model: `details["model_id"]` must be the index's model."""
        if not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:  # also refuses nan
            raise ValueError(f"threshold must be a score between -1 and 1, not {value!r}")
        with _WriterLock(self.folder / LOCK):
            self.manifest = self._read_manifest()
            if not self.manifest:
                raise IndexStoreError(f"no index at {self.folder}; create one with: simsearch "
                                      f"index PHOTOS --index {self.folder}")
            built = self.manifest["model"]
            if details.get("model_id") != built["id"]:
                raise ModelMismatchError(
                    f"{self.folder} was built with model {built['name']} ({built['id'][:12]}), "
                    f"the threshold was measured with {details.get('model', '?')} "
                    f"({str(details.get('model_id'))[:12]}); a score of one model means nothing "
                    f"to another. Evaluate with: simsearch eval PHOTOS --index {self.folder}")
            record = {"value": float(value), "source": source,
                      "date": datetime.date.today().isoformat(), **details}
            catalog = self.catalog(readonly=False)
            try:
                current = int(self.manifest["generation"]) == catalog.generation
                with catalog.transaction():
                    catalog.set_meta(THRESHOLD_KEY, json.dumps(record))
                if current:  # no vector changed: vectors.faiss stays valid for the new generation
                    self.manifest = {**self.manifest, "generation": catalog.generation}
                    _write_atomic(self.folder / MANIFEST, json.dumps(self.manifest, indent=2) + "\n")
            finally:
                catalog.close()

    def threshold(self) -> dict | None:
        """The kept dedupe threshold record (see `save_threshold`), or None when none is kept
        (or it is unreadable: dedupe then falls back to the model's threshold)."""
        if not (self.folder / CATALOG).is_file():
            return None
        catalog = self.catalog()
        try:
            text = catalog.get_meta(THRESHOLD_KEY)
        finally:
            catalog.close()
        try:
            record = json.loads(text) if text is not None else None
        except ValueError:
            return None
        if not isinstance(record, dict) or type(record.get("value")) not in (int, float) \
                or not -1.0 <= record["value"] <= 1.0:
            return None
        return record

    def _threshold_to_use(self) -> tuple[float, str]:
        """(threshold, "calibrated") when one is kept for this index's model, else (the model's
        default, "model")."""
        kept = self.threshold()
        built = self.manifest["model"]["id"] if self.manifest else None
        if kept is not None and kept.get("model_id") == built:
            return float(kept["value"]), "calibrated"
        return self.default_threshold(), "model"


def _manifest_problem(data: dict) -> str | None:
    """What is wrong with a parsed manifest, or None: every field the code relies on is typed."""
    for key in ("model", "dim", "count", "generation"):
        if key not in data:
            return f"manifest lacks {key!r}"
    for key in ("dim", "count", "generation"):
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"manifest {key} is {str(value)[:40]!r}, not a count"
    problem = _record_problem(data["model"])
    if problem:
        return f"manifest: {problem}"
    if data["model"]["config"]["dim"] != data["dim"]:
        return "manifest dim differs from its model's"
    return None


def _record_problem(record) -> str | None:
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


class _WriterLock:
    """An exclusive `flock` on the index's lock file; refuses at once if another writer has it."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _write_error(self.path.parent, e) from e
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise IndexLockedError(f"{self.path.parent} is being written by another simsearch "
                                   f"process (pid {holder}); wait for it to finish and run again")
        except OSError as e:
            os.close(self.fd)
            raise _write_error(self.path.parent, e) from e
        try:  # the pid is only for the message above; not being able to write it is harmless
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock
        return False


def _write_manifest(folder: Path, catalog: Catalog, store: VectorStore, record: dict) -> dict:
    data = {"format_version": FORMAT_VERSION, "model": record,
            "dim": int(record["config"]["dim"]), "count": store.count,
            "generation": catalog.generation, "metric": "cosine", "scoring": store.scoring}
    _write_atomic(folder / MANIFEST, json.dumps(data, indent=2) + "\n")
    return data


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise _write_error(path.parent, e) from e


def _save_vectors(store: VectorStore, path: Path) -> None:
    """`store.save`, with a failed write (faiss reports one as RuntimeError) as IndexStoreError;
    the previous vectors.faiss stays as it was."""
    try:
        store.save(path)
    except (OSError, RuntimeError) as e:
        _remove_quietly(path.with_name(path.name + ".tmp"))
        raise _write_error(path.parent, e) from e


def _write_error(folder: Path, e: Exception) -> IndexStoreError:
    if isinstance(e, OSError):
        reason = e.strerror or str(e)
    else:
        lines = str(e).strip().splitlines()
        reason = lines[-1] if lines else type(e).__name__
    return IndexStoreError(f"{folder}: cannot write the index ({reason}); the last committed "
                           f"state is kept. Free disk space or make the folder writable, then "
                           f"run again")


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
