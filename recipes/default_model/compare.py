"""Compare candidate models side by side on the validation images (never the evaluation set):
the figures a stage of the recipe is kept or dropped on.

    python recipes/default_model/compare.py simsearch/models/default.onnx runs/a runs/b \
        [--json out.json]

Each model (an .onnx file, or a run folder holding model.onnx) gets a background set built as
ship.py builds one (`ship.BACKGROUND_IMAGES` seeded training images) and used at the strength the shipped model
uses (beta 0.75, delta 0.2), so that every candidate is scored the same way; then the
validation scorecard of ship.py (800 images, 4 seeded edited copies each): uAP, Recall@1 and
each edit's Recall@1 of the copies among the originals, and the dedupe threshold sweep,
reported as the recall at the lowest threshold reaching pairwise precision 0.95 (ship.py's
rule) and 0.97 (the issue's target).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ship import background_vectors  # noqa: E402
from simsearch.models import resolve_model  # noqa: E402
from simsearch.scorecard import run_eval  # noqa: E402
from simsearch.scoring import background_path, build_background  # noqa: E402

SWEEP = [round(0.70 + 0.01 * i, 2) for i in range(29)]
WEAK_EDITS = ("crop50", "crop70", "pip", "rotate90", "blur", "resize25", "brightness")


def onnx_of(model: Path) -> Path:
    """A model given as an .onnx file or as a run folder holding model.onnx."""
    return model / "model.onnx" if model.is_dir() else model


def score(model: Path, val_dir: Path, per_image: int, save_background: bool = False) -> dict:
    onnx = onnx_of(model)
    ref = resolve_model(onnx, precision="fp32")
    background = build_background(background_vectors(ROOT / "data" / "train", onnx),
                                  ref.model_id).with_params(0.75, 0.2)
    if save_background:  # beside the model, where calibrate.py --model and the index look for it
        background.save(background_path(onnx))
    report = run_eval(val_dir, model=str(onnx), baselines=(), per_image=per_image,
                      sweep=SWEEP, background=background, threshold=0.85)

    def recall_at(precision: float) -> dict | None:
        good = [s for s in report.sweep if s.precision >= precision]
        return None if not good else {"threshold": good[0].threshold,
                                      "recall": round(good[0].recall, 4)}

    metrics = report.metrics
    return {"model": str(model), "uap": round(metrics.uap, 4),
            "recall_at_1": round(metrics.recall_at_1, 4),
            "per_edit": {k: round(v, 4) for k, v in sorted(metrics.per_edit.items())},
            "dedupe_p95": recall_at(0.95), "dedupe_p97": recall_at(0.97)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--save-backgrounds", action="store_true",
                        help="keep each candidate's background as model.background.npz beside it, "
                             "for calibrate.py --model")
    args = parser.parse_args()
    os.environ["SIMSEARCH_PRECISION"] = "fp32"
    if args.save_backgrounds:  # refused before any work, not after the first models' rows
        taken = [background_path(onnx_of(m)) for m in args.models]
        taken = [str(t) for t in taken if t.exists()]
        if taken:
            sys.exit(f"{', '.join(taken)} exist; not overwritten (a shipped model's background is "
                     "ship.py's to write): move them away or leave out --save-backgrounds")
    rows = []
    for model in args.models:
        row = score(model, args.val_dir, args.per_image, args.save_backgrounds)
        rows.append(row)
        weak = " ".join(f"{e} {row['per_edit'].get(e, float('nan')):.3f}" for e in WEAK_EDITS)
        print(f"{model}: uAP {row['uap']:.4f} R@1 {row['recall_at_1']:.4f} | {weak} | "
              f"dedupe P>=0.95 {row['dedupe_p95']} P>=0.97 {row['dedupe_p97']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
