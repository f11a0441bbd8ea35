"""Ingest speed on HEIC (and AVIF) against JPEG of the same pictures.

    python benchmarks/formats.py [--folder DIR] [--count 40] [--megapixels 12] \
        --json benchmarks/results/formats.json

The same pictures are written as JPEG (quality 90, what cameras write), as HEIC the way phones
write it (a grid of 512 x 512 HEVC tiles with a 320 x 240 thumbnail), as HEIC without a
thumbnail (the full picture must be decoded), and as AVIF. With `--folder`, the JPEGs of at
least 6 MP found there are the pictures (real photographs); otherwise `--count` generated
scenes of `--megapixels`. For each set: decoding alone (`load_image` at the network's input
size, one thread) and `simsearch index` end to end (the default model, 2 decoding threads).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import report, table


def pictures(folder: Path | None, count: int, megapixels: float):
    from PIL import Image, ImageOps

    from simsearch.demo import picture
    if folder is not None:
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file():
                with Image.open(p) as img:
                    if img.size[0] * img.size[1] >= 6e6:
                        yield p.stem, ImageOps.exif_transpose(img).convert("RGB")
                        count -= 1
                if count == 0:
                    return
        return
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5) // 2 * 2
    for i in range(count):
        yield f"scene{i:03d}", picture(7000 + i, (width, width * 3 // 4))


# x265's fastest preset: its default takes 14 s per 12 MP picture here. Phones encode in
# hardware; decoding speed depends on the stream's coding tools, so the HEIC figures are for
# this encoder setting.
HEVC_PRESET = {"preset": "ultrafast"}


def write_sets(root: Path, folder: Path | None, count: int, megapixels: float) -> dict:
    from simsearch import formats
    formats.pillow_formats("HEIF", "")  # pillow-heif's writer
    sets = {name: root / name for name in ("JPEG", "HEIC (phone: grid + thumbnail)",
                                           "HEIC (no thumbnail)", "AVIF")}
    for path in sets.values():
        path.mkdir()
    sizes = []
    for stem, img in pictures(folder, count, megapixels):
        sizes.append(img.size[0] * img.size[1])
        img.save(sets["JPEG"] / f"{stem}.jpg", quality=90)
        heic = {"format": "HEIF", "quality": 80, "tile_size": 512, "enc_params": HEVC_PRESET}
        img.save(sets["HEIC (phone: grid + thumbnail)"] / f"{stem}.heic", thumbnails=[320],
                 **heic)
        img.save(sets["HEIC (no thumbnail)"] / f"{stem}.heic", thumbnails=[], **heic)
        img.save(sets["AVIF"] / f"{stem}.avif", format="AVIF", quality=70, speed=8)
    return {"sets": sets, "n": len(sizes), "megapixels": float(np.mean(sizes)) / 1e6}


def measure(name: str, folder: Path, size: int) -> dict:
    from simsearch.images import load_image
    from simsearch.index import open_index

    files = sorted(folder.iterdir())
    for p in files[:2]:  # warm the page cache and the libraries
        load_image(p, target=size)
    start = time.perf_counter()
    for p in files:
        load_image(p, target=size)
    decode_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        index = open_index(Path(tmp) / "idx", create=True)
        start = time.perf_counter()
        result = index.add_paths([folder], workers=2)
        index_s = time.perf_counter() - start
    assert not result.skipped, result.skipped
    return {"set": name, "files": len(files),
            "mean_file_mb": sum(p.stat().st_size for p in files) / len(files) / 2**20,
            "decode_img_per_s": len(files) / decode_s, "index_img_per_s": len(files) / index_s,
            "formats": result.formats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--keep", type=Path, default=None, help="write the sets here and keep them")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from simsearch.embedder import resolve_model

    size = resolve_model(None).config.input_size
    root = Path(tempfile.mkdtemp(prefix="simsearch-formats-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        made = write_sets(root, args.folder, args.count, args.megapixels)
        print(f"wrote {made['n']} pictures of {made['megapixels']:.1f} MP in 4 formats "
              f"({time.perf_counter() - start:.0f} s)")
        rows = [measure(name, path, size) for name, path in made["sets"].items()]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    jpeg = rows[0]
    for row in rows:
        row["decode_vs_jpeg"] = row["decode_img_per_s"] / jpeg["decode_img_per_s"]
        row["index_vs_jpeg"] = row["index_img_per_s"] / jpeg["index_img_per_s"]
    print(table(rows, ["set", "files", "mean_file_mb", "decode_img_per_s", "decode_vs_jpeg",
                       "index_img_per_s", "index_vs_jpeg"]))
    report("formats", {
        "pictures": "real photographs from " + str(args.folder) if args.folder else
                    f"generated scenes (simsearch.demo.picture) of {made['megapixels']:.1f} MP",
        "n": made["n"], "megapixels": made["megapixels"], "input_size": size,
        "heic_encoder": f"x265 via pillow-heif, quality 80, 512 px grid tiles, {HEVC_PRESET}",
        "note": "measured on a 2-core machine shared with other jobs: figures are indicative; "
                "ratios to JPEG, measured in the same run, are the comparison",
        "rows": rows}, args.json)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
