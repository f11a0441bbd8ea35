"""`simsearch eval`: build a copy-detection benchmark from a folder of originals, run the real
pipeline on it (ingest, query, dedupe) and score it, beside perceptual-hash baselines scored
with the same metrics on the same files.

References are the originals plus any distractors; queries are the edited copies. Dedupe runs
on an index of everything. Its pairs are scored by family (an original and its copies):
precision counts a predicted pair as right when both files come from the same original;
recall is the share of (copy, original) pairs that ended up in one group.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simsearch.dedupe import complete_linkage
from simsearch.evaluate import (CalibrationError, DedupeScore, Metrics, Neighbors,
                                calibrate_threshold, hash_baseline, label_neighbors,
                                make_benchmark, micro_average_precision, recall_at_1,
                                recall_at_1_per_edit)
from simsearch.errors import SimsearchError
from simsearch.files import walk_images
from simsearch.index import open_index
from simsearch.scoring import Background, Offsets, adjusted_search
from simsearch.vectors import VectorIndex

__all__ = ["EvalReport", "run_eval", "HASH_THRESHOLD"]

# Hamming distance 10 of 64 bits, the usual default of hash-based duplicate finders.
HASH_THRESHOLD = 1.0 - 10 / 64


@dataclass
class EvalReport:
    metrics: Metrics
    baselines: dict[str, Metrics]
    n_queries: int
    n_references: int
    model: str
    sweep: list[DedupeScore] = field(default_factory=list)
    background: dict | None = None  # the score adjustment used (simsearch.scoring), if any
    variants: list[dict] = field(default_factory=list)  # uAP under other adjustments

    def to_dict(self) -> dict:
        return {**self.metrics.to_dict(),
                "baselines": {k: m.to_dict() for k, m in self.baselines.items()},
                "n_queries": self.n_queries, "n_references": self.n_references,
                "model": self.model, "background": self.background,
                "variants": self.variants, "sweep": [s.to_dict() for s in self.sweep]}


def run_eval(originals: str | os.PathLike, distractors: str | os.PathLike | None = None,
             model: str | None = None, threshold: float | None = None, seed: int = 0,
             per_image: int | None = None, k: int = 10, baselines: Sequence[str] = ("phash", "dhash"),
             work_dir: str | os.PathLike | None = None, min_precision: float = 0.99,
             linkage: str = "centre", sweep: Sequence[float] = (),
             background: Background | None | str = "model", variants: Sequence[Background] = (),
             progress: Callable[[str, int, int], None] | None = None) -> EvalReport:
    """Score `model` (default: the shipped one) on edited copies of the images in `originals`.

    Scores are adjusted against `background` ("model": the model's own background set, if it
    has one; None: plain cosine; see `simsearch.scoring`). Each of `variants` (backgrounds with
    other parameters) is also scored for uAP on the same vectors."""
    with tempfile.TemporaryDirectory(prefix="simsearch-eval-", dir=work_dir) as tmp:
        tmp = Path(tmp)
        sources = [Path(f.path) for f in walk_images([originals])]
        bench = make_benchmark(sources, tmp / "bench", seed=seed, per_image=per_image,
                               progress=_stage(progress, "editing"))
        refs = [str(p) for p in bench.originals]
        if distractors is not None:
            refs += [f.path for f in walk_images([distractors])]
        queries = [str(item.query) for item in bench.items]
        ref_index = {p: i for i, p in enumerate(refs)}
        true_ref = np.array([ref_index[str(item.original)] for item in bench.items])
        edits = [item.edit for item in bench.items]
        family = {p: i for i, p in enumerate(refs)}
        family.update({str(item.query): ref_index[str(item.original)] for item in bench.items})

        index = open_index(tmp / "index", model=model, create=True)
        if background == "model":
            background = index.background
        for bg in [background, *variants]:
            if bg is not None and bg.model_id != index.model.model_id:
                raise SimsearchError(f"the background set belongs to model {bg.model_id[:12]}, "
                                     f"not to {index.model.name} ({index.model.model_id[:12]})")
        roots = [originals, tmp / "bench" / "queries"] + ([distractors] if distractors else [])
        index.add_paths(roots, progress=_stage(progress, "indexing"))
        paths, matrix = index.vectors()
        vectors = dict(zip(paths, matrix))
        if sum(p in vectors for p in refs) < 2:
            raise SimsearchError(f"{originals}: fewer than two readable images to evaluate on")
        dim = index.dim
        store = VectorIndex(dim)
        ref_ids = np.array([i for i, p in enumerate(refs) if p in vectors], dtype=np.int64)
        ref_vectors = np.stack([vectors[refs[i]] for i in ref_ids])
        store.add(ref_ids, ref_vectors)
        q_vectors = np.stack([vectors.get(q, np.zeros(dim, np.float32)) for q in queries])
        offsets = None if background is None else Offsets(ref_ids, background.offsets(ref_vectors))
        scores, ids = adjusted_search(store, q_vectors, k, background, offsets)
        neighbours = Neighbors(ids, scores)
        threshold = index.default_threshold()[0] if threshold is None else threshold
        groups = [g.files for g in index.duplicates(threshold, linkage, background).groups]
        metrics = _score(neighbours, true_ref, edits, groups, threshold, family, bench,
                         min_precision)
        swept = [family_dedupe_score([g.files for g in index.duplicates(t, linkage, background).groups],
                                     family, bench, t) for t in sweep]

        scored = {}
        for kind in baselines:
            hashed = hash_baseline(kind, queries, refs, k=k)
            everything = refs + queries
            pairs = hash_baseline(kind, everything, everything, k=min(k + 1, len(everything)))
            hash_groups = _hash_groups(pairs, everything, HASH_THRESHOLD)
            scored[kind] = _score(hashed, true_ref, edits, hash_groups, HASH_THRESHOLD, family,
                                  bench, min_precision)
        tried = []
        for variant in variants:
            scores, ids = adjusted_search(store, q_vectors, k, variant,
                                          Offsets(ref_ids, variant.offsets(ref_vectors)))
            labelled = label_neighbors(Neighbors(ids, scores), true_ref)
            tried.append({"beta": variant.beta, "delta": variant.delta, "uap": micro_average_precision(
                labelled.scores, labelled.is_positive, labelled.n_positives)})
        used = None if background is None else {
            "beta": background.beta, "delta": background.delta, "centre": background.centre,
            "size": len(background.vectors)}
        return EvalReport(metrics, scored, len(queries), len(refs), index.model.name, swept,
                          used, tried)


def _score(neighbours: Neighbors, true_ref: np.ndarray, edits: list[str], groups: list[list[str]],
           threshold: float, family: dict[str, int], bench, min_precision: float) -> Metrics:
    labelled = label_neighbors(neighbours, true_ref)
    top1 = [int(row[0]) if len(row) and row[0] >= 0 else None for row in neighbours.indices]
    truth = true_ref.tolist()
    try:
        calibrated = calibrate_threshold(labelled.scores, labelled.is_positive, labelled.n_positives,
                                         min_precision)
    except CalibrationError:
        calibrated = None
    return Metrics(
        uap=micro_average_precision(labelled.scores, labelled.is_positive, labelled.n_positives),
        recall_at_1=recall_at_1(top1, truth),
        per_edit=recall_at_1_per_edit(top1, truth, edits),
        dedupe=family_dedupe_score(groups, family, bench, threshold),
        calibrated=calibrated)


def family_dedupe_score(groups: list[list[str]], family: dict[str, int], bench,
                        threshold: float) -> DedupeScore:
    """Pairwise scores of dedupe groups, by family (see the module docstring)."""
    n_predicted = n_right = 0
    group_of: dict[str, int] = {}
    for gi, files in enumerate(groups):
        fams = [family.get(f, -1 - gi) for f in files]
        n_predicted += len(files) * (len(files) - 1) // 2
        counts: dict[int, int] = {}
        for fam in fams:
            counts[fam] = counts.get(fam, 0) + 1
        n_right += sum(c * (c - 1) // 2 for c in counts.values())
        for f in files:
            group_of.setdefault(f, gi)
    true_pairs = [(str(item.query), str(item.original)) for item in bench.items]
    found = sum(1 for q, o in true_pairs if q in group_of and group_of.get(o) == group_of[q])
    precision = n_right / n_predicted if n_predicted else 1.0
    recall = found / len(true_pairs) if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DedupeScore(precision, recall, f1, threshold, n_predicted, len(true_pairs), n_right)


def _hash_groups(pairs: Neighbors, paths: list[str], threshold: float) -> list[list[str]]:
    rows = np.repeat(np.arange(len(paths)), pairs.indices.shape[1])
    cols, sims = pairs.indices.ravel(), pairs.scores.ravel()
    keep = (cols > rows) & (sims >= threshold)
    clusters = complete_linkage(rows[keep], cols[keep], sims[keep])
    return [[paths[i] for i in members] for members, _ in clusters]


def _stage(progress, name):
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)
