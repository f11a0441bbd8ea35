"""Trial: plain pictures whose colours agree at no placing are different pictures (session 30).

Do such pairs stay apart, and do copies stay together? The rule, what adopts it and the grid:
trials/colour-rule.md (written first). The
measure lives here, not in the product: the rule's first trial did not adopt it (the rule file
says why).

    python recipes/default_model/colour_trial.py [--model default] \
        [--json recipes/default_model/trials/colour-val.json]

Two sets, each embedded by the shipped network (fp32) with 4 seeded edited copies of each
picture (as calibrate.py): the 800 validation originals, and 120 smooth colour fields
(`simsearch.edits.background`, seeded, 640 x 400: a stand-in for smooth wallpapers built from
nothing the evaluation holds). Every pair scoring CHECKED_FLOOR or more (adjusted, the knee in
use) with a picture under the check's keypoints is lined up (`simsearch.verify.aligned`); the
pairs it leaves in doubt, as `simsearch dedupe` does (unjudged: a smooth gradient or lined up
under `plain_same`, grouped from the threshold made for scores alone; short of the act cut:
grouped from the threshold), are measured in colour (`colour_disagreement` below)
under each TOL. Reported per setting (TOL, CUT): the copy pairs and the different-picture pairs
it parts, among those grouped today and among all in doubt.
"""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from calibrate import (CHECKED_FLOOR, embed_validation, load_variants, merge_variants,
                       trial_parser)
from simsearch.edits import background
from simsearch.models import DEFAULT_MODEL_DIR, calibration_path
from simsearch.scoring import KNEE, adjust
from simsearch.images import load_image
from simsearch.verify import (PLAIN_SIDE, Features, Placing, VerifySettings, _cv2, _placings,
                              _small, _turned, aligned, picture_features)

# none of the edits a copy is forgiven changes what colour a part of the picture has, only how
# much (brightness and contrast scale every pixel's chroma by one factor; grey takes it away);
# two plain pictures whose colours agree at no placing that lines them up are different pictures
COLOUR_NEAR, COLOUR_FLOOR = 0.05, 0.5  # placings compared: within this of the best, and at least
COLOUR_BEARING, COLOUR_GREY = 6.0, 3.0  # chroma levels: a pixel bearing colour; a grey picture
COLOUR_SHARE = 0.2  # of the overlap bearing colour, or a placing says nothing
COLOUR_CLIP = 3.0   # a channel this close to 0 or 255 is clipped (brightening turns colours)
COLOUR_REACH = 3    # pixels (at PLAIN_SIDE) a colour may be found away from where it is placed
_CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)


def colour_picture(path: str, grey_shape: tuple[int, int], side: int = 512) -> np.ndarray:
    """The file's picture in colour at the size `aligned` makes of its grey picture (of
    `grey_shape`): RGB and, as a fourth channel, the share of the decoded pixels under each small
    one with a channel clipped (within COLOUR_CLIP of 0 or 255: brightening clips, and a clipped
    colour has turned), float32."""
    from PIL import Image
    picture = load_image(path, target=side).image.convert("RGB")
    h, w = grey_shape
    f = PLAIN_SIDE / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    rgb = np.asarray(picture, np.float32)
    clipped = ((rgb < COLOUR_CLIP) | (rgb > 255 - COLOUR_CLIP)).any(axis=2).astype(np.float32)
    small = np.asarray(picture.resize(size, Image.Resampling.BOX), np.float32)
    clip = _cv2().resize(clipped, size, interpolation=_cv2().INTER_AREA)
    return np.dstack([small, clip]).astype(np.float32)


def colour_disagreement(a: Features, b: Features, colour_a: np.ndarray, colour_b: np.ndarray,
                        tols: tuple[float, ...]) -> list[float | None]:
    """How far two plain pictures' colours (`colour_picture`) disagree where they line up, under
    each of `tols`: over the placings `simsearch.verify.aligned` searches (smooth pictures
    included) at least COLOUR_FLOOR and within COLOUR_NEAR of the best (a copy of a smooth
    picture lines up well at wrong placings too), the smallest share of the pixels bearing
    colour whose chroma differs by more than the tolerance (`_colour_share`). None where no
    placing has colour to compare (a grey picture, too little colour, nothing lines up)."""
    found = list(_placings(_small(a)[0], _small(b)[0]))
    least: list[float | None] = [None] * len(tols)
    if not found:
        return least
    best = max(p.value for p in found)
    for p in found:
        if p.value < max(COLOUR_FLOOR, best - COLOUR_NEAR):
            continue
        for k, tol in enumerate(tols):
            share = _colour_share(p, colour_a, colour_b, tol)
            if share is not None and (least[k] is None or share < least[k]):
                least[k] = share
    return least


def _colour_share(p: Placing, colour_a: np.ndarray, colour_b: np.ndarray, tol: float
                  ) -> float | None:
    """At placing `p`, the share of the overlap's pixels bearing colour (COLOUR_BEARING in
    either, nothing clipped under them in either) whose chroma differs by more than `tol` from
    every pixel of the other picture within COLOUR_REACH pixels (a copy turned a few degrees is
    misplaced by a few), once the placed picture's is scaled by the ratio of the two pictures'
    mean chroma (brightness and contrast scale it); None for a grey picture (mean chroma under
    COLOUR_GREY) or under COLOUR_SHARE of the overlap bearing colour."""
    cv2 = _cv2()
    t = _turned(colour_a, p.turn)
    placed, big = (t, colour_b) if p.a_inside else (colour_b, t)
    template = cv2.resize(placed, (p.w, p.h), interpolation=cv2.INTER_AREA)
    r = COLOUR_REACH
    padded = np.pad(big, ((r, r), (r, r), (0, 0)), mode="edge")
    window = padded[p.y + r:p.y + r + p.h, p.x + r:p.x + r + p.w]
    kept = (template[..., 3] == 0) & (window[..., 3] == 0)
    cp, cw = template[..., :3] @ _CHROMA.T, window[..., :3] @ _CHROMA.T
    mp, mw = np.hypot(cp[..., 0], cp[..., 1]), np.hypot(cw[..., 0], cw[..., 1])
    if not kept.any() or mp[kept].mean() < COLOUR_GREY or mw[kept].mean() < COLOUR_GREY:
        return None
    bearing = kept & ((mp >= COLOUR_BEARING) | (mw >= COLOUR_BEARING))
    if bearing.sum() < COLOUR_SHARE * bearing.size:
        return None
    scaled = cp * float(np.clip(mw[bearing].mean() / max(mp[bearing].mean(), 1e-6), 0.3, 3.0))
    chroma = padded[..., :3] @ _CHROMA.T
    nearest = np.full(bearing.shape, np.inf, np.float32)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            near = chroma[p.y + dy:p.y + dy + p.h, p.x + dx:p.x + dx + p.w]
            nearest = np.minimum(nearest, np.hypot(*(near - scaled).transpose(2, 0, 1)))
    return float((nearest[bearing] > tol).mean())


TOLS = (6.0, 10.0, 16.0)
CUTS = (0.3, 0.5, 0.7)
FIELDS, FIELD_SIZE = 120, (640, 400)
FIELD_PAIRS = 3000  # of the fields' different-picture pairs, measured (amendment 2)


def write_fields(out: Path, n: int = FIELDS, seed: int = 30) -> Path:
    """`n` smooth colour fields, seeded, saved as JPEG (quality 90) in `out`."""
    out.mkdir(parents=True)
    rng = random.Random(seed)
    for i in range(n):
        background(FIELD_SIZE, rng).save(out / f"field-{i:03d}.jpg", quality=90)
    return out


def measure(v, family: dict[str, int], alone_at: float, sample: int | None = None) -> dict:
    """The pairs of one embedded set left in doubt by the plain judge, with their colour figures
    (with `sample`: every copy pair and that many of the other pairs, drawn seeded)."""
    s = VerifySettings()
    V = np.stack([v.vectors[p] for p in v.ids])
    O = np.array([v.offsets[p] for p in v.ids], np.float32)
    S = adjust(V @ V.T, O[:, None] + O[None, :], KNEE)
    a, b = np.triu_indices(len(v.ids), 1)
    near = S[a, b] >= CHECKED_FLOOR
    a, b, scores = a[near], b[near], S[a, b][near]
    if sample is not None:  # every copy pair, a seeded sample of the others (amendment 2)
        same = np.array([family[v.ids[x]] == family[v.ids[y]] for x, y in zip(a, b)], bool)
        others = np.flatnonzero(~same)
        if len(others) > sample:
            others = np.random.default_rng(30).choice(others, sample, replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(same), others]))
        a, b, scores = a[keep], b[keep], scores[keep]
    pictures = sorted(set(a.tolist()) | set(b.tolist()))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        held = dict(zip(pictures, pool.map(lambda i: picture_features(v.ids[i], s), pictures)))
    colours: dict[int, np.ndarray] = {}  # read when a pair in doubt first needs it
    # each pair the way round the product judges it: path first
    ways = [(x, y) if v.ids[x] <= v.ids[y] else (y, x) for x, y in zip(a.tolist(), b.tolist())]
    plain = [i for i, (x, y) in enumerate(ways)
             if min(held[x].count, held[y].count) < s.min_keypoints]

    def one(i: int) -> dict | None:
        x, y = ways[i]
        value = aligned(held[x], held[y])
        unsure = value is not None and s.plain_same <= value < s.sure_aligned
        unjudged = value is None or s.plain_apart <= value < s.plain_same
        if not (unsure or unjudged):
            return None
        return {"a": Path(v.ids[x]).name, "b": Path(v.ids[y]).name, "score": float(scores[i]),
                "aligned": value, "copy": bool(family[v.ids[x]] == family[v.ids[y]]),
                "grouped": bool(unsure or scores[i] >= alone_at),
                "colour": dict(zip(map(str, TOLS), colour_disagreement(
                    held[x], held[y], colour_of(x), colour_of(y), TOLS)))}

    def colour_of(i: int) -> np.ndarray:
        if i not in colours:
            colours[i] = colour_picture(v.ids[i], held[i].grey.shape)
        return colours[i]

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        doubt = [r for r in pool.map(one, plain) if r is not None]
    return {"pairs": int(len(a)), "sampled": sample, "plain_pairs": len(plain), "doubt": doubt}


def table(doubt: list[dict]) -> list[dict]:
    """Per (TOL, CUT): the copy and different-picture pairs parted, grouped today and in all."""
    rows = []
    for t in TOLS:
        for c in CUTS:
            parted = [r for r in doubt if r["colour"][str(t)] is not None and r["colour"][str(t)] > c]
            row = {"tol": t, "cut": c}
            for kind, is_copy in (("copies", True), ("different", False)):
                row[kind] = sum(r["copy"] == is_copy for r in doubt)
                row[f"{kind}_grouped"] = sum(r["copy"] == is_copy and r["grouped"] for r in doubt)
                row[f"{kind}_parted"] = sum(r["copy"] == is_copy for r in parted)
                row[f"{kind}_grouped_parted"] = sum(r["copy"] == is_copy and r["grouped"]
                                                    for r in parted)
            rows.append(row)
    return rows


def choose(val: list[dict], fields: list[dict]) -> tuple[dict | None, bool]:
    """trials/colour-rule.md: among the settings parting no copy pair in the validation set and
    at most 1% of the fields' copy pairs, the one parting the most different pairs over both
    (ties: larger CUT, then larger TOL); adopted if it parts a validation different pair or
    10% of the fields' different pairs."""
    ok = []
    for rv, rf in zip(val, fields):
        if rv["copies_parted"] == 0 and rf["copies_parted"] <= 0.01 * max(rf["copies"], 1):
            ok.append((rv["different_parted"] + rf["different_parted"], rv["cut"], rv["tol"],
                       rv, rf))
    if not ok:
        return None, False
    _, _, _, rv, rf = max(ok, key=lambda o: o[:3])
    adopted = rv["different_parted"] >= 1 or rf["different_parted"] >= 0.1 * max(rf["different"], 1)
    return {"tol": rv["tol"], "cut": rv["cut"]}, adopted


def main() -> None:
    parser = trial_parser(__doc__)
    args = parser.parse_args()
    record = calibration_path(DEFAULT_MODEL_DIR / "default.onnx" if args.model == "default"
                              else args.model)
    alone_at = json.loads(record.read_text())["dedupe_threshold_unchecked"]  # scores alone
    out = {"model": args.model, "alone": alone_at, "tols": TOLS, "cuts": CUTS}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        v = embed_validation(args.val_dir, args.model, args.per_image, tmp / "val")
        family = merge_variants(v.family, v.bench.originals, load_variants(args.variants))
        out["val"] = measure(v, family, alone_at)
        print(f"validation: {len(out['val']['doubt'])} pairs in doubt", file=sys.stderr, flush=True)
        f = embed_validation(write_fields(tmp / "fields-in"), args.model, args.per_image,
                             tmp / "fields")
        out["fields"] = measure(f, f.family, alone_at, sample=FIELD_PAIRS)
        print(f"fields: {len(out['fields']['doubt'])} pairs in doubt", file=sys.stderr, flush=True)
    out["val_rows"], out["fields_rows"] = table(out["val"]["doubt"]), table(out["fields"]["doubt"])
    out["chosen"], out["adopted"] = choose(out["val_rows"], out["fields_rows"])
    for name in ("val", "fields"):
        print(name)
        for r in out[f"{name}_rows"]:
            print(f"  tol {r['tol']:>4} cut {r['cut']}: copies parted {r['copies_parted']} of "
                  f"{r['copies']} ({r['copies_grouped_parted']} of {r['copies_grouped']} grouped); "
                  f"different parted {r['different_parted']} of {r['different']} "
                  f"({r['different_grouped_parted']} of {r['different_grouped']} grouped)")
    print(f"chosen {out['chosen']}, adopted: {out['adopted']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
