"""Candidate variant pairs among the validation originals, to be judged by eye.

    python recipes/default_model/val_variants.py --model simsearch/models/default.onnx \
        --model runs/x/model.onnx [--above 0.85] [--montage-dir pairs/] [--json pairs.json]

The validation split keeps apart originals whose pHash differs by more than 6 bits, so a few of
its "different pictures" are variants of one picture (a texture in two colours, two pieces of one
puzzle). calibrate.py's strict measure counts every pair of them as false, which charges a model
for grouping what a user would call duplicates. This lists every pair of validation originals
that any of the given models scores at or above `--above` (raw cosine, so no model's background
decides what is looked at) and draws the pairs side by side, numbered, ten to a sheet. The
pairs judged to be variants of one picture go, by name, into a labels file
(trials/val-variants.json) that `calibrate.py --variants` reads: it merges their families for
every model alike.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ship import embed_files  # noqa: E402
from simsearch.errors import SimsearchError  # noqa: E402

PER_SHEET = 10
THUMB = 160


def candidate_pairs(scores: dict[str, np.ndarray], above: float) -> list[tuple[int, int]]:
    """Pairs (i < j) that any model's score matrix puts at or above `above`, highest first."""
    best = np.max(np.stack(list(scores.values())), axis=0)
    i, j = np.nonzero(np.triu(best >= above, 1))
    order = np.argsort(-best[i, j], kind="stable")
    return list(zip(i[order].tolist(), j[order].tolist()))


def draw_sheets(files: list[Path], pairs: list[tuple[int, int]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    sheets = []
    for start in range(0, len(pairs), PER_SHEET):
        chunk = pairs[start:start + PER_SHEET]
        canvas = Image.new("RGB", (2 * THUMB + 60, len(chunk) * (THUMB + 8)), "gray")
        draw = ImageDraw.Draw(canvas)
        for row, (i, j) in enumerate(chunk):
            y = row * (THUMB + 8)
            draw.text((4, y + THUMB // 2), str(start + row), fill="white")
            for col, k in enumerate((i, j)):
                with Image.open(files[k]) as im:
                    im = im.convert("RGB")
                    im.thumbnail((THUMB, THUMB))
                    canvas.paste(im, (50 + col * (THUMB + 5), y))
        sheet = out / f"pairs-{start // PER_SHEET:02d}.png"
        canvas.save(sheet)
        sheets.append(sheet)
    return sheets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a model (.onnx); repeat to take the union of several models' pairs")
    parser.add_argument("--above", type=float, default=0.85)
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--montage-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.val_dir.iterdir() if p.suffix.lower() in (".jpg", ".png")) \
        if args.val_dir.is_dir() else []
    if len(files) < 2:
        sys.exit(f"{args.val_dir}: no validation images; run: python recipes/default_model/build_data.py")
    scores = {}
    for model in args.model:
        try:
            vectors = embed_files(files, Path(model))
        except SimsearchError as e:
            sys.exit(str(e))
        scores[model] = vectors @ vectors.T
    pairs = candidate_pairs(scores, args.above)
    rows = [{"n": n, "a": files[i].name, "b": files[j].name,
             "cosine": {m: round(float(s[i, j]), 4) for m, s in scores.items()}, "variant": None}
            for n, (i, j) in enumerate(pairs)]
    for row in rows:
        print(row["n"], row["a"], row["b"], " ".join(f"{c:.3f}" for c in row["cosine"].values()))
    if args.montage_dir:
        for sheet in draw_sheets(files, pairs, args.montage_dir):
            print(f"wrote {sheet}", file=sys.stderr)
    if args.json:  # a labels file to fill in: set each "variant" to true or false by eye
        args.json.write_text(json.dumps({"pairs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
