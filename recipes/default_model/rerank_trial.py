"""Trial: re-rank a search's best candidates by the query's own cut regions, measured on the
validation images (never the evaluation set) with the shipped network, no retraining.

    python recipes/default_model/rerank_trial.py [--model M.safetensors] [--background B.npz]
        [--json recipes/default_model/trials/regions-query-rerank.json]

The index keeps one vector an image (ingest unchanged). Each of the 3,200 edited copies (4 seeded
edits per validation image, as regions_trial.py) is searched among the 800 originals by the
adjusted score (as simsearch.scoring.adjust, on the torch network's vectors); then, within its K best candidates only, a candidate scores the best
of that and its best query region's adjusted score less a penalty. Regions cut from the query:
"c70x5" the four corners and the centre at 0.7 of the side, "s55x9" a 3 x 3 grid at 0.55 of the
side (the picture-in-picture edit pastes the picture at 0.4-0.7 of the side), and both. Rows:
Recall@1 and misses per edit for each K and penalty. Single-threaded, so that it can run
beside a training run.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipes" / "default_model"))

from regions_trial import CORNERS, SIDE, Net, regions  # noqa: E402
from simsearch.errors import ModelError  # noqa: E402
from simsearch.evaluate import make_benchmark  # noqa: E402
from simsearch.files import sha256  # noqa: E402
from simsearch.images import load_image  # noqa: E402
from simsearch.scoring import adjust, load_background  # noqa: E402

TOP_K = (2, 3, 5, 10, 800)
PENALTIES = (0.0, 0.02, 0.05, 0.1)


def grid(side: float, n: int) -> list[tuple[float, float, float]]:
    """n x n windows of `side` (a fraction of each side) spread from corner to corner."""
    steps = [i * (1 - side) / (n - 1) for i in range(n)]
    return [(x, y, side) for y in steps for x in steps]


# c70x5: regions_trial.py's windows (the four corners and the centre at 0.7 of the side)
LAYOUTS = {"c70x5": [(x, y, SIDE) for x, y in CORNERS], "s55x9": grid(0.55, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "simsearch/models/default.safetensors"))
    parser.add_argument("--background", default=str(ROOT / "simsearch/models/default.background.npz"))
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    originals = sorted(p for p in args.val_dir.iterdir() if p.is_file()) if args.val_dir.is_dir() else []
    if len(originals) < 2:
        sys.exit(f"{args.val_dir}: no validation images; build them with "
                 "python recipes/default_model/build_data.py")
    net, model_id = Net(args.model), sha256(args.model)
    try:
        background = load_background(args.background, model_id, net.net.config.dim)
    except ModelError as e:
        sys.exit(f"{e} (give --background the model's own background file)")
    with tempfile.TemporaryDirectory() as tmp:
        bench = make_benchmark(originals, Path(tmp), seed=0, per_image=args.per_image)
        queries = [load_image(it.query).image.convert("RGB") for it in bench.items]
    refs = list(bench.originals)
    r_vec = net.pooled(net.features([load_image(p).image.convert("RGB") for p in refs]))
    q_vec = net.pooled(net.features(queries))
    true = np.array([refs.index(it.original) for it in bench.items])
    edits = np.array([it.edit for it in bench.items])
    r_off = background.offsets(r_vec)
    scores = adjust(q_vec @ r_vec.T, background.offsets(q_vec)[:, None] + r_off[None, :])
    regional = {}
    for name, layout in LAYOUTS.items():
        v = net.pooled(net.features([c for im in queries for c in regions(im, layout)]))
        off = background.offsets(v).reshape(len(queries), len(layout))
        v = v.reshape(len(queries), len(layout), -1)
        cos = np.einsum("qrd,bd->qbr", v, r_vec)
        regional[name] = adjust(cos, off[:, None, :] + r_off[None, :, None]).max(2)
    regional["c70x5+s55x9"] = np.maximum(regional["c70x5"], regional["s55x9"])

    def row(s: np.ndarray, what: str) -> dict:
        miss = s.argmax(1) != true
        out = {"what": what, "recall_at_1": round(float(1 - miss.mean()), 4), "misses": int(miss.sum()),
               "per_edit_misses": {e: int(miss[edits == e].sum())
                                   for e in sorted(set(edits)) if miss[edits == e].any()}}
        print(json.dumps(out), flush=True)
        return out

    rows = [row(scores, "global (adjusted)")]
    order = np.argsort(-scores, 1)
    for name, k, penalty in itertools.product(regional, TOP_K, PENALTIES):
        top = np.zeros(scores.shape, bool)
        np.put_along_axis(top, order[:, :k], True, 1)
        rows.append(row(np.where(top, np.maximum(scores, regional[name] - penalty), scores),
                        f"{name} top{k} pen{penalty}"))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "model_id": model_id,
                                         "val_dir": str(args.val_dir),
                                         "queries": len(queries), "originals": len(refs),
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
