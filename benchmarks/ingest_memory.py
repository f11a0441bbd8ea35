"""Peak memory of `simsearch index` as the folder grows: the same command on folders of N
generated JPEGs (distinct content, so every file is decoded and embedded), each in a fresh
process, its peak resident memory read from the kernel (wait4).

    python benchmarks/ingest_memory.py [--sizes 2000 8000 32000] --json benchmarks/results/ingest_memory.json

Memory should stay flat: the folder walk streams through a bounded look-ahead, decoded pixels
exist only for the batches in flight, and vectors go to SQLite as they are made. What grows is
the catalog on disk and the in-memory FAISS copy of the vectors (dim x 4 bytes per image).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, report, table


def write_folder(folder: Path, n: int, size: tuple[int, int] = (320, 240)) -> None:
    """n distinct JPEGs: 64 generated pictures, each file with its own stripe of noise."""
    from PIL import Image

    from simsearch.demo import picture

    folder.mkdir(parents=True, exist_ok=True)
    bases = [np.asarray(picture(i, size)) for i in range(64)]
    rng = np.random.default_rng(0)
    have = sum(1 for _ in folder.rglob("*.jpg"))
    for i in range(have, n):
        pixels = bases[i % 64].copy()
        row = (i // 64) % (size[1] - 8)
        pixels[row:row + 8] = rng.integers(0, 256, (8, size[0], 3), dtype=np.uint8)
        sub = folder / f"{i // 1000:04d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(sub / f"{i:07d}.jpg", quality=90)


def run_index(folder: Path, index: Path, model: str | None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `simsearch index` in a fresh process."""
    cmd = [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(index), "-q"]
    if model:
        cmd += ["--model", model]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"simsearch index failed on {folder}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        for n in sorted(args.sizes):
            write_folder(folder, n)
            index = Path(tmp) / f"index-{n}"
            seconds, peak = run_index(folder, index, args.model)
            catalog = sum(f.stat().st_size for f in index.iterdir()) / 2**20
            rows.append({"files": n, "seconds": seconds, "img_per_s": n / seconds,
                         "peak_rss_mb": peak, "index_on_disk_mb": catalog})
            print(table(rows[-1:], list(rows[0])), flush=True)
    print()
    print(table(rows, list(rows[0])))
    if len(rows) > 1:
        growth = (rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]) / (rows[-1]["files"] - rows[0]["files"])
        print(f"peak memory grows {growth * 1024:.2f} KB per extra file "
              f"({rows[0]['files']} -> {rows[-1]['files']} files)")
    report("ingest_memory", {"rows": rows, "model": args.model or "default"}, args.json)


if __name__ == "__main__":
    main()
