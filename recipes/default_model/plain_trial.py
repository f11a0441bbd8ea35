"""Trial: the picture check's judge for pairs too plain for keypoints (`simsearch.lineup.aligned`,
shipped in session 19 as a "same picture" cut only), measured on the validation images and the
look-alike glyphs (never the evaluation set); the cuts are chosen by verify_trial.py's rule.

    python recipes/default_model/plain_trial.py [--workers 2] \
        [--json recipes/default_model/trials/plain-judge.json]

The picture check (simsearch/verify.py) cannot match keypoints when a picture holds fewer than
`min_keypoints` SIFT keypoints; until session 19 dedupe then grouped such a pair on its score
alone at --no-check's threshold. Nearly every false pair of the look-alike glyphs
(lookalikes.py) is such a pair (and, as the evaluation runs report, five of session 18's seven
false groups on the distinct set). This judge needs no keypoints: the product's `simsearch.lineup.aligned` (one picture placed inside the other,
every quarter turn and mirror, crops, insets and stretches, the best normalised
cross-correlation; None for a smooth gradient or a flat picture, counted apart here). A copy should
align almost perfectly; two different plain pictures should not.

Measured: that correlation for every plain pair (a picture under 40 keypoints) of validation
originals and their seeded edited copies (4 per image, as calibrate.py) scoring from
calibrate.CHECKED_FLOOR up to below the check's `below`, split by edit (the pairs of two copies
apart), and for every plain pair of two different glyphs in one font and style (lookalikes.py's
sets) scoring as much; then, for each cut, the share of each below it (a "same" cut groups the
pairs at or above it; a "different" cut would part those below it). The validation pairs
judged "different" are listed too, but are mostly renders of one object or one card in two decks
(not merged in trials/val-variants.json), so the glyphs stand for different pictures here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from calibrate import (CHECKED_FLOOR, ROOT, embed_validation, load_variants, merge_variants)
from lookalikes import find_fonts, write_sets
from simsearch.scoring import KNEE, adjust
from simsearch.verify import VerifySettings, features, grey_picture, picture_features
from simsearch.lineup import PLAIN_FRACTIONS, PLAIN_MIN_DETAIL, PLAIN_SIDE, aligned

CUTS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _pair(paths: tuple[str, str]) -> float | None:
    """The product's `aligned` for two files (None: a picture flat, or a smooth gradient)."""
    s = VerifySettings()
    return aligned(features(grey_picture(paths[0], s.side), s),
                   features(grey_picture(paths[1], s.side), s))


def plain_pairs(paths: list[str], S: np.ndarray, low: float, high: float) -> list[tuple[int, int]]:
    """Pairs scoring in [low, high) of which a picture has fewer than min_keypoints keypoints."""
    s = VerifySettings()
    a, b = np.triu_indices(len(paths), 1)
    near = (S[a, b] >= low) & (S[a, b] < high)
    a, b = a[near], b[near]
    counts = {i: picture_features(paths[i], s).count for i in set(a.tolist()) | set(b.tolist())}
    return [(x, y) for x, y in zip(a.tolist(), b.tolist())
            if min(counts[x], counts[y]) < s.min_keypoints]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"pairs": 0}
    p = np.percentile(values, [1, 5, 10, 50])
    return {"pairs": len(values), "p1": round(float(p[0]), 3), "p5": round(float(p[1]), 3),
            "p10": round(float(p[2]), 3), "median": round(float(p[3]), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--model", default="default")
    parser.add_argument("--variants", type=Path,
                        default=ROOT / "recipes" / "default_model" / "trials" / "val-variants.json")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    below = VerifySettings().below
    os.environ.setdefault("SIMSEARCH_PRECISION", "fp32")  # as calibrate.embed_validation
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.workers) as pool:
        v = embed_validation(args.val_dir, args.model, 4, Path(tmp) / "val")
        family = merge_variants(v.family, v.bench.originals, load_variants(args.variants))
        V = np.stack([v.vectors[p] for p in v.ids])
        O = np.array([v.offsets[p] for p in v.ids], np.float32)
        pairs = plain_pairs(v.ids, adjust(V @ V.T, O[:, None] + O[None, :], KNEE),
                            CHECKED_FLOOR, below)
        values = list(pool.map(_pair, [(v.ids[x], v.ids[y]) for x, y in pairs], chunksize=16))
        edit_of = {str(i.query): i.edit for i in v.bench.items}
        same: dict[str, list[float]] = {}
        different = []
        for (x, y), value in zip(pairs, values):
            if family[v.ids[x]] != family[v.ids[y]]:
                different.append(value)
                continue
            edits = [edit_of[p] for p in (v.ids[x], v.ids[y]) if p in edit_of]
            same.setdefault("two copies" if len(edits) == 2 else edits[0] if edits
                            else "two originals", []).append(value)
        glyphs = []
        from simsearch.index import open_index
        for folder in write_sets(Path(tmp) / "glyphs", find_fonts()):
            index = open_index(Path(tmp) / f"index-{folder.name}", model=args.model, create=True)
            index.add_paths([folder])
            paths, M = index.vectors()
            offsets = np.asarray(index.background.offsets(M), np.float32)
            S = adjust(M @ M.T, offsets[:, None] + offsets[None, :], KNEE)
            found = plain_pairs(paths, S, CHECKED_FLOOR, below)
            glyphs += list(pool.map(_pair, [(paths[x], paths[y]) for x, y in found], chunksize=16))
    not_compared = {"same_picture": sum(x is None for v_ in same.values() for x in v_),
                    "validation_different": sum(x is None for x in different),
                    "glyphs": sum(x is None for x in glyphs)}
    same = {k: [x for x in v_ if x is not None] for k, v_ in same.items()}
    different = [x for x in different if x is not None]
    glyphs = [x for x in glyphs if x is not None]
    all_same = np.array([x for v_ in same.values() for x in v_])
    # of the pairs compared: a "same" cut at c groups those at c or more, a "different" cut at c
    # parts those below it
    cuts = [{"cut": c,
             "same_picture_pairs_below": round(float(np.mean(all_same < c)), 4),
             "glyph_pairs_below": round(float(np.mean(np.array(glyphs) < c)), 4)}
            for c in CUTS]
    result = {"model": args.model, "side": PLAIN_SIDE, "fractions": PLAIN_FRACTIONS,
              "min_detail": PLAIN_MIN_DETAIL, "scores": [CHECKED_FLOOR, below],
              "not_compared": not_compared,
              "same_picture": {"all": percentiles(all_same.tolist()),
                               **{k: percentiles(x) for k, x in sorted(same.items())}},
              "validation_pairs_judged_different": percentiles(different),
              "glyph_pairs": percentiles(glyphs), "cuts": cuts}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
