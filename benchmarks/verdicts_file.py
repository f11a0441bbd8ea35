"""What keeping the picture check's verdicts between runs costs (simsearch/verdicts.py).

    python benchmarks/verdicts_file.py [--pairs 1000000] [--json benchmarks/results/verdicts_file.json]

A million pairs among two million ids, each with a verdict and, for 60% of them (pairs the
check matched), the pair's geometry, are kept (`Verdicts.put`), written (`save`), read back by
a new run and looked up in bulk (`find`, `entry`), one thread. Reported: seconds for each step,
the file's size and the bytes a pair held in memory (tracemalloc, after reading). The same
script runs on a checkout from before session 24 (no geometry) for a side-by-side figure.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from common import report

from simsearch.verdicts import Verdicts, content_hash, fingerprint
from simsearch.verify import VerifySettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_ids = 2 * args.pairs
    ids = np.arange(n_ids, dtype=np.int64)
    contents = np.array([f"{i:064x}" for i in range(n_ids)], object)
    hashes = [content_hash(c) for c in contents]
    lo = rng.integers(0, n_ids - 1, args.pairs)
    hi = np.minimum(lo + rng.integers(1, 1000, args.pairs), n_ids - 1)
    matched = rng.random(args.pairs) < 0.6
    print_ = fingerprint(settings=VerifySettings(), opencv="benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        kept = Verdicts(tmp, print_)
        shape = ((0.5, 0.0, 0.0, 0.5), (0.1, 0.4))
        try:
            kept.put(0, 1, hashes[0], hashes[1], True, 1, False, shape)
            with_shape = True
        except TypeError:  # a verdicts file from before session 24: no geometry
            with_shape = False
        start = time.perf_counter()
        for x, y, m in zip(lo.tolist(), hi.tolist(), matched.tolist()):
            if with_shape:
                kept.put(x, y, hashes[x], hashes[y], True, 1, False, shape if m else None)
            else:
                kept.put(x, y, hashes[x], hashes[y], True, 1, False)
        keeping = time.perf_counter() - start
        start = time.perf_counter()
        kept.save(ids, contents)
        writing = time.perf_counter() - start
        size = (Path(tmp) / "checked.npz").stat().st_size
        del kept
        tracemalloc.start()
        start = time.perf_counter()
        again = Verdicts(tmp, print_)
        reading = time.perf_counter() - start
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        start = time.perf_counter()
        where = again.find(lo, hi)
        found = sum(again.entry(int(at), hashes[x], hashes[y], True) is not None
                    for at, x, y in zip(where.tolist(), lo.tolist(), hi.tolist()))
        looking = time.perf_counter() - start
    pairs = len(again)
    print(f"{args.pairs} pairs kept ({pairs} distinct, {found} found again): keeping {keeping:.2f} s, "
          f"writing {writing:.2f} s ({size / 1e6:.0f} MB, {size / pairs:.0f} bytes a pair), "
          f"reading {reading:.2f} s ({held / pairs:.0f} bytes a pair in memory), looking them "
          f"up {looking:.2f} s")
    report("verdicts_file", {"pairs": args.pairs, "distinct": pairs, "found": found,
                             "keeping_s": keeping, "writing_s": writing, "file_bytes": size,
                             "reading_s": reading, "memory_bytes": held,
                             "looking_up_s": looking}, args.json)


if __name__ == "__main__":
    main()
