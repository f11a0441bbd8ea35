"""Trial: plain pictures whose colours agree at no placing are different pictures (session 30).

Do such pairs stay apart, and do copies stay together? The rule, what adopts it and the grid:
trials/colour-rule.md (written first). The
measure is `simsearch.lineup.colour_disagreement`: this first rule, for pairs left in doubt,
was not adopted (the rule file says why); the second, an act cut for plain pairs lining up
confirms (trials/colour-act-rule.md, `--confirmed`), is tried here too.

    python recipes/default_model/colour_trial.py [--model default] \
        [--json recipes/default_model/trials/colour-val.json]

Two sets, each embedded by the shipped network (fp32) with 4 seeded edited copies of each
picture (as calibrate.py): the 800 validation originals, and 120 smooth colour fields
(`simsearch.edits.background`, seeded, 640 x 400: a stand-in for smooth wallpapers built from
nothing the evaluation holds). Every pair scoring CHECKED_FLOOR or more (adjusted, the knee in
use) with a picture under the check's keypoints is lined up (`simsearch.lineup.aligned`); the
pairs it leaves in doubt, as `simsearch dedupe` does (unjudged: a smooth gradient or lined up
under `plain_same`, grouped from the threshold made for scores alone; short of the act cut:
grouped from the threshold), are measured in colour (`simsearch.lineup.colour_disagreement`,
a pixel clipped in either picture left out) under each TOL. Reported per setting (TOL, CUT): the copy pairs and the different-picture pairs
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
from simsearch.verify import VerifySettings, picture_features
from simsearch.lineup import aligned, colour_disagreement

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


FLAG_COLOURS = ((206, 17, 38), (255, 255, 255), (0, 56, 168), (0, 122, 61), (252, 209, 22),
                (0, 0, 0), (255, 130, 0), (117, 170, 219), (128, 0, 32), (0, 80, 40),
                (0, 32, 91), (212, 175, 55))
FLAG_LAYOUTS = ("vertical3", "horizontal3", "vertical2", "horizontal2", "cross", "disc", "hoist",
                "diagonal")
FLAG_PALETTES, FLAG_PAIRS = 15, 3000


def flag(layout: str, colours: tuple, size=(300, 200)):
    """A plain picture of flat colour regions in `layout`, coloured by `colours` (three)."""
    from PIL import Image, ImageDraw
    w, h = size
    img = Image.new("RGB", size, colours[0])
    d = ImageDraw.Draw(img)
    if layout == "vertical3":
        d.rectangle((w // 3, 0, 2 * w // 3, h), fill=colours[1])
        d.rectangle((2 * w // 3, 0, w, h), fill=colours[2])
    elif layout == "horizontal3":
        d.rectangle((0, h // 3, w, 2 * h // 3), fill=colours[1])
        d.rectangle((0, 2 * h // 3, w, h), fill=colours[2])
    elif layout == "vertical2":
        d.rectangle((w // 2, 0, w, h), fill=colours[1])
    elif layout == "horizontal2":
        d.rectangle((0, h // 2, w, h), fill=colours[1])
    elif layout == "cross":
        d.rectangle((int(0.3 * w), 0, int(0.4 * w), h), fill=colours[1])
        d.rectangle((0, int(0.42 * h), w, int(0.58 * h)), fill=colours[1])
    elif layout == "disc":
        r = int(0.3 * h)
        d.ellipse((w // 2 - r, h // 2 - r, w // 2 + r, h // 2 + r), fill=colours[1])
    elif layout == "hoist":
        d.rectangle((0, h // 2, w, h), fill=colours[1])
        d.rectangle((0, 0, int(0.27 * w), h), fill=colours[2])
    else:  # diagonal
        d.polygon([(w, 0), (w, h), (0, h)], fill=colours[1])
    return img


def write_flags(out: Path, seed: int = 30) -> Path:
    """FLAG_PALETTES palettes of each of FLAG_LAYOUTS, seeded, as PNG in `out` (named
    `LAYOUT-NN.png`): pictures of one layout in two palettes are different pictures."""
    out.mkdir(parents=True)
    rng = random.Random(seed)
    for layout in FLAG_LAYOUTS:
        palettes: set[tuple] = set()
        while len(palettes) < FLAG_PALETTES:
            palettes.add(tuple(rng.sample(FLAG_COLOURS, 3)))
        for k, colours in enumerate(sorted(palettes)):
            flag(layout, colours).save(out / f"{layout}-{k:02d}.png")
    return out


def same_flags(originals) -> list[tuple[str, str]]:
    """Pairs (file names) of stand-in originals that are one picture: equal as they are, or
    mirrored left to right, top to bottom, or turned half round (the amendment after run 1)."""
    from PIL import Image
    keys: dict[bytes, list[str]] = {}
    for path in originals:
        img = Image.open(path).convert("RGB")
        forms = (img, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                 img.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
                 img.transpose(Image.Transpose.ROTATE_180))
        keys.setdefault(min(f.tobytes() for f in forms), []).append(Path(path).name)
    return [(names[0], other) for names in keys.values() for other in names[1:]]


def near_plain_pairs(v, family: dict[str, int], sample: int | None = None, layout_of=None):
    """The pairs of an embedded set scoring CHECKED_FLOOR or more (adjusted, the knee in use),
    with `sample` every copy pair and that many of the others (with `layout_of`, of one
    layout), drawn seeded: their scores, the features of their pictures (`held`, by row), each
    pair the way round the product judges it (path first) and the rows of `ways` with a plain
    picture."""
    s = VerifySettings()
    V = np.stack([v.vectors[p] for p in v.ids])
    O = np.array([v.offsets[p] for p in v.ids], np.float32)
    S = adjust(V @ V.T, O[:, None] + O[None, :], KNEE)
    a, b = np.triu_indices(len(v.ids), 1)
    near = S[a, b] >= CHECKED_FLOOR
    a, b, scores = a[near], b[near], S[a, b][near]
    if sample is not None:
        same = np.array([family[v.ids[x]] == family[v.ids[y]] for x, y in zip(a, b)], bool)
        others = ~same
        if layout_of is not None:
            others &= np.array([layout_of(v.ids[x]) == layout_of(v.ids[y])
                                for x, y in zip(a, b)], bool)
        others = np.flatnonzero(others)
        if len(others) > sample:
            others = np.random.default_rng(30).choice(others, sample, replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(same), others]))
        a, b, scores = a[keep], b[keep], scores[keep]
    pictures = sorted(set(a.tolist()) | set(b.tolist()))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        held = dict(zip(pictures, pool.map(lambda i: picture_features(v.ids[i], s), pictures)))
    ways = [(x, y) if v.ids[x] <= v.ids[y] else (y, x) for x, y in zip(a.tolist(), b.tolist())]
    plain = [i for i, (x, y) in enumerate(ways)
             if min(held[x].count, held[y].count) < s.min_keypoints]
    return scores, held, ways, plain


def confirmed_plain(v, family: dict[str, int], figures, sample: int | None = None,
                    layout_of=None) -> dict:
    """The pairs of one embedded set scoring CHECKED_FLOOR or more with a plain picture that
    lining up confirms (`sure_aligned` or more), each with `figures(a, b, features_a,
    features_b)` (a dict) beside its names, score and whether it is a copy pair. With
    `layout_of` (a file's original's layout) and `sample`: every copy pair and that many of
    the different pairs of one layout, drawn seeded."""
    s = VerifySettings()
    scores, held, ways, plain = near_plain_pairs(v, family, sample, layout_of)

    def one(i: int) -> dict | None:
        x, y = ways[i]
        value = aligned(held[x], held[y], enough=s.sure_aligned)
        if value is None or value < s.sure_aligned:
            return None
        a, b = v.ids[x], v.ids[y]
        return {"a": Path(a).name, "b": Path(b).name, "score": float(scores[i]),
                "copy": bool(family[a] == family[b]), **figures(a, b, held[x], held[y])}

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        confirmed = [r for r in pool.map(one, plain) if r is not None]
    return {"pairs": len(ways), "sampled": sample, "plain_pairs": len(plain),
            "confirmed": confirmed}


def measure_confirmed(v, family: dict[str, int], layout_of=None,
                      sample: int | None = None) -> dict:
    """colour-act-rule.md: `confirmed_plain` with their colour figures (clipped pixels left
    out where clipped in one picture only)."""
    return confirmed_plain(v, family, lambda a, b, fa, fb: {
        "colour": dict(zip(map(str, TOLS), colour_disagreement(fa, fb, TOLS)))}, sample, layout_of)


def demoted(confirmed: list[dict]) -> list[dict]:
    """Per (TOL, CUT): the confirmed copy and different-picture pairs it would demote."""
    rows = []
    for t in TOLS:
        for c in CUTS:
            caught = [r for r in confirmed if r["colour"][str(t)] is not None
                      and r["colour"][str(t)] > c]
            rows.append({"tol": t, "cut": c,
                         "copies": sum(r["copy"] for r in confirmed),
                         "copies_demoted": sum(r["copy"] for r in caught),
                         "different": sum(not r["copy"] for r in confirmed),
                         "different_demoted": sum(not r["copy"] for r in caught)})
    return rows


def choose_act(val: list[dict], flags: list[dict]) -> tuple[dict | None, bool]:
    """colour-act-rule.md: among the settings demoting at most 2% of validation's and 5% of the
    flags' confirmed copy pairs, the one demoting most of the flags' different pairs (ties:
    larger CUT, then larger TOL); adopted if it demotes at least half of them."""
    ok = [(rf["different_demoted"], rv["cut"], rv["tol"], rf) for rv, rf in zip(val, flags)
          if rv["copies_demoted"] <= 0.02 * rv["copies"]
          and rf["copies_demoted"] <= 0.05 * rf["copies"]]
    if not ok:
        return None, False
    best = max(ok, key=lambda o: o[:3])
    rf = best[3]
    return {"tol": best[2], "cut": best[1]}, rf["different_demoted"] >= 0.5 * rf["different"]


def measure(v, family: dict[str, int], alone_at: float, sample: int | None = None) -> dict:
    """The pairs of one embedded set left in doubt by the plain judge, with their colour figures
    (with `sample`: every copy pair and that many of the other pairs, drawn seeded)."""
    s = VerifySettings()
    scores, held, ways, plain = near_plain_pairs(v, family, sample)

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
                    held[x], held[y], TOLS, clip_one=False)))}

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        doubt = [r for r in pool.map(one, plain) if r is not None]
    return {"pairs": len(ways), "sampled": sample, "plain_pairs": len(plain), "doubt": doubt}


def table(doubt: list[dict]) -> list[dict]:
    """Per (TOL, CUT): the copy and different-picture pairs parted, grouped today and in all."""
    rows = []
    for t in TOLS:
        for c in CUTS:
            parted = [r for r in doubt
                      if r["colour"][str(t)] is not None and r["colour"][str(t)] > c]
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
    parser.add_argument("--confirmed", action="store_true",
                        help="the act cut instead (trials/colour-act-rule.md): confirmed plain "
                             "pairs of validation and of a flag stand-in")
    args = parser.parse_args()
    record = calibration_path(DEFAULT_MODEL_DIR / "default.onnx" if args.model == "default"
                              else args.model)
    alone_at = json.loads(record.read_text())["dedupe_threshold_unchecked"]  # scores alone
    if args.confirmed:
        return act_trial(args)
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


def act_trial(args) -> None:
    """colour-act-rule.md's run."""
    out = {"model": args.model, "tols": TOLS, "cuts": CUTS, "rule": "colour-act-rule.md"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        v = embed_validation(args.val_dir, args.model, args.per_image, tmp / "val")
        family = merge_variants(v.family, v.bench.originals, load_variants(args.variants))
        out["val"] = measure_confirmed(v, family)
        print(f"validation: {len(out['val']['confirmed'])} confirmed plain pairs", file=sys.stderr,
              flush=True)
        f = embed_validation(write_flags(tmp / "flags-in"), args.model, args.per_image,
                             tmp / "flags")
        layout = {p: Path(f.bench.originals[i]).name.split("-")[0] for p, i in f.family.items()}
        family = merge_variants(f.family, f.bench.originals, same_flags(f.bench.originals))
        out["flags_merged"] = len(set(f.family.values())) - len(set(family.values()))
        out["flags"] = measure_confirmed(f, family, layout.__getitem__, sample=FLAG_PAIRS)
        print(f"flags: {len(out['flags']['confirmed'])} confirmed plain pairs", file=sys.stderr,
              flush=True)
    out["val_rows"], out["flags_rows"] = (demoted(out["val"]["confirmed"]),
                                          demoted(out["flags"]["confirmed"]))
    out["chosen"], out["adopted"] = choose_act(out["val_rows"], out["flags_rows"])
    for name in ("val", "flags"):
        print(name)
        for r in out[f"{name}_rows"]:
            print(f"  tol {r['tol']:>4} cut {r['cut']}: copies demoted {r['copies_demoted']} of "
                  f"{r['copies']}; different demoted {r['different_demoted']} of {r['different']}")
    print(f"chosen {out['chosen']}, adopted: {out['adopted']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
