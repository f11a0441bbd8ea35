"""Query latency: a cold `simsearch query` process and a warm in-process query, on indexes of
10k and 100k vectors (synthetic vectors with catalog rows, real model for the query image).
Also `simsearch --help` wall time.

    python benchmarks/query.py --sizes 10000 100000 --json benchmarks/results/query.json
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, report, table


def build_index(folder: Path, n: int, model: str | None) -> None:
    """n random unit vectors committed as ingest commits them: catalog rows with their score
    offsets, then the store's one commit path (vectors.faiss, manifest)."""
    import json

    from simsearch.index import open_index
    from simsearch.vectors import VectorIndex

    index = open_index(folder, model=model, create=True)
    ref = index.model
    record = {"name": ref.name, "id": ref.model_id, "config": ref.config.to_dict()}
    background = index.background
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, ref.config.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    offsets = (background.offsets(vectors) if background is not None
               else np.zeros(n, np.float32))
    with index.store.writer() as store:
        catalog = store.catalog(readonly=False)
        with catalog.transaction():
            catalog.set_model(json.dumps(record))
            catalog.set_meta("scoring", "cosine" if background is None else background.fingerprint)
            for i in range(n):
                catalog.insert(f"/photos/{i // 1000:04d}/img{i:07d}.jpg", 1000 + i, i,
                               f"{i:064x}", 4000, 3000, vectors[i], float(offsets[i]))
        store_vectors = VectorIndex(ref.config.dim)
        store_vectors.add(np.arange(1, n + 1, dtype=np.int64), vectors)
        store.commit(catalog, store_vectors, record, catalog.get_meta("scoring"))
        catalog.close()


def wall(cmd: list[str], runs: int, env: dict) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--model", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from simsearch.demo import picture
    from simsearch.index import open_index

    exe = shutil.which("simsearch")
    base = [exe] if exe else [sys.executable, "-m", "simsearch.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = [{"what": "simsearch --help", "n": None,
             "seconds": wall(base + ["--help"], args.runs, env)}]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        query = tmp / "query.jpg"
        picture(1, (4000, 3000)).save(query, quality=90)
        for n in args.sizes:
            folder = tmp / f"idx{n}"
            build_index(folder, n, args.model)
            cmd = base + ["query", str(query), "-k", "10", "--index", str(folder)]
            wall(cmd, 1, env)  # first run may export/cache the model; not counted
            rows.append({"what": "cold query process (12 MP JPEG, k=10)", "n": n,
                         "seconds": wall(cmd, args.runs, env)})
            index = open_index(folder, model=args.model)
            index.search([query], k=10)
            times = []
            for _ in range(20):
                start = time.perf_counter()
                index.search([query], k=10)
                times.append(time.perf_counter() - start)
            rows.append({"what": "warm in-process query (12 MP JPEG, k=10)", "n": n,
                         "seconds": statistics.median(times)})
            vec = index.embedder.embed_images([picture(2)])
            times = []
            for _ in range(50):
                start = time.perf_counter()
                index.search_vectors(vec, k=10)
                times.append(time.perf_counter() - start)
            rows.append({"what": "warm search only (vector in, k=10)", "n": n,
                         "seconds": statistics.median(times)})
    for row in rows:
        row["ms"] = row["seconds"] * 1000
    print(table(rows, ["what", "n", "ms"]))
    report("query", {"rows": rows}, args.json)


if __name__ == "__main__":
    main()
