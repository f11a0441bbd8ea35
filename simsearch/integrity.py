"""Integrity of an index folder: `simsearch check` verifies that the catalog, the FAISS
vectors and the manifest agree (ids, a sample of the vectors themselves, the model of every
vector, the score offsets), and `--repair` rebuilds the derived files (vectors.faiss,
manifest.json, offsets) from the catalog, which is the source of truth."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simsearch.catalog import Catalog
from simsearch.errors import IndexStoreError, SimsearchError
from simsearch.derived import vectors_agree
from simsearch.index import Index
from simsearch.store import CATALOG, FORMAT_VERSION, VECTOR_FILE, VECTORS, Store, model_record_problem
from simsearch.vectorfile import VectorFile
from simsearch.vectors import DEFAULT_FACTORY, VectorIndex

RECALL_FLOOR = 0.95  # an approximate index below this recall@10 is flagged by check

__all__ = ["CheckReport", "check_index"]


@dataclass
class CheckReport:
    """What `check_index` found; `problems` is empty for a consistent index."""

    folder: str
    count: int = 0
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    fatal: bool = False  # a problem a repair cannot fix (the catalog itself)
    factory: str = "Flat"  # how the vectors are searched (the manifest's description)
    recall: float | None = None  # recall@10 measured when an approximate index was built
    warnings: list[str] = field(default_factory=list)  # worth knowing, not inconsistencies

    @property
    def ok(self) -> bool:
        return not self.problems or (bool(self.repaired) and not self.fatal)


def check_index(folder: str | os.PathLike, repair: bool = False) -> CheckReport:
    """Verify manifest <-> catalog <-> FAISS consistency; with `repair`, rebuild the derived
    files (FAISS vectors, manifest) from the catalog, which is the source of truth."""
    folder = Path(folder)
    report = CheckReport(str(folder))
    store = Store(folder)
    if not (folder / CATALOG).is_file():
        raise IndexStoreError(f"no index at {folder} (catalog.sqlite missing)")
    store.refuse_links()  # nothing is read or repaired through a planted link
    catalog = Catalog(folder / CATALOG, readonly=True)
    try:
        damage = [f"catalog: {p}" for p in catalog.integrity_problems()]
        report.problems += damage
        report.count = catalog.count()
        record, problem = _catalog_record(catalog)
        if problem:
            report.problems.append(f"catalog: {problem}")
        models = catalog.models_in_use()
        if record and set(models) - {record["id"]}:
            report.fatal = True
            report.problems.append(
                f"catalog holds vectors of {len(models)} models ("
                + ", ".join(f"{m[:12]}: {n}" for m, n in models.items())
                + f"); rebuild with: simsearch index PHOTOS --rebuild --index {folder}")
        rebuild = catalog.get_meta("rebuild")
        if rebuild is not None:
            report.fatal = True  # only the ingest can finish it
            try:
                folders = " ".join(json.loads(rebuild))
            except (ValueError, TypeError):
                folders = "PHOTOS"
            report.problems.append(
                "a --rebuild was stopped before it finished; finish it with: simsearch index "
                + folders + f" --index {folder}")
        manifest = None
        try:
            manifest = store.read_manifest()
            if manifest is None:
                report.problems.append("manifest.json is missing")
            elif manifest["format_version"] < FORMAT_VERSION:
                report.problems.append(
                    f"written by an older simsearch (index format {manifest['format_version']}, "
                    f"this one writes {FORMAT_VERSION}); queries work as it is, and the next "
                    f"simsearch index or: simsearch check --repair --index {folder} upgrades it "
                    f"(the problems below go with it)")
        except SimsearchError as e:
            report.problems.append(str(e))
        dim = int((record or (manifest or {}).get("model") or {}).get("config", {}).get("dim") or 0)
        if manifest and record and manifest["model"]["id"] != record["id"]:
            report.problems.append("manifest and catalog name different models")
        if manifest and manifest["generation"] != catalog.generation:
            report.problems.append(f"vectors.faiss is stale (generation {manifest['generation']}, "
                                   f"catalog {catalog.generation})")
        wanted = _scoring_for(folder, record)
        offsets = catalog.offsets()[1]
        if wanted is not None and (catalog.get_meta("scoring") != wanted or np.isnan(offsets).any()):
            report.problems.append("the stored score offsets were not made for the model's "
                                   "background set (or some are missing)")
        described = (manifest or {}).get("vectors", {})
        factory = described.get("factory", DEFAULT_FACTORY)
        report.factory = factory
        report.recall = described.get("recall_at_10")
        if report.recall is not None and report.recall < RECALL_FLOOR:
            report.warnings.append(
                f"the {factory} index finds {report.recall:.3f} of the exact 10 nearest "
                f"(recall@10 below {RECALL_FLOOR}); rebuild with more lists probed or another "
                f"kind: simsearch index PHOTOS --ann flat|hnsw|ivf --index {folder}")
        if manifest:
            problem = _vector_file_problem(folder, manifest, dim)
            if problem:
                report.problems.append(problem)
        try:
            if not (folder / VECTORS).is_file() and not (folder / VECTORS).is_symlink():
                report.problems.append("vectors.faiss is missing")
            else:
                vectors = VectorIndex.load(folder / VECTORS, dim, factory, described.get("params"),
                                           column=described.get("column"))
                scoring = catalog.get_meta("scoring")
                if not vectors.has_column or vectors.column != scoring:
                    report.warnings.append(
                        "vectors.faiss has no score column (written by an older simsearch)"
                        if not vectors.has_column else
                        "the score column of vectors.faiss was made for another background than "
                        "the stored offsets")
                    report.warnings[-1] += ("; queries rank by cosine and fetch more candidates "
                                            "until the next `simsearch index` run rebuilds it")
                if vectors.count != report.count:
                    report.problems.append(f"vectors.faiss holds {vectors.count} vectors, the "
                                           f"catalog {report.count}")
                elif not _ids_agree(catalog, vectors) or not vectors_agree(catalog, vectors, 256):
                    report.problems.append("vectors.faiss holds other vectors than the catalog "
                                           "under the same ids")
        except IndexStoreError as e:
            report.problems.append(str(e))
        for _, batch in catalog.vectors():
            if batch.shape[1] != dim:
                report.fatal = True
                report.problems.append(f"catalog vectors have {batch.shape[1]} dimensions, "
                                       f"expected {dim}")
                break
            if not np.all(np.abs(np.linalg.norm(batch, axis=1) - 1) <= 1e-3):  # NaN fails too
                report.fatal = True
                report.problems.append("catalog holds vectors that are not unit length (a broken "
                                       f"model?); rebuild with: simsearch index PHOTOS --rebuild "
                                       f"--index {folder}")
                break
    finally:
        catalog.close()
    from simsearch.verdicts import FILE as CHECKED, readable
    if not readable(folder):
        report.warnings.append(f"{CHECKED} (the picture check's verdicts, kept between runs) "
                               f"cannot be read (damaged, or not simsearch's): the next dedupe "
                               f"ignores it and writes a new one; nothing else depends on it")
    if repair and damage:
        raise IndexStoreError(f"{folder / CATALOG} is damaged ({damage[0]}); it is the source of "
                              f"truth and cannot be rebuilt from the derived files. Move the index "
                              f"folder aside and index your photos again")
    if repair and report.problems:
        report.repaired = _repair(folder, record, manifest)
    return report


def _vector_file_problem(folder: Path, manifest: dict, dim: int) -> str | None:
    """What is wrong with vectors.f16 (queries then read the catalog instead), or None."""
    path = folder / VECTOR_FILE
    if not path.exists():
        return "vectors.f16 is missing"
    try:
        shelf = VectorFile(path)
    except IndexStoreError as e:
        return str(e)
    if shelf.generation != manifest["generation"] or shelf.count != manifest["count"]:
        return (f"vectors.f16 is stale (generation {shelf.generation}, manifest "
                f"{manifest['generation']})")
    if shelf.dim != dim:
        return f"vectors.f16 holds {shelf.dim}-dimensional vectors, expected {dim}"
    return None


def _ids_agree(catalog: Catalog, vectors: VectorIndex) -> bool:
    ids, _ = catalog.offsets()
    return np.array_equal(np.sort(ids), np.sort(vectors.ids()))


def _catalog_record(catalog: Catalog) -> tuple[dict | None, str | None]:
    """The model record the catalog keeps, and what is wrong with it if it is unusable."""
    raw = catalog.get_meta("model")
    if raw is None:
        return None, None
    try:
        record = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return None, "its model record is not valid JSON"
    problem = model_record_problem(record)
    return (None, problem) if problem else (record, None)


def _scoring_for(folder: Path, record: dict | None) -> str | None:
    """What the stored offsets must be made for (see `Index._scoring`), or None when the model
    that built the index is not at hand (then nothing can be said about them)."""
    if record is None:
        return None
    try:
        return Index(folder, trust_manifest=False).scoring_target()
    except SimsearchError:
        return None


def _repair(folder: Path, record: dict | None, manifest: dict | None) -> list[str]:
    repaired = []
    if record is None and manifest is not None:  # the catalog's record is missing or unreadable
        record = manifest["model"]
        repaired.append("restored the catalog's model record from manifest.json")
    if record is None:
        raise IndexStoreError(f"{folder}: neither the catalog nor the manifest says which model "
                              f"built this index; rebuild with: simsearch index PHOTOS --rebuild "
                              f"--index {folder}")
    store = Store(folder)
    with store.writer():
        catalog = store.catalog(readonly=False)
        try:
            models = catalog.models_in_use() if not repaired else {}
            if set(models) - {record["id"]}:
                raise IndexStoreError(f"{folder}: the catalog holds vectors of several models, "
                                      f"which no repair can make comparable; rebuild with: "
                                      f"simsearch index PHOTOS --rebuild --index {folder}")
            if repaired:
                with catalog.transaction():
                    catalog.set_model(json.dumps(record))
            index = Index(folder, trust_manifest=False)
            scoring = index.scoring_target()
            if scoring is not None:
                index.make_offsets_current(catalog)
                repaired.append("made the stored score offsets current")
            else:
                scoring = catalog.get_meta("scoring") or "cosine"
            ann = (manifest or {}).get("vectors", {}).get("ann", "auto")
            vectors = index.rebuild_vectors(catalog, index.vector_choice(catalog.count(), ann))
            store.commit(catalog, vectors, record, scoring, ann)
        finally:
            catalog.close()
    return repaired + ["rebuilt vectors.faiss and vectors.f16 from the catalog",
                       "rewrote manifest.json"]
