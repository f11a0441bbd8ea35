"""Queries at scale on real-like vectors: build time and peak memory of the index the automatic
choice makes, its recall@10 against exact search (by cosine, as recorded at build, and of the
adjusted top 10 that a query returns), a cold `simsearch query` process on a 12 MP
JPEG, and warm queries in process and through `simsearch serve`.

Vectors: drawn as benchmarks/dedupe.py draws them (`common.RealLike`: each a real background
picture's vector plus noise), so that their share of pairs at or above the default search
radius (threshold minus the largest score adjustment; 0.86 - 0.10 = 0.76 under stage 4, 0.83 - 0.10 = 0.73 under stage 5)
is that of the default model's background set (printed beside it), plus planted
near-duplicate groups.

    python benchmarks/query.py --n 1000000 --json benchmarks/results/query_scale.json
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from common import ROOT, RealLike, peak_rss_mb, report

def pair_fraction(vectors: np.ndarray, threshold: float, sample: int = 3000,
                  seed: int = 0) -> float:
    """Share of distinct pairs (of a seeded sample) scoring >= threshold."""
    rng = np.random.default_rng(seed)
    x = vectors[rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)]
    sims = x @ x.T
    upper = np.triu_indices(len(x), 1)
    return float((sims[upper] >= threshold).mean())


def real_like(n: int, background, seed: int = 0, groups: int = 1000
              ) -> tuple[np.ndarray, list[list[int]]]:
    """n unit vectors drawn as benchmarks/dedupe.py draws them (`common.RealLike`: a real
    background picture's vector plus noise, so they sit where real pictures sit); then `groups`
    planted near-duplicate groups (2-5 copies of a vector, cosine ~0.97) overwrite random rows."""
    gen = RealLike(background, seed=seed)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((n, background.dim), np.float32)
    for start in range(0, n, 100_000):
        out[start:start + 100_000] = gen.draw(min(100_000, n - start))
    planted = []
    rows = rng.permutation(n)
    used = 0
    for _ in range(groups):
        size = int(rng.integers(2, 6))
        members = rows[used:used + size].tolist()
        used += size
        base = out[members[0]]
        for m in members[1:]:
            x = base + rng.standard_normal(background.dim).astype(np.float32) * 0.015
            out[m] = x / np.linalg.norm(x)
        planted.append(members)
    return out, planted


def build(folder: Path, n: int, ann: str | None) -> dict:
    """Catalog rows (as ingest commits them) then the index's own build and commit."""
    from simsearch.index import open_index
    from simsearch.scoring import load_background

    index = open_index(folder, create=True)
    ref = index.model
    background = load_background(ref.background_file, ref.model_id, ref.config.dim)
    radius = float(ref.dedupe_threshold) - background.max_shift
    target = pair_fraction(background.vectors, radius)
    start = time.perf_counter()
    vectors, planted = real_like(n, background)
    generated = time.perf_counter() - start
    achieved = pair_fraction(vectors, radius, sample=6000)
    record = {"name": ref.name, "id": ref.model_id, "config": ref.config.to_dict()}
    start = time.perf_counter()
    with index.store.writer() as store:
        catalog = store.catalog(readonly=False)
        reused = catalog.count() == n  # the catalog of an earlier run (--folder), same seed
        if not reused:
            insert(catalog, vectors, record, background)
        catalog_s = time.perf_counter() - start
        del vectors
        start = time.perf_counter()
        index._record = record
        built = index._settled(catalog, _Empty(), ann)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        store.commit(catalog, built, record, background.fingerprint, ann or "auto")
        commit_s = time.perf_counter() - start
        catalog.close()
    return {"n": n, "catalog_reused": reused, "radius": radius,
            "pair_fraction_target": target, "pair_fraction_achieved": achieved,
            "planted_groups": len(planted), "generate_s": generated, "catalog_s": catalog_s,
            "index_build_s": build_s, "commit_s": commit_s, "factory": built.factory,
            "params": built.params, "recall_at_10": built.recall,
            "peak_rss_gb": peak_rss_mb() / 1024}


def insert(catalog, vectors: np.ndarray, record: dict, background) -> None:
    """Catalog rows with their score offsets, as ingest commits them."""
    with catalog.transaction():
        catalog.set_model(json.dumps(record))
        catalog.set_meta("scoring", background.fingerprint)
        for s in range(0, len(vectors), 65536):
            offsets = background.offsets(vectors[s:s + 65536])
            for i in range(s, min(len(vectors), s + 65536)):
                catalog.insert(f"/photos/{i // 1000:05d}/img{i:08d}.jpg", 1000 + i, i,
                               f"{i:064x}", 4000, 3000, vectors[i], float(offsets[i - s]))


class _Empty:
    factory, tombstones, count = "deferred", 0, 0


def merge_top10(best: list, scores: np.ndarray, ids: np.ndarray) -> list:
    """The running [scores, ids] top 10 of each query row, with a block of `scores` of `ids`."""
    scores = np.concatenate([best[0], scores], 1)
    every = np.concatenate([best[1], np.broadcast_to(ids, scores.shape[:1] + ids.shape)], 1)
    top = np.argpartition(-scores, 9, 1)[:, :10]
    return [np.take_along_axis(scores, top, 1), np.take_along_axis(every, top, 1)]


def f16_quality(folder: Path, queries: int = 200) -> dict:
    """Score error and recall@10 of float16 stored vectors against float32 (the catalog)."""
    from simsearch.index import open_index
    from simsearch.vectorfile import VectorFile

    index = open_index(folder)
    shelf = VectorFile(folder / "vectors.f16")
    catalog = index.catalog()
    rng = np.random.default_rng(3)
    q = np.asarray(shelf.vectors[rng.choice(shelf.count, queries, replace=False)], np.float32)
    err, hits = 0.0, []
    best32 = [np.full((queries, 10), -np.inf), np.zeros((queries, 10), np.int64)]
    best16 = [np.full((queries, 10), -np.inf), np.zeros((queries, 10), np.int64)]
    for ids, vecs in catalog.vectors():
        rows = shelf.rows(ids)
        s32 = q @ vecs.T
        s16 = q @ np.asarray(shelf.vectors[rows], np.float32).T
        err = max(err, float(np.abs(s32 - s16).max()))
        best32 = merge_top10(best32, s32, ids)
        best16 = merge_top10(best16, s16, ids)
    catalog.close()
    hits = [len(set(a) & set(b)) / 10 for a, b in zip(best32[1].tolist(), best16[1].tolist())]
    return {"f16_max_score_error": err, "f16_recall_at_10_vs_f32": float(np.mean(hits))}


def adjusted_recall(folder: Path, queries: int = 100, seed: int = 4) -> dict:
    """Recall@10 of the product's query path (`Index.search_ids`: adjusted scores, ranked by
    the vector index's score column) against the exact adjusted top 10 over every stored vector
    (float16, as re-scoring reads them). Queries: stored vectors moved to cosine ~0.9, as an
    edited copy of an indexed picture would be."""
    from simsearch.index import open_index
    from simsearch.scoring import adjust
    from simsearch.vectorfile import VectorFile

    index = open_index(folder)
    shelf = VectorFile(folder / "vectors.f16")
    rng = np.random.default_rng(seed)
    q = np.asarray(shelf.vectors[np.sort(rng.choice(shelf.count, queries, replace=False))],
                   np.float32)
    q += rng.standard_normal(q.shape).astype(np.float32) * 0.45 / np.sqrt(q.shape[1])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    background = index.background
    oq = background.offsets(q)
    best = [np.full((queries, 10), -np.inf, np.float32), np.zeros((queries, 10), np.int64)]
    for start in range(0, shelf.count, 200_000):
        stop = min(shelf.count, start + 200_000)
        raw = q @ np.asarray(shelf.vectors[start:stop], np.float32).T
        best = merge_top10(best, adjust(raw, oq[:, None] + shelf.offsets[None, start:stop]),
                           shelf.ids[start:stop])
    _, found = index.search_ids(q, 10)
    hits = [len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), best[1].tolist())]
    return {"adjusted_recall_at_10": float(np.mean(hits)),
            "score_column_used": index.ranks_by_column}


def flat_scan_ms(sizes=(100_000, 300_000, 1_000_000), dim: int = 256) -> dict:
    """One query's exact scan (FAISS Flat, one thread, k=40) at each size: where exact search
    stops being a few tens of ms (`simsearch.vectors.FLAT_LIMIT`)."""
    import faiss

    rng = np.random.default_rng(0)
    faiss.omp_set_num_threads(1)
    out = {}
    for n in sizes:
        x = rng.standard_normal((n, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        times = []
        for i in range(20):
            start = time.perf_counter()
            index.search(x[i:i + 1], 40)
            times.append(time.perf_counter() - start)
        out[str(n)] = 1000 * statistics.median(times)
        del index, x
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--ann", default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--folder", default=None,
                        help="keep the indexes here and reuse their catalogs (default: temp)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--reuse-index", action="store_true",
                        help="measure queries again on the indexes kept in --folder (their build "
                             "figures are taken from --json)")
    parser.add_argument("--flat-scan", action="store_true",
                        help="only time one exact (Flat) query at 100k, 300k and 1M vectors")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flat_scan:
        print(json.dumps(flat_scan_ms()))
        return
    if args.stage == "build":
        print(json.dumps(build(Path(args.folder), args.n[0], args.ann)))
        return
    from simsearch.demo import picture

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "simsearch.cli"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.folder or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        query = tmp / "query.jpg"
        picture(1, (4000, 3000)).save(query, quality=90)
        for n in args.n:
            folder = tmp / f"idx{n}"
            if args.reuse_index:  # measure the queries again on a kept index (--folder)
                row = next(r for r in json.loads(Path(args.json).read_text())["results"]["rows"]
                           if r["n"] == n)
                row.update(queries(folder, query, cli, env, args.runs))
                rows.append(row)
                continue
            out = subprocess.run([sys.executable, __file__, "--stage", "build", "--folder",
                                  str(folder), "--n", str(n)] + (["--ann", args.ann] if args.ann
                                                                  else []),
                                 env=env, check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update(f16_quality(folder))
            row.update(adjusted_recall(folder))
            row.update(queries(folder, query, cli, env, args.runs))
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
        report("query_scale", {"rows": rows, "loadavg_1_5_15_min_at_end": os.getloadavg()},
               args.json)


def queries(folder: Path, query: Path, cli: list[str], env: dict, runs: int) -> dict:
    """Cold query processes, warm queries in process and through `simsearch serve`."""
    from simsearch.demo import picture

    row = {}
    cmd = cli + ["query", str(query), "-k", "10", "--index", str(folder)]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    row["cold_query_s"] = statistics.median(times)
    row["cold_query_runs_s"] = times
    # peak RSS from VmHWM: ru_maxrss survives exec on Linux, so a child would report the
    # benchmark's own (many GB at 10M) as its peak
    probe = ("import sys,time;from simsearch.index import open_index;"
             "i=open_index(sys.argv[1]);t=time.perf_counter();"
             "i.search([sys.argv[2]],k=10);e=time.perf_counter()-t;"
             "h=[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
             "print(e,int(h.split()[1])/2**20)")
    got = subprocess.run([sys.executable, "-c", probe, str(folder), str(query)], env=env,
                         check=True, capture_output=True, text=True).stdout.split()
    row["cold_query_in_process_s"], row["query_process_peak_rss_gb"] = map(float, got)
    from simsearch.index import open_index
    index = open_index(folder)
    index.search([query], k=10)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        index.search([query], k=10)
        times.append(time.perf_counter() - start)
    row["warm_query_ms"] = 1000 * statistics.median(times)
    vec = index.embedder.embed_images([picture(2)])
    times = []
    for _ in range(50):
        start = time.perf_counter()
        index.search_vectors(vec, k=10)
        times.append(time.perf_counter() - start)
    row["warm_search_only_ms"] = 1000 * statistics.median(times)
    del index
    port = free_port()
    server = subprocess.Popen(cli + ["serve", "--index", str(folder), "--port", str(port)],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        server.stderr.readline()  # "serving ... on http://127.0.0.1:PORT"
        times = []
        body = json.dumps({"path": str(query), "k": 10}).encode()
        for _ in range(21):
            start = time.perf_counter()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/query", body,
                                         {"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=60).read()
            times.append(time.perf_counter() - start)
        row["serve_query_ms"] = 1000 * statistics.median(times[1:])
    finally:
        server.terminate()
        server.wait(timeout=30)
    return row


if __name__ == "__main__":
    main()
