"""How much of a picture file's finest detail lies along each of its axes.

A picture enlarged along one axis holds no detail finer than its source's along that axis: the
top band of its spectrum along the stretch is nearly empty (what is left there is the
interpolation's and the saves' noise), while across it the band is as full as the source's.
The keep rule `largest` reads this to tell a copy stretched one way from its original, which
the picture check's map cannot: the map is the same seen from either file
(`simsearch.layout.largest_between`; recipes/default_model/trials/keep-rules-band-rule.md).

`bars` reads the other thing a map cannot tell: flat bars along a file's border (a letterbox,
a caption's band), which widen its canvas without adding any of the picture
(recipes/default_model/trials/keep-bars-rule.md); `corners`, the filled corners of a picture
turned on an enlarged canvas (recipes/default_model/trials/keep-corners-rule.md).
(`simsearch.resave` reads the last thing: a file saved again from another's JPEG.)
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from simsearch.errors import SimsearchError
from simsearch.images import load_image

__all__ = ["band", "band_shares", "bars", "bar_shares", "bars_hold", "corners", "corner_shares",
           "turned_by", "TOP_BAND", "STRETCH"]

# the top band, in cycles per pixel, and the whole it is a share of (below 0.04: the picture's
# layout, not its detail; above 0.48: the last bins, where the window leaks)
TOP_BAND, WHOLE = (0.405, 0.48), (0.04, 0.48)
# an axis enlarged this many times or more holds nothing in the top band: 0.5 / 1.3 = 0.385
STRETCH = 1.3
REGION = 1024   # the central part of the picture measured, at most this many pixels a side
MIN_SIDE = 64   # a picture with a side shorter than this has too few samples to tell


def band(path: str | os.PathLike) -> tuple[float, float] | None:
    """(along x, along y): the share of the energy of the file's grey picture, at its full
    resolution and upright, that lies in the top band along each axis (`band_shares`); None when
    the file cannot be read or is too small to tell."""
    try:
        image = load_image(path).image
    except (SimsearchError, OSError, ValueError):
        return None
    w, h = image.size
    left, top = max(0, (w - REGION) // 2), max(0, (h - REGION) // 2)
    # only the central region is measured: cut it before the grey copy and the floats
    region = image.crop((left, top, left + min(w, REGION), top + min(h, REGION)))
    return band_shares(np.asarray(region.convert("L"), np.float64))


def band_shares(grey: np.ndarray) -> tuple[float, float] | None:
    """`band` of a grey picture (rows by columns): along x, the rows' spectra; along y, the
    columns'; each line of the central region less its mean, under a Hann window, its power
    averaged over the lines. None for a side under MIN_SIDE or a picture flat all over."""
    h, w = grey.shape
    if min(h, w) < MIN_SIDE:
        return None
    top, left = max(0, (h - REGION) // 2), max(0, (w - REGION) // 2)
    region = np.asarray(grey[top:top + REGION, left:left + REGION], np.float64)
    shares = (_share(region.T), _share(region))
    return None if None in shares else shares


def _share(lines: np.ndarray) -> float | None:
    """The top band's share for the spectra along axis 0 of `lines` (each column one line)."""
    n = lines.shape[0]
    lines = lines - lines.mean(axis=0, keepdims=True)
    power = (np.abs(np.fft.rfft(lines * np.hanning(n)[:, None], axis=0)) ** 2).mean(axis=1)
    freq = np.arange(len(power)) / n
    whole = power[(freq >= WHOLE[0]) & (freq <= WHOLE[1])].sum()
    if not whole > 1e-9:
        return None
    return float(power[(freq >= TOP_BAND[0]) & (freq <= TOP_BAND[1])].sum() / whole)


BAR_SIDE = 512       # bars are read on the picture reduced to this many pixels on its long side
BAR_LEVELS = 16      # a pixel within this many levels of the border's colour (each channel) is ground
BAR_CLEAN = 0.9      # a line this much ground is clean: a bar's border line and its inner edge
BAR_GROUND = 0.2     # a band runs on over lines at least this much ground (a caption's letters)
BAR_GAP = 3          # a flat bar ends within this many lines of its band's end (JPEG's ringing)
BAR_FLAT = 0.995     # a flat bar's lines, and a filled corner's triangle, are this much ground
#                      (a moon, a short word or a logo on them is something: not flat)


def bars(path: str | os.PathLike) -> tuple[float, ...] | None:
    """(left, top, right, bottom) twice: how far a band runs in from each side of the file's
    picture (upright), and how far a flat bar does, each a share of its width or height
    (`bar_shares`); None when the file cannot be read or is too small to tell."""
    rgb = _reduced(path)
    return None if rgb is None else bar_shares(rgb)


def _reduced(path: str | os.PathLike) -> np.ndarray | None:
    """The file's picture, upright, RGB, at most BAR_SIDE pixels on its long side; None when
    it cannot be read."""
    try:
        image = load_image(path, target=BAR_SIDE).image
    except (SimsearchError, OSError, ValueError):
        return None
    w, h = image.size
    if max(w, h) > BAR_SIDE:
        k = BAR_SIDE / max(w, h)
        image = image.resize((max(1, round(w * k)), max(1, round(h * k))),
                             Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(image.convert("RGB"), np.int16)


def bar_shares(rgb: np.ndarray) -> tuple[float, ...] | None:
    """`bars` of an RGB picture (rows by columns by 3): for each side (left, top, right,
    bottom), its band, then for each side its flat bar. From each side, the border line's
    colour (each channel's median) is the ground, if at least BAR_CLEAN of that line is within
    BAR_LEVELS of it (else that side has neither: 0). The band runs inward over the lines at
    least BAR_GROUND ground (a caption's letters, a title: content on a flat ground), at most
    half the side, and ends at the last of them that is clean (BAR_CLEAN); the flat bar runs
    over the lines from the border that are all BAR_FLAT ground (a letterbox, a plain margin:
    nothing on it), and is none unless it ends within BAR_GAP lines of the band's end (a line
    of text beside the picture is something). Either reaching half the side is none (a picture's own flat ground). None
    for a side under MIN_SIDE."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        return None
    sides = (rgb.transpose(1, 0, 2), rgb, rgb.transpose(1, 0, 2)[::-1], rgb[::-1])
    found = [_bar(lines) for lines in sides]
    return (tuple(band / len(lines) for (band, _), lines in zip(found, sides))
            + tuple(flat / len(lines) for (_, flat), lines in zip(found, sides)))


def _bar(lines: np.ndarray) -> tuple[int, int]:
    """How many lines (axis 0, from the first) a band covers, and a flat bar; 0 when none."""
    ground = np.median(lines[0], axis=0)
    share = (np.abs(lines[: len(lines) // 2] - ground).max(axis=2) <= BAR_LEVELS).mean(axis=1)
    if share[0] < BAR_CLEAN:
        return 0, 0
    run = len(share) if (share >= BAR_GROUND).all() else int(np.argmin(share >= BAR_GROUND))
    clean = np.flatnonzero(share[:run] >= BAR_CLEAN)
    flat = len(share) if (share >= BAR_FLAT).all() else int(np.argmin(share >= BAR_FLAT))
    # one that reaches the middle is none: the picture's own flat ground
    band = 0 if clean[-1] + 1 >= len(share) else int(clean[-1]) + 1
    # a flat bar must run to its band's end: a line of text beside the picture is something
    if flat >= len(share) or band - flat > BAR_GAP:
        flat = 0
    return band, flat


PLACE_SIDE = 48      # pictures are compared for `bars_hold` at this many pixels on the long side
PLACE_SAME = 0.9     # ... where the picture must correlate at least this well (grey, normalised)
PLACE_STEPS = 16     # placements tried along the axis: the room in this many steps
PLACE_NEAR = 0.03    # a placement within this share of the side of the bars' own is theirs


def bars_hold(inner: str | os.PathLike, outer: str | os.PathLike,
              shares: tuple[float, ...], axis: int,
              mirror: tuple[bool, bool] = (False, False), pictures: dict | None = None
              ) -> bool:
    """Whether the file `outer`, whose bands or bars are `shares` (left, top, right, bottom),
    holds the picture of the file `inner` between them along `axis` (0: x, 1: y), and nowhere
    else: of every placement of
    `inner`'s picture along that axis (`inner` as long as the part between the bars; `mirror`:
    flipped along x, y as the maps say), the one between the bars correlates best with it, by
    PLACE_SAME or more, better than any placement farther than PLACE_NEAR from it. A crop of a
    picture with a flat band of its own (sky, a page margin) at its other end is placed at that
    end, not between the bands: False. False when a file cannot be read. `pictures`: the
    reduced pictures already read, by path (filled in), for many calls on one group's files."""
    if pictures is None:
        pictures = {}
    for path in (inner, outer):
        if path not in pictures:
            pictures[path] = _reduced(path)
    a, b = pictures[inner], pictures[outer]
    if a is None or b is None:
        return False
    a, b = a.mean(axis=2), b.mean(axis=2)
    if mirror[0]:
        b = b[:, ::-1]
        shares = (shares[2], shares[1], shares[0], shares[3])
    if mirror[1]:
        b = b[::-1]
        shares = (shares[0], shares[3], shares[2], shares[1])
    side = b.shape[1 - axis]
    start = round(shares[axis] * side)
    length = side - start - round(shares[axis + 2] * side)
    if length < MIN_SIDE // 4 or min(a.shape) < MIN_SIDE // 4:
        return False
    want = _thumb(a)
    if want is None:
        return False
    room = side - length
    offsets = sorted({start, *np.linspace(0, room, PLACE_STEPS + 1).round().astype(int).tolist()})
    score = {}
    for o in offsets:
        window = b[:, o:o + length] if axis == 0 else b[o:o + length]
        got = _thumb(window, want.shape)
        score[o] = -1.0 if got is None else _ncc(want, got)
    others = [v for o, v in score.items() if abs(o - start) > PLACE_NEAR * side]
    return score[start] >= PLACE_SAME and all(v < score[start] for v in others)


def _thumb(grey: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """`grey` resized (box filter) to `shape`, or to PLACE_SIDE on its long side; None when
    flat."""
    h, w = grey.shape
    if shape is None:
        k = PLACE_SIDE / max(h, w)
        shape = (max(4, round(h * k)), max(4, round(w * k)))
    small = np.asarray(Image.fromarray(np.asarray(grey, np.float32), "F").resize(
        (shape[1], shape[0]), Image.Resampling.BOX), np.float64)
    return small if small.std() > 1e-6 else None


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else -1.0


CORNER_SHRINK = 0.9   # a corner's triangle is tested shrunk this much towards the corner
CORNER_EDGE = 0.9     # a turned picture's corners' runs add up to this much of each edge
CORNER_RUN = (0.03, 0.97)  # each run at least and at most this share of its edge
CORNER_AGREE = 4.0    # degrees: the four triangles' angles within this of their mean
CORNER_INSET = 2      # runs are read along the third row and column from the corner


def corners(path: str | os.PathLike) -> tuple[float, ...] | None:
    """(top-left x, y, top-right x, y, bottom-right x, y, bottom-left x, y): how far a flat
    fill runs from each corner of the file's picture (upright) along its two edges, each a
    share of the width or height (`corner_shares`); None when the file cannot be read or is
    too small to tell."""
    rgb = _reduced(path)
    return None if rgb is None else corner_shares(rgb)


def corner_shares(rgb: np.ndarray) -> tuple[float, ...] | None:
    """`corners` of an RGB picture (rows by columns by 3). A corner is filled when the 3 x 3
    pixels at it are all within BAR_LEVELS of their median colour (each channel); its runs
    are the pixels from it, along the row and the column CORNER_INSET in from the border,
    within BAR_LEVELS of that colour; its triangle (the corner and the runs' ends, shrunk by
    CORNER_SHRINK) must be at least BAR_FLAT that colour (a logo or a signature on it is
    something). A corner that is not filled runs 0 both ways. None for a side under
    MIN_SIDE."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        return None
    out: list[float] = []
    for flip_x, flip_y in ((False, False), (True, False), (True, True), (False, True)):
        view = rgb[::-1 if flip_y else 1, ::-1 if flip_x else 1]
        run_x, run_y = _corner(view)
        out += [run_x / w, run_y / h]
    return tuple(out)


def _corner(view: np.ndarray) -> tuple[int, int]:
    """The runs (along x, along y) of the fill at the corner [0, 0] of `view`; (0, 0) if none."""
    ground = np.median(view[:3, :3].reshape(-1, 3), axis=0)

    def near(pixels: np.ndarray) -> np.ndarray:
        return np.abs(pixels - ground).max(axis=-1) <= BAR_LEVELS

    if not near(view[:3, :3]).all():
        return 0, 0
    # read two pixels in from the border: a canvas rounded up can leave its border line empty
    row, col = near(view[CORNER_INSET]), near(view[:, CORNER_INSET])
    run_x = len(row) if row.all() else int(np.argmin(row))
    run_y = len(col) if col.all() else int(np.argmin(col))
    ys, xs = np.mgrid[0:run_y, 0:run_x]
    inside = xs / run_x + ys / run_y <= CORNER_SHRINK
    if not inside.any() or near(view[:run_y, :run_x])[inside].mean() < BAR_FLAT:
        return 0, 0
    return run_x, run_y


def turned_by(shares: tuple[float, ...] | None, width: int, height: int) -> float | None:
    """The angle (degrees, 0 to 90) by which a file with these `corners` holds a picture turned
    on a filled canvas: every corner filled, each edge's two runs adding up to CORNER_EDGE of
    it (each within CORNER_RUN), and the four triangles agreeing on one turn within
    CORNER_AGREE (top-left and bottom-right at the angle, the other two at 90 less it); None
    when not."""
    if shares is None or min(width, height) <= 0:
        return None
    tl, tr, br, bl = (shares[i:i + 2] for i in range(0, 8, 2))
    low, high = CORNER_RUN
    for a, b in ((tl[0], tr[0]), (bl[0], br[0]), (tl[1], bl[1]), (tr[1], br[1])):
        if a + b < CORNER_EDGE or not (low <= a <= high and low <= b <= high):
            return None
    angles = [float(np.degrees(np.arctan2(c[1] * height, c[0] * width))) for c in (tl, br)]
    angles += [90.0 - float(np.degrees(np.arctan2(c[1] * height, c[0] * width)))
               for c in (tr, bl)]
    mean = sum(angles) / 4
    return mean if max(abs(a - mean) for a in angles) <= CORNER_AGREE else None

