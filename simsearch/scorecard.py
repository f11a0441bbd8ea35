"""`simsearch eval`: build a copy-detection benchmark from a folder of originals, run the real
pipeline on it (ingest, query, dedupe) and score it, beside perceptual-hash baselines scored
with the same metrics on the same files.

References are the originals plus any distractors; queries are the edited copies. Dedupe runs
on an index of everything. Its pairs are scored by family (an original and its copies):
precision counts a predicted pair as right when both files come from the same original;
recall is the share of (copy, original) pairs that ended up in one group.

Originals that already look alike (`simsearch.families`: same content, the model's score at its
dedupe threshold, pHash) form sets; by default a pair across two originals of one set counts
neither right nor wrong, in dedupe and in search (a copy whose top hit is another version of
its original is not a miss). `originals_distinct=True` counts them as different pictures.
Figures come with bootstrap intervals over originals (`simsearch.evidence`).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simsearch.dedupe import complete_linkage
from simsearch.pairs import JoinSettings, near_pairs
from simsearch.edits import EDIT_NAMES
from simsearch.evaluate import (Calibration, DedupeScore, Metrics, Neighbors, hamming_to_score,
                                hash_neighbors, image_hashes, make_benchmark)
from simsearch.errors import DecodeError, SimsearchError
from simsearch import evidence
from simsearch.evidence import (Grouping, Interval, Truth, dedupe_score, metrics_of,
                                score_groups, score_search)
from simsearch.families import Families, Link, join, link_hamming, link_hashes
from simsearch.files import walk_images
from simsearch.index import open_index
from simsearch.mistakes import Mistakes, MissedCopy, false_pairs, missed_by_dedupe
from simsearch.verify import copy_first
from simsearch.scoring import Background, Offsets, adjusted_search
from simsearch.vectors import VectorIndex

__all__ = ["EvalReport", "run_eval", "HASH_DISTANCE", "FEW_ORIGINALS", "TARGET_PRECISION"]

# Hamming distance 10 of 64 bits, the usual default of hash-based duplicate finders.
HASH_DISTANCE = 10
# Below this many originals an interval is wide enough to change a decision; say so.
FEW_ORIGINALS = 50
# The dedupe precision a calibrated threshold must reach: the criterion the shipped model's
# default threshold was chosen by (on validation images), so that a threshold calibrated on
# your photos replaces like with like.
TARGET_PRECISION = 0.97
_SCORE_STEP = 0.005  # calibration grid for model scores
_GIVE_UP = 0.1  # calibration stops where precision is this far below the target


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
    model_id: str = ""
    n_originals: int = 0
    families: Families | None = None
    originals_distinct: bool = False
    intervals: dict[str, Interval] = field(default_factory=dict)
    bootstrap: dict = field(default_factory=dict)  # rounds, seed, level
    target_precision: float = TARGET_PRECISION
    linkage: str = "centre"
    mistakes: Mistakes = field(default_factory=Mistakes)
    skipped: list[dict] = field(default_factory=list)  # unreadable originals: path, reason
    warnings: list[str] = field(default_factory=list)
    # what the look-alike sets changed: dedupe pairs and search top hits counted neither way /
    # as found, and simsearch's figures had the originals been counted as distinct
    set_aside: dict = field(default_factory=dict)
    as_distinct: dict | None = None
    # simsearch's raw answers, for an independent scoring of the same run: each copy's results
    # and the dedupe groups at the threshold scored
    predictions: dict = field(default_factory=dict)
    # the picture check's work over the whole run (`simsearch.verify`), None when run without it
    check: dict | None = None
    # with the check, the lowest threshold calibration tried (the model's own), else None
    calibration_floor: float | None = None
    # what the default plan (`simsearch dedupe --plan`, default keep rules) would do with the
    # groups at the threshold scored (see `_plan_figures`)
    plan: dict | None = None
    # which file of the model computed the vectors, and at what precision (a CPU without VNNI
    # runs another int8 file than one with it: simsearch.models), and on what device
    runtime: dict | None = None

    def to_dict(self) -> dict:
        return {**self.metrics.to_dict(), "check": self.check, "plan": self.plan,
                "calibration_floor": self.calibration_floor,
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
                "bootstrap": self.bootstrap,
                "baselines": {k: m.to_dict() for k, m in self.baselines.items()},
                "n_queries": self.n_queries, "n_references": self.n_references,
                "n_originals": self.n_originals,
                "n_distractors": self.n_references - self.n_originals,
                "model": self.model, "model_id": self.model_id, "runtime": self.runtime,
                "linkage": self.linkage,
                "target_precision": self.target_precision,
                "originals_distinct": self.originals_distinct,
                "families": None if self.families is None else self.families.to_dict(),
                "mistakes": self.mistakes.to_dict(), "skipped": self.skipped,
                "warnings": self.warnings, "set_aside": self.set_aside,
                "as_distinct": self.as_distinct, "predictions": self.predictions,
                "background": self.background,
                "variants": self.variants, "sweep": [s.to_dict() for s in self.sweep]}

    def figures(self) -> dict:
        """`to_dict` without the per-pair predictions and mistakes: what a benchmark or a
        model's calibration file keeps (megabytes less on a few thousand copies)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("predictions", "mistakes")}

    def threshold_details(self) -> dict:
        """What `Index.save_threshold` keeps beside a calibrated threshold."""
        cal = self.metrics.calibrated
        return {"model_id": self.model_id, "model": self.model,
                "precision_target": self.target_precision,
                "precision": None if cal is None else cal.precision,
                "recall": None if cal is None else cal.recall,
                "n_originals": self.n_originals, "linkage": self.linkage,
                "originals_distinct": self.originals_distinct, "checked": self.check is not None,
                "runtime": self.runtime}  # the file, precision and device that made the vectors


def run_eval(originals: str | os.PathLike, distractors: str | os.PathLike | None = None,
             model: str | None = None, threshold: float | None = None, seed: int = 0,
             per_image: int | None = None, k: int = 10, baselines: Sequence[str] = ("phash", "dhash"),
             work_dir: str | os.PathLike | None = None,
             target_precision: float = TARGET_PRECISION, linkage: str = "centre",
             sweep: Sequence[float] = (), background: Background | None | str = "model",
             variants: Sequence[Background] = (), originals_distinct: bool = False,
             rounds: int = 1000, edits: Sequence[str] = EDIT_NAMES, check: bool = True,
             progress: Callable[[str, int, int], None] | None = None,
             precision: str | None = None) -> EvalReport:
    """Score `model` (default: the shipped one) on edited copies of the images in `originals`,
    run at `precision` on a CPU (auto, fp32, int8; default `$SIMSEARCH_PRECISION`, else auto).

    Scores are adjusted against `background` ("model": the model's own background set, if it
    has one; None: plain cosine; see `simsearch.scoring`). Each of `variants` (backgrounds with
    other parameters) is also scored for uAP on the same vectors. `check`: dedupe with the
    picture check, as `simsearch dedupe` does by default (one check for the run: each pair's
    pictures are looked at once, whatever the threshold). `progress(stage, done, total)` names
    each stage."""
    with tempfile.TemporaryDirectory(prefix="simsearch-eval-", dir=work_dir) as tmp:
        tmp = Path(tmp)
        index = open_index(tmp / "index", model=model, create=True, precision=precision)
        if background == "model":
            background = index.background
        for bg in [background, *variants]:
            if bg is not None and bg.model_id != index.model.model_id:
                raise SimsearchError(f"the background set belongs to model {bg.model_id[:12]}, "
                                     f"not to {index.model.name} ({index.model.model_id[:12]})")
        ingested = index.add_paths([originals], progress=_stage(progress, "indexing originals"))
        paths, matrix = index.vectors()
        vectors = dict(zip(paths, matrix))
        readable = [f.path for f in walk_images([originals]) if f.path in vectors]
        if len(readable) < 2:
            raise SimsearchError(f"{originals}: fewer than two readable images to evaluate on")
        families = _look_alikes(index, readable, vectors, background, progress, threshold)
        bench = make_benchmark([Path(p) for p in readable], tmp / "bench", seed=seed,
                               per_image=per_image, edits=edits,
                               progress=_stage(progress, "making copies"))
        n_originals = len(bench.originals)
        refs = [str(p) for p in bench.originals]
        if distractors is not None:
            refs += [f.path for f in walk_images([distractors])]
        queries = [str(item.query) for item in bench.items]
        ref_index = {p: i for i, p in enumerate(refs)}
        true_ref = np.array([ref_index[str(item.original)] for item in bench.items], np.int64)
        set_of = np.arange(len(refs))
        if not originals_distinct:
            fam_set = families.set_of()
            fam_index = {p: i for i, p in enumerate(families.paths)}
            for i, p in enumerate(refs[:n_originals]):
                set_of[i] = ref_index[families.paths[fam_set[fam_index[p]]]]
        truth = Truth(refs, queries, true_ref, [item.edit for item in bench.items], set_of,
                       n_originals)

        roots = [originals, tmp / "bench" / "queries"] + ([distractors] if distractors else [])
        index.add_paths(roots, progress=_stage(progress, "indexing copies"))
        paths, matrix = index.vectors()
        vectors = dict(zip(paths, matrix))
        dim = index.dim
        store = VectorIndex(dim)
        ref_ids = np.array([i for i, p in enumerate(refs) if p in vectors], dtype=np.int64)
        ref_vectors = np.stack([vectors[refs[i]] for i in ref_ids])
        store.add(ref_ids, ref_vectors)
        q_vectors = np.stack([vectors.get(q, np.zeros(dim, np.float32)) for q in queries])
        offsets = None if background is None else Offsets(ref_ids, background.offsets(ref_vectors))
        scores, ids = adjusted_search(store, q_vectors, k, background, offsets)
        neighbours = Neighbors(ids, scores)
        if check:  # as `simsearch query` ranks by default
            neighbours = _copies_moved_first(neighbours, queries, refs,
                                             _stage(progress, "checking search"))
        threshold = index.default_threshold(check) if threshold is None else threshold
        shared = index.picture_check() if check else False

        def model_groups(t: float, made: list | None = None) -> list[list[str]]:
            found = index.duplicates(t, linkage, background, check=shared).groups
            if made is not None:
                made.extend(found)
            return _disjoint([g.files for g in found])

        scored: list = []  # the groups at the threshold scored, members and evidence
        groups = model_groups(threshold, scored)
        plan = _plan_figures(scored, truth)
        retrieval, grouping = score_search(neighbours, truth), score_groups(groups, truth)
        floor = _check_floor(index) if check else None
        calibrated, why = _calibrate(lambda t: score_groups(model_groups(t), truth),
                                     _score_grid() if floor is None else
                                     [t for t in _score_grid() if t > floor] + [floor],
                                     target_precision, "score", _stage(progress, "calibrating"))
        metrics = metrics_of(retrieval, grouping, truth, threshold, "score", calibrated, why)
        swept = [dedupe_score(score_groups(model_groups(t), truth), t, "score") for t in sweep]
        pair_score = _pair_scorer(vectors, background)
        mistakes = _mistakes(neighbours, groups, truth, pair_score)

        scored = {kind: _hash_metrics(kind, truth, k, target_precision, progress)
                  for kind in baselines}
        tried = []
        for variant in variants:
            v_scores, v_ids = adjusted_search(store, q_vectors, k, variant,
                                              Offsets(ref_ids, variant.offsets(ref_vectors)))
            tried.append({"beta": variant.beta, "delta": variant.delta, "uap": evidence.uap(
                score_search(Neighbors(v_ids, v_scores), truth), np.ones(len(refs), np.int64))})
        used = None if background is None else {
            "beta": background.beta, "delta": background.delta, "centre": background.centre,
            "size": len(background.vectors)}
        spread = evidence.intervals(retrieval, grouping, n_originals, len(refs), rounds, seed,
                                    progress=_stage(progress, "bootstrap"))
        report = EvalReport(metrics, scored, len(queries), len(refs), index.model.name, swept,
                            used, tried, index.model.model_id, n_originals, families,
                            originals_distinct, spread,
                            {"rounds": rounds, "seed": seed, "level": 0.95}, target_precision,
                            linkage, mistakes,
                            [{"path": s.path, "reason": s.reason} for s in ingested.skipped])
        report.check = shared.stats.to_dict() if shared else None
        ran = index.embedder
        report.runtime = {"file": ran.model.onnx_path.name, "precision": ran.model.precision,
                          "device": ran.device}
        report.calibration_floor = floor
        report.plan = plan
        report.warnings = _warnings(report)
        report.predictions = _predictions(neighbours, groups, truth)
        top = neighbours.indices[:, 0]
        report.set_aside = {"dedupe_pairs": grouping.set_aside,
                            "search_top_hits": int((retrieval.hit & (top != true_ref)).sum())}
        if families.sets and not originals_distinct:
            plain = dataclasses.replace(truth, set_of=np.arange(len(refs)))
            ones = np.ones(len(refs), np.int64)
            r, g = score_search(neighbours, plain), score_groups(groups, plain)
            report.as_distinct = {name: f(r, g, ones) for name, f in evidence.FIGURES.items()}
        return report


def _plan_figures(groups, truth: Truth) -> dict:
    """What the default plan would do with dedupe's `groups`: the files it acts on, split into
    copies of a file it keeps (the same original), versions of one (another original the
    evaluation counts as one picture with it: `simsearch.families`) and the rest (each a picture
    lost if the plan were applied); and the files it keeps because the picture check could not
    confirm them, with the copies among them (left for review). And, of the groups where it acts
    on files and that hold an original with a copy of it, those where it keeps a copy and acts
    on the original (the keep rules cannot tell an original from a copy: README, Cleaning up),
    with the kept copies' edits."""
    from simsearch.plan import UNCONFIRMED, make_plan
    from simsearch.keeprules import parse_rules
    made = make_plan(groups, parse_rules(()))
    unit, sets = truth.unit_of, truth.set_of
    acted = copies = versions = held = held_copies = with_original = over_original = 0
    kept_edits: dict[str, int] = {}
    for g in made.groups:
        kept = [unit[k] for k in g.keep if k in unit]
        if g.decision == "act":
            paths = [f.path for f in g.files]
            originals = [p for p in paths if p in unit and truth.refs[unit[p]] == p
                         and unit[p] < truth.n_originals]
            paired = [o for o in originals
                      if any(p != o and unit.get(p) == unit[o] for p in paths)]
            with_original += bool(paired)  # a group counts once, however many originals
            over = [(o, k) for o in paired if o in g.act_on
                    for k in g.keep if k != o and unit.get(k) == unit[o]]
            if over:
                over_original += 1
                edit = truth.describe(over[0][1]).edit or "?"
                kept_edits[edit] = kept_edits.get(edit, 0) + 1
        for f in g.act_on if g.decision == "act" else ():
            acted += 1
            copies += f in unit and unit[f] in kept
            versions += f in unit and unit[f] not in kept and int(sets[unit[f]]) in {
                int(sets[k]) for k in kept}
        for f in g.files:
            if f.reason.startswith(UNCONFIRMED) and f.path in unit:
                held += 1
                held_copies += unit[f.path] in [unit[k] for k in g.keep
                                                if k in unit and k != f.path]
    return {"acted_on": acted, "copies_acted_on": copies, "versions_acted_on": versions,
            "not_copies_acted_on": acted - copies - versions, "kept_unconfirmed": held,
            "copies_kept_unconfirmed": held_copies, "groups_with_original": with_original,
            "copy_kept_over_original": over_original,
            "copy_kept_by_edit": dict(sorted(kept_edits.items(), key=lambda kv: -kv[1]))}


def _look_alikes(index, paths: list[str], vectors: dict, background: Background | None,
                 progress, threshold: float | None = None) -> Families:
    """Sets of originals alike by content hash, by the model's score at its dedupe threshold
    (the scoring dedupe uses) and by pHash, when imagehash is installed."""
    catalog = index.catalog()
    try:
        sha = {r.path: r.sha256 for r in catalog.rows()}
    finally:
        catalog.close()
    links = link_hashes([sha[p] for p in paths])
    views, skipped = ["same content", "model score"], {}
    try:
        hashes = image_hashes("phash", paths, progress=_stage(progress, "comparing originals"))
        links += link_hamming(hashes, HASH_DISTANCE)
        views.append("phash")
    except DecodeError as e:
        skipped["phash"] = f"{e.path}: {e.reason}"
    except SimsearchError as e:  # imagehash not installed
        skipped["phash"] = str(e)
    matrix = np.stack([vectors[p] for p in paths])
    if threshold is None:  # a judgement on scores alone: the threshold without the check
        threshold = index.default_threshold(checked=False)
    bar = round((threshold + 1) / 2, 4)  # see simsearch.families: alone, a model link needs this
    offsets = (background.offsets(matrix) if background is not None
               else np.zeros(len(paths), np.float32))
    every = max(1, len(paths) - 1)
    found = near_pairs(matrix, offsets, threshold, JoinSettings(k=every, grow=max(256, every)))
    model = [Link(int(a), int(b), "model score", round(float(s), 4))
             for a, b, s in zip(found.left, found.right, found.scores)]
    links += [ln for ln in model if ln.value >= bar]
    families = join(paths, links, views, skipped, listed=[ln for ln in model if ln.value < bar])
    return dataclasses.replace(families, model_bar=bar)


def _copies_moved_first(neighbours: Neighbors, queries: list[str], refs: list[str],
                        progress=None) -> Neighbors:
    """Each query's ranked references with the one the picture check finds a copy of the
    query moved first (`simsearch.verify.copy_first`), its score kept, as `Index.search` does."""
    ids, scores = neighbours.indices.copy(), neighbours.scores.copy()
    for q in range(len(queries)):
        row = [int(i) for i in ids[q] if i >= 0]
        moved = copy_first(queries[q], [refs[i] for i in row], scores[q, :len(row)])
        if moved is not None:
            j = moved[0]
            ids[q, :j + 1] = np.roll(ids[q, :j + 1], 1)
            scores[q, :j + 1] = np.roll(scores[q, :j + 1], 1)
        if progress and (q % 256 == 0 or q == len(queries) - 1):
            progress(q + 1, len(queries))
    return Neighbors(ids, scores)


def _disjoint(groups: list[list[str]]) -> list[list[str]]:
    """Groups with every exact-duplicate group dropped that lies inside a near group (it would
    count its pairs twice)."""
    near_of: dict[str, int] = {}
    for gi, files in enumerate(groups):
        if len(set(files)) == len(files):
            for f in files:
                near_of.setdefault(f, gi)
    out = []
    for gi, files in enumerate(groups):
        homes = {near_of.get(f) for f in files}
        if len(homes) == 1 and None not in homes and homes != {gi}:
            continue
        out.append(files)
    return out


def _check_floor(index) -> float | None:
    """The lowest threshold eval calibrates at with the picture check: the model's own threshold
    with the check (the default model's was itself calibrated from a floor, for this reason):
    with the check precision holds ever lower, and each step down reads more pairs' files.
    None when the model carries no threshold."""
    try:
        return index.default_threshold(checked=True)
    except SimsearchError:
        return None


def _score_grid() -> list[float]:
    """Model-score thresholds from strict to lenient."""
    n = int(round(1 / _SCORE_STEP))
    return [round(1 - i * _SCORE_STEP, 4) for i in range(n + 1)]


def _calibrate(grouping_at: Callable[[float], Grouping], grid: Sequence[float], target: float,
               unit: str, progress) -> tuple[Calibration | None, str | None]:
    """The most lenient threshold on `grid` (strict to lenient) at which dedupe precision is at
    least `target` (as the shipped threshold was chosen), or None and why not. The scan stops
    once recall is 1 (more lenient thresholds only add false pairs) or precision has fallen
    more than `_GIVE_UP` below the target (it does not come back as the threshold drops)."""
    best = top = None
    for i, t in enumerate(grid):
        score = dedupe_score(grouping_at(t), t, unit)
        if progress is not None:
            progress(i + 1, len(grid))
        if top is None or score.precision > top.precision:
            top = score
        if score.precision >= target:
            best = score
            if score.recall >= 1.0:
                break
        elif score.precision < target - _GIVE_UP:
            break
    if progress is not None:
        progress(len(grid), len(grid))
    if best is None:
        return None, (f"no threshold reaches dedupe precision {target:g}; the best is "
                      f"{top.precision:.3f} at {_threshold_words(top.threshold, unit)}")
    return Calibration(best.threshold, best.precision, best.recall, unit), None


def _threshold_words(value: float, unit: str) -> str:
    return f"Hamming <= {int(value)}" if unit == "hamming" else f"score >= {value:.4f}"


def _hash_metrics(kind: str, truth: Truth, k: int, target: float, progress) -> Metrics:
    everything = truth.refs + truth.queries
    hashes = image_hashes(kind, everything, progress=_stage(progress, f"scoring {kind}"))
    refs, queries = hashes[:len(truth.refs)], hashes[len(truth.refs):]
    retrieval = score_search(hash_neighbors(queries, refs, k), truth)
    pairs = hash_neighbors(hashes, hashes, min(k + 1, len(everything)))

    def grouping_at(distance: int) -> Grouping:
        return score_groups(_hash_groups(pairs, everything, hamming_to_score(distance)), truth)

    calibrated, why = _calibrate(grouping_at, list(range(33)), target, "hamming", None)
    return metrics_of(retrieval, grouping_at(HASH_DISTANCE), truth, HASH_DISTANCE, "hamming",
                    calibrated, why)


def _hash_groups(pairs: Neighbors, paths: list[str], threshold: float) -> list[list[str]]:
    rows = np.repeat(np.arange(len(paths)), pairs.indices.shape[1])
    cols, sims = pairs.indices.ravel(), pairs.scores.ravel()
    keep = (cols > rows) & (sims >= threshold - 1e-6)
    clusters = complete_linkage(rows[keep], cols[keep], sims[keep])
    return [[paths[i] for i in members] for members, _ in clusters]


def _pair_scorer(vectors: dict, background: Background | None) -> Callable[[str, str], float]:
    """The adjusted score of two indexed files, as dedupe computes it."""
    def score(a: str, b: str) -> float:
        if a not in vectors or b not in vectors:  # an unreadable file: no score
            return 0.0
        va, vb = vectors[a], vectors[b]
        s = float(va @ vb)
        if background is not None:
            s -= float(background.offsets(np.stack([va, vb])).sum())
        return round(min(s, 1.0), 6)
    return score


def _mistakes(neighbours: Neighbors, groups: list[list[str]], truth: Truth,
              score: Callable[[str, str], float]) -> Mistakes:
    describe = truth.describe
    wrong = false_pairs(groups, truth.unit_of, truth.set_of, score, describe)
    missed = []
    for i, q in enumerate(truth.queries):
        top = int(neighbours.indices[i, 0]) if neighbours.indices.shape[1] else -1
        if top >= 0 and truth.set_of[top] == truth.set_of[truth.true_ref[i]]:
            continue
        own = truth.refs[truth.true_ref[i]]
        found = None if top < 0 else describe(truth.refs[top])
        missed.append(MissedCopy(describe(q), "search", score(q, own), found,
                                 None if top < 0 else round(float(neighbours.scores[i, 0]), 6)))
    missed.sort(key=lambda m: m.score)
    missed += missed_by_dedupe(groups, truth.true_pairs(), score, describe)
    return Mistakes(wrong, missed)


def _predictions(neighbours: Neighbors, groups: list[list[str]], truth: Truth) -> dict:
    search = [{"copy": truth.describe(q).to_dict(),
               "results": [{"path": truth.refs[int(r)], "score": round(float(sc), 6)}
                           for r, sc in zip(row, scores) if r >= 0]}
              for q, row, scores in zip(truth.queries, neighbours.indices, neighbours.scores)]
    return {"search": search,
            "groups": [[truth.describe(f).to_dict() for f in files] for files in groups]}


def _warnings(report: EvalReport) -> list[str]:
    out = []
    if report.n_originals < FEW_ORIGINALS:
        out.append(f"only {report.n_originals} originals: figures from so few pictures can move "
                   f"a lot (see the 95% intervals); {FEW_ORIGINALS} or more give steadier ones")
    if report.families is not None:
        for view, why in report.families.skipped_views.items():
            out.append(f"look-alike originals: the {view} view was skipped ({why})")
    return out


def _stage(progress, name):
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)
