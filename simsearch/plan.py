"""Keep rules and plan files: which copy of each duplicate group stays, which are acted on, and why.

A plan is data, written before anything is touched: each group with every file's identity at
planning time (size, mtime_ns, sha256), what the keep rules chose and the reason in words.
`simsearch.actions.apply` carries a plan out and re-checks every file against it; the review
page (`simsearch.review`) lets a person change the choices and save the plan again.

Keep rules are ordered: the first rule that tells two files apart decides; of files that tie on
every rule, one whose name says it is a copy of another's ("photo (1).jpg" beside "photo.jpg")
goes first, and
the path (in byte order) breaks any tie that is left, so the same groups and rules always give
the same plan.
Files under a protected folder are always kept and never acted on; the rules still choose the
best copy among all files, so protecting a folder of small copies never costs the large one.

This module only reads: file headers (format, EXIF capture date), and the pixels of the files
the picture check mapped as one stretched one way from another (`with_bands`: whether it was).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import cmp_to_key
from pathlib import Path
from typing import NamedTuple

import numpy as np

from simsearch.errors import PlanError
from simsearch.files import json_text
from simsearch.formats import RAW_SUFFIXES, raw_name

__all__ = ["KEEP_RULES", "DEFAULT_KEEP", "PLAN_VERSION", "DECISIONS", "KeepRule", "PlanFile",
           "PlanGroup", "Plan", "parse_rules", "writable_plan_path", "file_facts", "choose",
           "format_rank", "named_as_copy", "copies_among", "FORMAT_NAMES",
           "make_plan", "under", "size_text", "picture_scale", "finer_than", "PICTURE_TIE",
           "EXTENT_TIE", "extent_of", "one_way_stretch", "stretched_between", "with_bands",
           "bars_between", "bars_room", "with_bars", "corners_between", "turned_apart",
           "with_corners", "banded", "kept_too",
           "BAND_EMPTY", "BAND_APART"]

KEEP_RULES = ("largest", "biggest", "oldest", "newest", "format", "path", "source")
DEFAULT_KEEP = ("largest", "biggest", "oldest")
DEFAULT_FORMAT_ORDER = ("raw", "png", "tiff", "heic", "avif", "webp", "jpeg", "gif", "bmp")
# a camera RAW file's format is its kind (dng, nef, ...); "raw" in a format order stands for all
_RAW_KINDS = tuple(sorted(suffix[1:] for suffix in RAW_SUFFIXES))
FORMAT_NAMES = ("jpeg", "png", "gif", "webp", "bmp", "tiff", "heic", "avif", "raw") + _RAW_KINDS
# what a file manager, a browser or a cloud drive adds to the name of a copy it makes:
# "IMG_1234 (1).jpg", "photo copy.jpg", "photo copy 2.jpg", "photo - Copy.jpg", "photo_copy.jpg",
# "photo (copy).jpg", "photo (another copy).jpg", "photo (3rd copy).jpg", "photo (conflicted
# copy 2024-05-01).jpg", "Copy of photo.jpg", "Copy (2) of photo.jpg" (and Kopie, copie, copia);
# a name counts as a copy's only when, without the marker, it is another file's of the group
_COPY_WORD = r"(copy|kopie|copie|copia)"
_COPY_NAME = re.compile(r"(\s?\(\d{1,3}\)|[\s_-]+" + _COPY_WORD + r"(\s?\(?\d{1,3}\)?)?"
                        r"|\s\((another |\d+(st|nd|rd|th) |conflicted )?" + _COPY_WORD
                        + r"[^)]*\))$", re.IGNORECASE)
_COPY_PREFIX = re.compile(r"^" + _COPY_WORD + r"( \(\d{1,3}\))? (of|von|van|de|di) ",
                          re.IGNORECASE)
PLAN_VERSION = 1
PLAN_FORMAT = "simsearch-plan"
# act: keep `keep`, act on `act_on`; keep-all: touch nothing; not-duplicates: touch nothing and
# remember (in the index) that these files are not duplicates of one another
DECISIONS = ("act", "keep-all", "not-duplicates")

_SUFFIX_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".png": "png", ".webp": "webp",
                   ".gif": "gif", ".bmp": "bmp", ".dib": "bmp", ".tif": "tiff", ".tiff": "tiff",
                   ".heic": "heic", ".heif": "heic", ".avif": "avif"}
_SUFFIX_FORMATS |= {suffix: suffix[1:] for suffix in RAW_SUFFIXES}
_EXIF_IFD, _DATE_TIME_ORIGINAL = 0x8769, 0x9003


@dataclass(frozen=True)
class PlanFile:
    """One file of a group as it was when the plan was made."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    format: str = ""       # lower case: jpeg, png, tiff, heic, ...; "" when unknown
    date: str = ""         # capture date, ISO local time, from EXIF or else the mtime
    date_source: str = ""  # "exif" | "mtime"
    score: float = 1.0     # score to the group's centre
    protected: bool = False
    problem: str = ""      # why this file is neither kept nor acted on (changed since indexed)
    evidence: str = ""     # what put it in the group (simsearch.dedupe.EVIDENCE); "" unknown
    reason: str = ""       # the keep rules' word on it
    # the map (2 x 2, row by row) from the group centre's pixels to this file's, as the picture
    # check fitted it (simsearch.verify.picture_map); None when it fitted none (a plain
    # picture, a file it did not read)
    picture: tuple[float, float, float, float] | None = None
    # how much of the centre's picture this file shows, in units of the centre's (a crop of
    # half 0.5, a wider view 2), from where the check's keypoints fall; None when not mapped
    extent: float | None = None
    # the share of its finest detail along x and along y (simsearch.detail.band), read only
    # when the check mapped it as a one-way stretch of another file of the group; else None
    band: tuple[float, float] | None = None
    # how far a band, then a flat bar, runs in from each side (left, top, right, bottom, twice;
    # shares of the width or height: simsearch.detail.bars), read only when the check mapped
    # another file of the group inside this one's canvas with room to spare along one axis;
    # else None; a four set to 0 when that file's picture does not lie between them (`with_bars`)
    bars: tuple[float, ...] | None = None
    # how far a flat fill runs from each corner along its two edges (simsearch.detail.corners),
    # read only when the check mapped this file and another of the group turned one to the
    # other by 3 to 87 degrees; else None
    corners: tuple[float, ...] | None = None
    # the files of the group whose JPEG compression this file's pixels carry (it was saved again
    # from their decoded pixels: simsearch.resave), of those asked: files the check
    # mapped at one scale with this one, on one canvas up to a quarter turn or flip; None
    # when not asked
    carries: tuple[str, ...] | None = None
    # frames or pages the file holds (an animation, a multi-page scan: MULTI_FRAME formats);
    # the picture check and the network see only the first
    frames: int = 1
    # whether its pixels are stored without loss (PNG, BMP, TIFF, WebP in full colour or grey:
    # True; JPEG, HEIF, a TIFF or WebP compressed with loss: False), read from the header;
    # None when unknown or not one way or the other (a palette, a camera RAW, a plan made
    # before it was read)
    lossless: bool | None = None
    # the lossy files of the group whose decoded pixels this file, stored without loss, holds
    # (simsearch.resave.decoded: saved again from them, it holds nothing more), of those asked:
    # lossy files of its canvas up to a quarter turn, where `biggest` puts lossless first
    # (`with_decodes`); None when not asked
    decodes: tuple[str, ...] | None = None
    # whether the picture has colour: False for a file stored in grey (its mode, from the
    # header) or stored in colour with grey pixels throughout, True for one in colour
    # throughout (read by `with_colours` where `biggest` may weigh it); None when not known or
    # neither (a coloured caption on a grey picture, transparency): it decides nothing
    colour: bool | None = None
    # how far its colours lie from grey, in levels (`simsearch.resave.has_colour`: the mean of
    # 64x64 cells), read with `colour`; 0 for a file stored in grey; None when not read
    chroma: float | None = None
    # the file's other indexed names (a symbolic link to it, a hard link: simsearch.dedupe's
    # `Member.aliases`); a plan keeps such a file (`linked_kept`)
    aliases: tuple[str, ...] = ()

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class KeepRule:
    """One keep rule: `key(file)` sorts the preferred file first; `show(file)` says its value."""

    name: str
    args: tuple[str, ...] = ()

    def compare(self, f: PlanFile, g: PlanFile) -> int:
        """-1 when the rule prefers `f` to `g`, 1 when `g`, 0 when it cannot tell them apart.
        `largest` compares two files by the picture they hold when both carry a map (see
        `largest_between`; `choose` gives every file of a group one, or none), else by canvas."""
        if self.name == "largest":
            decided = largest_between(f, g)
            if decided is not None:
                return decided[0]
        if self.name == "source":  # a re-save of the other's JPEG goes (`with_resaves`)
            return -resaved_between(f, g)
        if self.name == "biggest" and self.args == LOSSLESS_FIRST:
            told = stored_first(f, g)  # lossless first, a grey one after a colour one
            if told:
                return told
        a, b = self.key(f), self.key(g)
        return (a > b) - (a < b)

    def key(self, f: PlanFile):
        if self.name == "largest":
            return -f.pixels
        if self.name == "source":  # (only pairs tell: `compare`)
            return 0
        if self.name == "biggest":
            return -f.size
        if self.name in ("oldest", "newest"):
            seconds = _seconds(f.date)
            return seconds if self.name == "oldest" else -seconds
        if self.name == "format":
            return format_rank(f.format, self.args)
        return 0 if any(under(f.path, folder) for folder in self.args) else 1  # path

    def show(self, f: PlanFile) -> str:
        if self.name == "largest":
            return f"{f.width}x{f.height}"
        if self.name == "biggest":
            return size_text(f.size)
        if self.name in ("oldest", "newest"):
            return f"{f.date.replace('T', ' ')} ({'EXIF' if f.date_source == 'exif' else 'mtime'})"
        if self.name == "format":
            return f.format or "unknown format"
        if self.name == "source":
            return f"{f.width}x{f.height} {f.format or 'file'}"
        return ("under " if self.key(f) == 0 else "not under ") + ", ".join(self.args)

    @property
    def label(self) -> str:
        if self.name == "biggest":
            return "biggest file"
        if self.name == "format":
            return "preferred format (" + " > ".join(self.args) + ")"
        if self.name == "path":
            return "preferred folder"
        if self.name == "source":
            return "the JPEG the next file was saved again from"
        return self.name

    def __str__(self) -> str:
        return self.name + ("=" + ",".join(self.args) if self.args else "")


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


def _adds_bars(f: PlanFile, g: PlanFile, kind: int = FLAT) -> bool:
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
    return int(_adds_bars(f, g)) - int(_adds_bars(g, f))


def banded(f: PlanFile, g: PlanFile) -> bool:
    """Whether one of the two holds the other's picture with a band added along its border
    that holds something (a caption, a title, an object on a plain sky): not flat bars, so the
    other file lacks what is on it, and the file without it is the picture as it was. A plan
    acts on neither for the other (`kept_too`)."""
    return any(_adds_bars(a, b, BAND) and not _adds_bars(a, b, FLAT)
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


# `biggest` after `largest` (`choose`): a file stored without loss first, then bytes
LOSSLESS_FIRST = ("lossless",)


def lossless_over(f: PlanFile, g: PlanFile) -> bool:
    """Whether `biggest`, where `largest` came first and tied the two, puts the one of `f` and
    `g` stored without loss first, whatever the bytes: of two files holding the picture at one
    size, the lossless one holds all the lossy one does (saved from it) or more (the lossy one
    saved from it), while a JPEG of a screenshot or a drawing is often the bigger file (a
    newcomer's plan kept the JPEG and acted on the PNG, session 31). One key, lossless and
    then bytes, so that the order never goes round."""
    return None not in (f.lossless, g.lossless) and f.lossless != g.lossless


def stored_first(f: PlanFile, g: PlanFile) -> int:
    """-1 when `biggest`, where `largest` came first and tied the two, puts `f` first for how
    the two hold the picture, 1 `g`, 0 neither (bytes decide): one stored without loss first
    (`lossless_over`), but a grey file (`PlanFile.colour` False) after one holding the
    picture's colours (True, read by `with_colours`), lossless or bigger though it is: it holds
    less of the picture (a hostile tester's default plan kept a black-and-white PNG and acted
    on the colour JPEG, session 32). One rank a file, so the order never goes round: stored
    without loss and not grey; lossy in colour; stored without loss in grey; lossy otherwise.
    Where either file's storage is not known (a palette), bytes decide, as before."""
    if None in (f.lossless, g.lossless):
        return 0
    a, b = _stored_rank(f), _stored_rank(g)
    return (a > b) - (a < b)


def _stored_rank(f: PlanFile) -> int:
    if f.lossless:
        return 2 if f.colour is False else 0
    return 1 if f.colour is True else 3


def greyer(best: PlanFile, f: PlanFile) -> bool:
    """Whether `stored_first` puts `best` before `f` for `f` being grey (not for `best` being
    stored without loss where `f` is not): the reason then says so."""
    return (stored_first(best, f) < 0 and f.colour is False and best.colour is not False
            and not (best.lossless is True and f.lossless is False))


def with_colours(files: Sequence[PlanFile], read=None) -> list[PlanFile]:
    """`files` with `colour` read for each file stored in colour (`colour` None) in a group
    where `biggest` may compare a grey file or a lossless with a lossy one: a group holding a
    file stored in grey, or one stored without loss and one with loss; and `chroma` with it
    (0 for a file stored in grey). `read(path)` -> (colour, chroma), by default
    `simsearch.resave.has_colour`: False when its pixels are grey throughout (a black-and-white
    conversion saved in colour mode), True when they hold colour throughout, None when neither
    or it cannot tell (transparency, a file that cannot be read). Every such file is read,
    whatever its canvas: `largest` ties pictures within 5% of each other, and reading is cheap
    (256 pixels)."""
    usable = [f for f in files if not f.problem]
    if len(usable) > BAND_GROUP:
        return list(files)
    stored = {f.lossless for f in usable}
    if not (any(f.colour is False for f in usable) or {True, False} <= stored):
        return list(files)
    if read is None:
        from simsearch.resave import has_colour as read
    found = {f.path: read(f.path) for f in usable if f.colour is None}
    return [replace(f, colour=found[f.path][0], chroma=found[f.path][1]) if f.path in found
            else replace(f, chroma=0.0) if f.colour is False and not f.problem else f
            for f in files]


def lossless_first(rules: Sequence[KeepRule]) -> bool:
    """Whether `biggest` comes after `largest` in `rules`: then it puts a file stored without
    loss first (`LOSSLESS_FIRST`), and a file holding another's decoded pixels after it."""
    names = [r.name for r in rules]
    return "largest" in names and "biggest" in names[names.index("largest"):]


def with_decodes(files: Sequence[PlanFile], read=None) -> list[PlanFile]:
    """`files` with `decodes` read for each file stored without loss that has a lossy file of
    the group beside it on one canvas (up to a quarter turn): the lossy files whose decoded
    pixels it holds (`simsearch.resave.decoded`, or `read(lossless, lossy)`). Only these pairs
    are read; the others are as they were."""
    usable = [f for f in files if not f.problem]
    if len(usable) > BAND_GROUP:  # (pairs grow as the square)
        return list(files)
    if read is None:
        from simsearch.resave import decoded as read
    lossy = [f for f in usable if f.lossless is False]
    found: dict[str, tuple[str, ...]] = {}
    for g in usable:
        if g.lossless is not True or g.decodes is not None:
            continue
        beside = [f for f in lossy if sorted((f.width, f.height)) == sorted((g.width, g.height))]
        if beside:
            found[g.path] = tuple(sorted((f.path for f in beside if read(g.path, f.path)),
                                         key=os.fsencode))
    return [replace(f, decodes=found[f.path]) if f.path in found else f for f in files]


def _twins(files: Sequence[PlanFile]) -> dict[str, PlanFile]:
    """For each file holding the decoded pixels of others of `files` (`decodes`), the one it
    ranks beside: of those others, the biggest (then the first by path)."""
    by_path = {f.path: f for f in files}
    out = {}
    for f in files:
        # (one whose EXIF capture date the source lacks holds that too: it ranks as itself)
        sources = [by_path[p] for p in f.decodes or () if p in by_path and p != f.path
                   and not (f.date_source == "exif" and by_path[p].date_source != "exif")]
        if sources:
            out[f.path] = min(sources, key=lambda s: (-s.size, os.fsencode(s.path)))
    return out


# a file whose colours lie this many times as far from grey as the kept file's, and at least
# COLOUR_MORE_LEVELS, holds colour the kept file lacks, and is kept too: whatever ranks first, a
# colour photograph is never acted on for a grey, faded or nearly grey file (a hostile tester's
# dark and grey-walled photos, session 32: colour in under half their cells)
COLOUR_MORE, COLOUR_MORE_LEVELS = 1.5, 2.0


def more_colour(kept: PlanFile, f: PlanFile) -> tuple[float, float] | None:
    """(f's chroma, the kept file's) when `f` holds colour the kept file lacks; else None
    (either not read: `with_colours` reads them where a grey or a lossless file is beside a
    lossy one)."""
    if f.chroma is None or kept.chroma is None:
        return None
    if f.chroma >= COLOUR_MORE_LEVELS and f.chroma >= COLOUR_MORE * kept.chroma:
        return f.chroma, kept.chroma
    return None


def kept_too(kept: PlanFile, f: PlanFile, bare: bool = False) -> str | None:
    """Why a plan keeping `kept` keeps `f` too, where the rules would act on it; None when it
    acts on it: `f` holds the picture finer (`finer_than`), or one of the two holds the other's
    picture with a band on its border that holds something (`banded`): `f` holds a caption the
    kept file lacks, or `f` is the picture as it was without the kept file's band (the first
    such file the rules rank: `bare` says one is kept already)."""
    if f.lossless is True and kept.lossless is False and f.colour is False \
            and kept.colour is True:  # each holds something the other lacks
        return (f"kept: the picture in grey stored without loss, beside the kept lossy "
                f"{kept.format or 'file'} in colour (a scan, a black-and-white master)")
    more = more_colour(kept, f)
    if more is not None:
        return (f"kept: holds colour the kept {os.path.basename(kept.path)} lacks (its colours "
                f"lie {more[0]:.1f} levels from grey, the kept file's {more[1]:.1f}: that file "
                f"is grey, faded or toned)")
    at = finer_than(kept, f)
    if at is not None:
        return (f"kept: holds the picture at {at:.0%} of its size in the kept "
                f"{os.path.basename(kept.path)}: detail that file lacks (as a photo inside a "
                f"collage)")
    if banded(kept, f):
        if _adds_bars(kept, f, BAND):
            return (f"kept: holds the picture of the kept {os.path.basename(kept.path)} with a "
                    f"band along its border that holds something (a caption, a title) that "
                    f"file lacks")
        if not bare:
            return (f"kept: the picture as it was, without the band along the border of the "
                    f"kept {os.path.basename(kept.path)} (a caption, a title)")
    return None


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


def parse_rules(values: Iterable[str]) -> list[KeepRule]:
    """`--keep` values, in order: `largest,oldest` (several plain rules), `format=png,jpeg`,
    `path=FOLDER` (one folder; give `path=` again for a second, less preferred one); then the
    default rules not named, to decide what the given ones tie."""
    rules: list[KeepRule] = []
    for value in values:
        name, sep, arg = value.partition("=")
        name = name.strip().lower()
        if not sep:
            for part in (p.strip().lower() for p in value.split(",")):
                if part in ("format", "path"):
                    rules.append(_rule(part, DEFAULT_FORMAT_ORDER if part == "format" else ()))
                elif part:
                    rules.append(_rule(part, ()))
        elif name == "format":
            order = tuple(_normal_format(x) for x in arg.split(",") if x.strip())
            rules.append(_rule(name, order or DEFAULT_FORMAT_ORDER))
        elif name == "path":
            if not arg:
                raise PlanError("keep rule path=FOLDER needs a folder, e.g. --keep path=~/Pictures")
            rules.append(_rule(name, (os.path.abspath(os.path.expanduser(arg)),)))
        elif "," in name:  # `largest,source,format=jpeg,png`: the value's rule on its own
            head, _, rest = value.partition("=")[0].rpartition(",")
            raise PlanError(f"keep rule {value!r}: give a rule with a value as its own --keep, "
                            f"after the others: --keep {head} --keep {rest.strip()}{sep}{arg}"
                            if rest.strip().lower() in ("format", "path") else
                            f"keep rule {value!r}: only format= and path= take a value")
        else:
            raise PlanError(f"keep rule {value!r}: only format= and path= take a value")
    # the default rules follow the given ones (those not named already), so a given rule that
    # ties (format=raw,jpeg among JPEGs) is decided by them, not by the path
    named = {r.name for r in rules}
    return rules + [KeepRule(n) for n in DEFAULT_KEEP if n not in named]


def _rule(name: str, args: tuple[str, ...]) -> KeepRule:
    if name not in KEEP_RULES:
        raise PlanError(f"unknown keep rule {name!r}; the rules are {', '.join(KEEP_RULES)}")
    if name == "path" and not args:
        raise PlanError("keep rule path needs a folder: --keep path=FOLDER")
    if name == "path" and not os.path.isdir(args[0]):
        why = "not a folder" if os.path.exists(args[0]) else "no such folder"
        raise PlanError(f"keep rule path={args[0]}: {why} (a misspelt folder would prefer "
                        f"nothing)")
    if name == "format":
        unknown = [a for a in args if a not in FORMAT_NAMES]
        if unknown:
            raise PlanError(f"keep rule format: unknown format {unknown[0]!r}; the formats are "
                            f"{', '.join(FORMAT_NAMES)} (raw: any camera RAW file)")
    return KeepRule(name, args)


def format_rank(fmt: str, order: Sequence[str]) -> int:
    """Where a file's format comes in a format rule's order (a RAW kind, dng or nef, also
    under "raw"); after every named one when it is not named."""
    if fmt in order:
        return order.index(fmt)
    if fmt in _RAW_KINDS and "raw" in order:
        return order.index("raw")
    return len(order)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0].strip().lower()


def named_as_copy(path: str, others: Iterable[str]) -> bool:
    """Whether a file's name says it is a copy of one of `others` (paths): without the marker
    (`_COPY_NAME`, `_COPY_PREFIX`) its name is another's ("photo (1).jpg" beside "photo.jpg";
    "Vacation (12).jpg" beside "IMG_4321.jpg" is not)."""
    return path in copies_among([path, *others])


def copies_among(paths: Sequence[str]) -> set[str]:
    """The paths `named_as_copy` says are copies of another of `paths`, every name read once."""
    stems = {_stem(p) for p in paths}
    out = set()
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        bare = _COPY_PREFIX.sub("", _COPY_NAME.sub("", stem)).strip().lower()
        if bare and bare != stem.strip().lower() and bare in stems:
            out.add(p)
    return out


def under(path: str, folder: str) -> bool:
    """Whether `path` lies inside `folder`, by name or once links in either are resolved."""
    for p, d in ((os.path.abspath(path), os.path.abspath(folder)),
                 (os.path.realpath(path), os.path.realpath(folder))):
        if p == d or p.startswith(d.rstrip(os.sep) + os.sep):
            return True
    return False


def file_facts(member, protect: Sequence[str] = ()) -> PlanFile:
    """A group member (simsearch.dedupe.Member) as a plan file: its catalog identity, plus its
    format and capture date read from the header. A file whose size or mtime no longer match
    the catalog is marked with a problem: the catalog's hash says nothing about it now."""
    path = member.path
    f = PlanFile(path=path, size=member.size, mtime_ns=member.mtime_ns, sha256=member.sha256,
                 width=member.width, height=member.height, score=float(member.score),
                 protected=any(under(path, d) for d in protect),
                 evidence=getattr(member, "evidence", ""),
                 picture=getattr(member, "picture", None),
                 extent=getattr(member, "extent", None),
                 aliases=tuple(getattr(member, "aliases", ())))
    try:
        st = os.lstat(path)
    except OSError as e:
        return replace(f, problem=f"cannot read: {e.strerror or e}")
    if not stat.S_ISREG(st.st_mode):
        return replace(f, problem="not a regular file (a link or a special file)")
    head = _header(path)
    local = dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9).replace(microsecond=0)
    f = replace(f, format=head.format or _SUFFIX_FORMATS.get(Path(path).suffix.lower(), ""),
                date=(head.date or local).isoformat(),
                date_source="exif" if head.date else "mtime", frames=head.frames,
                lossless=head.lossless, colour=head.colour)
    if (st.st_size, st.st_mtime_ns) != (member.size, member.mtime_ns):
        return replace(f, size=st.st_size, mtime_ns=st.st_mtime_ns,
                       problem="changed since it was indexed (run simsearch index first)")
    return f


class Header(NamedTuple):
    """What `_header` reads of a file without decoding its pixels."""

    format: str = ""                    # "" when unknown
    date: dt.datetime | None = None     # EXIF DateTimeOriginal
    frames: int = 1                     # MULTI_FRAME formats, else 1
    lossless: bool | None = None        # `PlanFile.lossless`
    colour: bool | None = None          # False: stored in grey (`PlanFile.colour`)


def _header(path: str) -> Header:
    """The file's `Header`, from its headers alone (no pixels decoded); opened without
    blocking, since a path can turn into a named pipe."""
    from PIL import Image

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return Header()
    frames, lossless, colour = 1, None, None
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return Header()
        head = fh.read(16)
        kind = raw_name(path, head)
        if head[8:12] == b"WEBP":  # its kind is in an image chunk, past a colour profile
            head += fh.read((1 << 16) - len(head))
        fh.seek(0)
        try:
            with Image.open(fh) as im:
                fmt = kind.lower() if kind else _normal_format(im.format or "")
                raw = im.getexif().get_ifd(_EXIF_IFD).get(_DATE_TIME_ORIGINAL)
                if fmt in MULTI_FRAME:
                    frames = _frames(im)
                if not kind:
                    lossless = _lossless(fmt, im, head)
                    colour = (False if im.mode in _GREY_MODES and "transparency" not in im.info
                              else None)
        except Exception:  # any header Pillow cannot read: format from the suffix, date from mtime
            return Header(kind.lower() if kind else "")
    try:
        date = dt.datetime.strptime(str(raw).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:  # absent, or "0000:00:00 00:00:00" as some cameras write
        date = None
    return Header(fmt, date, frames, lossless, colour)


# modes of a grey picture (one channel and no alpha: a grey picture with transparency holds
# something a file without it lacks, and is not put after a colour one)
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# modes that hold every pixel's own value (not a palette's, not packed into another's)
_FULL_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA", "RGBa",
               "RGBX", "CMYK", "LAB")


def _lossless(fmt: str, im, head: bytes) -> bool | None:
    """Whether an open picture's pixels are stored without loss: PNG, BMP, TIFF not compressed
    as JPEG or WebP, and WebP's lossless kind (its image chunk VP8L; `head`: the file's first
    bytes), in full colour or grey. None for a palette (a GIF, a PNG of 256 colours: a loss
    of colours, or none, as the picture had them) and for a WebP whose image chunk `head`
    does not reach."""
    if im.mode not in _FULL_MODES:
        return None
    if fmt in ("png", "bmp"):
        return True
    if fmt == "tiff":
        packed = str(im.info.get("compression", "")).lower()
        return not any(lossy in packed for lossy in ("jpeg", "webp"))
    if fmt == "webp":
        return _webp_lossless(head)
    return False


def _webp_lossless(head: bytes) -> bool | None:
    """Whether a WebP file's first image chunk is the lossless kind (VP8L) or the lossy (VP8 ),
    walking past an extended header's chunks (VP8X, ICCP, ALPH, ANIM ...); None where `head`
    ends first."""
    at = 12
    while at + 8 <= len(head):
        tag, size = head[at:at + 4], int.from_bytes(head[at + 4:at + 8], "little")
        if tag in (b"VP8L", b"VP8 "):
            return tag == b"VP8L"
        if tag == b"ANMF":  # an animation: its frames' chunks follow inside
            at += 8 + 16
            continue
        at += 8 + size + (size & 1)
    return None


# formats whose further frames are other pictures (an animation, the pages of a scan, a HEIF
# burst: pillow-heif counts only top-level pictures, not depth maps or thumbnails); a JPEG's
# (MPO: a camera's preview or depth map) are views of the first
MULTI_FRAME = ("gif", "png", "webp", "tiff", "heic", "avif")


def _frames(im) -> int:
    """How many frames an open picture holds (2 for "more than one" where counting them all
    fails part way: a damaged later frame)."""
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # Pillow raises what the format's reader raises
        try:
            im.seek(1)
            return 2
        except Exception:
            return 1


def writable_plan_path(path: str | os.PathLike) -> None:
    """PlanError unless `path` is free (or an empty file, or a link to nothing) or holds a plan,
    which a new plan may replace: a plan is recognised by its content, in any key order."""
    if not os.path.exists(path):  # free, or a dangling link (replaced, its target never made)
        return
    if os.path.isdir(path):
        raise PlanError(f"{path} is a folder; give a file name for the plan, e.g. {path}/plan.json")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
            whole = not fh.read(1)
    except OSError as e:
        raise PlanError(f"{path}: cannot write the plan over it ({e.strerror or e})") from e
    if not head:
        return
    is_plan = head.lstrip().startswith(b"{") and f'"{PLAN_FORMAT}"'.encode() in head
    if is_plan and whole:  # read whole: the format key itself must say so, in any key order;
        try:               # a larger plan names it near the top however its keys are ordered
            is_plan = json.loads(head.decode("utf-8")).get("format") == PLAN_FORMAT
        except (ValueError, AttributeError):
            is_plan = False
    if not is_plan:
        raise PlanError(f"{path} exists and is not a simsearch plan; it was left as it is "
                        f"(give another file name for the plan)")


def _normal_format(name: str) -> str:
    name = name.strip().lower().lstrip(".")
    return {"jpg": "jpeg", "mpo": "jpeg", "tif": "tiff", "heif": "heic"}.get(name, name)


def choose(files: Sequence[PlanFile], rules: Sequence[KeepRule]) -> tuple[PlanFile, list[PlanFile]]:
    """The best file by the rules (ties: path order) and the rest, best first, each with its
    reason. Files with a problem take no part."""
    usable = [f for f in files if not f.problem]
    if not usable:
        raise PlanError("no file of the group can be used")
    copies = copies_among([f.path for f in usable])
    # `biggest` after `largest`: the files it compares hold the picture at one size (within
    # `largest`'s tie band), and the one stored without loss goes first (`lossless_over`) ...
    twins: dict[str, PlanFile] = {}
    if lossless_first(rules):
        rules = [KeepRule("biggest", LOSSLESS_FIRST) if r.name == "biggest" else r
                 for r in rules]
        # ... but one holding a lossy file's decoded pixels holds nothing more: it ranks as
        # that file, stored as it is, a byte smaller (so just after it, and never round)
        twins = _twins(usable)
        usable = [replace(f, lossless=twins[f.path].lossless, size=twins[f.path].size - 1,
                          colour=twins[f.path].colour, chroma=twins[f.path].chroma)
                  if f.path in twins else f for f in usable]

    # `largest` by the picture when the check mapped a file of the group; one it did not map (a
    # thumbnail too small for keypoints, a plain picture) is taken to hold the picture as a
    # mapped file does, resized to its canvas (`_as_resized`), so that every pair compares
    # one way
    mapped = any(f.picture is not None for f in usable)
    estimated = {f.path for f in usable if f.picture is None} if mapped else set()
    if estimated:
        usable = _as_resized(usable)

    def order(f: PlanFile, g: PlanFile) -> int:
        for r in rules:
            c = r.compare(f, g)
            if c:
                return c
        return ((f.path in copies) - (g.path in copies)
                or (os.fsencode(f.path) > os.fsencode(g.path)) - (os.fsencode(f.path) < os.fsencode(g.path)))

    # in path order first, so that the same files always sort the same way
    ranked = sorted(sorted(usable, key=lambda f: os.fsencode(f.path)), key=cmp_to_key(order))
    level = False  # whether another file beats as many as the kept one, where the rules go round
    wins: dict[int, int] = {}
    if mapped and len(ranked) <= 200 and any(order(f, ranked[0]) < 0 for f in ranked[1:]):
        # the tie bands of `largest` by the picture can go round (a ties b, b ties c, a beats
        # c): the file that beats most of the others is kept
        wins = {id(f): sum(order(f, g) < 0 for g in ranked if g is not f) for f in ranked}
        ranked = sorted(ranked, key=lambda f: -wins[id(f)])
        level = sum(wins[id(f)] == wins[id(ranked[0])] for f in ranked) > 1
    best, rest = ranked[0], ranked[1:]
    if not rest:
        return replace(best, reason="kept: the only usable file"), []

    def deciding(f: PlanFile) -> KeepRule | None:
        return next((r for r in rules if r.compare(best, f) != 0), None)

    decisive = deciding(rest[0])
    ties = "ties on " + ", ".join(r.name for r in rules)
    given = {f.path: f for f in files}  # as they are: `twins` rank with another's size
    kept = given[best.path]
    source = twins.get(rest[0].path)
    if source is not None and source.path == best.path and decisive is not None \
            and decisive.name == "biggest":
        why = (f"kept: {best.width}x{best.height} {best.format or 'file'}; the next file holds "
               f"its decoded pixels, saved again without loss: bigger on disk, but nothing more "
               f"of the picture")
    elif any(order(f, best) < 0 for f in rest):  # only where the tie bands go round
        why = ("kept: it beats as many of the group's files as any other (the rules go round)"
               if level else
               "kept: it beats more of the group's files than any other (the rules go round)")
    elif decisive is not None and decisive.args == LOSSLESS_FIRST and greyer(best, rest[0]):
        why = (f"kept: {best.width}x{best.height} {best.format or 'file'}"
               + (" holding the picture's colours" if best.colour else "")
               + ", over a grey file of it")
    elif decisive is not None and decisive.args == LOSSLESS_FIRST and best.lossless \
            and lossless_over(best, rest[0]):
        why = (f"kept: {best.width}x{best.height} {best.format or 'file'} stored without loss, "
               f"over a lossy file of the picture at that size")
    elif decisive is not None and decisive.args == LOSSLESS_FIRST and \
            stored_first(best, rest[0]) < 0:  # lossy, in colour throughout over one not
        why = (f"kept: {best.width}x{best.height} {best.format or 'file'} in colour throughout, "
               f"over a file that is not (colour in a part only, or transparency)")
    elif decisive is not None:
        why = f"kept: {decisive.show(kept)}, {decisive.label}"
        if decisive.name == "largest" and estimated & {best.path, rest[0].path}:
            why += (" (by canvas: the picture check did not map "
                    + ("it)" if best.path in estimated else "the next file)"))
        elif decisive.name == "largest" and mapped:
            why += " (the picture it holds)"
    elif rest[0].path in copies and best.path not in copies:
        # the files that tie with it sort after it only when named as copies
        tied = [f for f in rest if deciding(f) is None]
        why = (f"kept: {ties}; the other is named as a copy" if len(tied) == 1 else
               f"kept: {ties}; the others are named as copies")
    else:
        why = f"kept: {ties}; first by path"
    others = []
    for f in rest:
        rule, this = deciding(f), given[f.path]
        if f.path in twins and (rule is None or rule.name == "biggest"):
            source = twins[f.path]
            reason = (f"{this.format or 'a'} file of {size_text(this.size)} holding the "
                      + ("kept " if source.path == best.path else "")
                      + f"{source.width}x{source.height} {source.format or 'file'}'s decoded "
                      f"pixels, saved again without loss: it holds nothing more of the picture"
                      + ("" if source.path == best.path else
                         f", and goes with {os.path.basename(source.path)}"))
        elif rule and rule.compare(best, f) > 0:
            beats = "as many of" if wins.get(id(f)) == wins.get(id(best)) else "more of"
            reason = (f"{rule.show(this)}, a JPEG the kept {rule.show(kept)} was saved again "
                      f"from, but the kept file beats {beats} the group's files (the rules go "
                      f"round)" if rule.name == "source" else
                      f"{rule.show(this)}, {rule.label} over the kept {rule.show(kept)}, but the "
                      f"kept file beats {beats} the group's files (the rules go round)")
        elif rule and rule.name == "largest" and mapped and not estimated & {f.path, best.path}:
            reason = _largest_reason(rule, best, f)
        elif rule and rule.name == "source":
            reason = (f"{rule.show(this)}, saved again from the kept {rule.show(kept)}'s pixels "
                      f"(they carry that JPEG's compression): it holds nothing more of the "
                      f"picture")
        elif rule and rule.args == LOSSLESS_FIRST and greyer(best, f):
            reason = (f"{f.format or 'a'} file in grey, against the kept {best.format or 'file'}"
                      + (" holding the picture's colours" if best.colour else ""))
        elif rule and rule.args == LOSSLESS_FIRST and best.lossless and lossless_over(best, f):
            reason = (f"{f.format or 'a'} file of lossy compression, against the kept "
                      f"{best.format or 'file'} holding the picture at its size without loss")
        elif rule and rule.args == LOSSLESS_FIRST and stored_first(best, f) < 0:
            reason = (f"{f.format or 'a'} file not in colour throughout (colour in a part only, "
                      f"or transparency), against the kept {best.format or 'file'} in colour")
        elif rule:
            reason = f"{rule.show(this)} against the kept {rule.show(kept)}"
        elif f.path in copies and best.path not in copies:
            reason = "ties with the kept file on every rule; named as a copy"
        else:
            reason = "ties with the kept file on every rule; after it by path"
        others.append(replace(f, reason=reason))
    if estimated or twins:  # the estimates and twins' sizes were only for choosing
        best = given[best.path]
        others = [replace(given[f.path], reason=f.reason) for f in others]
    return replace(best, reason=why), others


def _as_resized(files: list[PlanFile]) -> list[PlanFile]:
    """`files` with each one the check did not map given the map of a mapped file (the
    centre's, or the first mapped by path) scaled to its canvas: a thumbnail holds the picture
    at its size, as its canvas says."""
    mapped = sorted((f for f in files if f.picture is not None),
                    key=lambda f: (f.evidence not in ("centre", "identical"), os.fsencode(f.path)))
    ref = mapped[0]
    out = []
    for f in files:
        if f.picture is None:
            k = (f.pixels / max(ref.pixels, 1)) ** 0.5
            f = replace(f, picture=tuple(k * v for v in ref.picture), extent=ref.extent)
        out.append(f)
    return out


def _largest_reason(rule: KeepRule, best: PlanFile, f: PlanFile) -> str:
    """Why `largest` by the picture puts `f` after the kept file, in words."""
    _, what = largest_between(best, f)
    low, high = picture_scale(best, f)
    if what == "corners":
        return (f"{rule.show(f)}, the kept {rule.show(best)}'s picture turned on a larger "
                f"canvas: its filled corners hold none of the picture")
    if what == "bars":
        return (f"{rule.show(f)}, the kept {rule.show(best)}'s picture with flat bars added "
                f"along its border: they hold none of the picture")
    if what == "band":
        return (f"{rule.show(f)}, the kept {rule.show(best)}'s picture stretched one way: its "
                f"added pixels hold no finer detail")
    if what == "scale":
        at = f"{low:.0%}" if high - low < 0.005 else f"{low:.0%}-{high:.0%}"
        return (f"{rule.show(f)}, holding the picture at {at} of its size in the kept "
                f"{rule.show(best)}")
    return (f"{rule.show(f)}, showing {f.extent / best.extent:.0%} of what the kept "
            f"{rule.show(best)} shows of the picture" + (
                f", at {low:.0%} of its size there" if low > PICTURE_TIE else ""))


@dataclass
class PlanGroup:
    kind: str                 # "exact" | "near"
    centre: str
    min_score: float
    files: list[PlanFile]     # centre first, then by score
    keep: list[str]
    act_on: list[str]
    decision: str = "act"
    exact: list[list[str]] = field(default_factory=list)
    # files the picture check could not confirm that a person called copies (the review page's
    # "It is a copy"): these may be acted on whatever the plan's act_on_unconfirmed
    confirmed: list[str] = field(default_factory=list)

    def reclaimable(self) -> int:
        if self.decision != "act":
            return 0
        sizes = {f.path: f.size for f in self.files}
        return sum(sizes[p] for p in self.act_on)


@dataclass
class Plan:
    groups: list[PlanGroup]
    keep_rules: list[str] = field(default_factory=list)
    protect: list[str] = field(default_factory=list)
    index: str | None = None
    threshold: float | None = None
    created: str = ""
    source: str = "simsearch dedupe"
    # whether files the picture check could not confirm (evidence "unchecked") may be acted on;
    # when False they are kept, and the review page keeps them when a choice is flipped
    act_on_unconfirmed: bool = False

    def reclaimable(self) -> int:
        return sum(g.reclaimable() for g in self.groups)

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "created": self.created,
                "source": self.source, "index": self.index, "threshold": self.threshold,
                "keep_rules": self.keep_rules, "protect": self.protect,
                "act_on_unconfirmed": self.act_on_unconfirmed,
                "summary": {"groups": len(self.groups),
                            "files": sum(len(g.files) for g in self.groups),
                            "act_on": sum(len(g.act_on) for g in self.groups
                                          if g.decision == "act"),
                            "reclaimable_bytes": self.reclaimable()},
                "groups": [{**asdict(g), "files": [_file_dict(f) for f in g.files]}
                           for g in self.groups]}

    def save(self, path: str | os.PathLike) -> None:
        """Written to a temporary name beside it, then renamed: a plan is whole or absent. A
        file already at `path` is replaced only when it is a plan: `--plan photo.jpg` by
        mistake must not cost the photo."""
        path = Path(path)
        writable_plan_path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        data = (json_text(self.to_dict(), indent=1) + "\n").encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with open(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise PlanError(f"{path}: cannot write the plan ({e.strerror or e})") from e

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
        except (OSError, ValueError) as e:
            target = "new-plan.json" if os.path.lexists(path) else path  # never over this file
            raise PlanError(f"{path}: cannot read the plan ({getattr(e, 'strerror', None) or e}); "
                            f"make one with: simsearch dedupe --plan {target}") from e
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, name: str = "plan") -> "Plan":
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f"{name}: not a simsearch plan (make one with: simsearch dedupe --plan)")
        if data.get("version") != PLAN_VERSION:
            raise PlanError(f"{name}: plan version {data.get('version')!r}; this simsearch reads "
                            f"version {PLAN_VERSION} (make the plan again with simsearch dedupe --plan)")
        try:
            groups = [PlanGroup(kind=str(g["kind"]), centre=str(g["centre"]),
                                min_score=float(g["min_score"]),
                                files=[_plan_file(f, f"{name}: group {n + 1}, file {i + 1}")
                                       for i, f in enumerate(g["files"])],
                                keep=[str(p) for p in g["keep"]],
                                act_on=[str(p) for p in g["act_on"]],
                                decision=str(g.get("decision", "act")),
                                exact=[[str(p) for p in s] for s in g.get("exact", [])],
                                confirmed=[str(p) for p in g.get("confirmed", [])])
                      for n, g in enumerate(data["groups"])]
            plan = cls(groups=groups, keep_rules=list(data.get("keep_rules", [])),
                       protect=[str(p) for p in data.get("protect", [])],
                       index=data.get("index"), threshold=data.get("threshold"),
                       created=str(data.get("created", "")), source=str(data.get("source", "")),
                       # absent: a plan from before session 20, made acting on them
                       act_on_unconfirmed=bool(data.get("act_on_unconfirmed", True)))
        except (KeyError, TypeError, ValueError) as e:
            raise PlanError(f"{name}: malformed plan ({type(e).__name__}: {e})") from e
        plan.validate(name)
        return plan

    def doubted(self, g: PlanGroup, f: PlanFile) -> bool:
        """Whether the file `f` of group `g` may be another picture for this plan: the picture
        check did not confirm it, a person did not call it a copy (the review page's "It is a
        copy"), and the plan does not act on such files. Such a file is never acted on, and
        is no kept copy that makes acting on the group's others safe."""
        return (f.evidence == "unchecked" and f.path not in g.confirmed
                and not self.act_on_unconfirmed)

    def validate(self, name: str = "plan") -> None:
        """Refuse a plan (edited by hand, or by a page) that could lose a picture: every group
        that acts on a file keeps another one, nothing protected is acted on, no file is in two
        groups or kept and acted on at once."""
        seen: set[str] = set()
        for n, g in enumerate(self.groups):
            where = f"{name}: group {n + 1} ({g.centre})"
            if g.decision not in DECISIONS:
                raise PlanError(f"{where}: decision {g.decision!r} is not one of {', '.join(DECISIONS)}")
            by_path = {f.path: f for f in g.files}
            if not all(os.path.isabs(p) for p in by_path):
                raise PlanError(f"{where}: file paths must be absolute")
            odd = [p for p in by_path if os.path.normpath(p) != p or p.startswith("//")]
            if odd:  # "a/link/../b" is not "a/b" on disk when "link" is a link
                raise PlanError(f"{where}: {odd[0]}: file paths must be plain (no '.' or '..' "
                                f"parts, no doubled or trailing '/')")
            if len(by_path) != len(g.files) or seen & by_path.keys():
                raise PlanError(f"{where}: a file is listed twice")
            seen |= by_path.keys()
            if not set(g.keep) <= by_path.keys() or not set(g.act_on) <= by_path.keys():
                raise PlanError(f"{where}: keep and act_on must name files of the group")
            if any(not set(f.carries or ()) <= by_path.keys() for f in g.files):
                raise PlanError(f"{where}: a file's carries must name files of the group")
            if len(set(g.keep)) != len(g.keep) or len(set(g.act_on)) != len(g.act_on):
                raise PlanError(f"{where}: a file is listed twice in keep or act_on")
            if set(g.keep) & set(g.act_on):
                raise PlanError(f"{where}: a file is both kept and acted on")
            if g.decision == "act" and g.act_on and not g.keep:
                raise PlanError(f"{where}: acts on files but keeps none")
            if g.decision == "act" and g.act_on and all(self.doubted(g, by_path[p])
                                                         for p in g.keep):
                raise PlanError(f"{where}: acts on files but keeps only files the picture check "
                                f"did not confirm to be copies ({', '.join(g.keep)}), which may be "
                                f"other pictures: keep a confirmed file, or call the kept one a "
                                f"copy on the review page")
            for p in g.act_on:
                f = by_path[p]
                if f.protected or any(under(p, d) for d in self.protect):
                    raise PlanError(f"{where}: {p} is protected and cannot be acted on")
                if self.doubted(g, f):
                    raise PlanError(f"{where}: {p} was not confirmed by the picture check to be "
                                    f"a copy, and this plan does not act on such files (make it "
                                    f"with --act-on-unconfirmed, or call it a copy on the "
                                    f"review page)")


UNCONFIRMED = "kept: not confirmed by the picture check to be a copy (see --act-on-unconfirmed)"
def linked_kept(f: PlanFile) -> str:
    """Why a plan keeps a file with other indexed names (`PlanFile.aliases`): acting on one name
    would leave a symbolic link pointing at nothing, or free nothing while a hard link holds
    the bytes (a hostile tester's second plan broke the links a first apply had made)."""
    names = ", ".join(f.aliases[:3]) + (f" and {len(f.aliases) - 3} more" if len(f.aliases) > 3
                                        else "")
    return (f"kept: also indexed as {names} (a link to this file, or another name of it): "
            f"acting on one name would break a link or free nothing; act on every name "
            f"yourself if you mean to")


def frames_kept(f: PlanFile) -> str:
    """Why a plan keeps a file of more frames than one (a hostile tester's case, session 31:
    two scans with one cover page, two animations with one title frame, score 1.0): only its
    first frame was compared; the others may be pictures the group's other files lack."""
    what = "pages" if f.format == "tiff" else "frames"
    return (f"kept: holds {f.frames} {what}, and only the first was compared with the group's "
            f"other files (the rest may be pictures they lack)")


def make_plan(groups, rules: Sequence[KeepRule], protect: Sequence[str] = (),
              index: str | None = None, threshold: float | None = None,
              act_on_unconfirmed: bool = False) -> Plan:
    """A plan for dedupe groups (simsearch.dedupe.Group): in each, the rules' best file and
    every protected file are kept, the others acted on. A file the picture check could not
    confirm to be a copy (evidence "unchecked": grouped on its score alone, and different plain
    pictures can score that high) is kept too, and the rules choose among the others, unless
    `act_on_unconfirmed`. A file of more frames than one is kept beside the rules' choice
    unless a kept file has its bytes (`frames_kept`), whatever `act_on_unconfirmed`."""
    protect = [os.path.abspath(os.path.expanduser(d)) for d in protect]
    out = []
    for g in groups:
        files = [file_facts(m, protect) for m in g.members]
        held = set() if act_on_unconfirmed else {
            f.path for f in files if f.evidence == "unchecked" and not f.problem}
        usable = [f for f in files if not f.problem and f.path not in held]
        if len(usable) < 2:
            reasons = {f.path: f.problem for f in files}
            files = [replace(f, reason=reasons[f.path] or (
                UNCONFIRMED if f.path in held else
                "kept: the group's other files are not confirmed by the picture check" if held
                else "kept: the group has no other usable file")) for f in files]
            out.append(PlanGroup(g.kind, g.centre, float(g.min_score), files,
                                 keep=[f.path for f in files if not f.problem], act_on=[],
                                 decision="keep-all", exact=[list(s) for s in g.exact]))
            continue
        if any(r.name == "largest" for r in rules):
            usable = with_corners(with_bars(with_bands(usable)))
        if any(r.name == "source" for r in rules):
            usable = with_resaves(usable)
        if lossless_first(rules):
            usable = with_decodes(with_colours(usable))
        best, rest = choose(usable, rules)
        chosen = {best.path: best, **{f.path: f for f in rest}}
        also = set()  # files kept beside the rules' choice (kept_too: finer, a band's content)
        bare = False  # whether one file without the kept file's band is kept (kept_too)
        # a file with more frames is acted on only with a twin kept (the best, a protected one)
        kept_bytes = {best.sha256} | {f.sha256 for f in chosen.values() if f.protected}
        for path, f in chosen.items():
            if f.protected:
                chosen[path] = replace(f, reason="kept: protected (" + ", ".join(
                    d for d in protect if under(path, d)) + ")" + (
                    "; also " + best.reason if path == best.path else ""))
            elif path != best.path and f.frames > 1 and f.sha256 not in kept_bytes:
                chosen[path] = replace(f, reason=frames_kept(f))
                also.add(path)
                kept_bytes.add(f.sha256)
            elif path != best.path and f.aliases:
                chosen[path] = replace(f, reason=linked_kept(f))
                also.add(path)
            elif path != best.path and (why := kept_too(best, f, bare)) is not None:
                chosen[path] = replace(f, reason=why)
                also.add(path)
                bare = bare or _adds_bars(f, best, BAND)
        files = [chosen.get(f.path, replace(f, reason=(
            UNCONFIRMED + ("; also protected" if f.protected else "")) if f.path in held
            else f.problem)) for f in files]
        # the rules' choice first: the file that links point to
        keep = [best.path] + [f.path for f in files if (f.protected or f.path in held
                                                        or f.path in also)
                              and not f.problem and f.path != best.path]
        act_on = [f.path for f in files if f.path in chosen and f.path not in keep]
        out.append(PlanGroup(g.kind, g.centre, float(g.min_score), files, keep, act_on,
                             exact=[list(s) for s in g.exact]))
    plan = Plan(out, keep_rules=[str(r) for r in rules], protect=protect, index=index,
                threshold=threshold, act_on_unconfirmed=act_on_unconfirmed,
                created=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
    plan.validate()
    return plan


_FILE_FIELDS = {f.name for f in fields(PlanFile)}
_FILE_NEEDED = {f.name for f in fields(PlanFile) if f.default is MISSING}


def _plan_file(f, where: str) -> PlanFile:
    """One file entry of a plan as read from JSON, or a PlanError naming the entry and what is
    wrong with it."""
    if not isinstance(f, dict):
        raise PlanError(f"{where}: not a file entry ({type(f).__name__})")
    where = f"{where} ({f.get('path')})" if isinstance(f.get("path"), str) else where
    missing = sorted(_FILE_NEEDED - set(f))
    unknown = sorted(set(f) - _FILE_FIELDS)
    if missing:
        raise PlanError(f"{where}: missing {', '.join(missing)}")
    if unknown:
        raise PlanError(f"{where}: unknown {', '.join(unknown)} (a plan from another simsearch "
                        f"version? make it again with simsearch dedupe --plan)")
    try:
        return PlanFile(**{**f, "mtime_ns": int(f["mtime_ns"]), "size": int(f["size"]),
                           "width": int(f["width"]), "height": int(f["height"]),
                           "picture": _picture(f.get("picture")),
                           "extent": _extent(f.get("extent")),
                           "band": _shares(f.get("band"), "band", 2),
                           "bars": _shares(f.get("bars"), "bars", 8, 0.5),
                           "corners": _shares(f.get("corners"), "corners", 8),
                           "carries": _paths(f.get("carries"), "carries"),
                           "decodes": _paths(f.get("decodes"), "decodes"),
                           "frames": _count(f.get("frames", 1), "frames"),
                           "lossless": _flag(f.get("lossless"), "lossless"),
                           "colour": _flag(f.get("colour"), "colour"),
                           "chroma": _chroma(f.get("chroma")),
                           "aliases": _paths(f.get("aliases", []), "aliases")})
    except (TypeError, ValueError) as e:
        raise PlanError(f"{where}: {e}") from None


def _chroma(value) -> float | None:
    chroma = _number(value, "chroma")
    if chroma is not None and not 0 <= chroma <= 255:
        raise ValueError(f"chroma: {value!r} is not a number from 0 to 255")
    return chroma


def _flag(value, name: str) -> bool | None:
    """True, False or None read from a plan, or a ValueError naming the field."""
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{name} is not true, false or null: {value!r}")
    return value


def _count(value, name: str) -> int:
    """A whole number of at least 1 read from a plan, or a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} is not a whole number of at least 1: {value!r}")
    return value


def _paths(value, name: str) -> tuple[str, ...] | None:
    """A list of paths read from a plan (None stays None), or a ValueError naming the field."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"{name}: {value!r} is not a list of paths")
    return tuple(value)


def _extent(value) -> float | None:
    extent = _number(value, "extent")
    if extent is not None and not 0 <= extent < float("inf"):  # 0: none of the centre's
        raise ValueError(f"extent: {value!r} is not a number of 0 or more")  # keypoints in it
    return extent


def _shares(value, name: str, count: int, top: float = 1.0) -> tuple[float, ...] | None:
    """A plan file's `band` (two), `bars` (eight, at most one half) or `corners` (eight) as
    read from JSON: `count` shares from 0 to `top`, or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != count or None in value or not all(
            0 <= _number(v, name) <= top for v in value):
        words = {2: "two", 8: "eight"}[count] + " shares" + (
            " of at most one half" if top == 0.5 else "")
        raise ValueError(f"{name}: {value!r} is not {words}")
    return tuple(float(v) for v in value)


def _picture(value) -> tuple[float, float, float, float] | None:
    """A plan file's `picture` as read from JSON: four numbers, or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 4 or None in value:
        raise ValueError(f"picture: {value!r} is not four numbers")
    return tuple(_number(v, "picture") for v in value)


def _number(value, name: str) -> float | None:
    """A number of a plan file as read from JSON (its `extent`, its `picture`'s four): a
    number, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not abs(value) < float("inf"):  # NaN and infinities too
        raise ValueError(f"{name}: {value!r} is not a number")
    return float(value)


def _file_dict(f: PlanFile) -> dict:
    # nanosecond mtimes pass 2**53: as a string, so that the page's JavaScript keeps every digit;
    # `carries` and `decodes` only where they were read, so that a plan without them reads as
    # before
    out = {**asdict(f), "mtime_ns": str(f.mtime_ns)}
    for name in ("carries", "decodes"):
        if out[name] is None:
            del out[name]
    if not f.aliases:
        del out["aliases"]
    return out


def _seconds(iso: str) -> float:
    try:
        return (dt.datetime.fromisoformat(iso) - dt.datetime(1970, 1, 1)).total_seconds()
    except ValueError:
        return float("inf")  # no date: never the oldest, always the newest of last resort


def size_text(n: int) -> str:
    """A byte count as people read it: 812 bytes, 20.8 KB, 4.1 MB."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
