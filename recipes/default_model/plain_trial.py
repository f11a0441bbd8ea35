"""Trial (not shipped): a second judge for pairs too plain for the picture check, measured on the
validation images and the look-alike glyphs (never the evaluation set).

    python recipes/default_model/plain_trial.py [--workers 2] \
        [--json recipes/default_model/trials/plain-judge.json]

The picture check (simsearch/verify.py) cannot judge a pair when a picture holds fewer than
`min_keypoints` SIFT keypoints; dedupe then groups it on its score alone at --no-check's
threshold. Most false groups left on the evaluation set's distinct pictures, and nearly every
false pair of the look-alike glyphs (lookalikes.py), are such pairs. The judge tried here needs
no keypoints: both grey pictures at `SIDE` pixels on the long side, one of them turned to each
of the 8 quarter-turns and mirrors and placed inside the other at every position and at
`FRACTIONS` of its width and of its height (a crop, an inset, a stretch), and the best
normalised cross-correlation found (brightness, contrast and grey are forgiven). A copy should
align almost perfectly; two different plain pictures should not.

Measured: that correlation for every plain pair (a picture under 40 keypoints) of validation
originals and their seeded edited copies (4 per image, as calibrate.py) scoring from
calibrate.CHECKED_FLOOR up to below the check's `below`, split by edit (the pairs of two copies
apart), and for every plain pair of two different glyphs in one font and style (lookalikes.py's
sets) scoring as much; then, for each cut, the share of same-picture pairs a judge parting
pairs below it would lose, and the share of glyph pairs it would part. The validation pairs
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
from simsearch.verify import VerifySettings, grey_picture, picture_features

SIDE = 48
FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
MIN_SIDE, MIN_STD = 8, 2.0  # a placed picture this small, or a window this flat, is not compared
CUTS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _small(grey: np.ndarray):
    import cv2
    h, w = grey.shape
    f = SIDE / max(h, w)
    return cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


def _window_std(big: np.ndarray, w: int, h: int) -> np.ndarray:
    """The spread of `big` under every w x h window, laid out as matchTemplate's result."""
    import cv2
    mean = cv2.boxFilter(big, -1, (w, h), borderType=cv2.BORDER_CONSTANT)
    square = cv2.boxFilter(big * big, -1, (w, h), borderType=cv2.BORDER_CONSTANT)
    spread = np.sqrt(np.maximum(square - mean * mean, 0))
    H, W = big.shape
    return spread[h // 2:h // 2 + H - h + 1, w // 2:w // 2 + W - w + 1]


def aligned(grey_a: np.ndarray, grey_b: np.ndarray) -> float:
    """The best normalised correlation of one picture placed in the other (see above)."""
    import cv2
    cv2.setNumThreads(1)
    a, b = _small(grey_a), _small(grey_b)
    best = -1.0
    for turn in range(8):
        t = np.rot90(a, turn // 2)
        t = np.ascontiguousarray(t[:, ::-1] if turn % 2 else t)
        for big, placed in ((b, t), (t, b)):
            H, W = big.shape
            for fw in FRACTIONS:
                for fh in FRACTIONS:
                    w, h = round(W * fw), round(H * fh)
                    if w < MIN_SIDE or h < MIN_SIDE:
                        continue
                    template = cv2.resize(placed, (w, h), interpolation=cv2.INTER_AREA)
                    if template.std() < MIN_STD:
                        continue
                    r = cv2.matchTemplate(big, template, cv2.TM_CCOEFF_NORMED)
                    flat = _window_std(big, w, h)[:r.shape[0], :r.shape[1]] < MIN_STD
                    r = np.where(flat | ~np.isfinite(r), -1.0, r)
                    best = max(best, float(r.max()))
    return best


def _pair(paths: tuple[str, str]) -> float:
    return aligned(grey_picture(paths[0], VerifySettings().side),
                   grey_picture(paths[1], VerifySettings().side))


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
        os.environ.setdefault("SIMSEARCH_PRECISION", "fp32")
        for folder in write_sets(Path(tmp) / "glyphs", find_fonts()):
            index = open_index(Path(tmp) / f"index-{folder.name}", model=args.model, create=True)
            index.add_paths([folder])
            paths, M = index.vectors()
            offsets = np.asarray(index.background.offsets(M), np.float32)
            S = adjust(M @ M.T, offsets[:, None] + offsets[None, :], KNEE)
            found = plain_pairs(paths, S, CHECKED_FLOOR, below)
            glyphs += list(pool.map(_pair, [(paths[x], paths[y]) for x, y in found], chunksize=16))
    all_same = [x for v_ in same.values() for x in v_]
    cuts = [{"cut": c,
             "same_picture_pairs_lost": round(float(np.mean(np.array(all_same) < c)), 4),
             "glyph_pairs_parted": round(float(np.mean(np.array(glyphs) < c)), 4)}
            for c in CUTS]
    result = {"model": args.model, "side": SIDE, "fractions": FRACTIONS, "scores": [CHECKED_FLOOR, below],
              "same_picture": {"all": percentiles(all_same),
                               **{k: percentiles(x) for k, x in sorted(same.items())}},
              "validation_pairs_judged_different": percentiles(different),
              "glyph_pairs": percentiles(glyphs), "cuts": cuts}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
