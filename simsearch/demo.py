"""Write a small folder of generated pictures and edited copies, for the README's tour.

    python -m simsearch.demo demo-photos

Nothing is downloaded: the pictures are drawn here (smooth colour fields with shapes), and the
copies come from the same copy-style edits the benchmark uses.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from simsearch.edits import apply_edit

COPY_EDITS = ("resize25", "jpeg20", "crop70", "hflip", "text", "grayscale")


def picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    channels = [np.sin(x * rng.uniform(2, 12) + rng.uniform(0, 6)) *
                np.cos(y * rng.uniform(2, 12) + rng.uniform(0, 6)) for _ in range(3)]
    img = Image.fromarray(((np.stack(channels, -1) * 0.5 + 0.5) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 12))):
        x0, y0 = int(rng.integers(0, w - w // 8)), int(rng.integers(0, h - h // 8))
        box = (x0, y0, x0 + int(rng.integers(w // 8, w // 2 + 1)),
               y0 + int(rng.integers(h // 8, h // 2 + 1)))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return img


def write_demo(folder: Path, originals: int = 20, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(originals):
        img = picture(seed * 1000 + i)
        path = folder / f"photo{i:02d}.jpg"
        img.save(path, quality=92)
        written.append(path)
        if i < len(COPY_EDITS):  # a few planted near-duplicates, one per kind of edit
            edit = COPY_EDITS[i]
            copy = folder / "copies" / f"photo{i:02d}_{edit}.jpg"
            copy.parent.mkdir(exist_ok=True)
            apply_edit(edit, img, random.Random(i)).save(copy, quality=90)
            written.append(copy)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m simsearch.demo FOLDER", file=sys.stderr)
        return 2
    written = write_demo(Path(args[0]))
    print(f"wrote {len(written)} pictures to {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
