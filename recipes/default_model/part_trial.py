"""Trial (session 24): part pairs whose pictures differ a lot somewhere, on validation only.

    python recipes/default_model/part_trial.py --measures /work/runs/measures23b.pkl \
        [--json recipes/default_model/trials/part-disagree.json]

The rule, declared before the run, is in trials/part-disagree-rule.md. The validation
originals and their seeded copies are embedded as verify_trial.py embeds them, and the pairs'
measurements (keypoints, agreeing matches, `simsearch.verify.disagreement`) come from its
`--measures` file, so the pairs are the ones it measured. The check's settings are the
shipped ones (`VerifySettings()`); each part cut D adds: a pair with keypoints enough, matched
with the matches grouping needs, whose disagreement exceeds D is never grouped, at any score.
Each is then deduped as the product dedupes (centre linkage) at the default threshold, and
lookalikes.py's glyph sets too.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

from calibrate import ROOT, embed_validation, family_dedupe_score, load_variants, merge_variants
from verify_trial import near_pairs, smaller_count, verdicts
from simsearch.dedupe import find_groups
from simsearch.scoring import KNEE
from simsearch.verify import VerifySettings

GRID = (None, 3.0, 2.0, 1.5, 1.2, 1.0, 0.8)


def setting_of(s: VerifySettings, alone: bool = True) -> tuple:
    """verify_trial's setting tuple for the product's check settings."""
    return (s.below, s.min_inliers, s.min_keypoints, alone, s.plain_same, s.plain_apart,
            s.plain_below)


def parted(setting: tuple, scores, kp, m, alone_at, cut: float | None) -> np.ndarray:
    """The pairs the check never groups with the part cut `cut` (None: as shipped)."""
    part, _, _ = verdicts(setting, scores, kp, m, alone_at)
    if cut is None:
        return part
    matched = (kp >= setting[2]) & (m["inliers"] >= setting[1])
    return part | (matched & (m["disagree"] > cut))  # NaN: no overlap to compare, not parted


def grouped_pairs(ids, vectors, offsets, a, b, part, threshold) -> tuple[list, set]:
    """Dedupe's groups (centre linkage) with `part` never grouped, and the pairs (centre,
    member) they hold, as indices into a, b."""
    key = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(a, b))}

    def check(x, y, s):
        return ~part[[key[(min(p, q), max(p, q))] for p, q in zip(x.tolist(), y.tolist())]]
    groups = [g for g in find_groups(ids, vectors, offsets, ids, threshold, "centre", knee=KNEE,
                                     check=check) if len(g.ids) > 1]
    return groups, {key[(min(g.centre, j), max(g.centre, j))] for g in groups for j in g.ids[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--model", default="default")
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.80)
    parser.add_argument("--alone-at", type=float, default=0.86,
                        help="the --no-check threshold the shipped check uses (picture-check.json)")
    parser.add_argument("--variants", type=Path,
                        default=ROOT / "recipes" / "default_model" / "trials" / "val-variants.json")
    parser.add_argument("--measures", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with open(args.measures, "rb") as f:
        kept = pickle.load(f)
    setting = setting_of(VerifySettings())
    scratch = tempfile.TemporaryDirectory()  # the seeded copies, while the run lasts
    v = embed_validation(args.val_dir, args.model, args.per_image, Path(scratch.name))
    family = merge_variants(v.family, v.bench.originals, load_variants(args.variants))
    V, O, a, b, scores = near_pairs(v)
    if not (np.array_equal(kept["a"], a) and np.array_equal(kept["b"], b)):
        sys.exit(f"{args.measures} measured other pairs")
    m, glyphs = kept["m"], kept["glyphs"]
    kp = smaller_count(m, a, b)
    ids = np.arange(len(v.ids), dtype=np.int64)
    true_pair = np.array([family[v.ids[x]] == family[v.ids[y]] for x, y in zip(a, b)])
    rows, base = [], None
    for cut in GRID:
        part = parted(setting, scores, kp, m, args.alone_at, cut)
        groups, held = grouped_pairs(ids, V, O, a, b, part, args.threshold)
        score = family_dedupe_score([[v.ids[i] for i in g.ids] for g in groups], family, v.bench,
                                    args.threshold)
        glyph_groups = glyph_pairs = 0
        glyph_held = []
        for g in glyphs:
            gpart = parted(setting, g["scores"], g["kp"], g["m"], args.alone_at, cut)
            found, pairs = grouped_pairs(np.arange(len(g["vectors"]), dtype=np.int64),
                                         g["vectors"], g["offsets"], g["a"], g["b"], gpart,
                                         args.threshold)
            glyph_groups += len(found)
            glyph_pairs += sum(len(x.ids) * (len(x.ids) - 1) // 2 for x in found)
            glyph_held.append(pairs)
        row = {"part_disagree": cut, "precision": score.precision, "recall": score.recall,
               "copy_pairs_grouped": int(sum(true_pair[i] for i in held)),
               "other_pairs_grouped": int(sum(not true_pair[i] for i in held)),
               "glyph_false_groups": glyph_groups, "glyph_false_pairs": glyph_pairs}
        if base is None:
            base = (held, glyph_held, row)
        else:
            row["copy_pairs_parted"] = [
                {"a": Path(v.ids[a[i]]).name, "b": Path(v.ids[b[i]]).name,
                 "score": round(float(scores[i]), 4), "disagree": round(float(m["disagree"][i]), 3)}
                for i in sorted(base[0] - held) if true_pair[i]]
            row["other_pairs_parted"] = int(sum(not true_pair[i] for i in base[0] - held))
            row["glyph_pairs_parted"] = int(sum(len(x - y) for x, y in zip(base[1], glyph_held)))
        rows.append(row)
        print(f"part {cut}: precision {row['precision']:.4f} recall {row['recall']:.4f}; "
              f"grouped copy pairs {row['copy_pairs_grouped']}, other {row['other_pairs_grouped']}"
              f"; glyphs {glyph_groups} false groups / {glyph_pairs} pairs"
              + (f"; parted {len(row['copy_pairs_parted'])} copy pairs, "
                 f"{row['other_pairs_parted']} other, {row['glyph_pairs_parted']} glyph pairs"
                 if cut is not None else ""), flush=True)
    none = rows[0]
    passing = [r for r in rows[1:] if r["recall"] >= none["recall"] - 0.002
               and r["other_pairs_parted"] + r["glyph_pairs_parted"] > 0]
    chosen = min(passing, key=lambda r: r["part_disagree"]) if passing else none
    print(f"chosen (trials/part-disagree-rule.md): part_disagree {chosen['part_disagree']}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "model_id": v.model.model_id, "threshold": args.threshold,
            "alone_at": args.alone_at, "setting": list(setting), "pairs": int(len(a)),
            "rows": rows, "chosen": chosen["part_disagree"]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
