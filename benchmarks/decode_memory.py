"""The decode budget's estimate (`images.probe(...).cost`) against the memory a decode really
holds, per format and pixel mode: each file is decoded in a fresh process, and the growth of
its peak resident memory (VmHWM) over its resident memory just before is the measured figure.

    python benchmarks/decode_memory.py --json benchmarks/results/decode_memory.json

An estimate at or above the measured peak is what keeps the per-image limit and the shared
pool honest; one far above it refuses files it need not.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, report, table

_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
from simsearch.images import load_image, probe

def status(key):
    with open("/proc/self/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith(key))) * 1024

path, target = sys.argv[1], int(sys.argv[2]) or None
cost = probe(path, target=target).cost
before = status("VmRSS")
picture = load_image(path, target=target)
print(cost, status("VmHWM") - before)
"""


def make_files(folder: Path) -> list[tuple[str, Path, int]]:
    from PIL import Image

    from simsearch import formats
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)).resize((8000, 5000))
    cases = []

    def add(label, name, target, save):
        path = folder / name
        save(path)
        cases.append((label, path, target))

    add("PNG RGBA 40 MP", "rgba.png", 0, lambda p: Image.fromarray(np.dstack(
        [np.asarray(base), rng.integers(0, 256, (5000, 8000), dtype=np.uint8)])).save(p, compress_level=1))
    add("PNG 16-bit grey 40 MP", "grey16.png", 0, lambda p: Image.fromarray(
        rng.integers(0, 65536, (5000, 8000)).astype(np.uint16)).save(p, compress_level=1))
    add("PNG RGB 40 MP", "rgb.png", 0, lambda p: base.save(p, compress_level=1))
    add("TIFF float 30 MP", "float.tif", 0, lambda p: Image.fromarray(
        rng.random((5000, 6000), dtype=np.float32) * 255).save(p))
    add("GIF 40 MP", "p.gif", 0, lambda p: base.convert("P").save(p))
    add("JPEG progressive 24 MP, full", "prog.jpg", 0,
        lambda p: base.crop((0, 0, 6000, 4000)).save(p, quality=90, progressive=True))
    cases.append(("JPEG progressive 24 MP, 1/8 (DC only)", folder / "prog.jpg", 160))
    add("WebP 16 MP", "web.webp", 0, lambda p: base.crop((0, 0, 4000, 4000)).save(p, quality=80))
    formats.pillow_formats("HEIF", "")
    add("HEIC 12 MP, full", "phone.heic", 0, lambda p: base.crop((0, 0, 4000, 3000)).save(
        p, format="HEIF", quality=80, enc_params={"preset": "ultrafast"}))
    add("AVIF 12 MP", "web.avif", 0, lambda p: base.crop((0, 0, 4000, 3000)).save(
        p, format="AVIF", quality=60, speed=10))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, target in make_files(Path(tmp)):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(target), str(ROOT)],
                                 capture_output=True, text=True, check=True)
            cost, peak = map(int, out.stdout.split())
            rows.append({"file": label, "estimate_mib": cost / 2**20, "peak_growth_mib": peak / 2**20,
                         "estimate_over_peak": cost / max(1, peak)})
            print(f"{label}: estimate {cost / 2**20:.0f} MiB, peak growth {peak / 2**20:.0f} MiB",
                  file=sys.stderr)
    print(table(rows, ["file", "estimate_mib", "peak_growth_mib", "estimate_over_peak"]))
    report("decode_memory", {"rows": rows, "note": "one fresh process per file; the machine is "
                             "shared, which does not change memory figures"}, args.json)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
