"""Trial: the picture check's settings (simsearch.verify), chosen on the validation images (never
the evaluation set) with the shipped network.

    python recipes/default_model/verify_trial.py [--model default] \
        [--json recipes/default_model/trials/picture-check.json]

The validation originals and their seeded edited copies (4 per image, as calibrate.py) are
embedded; every pair scoring >= 0.76 (the lowest score measured) is measured once with the
product's own functions: each picture's SIFT keypoints and the pair's RANSAC inliers, straight
and mirrored. Each setting of the grid (`below`: pairs scored at or above it are not checked;
`min_inliers`; `min_keypoints`; `alone`: whether a pair the check cannot judge must reach the
threshold calibrated without the check, as `simsearch dedupe` does; and, from session 19, the
plain judge's two cuts: a pair with a picture under 40 keypoints is the same picture when one
picture placed in the other lines up at `plain_same` or more, different below `plain_apart`,
measured once with `simsearch.lineup.aligned`) then decides every pair
from those measurements, and dedupe runs as the product runs it (centre linkage, the shipped
background, the knee in use) with the pairs it rejects never grouped. Reported per setting:
recall at precision 0.97 and 0.95 and the calibration rule's threshold (the lowest step from
calibrate.CHECKED_FLOOR up reaching precision 0.97), variants merged as in calibrate.py
(trials/val-variants.json), beside the same without the check; from session 20, what each
setting leaves among lookalikes.py's glyphs (different symbols in one font and style, deduped at
the setting's own threshold; their pairs measured as above): false groups, false pairs, and
the files those groups would act on (all members but the one kept); and the setting
`choose` picks (the rule is stated there). From session 22, for that setting, the act cuts
(ACT_GRID: the agreeing matches and the lining-up a pair found the same picture must also reach
before a plan acts on its file) and the one `choose_act` picks; `--measures FILE` keeps the
pairs' measurements, so a second run skips reading the pictures. From session 23, a third act
cut (DISAGREE_GRID: how much the pictures of a pair may differ somewhere once laid one on the
other, `simsearch.verify.disagreement`), tried at every score.

With --search, the check's other use instead: each validation copy searched among the 800
originals (adjusted scores, the knee in use), and its best candidates re-ranked as `simsearch
query` does (`simsearch.verify.copy_first`) under a grid of its settings (candidates looked at,
how close behind the first they must score, the agreeing matches a candidate moved first needs,
and how many times the first's); reported: Recall@1 misses, and the copies each setting finds
first that scores alone missed (fixed) and misses that scores alone found (broken).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from calibrate import (CHECKED_FLOOR, SWEEP, TARGET_PRECISION, embed_validation,
                       family_dedupe_score, load_variants, merge_variants, recall_at_precision,
                       trial_parser)
from lookalikes import find_fonts, write_sets
from simsearch.dedupe import find_groups
from simsearch.errors import DecodeError
from simsearch.scoring import KNEE, adjust
from simsearch.verify import (RerankSettings, VerifySettings, agreeing, agreement, disagreement,
                              inliers, mirrored, picture_features)
from simsearch.lineup import aligned

# (below, min_inliers, min_keypoints, whether pairs the check cannot judge need --no-check's
# threshold, plain_same, plain_apart, plain_below): session 17's grid (the first seven, alone
# off), session 18's (no plain judge), session 19's: session 18's choice with pairs too plain
# for keypoints judged by placing one picture in the other (simsearch.lineup.aligned), and
# session 21's: plain pairs lined up at every score (plain_below 1.01), where the others stop
# looking at `below`
GRID = (((0.95, 8, 50, False, None, None, None), (0.95, 6, 30, False, None, None, None),
         (0.95, 6, 50, False, None, None, None), (0.95, 8, 30, False, None, None, None),
         (0.95, 10, 50, False, None, None, None), (0.95, 12, 50, False, None, None, None),
         (0.97, 8, 50, False, None, None, None), (1.01, 20, 40, True, None, None, None))
        + tuple((0.95, i, k, alone, None, None, None) for alone in (False, True)
                for i in (8, 12, 15, 20, 25) for k in (20, 30, 40, 50))
        + tuple((0.95, 20, 40, True, same, apart, below) for below in (None, 1.01)
                for same in (None, 0.9, 0.95) for apart in (None, 0.5, 0.6, 0.7, 0.8)
                if (same, apart) != (None, None)))
LOWEST = 0.76  # pairs scoring below this are not measured
PLAIN_KEYPOINTS = VerifySettings().min_keypoints  # pairs with a picture under this: `aligned`


def measure_pairs(paths: list[str], a: np.ndarray, b: np.ndarray) -> dict:
    """Keypoints of each picture and the best inliers (straight or mirrored) of each pair."""
    s = VerifySettings()
    held, counts = {}, {}
    for i in sorted(set(a.tolist()) | set(b.tolist())):
        try:
            held[i] = picture_features(paths[i], s)
            counts[i] = held[i].count
        except DecodeError as e:
            sys.exit(str(e))
    # each pair the way round the product judges it (matching is not symmetric): path first
    ways = [(x, y) if paths[x] <= paths[y] else (y, x) for x, y in zip(a.tolist(), b.tolist())]
    # straight and through the mirror, each (the product tries the mirror only when the straight
    # count falls short of what it needs: see `act_inliers_found`)
    straight = np.array([inliers(held[x], held[y], s) for x, y in ways])
    flipped = np.array([inliers(mirrored(held[x], s), held[y], s) for x, y in ways])
    best = np.maximum(straight, flipped)
    plain = [i for i, (x, y) in enumerate(ways) if min(counts[x], counts[y]) < PLAIN_KEYPOINTS]
    lined_up = np.full(len(a), np.nan)  # NaN: not measured, or nothing could be compared
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # OpenCV lets go of the GIL
        for i, value in zip(plain, pool.map(lambda i: aligned(held[ways[i][0]],
                                                              held[ways[i][1]]), plain)):
            lined_up[i] = np.nan if value is None else value
    # session 23: where the pictures of a pair found the same picture differ most, laid one on
    # the other by the transform the product finds (the mirror tried only while the straight
    # count falls short of grouping), for every pair with keypoints, at any score
    def differ(i):
        x, y = ways[i]
        found, transform, used = agreement(held[x], held[y], s, enough=s.min_inliers)
        if found < s.min_inliers or transform is None:
            return np.nan
        value = disagreement(used, held[y], transform)
        return np.nan if value is None else value
    keyed = [i for i, (x, y) in enumerate(ways) if min(counts[x], counts[y]) >= PLAIN_KEYPOINTS]
    differs = np.full(len(a), np.nan)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for i, value in zip(keyed, pool.map(differ, keyed)):
            differs[i] = value
    return {"keypoints": counts, "inliers": best, "straight": straight, "aligned": lined_up,
            "disagree": differs}


def near_pairs(v) -> tuple[np.ndarray, ...]:
    """The embedded validation pictures' vectors and offsets (in `v.ids` order) and every pair
    scoring LOWEST or more (adjusted, the knee in use): a, b, scores."""
    V = np.stack([v.vectors[p] for p in v.ids])
    O = np.array([v.offsets[p] for p in v.ids], np.float32)
    S = adjust(V @ V.T, O[:, None] + O[None, :], KNEE)
    a, b = np.triu_indices(len(v.ids), 1)
    near = S[a, b] >= LOWEST
    return V, O, a[near], b[near], S[a, b][near]


def smaller_count(m: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each pair's fewer keypoints of its two pictures."""
    return np.array([min(m["keypoints"][x], m["keypoints"][y]) for x, y in zip(a, b)], int)


def verdicts(setting: tuple, scores: np.ndarray, kp: np.ndarray, m: dict,
             alone_at: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs a GRID setting never groups, decided from measure_pairs' measurements as
    simsearch.picturecheck.PictureCheck decides them (kp: each pair's smaller_count); the pairs it
    looks at and finds the same picture (`checked` evidence); and the ones it looks at and
    cannot tell (`unchecked`: a plan keeps them unless told). A pair in none of the three
    stands on its score."""
    below, min_inliers, min_keypoints, alone, same, apart, plain_below = setting
    judged = kp >= min_keypoints
    part = (scores < below) & judged & (m["inliers"] < min_inliers)
    same_picture = (scores < below) & judged & (m["inliers"] >= min_inliers)
    # NaN compares False: stays unjudged
    too_plain = ~judged & (scores < max(below, plain_below or below))
    lined_up = too_plain & (m["aligned"] >= same if same is not None else False)
    same_picture |= lined_up
    if apart is not None:
        part |= too_plain & (m["aligned"] < apart)
    if alone:
        part |= ~judged & (scores < alone_at) & ~lined_up
    return part, same_picture, too_plain & ~part & ~same_picture


# session 22: the cuts a pair the check finds the same picture must also pass before a plan acts
# on it (act_inliers agreeing matches for pictures with keypoints, act_aligned for plain ones;
# None: the grouping cut); a pair short of them stays grouped, "not confirmed"
# session 22, second trial: the product tries the mirror only while the straight match falls
# short of the grouping cut (the act cut then stands on the straight count: the mirror was most
# of what the act cuts cost); set False to count the better of both, as the first trial did
MIRROR_ONCE_GROUPED = True
ACT_GRID = tuple((i, c) for i in (20, 25, 30, 40, 60)
                 for c in (None, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99))
# session 23: a third cut, how much the two pictures of a pair found the same picture may differ
# somewhere (`simsearch.verify.disagreement`; None: not looked at), for pictures with keypoints
# at any score: a pair over it is not acted on, even at or above `below`, where pairs otherwise
# stand on their score (two clock faces showing other times score 0.99 and keep 91 matches).
# Tried with session 22's lined-up cut (0.97), beside ACT_GRID's rows without it. The first
# run's grid began at 0.4, and its choice lay there (20 matches, 0.4); a review then found the
# measure depended on which picture went first and compared too coarsely (fixed); the second
# run, after the fix, extends the grid below 0.4 (set before it ran; the rule unchanged)
DISAGREE_GRID = tuple((i, 0.97, d) for i in (20, 25, 30, 40, 60)
                      for d in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2))


def unsure(setting: tuple, act: tuple, scores: np.ndarray, kp: np.ndarray, m: dict,
           alone_at: float | None) -> np.ndarray:
    """The pairs a plan keeps under `setting` with the act cuts `act` (see ACT_GRID): those the
    check cannot tell, and those it finds the same picture short of the act cuts."""
    _, same_picture, doubt = verdicts(setting, scores, kp, m, alone_at)
    act_inliers, act_aligned = act[:2]
    act_disagree = act[2] if len(act) > 2 else None
    judged = kp >= setting[2]
    weak = judged & (act_inliers_found(setting, act, m) < act_inliers)
    if act_aligned is not None:
        weak |= ~judged & ~(m["aligned"] >= act_aligned)  # NaN: not lined up, weak
    if act_disagree is None:
        return doubt | (same_picture & weak)
    # below `below`: a pair found the same picture must also differ nowhere by more than the
    # cut (NaN, no overlap to compare: not confirmed); at or above it, a pair with keypoints
    # that keeps matches enough to be laid one on the other is not acted on when it differs
    weak |= judged & ~(m["disagree"] <= act_disagree)
    high = (scores >= setting[0]) & judged & (m["disagree"] > act_disagree)
    return doubt | (same_picture & weak) | high


def act_inliers_found(setting: tuple, act: tuple, m: dict) -> np.ndarray:
    """The agreeing matches the act cut is held against, counted as the product counts them:
    with MIRROR_ONCE_GROUPED, the straight count once it reaches the grouping cut (the mirror
    then is not tried), else the better of straight and mirrored."""
    if not MIRROR_ONCE_GROUPED or "straight" not in m:
        return m["inliers"]
    return np.where(m["straight"] >= setting[1], m["straight"], m["inliers"])


def act_trial(setting: tuple, alone_at: float | None, threshold: float, sets: list[dict],
              val: dict) -> dict:
    """Files the default plan acts on under each ACT_GRID cut, with the grouping `setting` at its
    `threshold`: of the glyphs' false groups and the validation groups' members of another
    family (not copies: a file lost), and the validation copies (acted on as they should be)."""
    def groups_of(g: dict, part: np.ndarray) -> tuple[list, dict]:
        key = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(g["a"], g["b"]))}

        def check(x, y, s):
            return ~part[[key[(min(p, q), max(p, q))] for p, q in zip(x.tolist(), y.tolist())]]
        ids = np.arange(len(g["vectors"]), dtype=np.int64)
        found = find_groups(ids, g["vectors"], g["offsets"], ids, threshold, "centre",
                            knee=KNEE, check=check)
        return [gr for gr in found if len(gr.ids) > 1], key

    held = []
    for g in sets + [val]:
        part, _, _ = verdicts(setting, g["scores"], g["kp"], g["m"], alone_at)
        held.append((g, *groups_of(g, part)))
    rows = []
    for act in ACT_GRID + (DISAGREE_GRID if "disagree" in val["m"] else ()):
        glyph_lost = val_lost = right = 0
        lost_pairs = []
        for g, found, key in held:
            keep = unsure(setting, act, g["scores"], g["kp"], g["m"], alone_at)
            for gr in found:
                for j in gr.ids[1:]:
                    if keep[key[(min(gr.centre, j), max(gr.centre, j))]]:
                        continue
                    if "family" not in g:
                        glyph_lost += 1
                    elif g["family"][gr.centre] == g["family"][j]:
                        right += 1
                    else:
                        val_lost += 1
                        i = key[(min(gr.centre, j), max(gr.centre, j))]
                        lost_pairs.append({"centre": g["paths"][gr.centre], "file": g["paths"][j],
                                           "score": round(float(g["scores"][i]), 4),
                                           "keypoints": int(g["kp"][i]),
                                           "inliers": int(g["m"]["inliers"][i]),
                                           "aligned": None if np.isnan(g["m"]["aligned"][i])
                                           else round(float(g["m"]["aligned"][i]), 4)})
        rows.append({"act_inliers": act[0], "act_aligned": act[1],
                     "act_disagree": act[2] if len(act) > 2 else None,
                     "files_lost": glyph_lost + val_lost, "glyph_files_lost": glyph_lost,
                     "validation_files_lost": val_lost, "copies_acted_on": right,
                     "validation_lost": lost_pairs})
    chosen = choose_act(rows)
    for r in rows:  # the pairs behind the figures, for the grouping cuts and the choice only
        if r is not chosen and (r["act_inliers"], r["act_aligned"], r["act_disagree"]) not in (
                (setting[1], None, None), (60, 0.97, None)):  # the grouping cuts, session 22's
            del r["validation_lost"]
    return {"rows": rows, "chosen": {k: v for k, v in chosen.items() if k != "validation_lost"}}


def choose_act(rows: list[dict]) -> dict:
    """The act cuts are chosen by (declared before session 22's run): the fewest files the
    default plan acts on that are not copies (each one a picture lost), then the most copies it
    acts on, then the lowest cuts. Safety first: a copy left unconfirmed is kept and shown for
    review ("It is a copy: act on it too"); a different picture acted on is gone. Session 23
    (declared before its run): the same rule over ACT_GRID and DISAGREE_GRID together; where
    files lost and copies acted on tie, a row without the disagreement cut wins (nothing new
    unless it earns its place), then the lower cuts, then the looser disagreement cut."""
    return min(rows, key=lambda r: (r["files_lost"], -r["copies_acted_on"],
                                    r.get("act_disagree") is not None, r["act_inliers"],
                                    r["act_aligned"] or 0, -(r.get("act_disagree") or 0)))


def measure_glyphs(model: str, tmp: Path) -> list[dict]:
    """lookalikes.py's sets of different glyphs (one font, one style each; every pair in a set
    is two different pictures), embedded by `model`, each with its pairs scoring >= LOWEST
    measured by measure_pairs."""
    from simsearch.index import open_index
    folders = write_sets(tmp / "glyphs", find_fonts())
    index = open_index(tmp / "glyph-index", model=model, create=True)
    index.add_paths(folders)
    paths, M = index.vectors()
    offsets = np.asarray(index.background.offsets(M), np.float32)
    sets = []
    for folder in folders:
        rows = [i for i, p in enumerate(paths) if Path(p).parent.name == folder.name]
        V, O = M[rows], offsets[rows]
        S = adjust(V @ V.T, O[:, None] + O[None, :], KNEE)
        a, b = np.triu_indices(len(rows), 1)
        near = S[a, b] >= LOWEST
        a, b = a[near], b[near]
        m = measure_pairs([paths[i] for i in rows], a, b)
        sets.append({"vectors": V, "offsets": O, "a": a, "b": b, "scores": S[a, b], "m": m,
                     "kp": smaller_count(m, a, b)})
    return sets


def glyph_groups(sets: list[dict], setting: tuple, alone_at: float | None,
                 threshold: float | None) -> dict:
    """The false groups and pairs a setting leaves among the glyph sets when each is deduped at
    `threshold` (the setting's own calibrated one) as the product dedupes (centre linkage)."""
    if threshold is None:
        return {"glyph_false_groups": None, "glyph_false_pairs": None, "glyph_false_members": None,
                "glyph_planned": None}
    groups = pairs = members = planned = 0
    for g in sets:
        part, same, doubt = verdicts(setting, g["scores"], g["kp"], g["m"], alone_at)
        key = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(g["a"], g["b"]))}

        def check(x, y, s, part=part, key=key):
            return ~part[[key[(min(p, q), max(p, q))] for p, q in zip(x.tolist(), y.tolist())]]
        ids = np.arange(len(g["vectors"]), dtype=np.int64)
        found = [gr for gr in find_groups(ids, g["vectors"], g["offsets"], ids, threshold,
                                          "centre", knee=KNEE, check=check) if len(gr.ids) > 1]
        groups += len(found)
        pairs += sum(len(gr.ids) * (len(gr.ids) - 1) // 2 for gr in found)
        members += sum(len(gr.ids) - 1 for gr in found)
        # the default plan keeps the members whose pair with the centre the check looked at
        # and could not tell (simsearch.plan.make_plan), and one of the rest
        planned += sum(sum(not doubt[key[(min(gr.centre, j), max(gr.centre, j))]]
                           for j in gr.ids[1:]) for gr in found)
    # members: the files false groups would act on (all but the one kept in each) with
    # --act-on-unconfirmed; planned: those the default plan acts on
    return {"glyph_false_groups": groups, "glyph_false_pairs": pairs,
            "glyph_false_members": members, "glyph_planned": planned}


SEARCH_GRID = tuple((k, w, m, r) for k in (2, 3, 5) for w in (0.05, 0.1, 0.15)
                    for m in (15, 20, 30) for r in (2.0, 3.0))


def search_trial(v, depth: int = 5, reach: float = 0.15) -> dict:
    """Recall@1 of the validation copies among the originals, re-ranked under SEARCH_GRID."""
    refs = [str(p) for p in v.bench.originals]
    queries = [str(i.query) for i in v.bench.items]
    truth = np.array([refs.index(str(i.original)) for i in v.bench.items])
    R = np.stack([v.vectors[p] for p in refs])
    Q = np.stack([v.vectors[q] for q in queries])
    o_r = np.array([v.offsets[p] for p in refs], np.float32)
    o_q = np.array([v.offsets[q] for q in queries], np.float32)
    S = adjust(Q @ R.T, o_q[:, None] + o_r[None, :], KNEE)
    top = np.argsort(-S, axis=1, kind="stable")[:, :depth]
    tops = np.take_along_axis(S, top, 1)
    s, held = VerifySettings(), {}

    def feats(path):
        if path not in held:
            held[path] = picture_features(path, s)
        return held[path]

    agree = np.zeros(top.shape, int)
    for i, q in enumerate(queries):
        for j in range(depth):
            if tops[i, 0] - tops[i, j] <= reach and tops[i, 0] < RerankSettings().below:
                agree[i, j] = agreeing(feats(refs[top[i, j]]), feats(q), s)
    base = top[:, 0] == truth
    rows = [{"setting": "scores alone", "misses": int((~base).sum())}]
    for k, within, m, ratio in SEARCH_GRID:
        first = top[:, 0].copy()
        for i in range(len(queries)):
            close = [j for j in range(1, k) if tops[i, 0] - tops[i, j] <= within]
            if not close or tops[i, 0] >= RerankSettings().below:
                continue
            j = max(close, key=lambda j: (agree[i, j], -j))
            if agree[i, j] >= m and agree[i, j] >= ratio * max(agree[i, 0], 1):
                first[i] = top[i, j]
        hit = first == truth
        rows.append({"setting": {"candidates": k, "within": within, "min_inliers": m,
                                 "ratio": ratio},
                     "misses": int((~hit).sum()), "fixed": int((hit & ~base).sum()),
                     "broken": int((~hit & base).sum())})
    return {"queries": len(queries), "defaults": dataclasses.asdict(RerankSettings()),
            "rows": rows}


def main() -> None:
    parser = trial_parser(__doc__)
    parser.add_argument("--measures", type=Path, default=None,
                        help="keep the pairs' measurements in this file, and read them from it "
                             "when it exists (a second run skips reading ~8,000 pictures)")
    parser.add_argument("--search", action="store_true",
                        help="try the check's re-ranking of search instead (see above)")
    args = parser.parse_args()
    if args.search:
        with tempfile.TemporaryDirectory() as tmp:
            v = embed_validation(args.val_dir, args.model, args.per_image, Path(tmp))
            result = search_trial(v)
        for r in result["rows"]:
            print(json.dumps(r))
        if args.json:
            args.json.write_text(json.dumps({"model": args.model, "model_id": v.model.model_id,
                                             "knee": KNEE, **result}, indent=1) + "\n")
        return
    pairs_judged = load_variants(args.variants)
    with tempfile.TemporaryDirectory() as tmp:
        v = embed_validation(args.val_dir, args.model, args.per_image, Path(tmp))
        family = merge_variants(v.family, v.bench.originals, pairs_judged)
        V, O, a, b, scores = near_pairs(v)
        print(f"{len(a)} pairs >= {LOWEST} among {len(v.ids)} pictures", file=sys.stderr, flush=True)
        if args.measures and args.measures.exists():  # an earlier run's, of these same pairs
            with open(args.measures, "rb") as f:
                kept = pickle.load(f)
            if not (np.array_equal(kept["a"], a) and np.array_equal(kept["b"], b)):
                sys.exit(f"{args.measures} measured other pairs; delete it to measure again")
            m, glyphs = kept["m"], kept["glyphs"]
        else:
            m = measure_pairs(v.ids, a, b)
            glyphs = measure_glyphs(args.model, Path(tmp))
            if args.measures:
                with open(args.measures, "wb") as f:
                    pickle.dump({"a": a, "b": b, "m": m, "glyphs": glyphs}, f)
        kp = smaller_count(m, a, b)
        key = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(a, b))}
        ids = np.arange(len(v.ids), dtype=np.int64)

        def run(part: np.ndarray | None, floor: float = LOWEST) -> dict:
            """The dedupe sweep from `floor` up with the pairs `part` marks never grouped."""
            def check(x, y, s):
                return ~part[[key[(min(p, q), max(p, q))] for p, q in zip(x.tolist(), y.tolist())]]
            sweep = []
            for t in (t for t in SWEEP if t >= floor):
                groups = find_groups(ids, V, O, ids, t, "centre", knee=KNEE,
                                     check=None if part is None else check)
                score = family_dedupe_score([[v.ids[i] for i in g.ids] for g in groups], family,
                                            v.bench, t)
                sweep.append({"threshold": t, "precision": score.precision, "recall": score.recall})
            good = [s for s in sweep if s["precision"] >= TARGET_PRECISION]
            return {"recall_at_p97": recall_at_precision(sweep),
                    "recall_at_p95": recall_at_precision(sweep, 0.95),
                    "threshold": good[0]["threshold"] if good else None,
                    "threshold_precision": good[0]["precision"] if good else None,
                    "threshold_recall": good[0]["recall"] if good else None, "sweep": sweep}

        plain = run(None)
        alone_at = plain["threshold"]  # --no-check's threshold, by calibrate.py's rule
        rows = [{"setting": "no check", **plain}]
        true_pair = np.array([family[v.ids[x]] == family[v.ids[y]] for x, y in zip(a, b)])
        for setting in GRID:
            below, min_inliers, min_keypoints, alone, same, apart, plain_below = setting
            part, same_picture, doubt = verdicts(setting, scores, kp, m, alone_at)
            row = {"setting": {"below": below, "min_inliers": min_inliers,
                               "min_keypoints": min_keypoints,
                               "alone": alone_at if alone else None,
                               "plain_same": same, "plain_apart": apart,
                               "plain_below": plain_below},
                   "pairs_rejected": int(part.sum()), **run(part, CHECKED_FLOOR)}
            if row["threshold"] is not None:  # what it costs and leaves in doubt, at that
                at = scores >= row["threshold"]
                # every pair under plain_below is read: whether a picture is plain is learnt
                # from its keypoints
                looked = at & (scores < max(below, plain_below or below))
                row |= {"pairs_looked_at": int(looked.sum()),
                        "pictures_read": len(set(a[looked].tolist()) | set(b[looked].tolist())),
                        "copy_pairs_unconfirmed": int((at & doubt & true_pair).sum()),
                        "copy_pairs": int((at & true_pair & ~part).sum())}
            rows.append(row | glyph_groups(glyphs, setting, alone_at, row["threshold"]))
    for r in rows:
        print(f"{json.dumps(r['setting'])}: recall at precision 0.97 {r['recall_at_p97']:.4f}, at "
              f"0.95 {r['recall_at_p95']:.4f}; threshold {r['threshold']} (precision "
              f"{r['threshold_precision']:.3f}, recall {r['threshold_recall']:.3f})"
              + (f"; {r['pairs_rejected']} pairs rejected" if "pairs_rejected" in r else "")
              + (f"; glyphs {r['glyph_false_groups']} false groups / {r['glyph_false_pairs']} "
                 f"pairs / {r['glyph_false_members']} files acted on "
                 f"({r['glyph_planned']} by the default plan)"
                 if r.get("glyph_false_groups") is not None else "")
              + (f"; {r['pairs_looked_at']} pairs looked at, {r['pictures_read']} pictures read; "
                 f"{r['copy_pairs_unconfirmed']} of {r['copy_pairs']} copy pairs unconfirmed"
                 if "pairs_looked_at" in r else ""))
    chosen = choose(rows[1:])
    print(f"chosen: {json.dumps(chosen['setting'])} (recall at precision 0.97 "
          f"{chosen['recall_at_p97']:.4f}, threshold {chosen['threshold']}, precision "
          f"{chosen['threshold_precision']:.4f})")
    c = chosen["setting"]
    chosen_setting = (c["below"], c["min_inliers"], c["min_keypoints"], c["alone"] is not None,
                      c["plain_same"], c["plain_apart"], c["plain_below"])
    val = {"vectors": V, "offsets": O, "a": a, "b": b, "scores": scores, "m": m, "kp": kp,
           "family": [family[p] for p in v.ids], "paths": [Path(p).name for p in v.ids]}
    act = act_trial(chosen_setting, alone_at, chosen["threshold"], glyphs, val)
    for r in act["rows"]:
        print(f"act cuts {r['act_inliers']} matches / lined up {r['act_aligned']} / differs "
              f"{r['act_disagree']}: "
              f"{r['files_lost']} files lost ({r['glyph_files_lost']} glyphs, "
              f"{r['validation_files_lost']} validation), {r['copies_acted_on']} copies acted on")
    print(f"act cuts chosen: {json.dumps(act['chosen'])}")
    bands = []
    for lo, hi in ((0.76, 0.82), (0.82, 0.86), (0.86, 0.90), (0.90, 0.95), (0.95, 1.01)):
        sel = (scores >= lo) & (scores < hi)
        bands.append({"band": [lo, hi], **{
            name: {"pairs": int(w.sum()), "unjudged_at_40_keypoints": int((w & (kp < 40)).sum()),
                   "inliers_p10_p50_p90":
                   np.percentile(m["inliers"][w], [10, 50, 90]).tolist() if w.any() else None}
            for name, w in (("same picture", sel & true_pair), ("different", sel & ~true_pair))}})
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "model_id": v.model.model_id, "knee": KNEE,
            "pairs": int(len(a)), "defaults": dataclasses.asdict(VerifySettings()),
            "checked_floor": CHECKED_FLOOR, "chosen": chosen["setting"], "act": act,
            "inliers_by_band": bands, "rows": rows}, indent=1) + "\n")


def choose(rows: list[dict], margin: float = 0.005) -> dict:
    """The rule the settings are chosen by: the highest recall at precision 0.97 (on the sweep
    from CHECKED_FLOOR up); among the settings within `margin` of it, the fewest files that false
    groups of look-alike glyphs would act on (lookalikes.py's sets, each deduped at the
    setting's own threshold; every member of a group there but the one kept is a different
    picture proposed for a file action), then the highest precision at its threshold.

    Sessions 18-19 went straight to precision. Session 20 first ranked by the glyphs' false
    groups, and found that count rewards leaving different pictures in one large group: parting
    a third of their pairs split groups and raised it. Files acted on fall with every pair
    parted, so they replaced it (a change made after that first run: recorded in the model
    card). Within `margin` includes its edge (session 20's choice sits on it: 16 of 3,200 copies
    behind the best row; a rule that left the edge out would take "same" 0.9, "different" 0.6,
    the same 283 glyph files at precision 0.971 instead of 0.977)."""
    reach = [r for r in rows if r["recall_at_p97"] is not None and r["threshold"] is not None]
    if not reach:
        sys.exit("no setting reaches precision 0.97 on the sweep: nothing to choose")
    best = max(r["recall_at_p97"] for r in reach)
    near = [r for r in reach if r["recall_at_p97"] >= best - margin - 1e-9]  # margin included
    unmeasured = float("inf")  # a row without glyph figures never wins on them
    return min(near, key=lambda r: (unmeasured if r.get("glyph_false_members") is None
                                    else r["glyph_false_members"], -r["threshold_precision"]))

if __name__ == "__main__":
    main()
