"""Trial: several region vectors per image for heavy crops and picture-in-picture, measured on the
validation images (never the evaluation set) with the shipped network, no retraining.

    python recipes/default_model/regions_trial.py [--model simsearch/models/default.safetensors]
        [--json recipes/default_model/trials/regions.json]

Each image gets its global vector (as simsearch embeds it) and five region vectors, the four
corners and the centre at a side of 0.7 (area 0.5, the size of the crop50 edit), made two ways:
- "pooled": the trunk's feature map of the whole image pooled over a 4x4 window of its 5x5
  cells, then projected and normalised like the global vector (no extra network cost);
- "cropped": the region cut from the image and embedded on its own (five more network passes).
A pair scores max(cos(global, global), cos(global, regions of the other) - penalty), both ways
round, so a crop of an indexed image finds it through the image's region and a copy that holds
the image (picture-in-picture) through its own. Reported per variant: Recall@1 of the edited
copies (4 seeded edits per image, as ship.py) among the originals, each weak edit's Recall@1, and
the pairs of different validation originals above 0.85 and 0.90 (look-alikes that dedupe would
join; raw cosine, no background adjustment, alike for every variant).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simsearch.evaluate import make_benchmark  # noqa: E402
from simsearch.images import load_image, resize_square  # noqa: E402

SIDE = 0.7
CORNERS = ((0.0, 0.0), (1 - SIDE, 0.0), (0.0, 1 - SIDE), (1 - SIDE, 1 - SIDE),
           ((1 - SIDE) / 2, (1 - SIDE) / 2))
WEAK_EDITS = ("crop50", "crop70", "combo", "pip", "rotate15", "rotate90")
PENALTIES = (0.0, 0.03)
QUERY_PENALTIES = (0.0, 0.02, 0.05)


def regions(img, layout=tuple((x, y, SIDE) for x, y in CORNERS)):
    """The windows (x, y, side), fractions of the picture's sides, cut from `img`."""
    w, h = img.size
    return [img.crop((int(x * w), int(y * h), int((x + s) * w), int((y + s) * h)))
            for x, y, s in layout]


class Net:
    """The torch network split where region pooling needs it: feature map, pooling, projection."""

    def __init__(self, path: str):
        import torch
        from simsearch.model import load_model
        self.torch, self.net = torch, load_model(path)
        c = self.net.config
        self.size = c.input_size
        self.mean = torch.tensor(c.mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(c.std).view(1, 3, 1, 1) * 255

    def features(self, images) -> np.ndarray:
        torch, out = self.torch, []
        for i in range(0, len(images), 64):
            batch = np.stack([np.asarray(resize_square(im, self.size), np.uint8)
                              for im in images[i:i + 64]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
            with torch.no_grad():
                out.append(self.net.forward_features((x - self.mean) / self.std).numpy())
        return np.concatenate(out)

    def pooled(self, fmap: np.ndarray, y0=0, y1=None, x0=0, x1=None) -> np.ndarray:
        p = float(self.net.pool.p.detach().clamp(min=1.0))
        g = (np.clip(fmap[:, :, y0:y1, x0:x1], 1e-6, None) ** p).mean(axis=(2, 3)) ** (1 / p)
        v = g @ self.net.proj.weight.detach().numpy().T + self.net.proj.bias.detach().numpy()
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def vectors(net: Net, images) -> dict[str, np.ndarray]:
    """Global vectors (n, d) and both kinds of region vectors (n, 5, d)."""
    fmap = net.features(images)
    n, cells = len(images), fmap.shape[-1]
    s = round(SIDE * cells + 0.5)  # 4 of 5 cells
    windows = [(0, s, 0, s), (0, s, cells - s, cells), (cells - s, cells, 0, s),
               (cells - s, cells, cells - s, cells)]
    mid = (cells - s) // 2
    windows.append((mid, mid + s, mid, mid + s))
    pooled = np.stack([net.pooled(fmap, *w) for w in windows], 1)
    crops = net.pooled(net.features([c for im in images for c in regions(im)]))
    return {"global": net.pooled(fmap), "pooled": pooled, "cropped": crops.reshape(n, 5, -1)}


def pair_scores(a_global, a_regions, b_global, b_regions, penalty: float) -> np.ndarray:
    """max(global cosine, best region cosine - penalty) over a's and b's regions, both ways."""
    s = a_global @ b_global.T
    if a_regions is None:
        return s
    into_b = np.einsum("ad,brd->abr", a_global, b_regions).max(2)
    into_a = np.einsum("ard,bd->abr", a_regions, b_global).max(2)
    return np.maximum(s, np.maximum(into_a, into_b) - penalty)


def query_side_scores(q_global, q_regions, r_global, penalty: float) -> np.ndarray:
    """Regions of the query alone (the index keeps one vector per image, ingest unchanged):
    max(global cosine, best query region against the reference's global vector - penalty)."""
    into_r = np.einsum("ard,bd->abr", q_regions, r_global).max(2)
    return np.maximum(q_global @ r_global.T, into_r - penalty)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "simsearch/models/default.safetensors"))
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    originals = sorted(p for p in args.val_dir.iterdir() if p.is_file()) if args.val_dir.is_dir() else []
    if len(originals) < 2:
        sys.exit(f"{args.val_dir}: no validation images; build them with "
                 "python recipes/default_model/build_data.py")
    net = Net(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        bench = make_benchmark(originals, Path(tmp), seed=0, per_image=args.per_image)
        refs = list(bench.originals)
        q = vectors(net, [load_image(it.query).image.convert("RGB") for it in bench.items])
    r = vectors(net, [load_image(p).image.convert("RGB") for p in refs])
    true = np.array([refs.index(it.original) for it in bench.items])
    edits = np.array([it.edit for it in bench.items])
    rows = []
    for kind in ("none", "pooled", "cropped"):
        for penalty in (PENALTIES if kind != "none" else (0.0,)):
            qr, rr = (None, None) if kind == "none" else (q[kind], r[kind])
            hit = pair_scores(q["global"], qr, r["global"], rr, penalty).argmax(1) == true
            apart = pair_scores(r["global"], rr, r["global"], rr, penalty)
            upper = apart[np.triu_indices(len(refs), 1)]
            row = {"regions": kind, "penalty": penalty, "recall_at_1": round(float(hit.mean()), 4),
                   "per_edit": {e: round(float(hit[edits == e].mean()), 4)
                                for e in WEAK_EDITS if (edits == e).any()},
                   "originals_pairs_above": {t: int((upper > t).sum()) for t in (0.85, 0.9)}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for penalty in QUERY_PENALTIES:  # query-side regions: search ranking only, dedupe unchanged
        hit = query_side_scores(q["global"], q["cropped"], r["global"], penalty).argmax(1) == true
        row = {"regions": "cropped, query side only", "penalty": penalty,
               "recall_at_1": round(float(hit.mean()), 4),
               "per_edit": {e: round(float(hit[edits == e].mean()), 4)
                            for e in WEAK_EDITS if (edits == e).any()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        from simsearch.files import sha256  # a model's id is its weights file's hash
        args.json.write_text(json.dumps({"model": args.model, "model_id": sha256(args.model),
                                         "val_dir": str(args.val_dir),
                                         "queries": len(bench.items), "originals": len(refs),
                                         "side": SIDE, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
