"""The public face of an index folder: open it, add files, search, find duplicates, act.

`Index` is a thin facade: the folder and its one commit path are `simsearch.store`, the source
of truth `simsearch.catalog`, the vector search `simsearch.vectors`, scores
`simsearch.scoring`, ingest `simsearch.ingest`, grouping `simsearch.grouping` (over
arrays: `simsearch.dedupe`).
"""
from __future__ import annotations

import datetime
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simsearch.catalog import Catalog
from simsearch.dedupe import DuplicateReport, check_threshold
from simsearch.pairs import exact_scores
from simsearch.embedder import Embedder
from simsearch.errors import (DecodeError, IndexStoreError, ModelError, ModelMismatchError,
                              PrecisionError, PrecisionUnavailable, SimsearchError)
from simsearch.models import ModelRef, for_this_cpu, resolve_device, resolve_model
from simsearch.files import absolute, sha256
from simsearch.images import load_image
from simsearch.ingest import IngestReport, Progress, ingest
from simsearch.scoring import Background, Offsets, adjusted_search, load_background
from simsearch.store import (CATALOG, FORMAT_VERSION, LOCK, MANIFEST, VECTOR_FILE, VECTORS,
                             Store, write_atomic)
from simsearch.derived import (Deferred, Growing, by_id, computed_offsets, sample, sample_with_ids,
                               vectors_agree)
from simsearch.vectorfile import VectorFile
from simsearch.picturecheck import PictureCheck
from simsearch.verify import RerankSettings, VerifySettings, copy_first
from simsearch.lineup import forget_searched
from simsearch.vectors import (ANN_KINDS, DEFAULT_FACTORY, TOMBSTONE_LIMIT, Choice, VectorIndex,
                               choose, measure_recall, parse_ann)

__all__ = ["Index", "Match", "QueryResult", "open_index", "default_index_dir", "FORMAT_VERSION",
           "MANIFEST", "CATALOG", "VECTORS", "LOCK"]

_DEFAULT_NAMES = (None, "default", "default (random init)")
_RECALL_QUERIES = 500  # stored vectors (seeded) whose exact top 10 an approximate index is held to
THRESHOLD_KEY = "dedupe_threshold"  # catalog meta: a calibrated threshold, JSON (save_threshold)


def default_index_dir() -> Path:
    return Path(os.environ.get("SIMSEARCH_INDEX") or os.path.join("indexes", "default"))


@dataclass(frozen=True)
class Match:
    path: str
    score: float
    # set on a match the picture check moved first (`simsearch.verify.copy_first`): how many
    # local features it shares with the query in one layout
    checked: int | None = None

    def to_dict(self) -> dict:
        """As `query --json` and `serve` answer: path, score, and `checked` when it is set."""
        return {"path": self.path, "score": round(self.score, 6),
                **({} if self.checked is None else {"checked": self.checked})}


@dataclass
class QueryResult:
    query: str
    matches: list[Match] = field(default_factory=list)
    error: str | None = None


def open_index(folder: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
               create: bool = False, device: str | None = None,
               precision: str | None = None) -> "Index":
    """Open (or with `create`, start) the index in `folder` (default: `$SIMSEARCH_INDEX` or
    `indexes/default`). `model` is a model path or `default`; without it, the index's own model.
    `device`: where the network runs (auto, cpu, cuda, cuda:N; see `resolve_device`);
    `precision`: auto, fp32 or int8 on a CPU (default `$SIMSEARCH_PRECISION`, else auto; see
    `resolve_model`)."""
    folder = Path(folder) if folder is not None else default_index_dir()
    if not Store(folder).exists and not create:
        raise IndexStoreError(f"no index at {folder}; create one with: simsearch index PHOTOS"
                              + ("" if folder == default_index_dir() else f" --index {folder}"))
    return Index(folder, model, device, precision=precision)


class Index:
    """A handle on one index folder. Cheap to open: the model and vectors load when used."""

    def __init__(self, folder: str | os.PathLike, model: str | os.PathLike | None = None,
                 device: str | None = None, *, trust_manifest: bool = True,
                 precision: str | None = None):
        """`trust_manifest=False` (for a repair) ignores manifest.json, damaged or not."""
        self.folder = Path(folder)
        self.store = Store(self.folder)
        self._model_spec = model
        self._device_spec = device
        self._device: str | None = None
        self._precision_spec = precision
        self._refused: PrecisionError | None = None  # the precision asked for, refused here
        self._model: ModelRef | None = None
        self._background_loaded = False
        self._background: Background | None = None
        self._embedder: Embedder | None = None
        self._vectors: VectorIndex | None = None
        self._offsets: Offsets | None = None
        self.manifest = self.store.read_manifest() if trust_manifest else None
        self._record = self._catalog_record()

    # -- model --------------------------------------------------------------------------------
    def _catalog_record(self) -> dict | None:
        """The model that made the stored vectors, as the catalog (the source of truth) says;
        the manifest's copy where the catalog has none yet."""
        path = self.folder / CATALOG
        if not path.is_file() or Catalog.is_blank(path):  # none yet, or nothing in it yet
            return self.manifest["model"] if self.manifest else None
        catalog = self.catalog()
        try:
            raw = catalog.get_meta("model")
        finally:
            catalog.close()
        if raw is None:
            return self.manifest["model"] if self.manifest else None
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        from simsearch.store import model_record_problem
        if model_record_problem(record):
            raise IndexStoreError(f"{self.folder / CATALOG}: its model record is malformed; "
                                  f"repair with: simsearch check --repair --index {self.folder}")
        return record

    @property
    def model(self) -> ModelRef:
        if self._model is None:
            self._model = self._resolve_model()
        return self._model

    def _resolve_model(self) -> ModelRef:
        built = self._record
        spec = self._model_spec
        if spec is None and built and built.get("name") not in _DEFAULT_NAMES:
            spec = built["name"]
            if not Path(spec).exists() and not self._is_default(built.get("id")):
                raise ModelError(
                    f"{self.folder} was built with model {spec} ({built.get('id', '?')[:12]}), "
                    f"which is not there any more; point at it with --model PATH, or rebuild "
                    f"with: simsearch index PHOTOS --rebuild --model MODEL --index {self.folder}")
            if not Path(spec).exists():
                spec = None  # a copy of the default model, named by a path that has moved
        try:
            try:
                ref = resolve_model(spec, precision=self._precision_spec)
            except PrecisionUnavailable as e:
                # the model's identity, threshold and background do not hang on the precision:
                # dedupe, review and check work on; what runs the network is refused then, on
                # a CPU (`runtime_model`), with this reason
                ref = resolve_model(spec, precision="fp32")
                self._refused = e
        except ModelError as e:
            if spec is None or spec == self._model_spec or isinstance(e, PrecisionError):
                raise
            raise ModelError(f"{self.folder} was built with the model {spec}, which cannot be "
                             f"used: {e}. Name it with --model PATH") from e
        if built and built.get("id") != ref.model_id and built.get("name") == ref.name:
            # the same name, another network: a newer simsearch ships another default model
            raise ModelMismatchError(
                f"{self.folder} was built with an earlier {ref.name} model "
                f"({built.get('id', '?')[:12]}); this simsearch's is {ref.model_id[:12]}, and "
                f"vectors of different models cannot be compared. Re-embed your photos with it: "
                f"simsearch index PHOTOS --rebuild --index {self.folder} (or point --model at "
                f"the file of the model the index was built with)")
        if built and built.get("id") != ref.model_id:
            raise ModelMismatchError(
                f"{self.folder} was built with model {built.get('name')} ({built.get('id', '?')[:12]}), "
                f"this run uses {ref.name} ({ref.model_id[:12]}); vectors of different models cannot "
                f"be compared. Use --model {built.get('name')}, or rebuild with: "
                f"simsearch index PHOTOS --rebuild --model {ref.name} --index {self.folder}")
        return ref

    def runtime_model(self) -> ModelRef:
        """The model as this index runs its network here: the int8 or fp32 file the precision
        asks for on this CPU (`simsearch.models.for_this_cpu`), fp32 on a GPU. A precision this
        CPU cannot run the model at is refused here (PrecisionError), not when the index is
        opened: what needs no network (dedupe, review, check) works at any setting."""
        ref = self.model  # (fp32 when the precision was refused)
        if self._refused is not None and self.device == "cpu":  # (the device is looked for
            raise self._refused                                  # only here: ONNX Runtime)
        return for_this_cpu(ref, self.device)

    @staticmethod
    def _is_default(model_id) -> bool:
        try:
            return resolve_model(None, precision="fp32").model_id == model_id
        except ModelError:
            return False

    @property
    def device(self) -> str:
        """"cpu" or "cuda:N": where this index runs its network."""
        if self._device is None:
            self._device = resolve_device(self._device_spec)
        return self._device

    @property
    def background(self) -> Background | None:
        """The model's background set for score adjustment (`simsearch.scoring`), if it has one."""
        if not self._background_loaded:
            ref = self.model
            self._background = None if ref.background_file is None else load_background(
                ref.background_file, ref.model_id, ref.config.dim)
            self._background_loaded = True
        return self._background

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            # int8 pays off on CPUs only: fp32 on a GPU
            self._embedder = Embedder(self.runtime_model(), device=self.device)
        return self._embedder

    @property
    def dim(self) -> int:
        if self._record:
            return int(self._record["config"]["dim"])
        return self.model.config.dim

    def _model_record(self) -> dict:
        model = self.model
        return {"name": model.name, "id": model.model_id, "config": model.config.to_dict()}

    def catalog(self, readonly: bool = True) -> Catalog:
        return self.store.catalog(readonly)

    # -- vectors and offsets --------------------------------------------------------------------
    @property
    def factory(self) -> str:
        return self._described().get("factory", DEFAULT_FACTORY)

    @property
    def ann(self) -> str:
        """How the vector index is chosen: "auto" (by count and memory), a kind, or a factory."""
        return self._described().get("ann", "auto")

    def _described(self) -> dict:
        return (self.manifest or {}).get("vectors", {})

    def _load(self) -> tuple[VectorIndex, Offsets]:
        """The vector index (vectors.faiss when it agrees with the catalog, else rebuilt from
        it) and every image's score offset, from one committed catalog state."""
        if self._vectors is None:
            catalog = self.catalog()
            try:
                loaded = self._read_vectors_file(mapped=True)  # before the snapshot: see _agreeing
                shelf = self._read_vector_file()
                with catalog.snapshot():
                    self._vectors = self._agreeing(catalog, loaded)
                    fresh = (shelf is not None and shelf.generation == catalog.generation
                             and shelf.count == self._vectors.count)
                    self._offsets = self.stored_offsets(catalog, shelf if fresh else None)
                    self._vectors.rescore_with(shelf.get if fresh else self._catalog_vectors)
            finally:
                catalog.close()
        return self._vectors, self._offsets

    def _catalog_vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored float32 vectors of `ids` from the catalog (when vectors.f16 is stale)."""
        catalog = self.catalog()
        try:
            return by_id(catalog, ids)
        finally:
            catalog.close()

    def _read_vector_file(self) -> VectorFile | None:
        path = self.folder / VECTOR_FILE
        if not self.manifest or not path.exists():
            return None
        try:
            shelf = VectorFile(path)
        except IndexStoreError:
            return None  # derived data: rewritten at the next commit
        if shelf.dim != self.dim or shelf.generation != int(self.manifest["generation"]):
            return None
        return shelf

    def _read_vectors_file(self, mapped: bool = False) -> VectorIndex | None:
        """vectors.faiss if the manifest describes it, else None. Read before the catalog
        snapshot that `_agreeing` checks it in: a writer commits the catalog, then saves
        vectors.faiss, then the manifest, so a file read after the manifest and before a
        snapshot of the manifest's generation is that generation's file."""
        path = self.folder / VECTORS
        if not self.manifest or self.manifest.get("format_version") != FORMAT_VERSION:
            return None
        try:
            loaded = VectorIndex.load(path, self.dim, self.factory,
                                      self._described().get("params"), mapped=mapped,
                                      column=self._described().get("column"))
        except IndexStoreError:
            return None  # derived data: a missing, damaged or foreign file is rebuilt
        loaded.recall = self._described().get("recall_at_10")
        return loaded

    def _agreeing(self, catalog: Catalog, loaded: VectorIndex | None) -> VectorIndex:
        """`loaded` if it matches the catalog's current generation, count and a sample of its
        vectors, else a rebuild from the catalog. (The count is the manifest's: at the same
        generation it is the catalog's, and counting ten million rows takes seconds.)"""
        if (loaded is None or int(self.manifest["generation"]) != catalog.generation
                or loaded.count != int(self.manifest["count"])
                or not vectors_agree(catalog, loaded)):
            return self.rebuild_vectors(catalog, Choice(self.factory, self._described().get("params", {})))
        return loaded

    def vector_choice(self, count: int, ann: str | None = None, memory: int | None = None) -> Choice:
        """The vector index for `count` vectors: `ann` (else the recorded one) as a kind or a
        factory string."""
        ann = ann or self.ann
        if ann in ANN_KINDS:
            return choose(count, self.dim, memory, ann)
        return Choice(ann)

    def rebuild_vectors(self, catalog: Catalog, choice: Choice | None = None) -> VectorIndex:
        """The vector index built from the catalog: `choice` (default: the recorded one),
        trained on a sample of the stored vectors when it needs it, its score column holding
        the catalog's offsets (and recording what they were made for), and its recall@10
        measured against exact search when it is approximate."""
        choice = choice or Choice(self.factory, self._described().get("params", {}))
        ids, values = catalog.offsets()
        whole = not np.isnan(values).any()
        stored = Offsets(ids, np.nan_to_num(values, nan=0.0))
        vectors = VectorIndex(self.dim, choice.factory, params=choice.params,
                              column=catalog.get_meta("scoring") if whole else None)
        if vectors.needs_training:
            picked, training = sample_with_ids(catalog, vectors.training_size)
            try:
                vectors.train(training, stored.of(picked))
            except RuntimeError as e:  # faiss: fewer vectors than the description needs
                raise IndexStoreError(
                    f"{self.folder}: the vector index {choice.factory} cannot be trained on "
                    f"{len(training)} vectors; repair with: simsearch check --repair --index "
                    f"{self.folder}") from e
        for ids, batch in catalog.vectors():
            if batch.shape[1] != self.dim:
                raise IndexStoreError(
                    f"{catalog.path}: catalog vectors have {batch.shape[1]} dimensions, the index "
                    f"{self.dim}; repair with: simsearch check --repair --index {self.folder}")
            vectors.add(ids, batch, stored.of(ids))
        if not vectors.exact:
            vectors.rescore_with(lambda ids: by_id(catalog, ids))
            queries = sample(catalog, _RECALL_QUERIES, seed=1)
            # measured in the ranking queries use: through the column when it is usable
            vectors.recall = measure_recall(vectors, queries, catalog.vectors,
                                            offsets=stored.of if vectors.column else None)
            vectors.rescore_with(None)
        return vectors

    def _settled(self, catalog: Catalog, vectors: "VectorIndex | Deferred",
                 ann: str | None = None, memory: int | None = None) -> VectorIndex:
        """The vector index to commit: `vectors` as it is, or rebuilt from the catalog when the
        count crossed a size boundary (another choice), when `ann` asks for another kind, when
        ingest deferred it, or when removed HNSW nodes pass `TOMBSTONE_LIMIT`."""
        choice = self.vector_choice(catalog.count(), ann, memory)
        if (isinstance(vectors, Deferred) or choice.factory != vectors.factory
                or vectors.tombstones > TOMBSTONE_LIMIT * max(vectors.count, 1)
                or not vectors.has_column or vectors.column != catalog.get_meta("scoring")):
            return self.rebuild_vectors(catalog, choice)
        return vectors

    def stored_offsets(self, catalog: Catalog, shelf: VectorFile | None = None) -> Offsets:
        """Offsets as stored at ingest when they were made for the model's background (the
        catalog records which), recomputed in memory otherwise. `shelf`: vectors.f16 of the
        catalog's generation, whose copy of the offsets is read instead of the catalog's."""
        wanted = self.scoring_target()
        if shelf is not None:
            ids, values, stored = shelf.ids, shelf.offsets, shelf.scoring
        else:
            ids, values = catalog.offsets()
            stored = catalog.get_meta("scoring")
        whole = stored is not None and not np.isnan(values).any()
        if wanted is None:  # the model is not here: offsets made for it at ingest still hold
            if whole:
                return Offsets(ids, values)
            raise ModelError(f"{self.folder}: the score offsets of some images were never "
                             f"computed and the model that built the index is not here to "
                             f"compute them; name it with --model PATH")
        if wanted == "cosine":
            return Offsets.zeros(ids)
        if stored == wanted and whole:
            return Offsets(ids, values)
        return computed_offsets(catalog, self.background)

    def _offsets_made_for(self) -> str | None:
        """What the offsets `_load` gives were made for: the model's background (they are
        recomputed when the stored ones are not), or the catalog's word without the model."""
        return self.scoring_target() or (self.manifest or {}).get("scoring")

    def scoring_target(self) -> str | None:
        """What the offsets must be made for: the background's fingerprint, "cosine" for a
        model without one, None when the model is not at hand (then the catalog's word holds)."""
        try:
            background = self.background
        except (ModelError, ModelMismatchError):
            return None
        return "cosine" if background is None else background.fingerprint

    # -- writing ------------------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | os.PathLike], progress: Progress | None = None,
                  workers: int | None = None, batch_size: int = 32,
                  rebuild: bool = False, ray: str | None = None, ann: str | None = None,
                  memory: int | None = None) -> IngestReport:
        """Ingest image files and folders (recursively, incrementally). With `rebuild`, every
        stored vector is dropped first and all files are embedded again (e.g. with a new model).
        `ray`: the address of a Ray cluster ("auto", "local", host:port) whose workers hash,
        decode and embed (`simsearch.cluster`; `workers` actors, default one per CPU); this
        process plans and commits.
        `ann`: how vectors are searched: "auto" (exact Flat while small, then IVF by
        count and `memory` bytes; see `simsearch.vectors.choose`), a kind (flat, hnsw, ivf,
        ivfsq, ivfpq) or a FAISS factory string; default: what the index recorded ("auto").

        A failure to write (full disk, read-only folder) raises `IndexStoreError`; what was
        committed before it stays, and the next run carries on from there."""
        roots = [absolute(p) for p in paths]
        missing = [r for r in roots if not os.path.lexists(r)]
        if missing:
            raise SimsearchError(f"{missing[0]}: no such file or folder; nothing was indexed")
        ann = parse_ann(ann) if ann is not None else None  # a typo is refused before any work
        with self.store.writer():
            self._forget_loaded()
            # what this handle read when it was opened may be stale: another writer (a rebuild
            # with another model, say) may have committed since. Under the lock, read it again.
            self.manifest = self.store.read_manifest()
            self._record = None if rebuild else self._catalog_record()
            self.model  # resolve and check before touching anything
            self.runtime_model()  # (a precision this CPU cannot run is refused here too)
            if rebuild or self.manifest is None:
                self.embedder.verify()  # a broken network is refused before the catalog names it
            catalog = self.catalog(readonly=False)
            try:
                record = self._model_record()
                if rebuild or catalog.get_meta("model") is None:
                    with catalog.transaction():
                        if rebuild:
                            catalog.clear()
                            catalog.delete_meta(MADE_WITH)
                            catalog.set_meta("rebuild", json.dumps(roots))
                        catalog.set_model(json.dumps(record))
                self._record = record
                self._check_one_model(catalog)
                scoring = self.make_offsets_current(catalog)
                self._vectors = None
                vectors, _ = self._load_with(catalog)
                ann = ann or self.ann
                growing = Growing(vectors, lambda n: self.vector_choice(n, ann, memory))
                if ray is None:
                    made, noting = self._file_note(catalog)
                    report = ingest(catalog, growing, lambda: self.embedder, roots,
                                    progress=progress, workers=workers, batch_size=batch_size,
                                    background=self.background, first_rows=noting)
                else:
                    try:
                        from simsearch.cluster import ray_ingest
                    except ImportError as e:
                        if e.name != "ray":
                            raise
                        raise SimsearchError("indexing on a Ray cluster needs Ray; install it "
                                             "with: pip install 'simsearch[ray]'") from None
                    report = ray_ingest(catalog, growing, self.embedder.model, roots, ray,
                                        progress=progress, workers=workers,
                                        batch_size=batch_size, background=self.background,
                                        device=self.embedder.device)
                if ray is None and report.added + report.updated:
                    name = self.embedder.model.onnx_path.name
                    report.other_files = [f for f in made if f not in (name, NOT_RECORDED)]
                self._finish_rebuild(catalog, roots)
                vectors = self._settled(catalog, growing.vectors, ann, memory)
                self.manifest = self.store.commit(catalog, vectors, record, scoring, ann)
            finally:
                catalog.close()
                self._forget_loaded()
        return report

    def _file_note(self, catalog: Catalog):
        """Which files of the model made the index's vectors so far (`made_with`), and what
        notes this run's file among them, run in the transaction that stores its first rows
        (`ingest`'s `first_rows`): noted after the run, a first index killed part way had its
        vectors listed as "(not recorded)"."""
        made = _made_with(catalog)
        if not made and catalog.count():  # rows from before the record
            made = [NOT_RECORDED]

        def note(held: Catalog) -> None:
            try:  # (the first rows may be moved files' vectors, before the network has run)
                model = self._embedder.model if self._embedder is not None \
                    else self.runtime_model()
            except SimsearchError:  # a precision refused here: the run embeds nothing with it
                return
            name = model.onnx_path.name
            if name not in made:
                held.set_meta(MADE_WITH, json.dumps(made + [name]))
        return made, note

    def made_with(self) -> list[str]:
        """The files of the model (fp32, int8, 7-bit int8) whose vectors the index holds, in
        the order first used; empty where unknown (an index from before session 27, or made
        on a Ray cluster, whose workers each run their own CPU's file). Vectors of two files
        agree to a cosine of about 0.998."""
        path = self.folder / CATALOG
        if not path.is_file() or Catalog.is_blank(path):
            return []
        catalog = self.catalog()
        try:
            return _made_with(catalog)
        finally:
            catalog.close()

    def _load_with(self, catalog: Catalog) -> tuple[VectorIndex, Offsets]:
        loaded = self._read_vectors_file()
        with catalog.snapshot():
            self._vectors = self._agreeing(catalog, loaded)
            self._offsets = self.stored_offsets(catalog)
        return self._vectors, self._offsets

    def _forget_loaded(self) -> None:
        self._vectors = self._offsets = None
        self._model = self._embedder = None
        self._refused = None
        self._background_loaded = False

    def _check_one_model(self, catalog: Catalog) -> None:
        models = catalog.models_in_use()
        if set(models) - {self.model.model_id}:
            raise ModelMismatchError(
                f"{self.folder}: the catalog holds vectors of {len(models)} models "
                f"({', '.join(f'{m[:12]}: {n}' for m, n in models.items())}); they cannot be "
                f"compared. Rebuild with: simsearch index PHOTOS --rebuild --index {self.folder}")

    def make_offsets_current(self, catalog: Catalog) -> str:
        """Store every image's offset against the model's background (all of them again when
        the background changed); returns what they were made for."""
        wanted = self.scoring_target()
        if catalog.get_meta("scoring") != wanted or np.isnan(catalog.offsets()[1]).any():
            with catalog.transaction():
                if self.background is None:
                    ids, _ = catalog.offsets()
                    catalog.set_offsets(ids, np.zeros(len(ids), np.float32))
                else:
                    for ids, batch in catalog.vectors():
                        catalog.set_offsets(ids, self.background.offsets(batch))
                catalog.set_meta("scoring", wanted)
        return wanted

    def _finish_rebuild(self, catalog: Catalog, roots: list[str]) -> None:
        """A rebuild is finished once a run has covered every folder it was started on."""
        raw = catalog.get_meta("rebuild")
        if raw is None:
            return
        try:
            started = {str(f) for f in json.loads(raw)}
        except (ValueError, TypeError):
            started = set()  # damaged: this run, over whatever it covered, finishes it
        covered = all(any(r == root or r.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
                      for r in started)
        if covered:
            with catalog.transaction():
                catalog.delete_meta("rebuild")

    def unfinished_rebuild(self) -> list[str] | None:
        """The folders of a `--rebuild` that was stopped before it finished (the index then
        holds only part of them), or None."""
        if not (self.folder / CATALOG).is_file():
            return None
        catalog = self.catalog()
        try:
            raw = catalog.get_meta("rebuild")
        finally:
            catalog.close()
        try:
            return None if raw is None else [str(f) for f in json.loads(raw)]
        except (ValueError, TypeError):
            return ["PHOTOS"]  # the record is damaged; the rebuild is still unfinished

    def _write(self, change) -> int:
        """Run `change(catalog)` in one catalog transaction under the writer lock, then commit
        the derived files: the one way file actions change an index."""
        with self.store.writer():
            self.manifest = self.store.read_manifest()
            self._record = self._catalog_record()  # as committed now, under the lock
            catalog = self.catalog(readonly=False)
            try:
                with catalog.transaction():
                    result = change(catalog)
                self._vectors = None
                vectors, _ = self._load_with(catalog)
                vectors = self._settled(catalog, vectors)
                scoring = catalog.get_meta("scoring") or "cosine"
                record = self._record or self._model_record()
                self.manifest = self.store.commit(catalog, vectors, record, scoring, self.ann)
            finally:
                catalog.close()
                self._vectors = self._offsets = None
        return result

    def forget(self, paths: Iterable[str | os.PathLike]) -> int:
        """Remove these files' rows (the files themselves are not touched). Returns how many."""
        keys = [absolute(p) for p in paths]

        def change(catalog: Catalog) -> int:
            ids = [row.id for row in (catalog.get(p) for p in keys) if row is not None]
            catalog.delete(ids)
            return len(ids)
        return self._write(change)

    def relocate(self, moves: dict) -> int:
        """Files simsearch moved keep their rows under their new paths. A move keeps a file's
        size and mtime; a new path that is missing, or holds a file of another size or mtime,
        is refused (that file is not the one indexed). A row already at the new path (its file
        was replaced by the move) is dropped. Returns how many rows moved."""
        def change(catalog: Catalog) -> int:
            n = 0
            for old, new in moves.items():
                old = os.path.abspath(os.fspath(old))
                new = os.path.abspath(os.fspath(new))
                row = catalog.get(old)
                if row is None or old == new:
                    continue
                try:
                    st = os.stat(new)
                except OSError as e:
                    raise SimsearchError(f"{new}: cannot follow {old} there ({e.strerror or e}); "
                                         f"nothing was changed in the index") from None
                if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
                    raise SimsearchError(f"{new} is not the file indexed as {old} (size or mtime "
                                         f"differ); nothing was changed in the index. Run: "
                                         f"simsearch index FOLDER --index {self.folder}")
                there = catalog.get(new)
                if there is not None:
                    catalog.delete([there.id])
                catalog.move(row.id, new, st.st_size, st.st_mtime_ns)
                n += 1
            return n
        return self._write(change)

    def mark_not_duplicates(self, paths: Iterable[str | os.PathLike]) -> int:
        """Remember that these pictures are all different from one another: later dedupe runs
        never put two of them in one group. Stored by content, so it survives moves. Returns
        the number of pairs recorded."""
        keys = [absolute(p) for p in paths]

        def change(catalog: Catalog) -> int:
            shas = sorted({row.sha256 for row in (catalog.get(p) for p in keys) if row})
            pairs = [(a, b) for i, a in enumerate(shas) for b in shas[i + 1:]]
            catalog.add_not_duplicates(pairs)
            return len(pairs)
        return self._write(change)

    def contents_of(self, paths: Iterable[str | os.PathLike]) -> dict[str, str]:
        """{path: content hash} of the given paths that are indexed (as `absolute` writes
        them); the others are left out."""
        catalog = self.catalog()
        try:
            rows = {absolute(p): catalog.get(absolute(p)) for p in paths}
        finally:
            catalog.close()
        return {p: row.sha256 for p, row in rows.items() if row}

    def not_duplicate_pairs(self) -> set[tuple[str, str]]:
        """Content-hash pairs (a < b) a user said are different pictures."""
        catalog = self.catalog()
        try:
            return catalog.not_duplicates()
        finally:
            catalog.close()

    # -- reading ------------------------------------------------------------------------------
    def count(self) -> int:
        catalog = self.catalog()
        try:
            return catalog.count()
        finally:
            catalog.close()

    def empty(self) -> bool:
        """Whether the index holds no image (cheap at any size, unlike `count`)."""
        catalog = self.catalog()
        try:
            return catalog.empty()
        finally:
            catalog.close()

    def search(self, images: Sequence[str | os.PathLike], k: int = 10,
               batch_size: int = 32, check: bool = True) -> list[QueryResult]:
        """The `k` most similar indexed images for each query image, best first. A query image
        that cannot be decoded gets a result with `error` set; the others are still answered.
        With `check`, when the first match scores below 0.95 and others are close behind, the
        pictures are looked at (`simsearch.verify.copy_first`): a copy of the query behind a
        look-alike is moved first, its score unchanged and `Match.checked` set."""
        if not isinstance(k, int) or k < 1:
            raise SimsearchError(f"k must be a whole number of at least 1, not {k!r}")
        results = [QueryResult(os.path.abspath(os.fspath(p))) for p in images]
        self.device  # a device asked for that is not there is an error, whatever the queries
        known = self._indexed_vectors([r.query for r in results])
        arrays, wanted = [], []
        for i, result in enumerate(results):
            if i in known:
                continue
            try:
                picture = load_image(result.query, target=self.model.config.input_size)
            except DecodeError as e:
                result.error = e.reason
                continue
            arrays.append(self.embedder.prepare(picture.image))
            wanted.append(i)
        embedded = [self.embedder.embed_arrays(np.stack(arrays[s:s + batch_size]))
                    for s in range(0, len(arrays), batch_size)]
        vectors = dict(zip(wanted, np.concatenate(embedded) if embedded else []))
        vectors.update(known)
        wanted = sorted(vectors)
        if not wanted:
            return results
        vectors = np.stack([vectors[i] for i in wanted])
        asked = max(k, RerankSettings().candidates) if check else k
        for i, matches in zip(wanted, self.search_vectors(vectors, asked)):
            # an indexed query is its own first match where another file ties with it (a
            # newcomer's scan listed after a JPEG of its first page, both 1.0000)
            matches.sort(key=lambda m, q=results[i].query: (-round(m.score, 4), m.path != q))
            results[i].matches = (_copy_moved_first(results[i].query, matches) if check
                                  else matches)[:k]
        if check:
            forget_searched()  # a server answers on: nothing of this query is kept
        return results

    def _indexed_vectors(self, paths: Sequence[str]) -> dict[int, np.ndarray]:
        """{position: stored vector} for the query files whose bytes the index holds: such a
        query is the indexed picture, and its stored vector makes it score 1.0 against itself
        whichever int8 or fp32 file runs here (the vectors of two files agree only to about
        0.998), and costs no network. A file that cannot be read is left to the decoder, which
        says why."""
        known: dict[int, np.ndarray] = {}
        catalog = self.catalog()
        try:
            for i, path in enumerate(paths):
                try:
                    rows = catalog.by_sha256(sha256(path))
                except OSError:
                    continue
                if rows:
                    known[i] = catalog.vector(rows[0].id)
        finally:
            catalog.close()
        return known

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> list[list[Match]]:
        if not isinstance(k, int) or k < 1:
            raise SimsearchError(f"k must be a whole number of at least 1, not {k!r}")
        scores, ids = self.search_ids(vectors, k)
        catalog = self.catalog()
        try:
            paths = catalog.paths(np.unique(ids[ids >= 0]))
        finally:
            catalog.close()
        return [[Match(paths[int(i)], float(s)) for s, i in zip(srow, irow) if int(i) in paths]
                for srow, irow in zip(scores, ids)]

    def search_ids(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(scores, catalog ids) of the `k` best adjusted matches of each query vector: ranked
        by the vector index's score column when it holds the offsets in use, else by cosine."""
        index, offsets = self._load()
        return adjusted_search(index, vectors, k, self.background, offsets,
                               shifted=self.ranks_by_column)

    @property
    def ranks_by_column(self) -> bool:
        """Whether queries rank through the vector index's score column: it has one, made for
        the offsets in use."""
        index, _ = self._load()
        return (index.has_column and index.column is not None
                and index.column == self._offsets_made_for())

    def default_threshold(self, checked: bool = True) -> float:
        """The dedupe threshold calibrated for the index's model (read from the model's
        metadata: no torch, no session), for dedupe with the picture check or (`checked` False)
        on scores alone. A model that cannot be found, or carries none, is an error that says
        how to go on, never a silent default."""
        try:
            ref = self.model
        except (ModelError, ModelMismatchError) as e:
            raise ModelError(f"{e}. Without the model its calibrated dedupe threshold is not "
                             f"known: give one with --threshold") from e
        if ref.dedupe_threshold is None:
            raise ModelError(f"{ref.name} carries no calibrated dedupe threshold; give one with "
                             f"--threshold, or calibrate one on your photos with: simsearch eval "
                             f"PHOTOS --save-threshold --index {self.folder}")
        if not checked and ref.unchecked_threshold is not None:
            return float(ref.unchecked_threshold)
        return float(ref.dedupe_threshold)

    # -- a dedupe threshold kept in the catalog (issue 18) -------------------------------------
    def save_threshold(self, value: float, source: str, details: dict) -> None:
        """Keep a dedupe threshold in the catalog (meta key `dedupe_threshold`, JSON: value,
        source, date, then `details`: model_id, precision target, measured precision and
        recall, number of originals...) for `duplicates` to use when none is given. A threshold
        is a score of one model: `details["model_id"]` must be the index's model."""
        value = check_threshold(value)
        built = self._record
        if not built:
            raise IndexStoreError(f"no index at {self.folder}; create one with: simsearch "
                                  f"index PHOTOS --index {self.folder}")
        if details.get("model_id") != built["id"]:
            raise ModelMismatchError(
                f"{self.folder} was built with model {built['name']} ({built['id'][:12]}), "
                f"the threshold was measured with {details.get('model', '?')} "
                f"({str(details.get('model_id'))[:12]}); a score of one model means nothing "
                f"to another. Evaluate with: simsearch eval PHOTOS --index {self.folder}")
        record = {"value": value, "source": source,
                  "date": datetime.date.today().isoformat(), **details}
        self._write(lambda catalog: catalog.set_meta(THRESHOLD_KEY, json.dumps(record)))

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

    def threshold_made_otherwise(self, checked: bool = True) -> dict | None:
        """The kept threshold record for this index's model when it was made the other way
        (with the picture check when `checked` is False, or without it), which `duplicates`
        then passes over; else None."""
        kept = self.threshold()
        if kept is not None and kept.get("model_id") == (self._record or {}).get("id") \
                and bool(kept.get("checked", False)) != checked:
            return kept
        return None

    def threshold_to_use(self, checked: bool = True) -> tuple[float, str]:
        """(threshold, "calibrated") when one is kept for this index's model and made the same
        way (with or without the picture check; a record from before the check was made without
        it), else (the model's threshold, "model")."""
        kept = self.threshold()
        built = (self._record or {}).get("id")
        if kept is not None and kept.get("model_id") == built \
                and bool(kept.get("checked", False)) == checked:
            return float(kept["value"]), "calibrated"
        return self.default_threshold(checked), "model"

    def duplicates(self, threshold: float | None = None, linkage: str = "centre",
                   background: "str | Background | None" = "model",
                   progress: Progress | None = None,
                   check: "bool | PictureCheck" = True,
                   check_progress: Progress | None = None,
                   check_notice: Callable[[int], None] | None = None) -> DuplicateReport:
        """Groups of duplicate files, from the stored vectors (no network is run) and, with
        `check`, a look at the files of the pairs the score alone leaves in doubt
        (`simsearch.verify`: pairs judged two different pictures are not grouped).
        `threshold`: default `default_threshold(check)`. `linkage`: "centre" or "complete" (see
        `simsearch.dedupe`). `background`: "model" scores with the offsets stored at ingest,
        None plain cosine, or another `Background` (see `simsearch.scoring`).
        `progress(done, total)`: images searched for near duplicates so far;
        `check_progress(done, total)`: pairs checked; `check_notice(n)`: told once when the
        check has many pairs to read (`PictureCheck`'s NOTICE_PAIRS). `check` may be a
        `picture_check()` to reuse while the index is unchanged (a sweep over thresholds then
        looks at each pair once); the report counts this call's work."""
        from simsearch.grouping import duplicates
        return duplicates(self, threshold, linkage, background, progress, check, check_progress,
                          check_notice)

    def score_alone_threshold(self) -> float | None:
        """The threshold for dedupe on scores alone (a kept one made without the picture check,
        else the model's `--no-check` threshold), which a pair the check cannot judge must reach
        to be grouped; None when the model carries none (such pairs then go by the score)."""
        try:
            value, _ = self.threshold_to_use(checked=False)
        except (ModelError, ModelMismatchError):
            return None
        return value

    def picture_check(self, settings: VerifySettings = VerifySettings()) -> PictureCheck:
        """A picture check for `duplicates` (see `simsearch.verify`), to reuse across calls while
        the index is unchanged: each pair is judged once however often it is asked about."""
        return PictureCheck(self._catalog_paths, settings, keep_in=self.folder)

    def _catalog_paths(self, ids: Iterable[int]) -> dict[int, str]:
        """The indexed path of each id (ids not indexed are left out)."""
        catalog = self.catalog()
        try:
            return catalog.paths(ids)
        finally:
            catalog.close()

    def scores_between(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        """The score of each pair of indexed paths from the stored vectors, the higher of
        the adjusted score (offsets from the model's background, as dedupe scores by default)
        and plain cosine (the API's `duplicates(background=None)`), capped at 1; None where
        either path is not indexed. Only the vectors of the paths asked are read, and their
        offsets computed from them (where the model is not here, the offsets stored at
        ingest)."""
        paths = list(dict.fromkeys(p for pair in pairs for p in pair))
        try:
            background = self.background
        except SimsearchError:  # the model is not here: the offsets stored at ingest
            background = None
        stored = None
        catalog = self.catalog()
        try:
            with catalog.snapshot():
                rows = {p: catalog.get(p) for p in paths}
                ids = np.array(sorted({r.id for r in rows.values() if r is not None}), np.int64)
                found = catalog.vectors_by_id(ids)
                if background is None and len(ids):
                    try:
                        stored = np.nan_to_num(self.stored_offsets(catalog).of(ids), nan=0.0,
                                               posinf=0.0)
                    except SimsearchError:  # none stored either: plain cosine
                        stored = None
        finally:
            catalog.close()
        row_of = {int(i): k for k, i in enumerate(ids)}
        vectors = (np.stack([found[int(i)] for i in ids]) if len(ids) else
                   np.zeros((0, self.dim), np.float32))
        offsets = (background.offsets(vectors) if background is not None and len(ids) else
                   stored if stored is not None else np.zeros(len(ids), np.float32))
        wanted = [(k, row_of[rows[a].id], row_of[rows[b].id]) for k, (a, b) in enumerate(pairs)
                  if rows[a] is not None and rows[b] is not None]
        out: list[float | None] = [None] * len(pairs)
        if wanted:
            at, x, y = (np.array(c, np.int64) for c in zip(*wanted))
            adjusted = exact_scores(vectors, offsets, x, y)
            plain = exact_scores(vectors, np.zeros_like(offsets), x, y)
            for k, a, b in zip(at.tolist(), adjusted.tolist(), plain.tolist()):
                out[k] = min(1.0, max(a, b))
        return out

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
        out = Path(out)
        if os.path.lexists(out) and not _is_export(out):  # a photo, a document: never replaced
            raise IndexStoreError(f"{out} exists and is not a simsearch export (an .npz of "
                                  f"vectors and paths); it was left as it is: choose another "
                                  f"file with --out")
        paths, vectors = self.vectors()
        try:
            write_atomic(out, lambda f: np.savez(f, vectors=vectors.astype(np.float32),
                                                 paths=np.array(paths, dtype=str)),
                         own_folder=False)
        except OSError as e:
            raise IndexStoreError(f"{out}: cannot write ({e.strerror or e})") from e
        return len(paths)


def _is_export(path: Path) -> bool:
    """Whether `path` is an empty file or holds what `Index.export` writes (an .npz of just
    `vectors` and `paths`, read without unpickling anything), which a new export may replace."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            return True
        with np.load(path, allow_pickle=False) as held:
            return sorted(held.files) == ["paths", "vectors"]
    except Exception:  # noqa: BLE001 - whatever np.load raises: not an export (a photo)
        return False


MADE_WITH = "made_with"  # catalog meta: the model files that made its vectors (a JSON list)
NOT_RECORDED = "(not recorded)"  # ... its first entry where rows came before the record


def _made_with(catalog: Catalog) -> list[str]:
    try:
        made = json.loads(catalog.get_meta(MADE_WITH) or "[]")
    except ValueError:
        return []
    return [str(f) for f in made] if isinstance(made, list) else []


def _copy_moved_first(query: str, matches: list[Match]) -> list[Match]:
    """`matches` with the one the picture check finds a copy of the query moved first."""
    moved = copy_first(query, [m.path for m in matches], np.array([m.score for m in matches]))
    if moved is None:
        return matches
    j, agree = moved
    return [dataclasses.replace(matches[j], checked=agree)] + matches[:j] + matches[j + 1:]
