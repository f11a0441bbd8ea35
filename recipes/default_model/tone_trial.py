"""Trial: a colour original kept beside a kept toned or faded copy of it (`lacks_colour`).

The rule and how it was chosen: trials/keep-toned-rule.md. Each validation original (the 800
of data/val, or a seeded sample) is saved as a JPEG (quality 90), and each of its copies
below too; both are read as a plan reads them (`simsearch.resave.has_colour`), and
`simsearch.keeprules.lacks_colour` is asked both ways round:
- the copy kept: is the original kept too (wanted for the toned and faded copies);
- the original kept: is the copy kept too (a cost for every other edit: a copy the plan no
  longer acts on).

    python recipes/default_model/tone_trial.py [--sample 200] \
        [--json recipes/default_model/trials/keep-toned-val.json]

Copies: sepia (ImageOps.colorize of the grey picture), a blue tint (the grey picture blended
25% with a blue), a warm filter (the picture blended 30% with orange: its colours still vary),
the picture at 30% and 50% of its saturation (ImageEnhance.Color), at 150% and 200%, and the
evaluation's edits (simsearch.edits, seeded). Originals whose colours vary less than
VARIETY_LEVELS at one brightness (grey, or toned themselves) can lose no colour to a copy; the
shares are reported over all originals and over those that can.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simsearch.edits import EDIT_NAMES, apply_edit  # noqa: E402
from simsearch.keeprules import VARIETY_LEVELS, _tones_of, lacks_colour  # noqa: E402
from simsearch.planfile import PlanFile  # noqa: E402
from simsearch.resave import has_colour  # noqa: E402

WORK_SIDE = 512  # the originals are reduced to this many pixels on the long side


def _sepia(img: Image.Image) -> Image.Image:
    return ImageOps.colorize(img.convert("L"), "#2b1a0e", "#f5e6c8", mid="#a07850")


def _tint(img: Image.Image) -> Image.Image:
    return Image.blend(img.convert("L").convert("RGB"), Image.new("RGB", img.size, (40, 90, 160)),
                       0.25)


def _warm(img: Image.Image) -> Image.Image:
    return Image.blend(img, Image.new("RGB", img.size, (255, 150, 40)), 0.3)


def _saturation(k: float):
    return lambda img: ImageEnhance.Color(img).enhance(k)


def _duotone(img: Image.Image) -> Image.Image:
    """A two-colour gradient map: dark blue to orange."""
    return ImageOps.colorize(img.convert("L"), (30, 20, 90), (250, 170, 60))


def _colorize_mid(img: Image.Image) -> Image.Image:
    return ImageOps.colorize(img.convert("L"), "black", "white", mid="#a0784a")


def _split_tone(img: Image.Image) -> Image.Image:
    """Shadows toward blue, highlights toward orange (a split tone)."""
    return ImageOps.colorize(img.convert("L"), (10, 25, 60), (255, 235, 200), mid=(128, 120, 115))


def _sepia_caption(img: Image.Image) -> Image.Image:
    """A sepia with a short red caption near its foot."""
    from PIL import ImageDraw
    out = _sepia(img)
    w, h = out.size
    ImageDraw.Draw(out).text((w // 10, h * 4 // 5), "Farm 1952", fill=(200, 30, 30),
                             font_size=max(10, h // 12))
    return out


WANTED = {"sepia": _sepia, "tint": _tint, "fade30": _saturation(0.3), "duotone": _duotone,
          "colorize_mid": _colorize_mid, "split_tone": _split_tone,
          "sepia_caption": _sepia_caption}
OTHERS = {"warm": _warm, "fade50": _saturation(0.5), "vivid150": _saturation(1.5),
          "vivid200": _saturation(2.0)}


def _file(path: Path) -> PlanFile:
    return replace(PlanFile(path=str(path), size=0, mtime_ns=0, sha256="", width=1, height=1),
                   tones=_tones_of(has_colour(path)))  # (as a plan records them)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--sample", type=int, default=200, help="originals (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.val_dir.iterdir() if p.is_file())
    if args.sample:
        files = random.Random(args.seed).sample(files, min(args.sample, len(files)))
    edits = {**WANTED, **OTHERS, **{e: (lambda name: lambda img: apply_edit(
        name, img, random.Random(1)))(e) for e in EDIT_NAMES}}
    counts = {e: {"originals": 0, "colourful": 0, "original_kept_too": 0,
                  "original_kept_too_colourful": 0, "copy_kept_too": 0} for e in edits}
    with tempfile.TemporaryDirectory() as tmp:
        for n, path in enumerate(files):
            img = Image.open(path).convert("RGB")
            img.thumbnail((WORK_SIDE, WORK_SIDE))
            original = Path(tmp) / "original.jpg"
            img.save(original, quality=90)
            o = _file(original)
            colourful = o.tones is not None and o.tones[1] >= VARIETY_LEVELS
            for e, edit in edits.items():
                copy = Path(tmp) / "copy.jpg"
                buf = io.BytesIO()
                edit(img).convert("RGB").save(buf, "JPEG", quality=90)
                copy.write_bytes(buf.getvalue())
                c = _file(copy)
                row = counts[e]
                row["originals"] += 1
                row["colourful"] += colourful
                told = lacks_colour(c, o) is not None  # the copy kept: the original too?
                row["original_kept_too"] += told
                row["original_kept_too_colourful"] += told and colourful
                row["copy_kept_too"] += lacks_colour(o, c) is not None
            print(f"\r{n + 1}/{len(files)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    report = {"command": " ".join(sys.argv), "sample": args.sample, "seed": args.seed,
              "counts": counts, "grey": _grey_scans(files), "dark": _dark(files)}
    print(f"{'copy':11s} {'copy kept: original too':>24s} {'(of colourful)':>15s} "
          f"{'original kept: copy too':>24s}")
    for e, row in counts.items():
        print(f"{e:11s} {row['original_kept_too'] / row['originals']:24.3f} "
              f"{row['original_kept_too_colourful'] / max(row['colourful'], 1):15.3f} "
              f"{row['copy_kept_too'] / row['originals']:24.3f}"
              + ("   (wanted)" if e in WANTED else ""))
    dark = report["dark"]
    print(f"dark originals (mean brightness about 25/255) kept beside their kept sepia: "
          f"{dark['kept_too']}/{dark['originals']} ({dark['colourful']} with colour to lose: "
          f"{dark['kept_too_colourful']})")
    grey = report["grey"]
    print(f"\ngrey scans: a colour mark kept beside its grey PNG "
          f"{grey['signed_kept_too']}/{grey['scans']} (signature), "
          f"{grey['stamped_kept_too']}/{grey['scans']} (stamp); an edited copy of a grey "
          f"original kept beside it for a part in colour:")
    for e, n in grey["copy_kept_too"].items():
        print(f"  {e:11s} {n / grey['scans']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def _dark(files: list[Path]) -> dict:
    """Each original darkened to a mean brightness of about 25/255 (a dusk or night photo),
    beside a sepia PNG of it: is it kept beside the kept sepia."""
    from PIL import ImageStat
    out = {"originals": 0, "colourful": 0, "kept_too": 0, "kept_too_colourful": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            img = Image.open(path).convert("RGB")
            img.thumbnail((WORK_SIDE, WORK_SIDE))
            mean = ImageStat.Stat(img.convert("L")).mean[0]
            if mean < 30:
                continue  # (already dark)
            img = ImageEnhance.Brightness(img).enhance(25 / mean)
            original, sepia = Path(tmp) / "dark.jpg", Path(tmp) / "sepia.png"
            img.save(original, quality=90)
            _sepia(img).save(sepia)
            o = _file(original)
            colourful = o.tones is not None and o.tones[1] >= VARIETY_LEVELS
            told = lacks_colour(_file(sepia), o) is not None
            out["originals"] += 1
            out["colourful"] += colourful
            out["kept_too"] += told
            out["kept_too_colourful"] += told and colourful
    return out


def _mark(img: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """The picture with a thin blue signature (a stroke 1/300 of its width wide across a
    sixth of it) or a small red stamp (a ring a twentieth of its width across) drawn on it."""
    from PIL import ImageDraw
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    x, y = rng.uniform(0.1, 0.6) * w, rng.uniform(0.5, 0.85) * h
    if kind == "signature":
        points = [(x + i * w / 60, y + rng.uniform(-1, 1) * h / 40) for i in range(11)]
        draw.line(points, fill=(20, 40, 190), width=max(1, round(w / 300)))
    else:
        r = w / 40
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(200, 30, 30),
                     width=max(1, round(w / 200)))
    return out


def _grey_scans(files: list[Path]) -> dict:
    """Each original made grey (a scan): with a signature or a stamp in colour as a JPEG
    (quality 85) beside its grey PNG, is it kept beside the kept PNG (wanted); and each
    evaluation edit of the grey picture (JPEG 90), is it kept beside the grey original for a
    part in colour ("part": a cost)."""
    out = {"scans": 0, "signed_kept_too": 0, "stamped_kept_too": 0,
           "copy_kept_too": {e: 0 for e in EDIT_NAMES}}
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            img = Image.open(path).convert("L").convert("RGB")
            img.thumbnail((WORK_SIDE * 2, WORK_SIDE * 2))
            out["scans"] += 1
            png = Path(tmp) / "scan.png"
            img.convert("L").save(png)
            kept = _file(png)
            for kind, key in (("signature", "signed_kept_too"), ("stamp", "stamped_kept_too")):
                marked = Path(tmp) / "marked.jpg"
                _mark(img, kind, rng).save(marked, quality=85)
                told = lacks_colour(kept, _file(marked))
                out[key] += told is not None and told[0] == "part"
            original = Path(tmp) / "grey.jpg"
            img.save(original, quality=90)
            o = _file(original)
            for e in EDIT_NAMES:
                copy = Path(tmp) / "copy.jpg"
                apply_edit(e, img, random.Random(1)).convert("RGB").save(copy, quality=90)
                told = lacks_colour(o, _file(copy))
                out["copy_kept_too"][e] += told is not None and told[0] == "part"
    return out


if __name__ == "__main__":
    main()
