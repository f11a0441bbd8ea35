"""Trial: plain pairs that lining up confirms, kept from a plan where they differ somewhere.

The rule, what adopts it and the grid: trials/detail-act-rule.md (written first). The measure
is `simsearch.lineup.plain_disagreement`: the best placings of one plain picture in the other,
laid at full size (refined by ECC) and measured as pairs with keypoints are (`disagreement`).

    python recipes/default_model/detail_trial.py [--model default] \
        [--json recipes/default_model/trials/detail-act-val.json]

Three sets, each embedded by the shipped network (fp32) with 4 seeded edited copies of each
picture (as calibrate.py): the 800 validation originals; a badge stand-in (BADGE_LAYOUTS plain
layouts in BADGE_VALUES values each, seeded: pictures of one layout with other values are
different pictures); colour_trial.py's flag stand-in (reported, not used to choose). Every pair
scoring CHECKED_FLOOR or more (adjusted, the knee in use) with a plain picture that lining up
confirms (`sure_aligned`) is measured. Reported per CUT: the copy pairs (those of `text`
copies apart) and the different pairs it would keep from a plan.
"""
from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

from calibrate import embed_validation, load_variants, merge_variants, trial_parser
from colour_trial import FLAG_PAIRS, confirmed_plain, same_flags, write_flags
from simsearch.lineup import plain_disagreement, plain_figures

CUTS = (0.4, 0.6, 0.8, 1.0, 1.5)
BADGE_LAYOUTS = ("sign", "tile", "shield", "button", "ball", "label")
BADGE_VALUES, BADGE_PAIRS = 15, 3000
BADGE_SIZE = (256, 256)


def badge(layout: str, value: str, size=BADGE_SIZE):
    """A plain picture in `layout` bearing `value` (digits or letters) in Pillow's font."""
    from PIL import Image, ImageDraw, ImageFont
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    text, ink, box = 0.4, (0, 0, 0), (0, 0, w, h)
    if layout == "sign":  # a round sign: red ring, number
        d.ellipse((8, 8, w - 8, h - 8), fill=(255, 255, 255), outline=(200, 20, 30), width=26)
    elif layout == "tile":  # a square tile, a letter
        d.rounded_rectangle((16, 16, w - 16, h - 16), 30, fill=(30, 90, 170))
        text, ink = 0.5, (255, 255, 255)
    elif layout == "shield":  # a road shield, a small number on a wide field
        d.polygon([(20, 20), (w - 20, 20), (w - 20, h // 2), (w // 2, h - 15), (20, h // 2)],
                  fill=(0, 110, 60), outline=(255, 255, 255))
        text, ink, box = 0.22, (255, 255, 255), (0, 0, w, int(0.75 * h))
    elif layout == "button":  # a wide button, two letters
        d.rounded_rectangle((10, 70, w - 10, h - 70), 40, fill=(230, 230, 230),
                            outline=(90, 90, 90), width=4)
        text = 0.25
    elif layout == "ball":  # a ball with a numbered white disc
        d.ellipse((10, 10, w - 10, h - 10), fill=(240, 160, 0))
        d.ellipse((w // 2 - 55, h // 2 - 55, w // 2 + 55, h // 2 + 55), fill=(255, 255, 255))
        text = 0.28
    else:  # label: a price tag, a digit in a corner of a large plain field
        d.rectangle((10, 10, w - 10, h - 10), fill=(250, 240, 200), outline=(120, 80, 20), width=6)
        d.ellipse((28, 28, 48, 48), fill=(255, 255, 255), outline=(120, 80, 20), width=3)
        text, box = 0.16, (int(0.55 * w), int(0.6 * h), w - 10, h - 10)
    font = ImageFont.load_default(size=max(8, int(text * h)))
    left, top, right, bottom = d.textbbox((0, 0), value, font=font)
    x = (box[0] + box[2] - (right - left)) // 2 - left
    y = (box[1] + box[3] - (bottom - top)) // 2 - top
    d.text((x, y), value, fill=ink, font=font)
    return img


def badge_values(layout: str, rng: random.Random) -> list[str]:
    """BADGE_VALUES distinct values for `layout`: numbers, a letter, or two letters."""
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    draw = {"sign": lambda: str(rng.choice(range(10, 100, 5))),
            "tile": lambda: rng.choice(letters),
            "shield": lambda: str(rng.randint(1, 99)),
            "button": lambda: rng.choice(letters) + rng.choice(letters),
            "ball": lambda: str(rng.randint(1, 15)),
            "label": lambda: str(rng.randint(0, 9)) + str(rng.randint(0, 9))}[layout]
    values: set[str] = set()
    while len(values) < BADGE_VALUES:
        values.add(draw())
    return sorted(values)


def write_badges(out: Path, seed: int = 31, sides: tuple[int, ...] = ()) -> Path:
    """The badge stand-in, as PNG in `out` (named `LAYOUT-VALUE.png`); with `sides`, each
    badge at each of those sizes instead (LANCZOS from 256: `LAYOUT-VALUE-SIDE.png`)."""
    from PIL import Image
    out.mkdir(parents=True)
    rng = random.Random(seed)
    for layout in BADGE_LAYOUTS:
        for value in badge_values(layout, rng):
            if not sides:
                badge(layout, value).save(out / f"{layout}-{value}.png")
            for side in sides:
                badge(layout, value).resize((side, side), Image.Resampling.LANCZOS).save(
                    out / f"{layout}-{value}-{side}.png")
    return out


SMALL_SIDES = (64, 96)
SMALL_CUTS = (0.8, 1.0, 1.2, 1.5)


def measure_small(v, family: dict[str, int], edit_of: dict[str, str], layout_of=None,
                  sample: int | None = None) -> dict:
    """plain-small-rule.md: `confirmed_plain` with every transform's (worst eighth, worst
    thirty-second) (`plain_figures`) and whether a copy is a `text` one."""
    return confirmed_plain(v, family, lambda a, b, fa, fb: {
        "text": "text" in (edit_of.get(a), edit_of.get(b)),
        "figures": plain_figures(fa, fb, (8, 32)) or []}, sample, layout_of)


def demoted_small(confirmed: list[dict], eighth: float = 0.4) -> list[dict]:
    """Per CUT of SMALL_CUTS: of the pairs today's eighth confirms (a transform at most
    `eighth` there), those no transform confirms with its thirty-second at most CUT too."""
    today = [r for r in confirmed if any(f[0] <= eighth for f in r["figures"])]
    return [{"cut": c, **counted(today, [r for r in today if not any(
        f[0] <= eighth and f[1] <= c for f in r["figures"])])} for c in SMALL_CUTS]


def choose_small(val: list[dict], badges: list[dict], icons: list[dict]
                 ) -> tuple[float | None, bool]:
    """plain-small-rule.md: the lowest CUT demoting at most 2% of validation's and 5% of the
    badges' and the icons' confirmed copy pairs; adopted if it demotes at least half of the
    icons' different pairs today's eighth confirms."""
    for rv, rb, ri in zip(val, badges, icons):
        if (rv["copies_demoted"] <= 0.02 * rv["copies"]
                and rb["copies_demoted"] <= 0.05 * rb["copies"]
                and ri["copies_demoted"] <= 0.05 * ri["copies"]):
            return rv["cut"], ri["different_demoted"] >= 0.5 * ri["different"]
    return None, False


def small_trial(args) -> None:
    """plain-small-rule.md's run."""
    out = {"model": args.model, "cuts": SMALL_CUTS, "rule": "plain-small-rule.md"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out["val"] = validation(args, tmp, measure_small)
        for name, sides in (("badges", ()), ("icons", SMALL_SIDES)):
            b = embed_validation(write_badges(tmp / f"{name}-in", sides=sides), args.model,
                                 args.per_image, tmp / name)
            names = [Path(o).name for o in b.bench.originals]
            same = [(x, y) for x in names for y in names  # one badge at two sizes
                    if x < y and x.rsplit("-", 1)[0] == y.rsplit("-", 1)[0]] if sides else []
            fam = merge_variants(b.family, b.bench.originals, same)
            layout = {p: Path(b.bench.originals[i]).name.split("-")[0] for p, i in b.family.items()}
            out[name] = measure_small(b, fam, edits(b), layout.__getitem__, sample=BADGE_PAIRS)
            print(f"{name}: {len(out[name]['confirmed'])} confirmed plain pairs",
                  file=sys.stderr, flush=True)
    tabled(out, ("val", "badges", "icons"), demoted_small)
    out["chosen"], out["adopted"] = choose_small(out["val_rows"], out["badges_rows"],
                                                 out["icons_rows"])
    finish(out, args.json)


def measure(v, family: dict[str, int], edit_of: dict[str, str], layout_of=None,
            sample: int | None = None) -> dict:
    """The pairs of one embedded set scoring CHECKED_FLOOR or more with a plain picture that
    lining up confirms, each with `plain_disagreement` and whether a copy is a `text` one."""
    return confirmed_plain(v, family, lambda a, b, fa, fb: {
        "text": "text" in (edit_of.get(a), edit_of.get(b)),
        "detail": plain_disagreement(fa, fb)}, sample, layout_of)


def counted(confirmed: list[dict], caught: list[dict]) -> dict:
    """Of the confirmed pairs and those a setting `caught`: the copy pairs (without text, and
    text) and the different pairs."""
    return {"copies": sum(r["copy"] and not r["text"] for r in confirmed),
            "copies_demoted": sum(r["copy"] and not r["text"] for r in caught),
            "text_copies": sum(r["copy"] and r["text"] for r in confirmed),
            "text_copies_demoted": sum(r["copy"] and r["text"] for r in caught),
            "different": sum(not r["copy"] for r in confirmed),
            "different_demoted": sum(not r["copy"] for r in caught)}


def demoted(confirmed: list[dict]) -> list[dict]:
    """Per CUT: the confirmed copy pairs (without text, and text) and different pairs it
    would keep from a plan (a pair with no figure is kept as now)."""
    return [{"cut": c, **counted(confirmed, [r for r in confirmed if r["detail"] is not None
                                             and r["detail"] > c])} for c in CUTS]


def choose(val: list[dict], badges: list[dict]) -> tuple[float | None, bool]:
    """detail-act-rule.md: among the CUTs demoting at most 2% of validation's and 5% of the
    badges' confirmed copy pairs (text copies apart), the one demoting most of the badges'
    different pairs (ties: the larger CUT); adopted if it demotes at least half of them."""
    ok = [(rb["different_demoted"], rv["cut"], rb) for rv, rb in zip(val, badges)
          if rv["copies_demoted"] <= 0.02 * rv["copies"]
          and rb["copies_demoted"] <= 0.05 * rb["copies"]]
    if not ok:
        return None, False
    best = max(ok, key=lambda o: o[:2])
    return best[1], best[2]["different_demoted"] >= 0.5 * best[2]["different"]


def edits(v) -> dict[str, str]:
    return {str(item.query): item.edit for item in v.bench.items}


def tabled(out: dict, names: tuple[str, ...], rows) -> None:
    """Each set's `rows(confirmed)` into `out` (NAME_rows), and printed."""
    for name in names:
        out[f"{name}_rows"] = rows(out[name]["confirmed"])
        print(name)
        for r in out[f"{name}_rows"]:
            print(f"  cut {r['cut']}: copies demoted {r['copies_demoted']} of {r['copies']} "
                  f"(text copies {r['text_copies_demoted']} of {r['text_copies']}); different "
                  f"demoted {r['different_demoted']} of {r['different']}")


def validation(args, tmp: Path, measured) -> dict:
    """The validation originals and their copies embedded under `tmp`, variants merged, and
    `measured(embedded, family, edits)` of them."""
    v = embed_validation(args.val_dir, args.model, args.per_image, tmp / "val")
    family = merge_variants(v.family, v.bench.originals, load_variants(args.variants))
    out = measured(v, family, edits(v))
    print(f"validation: {len(out['confirmed'])} confirmed plain pairs", file=sys.stderr,
          flush=True)
    return out


def main() -> None:
    parser = trial_parser(__doc__)
    parser.add_argument("--small", action="store_true",
                        help="the small window for plain pairs instead "
                             "(trials/plain-small-rule.md)")
    args = parser.parse_args()
    if args.small:
        return small_trial(args)
    out = {"model": args.model, "cuts": CUTS, "rule": "detail-act-rule.md"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out["val"] = validation(args, tmp, measure)
        b = embed_validation(write_badges(tmp / "badges-in"), args.model, args.per_image,
                             tmp / "badges")
        layout = {p: Path(b.bench.originals[i]).name.split("-")[0] for p, i in b.family.items()}
        out["badges"] = measure(b, b.family, edits(b), layout.__getitem__, sample=BADGE_PAIRS)
        print(f"badges: {len(out['badges']['confirmed'])} confirmed plain pairs",
              file=sys.stderr, flush=True)
        f = embed_validation(write_flags(tmp / "flags-in"), args.model, args.per_image,
                             tmp / "flags")
        layout = {p: Path(f.bench.originals[i]).name.split("-")[0] for p, i in f.family.items()}
        family = merge_variants(f.family, f.bench.originals, same_flags(f.bench.originals))
        out["flags"] = measure(f, family, edits(f), layout.__getitem__, sample=FLAG_PAIRS)
    tabled(out, ("val", "badges", "flags"), demoted)
    out["chosen"], out["adopted"] = choose(out["val_rows"], out["badges_rows"])
    finish(out, args.json)


def finish(out: dict, path: Path | None) -> None:
    """The trial's choice said, and its record written (figures to 4 places) to `path`."""
    print(f"chosen {out['chosen']}, adopted: {out['adopted']}")
    if path:
        import json
        rounded = json.loads(json.dumps(out), parse_float=lambda v: round(float(v), 4))
        path.write_text(json.dumps(rounded, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
