"""Where the picture lies in each file of a group, from the picture check's maps: which file
holds more of it or holds it larger (`largest_between`), and what only breaks a tie: flat bars
or a band along a border, filled corners of a turn, a one-way stretch, a JPEG saved again
(`resaved_between`). The `with_*` functions read the pixels these need, only for the files
the maps ask about (simsearch.detail, simsearch.resave).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from simsearch.planfile import PlanFile

__all__ = ["PICTURE_TIE", "EXTENT_TIE", "picture_scale", "finer_than", "largest_between",
           "BARS_SQUARE", "BARS_ROOM", "BARS_FIT", "BARS_SLACK", "FLAT_SLACK", "bars_room", "BAND",
           "FLAT", "adds_bars", "bars_between", "banded", "BAND_EMPTY", "BAND_APART",
           "one_way_stretch", "stretched_between", "with_bands", "BAND_GROUP", "CORNERS_ANGLE",
           "CORNERS_FIT", "CORNERS_LEAST", "CORNERS_OVER", "corners_between", "turned_apart",
           "with_corners", "with_bars", "quarter_turn", "RESAVE_SKEW", "resaved_between",
           "with_resaves", "extent_of"]


# `largest` by the picture: a file holding another's picture more than this much larger along
# both axes holds more of it; within it either way, or larger one way and smaller the other (a
# stretch), the two tie (session 24, recipes/default_model/trials/keep-rules-picture-rule.md)
PICTURE_TIE = 1.05
# ... and at one scale, a file showing this much more of the picture (`PlanFile.extent`) holds
# more of it (the original beside its crop); bars and filled corners show nothing more
EXTENT_TIE = 1.15


def picture_scale(f: PlanFile, g: PlanFile) -> tuple[float, float] | None:
    """At what scale `g` holds `f`'s picture along its two axes (the lesser, the greater: the
    singular values of the map from `f`'s pixels to `g`'s, through the group's centre); None
    unless the picture check mapped both. Bars around a picture, a turned canvas with filled
    corners and a crop do not change it; a half-size copy is at 0.5 and 0.5, a stretch at 1
    and 1.5."""
    between = _map_between(f, g)
    if between is None:
        return None
    try:
        low, high = sorted(np.linalg.svd(between, compute_uv=False).tolist())
    except np.linalg.LinAlgError:
        return None
    return (low, high) if np.isfinite(low) and np.isfinite(high) and low > 0 else None


def _map_between(f: PlanFile, g: PlanFile) -> np.ndarray | None:
    """The map (2 x 2) from `f`'s pixels to `g`'s, through the group's centre; None unless
    the picture check mapped both (or when `f`'s map cannot be inverted)."""
    if f.picture is None or g.picture is None:
        return None
    try:
        return (np.reshape(np.asarray(g.picture, np.float64), (2, 2))
                @ np.linalg.inv(np.reshape(np.asarray(f.picture, np.float64), (2, 2))))
    except (ValueError, np.linalg.LinAlgError):
        return None


def finer_than(kept: PlanFile, f: PlanFile) -> float | None:
    """The scale (the lesser of the two axes') at which `f` holds the picture of the file
    `kept`, where it is at least detail.STRETCH both ways: `f` then holds detail the kept file
    lacks (a full-size photo beside the collage holding it small), and a plan keeps it too
    (session 27, recipes/default_model/trials/keep-finer-rule.md); None otherwise. Where the
    picture check did not map both, by their canvases (sides sorted: a turned copy too)."""
    from simsearch.detail import STRETCH
    scales = picture_scale(kept, f)
    if scales is None:  # not both mapped: by canvas, as `largest` compares such files
        if min(kept.width, kept.height, f.width, f.height) <= 0:
            return None
        low = min(max(f.width, f.height) / max(kept.width, kept.height),
                  min(f.width, f.height) / min(kept.width, kept.height))
        return low if low >= STRETCH else None
    return scales[0] if scales[0] >= STRETCH else None


def largest_between(f: PlanFile, g: PlanFile) -> tuple[int, str] | None:
    """`largest` by the picture, for two files the check mapped: (-1 `f` holds more of it, 1
    `g` does, 0 neither, and what decided: "extent", "scale", "bars", "corners", "band" or
    ""); None unless both are
    mapped. The file showing more of the picture (beyond EXTENT_TIE: an original beside its
    crop, even a crop enlarged, whose extra pixels are only its own enlarged) holds more; of
    two showing as much of it, the one holding it larger along both axes (beyond PICTURE_TIE);
    else they tie (bars, filled corners and a one-way stretch add no picture:
    trials/keep-rules-picture-rule.md)."""
    scales = picture_scale(f, g)
    if scales is None:
        return None
    low, high = scales
    wider = (g.extent / f.extent if f.extent is not None and g.extent is not None
             and min(f.extent, g.extent) > 1e-6 else None)
    if wider is not None and (wider > EXTENT_TIE or wider < 1 / EXTENT_TIE):
        return (1 if wider > EXTENT_TIE else -1), "extent"
    if low > PICTURE_TIE or high < 1 / PICTURE_TIE:  # one holds it larger along both axes
        return (1 if low > PICTURE_TIE else -1), "scale"
    # flat bars or filled corners: no more of the picture, and they lose a tie (session 28)
    barred = bars_between(f, g)
    if barred:
        return -barred, "bars"
    turned = corners_between(f, g)
    if turned:
        return -turned, "corners"
    told = stretched_between(f, g)
    return (told, "band") if told else (0, "")


# `g` adds bars to `f` when the map between them is not turned (off the diagonal at most
# BARS_SQUARE of its mean size, its two sizes within PICTURE_TIE), `f`'s canvas leaves `g` at
# least BARS_ROOM of its side to spare along one axis and within BARS_ROOM either way along the
# other, and `g`'s bars along that axis fill the room to within the larger of BARS_FIT of it
# and BARS_SLACK of the side (session 28, recipes/default_model/trials/keep-bars-rule.md)
BARS_SQUARE, BARS_ROOM, BARS_FIT, BARS_SLACK = 0.02, 0.03, 0.15, 0.02
# ... but flat bars, which make a file lose, must leave it no more of the picture than the
# other holds: they fill the room to within this share of the side, and the other axis is
# within it either way (a review: a crop losing 3% along each side kept over its letterbox)
FLAT_SLACK = 0.015


def bars_room(f: PlanFile, g: PlanFile) -> int | None:
    """The canvas axis of `g` (0: x, 1: y) along which `f`'s picture, carried in by the maps,
    leaves `g` room to spare (and no other: `bars_between`'s first two conditions); None."""
    between = _map_between(f, g)
    if between is None or min(f.width, f.height, g.width, g.height) <= 0:
        return None
    sx, sy = abs(between[0, 0]), abs(between[1, 1])
    mean = (sx + sy) / 2
    if (not mean > 0 or max(abs(between[0, 1]), abs(between[1, 0])) > BARS_SQUARE * mean
            or not 1 / PICTURE_TIE <= sx / sy <= PICTURE_TIE):
        return None
    room = (g.width - sx * f.width) / g.width, (g.height - sy * f.height) / g.height
    for axis in (0, 1):
        if room[axis] >= BARS_ROOM and abs(room[1 - axis]) <= BARS_ROOM:
            return axis
    return None


BAND, FLAT = 0, 4  # where a file's bands and its flat bars start in its `bars`


def adds_bars(f: PlanFile, g: PlanFile, kind: int = FLAT) -> bool:
    """Whether `g` holds `f`'s picture with flat bars (`kind` FLAT) or bands (BAND) added along
    one axis: they fill the room `f`'s canvas leaves in `g` (`bars_between`)."""
    return bool(_bars_filling(f, g, kind))


def _bars_filling(f: PlanFile, g: PlanFile, kind: int) -> list[tuple[float, ...]]:
    """The ways `g`'s bars or bands (`kind`) fill the room `f`'s canvas leaves in `g` along
    one axis, each as `g`'s four shares with the sides that do not count set to 0: both sides,
    the first alone, the second alone (a caption above a picture with a flat ground of its own
    at the bottom fills the room alone); empty when none does."""
    axis = bars_room(f, g)
    if axis is None or g.bars is None:
        return []
    between = _map_between(f, g)
    side = (g.width, g.height)[axis]
    room = side - abs(between[axis, axis]) * (f.width, f.height)[axis]
    shares = g.bars[kind:kind + 4]
    if kind == FLAT:  # losing: strictly no more of the picture, along both axes
        across = (g.width, g.height)[1 - axis]
        spare = across - abs(between[1 - axis, 1 - axis]) * (f.width, f.height)[1 - axis]
        if abs(spare) > FLAT_SLACK * across:
            return []
    over = max(BARS_FIT * room, BARS_SLACK * side)
    short = FLAT_SLACK * side if kind == FLAT else over
    ways = []
    for first, second in ((True, True), (True, False), (False, True)):
        way = list(shares)
        way[axis] *= first
        way[axis + 2] *= second
        filled = (way[axis] + way[axis + 2]) * side
        if (way[axis] or way[axis + 2]) and -short <= filled - room <= over:
            ways.append(tuple(way))
    return ways


def bars_between(f: PlanFile, g: PlanFile) -> int:
    """1 when `g` holds `f`'s picture with flat bars added along one axis (a letterbox, a
    plain margin: `simsearch.detail.bars` fills the room `f`'s canvas leaves in `g`), -1
    when `f` holds `g`'s so, 0 otherwise (neither, or both)."""
    return int(adds_bars(f, g)) - int(adds_bars(g, f))


def banded(f: PlanFile, g: PlanFile) -> bool:
    """Whether one of the two holds the other's picture with a band added along its border
    that holds something (a caption, a title, an object on a plain sky): not flat bars, so the
    other file lacks what is on it, and the file without it is the picture as it was. A plan
    acts on neither for the other (`kept_too`)."""
    return any(adds_bars(a, b, BAND) and not adds_bars(a, b, FLAT)
               for a, b in ((f, g), (g, f)))


# a file holding another's picture stretched one way whose top band along the stretch holds less
# than this share of its band across it, and less than half of what the other file's holds
# there, was stretched from it: its added pixels hold no detail (session 26,
# recipes/default_model/trials/keep-rules-band-rule.md; simsearch.detail)
BAND_EMPTY, BAND_APART = 0.5, 2.0
_AXIS_COS = float(np.cos(np.radians(10.0)))  # a stretch this near a canvas axis is along it


def one_way_stretch(f: PlanFile, g: PlanFile) -> bool:
    """Whether the maps say that one of the two holds the other's picture stretched one way
    (the scales between them within PICTURE_TIE of 1 one way, at least detail.STRETCH the
    other), the pair `stretched_between` can tell apart by the files' bands."""
    from simsearch.detail import STRETCH
    scales = picture_scale(f, g)
    if scales is None:
        return False
    low, high = scales
    return ((1 / PICTURE_TIE <= low <= PICTURE_TIE and high >= STRETCH)
            or (1 / PICTURE_TIE <= high <= PICTURE_TIE and low <= 1 / STRETCH))


def stretched_between(f: PlanFile, g: PlanFile) -> int:
    """1 when `f` holds `g`'s picture stretched one way and `f`'s bands say it was stretched
    from it (so `g` holds it better), -1 the other way round, 0 when they cannot tell (no
    band, no one-way stretch, a stretch not along a canvas axis of both, or bands that do not
    differ enough)."""
    from simsearch.detail import STRETCH
    between = _map_between(f, g)
    if f.band is None or g.band is None or between is None:
        return 0
    try:
        u, scales, vt = np.linalg.svd(between)  # f's vt[i] -> scales[i] * g's u[:, i]
    except np.linalg.LinAlgError:
        return 0
    big, small = int(np.argmax(scales)), int(np.argmin(scales))
    if 1 / PICTURE_TIE <= scales[small] <= PICTURE_TIE and scales[big] >= STRETCH:
        wide, narrow, in_wide, in_narrow = g, f, u[:, big], vt[big]  # g holds it stretched
        sign = -1
    elif 1 / PICTURE_TIE <= scales[big] <= PICTURE_TIE and scales[small] <= 1 / STRETCH:
        wide, narrow, in_wide, in_narrow = f, g, vt[small], u[:, small]  # f holds it stretched
        sign = 1
    else:
        return 0
    axes = [_canvas_axis(in_wide), _canvas_axis(in_narrow)]
    if None in axes:
        return 0
    r_wide, r_narrow = _band_ratio(wide, axes[0]), _band_ratio(narrow, axes[1])
    if r_wide is None or r_narrow is None:
        return 0
    return sign if r_wide < BAND_EMPTY and r_narrow >= BAND_APART * r_wide else 0


def _canvas_axis(direction: np.ndarray) -> int | None:
    """0 (x) or 1 (y): the canvas axis a direction lies along, within 10 degrees; else None."""
    d = np.abs(np.asarray(direction, np.float64)) / max(float(np.hypot(*direction)), 1e-12)
    return 0 if d[0] >= _AXIS_COS else 1 if d[1] >= _AXIS_COS else None


def _band_ratio(f: PlanFile, axis: int) -> float | None:
    along, across = f.band[axis], f.band[1 - axis]
    return along / across if across > 1e-9 else None


def with_bands(files: Sequence[PlanFile], read=None) -> list[PlanFile]:
    """`files` with the `band` of each one the check mapped as a one-way stretch of another
    (or another as one of it), read from the file (`simsearch.detail.band`, or `read`); the
    others as they are. Only these pairs need the pixels, so only their files are read."""
    mapped = [f for f in files if f.picture is not None and f.band is None and not f.problem]
    if len(mapped) > BAND_GROUP:  # (pairs grow as the square: such a group ties as before)
        return list(files)
    wanted = {p for i, f in enumerate(mapped) for g in mapped[i + 1:]
              if one_way_stretch(f, g) and _same_extent(f, g) for p in (f.path, g.path)}
    return _read_into(files, wanted, "band", read)


BAND_GROUP = 200  # groups of more mapped files than this are not read for bands


# `g` adds filled corners to `f` when `g` holds a picture turned on a filled canvas by an angle
# (detail.turned_by), the map between them turns by an angle as far from a quarter turn (within
# CORNERS_ANGLE degrees) at scales within PICTURE_TIE, and `f`'s canvas so turned and scaled
# has a bounding box within CORNERS_FIT of `g`'s canvas each way (session 28,
# recipes/default_model/trials/keep-corners-rule.md); maps turning less than CORNERS_LEAST
# degrees from a quarter turn are not read for corners
CORNERS_ANGLE, CORNERS_FIT, CORNERS_LEAST = 4.0, 0.04, 3.0
# ... and `g`'s canvas no larger than that box by more than this share (`g` would hold more of
# the picture than `f`: a review's turned picture beside a crop of the upright one)
CORNERS_OVER = 0.01


def _turn(f: PlanFile, g: PlanFile) -> tuple[float, float] | None:
    """(the scale, the angle in degrees) of the map from `f`'s pixels to `g`'s when its two
    scales are within PICTURE_TIE of each other; None otherwise or without both maps."""
    scales = picture_scale(f, g)
    between = _map_between(f, g)
    if scales is None or between is None or scales[1] > PICTURE_TIE * scales[0]:
        return None
    return ((scales[0] + scales[1]) / 2,
            float(np.degrees(np.arctan2(between[1, 0], between[0, 0]))))


def _off_quarter(angle: float) -> float:
    """How far (degrees, 0 to 45) `angle` lies from the nearest quarter turn."""
    d = angle % 90.0
    return min(d, 90.0 - d)


def _adds_corners(f: PlanFile, g: PlanFile) -> bool:
    """Whether `g` holds `f`'s picture turned on a canvas with filled corners."""
    from simsearch.detail import turned_by
    turn = _turn(f, g)
    a = turned_by(g.corners, g.width, g.height)
    if turn is None or a is None:
        return False
    scale, angle = turn
    if abs(_off_quarter(angle) - _off_quarter(a)) > CORNERS_ANGLE:
        return False
    c, s = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
    box = (scale * (f.width * c + f.height * s), scale * (f.width * s + f.height * c))
    return all(-CORNERS_OVER * side <= b - side <= CORNERS_FIT * side
               for b, side in zip(box, (g.width, g.height)))


def corners_between(f: PlanFile, g: PlanFile) -> int:
    """1 when `g` holds `f`'s picture turned on a canvas with filled corners (read by
    `simsearch.detail.corners`, agreeing with the maps' turn), -1 when `f` holds `g`'s so, 0
    otherwise (neither, or both)."""
    return int(_adds_corners(f, g)) - int(_adds_corners(g, f))


def turned_apart(f: PlanFile, g: PlanFile) -> bool:
    """Whether the maps turn one file's picture to the other's by CORNERS_LEAST degrees or more
    from a quarter turn at scales within PICTURE_TIE: only then are their corners read."""
    turn = _turn(f, g)
    return turn is not None and _off_quarter(turn[1]) >= CORNERS_LEAST


def with_corners(files: Sequence[PlanFile], read=None) -> list[PlanFile]:
    """`files` with the `corners` of each mapped file that the maps turn to or from another
    mapped one (`turned_apart`), read from the file (`simsearch.detail.corners`, or `read`);
    the others as they are. Only these files are read."""
    mapped = [f for f in files if f.picture is not None and f.corners is None and not f.problem]
    if len(mapped) > BAND_GROUP:  # (pairs grow as the square: such a group is left as it was)
        return list(files)
    wanted = {p for i, f in enumerate(mapped) for g in mapped[i + 1:] if turned_apart(f, g)
              for p in (f.path, g.path)}
    return _read_into(files, wanted, "corners", read)


def with_bars(files: Sequence[PlanFile], read=None, hold=None) -> list[PlanFile]:
    """`files` with the `bars` of each one the check mapped holding another's picture with
    room to spare along one axis (`bars_room`), read from the file (`simsearch.detail.bars`,
    or `read`); the others as they are. Only these files are read. Bands or bars that fill the
    room another file's picture leaves count only where that picture lies between them
    (`simsearch.detail.bars_hold`, or `hold`; the maps carry no offset): else those four are
    set to 0, as for an original with a flat band of its own beside its crop from the other
    end."""
    mapped = [f for f in files if f.picture is not None and f.bars is None and not f.problem]
    if len(mapped) > BAND_GROUP:  # (pairs grow as the square: such a group is left as it was)
        return list(files)
    wanted = {g.path for f in mapped for g in mapped if g is not f and bars_room(f, g) is not None}
    out = _read_into(files, wanted, "bars", read)
    if hold is None:  # each file decoded once for all its pairs and ways
        from functools import partial

        from simsearch.detail import bars_hold
        hold = partial(bars_hold, pictures={})
    by_path = {f.path: f for f in out}
    for path in sorted(wanted, key=os.fsencode):
        g = by_path[path]  # each pair is placed against the bars as read
        if g.bars is None:
            continue
        shares = list(g.bars)
        for kind in (BAND, FLAT):
            found = []
            for f in mapped:
                ways = [] if f.path == path else _bars_filling(f, g, kind)
                if not ways:
                    continue
                axis, between = bars_room(f, g), _map_between(f, g)
                mirror = (bool(between[0, 0] < 0), bool(between[1, 1] < 0))
                # the first way the picture lies between (else none): the sides that count
                found.append(next((way for way in ways if hold(f.path, path, way, axis, mirror)),
                                  (0.0,) * 4))
            if found:  # a band's side counts if any file's picture lies beside it (it keeps
                # files); a flat bar's only if every one's does (it makes a file lose)
                pick = max if kind == BAND else min
                shares[kind:kind + 4] = [pick(way[i] for way in found) for i in range(4)]
        by_path[path] = replace(g, bars=tuple(shares))
    return [by_path[f.path] for f in out]


def quarter_turn(f: PlanFile, g: PlanFile) -> np.ndarray | None:
    """The quarter turn or flip (a 2 x 2 signed permutation) the map from `f`'s pixels to
    `g`'s is, at one scale within PICTURE_TIE both ways (off it by at most RESAVE_SKEW of the
    scale), when `g`'s canvas is `f`'s under it; None otherwise or without both maps."""
    between = _map_between(f, g)
    scales = picture_scale(f, g)
    if between is None or scales is None or not (
            1 / PICTURE_TIE <= scales[0] and scales[1] <= PICTURE_TIE):
        return None
    unit = between / ((scales[0] + scales[1]) / 2)
    turn = np.round(unit)
    if (np.abs(unit - turn).max() > RESAVE_SKEW
            or sorted(np.abs(turn).ravel().tolist()) != [0, 0, 1, 1]
            or abs(round(float(np.linalg.det(turn)))) != 1):
        return None
    swapped = turn[0, 0] == 0
    if (g.width, g.height) != ((f.height, f.width) if swapped else (f.width, f.height)):
        return None
    return turn


RESAVE_SKEW = 0.1  # a map this near a quarter turn or flip is one (scales within PICTURE_TIE)


def resaved_between(f: PlanFile, g: PlanFile) -> int:
    """1 when `g` is a re-save of `f`'s JPEG (its pixels carry `f`'s compression and `f`'s do
    not carry `g`'s: simsearch.resave, read by `with_resaves`), -1 when `f` is one of
    `g`'s, 0 otherwise (not asked, neither, or both)."""
    g_of_f = g.carries is not None and f.path in g.carries
    f_of_g = f.carries is not None and g.path in f.carries
    return int(g_of_f) - int(f_of_g)


def with_resaves(files: Sequence[PlanFile], read=None) -> list[PlanFile]:
    """`files` with `carries` read for each mapped file that the check maps at one scale, on
    one canvas up to a quarter turn or flip (`quarter_turn`), to another mapped file showing as
    much of the picture, where one of the two is a JPEG: whether its pixels carry the other's
    compression (`simsearch.resave.is_resave` of the files' `simsearch.resave.grid_of`, or of
    `read`'s). Only these files are read, each once, and only the central part of each is
    kept; a file that cannot be read carries nothing."""
    from simsearch.resave import grid_of, is_resave
    mapped = [f for f in files if f.picture is not None and f.carries is None and not f.problem]
    if len(mapped) > BAND_GROUP:  # (pairs grow as the square: such a group is left as it was)
        return list(files)
    read = read or grid_of
    grids: dict[str, object] = {}

    def grid(f: PlanFile):
        key = f.sha256 or f.path
        if key not in grids:
            grids[key] = read(f.path)
        return grids[key]

    carries: dict[str, list[str]] = {}
    for f in mapped:
        for g in mapped:
            if g is f or "jpeg" not in (f.format, g.format) or not _same_extent(f, g):
                continue
            turn = quarter_turn(f, g)
            if turn is None:
                continue
            carries.setdefault(g.path, [])
            if f.format != "jpeg":
                continue
            if is_resave(grid(g), grid(f), turn):
                carries[g.path].append(f.path)
    return [replace(f, carries=tuple(sorted(carries[f.path], key=os.fsencode)))
            if f.path in carries else f for f in files]


def _read_into(files: Sequence[PlanFile], wanted: set[str], what: str, read=None
               ) -> list[PlanFile]:
    """`files` with the field `what` ("band", "bars" or "corners") of those in `wanted` read
    from the file by `read` (else simsearch.detail's function of that name); identical bytes
    once."""
    if not wanted:
        return list(files)
    if read is None:
        from simsearch import detail
        read = getattr(detail, what)
    by_content: dict[str, tuple | None] = {}
    found = {}
    for f in sorted((f for f in files if f.path in wanted), key=lambda f: os.fsencode(f.path)):
        key = f.sha256 or f.path
        if key not in by_content:
            by_content[key] = read(f.path)
        found[f.path] = by_content[key]
    return [replace(f, **{what: found[f.path]}) if f.path in found else f for f in files]


def _same_extent(f: PlanFile, g: PlanFile) -> bool:
    """Whether the two show as much of the picture (within EXTENT_TIE, or not known): only
    then can `largest` tie them and the bands be asked."""
    if f.extent is None or g.extent is None or min(f.extent, g.extent) <= 1e-6:
        return True
    return 1 / EXTENT_TIE <= g.extent / f.extent <= EXTENT_TIE


def extent_of(beyond: tuple[float, float] | None) -> float | None:
    """A member's `extent` from `simsearch.verify.beyond` on its pair with the centre (the
    shares of the member's keypoints outside the centre's picture and of the centre's outside
    the member's): the part of the centre it shows over the part of itself the centre shows."""
    if beyond is None:
        return None
    mine, theirs = beyond
    return (1.0 - theirs) / max(1.0 - mine, 0.05)


