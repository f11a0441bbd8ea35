"""Ingest throughput on real camera-size JPEGs, split into decode, network, hash and catalog
time, beside pHash hashing (imagehash) of the same files in the same run.

    python benchmarks/ingest.py [--folder DIR] [--model PATH] --json benchmarks/results/ingest.json

Default folder: the >= 6-megapixel JPEG wallpapers (real photographs, 6-24 MP) in the
evaluation packages fetched by recipes/default_model/fetch_data.sh.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import ROOT, report, table

# multiply-accumulates of ResNet-18 per 224x224 image; scales with the pixel count
RESNET18_MACS_224 = 1.814e9


def camera_jpegs(folder: Path, min_pixels: float, limit: int) -> list[Path]:
    from PIL import Image
    found = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in (".jpg", ".jpeg") or not p.is_file():
            continue
        try:
            with Image.open(p) as im:
                if im.size[0] * im.size[1] >= min_pixels:
                    found.append(p)
        except OSError:
            continue
    return found[:limit]


def add_camera_options(parser: argparse.ArgumentParser) -> None:
    """--folder, --min-megapixels and --limit: which files `camera_jpegs` takes."""
    parser.add_argument("--folder", type=Path, default=ROOT / "data" / "eval-extract")
    parser.add_argument("--min-megapixels", type=float, default=6.0)
    parser.add_argument("--limit", type=int, default=200)


def camera_files(args: argparse.Namespace) -> list[Path]:
    """The files `add_camera_options`' options name, or a stop that says how to fetch them."""
    files = camera_jpegs(args.folder, args.min_megapixels * 1e6, args.limit)
    if not files:
        sys.exit(f"no JPEGs of >= {args.min_megapixels} MP under {args.folder}; fetch them with: "
                 "bash recipes/default_model/fetch_data.sh")
    return files


def _has_int8(model) -> bool:
    from simsearch.models import resolve_model
    try:
        resolve_model(model, precision="int8")
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_camera_options(parser)
    parser.add_argument("--model", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    files = camera_files(args)
    import imagehash
    from PIL import Image

    from simsearch.catalog import Catalog
    from simsearch.embedder import Embedder
    from simsearch.files import sha256
    from simsearch.images import load_image
    from simsearch.index import open_index
    from simsearch.models import resolve_model

    ref = resolve_model(args.model)
    embedder = Embedder(ref)
    size = ref.config.input_size
    megapixels = float(np.mean([Image.open(p).size[0] * Image.open(p).size[1] for p in files])) / 1e6
    rows = []

    phash_times = {}
    for p in files:
        start = time.perf_counter()
        with Image.open(p) as im:
            imagehash.phash(im)
        phash_times[p] = time.perf_counter() - start
    phash_s = sum(phash_times.values())
    rows.append({"stage": "pHash (imagehash, full decode, 1 thread)", "img_per_s": len(files) / phash_s})

    workers = args.workers or 2
    def decode(p):
        return embedder.prepare(load_image(p, target=size).image)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(decode, files))
    decode_s = time.perf_counter() - start
    rows.append({"stage": f"decode (draft + resize, {workers} threads)", "img_per_s": len(files) / decode_s})

    batch = np.stack(arrays)
    macs = RESNET18_MACS_224 * (size / 224) ** 2 if ref.config.backbone == "resnet18" else float("nan")
    precisions = ["fp32"] + (["int8"] if ref.precision == "int8" or _has_int8(args.model) else [])
    for precision in precisions:
        chosen = resolve_model(args.model, precision=precision)
        net = Embedder(chosen)
        net.embed_arrays(batch[:8])  # warm-up
        reps = max(1, 256 // len(batch))
        start = time.perf_counter()
        for _ in range(reps):
            for s in range(0, len(batch), 32):
                net.embed_arrays(batch[s:s + 32])
        net_s = (time.perf_counter() - start) / reps
        # which int8 file this CPU runs: NAME.int8.onnx (VNNI) or NAME.int8-avx2.onnx
        variant = "" if precision == "fp32" else f", {chosen.onnx_path.name}"
        rows.append({"stage": f"network {precision} (ONNX Runtime, {size} px, batch 32{variant})",
                     "img_per_s": len(files) / net_s,
                     "gflop_per_s": 2 * macs * len(files) / net_s / 1e9})

    # The rest of the per-file work: the content hash (which identifies moved and copied files;
    # the files are in the page cache by now, as they are when ingest hashes what it decodes)
    # and the catalog rows (one SQLite transaction per batch, as ingest commits them).
    start = time.perf_counter()
    hashes = [sha256(p) for p in files]
    rows.append({"stage": "content hash (SHA-256, 1 thread)",
                 "img_per_s": len(files) / (time.perf_counter() - start)})
    vectors = embedder.embed_arrays(batch)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite")
        with catalog.transaction():  # rows name the model that made their vectors, as ingest's do
            catalog.set_model(json.dumps({"name": "default", "id": "benchmark", "config": {}}))
        start = time.perf_counter()
        for s in range(0, len(files), 32):
            with catalog.transaction():
                for i in range(s, min(s + 32, len(files))):
                    catalog.insert(str(files[i]), 1, 1, hashes[i], 1, 1, vectors[i])
        rows.append({"stage": "catalog (SQLite rows, a transaction per 32)",
                     "img_per_s": len(files) / (time.perf_counter() - start)})
        catalog.close()

    with tempfile.TemporaryDirectory() as tmp:
        index = open_index(Path(tmp) / "idx", model=args.model, create=True)
        start = time.perf_counter()
        index.add_paths(files, workers=args.workers)
        e2e_s = time.perf_counter() - start
    rows.append({"stage": f"simsearch index (end to end, {ref.precision})",
                 "img_per_s": len(files) / e2e_s})
    for row in rows:
        row["vs_pHash"] = row["img_per_s"] / rows[0]["img_per_s"]

    # Progressive JPEGs (common for web images, rare from cameras) decode slowly even at 1/8
    # scale: every scan must be Huffman-decoded. Split the end-to-end figure by kind.
    kinds = {"baseline": [p for p in files if not is_progressive(p)],
             "progressive": [p for p in files if is_progressive(p)]}
    split = []
    for kind, subset in kinds.items():
        if not subset:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            index = open_index(Path(tmp) / "idx", model=args.model, create=True)
            start = time.perf_counter()
            index.add_paths(subset, workers=args.workers)
            seconds = time.perf_counter() - start
        phash_rate = len(subset) / sum(phash_times[p] for p in subset)
        split.append({"jpegs": kind, "files": len(subset), "pHash_img_per_s": phash_rate,
                      "index_img_per_s": len(subset) / seconds,
                      "vs_pHash": len(subset) / seconds / phash_rate})
    print(f"{len(files)} JPEGs, mean {megapixels:.1f} MP, model {ref.name} ({ref.config.backbone} "
          f"{size} px); network {2 * macs / 1e9:.2f} GFLOP per image")
    print(table(rows, ["stage", "img_per_s", "vs_pHash", "gflop_per_s"]))
    print()
    print(table(split, list(split[0])))
    report("ingest", {"files": len(files), "mean_megapixels": megapixels, "rows": rows,
                      "by_kind": split, "gflop_per_image": 2 * macs / 1e9, "model": ref.name},
           args.json)


def is_progressive(path: Path) -> bool:
    from PIL import Image
    with Image.open(path) as im:
        return bool(im.info.get("progressive") or im.info.get("progression"))


if __name__ == "__main__":
    main()
