"""Distinct look-alikes on validation: rendered letters and digits that are different pictures,
deduped the way the product dedupes, reported as false groups and false pairs.

    python recipes/default_model/lookalikes.py simsearch/models/default.onnx runs/a \
        [--threshold 0.87] [--json out.json]

The evaluation set's distinct-pictures set (benchmarks/quality.py) counts the groups a model
forms among different pictures, but it is evaluation data: a recipe must not be chosen on it.
This is the recipe's own stand-in, built from nothing the evaluation set or the training build
holds: the glyphs 0-8 and the capital letters of the fonts installed with the system
(fonts-dejavu-core, fonts-liberation), each drawn large in three clip-art styles: solid black on
white, a black outline, and a red letter on one yellow badge (the digit-stamp case of the
issue: one template, a different symbol on each). Each set (one font, one style) is indexed on
its own and deduped with the model's background and the given threshold (centre linkage, the
adjusted score: the product's defaults), so every pair grouped is two different symbols called
one picture. Sets are never compared with each other: the same letter in two fonts may fairly
be called a copy.

Left out, because an edit the product forgives turns one into the other: 9 (6 turned 180
degrees), W (M upside down in most sans fonts), Z (N turned 90 degrees), O and I (0 and 1 at
another aspect ratio).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GLYPHS = "012345678ABCDEFGHJKLMNPQRSTUVXY"
STYLES = ("solid", "outline", "badge")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
FONTS = {"dejavu-sans-bold": "DejaVuSans-Bold.ttf", "dejavu-serif": "DejaVuSerif.ttf",
         "liberation-sans": "LiberationSans-Regular.ttf", "liberation-mono": "LiberationMono-Regular.ttf"}
SIZE = 320


def find_fonts(dirs: tuple[Path, ...] = FONT_DIRS) -> dict[str, Path]:
    """The fonts of FONTS that are installed; at least one, or a clear error."""
    found = {}
    for name, file in FONTS.items():
        for d in dirs:
            if (d / file).is_file():
                found[name] = d / file
                break
    if not found:
        raise SystemExit(f"none of {', '.join(FONTS.values())} in {', '.join(map(str, dirs))}: "
                         "install them with: apt-get install fonts-dejavu-core fonts-liberation")
    return found


def render(font: Path, glyph: str, style: str, size: int = SIZE) -> Image.Image:
    """One symbol, centred, 70% of the picture's height, in one of STYLES."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    face = ImageFont.truetype(str(font), int(size * 0.7))
    left, top, right, bottom = draw.textbbox((0, 0), glyph, font=face)
    xy = ((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top)
    if style == "solid":
        draw.text(xy, glyph, font=face, fill="black")
    elif style == "outline":
        draw.text(xy, glyph, font=face, fill="white", stroke_width=size // 64, stroke_fill="black")
    elif style == "badge":
        edge = size // 20
        draw.rounded_rectangle((edge, edge, size - edge, size - edge), radius=size // 8,
                               fill=(250, 220, 90), outline="black", width=size // 50)
        draw.text(xy, glyph, font=face, fill=(200, 40, 40), stroke_width=size // 80,
                  stroke_fill="black")
    else:
        raise ValueError(f"unknown style {style!r}; one of {', '.join(STYLES)}")
    return img


def write_sets(folder: Path, fonts: dict[str, Path], glyphs: str = GLYPHS,
               styles: tuple[str, ...] = STYLES) -> list[Path]:
    """One folder of PNGs per (font, style), named FONT-STYLE/GLYPH.png."""
    sets = []
    for font_name, font in fonts.items():
        for style in styles:
            d = folder / f"{font_name}-{style}"
            d.mkdir(parents=True)
            for glyph in glyphs:
                render(font, glyph, style).save(d / f"{glyph}.png")
            sets.append(d)
    return sets


def score(model: str | None, sets: list[Path], work: Path, threshold: float | None,
          check: bool = True) -> dict:
    """Dedupe each set in its own index (with the picture check unless `check` is False, as
    `simsearch dedupe`); every group is false, and so is every pair in it."""
    from simsearch.index import open_index

    per_set, used, apart = {}, None, 0
    for d in sets:
        index = open_index(work / f"index-{d.name}", model=model, create=True)
        index.add_paths([d])
        report = index.duplicates(threshold, check=check)
        used = report.threshold
        apart += report.check["apart"] if report.check else 0
        groups = [{"glyphs": "".join(sorted(Path(f).stem for f in g.files)),
                   "min_score": round(g.min_score, 4),
                   "unconfirmed": "".join(sorted(Path(f).stem for f in g.unconfirmed))}
                  for g in report.groups]
        per_set[d.name] = {"pictures": index.count(), "false_groups": len(groups),
                           # groups with a member marked "not confirmed by the picture check"
                           "marked_groups": sum(bool(g["unconfirmed"]) for g in groups),
                           "false_pairs": sum(len(g["glyphs"]) * (len(g["glyphs"]) - 1) // 2
                                              for g in groups),
                           "groups": groups}
    by_style = {style: {k: sum(v[k] for name, v in per_set.items() if name.endswith("-" + style))
                        for k in ("false_groups", "false_pairs")}
                for style in STYLES if any(name.endswith("-" + style) for name in per_set)}
    return {"model": str(model), "threshold": used, "sets": len(per_set), "check": check,
            "pairs_set_apart_by_check": apart,
            "pictures": sum(v["pictures"] for v in per_set.values()),
            "false_groups": sum(v["false_groups"] for v in per_set.values()),
            "marked_groups": sum(v["marked_groups"] for v in per_set.values()),
            "false_pairs": sum(v["false_pairs"] for v in per_set.values()),
            "by_style": by_style, "per_set": per_set}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+",
                        help="an .onnx file or a run folder holding model.onnx (its background "
                             "beside it, as compare.py --save-backgrounds leaves it)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="the dedupe threshold (default: each model's own)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="dedupe on scores alone (simsearch dedupe --no-check)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("SIMSEARCH_PRECISION", "fp32")
    fonts = find_fonts()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = write_sets(Path(tmp) / "glyphs", fonts)
        for i, model in enumerate(args.models):
            onnx = Path(model) / "model.onnx" if Path(model).is_dir() else Path(model)
            row = score(str(onnx), sets, Path(tmp) / f"model{i}", args.threshold, args.check)
            row["model"] = model
            rows.append(row)
            styles = ", ".join(f"{s} {v['false_groups']} / {v['false_pairs']}"
                               for s, v in row["by_style"].items())
            print(f"{model}: {row['pictures']} pictures in {row['sets']} sets, dedupe at "
                  f"{row['threshold']}: {row['false_groups']} false groups, {row['false_pairs']} "
                  f"false pairs ({styles}); {row['marked_groups']} groups marked \"not "
                  f"confirmed\"; picture check "
                  f"{'on: ' + str(row['pairs_set_apart_by_check']) + ' pairs set apart' if args.check else 'off'}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
