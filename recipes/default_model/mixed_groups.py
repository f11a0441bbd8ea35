"""Which validation originals a model's dedupe joins: the groups behind calibrate.py's precision.

    python recipes/default_model/mixed_groups.py --model runs/x/model.onnx --threshold 0.86 \
        [--knee K] [--montage mixed.jpg]

calibrate.py counts a pair as right only when both files are one original or its edited copies,
so each group that joins two originals' families costs (copies + 1)^2 pairs of precision. This
lists those groups, as calibrate.py forms them (the same 800 validation images, 4 seeded copies
each, centre linkage, the model's own background): the group's size, its originals, and how
many files of each family it holds. `--montage` pictures the originals side by side, to see
whether they are distinct look-alikes or variants a user would call duplicates.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate import ROOT, embed_validation, find_groups  # noqa: E402
from simsearch.scoring import KNEE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--knee", type=float, default=KNEE, help=f"the score's knee (default {KNEE})")
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--montage", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        v = embed_validation(args.val_dir, args.model, 4, Path(tmp))
    originals = [str(p) for p in v.bench.originals]
    family = v.family
    matrix = np.stack([v.vectors[p] for p in v.ids])
    item_offsets = np.array([v.offsets[p] for p in v.ids], np.float32)
    ids = np.arange(len(v.ids), dtype=np.int64)
    shown: list[int] = []
    for group in find_groups(ids, matrix, item_offsets, ids, args.threshold, "centre", knee=args.knee):
        files = [v.ids[i] for i in group.ids]
        families = sorted({family[f] for f in files})
        if len(families) > 1:
            sizes = [sum(family[f] == fam for f in files) for fam in families]
            print(len(files), [Path(originals[fam]).name for fam in families], sizes)
            shown += families
    if args.montage and shown:
        shown = shown[:60]
        canvas = Image.new("RGB", (1000, (len(shown) + 9) // 10 * 100), "gray")
        for k, fam in enumerate(shown):
            with Image.open(originals[fam]) as im:
                im = im.convert("RGB")
                im.thumbnail((96, 96))
                canvas.paste(im, (k % 10 * 100 + 2, k // 10 * 100 + 2))
        canvas.save(args.montage, quality=80)
        print(f"wrote {args.montage}", file=sys.stderr)


if __name__ == "__main__":
    main()
