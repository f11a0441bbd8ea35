"""Time, peak memory and pair recall of dedupe on real-like vectors (no images, no network).

    python benchmarks/dedupe.py --n 1000000 --json benchmarks/results/dedupe_1m.json

The vectors are generated so that their pair scores look like those of real pictures under the
default model: a mixture of coarse topics (Gaussian draws with the covariance of the model's
background vectors), the background vectors themselves as fine topics, and Gaussian noise,
fitted to the background set's pair-score quantiles and to its fraction of pairs at or above
the default search radius (threshold - max adjustment, 0.84 - 0.15 = 0.69), which is printed
beside the achieved one. Planted on top: duplicate groups of 2-6 (noise levels from obvious
copies to pairs below the threshold) and bursts of near-identical frames (20000, 5000, 2000,
500 by default). Score offsets are computed from the model's background, as ingest stores
them; dedupe then runs as `simsearch dedupe` does: centre linkage, adjusted scores, the
model's threshold (`simsearch.dedupe.find_groups`).

Pair recall is measured against an exact search for a seeded sample of rows: every pair of a
sampled row scoring >= threshold (each sampled row against all n, exactly) that dedupe's
bounded search also knows (a pair it kept, or in a dense row's full list). The dedupe runs in a
fresh subprocess so that its peak memory (VmHWM) is its own: it includes the
vectors in float16 (n x 2 x dim bytes), as `simsearch dedupe` holds them; the float32 file
they are read from is read in chunks (page cache, not the process's own memory).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import ROOT, RealLike, model_background, peak_rss_mb, report
from simsearch.errors import TooManyPairsError
from simsearch.pairs import JoinSettings

RADIUS_NOTE = "fraction of pairs with raw cosine >= threshold - max_shift (the default search radius)"


def above(vectors: np.ndarray, radius: float) -> float:
    gram = vectors @ vectors.T
    return float((gram[np.triu_indices(len(vectors), 1)] >= radius).mean())


def passing(vectors: np.ndarray, offsets: np.ndarray, threshold: float) -> float:
    """Fraction of pairs whose adjusted score (as dedupe scores them) is >= threshold."""
    from simsearch.pairs import exact_scores
    a, b = np.triu_indices(len(vectors), 1)
    return float((exact_scores(vectors, offsets, a, b) >= threshold).mean())


def make(n: int, bursts: list[int], group_share: float, folder: str, seed: int) -> dict:
    """Write vectors.npy and offsets.npy into `folder`; return what was planted."""
    ref, bg = model_background()
    threshold, radius = float(ref.dedupe_threshold), float(ref.dedupe_threshold) - bg.max_shift
    gen = RealLike(bg, seed=seed)
    vectors = np.lib.format.open_memmap(os.path.join(folder, "vectors.npy"), "w+", np.float32,
                                        (n, bg.dim))
    for start in range(0, n, 100_000):
        vectors[start:start + 100_000] = gen.draw(min(100_000, n - start))
    rng = np.random.default_rng(seed + 1)
    rows = rng.permutation(n)
    used = 0
    for size in bursts:  # near-identical frames: one picture, a little noise each
        base = gen.draw(1)[0]
        frames = base + 0.12 * rng.standard_normal((size, bg.dim)).astype(np.float32) / np.sqrt(bg.dim)
        vectors[np.sort(rows[used:used + size])] = frames / np.linalg.norm(frames, axis=1, keepdims=True)
        used += size
    grouped = 0
    while grouped < group_share * n:  # copies: 2-6 members, from obvious to below the threshold
        size = int(rng.integers(2, 7))
        noise = float(rng.uniform(0.1, 0.7))
        base = vectors[rows[used]]
        copies = base + noise * rng.standard_normal((size - 1, bg.dim)).astype(np.float32) / np.sqrt(bg.dim)
        vectors[np.sort(rows[used + 1:used + size])] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
        used += size
        grouped += size
    vectors.flush()
    offsets = np.concatenate([bg.offsets(vectors[s:s + 100_000]) for s in range(0, n, 100_000)])
    np.save(os.path.join(folder, "offsets.npy"), offsets)
    sample = gen.draw(4000)
    return {"threshold": threshold, "radius": radius,
            "background_fraction_above_radius": above(bg.vectors, radius),
            "achieved_fraction_above_radius": above(sample, radius),
            "background_fraction_passing_threshold": passing(bg.vectors, bg.offsets(bg.vectors), threshold),
            "achieved_fraction_passing_threshold": passing(sample, bg.offsets(sample), threshold),
            "fraction_note": RADIUS_NOTE,
            "offsets_q10_q50_q90": np.quantile(offsets, [0.1, 0.5, 0.9]).round(4).tolist(),
            "bursts": bursts, "images_in_groups": grouped}


def run(folder: str, threshold: float, sample: int, seed: int, probe: int, list_size: int,
        max_pairs: int = 0, spill: int = JoinSettings.spill) -> dict:
    """Dedupe the vectors in `folder` (timed, peak memory), then measure pair recall."""
    import simsearch.dedupe as dedupe
    from simsearch.pairs import exact_scores, near_pairs

    path = os.path.join(folder, "vectors.npy")
    stored = np.load(path, mmap_mode="r")  # float32 on disk; read below, mapped only for recall
    offsets = np.load(os.path.join(folder, "offsets.npy"))
    n, d = stored.shape
    vectors = np.empty((n, d), np.float16)  # as `simsearch dedupe` holds them
    with open(path, "rb") as f:  # read(), not the map: mapped pages would count as this process's
        f.seek(stored.offset)
        for start in range(0, n, 1 << 18):
            rows = min(1 << 18, n - start)
            vectors[start:start + rows] = np.fromfile(f, np.float32, rows * d).reshape(rows, d)
    kept = {}

    def recording(*args, **kwargs):
        kept["pairs"] = near_pairs(*args, **kwargs)
        return kept["pairs"]

    dedupe.near_pairs = recording  # to measure recall on the pairs dedupe itself found
    loaded_mb = peak_rss_mb()
    cpu = _cpu_s()
    start = time.perf_counter()
    settings = JoinSettings(probe=probe, list_size=list_size, max_pairs=max_pairs, spill=spill)
    try:
        groups = dedupe.find_groups(np.arange(n), vectors, offsets, np.arange(n), threshold,
                                    "centre", settings=settings)
    except TooManyPairsError as e:  # the product's answer when the pairs outgrow memory
        return {"n": n, "dim": int(d), "linkage": "centre", "threshold": threshold,
                "stopped": str(e), "stopped_after_s": round(time.perf_counter() - start, 2),
                "dedupe_cpu_s": round(_cpu_s() - cpu, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
                "rss_after_loading_vectors_mb": round(loaded_mb, 1)}
    seconds = time.perf_counter() - start
    cpu = _cpu_s() - cpu
    peak = peak_rss_mb()
    found = kept["pairs"]
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    want = got = 0
    dense_want = dense_got = 0
    ends = np.concatenate([found.left, found.right])
    others = np.concatenate([found.right, found.left])
    order = np.argsort(ends, kind="stable")
    ends, others = ends[order], others[order]

    def neighbours(row: int) -> np.ndarray:
        return others[np.searchsorted(ends, row):np.searchsorted(ends, row, side="right")]

    for chunk in np.array_split(rows, max(1, len(rows) // 32)):
        raw = stored[chunk] @ stored.T  # candidates from float32 (BLAS), scored as dedupe scores
        a, b = np.nonzero(raw >= threshold + offsets[chunk, None] + float(offsets.min()) - 1e-3)
        a, b = chunk[a], b
        keep = (a != b)
        a, b = a[keep], b[keep]
        s = exact_scores(vectors, offsets, a, b)
        a, b = a[s >= threshold], b[s >= threshold]
        for row in chunk.tolist():
            exact = set(b[a == row].tolist())
            known = set(neighbours(row).tolist())
            if found.dense[row]:
                known |= set(found.fetch(row)[0].tolist())
            hit = len(exact & known)
            want += len(exact)
            got += hit
            if found.dense[row]:
                dense_want += len(exact)
                dense_got += hit
    sizes = np.bincount([len(g.ids) for g in groups]) if groups else np.zeros(1, int)
    return {"n": n, "dim": int(vectors.shape[1]), "linkage": "centre", "threshold": threshold,
            "dedupe_s": round(seconds, 2), "dedupe_cpu_s": round(cpu, 2),
            "peak_rss_mb": round(peak, 1),
            "rss_after_loading_vectors_mb": round(loaded_mb, 1),
            "pairs_kept": int(len(found.left)), "dense_rows": int(found.dense.sum()),
            "groups": len(groups), "largest_group": int(len(sizes) - 1),
            "recall_sample_rows": int(len(rows)), "exact_pairs_of_sample": want,
            "pair_recall": round(got / want, 5) if want else None,
            "pair_recall_excluding_dense_rows": round((got - dense_got) / (want - dense_want), 5)
            if want > dense_want else None,
            "join": "exact (flat)" if n <= settings.exact_limit else
            f"ClusterJoin: k-means lists of ~{list_size or max(1024, int(np.sqrt(n / probe)))}, "
            f"each against its {probe} nearest lists, each row also in its {spill} next nearest"}


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (on a shared machine, wall time also counts
    the time other processes held the cores)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bursts", type=int, nargs="*", default=[20_000, 5_000, 2_000, 500])
    parser.add_argument("--group-share", type=float, default=0.05,
                        help="share of the images in planted groups of 2-6")
    parser.add_argument("--sample", type=int, default=2000, help="rows checked against exact search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", type=int, default=JoinSettings.probe,
                        help="lists each list is compared with (default: dedupe's)")
    parser.add_argument("--spill", type=int, default=JoinSettings.spill,
                        help="next nearest lists each row also stands in (default: dedupe's)")
    parser.add_argument("--list-size", type=int, default=JoinSettings.list_size,
                        help="rows per k-means list (default: dedupe's, 0 = automatic)")
    parser.add_argument("--max-pairs", type=int, default=JoinSettings.max_pairs,
                        help="pairs dedupe may keep before it stops (default: dedupe's, 0 = what "
                             "free memory can group)")
    parser.add_argument("--data", default=None, metavar="FOLDER",
                        help="keep the generated vectors here and reuse them on the next run")
    parser.add_argument("--generate-only", action="store_true",
                        help="with --data: write the vectors and stop")
    parser.add_argument("--json", default=None)
    parser.add_argument("--run", nargs=2, metavar=("FOLDER", "THRESHOLD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run(args.run[0], float(args.run[1]), args.sample, args.seed,
                             args.probe, args.list_size, args.max_pairs, args.spill)))
        return
    with tempfile.TemporaryDirectory(prefix="simsearch-dedupe-bench-") as scratch:
        folder = args.data or scratch
        made_file = os.path.join(folder, "made.json")
        if args.data and os.path.exists(made_file):
            made = json.load(open(made_file))
            if made.get("n") != args.n:
                sys.exit(f"{folder} holds {made.get('n')} vectors, not {args.n}")
        else:
            os.makedirs(folder, exist_ok=True)
            start = time.perf_counter()
            made = make(args.n, args.bursts, args.group_share, folder, args.seed)
            made["generate_s"] = round(time.perf_counter() - start, 1)
            made["n"] = args.n
            with open(made_file, "w") as f:
                json.dump(made, f)
        if args.generate_only:
            return
        print(f"background pairs >= radius {made['radius']:.2f}: "
              f"{made['background_fraction_above_radius']:.2e}; generated: "
              f"{made['achieved_fraction_above_radius']:.2e}; pairs passing the threshold "
              f"{made['threshold']:.2f} (adjusted): background "
              f"{made['background_fraction_passing_threshold']:.2e}, generated "
              f"{made['achieved_fraction_passing_threshold']:.2e}", flush=True)
        done = subprocess.run([sys.executable, __file__, "--run", folder, str(made["threshold"]),
                               "--sample", str(args.sample), "--seed", str(args.seed),
                               "--probe", str(args.probe), "--list-size", str(args.list_size),
                               "--spill", str(args.spill),
                               "--max-pairs", str(args.max_pairs)],
                              capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        sys.exit(done.returncode)
    row = {**json.loads(done.stdout.strip().splitlines()[-1]), **made}
    for key in ("n", "stopped", "stopped_after_s", "dedupe_s", "dedupe_cpu_s", "peak_rss_mb", "pair_recall",
                "pair_recall_excluding_dense_rows", "pairs_kept", "dense_rows", "groups", "largest_group"):
        if key in row:
            print(f"{key:>34}: {row[key]}")
    report("dedupe", {"rows": [row], "loadavg_1_5_15_min_at_end": os.getloadavg()}, args.json)


if __name__ == "__main__":
    main()
