"""Integrity of an index folder: `simsearch check` verifies that the catalog, the FAISS
vectors and the manifest agree, and `--repair` rebuilds the derived files (vectors.faiss,
manifest.json) from the catalog, which is the source of truth."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simsearch.catalog import Catalog
from simsearch.errors import IndexStoreError, SimsearchError
from simsearch.index import (CATALOG, LOCK, VECTORS, Index, _WriterLock,
                             _record_problem, _save_vectors, _write_manifest)
from simsearch.vectors import VectorStore

__all__ = ["CheckReport", "check_index"]


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
        damage = [f"catalog: {p}" for p in catalog.integrity_problems()]
        report.problems += damage
        report.count = catalog.count()
        record, problem = _catalog_record(catalog)
        if problem:
            report.problems.append(f"catalog: {problem}")
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
        if manifest and record:
            bg = _background_for(record)
            wanted = None if bg is False else "cosine" if bg is None else bg.fingerprint
            if wanted is not None and manifest.get("scoring") != wanted:
                report.problems.append("vectors.faiss holds score offsets made for another "
                                       "background set (or none); it is rebuilt on every open")
        if manifest and manifest["generation"] != catalog.generation:
            report.problems.append(f"vectors.faiss is stale (generation {manifest['generation']}, "
                                   f"catalog {catalog.generation})")
        store_ids = None
        try:
            store = VectorStore.load(folder / VECTORS, dim) if (folder / VECTORS).is_file() else None
            if store is None:
                report.problems.append("vectors.faiss is missing")
            else:
                store_ids = set(store.ids().tolist())
        except IndexStoreError as e:
            report.problems.append(str(e))
        except (AttributeError, RuntimeError):
            report.problems.append("vectors.faiss is not a vector file simsearch wrote")
        catalog_ids, norms = [], []
        for ids, vectors in catalog.vectors():
            catalog_ids.append(ids)
            norms.append(np.linalg.norm(vectors, axis=1))
            if vectors.shape[1] != dim:
                report.problems.append(f"catalog vectors have {vectors.shape[1]} dimensions, "
                                       f"expected {dim}")
                break
        ids = np.concatenate(catalog_ids) if catalog_ids else np.zeros(0, np.int64)
        if norms and not np.all(np.abs(np.concatenate(norms) - 1) <= 1e-3):  # NaN fails too
            report.problems.append("catalog holds vectors that are not unit length")
        if store_ids is not None and store_ids != set(ids.tolist()):
            report.problems.append(f"vectors.faiss holds {len(store_ids)} vectors, the catalog "
                                   f"{len(ids)}, and their ids differ")
    finally:
        catalog.close()
    if repair and damage:
        raise IndexStoreError(f"{folder / CATALOG} is damaged ({damage[0]}); it is the source of "
                              f"truth and cannot be rebuilt from the derived files. Move the index "
                              f"folder aside and index your photos again")
    if repair and report.problems:
        report.repaired = _repair(folder, record, manifest)
    return report


def _catalog_record(catalog: Catalog) -> tuple[dict | None, str | None]:
    """The model record the catalog keeps, and what is wrong with it if it is unusable."""
    raw = catalog.get_meta("model")
    if raw is None:
        return None, None
    try:
        record = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return None, "its model record is not valid JSON"
    problem = _record_problem(record)
    return (None, problem) if problem else (record, None)


def _background_for(record: dict):
    """The background set of the model that built the index (the vectors file stores offsets
    against it): a Background, None when the model has none, False when the model is not at
    hand (then nothing can be said about the offsets; a repair writes none)."""
    from simsearch.models import resolve_model
    from simsearch.scoring import load_background

    name = record.get("name")
    try:
        ref = resolve_model(None if name in (None, "default", "default (random init)") else name)
        if ref.model_id != record.get("id"):
            return False
        if ref.background_file is None:
            return None
        return load_background(ref.background_file, ref.model_id, ref.config.dim)
    except SimsearchError:
        return False


def _repair(folder: Path, record: dict | None, manifest: dict | None) -> list[str]:
    repaired = []
    if record is None and manifest is not None:  # the catalog's record is missing or unreadable
        record = manifest["model"]
        repaired.append("restored the catalog's model record from manifest.json")
    if record is None:
        raise IndexStoreError(f"{folder}: neither the catalog nor the manifest says which model "
                              f"built this index; rebuild with: simsearch index PHOTOS --rebuild "
                              f"--index {folder}")
    dim = int(record["config"]["dim"])
    with _WriterLock(folder / LOCK):
        catalog = Catalog(folder / CATALOG)
        try:
            if repaired:
                with catalog.transaction():
                    catalog.set_meta("model", json.dumps(record))
            store = VectorStore(dim, background=_background_for(record) or None)
            for ids, vectors in catalog.vectors():
                if vectors.shape[1] != dim:
                    raise IndexStoreError(
                        f"{folder}: catalog vectors have {vectors.shape[1]} dimensions, its model "
                        f"{dim}; rebuild with: simsearch index PHOTOS --rebuild --index {folder}")
                store.add(ids, vectors)
            _save_vectors(store, folder / VECTORS)
            _write_manifest(folder, catalog, store, record)
        finally:
            catalog.close()
    return repaired + ["rebuilt vectors.faiss from the catalog", "rewrote manifest.json"]
