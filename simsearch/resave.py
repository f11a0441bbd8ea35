"""Whether a file was saved again from another file's JPEG.

A file made by decoding a JPEG and saving its pixels again (at a finer quality, as PNG,
flipped, turned a quarter, made grey) holds nothing the JPEG lacks, yet is often the bigger
file. Its pixels still carry the JPEG's compression: their 8 x 8 DCT coefficients, on the
JPEG's block grid, lie near multiples of its quantisation steps (its lattice), and at the JPEG's
own values. A file not made from it shows neither: its source or a sibling saved from the same
source lies off the lattice, and an edit of a file that has a JPEG of the same quality in its
past (as many have) lies on the lattice but not at the JPEG's values. The central part of the
picture tells this; a file is a re-save only where the whole of it agrees: every part of its
picture at the JPEG's values (a retouch, a logo, a caption or a vignette leaves a part that is
not) and its colours the JPEG's (or none: a grey copy). The keep rule `largest` (`source`) reads this where
the picture check's maps tie two files (`simsearch.layout.with_resaves`;
recipes/default_model/trials/keep-resave-rule.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from simsearch.images import MAX_DECODE_BYTES, MAX_PIXELS, _head, _open_pillow, _open_regular, \
    _orientation

__all__ = ["Grid", "Carried", "grid_of", "carried", "is_resave", "everywhere", "decoded",
           "holds_pixels", "Colours", "has_colour", "colour_of", "CARRY", "CARRY_SAME", "TILE_SAME",
           "COLOUR_SAME"]

CARRY = 0.3          # a file whose coefficients lie this near another's lattice (mean cos) ...
CARRY_SAME = 0.45    # ... with this share of them at that file's own coefficients carries it
CARRY_MIN = 500      # coefficients needed to tell
CARRY_STEP = 2       # the least quantisation step asked (finer: the pixels' rounding is noise)
CARRY_SIZE = 0.5     # coefficients smaller than this many steps say nothing (zeros)
CARRY_REGION = 512   # the central part of the picture read, at most this many pixels a side
_MARGIN = 16         # kept around it: a flipped or turned file's blocks fall up to 8 pixels off
TILE = 6             # the whole picture is read in tiles of this many blocks a side (48 pixels)
TILE_MIN = 15        # a tile with fewer coefficients this large (in either file) cannot tell
TILE_SIZE = 1.0      # ... this large: a step or more (nearer 0 a value flips with the noise)
TILE_SAME = 0.73     # a re-save has this share of them at the JPEG's values in every tile
TILE_LEVEL = 1.5     # ... and its blocks' mean levels within this many of the JPEG's (mean)
EDGE_LEVEL = 3.0     # the pixels past the last whole block within this many levels (mean)
COLOUR_SIDE = 64     # colours are compared on the picture reduced to this many pixels a side
COLOUR_SAME = 3.0    # a re-save's Cb and Cr lie within this many levels of the JPEG's (mean)
COLOUR_CELL = 8.0    # ... and within this many in every eighth of the planes a side (mean)
COLOUR_NONE = 2.0    # a picture whose Cb and Cr lie this near grey everywhere has no colour
COLOUR_THROUGHOUT = 0.5  # ... and one with half its cells further from grey is in colour
VARIETY_BINS = 16    # brightness is cut in this many bands to measure colour it does not explain
SPOT_LEVEL = 8.0     # a cell this many levels from grey holds colour (`Colours.spots`) ...
SPOT_SIDE = 256      # ... of the picture reduced to this many cells a side
_DCT = np.array([[np.sqrt((1 if k == 0 else 2) / 8) * np.cos((2 * n + 1) * k * np.pi / 16)
                  for n in range(8)] for k in range(8)])
_DCT2 = np.kron(_DCT, _DCT)  # a block's 64 pixels, row by row, to its 64 coefficients
_SAME = ((1, 0), (0, 1))


@dataclass(eq=False)
class Grid:
    """A file as `carried` reads it: the central part of its luma plane (as libjpeg decodes a
    JPEG, else the Y its RGB pixels would have in a JPEG), where that part lies in the picture, and its luma
    quantisation steps (64, natural order), or steps of 1 for a file not compressed by JPEG."""

    path: str
    window: np.ndarray
    top: int
    left: int
    height: int
    width: int
    steps: np.ndarray
    jpeg: bool
    colour: np.ndarray | None  # Cb and Cr at COLOUR_SIDE a side (2 x side x side), None if grey
    # the coefficients of its blocks as read into another file's frame, by (turn, that shape)
    _coefficients: dict = field(default_factory=dict, repr=False)


class Carried(NamedTuple):
    lattice: float  # the mean of cos(2 pi x): near 1 on the other's lattice, 0 or below off it
    same: float     # the share of the coefficients at the other's own values


def grid_of(path: str | os.PathLike) -> Grid | None:
    """The file's `Grid`; None when it cannot be read (as `simsearch.images.load_image` would
    refuse it: not a regular file, over the size limits, damaged) or is not stored upright (an
    EXIF orientation: its blocks lie in another frame than its picture)."""
    read = _read(path)
    if read is None:
        return None
    luma, steps, jpeg, colour = read
    h, w = luma.shape
    side = CARRY_REGION + 2 * _MARGIN
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return Grid(str(path), np.ascontiguousarray(luma[top:top + side, left:left + side]), top,
                left, h, w, steps, jpeg, colour)


def _read(path, colour: bool = True, via_rgb: bool = False):
    """(the luma plane, the luma steps, whether a JPEG, the colour planes or None) of the file;
    None when it cannot be read or is not stored upright. A JPEG's luma is libjpeg's own (its
    grey output from a colour file is its Y, one byte a pixel), or with `via_rgb` the Y of its
    RGB pixels, as a PNG saved from them holds it; its colours are read apart, at 1/2
    scale."""
    try:
        with _open_regular(path) as (f, size):
            with _open_pillow(f, size, _head(f), path, MAX_DECODE_BYTES) as im:
                if im.width * im.height > MAX_PIXELS or _orientation(im, f) != 1:
                    return None
                if _see_through(im):  # its transparency is something a JPEG lacks
                    return None
                jpeg = im.format in ("JPEG", "MPO")
                if jpeg:
                    layers = getattr(im, "layer", None) or [(None, 1, 1, 0)]
                    table = (getattr(im, "quantization", None) or {}).get(layers[0][3])
                    if table is None or len(table) != 64 or im.mode not in ("RGB", "L"):
                        return None
                    steps = np.asarray(table, np.float64)
                    grey = im.mode == "L"
                    if via_rgb and not grey:  # (Pillow's RGB to L is libjpeg's RGB to Y)
                        luma = np.asarray(im.convert("RGB").convert("L"))
                    else:
                        im.draft("L", im.size)
                        luma = np.asarray(im.convert("L"))
                else:
                    steps = np.ones(64)
                    rgb = im.convert("RGB")
                    luma = np.asarray(rgb.convert("L"))  # libjpeg's Y, as a JPEG of it would
                    grey = False
                    planes = _colour(rgb) if colour else None
        if jpeg and colour and not grey:
            with _open_regular(path) as (f, size):
                with _open_pillow(f, size, _head(f), path, MAX_DECODE_BYTES) as im:
                    # at 1/2 scale: at 1/8 a JPEG's colours are its blocks' means, which a
                    # flipped or turned copy's blocks do not share
                    im.draft("RGB", (max(1, im.width // 2), max(1, im.height // 2)))
                    planes = _colour(im.convert("RGB"))
        elif jpeg:
            planes = None
    except Exception:  # noqa: BLE001 - Pillow's plugins raise more than OSError; such a file
        return None    # cannot tell, and the plan goes on
    return luma, steps, jpeg, planes


def _see_through(im) -> bool:
    """Whether any pixel of the picture is not fully opaque (an alpha channel below 255, a
    palette's transparent entry in use)."""
    if "A" in im.getbands():
        return im.getchannel("A").getextrema()[0] < 255
    if "transparency" in im.info:
        return im.convert("RGBA").getchannel("A").getextrema()[0] < 255
    return False


def _colour(rgb) -> np.ndarray | None:
    """Cb and Cr of a picture at COLOUR_SIDE a side (2 x side x side, floats); None when they
    lie within COLOUR_NONE of grey everywhere (a grey picture)."""
    planes = _planes(rgb)
    return None if np.abs(planes - 128).max() <= COLOUR_NONE else planes


def _planes(rgb) -> np.ndarray:
    """Cb and Cr of a picture (PIL, RGB) at COLOUR_SIDE a side (2 x side x side, floats)."""
    return _cells(rgb)[1]


def _cells(rgb, side: int = COLOUR_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Y (side x side) and Cb and Cr (2 x side x side) of a picture (PIL, RGB) at `side` a
    side, floats."""
    from PIL import Image
    small = rgb.resize((side, side), Image.Resampling.BOX).convert("YCbCr")
    cells = np.asarray(small, np.float64)
    return cells[:, :, 0], cells[:, :, 1:].transpose(2, 0, 1)


def carried(g: Grid | None, f: Grid | None, turn) -> Carried | None:
    """How `g`'s pixels, turned into `f`'s frame by `turn` (the 2 x 2 signed permutation taking
    `f`'s centred (x, y) to `g`'s), lie on `f`'s JPEG lattice and at its own coefficients: over
    the central region's blocks, on `f`'s 8-pixel grid, at the AC frequencies where `f`'s step
    is at least CARRY_STEP and an integer multiple, 2 or more, of `g`'s (so that `g`'s own
    rounding leaves `f`'s lattice whole, and a `g` coarser than `f` is never asked), the
    coefficients at least CARRY_SIZE steps in size. None when `f` is no JPEG, the canvases
    differ under the turn, no frequency is asked, or fewer than CARRY_MIN coefficients tell."""
    turn = _as_turn(turn)
    use = _asked(g, f, turn)
    if use is None:
        return None
    x = _coefficients(g, turn, (f.height, f.width))[:, use] / f.steps[use]
    sized = np.abs(x) >= CARRY_SIZE
    if sized.sum() < CARRY_MIN:
        return None
    points = np.round(_coefficients(f, _SAME, (f.height, f.width))[:, use] / f.steps[use])
    x = x[sized]
    return Carried(float(np.mean(np.cos(2 * np.pi * x))),
                   float(np.mean(np.round(x) == points[sized])))


def is_resave(g: Grid | None, f: Grid | None, turn) -> bool:
    """Whether `g` was saved again from `f`'s JPEG and nothing else: its central part on `f`'s
    lattice (CARRY) and at `f`'s own coefficients (CARRY_SAME, `carried`), every part of it at
    `f`'s coefficients (`everywhere`), and its colours `f`'s or none (`same_colours`)."""
    got = carried(g, f, turn)
    return (got is not None and got.lattice >= CARRY and got.same >= CARRY_SAME
            and same_colours(g, f, turn) and everywhere(g, f, turn))


def same_colours(g: Grid, f: Grid, turn) -> bool:
    """Whether `g`'s colours, turned into `f`'s frame, are `f`'s (Cb and Cr within COLOUR_SAME
    levels, mean, and COLOUR_CELL in every eighth of the picture a side: a recoloured part),
    or `g` has none (a grey copy holds no colour `f` lacks)."""
    if g.colour is None:
        return True
    if f.colour is None:
        return False  # colour where the JPEG has none: a colourised copy
    (a, b), (c, d) = _as_turn(turn)
    planes = g.colour
    # a picture of `g` read into `f`'s frame: flips and the swap of axes on the small planes
    if a == 0:  # f's x runs along g's y
        planes = planes.transpose(0, 2, 1)
        flip_x, flip_y = c < 0, b < 0
    else:
        flip_x, flip_y = a < 0, d < 0
    if flip_x:
        planes = planes[:, :, ::-1]
    if flip_y:
        planes = planes[:, ::-1, :]
    apart = np.abs(planes - f.colour)
    side = COLOUR_SIDE // 8
    cells = apart.reshape(2, 8, side, 8, side).mean(axis=(0, 2, 4))
    return float(apart.mean()) <= COLOUR_SAME and float(cells.max()) <= COLOUR_CELL


def everywhere(g: Grid, f: Grid, turn) -> bool:
    """Whether every part of `g`'s picture, turned into `f`'s frame, is at `f`'s JPEG values
    (`tile_shares`): in each tile that tells, at least TILE_SAME of its coefficients round to
    `f`'s, and in every tile its blocks' mean levels lie within TILE_LEVEL of `f`'s. A
    retouch, a logo, a caption, a vignette, a brightness shift leave a tile that does not."""
    found = tile_shares(g, f, turn)
    return (found is not None and bool(np.all(found[0] >= TILE_SAME))
            and bool(np.all(found[1] <= TILE_LEVEL)) and found[2] <= EDGE_LEVEL)


def tile_shares(g: Grid, f: Grid, turn) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Over the whole picture, on `f`'s block grid, in tiles of TILE x TILE blocks: for each
    tile with at least TILE_MIN coefficients of a step or more (in either file) at the
    frequencies `carried` asks, the share of them in `g` (turned into `f`'s frame) that round
    to `f`'s; for every tile, the mean difference of its blocks' mean levels; and the larger
    mean difference of the pixels in the strips right and below the last whole blocks (0
    without them). Each file is decoded again, its luma only, and read a strip of tiles at a
    time; None when one cannot be read (or no longer has its size) or nothing is asked."""
    # a re-save was made from the JPEG's RGB pixels, whose luma differs from the JPEG's own
    # where a colour is clipped: the JPEG is read that way here
    mine, theirs = _read(g.path, colour=False), _read(f.path, colour=False, via_rgb=True)
    if (mine is None or theirs is None or mine[0].shape != (g.height, g.width)
            or theirs[0].shape != (f.height, f.width)):  # (changed since it was first read)
        return None
    full_g, full_f = replace(g, window=mine[0], top=0, left=0, _coefficients={}), \
        replace(f, window=theirs[0], top=0, left=0, _coefficients={})
    h, w = f.height, f.width
    turn = _as_turn(turn)
    use = _asked(g, f, turn)
    bh, bw = h // 8, w // 8
    if use is None or min(bh, bw) < 1:
        return None
    cols = -(-bw // TILE)
    shares, levels = [], []
    for first in range(0, bh, TILE):
        rows = min(TILE, bh - first)
        mine_raw = _blocks(full_g, turn, (h, w), (first, 0, rows, bw))
        their_raw = _blocks(full_f, _SAME, (h, w), (first, 0, rows, bw))
        x = mine_raw[:, use] / f.steps[use]
        points = np.round(their_raw[:, use] / f.steps[use])
        sized = (np.abs(x) >= TILE_SIZE) | (np.abs(points) >= 1)
        agree = (np.round(x) == points) & sized
        # each block's mean level is its DC coefficient over 8
        apart = np.abs(mine_raw[:, 0] - their_raw[:, 0]) / 8

        def by_tile(per_block, rows=rows):
            grid = np.pad(per_block.reshape(rows, bw), ((0, 0), (0, cols * TILE - bw)))
            return grid.reshape(rows, cols, TILE).sum(axis=(0, 2))

        counted, agreeing = by_tile(sized.sum(axis=1)), by_tile(agree.sum(axis=1))
        blocks = by_tile(np.ones(rows * bw))
        tells = counted >= TILE_MIN
        shares.append(agreeing[tells] / counted[tells])
        levels.append(by_tile(apart) / np.maximum(blocks, 1))
    edge = 0.0
    for ys, xs in ((np.arange(h)[:, None], np.arange(bw * 8, w)[None, :]),
                   (np.arange(bh * 8, h)[:, None], np.arange(w)[None, :])):
        if ys.size and xs.size:  # the pixels past the last whole block, one by one
            apart = np.abs(_turned(full_g, turn, (h, w), ys, xs).astype(np.float64)
                           - full_f.window[ys, xs])
            edge = max(edge, float(apart.mean()))
    return np.concatenate(shares), np.concatenate(levels), edge


def _as_turn(turn) -> tuple[tuple[int, int], tuple[int, int]]:
    """A quarter turn or flip (2 x 2, any numbers) as whole numbers, row by row."""
    return tuple(tuple(int(round(float(v))) for v in row) for row in np.asarray(turn))


def _asked(g: Grid | None, f: Grid | None, turn: tuple) -> np.ndarray | None:
    """The frequencies `carried` asks of `g` against `f` (a mask of 64); None when `f` is no
    JPEG, the canvases differ under `turn` (`_as_turn`'s), or none is asked."""
    if g is None or f is None or not f.jpeg:
        return None
    swapped = turn[0][0] == 0
    if (g.width, g.height) != ((f.height, f.width) if swapped else (f.width, f.height)):
        return None
    # the steps of `g` as they lie in `f`'s blocks: a transposed picture swaps the frequencies
    own = np.maximum(g.steps.reshape(8, 8).T.ravel() if swapped else g.steps, 1)
    ratio = f.steps / own
    use = (f.steps >= CARRY_STEP) & (ratio >= 2) & (np.abs(ratio - np.round(ratio)) < 1e-9)
    use[0] = False
    return use if use.any() else None


def _coefficients(g: Grid, turn: tuple, shape: tuple[int, int]) -> np.ndarray:
    """The DCT coefficients (blocks by 64; JPEG's, level-shifted by 128) of `g`'s pixels turned
    by `turn` into the frame of a picture of `shape` (height, width), over that picture's
    central region (at most CARRY_REGION a side, cut on its 8-pixel grid); kept on `g`."""
    key = (turn, shape)
    if key not in g._coefficients:
        h, w = shape
        bh, bw = min(h, CARRY_REGION) // 8, min(w, CARRY_REGION) // 8
        g._coefficients[key] = _blocks(g, turn, shape, ((h // 8 - bh) // 2, (w // 8 - bw) // 2,
                                                        bh, bw))
    return g._coefficients[key]


def _turned(g: Grid, turn: tuple, shape: tuple[int, int], ys: np.ndarray,
            xs: np.ndarray) -> np.ndarray:
    """`g`'s pixels at the rows `ys` and columns `xs` (open grids) of the frame of a picture
    of `shape`, `g` turned into it by `turn`."""
    h, w = shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    gx = turn[0][0] * (xs - cx) + turn[0][1] * (ys - cy) + (g.width - 1) / 2 - g.left
    gy = turn[1][0] * (xs - cx) + turn[1][1] * (ys - cy) + (g.height - 1) / 2 - g.top
    return g.window[np.rint(gy).astype(np.intp), np.rint(gx).astype(np.intp)]


def _blocks(g: Grid, turn: tuple, shape: tuple[int, int], blocks: tuple) -> np.ndarray:
    """The DCT coefficients (blocks by 64) of `g`'s pixels turned by `turn` into the frame of
    a picture of `shape`, over its blocks (first row, first column, rows, columns)."""
    first_row, first_col, bh, bw = blocks
    top, left = first_row * 8, first_col * 8
    ys, xs = np.ogrid[top:top + bh * 8, left:left + bw * 8]
    pixels = _turned(g, turn, shape, ys, xs)
    return (pixels.astype(np.float64) - 128).reshape(bh, 8, bw, 8).transpose(
        0, 2, 1, 3).reshape(-1, 64) @ _DCT2.T


# a file stored without loss holds another file's decoded pixels when, turned into its frame,
# every pixel's every channel is theirs: a PNG saved from a JPEG's decoded pixels (an export, a
# conversion) is those pixels exactly, libjpeg's decoders (Pillow's, browsers', GIMP's,
# ImageMagick's) giving one answer; a JPEG saved from a PNG is not, even at quality 98 (a level
# or four off at a letter's edges), nor is a retouch, a caption or a change of levels (session
# 32: a newcomer's plan kept such a PNG, "stored without loss", and acted on the JPEG it was
# saved from). Another decoder's rounding leaves the PNG first, as before
_ROWS = 256  # compared this many rows at a time (a 50-megapixel pair in small pieces)


def decoded(lossless: str | os.PathLike, lossy: str | os.PathLike) -> bool | None:
    """Whether the file `lossless` holds the decoded pixels of the file `lossy`, upright, up to
    a quarter turn or a flip (the eight ways, where the canvases fit), every one exactly: it
    then holds nothing `lossy` lacks. None when either cannot be read (as
    `simsearch.images.load_image` would refuse it) or `lossless` is not fully opaque (its
    transparency is something a JPEG lacks)."""
    from simsearch.errors import SimsearchError
    from simsearch.images import load_image
    try:
        with _open_regular(lossless) as (f, size):
            with _open_pillow(f, size, _head(f), lossless, MAX_DECODE_BYTES) as im:
                if _see_through(im):
                    return None
        held = np.asarray(load_image(lossless).image)  # RGB, upright
        source = np.asarray(load_image(lossy).image)
    except (SimsearchError, OSError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - Pillow's plugins raise more than OSError: cannot tell
        return None
    return holds_pixels(held, source)


def holds_pixels(held: np.ndarray, source: np.ndarray) -> bool:
    """Whether the picture `held` (an RGB array) is `source`'s pixels exactly, turned by one of
    the eight quarter turns and flips (`decoded`, on pictures already decoded)."""
    for quarter in range(4):
        for flip in (False, True):
            turned = np.rot90(source, quarter)
            turned = turned[:, ::-1] if flip else turned
            if turned.shape == held.shape and all(
                    np.array_equal(held[top:top + _ROWS], turned[top:top + _ROWS])
                    for top in range(0, held.shape[0], _ROWS)):
                return True
    return False


class Colours(NamedTuple):
    """What a picture's pixels say of its colour (`has_colour`)."""

    colour: bool | None      # in colour throughout (True), grey throughout (False), or neither
    chroma: float | None     # how far its colours lie from grey (levels, mean over cells)
    variety: float | None    # how far they vary at one brightness (levels, root mean square)
    spots: float | None      # the share of it SPOT_LEVEL or more from grey (finer cells)


def has_colour(path: str | os.PathLike) -> Colours:
    """What the picture in the file says of colour, read on COLOUR_SIDE x COLOUR_SIDE cells.
    `colour`: True when at least COLOUR_THROUGHOUT of the cells lie further than COLOUR_NONE
    from grey (a colour photograph), False when none does (grey throughout), None in between (a
    coloured caption or frame on a grey picture, or a photograph mostly grey or dark), when it
    cannot be read, or when it has transparency (what shows through is not its colour).
    `chroma`: the mean over the cells of the larger of |Cb - 128| and |Cr - 128|, in levels
    (transparency on white). `variety`: how far Cb and Cr lie from their mean among cells of
    like brightness (one of VARIETY_BINS bands of Y), root mean square, in levels: the colour
    that brightness does not explain. A sepia, a tinted black-and-white or a duotone has colour
    (chroma) but little variety: its colour is a function of its brightness; the photograph it
    was made from has both. `spots`: the share of the picture, in SPOT_SIDE x SPOT_SIDE cells,
    SPOT_LEVEL or more from grey (a stamp, a signature, a coloured line on a grey scan: colour
    in a small part, which the mean dilutes). All four None when the file cannot be read."""
    from simsearch.errors import SimsearchError
    from simsearch.images import load_image, to_rgb
    try:
        picture = load_image(path, target=4 * COLOUR_SIDE, alpha=True).image
        found = colour_of(to_rgb(picture))  # transparency on white, as the network sees
        return found._replace(colour=None) if _see_through(picture) else found
    except (SimsearchError, OSError, ValueError):
        return Colours(None, None, None, None)
    except Exception:  # noqa: BLE001 - Pillow's plugins raise more than OSError: cannot tell
        return Colours(None, None, None, None)


def colour_of(rgb) -> Colours:
    """`has_colour` of a picture already decoded (PIL, RGB, opaque)."""
    luma, planes = _cells(rgb)
    far = np.abs(planes - 128).max(axis=0)
    variety, spots = _variety(luma, planes), _spots(rgb)
    if far.max() <= COLOUR_NONE:
        return Colours(False, float(far.mean()), variety, spots)
    share = float((far > COLOUR_NONE).mean())
    return Colours(True if share >= COLOUR_THROUGHOUT else None, float(far.mean()), variety,
                   spots)


def _spots(rgb) -> float:
    """The share of the picture's cells, at SPOT_SIDE a side, SPOT_LEVEL or more from grey
    (`has_colour`'s `spots`): finer cells than the others', so that a thin line of ink on a big
    scan is not averaged away."""
    planes = _cells(rgb, SPOT_SIDE)[1]
    return float((np.abs(planes - 128).max(axis=0) >= SPOT_LEVEL).mean())


def _variety(luma: np.ndarray, planes: np.ndarray) -> float:
    """The root mean square distance of each cell's (Cb, Cr) from the mean of the cells in its
    band of brightness (`has_colour`'s `variety`)."""
    bands = np.minimum((luma * VARIETY_BINS / 256).astype(np.intp), VARIETY_BINS - 1).ravel()
    cb, cr = planes[0].ravel(), planes[1].ravel()
    count = np.maximum(np.bincount(bands, minlength=VARIETY_BINS), 1)
    off = 0.0
    for plane in (cb, cr):
        mean = np.bincount(bands, plane, VARIETY_BINS) / count
        off += float(((plane - mean[bands]) ** 2).sum())
    return float(np.sqrt(off / bands.size))
