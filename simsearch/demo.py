"""Write a small folder of generated pictures and edited copies, for the README's tour.

    python -m simsearch.demo demo-photos

Nothing is downloaded: the pictures are drawn here (landscapes, stripes, textures and
colour fields, with insets and shapes), and the copies come from the same
copy-style edits the benchmark uses. Existing files are never overwritten unless asked.
"""
from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from simsearch.edits import apply_edit
from simsearch.errors import SimsearchError

COPY_EDITS = ("resize25", "jpeg20", "crop70", "hflip", "text", "grayscale")
# Generated graphics look more alike to the default model than photographs do, so the tour uses
# scenes picked once (greedily, from seeds 0-159) so that no two originals score >= 0.68 with it:
# every group that dedupe shows in the tour is then an original with its edited copy.
TOUR_SEEDS = (0, 1, 2, 3, 4, 5, 7, 11, 15, 16, 17, 19, 24, 29, 33, 34, 49, 50, 55, 58)


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


def _landscape(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = Image.fromarray(np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = int(rng.integers(h // 12, h // 5))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h // 2))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(c) for c in rng.integers(150, 256, 3)))
    for layer in range(int(rng.integers(2, 5))):
        base = h * (0.45 + 0.12 * layer)
        xs = np.linspace(0, w, int(rng.integers(4, 12)))
        ys = base - rng.uniform(0, h * 0.35, len(xs))
        outline = [(0, h)] + [(float(x), float(y)) for x, y in zip(xs, ys)] + [(w, h)]
        draw.polygon(outline, fill=tuple(int(c) for c in rng.integers(0, 200, 3)))
    return img


def _field(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    return picture(int(rng.integers(1 << 30)), (w, h))


def _stripes(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    angle = rng.uniform(0, np.pi)
    wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) * rng.uniform(8, 40)) > 0
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = Image.fromarray(np.where(wave[..., None], a, b).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        r = int(rng.integers(h // 10, h // 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def _texture(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    field = np.zeros((h, w))
    for octave in range(1, 5):
        cells = rng.random((2 ** octave + 1, 2 ** octave + 1))
        field += np.asarray(Image.fromarray((cells * 255).astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC), np.float64) / 2 ** octave
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return Image.fromarray((a * (1 - field[..., None]) + b * field[..., None]).astype(np.uint8))


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A generated picture for the tour: a background of one of four kinds (chosen by the
    seed), an inset of another kind, and a few shapes, each in its own colours."""
    kinds = (_landscape, _field, _stripes, _texture)
    rng = np.random.default_rng(seed)
    w, h = size
    img = kinds[seed % 4](rng, w, h)
    iw, ih = int(w * rng.uniform(0.2, 0.4)), int(h * rng.uniform(0.2, 0.4))
    inset = kinds[(seed + 1 + seed // 4) % 4](rng, iw, ih)
    img.paste(inset, (int(rng.integers(0, w - iw)), int(rng.integers(0, h - ih))))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, w - w // 6)), int(rng.integers(0, h - h // 6))
        box = (x0, y0, x0 + int(rng.integers(w // 12, w // 4)), y0 + int(rng.integers(h // 12, h // 4)))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return img


def demo_files(folder: Path, seeds: tuple[int, ...] = TOUR_SEEDS) -> list[Path]:
    """The paths `write_demo` writes, in order: each original, then its edited copy if it has one."""
    paths = []
    for i in range(len(seeds)):
        paths.append(folder / f"photo{i:02d}.jpg")
        if i < len(COPY_EDITS):
            paths.append(folder / "copies" / f"photo{i:02d}_{COPY_EDITS[i]}.jpg")
    return paths


def write_demo(folder: Path, seeds: tuple[int, ...] = TOUR_SEEDS,
               overwrite: bool = False) -> list[Path]:
    """Draw the tour's pictures and their edited copies into `folder`. Raises `SimsearchError`,
    before writing anything, when one of the files is already there (unless `overwrite`)."""
    folder = Path(folder)
    targets = demo_files(folder, seeds)
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        what = (f"{existing[0]} already exists" if len(existing) == 1 else
                f"{existing[0]} and {len(existing) - 1} more of its files already exist")
        raise SimsearchError(f"{what}; nothing was written. Choose a new folder (python -m "
                             f"simsearch.demo NEW_FOLDER) or replace them with --overwrite")
    written = []
    for i, seed in enumerate(seeds):
        img = scene(seed)
        _save(img, folder / f"photo{i:02d}.jpg", 92, overwrite)
        written.append(folder / f"photo{i:02d}.jpg")
        if i < len(COPY_EDITS):  # a few planted near-duplicates, one per kind of edit
            copy = folder / "copies" / f"photo{i:02d}_{COPY_EDITS[i]}.jpg"
            _save(apply_edit(COPY_EDITS[i], img, random.Random(i)), copy, 90, overwrite)
            written.append(copy)
    return written


def _save(img: Image.Image, path: Path, quality: int, overwrite: bool) -> None:
    """Write a JPEG; without `overwrite`, open the file exclusively so that a file that appeared
    since the check is not replaced either."""
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "wb" if overwrite else "xb") as f:
            f.write(buffer.getvalue())
    except FileExistsError:
        raise SimsearchError(f"{path} appeared while the demo was writing; nothing there was "
                             f"overwritten") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simsearch.demo",
        description="Write the README tour's pictures: 20 generated originals and 6 edited "
                    "copies (in FOLDER/copies) to index, query and dedupe.")
    parser.add_argument("folder", metavar="FOLDER", type=Path,
                        help="where to write them (made if missing)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files of the same names that are already there")
    args = parser.parse_args(argv)
    try:
        written = write_demo(args.folder, overwrite=args.overwrite)
    except (SimsearchError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} pictures to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
