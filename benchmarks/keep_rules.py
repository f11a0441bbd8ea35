"""How often the keep rules keep the original of a group, and not an edited copy of it.

    python benchmarks/keep_rules.py                       # validation: training packages
    python benchmarks/keep_rules.py --folder data/eval-extract --per-package 2 --count 16 \
        --json benchmarks/results/keep_rules.json

The edits run on the picture at most WORK_SIDE pixels on its long side (for speed) and are
scaled back to full size before saving, which makes same-size copies somewhat smaller on disk
than full-size edits (favouring `biggest` by 1-3 points).

For each original (picture files as their packages ship them: JPEG and PNG, at least 300
pixels on the short side, at most --per-package from one package), every edit of the
evaluation set (simsearch.edits) makes a copy, saved the way a user's tool saves an edited
picture: JPEG at quality 75 (Pillow, many web tools), 90 (GIMP's default), 95 (the evaluation
set's copies), or PNG. Each original and copy is a group of two, and each candidate order of
keep rules chooses one, through `simsearch.keeprules.choose` as `dedupe --plan` does. The files'
dates are set three ways, since no file here says when a user made a copy:
- `later`: the copy is a day newer than its original (a copy made after the picture was taken
  or downloaded, times kept);
- `lost`: the dates say nothing: each file a random time within an hour (a folder copied to a
  new disk without keeping times, in some order);
- `same`: both files the same second (written by one batch).
With `--picture`, each candidate runs twice: with `largest` by canvas (files as
`simsearch.keeprules` sees them without the picture check), and by the picture, as `dedupe --plan`
sees them after its check: the pair is matched by the product's own code
(`simsearch.verify.agreement`, `picture_map`, the copy saved to a temporary file and read
back), and when it keeps the matches grouping needs, each file carries the map between them.
Reported: the share of groups whose original is kept, per candidate, per date setting, per
save, and per edit. Nothing is written outside a temporary folder.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simsearch.edits import EDIT_NAMES, _font, apply_edit  # noqa: E402
from simsearch.detail import band, bars, bars_hold, corners  # noqa: E402
from simsearch.keeprules import choose, kept_too, parse_rules, with_colours, with_decodes  # noqa: E402
from simsearch.layout import (bars_between, corners_between, extent_of,  # noqa: E402
                              one_way_stretch, resaved_between, stretched_between,
                              turned_apart, with_bars, with_resaves)
from simsearch.planfile import _GREY_MODES, PlanFile, _lossless  # noqa: E402
from simsearch.resave import (_see_through, carried, colour_of, grid_of,  # noqa: E402
                              holds_pixels, is_resave)
from simsearch.verify import (VerifySettings, agreement, beyond, picture_features,  # noqa: E402
                              picture_map)

IDENTITY = (1.0, 0.0, 0.0, 1.0)
IDENTITY_TURN = ((1, 0), (0, 1))


def picture_maps(first, second: str, settings: VerifySettings) -> tuple | None:
    """The maps and extents the product's check would give two files, the first as the centre
    (identity, 1), as `simsearch.picturecheck` finds them: matched first to second, kept when
    the matches reach grouping's `min_inliers`; None when not."""
    a, b = first, picture_features(second, settings)  # the first's features read once
    if min(a.count, b.count) < settings.min_keypoints:
        return None
    found, transform, used = agreement(a, b, settings, enough=settings.min_inliers)
    linear = picture_map(a, used, b, transform) if found >= settings.min_inliers else None
    if linear is None:
        return None
    shares = beyond(used, b, transform)  # a's and b's keypoints outside the other
    if shares is None:
        return (IDENTITY, None), (tuple(linear.ravel().tolist()), None)
    return (IDENTITY, 1.0), (tuple(linear.ravel().tolist()), extent_of((shares[1], shares[0])))

def caption(img: Image.Image, rng: random.Random) -> Image.Image:
    """A captioned copy (outside the evaluation's edits, for --bars): a band of 12-25% of the
    height, white, black or a random colour, on top or at the bottom, holding one line of text
    in a contrasting colour, as meme and social-media tools add one."""
    from PIL import ImageDraw
    w, h = img.size
    tall = max(2, round(h * rng.uniform(0.12, 0.25)))
    kind = rng.randrange(3)
    ground = ((255, 255, 255), (0, 0, 0), tuple(rng.randrange(256) for _ in range(3)))[kind]
    ink = (255 - ground[0], 255 - ground[1], 255 - ground[2]) if kind == 2 else (
        (0, 0, 0) if kind == 0 else (255, 255, 255))
    if kind == 2 and max(abs(a - b) for a, b in zip(ground, ink)) < 96:
        ink = (0, 0, 0) if sum(ground) > 384 else (255, 255, 255)
    text = " ".join("".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(
        rng.randint(2, 7))) for _ in range(rng.randint(2, 5)))
    size = max(4, int(min(tall * 0.6, w / (0.62 * len(text)))))
    font = _font(size)
    out = Image.new("RGB", (w, h + tall), ground)
    top = rng.random() < 0.5
    out.paste(img, (0, tall if top else 0))
    left, t, right, bottom = font.getbbox(text)
    x = max(0, (w - (right - left)) // 2) - left
    y = (0 if top else h) + max(0, (tall - (bottom - t)) // 2) - t
    ImageDraw.Draw(out).text((x, y), text, fill=ink, font=font)
    return out


CANDIDATES = ("largest,biggest,oldest", "largest,oldest,biggest")
SAVES = ("jpeg75", "jpeg90", "jpeg95", "png")
DATES = ("later", "lost", "same")
SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_SHORT, MAX_PIXELS, WORK_SIDE = 300, 40_000_000, 1024


def originals(folder: Path, count: int, per_package: int, seed: int) -> list[Path]:
    """Up to `count` picture files under `folder`, at most `per_package` from each top folder
    (a package), drawn with `seed`; files Pillow cannot read or too small are passed over."""
    by_package: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in SUFFIXES and path.is_file() and not path.is_symlink():
            by_package[path.relative_to(folder).parts[0]].append(path)
    rng = random.Random(seed)
    chosen: list[Path] = []
    for package in sorted(by_package):
        files = by_package[package]
        rng.shuffle(files)
        taken = 0
        for path in files:
            if taken == per_package:
                break
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except Exception:
                continue
            if min(w, h) >= MIN_SHORT and w * h <= MAX_PIXELS:
                chosen.append(path)
                taken += 1
    rng.shuffle(chosen)
    return chosen[:count]


def encode(img: Image.Image, save: str) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if save == "png":
        img.save(buf, format="PNG")
        return buf.getvalue(), "png"
    img.convert("RGB").save(buf, format="JPEG", quality=int(save[4:]))
    return buf.getvalue(), "jpeg"


def facts(name: str, size: int, fmt: str, w: int, h: int, seconds: float,
          lossless: bool | None = None, colour: bool | None = None) -> PlanFile:
    date = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    return PlanFile(path=name, size=size, mtime_ns=int(seconds * 1e9), sha256="", width=w,
                    height=h, format=fmt, date=date.isoformat(), date_source="mtime",
                    lossless=lossless, colour=colour)


class Pixels:
    """What `dedupe --plan` reads of a pair's pixels since session 32, for files held as an
    original's path and a copy's bytes: whether each is stored in grey (`PlanFile.colour` from
    its header), whether its pixels hold colour (`simsearch.resave.has_colour`), and whether
    one holds the other's decoded pixels (`simsearch.resave.decoded`); each read once."""

    def __init__(self, path: Path, data: bytes):
        self.sources = {"original": lambda: Image.open(path), "copy": lambda: Image.open(
            io.BytesIO(data))}
        self.rgb: dict[str, np.ndarray] = {}

    def _rgb(self, which: str) -> np.ndarray:
        if which not in self.rgb:
            with self.sources[which]() as im:
                self.rgb[which] = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        return self.rgb[which]

    def stored_grey(self, which: str) -> bool | None:
        with self.sources[which]() as im:
            return False if im.mode in _GREY_MODES else None

    def colour(self, name: str) -> tuple[bool | None, float | None]:
        which = "original" if name.endswith("original") else "copy"
        with self.sources[which]() as im:
            if _see_through(im):
                return None, None  # as has_colour: what shows through is not its colour
        return colour_of(Image.fromarray(self._rgb(which)).resize((256, 256)))

    def decodes(self, held: str, source: str) -> bool:
        which = ("original" if held.endswith("original") else "copy",
                 "original" if source.endswith("original") else "copy")
        return holds_pixels(self._rgb(which[0]), self._rgb(which[1]))


def stored_without_loss(data: bytes, fmt: str) -> bool:
    """`PlanFile.lossless` of a file's bytes, as `dedupe --plan` reads it from its header."""
    with Image.open(io.BytesIO(data)) as im:
        return _lossless(fmt, im, data[:16])


def dates(setting: str, rng: random.Random, base: float) -> tuple[float, float]:
    if setting == "later":
        return base, base + 86400
    if setting == "lost":
        return base + rng.uniform(0, 3600), base + rng.uniform(0, 3600)
    return base, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "data" / "extract")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--per-package", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", default=";".join(CANDIDATES),
                        help="keep-rule orders to compare, separated by ';'")
    parser.add_argument("--picture", action="store_true",
                        help="each candidate also with `largest` by the picture check's maps")
    parser.add_argument("--band", action="store_true",
                        help="with --picture, each candidate also with the files' bands "
                             "(simsearch.detail) read for one-way stretches, as dedupe --plan "
                             "reads them")
    parser.add_argument("--bars", action="store_true",
                        help="with --band, each candidate also with the files' bars "
                             "(simsearch.detail) read as dedupe --plan reads them, and a "
                             "captioned copy of each original beside the evaluation's edits, "
                             "reported apart (trials/keep-bars-rule.md)")
    parser.add_argument("--corners", action="store_true",
                        help="with --band, each candidate also with the files' filled corners "
                             "(simsearch.detail) read as dedupe --plan reads them, on top of "
                             "--bars when given (trials/keep-corners-rule.md)")
    parser.add_argument("--resave", action="store_true",
                        help="with --corners, each candidate also with re-saves told by the JPEG "
                             "compression their pixels carry; and siblings (each JPEG original "
                             "saved at quality 90 and 95) tested against each other "
                             "(trials/keep-resave-rule.md)")
    parser.add_argument("--work-side", type=int, default=WORK_SIDE,
                        help="edits run on the picture at most this many pixels on its long "
                             "side, then scaled back up; 0: at full size  [default: %(default)s]")
    parser.add_argument("--without-lossless", action="store_true",
                        help="as before session 31: `biggest` by bytes alone, whether a file "
                             "is stored without loss or not")
    parser.add_argument("--session31", action="store_true",
                        help="as session 31 shipped `biggest`: no file read for whether it is "
                             "grey or holds another's decoded pixels")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.band and not args.picture:
        parser.error("--band needs --picture")
    if (args.bars or args.corners) and not args.band:
        parser.error("--bars and --corners need --band")
    if args.resave and not args.corners:
        parser.error("--resave needs --corners")
    edits = list(EDIT_NAMES) + (["caption"] if args.bars else [])
    candidates = [c.strip() for c in args.candidates.split(";") if c.strip()]
    rules = {c: parse_rules([c]) for c in candidates}
    if args.picture:
        plain = list(candidates)
        candidates += [c + " (picture)" for c in plain]
        rules |= {c + " (picture)": rules[c] for c in plain}
        if args.band:
            candidates += [c + " (band)" for c in plain]
            rules |= {c + " (band)": rules[c] for c in plain}
        if args.bars:
            candidates += [c + " (bars)" for c in plain]
            rules |= {c + " (bars)": rules[c] for c in plain}
        if args.corners:
            candidates += [c + " (corners)" for c in plain]
            rules |= {c + " (corners)": rules[c] for c in plain}
        if args.resave:  # the keep rule `source` right after `largest`
            candidates += [c + " (resave)" for c in plain]
            rules |= {c + " (resave)": parse_rules([c.replace("largest", "largest,source", 1)])
                      for c in plain}
    resaved = defaultdict(lambda: [0, 0, 0])  # edit -> pairs asked, copy re-save, original's
    siblings = [0, 0, 0, []]  # JPEG originals, pairs told, pairs carrying, their shares
    cornered = [0, 0]  # pairs whose corners were read, of those the pairs corners told apart
    barred = [0, 0]  # pairs whose bars were read, of those the pairs bars told apart
    banded = [0, 0]  # pairs whose bands were read, of those the pairs a band told apart
    settings, scratch = VerifySettings(), tempfile.TemporaryDirectory()
    mapped = [0, 0]  # pairs given maps, pairs
    files = originals(args.folder, args.count, args.per_package, args.seed)
    if not files:
        sys.exit(f"no pictures under {args.folder}; fetch them with: bash recipes/default_model/fetch_data.sh")
    rng = random.Random(args.seed)
    # (candidate, date, save, edit) -> [original kept, groups, original kept by the plan]
    kept = defaultdict(lambda: [0, 0, 0])
    skipped: dict[str, str] = {}
    for n, path in enumerate(files):
        try:
            with Image.open(path) as im:
                fmt = (im.format or "").lower().replace("jpg", "jpeg")
                with open(path, "rb") as fh:
                    o_lossless = _lossless(fmt, im, fh.read(16))
                img = im.convert("RGB")
        except Exception as e:
            skipped[str(path)] = str(e)
            continue
        o_size, (ow, oh) = path.stat().st_size, img.size
        if args.work_side and max(img.size) > args.work_side:  # edits run on a smaller
            scale = args.work_side / max(img.size)  # picture for speed; the copy is then
        else:                                       # scaled back up to the edit's proportions
            scale = 1.0
        work = img.resize((round(ow * scale), round(oh * scale)), Image.Resampling.BILINEAR) \
            if scale < 1 else img
        held = None  # the original's features, when first needed
        own_band: list = []  # the original's band, when first needed
        own_bars: list = []  # the original's bars, when first needed
        own_corners: list = []  # the original's corners, when first needed
        own_grid: list = []  # the original's grid (luma, steps), when first needed
        if args.resave and fmt == "jpeg":  # siblings: neither is made from the other
            siblings[0] += 1
            sib = []
            # from the original shifted off its own block grid: neither save is the original
            # itself saved again (a save at the original's own quality nearly is)
            shifted = img.crop((3, 5, img.width, img.height))
            for q in (90, 95):
                sib_path = Path(scratch.name) / f"sibling{q}.jpg"
                shifted.save(sib_path, format="JPEG", quality=q)
                sib.append(grid_of(sib_path))
            for a, b in ((sib[0], sib[1]), (sib[1], sib[0])):
                got = carried(a, b, IDENTITY_TURN)
                if got is not None:
                    siblings[1] += 1
                    siblings[2] += is_resave(a, b, IDENTITY_TURN)
                    siblings[3].append([round(v, 3) for v in got])
        for edit in edits:
            edit_rng = random.Random(f"{args.seed}/{n}/{edit}")
            copy = (caption(work, edit_rng) if edit == "caption"
                    else apply_edit(edit, work, edit_rng))
            if scale < 1:  # a copy of the picture's own size (or turned) keeps its exact size
                size = {work.size: (ow, oh), work.size[::-1]: (oh, ow)}.get(
                    copy.size, (round(copy.width / scale), round(copy.height / scale)))
                copy = copy.resize(size, Image.Resampling.BILINEAR)
            for save in SAVES:
                data, cfmt = encode(copy, save)
                maps = copy_band = None
                copy_bars: list = []  # the copy's bars, when first needed
                copy_corners: list = []  # the copy's corners, when first needed
                held_here: dict = {}  # bars_hold's answers for this copy
                if args.picture:
                    saved = Path(scratch.name) / f"copy.{'png' if cfmt == 'png' else 'jpg'}"
                    saved.write_bytes(data)
                    if held is None:
                        held = picture_features(str(path), settings)
                    maps = picture_maps(held, str(saved), settings)
                    mapped[0] += maps is not None
                    mapped[1] += 1
                pixels = None if args.session31 else Pixels(path, data)
                for setting in DATES:
                    t_orig, t_copy = dates(setting, rng, 1.6e9 + n * 1e5)
                    original = facts(f"a/{n:04d}/original", o_size, fmt, ow, oh, t_orig,
                                     None if args.without_lossless else o_lossless,
                                     pixels and pixels.stored_grey("original"))
                    edited = facts(f"a/{n:04d}/copy", len(data), cfmt, copy.width, copy.height,
                                   t_copy, None if args.without_lossless else
                                   stored_without_loss(data, cfmt),
                                   pixels and pixels.stored_grey("copy"))
                    # the path breaks ties: draw which one sorts first, so a tie is a coin toss
                    pair = [original, edited] if rng.random() < 0.5 else [edited, original]
                    pair = [replace(f, path=f"{i}{f.path}") for i, f in enumerate(pair)]
                    if pixels is not None:  # as `dedupe --plan` reads them (session 32)
                        pair = with_decodes(with_colours(pair, read=pixels.colour),
                                            read=pixels.decodes)
                    drawn = banded_pair = pair
                    if maps is not None:
                        drawn = [replace(f, picture=m[0], extent=m[1]) for f, m in (
                            (f, maps[0] if f.path.endswith("original") else maps[1])
                            for f in pair)]
                        banded_pair = drawn
                        if args.band and one_way_stretch(*drawn):
                            if not own_band:
                                own_band.append(band(path))
                            first = copy_band is None
                            if first:
                                copy_band = band(saved)
                            banded_pair = [replace(f, band=own_band[0] if f.path.endswith(
                                "original") else copy_band) for f in drawn]
                            if first:
                                banded[0] += 1
                                banded[1] += stretched_between(*banded_pair) != 0
                    barred_pair = banded_pair
                    if maps is not None and args.bars:
                        real = {f.path: str(path) if f.path.endswith("original") else str(saved)
                                for f in banded_pair}

                        def read_bars(name, real=real, own_bars=own_bars, copy_bars=copy_bars):
                            mine = own_bars if name.endswith("original") else copy_bars
                            if not mine:
                                mine.append(bars(real[name]))
                                barred[0] += not name.endswith("original")
                            return mine[0]

                        def hold(a, b, *rest, real=real, held_here=held_here):
                            key = (a.endswith("original"), b.endswith("original"), *rest)
                            if key not in held_here:
                                held_here[key] = bars_hold(real[a], real[b], *rest)
                            return held_here[key]

                        barred_pair = with_bars(banded_pair, read=read_bars, hold=hold)
                        if setting == DATES[0]:
                            barred[1] += bars_between(*barred_pair) != 0
                    cornered_pair = barred_pair
                    if maps is not None and args.corners and turned_apart(*drawn):
                        read = []
                        for f in barred_pair:
                            mine = own_corners if f.path.endswith("original") else copy_corners
                            if not mine:
                                mine.append(corners(path if f.path.endswith("original")
                                                    else saved))
                            read.append(replace(f, corners=mine[0]))
                        cornered_pair = read
                        if setting == DATES[0]:
                            cornered[0] += 1
                            cornered[1] += corners_between(*cornered_pair) != 0
                    resaved_pair = cornered_pair
                    if maps is not None and args.resave:
                        real = {f.path: str(path) if f.path.endswith("original") else str(saved)
                                for f in cornered_pair}
                        copy_grid: list = []

                        def read_grid(name, real=real, own_grid=own_grid, copy_grid=copy_grid):
                            mine = own_grid if name.endswith("original") else copy_grid
                            if not mine:
                                mine.append(grid_of(real[name]))
                            return mine[0]

                        resaved_pair = with_resaves(cornered_pair, read=read_grid)
                        if setting == DATES[0] and any(f.carries is not None
                                                       for f in resaved_pair):
                            told = resaved_between(*sorted(
                                resaved_pair, key=lambda f: not f.path.endswith("original")))
                            r = resaved[edit + "/" + save]
                            r[0] += 1
                            r[1] += told == 1
                            r[2] += told == -1
                    for c in candidates:
                        among = (drawn if c.endswith("(picture)") else banded_pair
                                 if c.endswith("(band)") else barred_pair
                                 if c.endswith("(bars)") else cornered_pair
                                 if c.endswith("(corners)") else resaved_pair
                                 if c.endswith("(resave)") else pair)
                        best, _ = choose(among, rules[c])
                        k = kept[(c, setting, save, edit)]
                        k[0] += best.path.endswith("original")
                        k[1] += 1
                        # ... and kept by the plan, chosen or kept too (finer, a band's caption)
                        other = next(f for f in among if f.path != best.path)
                        k[2] += best.path.endswith("original") or (
                            kept_too(best, other) is not None)
        print(f"\r{n + 1}/{len(files)} originals", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    def share(held: bool = False, **fixed) -> float:
        hits = total = 0
        for (c, setting, save, edit), (h, t, plan_kept) in kept.items():
            h = plan_kept if held else h
            if "edit" not in fixed and edit not in EDIT_NAMES:  # the caption: reported apart
                continue
            key = {"candidate": c, "date": setting, "save": save, "edit": edit}
            if all(key[k] == v for k, v in fixed.items()):
                hits, total = hits + h, total + t
        return hits / total if total else float("nan")

    report = {"command": " ".join(sys.argv), "folder": str(args.folder),
              "count": args.count, "per_package": args.per_package, "seed": args.seed,
              "originals": len(files) - len(skipped),
              "skipped": skipped, "edits": list(EDIT_NAMES), "saves": list(SAVES),
              "dates": list(DATES), "candidates": {},
              "pairs_mapped": mapped[0] if args.picture else None,
              "pairs": mapped[1] if args.picture else None,
              "work_side": args.work_side,
              "bands_read": banded[0] if args.band else None,
              "bands_told": banded[1] if args.band else None,
              "bars_read": barred[0] if args.bars else None,
              "bars_told": barred[1] if args.bars else None,
              "corners_read": cornered[0] if args.corners else None,
              "corners_told": cornered[1] if args.corners else None,
              "resaves": ({k: dict(zip(("asked", "copy_resaved", "original_resaved"), v))
                           for k, v in sorted(resaved.items())} if args.resave else None),
              "siblings": ({"jpeg_originals": siblings[0], "pairs_told": siblings[1],
                            "pairs_carrying": siblings[2],
                            "highest": max(siblings[3], default=None),
                            "shares": sorted(siblings[3])} if args.resave else None)}
    print(f"{report['originals']} originals from {args.folder}, {len(EDIT_NAMES)} edits x "
          f"{len(SAVES)} saves: share of groups (original + copy) whose original is kept")
    if args.picture:
        print(f"picture check maps for {mapped[0]} of {mapped[1]} pairs (the rest: canvas)")
    if args.resave:
        asked = sum(v[0] for v in resaved.values())
        print(f"re-saves asked for {asked} pairs: copy a re-save of the original in "
              f"{sum(v[1] for v in resaved.values())}, the original of the copy in "
              f"{sum(v[2] for v in resaved.values())}; siblings (JPEG originals saved at 90 "
              f"and 95): {siblings[2]} of {siblings[1]} pairs told carry the other, highest "
              f"{max(siblings[3], default=None)}")
    if args.corners:
        print(f"corners read for {cornered[0]} pairs turned apart; they told {cornered[1]} "
              f"apart")
    if args.bars:
        print(f"bars read for {barred[0]} copies (and their originals, where with_bars asks); "
              f"they told {barred[1]} pairs apart "
              f"(the caption is reported apart from the all-edits shares)")
    if args.band:
        print(f"bands read for {banded[0]} one-way stretched pairs; they told {banded[1]} apart")
    print(f"{'keep rules':38s} " + " ".join(f"{d:>7s}" for d in DATES))
    for c in candidates:
        row = {d: share(candidate=c, date=d) for d in DATES}
        per_save = {d: {s: share(candidate=c, date=d, save=s) for s in SAVES} for d in DATES}
        per_edit = {d: {e: share(candidate=c, date=d, edit=e) for e in edits} for d in DATES}
        # the plan keeps the original, the rules' choice or kept too (plan.kept_too)
        held = {d: {e: share(True, candidate=c, date=d, edit=e) for e in edits} for d in DATES}
        report["candidates"][c] = {"by_date": row, "by_save": per_save, "by_edit": per_edit,
                                   "held_by_date": {d: share(True, candidate=c, date=d)
                                                    for d in DATES},
                                   "held_by_edit": held}
        print(f"{c:38s} " + " ".join(f"{row[d]:7.3f}" for d in DATES))
    for c in candidates:
        print(f"\n{c}: by save (dates {', '.join(DATES)})")
        for s in SAVES:
            print(f"  {s:8s} " + " ".join(f"{report['candidates'][c]['by_save'][d][s]:7.3f}"
                                          for d in DATES))
        print(f"{c}: by edit")
        for e in edits:
            print(f"  {e:10s} " + " ".join(f"{report['candidates'][c]['by_edit'][d][e]:7.3f}"
                                            for d in DATES))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
