"""Time, peak memory and recall of dedupe's all-pairs range search on synthetic unit vectors
with planted near-duplicate groups (no images, no network).

    python benchmarks/dedupe.py --sizes 100000 1000000 --json benchmarks/results/dedupe.json

Each size runs in a fresh subprocess so that its peak memory is its own.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from common import peak_rss_mb, report, table


def planted(n: int, dim: int, seed: int = 0, group_share: float = 0.1, noise: float = 0.15):
    """n unit vectors; `group_share` of them sit in groups of 2-4 around a shared centre."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs = []
    i = 0
    limit = int(n * group_share)
    while i < limit:
        size = int(rng.integers(2, 5))
        centre = x[i]
        for j in range(i + 1, min(i + size, n)):
            v = centre + noise * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
            x[j] = v / np.linalg.norm(v)
            pairs.extend((a, j) for a in range(i, j))
        i += size
    return x, pairs


def one(n: int, dim: int, threshold: float) -> dict:
    sys.path.insert(0, ".")
    from simsearch.dedupe import complete_linkage
    from simsearch.vectors import range_pairs

    x, truth = planted(n, dim)
    start = time.perf_counter()
    left, right, scores = [], [], []
    for p in range_pairs(np.arange(n), x, threshold):
        left.append(p.left)
        right.append(p.right)
        scores.append(p.scores)
    left, right, scores = (np.concatenate(v) for v in (left, right, scores))
    search_s = time.perf_counter() - start
    groups = complete_linkage(left, right, scores)
    total_s = time.perf_counter() - start
    found = set(zip(left.tolist(), right.tolist()))
    recall = sum((a, b) in found for a, b in truth) / len(truth)
    return {"n": n, "dim": dim, "threshold": threshold, "search_s": search_s, "total_s": total_s,
            "pairs_found": len(found), "planted_pairs": len(truth), "recall": recall,
            "groups": len(groups), "peak_rss_mb": peak_rss_mb(),
            "index": "flat (exact)" if n <= 200_000 else "IVF (approximate)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.dim, args.threshold)))
        return
    rows = []
    for n in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim),
                               "--threshold", str(args.threshold)], capture_output=True, text=True)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(table(rows[-1:], list(rows[-1])), flush=True)
    print(table(rows, ["n", "index", "total_s", "peak_rss_mb", "recall", "pairs_found", "groups"]))
    report("dedupe", {"rows": rows}, args.json)


if __name__ == "__main__":
    main()
