"""Self-scores on the evaluation pictures (issue 15.1): each picture of data/eval/originals and
data/eval/distinct indexed beside its half-size re-save (JPEG q85); the score of each picture
against itself and against its re-save, under the tapered score and without the taper (knee 1).

    python benchmarks/self_score.py --json benchmarks/results/self_score.json [--model PATH]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT, report, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=ROOT / "data" / "eval")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from simsearch.index import open_index
    from simsearch.scoring import KNEE, adjust

    pictures = sorted(p for sub in ("originals", "distinct") for p in (args.eval_dir / sub).iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / "half"
        half.mkdir()
        pairs = []
        for i, p in enumerate(pictures):
            with Image.open(p) as im:
                im = im.convert("RGB")
                small = im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BICUBIC)
            target = half / f"{i:04d}_{p.stem}.jpg"
            small.save(target, quality=85)
            pairs.append((os.path.abspath(p), str(target)))  # as the index names it (no link resolved)
        index = open_index(Path(tmp) / "index", model=args.model, create=True)
        index.add_paths([args.eval_dir / "originals", args.eval_dir / "distinct", half])
        paths, vectors = index.vectors()
        row = {p: i for i, p in enumerate(paths)}
        offsets = index.background.offsets(vectors)
        a = np.array([row[p] for p, _ in pairs])
        b = np.array([row[h] for _, h in pairs])
        rows, data = [], {}
        for name, knee in (("tapered", KNEE), ("no taper", 1.0)):
            self_scores = adjust((vectors[a] * vectors[a]).sum(1), 2 * offsets[a], knee)
            resave = adjust((vectors[a] * vectors[b]).sum(1), offsets[a] + offsets[b], knee)
            data[name] = {"knee": knee, "self_min": float(self_scores.min()),
                          "self_below_0.9999": int((self_scores < 0.9999).sum()),
                          "resave_min": float(resave.min()),
                          "resave_below_0.95": int((resave < 0.95).sum()),
                          "worst_resave": Path(pictures[int(resave.argmin())]).name}
            rows.append({"score": f"{name} (knee {knee})", **data[name]})
        raw = (vectors[a] * vectors[b]).sum(1)
        data["raw_resave_cosine_min"] = float(raw.min())
        data["raw_resave_below_0.95"] = int((raw < 0.95).sum())  # beyond any score's reach
        data["pictures"] = len(pairs)
        data["model"] = index.model.name
        data["model_id"] = index.model.model_id
    print(f"{len(pairs)} evaluation pictures (originals and distinct set), each with its "
          f"half-size re-save; raw cosine to the re-save: lowest {data['raw_resave_cosine_min']:.4f}, "
          f"{data['raw_resave_below_0.95']} below 0.95")
    print(table(rows, list(rows[0])))
    report("self_score", data, args.json)


if __name__ == "__main__":
    main()
