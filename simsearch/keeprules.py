"""Keep rules: which file of a duplicate group stays. The rules are ordered: the first rule that
tells two files apart decides; of files that tie on every rule, one whose name says it is a
copy of another's ("photo (1).jpg" beside "photo.jpg") goes first, and the path (in byte
order) breaks any tie that is left, so the same groups and rules always give the same choice.
Whatever the rules choose, `kept_too` names the files a plan keeps beside it.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cmp_to_key

from simsearch.errors import PlanError
from simsearch.layout import (BAND, BAND_GROUP, PICTURE_TIE, adds_bars, banded, finer_than,
                              largest_between, picture_scale, resaved_between)
from simsearch.planfile import (FORMAT_NAMES, RAW_KINDS, PlanFile, date_seconds, normal_format,
                                size_text, under)

__all__ = ["KEEP_RULES", "DEFAULT_KEEP", "DEFAULT_FORMAT_ORDER", "KeepRule", "LOSSLESS_FIRST",
           "lossless_over", "stored_first", "greyer", "with_colours", "lossless_first",
           "colour_beside_grey", "lacks_colour",
           "with_decodes", "COLOUR_MORE", "COLOUR_MORE_LEVELS", "more_colour", "kept_too",
           "parse_rules", "format_rank", "named_as_copy", "copies_among", "choose"]

KEEP_RULES = ("largest", "biggest", "oldest", "newest", "format", "path", "source")
DEFAULT_KEEP = ("largest", "biggest", "oldest")
DEFAULT_FORMAT_ORDER = ("raw", "png", "tiff", "heic", "avif", "webp", "jpeg", "gif", "bmp")
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
            seconds = date_seconds(f.date)
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
    without loss and not grey; lossy in colour; stored without loss in grey; lossy otherwise;
    lossy in grey (session 33). Where either file's storage is not known (a palette), bytes
    decide: ordering grey after it there (session 33) made the order go round (a grey PNG
    before its captioned JPEG, that JPEG before a palette PNG of it by bytes, the palette
    before the grey PNG); `kept_too` keeps a palette file in colour beside a kept grey one."""
    if None in (f.lossless, g.lossless):
        return 0
    a, b = _stored_rank(f), _stored_rank(g)
    return (a > b) - (a < b)


def _stored_rank(f: PlanFile) -> int:
    if f.lossless:
        return 2 if f.colour is False else 0
    return 1 if f.colour is True else 4 if f.colour is False else 3


def greyer(best: PlanFile, f: PlanFile) -> bool:
    """Whether `stored_first` puts `best` before `f` for `f` being grey (not for `best` being
    stored without loss where `f` is not): the reason then says so."""
    return (stored_first(best, f) < 0 and f.colour is False and best.colour is not False
            and not (best.lossless is True and f.lossless is False))


def with_colours(files: Sequence[PlanFile], read=None) -> list[PlanFile]:
    """`files` with what their pixels say of colour, where `biggest` may weigh it. `read(path)`
    -> (colour, chroma, variety, spots), by default `simsearch.resave.has_colour` (a reader of
    the first two only leaves `tones` unread): colour False when the pixels
    are grey throughout (a black-and-white conversion saved in colour mode), True when they
    hold colour throughout, None when neither or it cannot tell (transparency, a file that
    cannot be read); chroma how far they lie from grey. Every file is read, whatever its
    canvas: `largest` ties pictures within 5% of each other, and reading is cheap (256 pixels).

    In a group holding a file stored in grey, or one stored without loss and one with loss
    (session 32's rules, chosen on validation), each file stored in colour gets both figures,
    and a file stored in grey chroma 0. In any other group, only grey pixels are recorded
    (`colour` False and their chroma), and only where every other file is in colour
    throughout: a newcomer's black-and-white JPEG saved in colour mode, bigger than its colour
    original, had been kept over it (session 33). Recording more there did worse: colour
    throughout kept heavily compressed copies over originals mostly grey, and saturated copies
    beside theirs, on the evaluation's groups; grey beside any file not grey kept copies with a
    coloured caption or canvas over grey originals on validation."""
    usable = [f for f in files if not f.problem]
    if len(usable) > BAND_GROUP or len(usable) < 2:
        return list(files)
    if read is None:
        from simsearch.resave import has_colour as read
    figures = {f.path: read(f.path) for f in usable}
    files = [replace(f, tones=_tones_of(figures[f.path])) if f.path in figures else f
             for f in files]
    found = {f.path: figures[f.path] for f in usable if f.colour is None}
    stored = {f.lossless for f in usable}
    if any(f.colour is False for f in usable) or {True, False} <= stored:
        return [replace(f, colour=found[f.path][0], chroma=found[f.path][1]) if f.path in found
                else replace(f, chroma=0.0) if f.colour is False and not f.problem else f
                for f in files]
    grey = {path for path, (colour, *_) in found.items() if colour is False}
    if not grey or any(found[f.path][0] is not True for f in usable if f.path not in grey):
        return list(files)
    return [replace(f, colour=False, chroma=found[f.path][1]) if f.path in grey else f
            for f in files]


def _tones_of(figures) -> tuple[float, float, float] | None:
    """(chroma, variety, spots) from what `with_colours`' reader said of a file, or None."""
    if len(figures) < 4 or None in tuple(figures[1:4]):
        return None
    chroma, variety, spots = (float(x) for x in figures[1:4])
    return round(chroma, 4), round(variety, 4), round(spots, 7)  # (spots: a cell is 1/65,536)


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
    (either not read: a group outside session 32's colour rules, where only grey pixels are
    recorded, a group of more than BAND_GROUP files, a file that cannot be read)."""
    if f.chroma is None or kept.chroma is None:
        return None
    if f.chroma >= COLOUR_MORE_LEVELS and f.chroma >= COLOUR_MORE * kept.chroma:
        return f.chroma, kept.chroma
    return None


# a kept file whose colours lie TONED_CHROMA or more from grey, but vary at one brightness by at
# most TONED_SHARE of that (a sepia, a tint, a duotone, a split tone: its colour follows its
# brightness), is toned, and a file beside it whose colours vary SHARE_MORE times as much for
# their chroma, and VARIETY_LEVELS at least, holds colour it lacks; so does a file whose colours
# lie FADED_MORE times as far from grey and vary FADED_MORE times as much (FADED_LEVELS at
# least), alike in kind (the two figures' ratio within FADED_ALIKE of the kept file's: a copy
# faded as a whole, not a grey picture put on a coloured canvas), beside a kept file in colour
# (trials/keep-toned-rule.md, chosen on validation, amended three times)
TONED_CHROMA, TONED_SHARE, SHARE_MORE, VARIETY_LEVELS = 2.0, 0.25, 2.0, 2.0
FADED_MORE, FADED_ALIKE, FADED_LEVELS = 2.5, 1.25, 3.0
# beside a kept file grey throughout (no part of it SPOT_LEVEL from grey, its mean under
# SPOT_GREY levels), a file with SPOT_SHARE of it or more in colour holds colour the kept file
# lacks, however small a part (a blue signature, a red stamp on a scan: its mean chroma is
# far under the 2 levels `more_colour` asks)
SPOT_GREY, SPOT_SHARE = 1.0, 0.0002


def lacks_colour(kept: PlanFile, f: PlanFile) -> tuple[str, float, float] | None:
    """("part", the share of `f` in colour, 0) when the kept file is grey and `f` holds colour
    in a part however small; ("toned", f's variety, the kept file's) when the kept file is toned
    and `f` holds the colours it lacks; ("faded", f's chroma, the kept file's) when the kept
    file is a faded copy of `f`'s colours; else None (either file's `tones` not read, or
    neither holds). Read in every group `with_colours` reads, whatever the files' storage: a
    sepia or faded copy, bigger on disk than its colour original, had been kept over it, and
    the original acted on (session 34)."""
    if kept.tones is None or f.tones is None:
        return None
    (kept_chroma, kept_variety, kept_spots), (chroma, variety, spots) = kept.tones, f.tones
    if kept_spots == 0 and kept_chroma < SPOT_GREY and spots >= SPOT_SHARE:
        return "part", spots, kept_spots
    if kept_chroma < TONED_CHROMA or variety < VARIETY_LEVELS:
        return None
    share, kept_share = variety / max(chroma, 1e-9), kept_variety / kept_chroma
    if kept_share <= TONED_SHARE and share >= SHARE_MORE * kept_share:
        return "toned", variety, kept_variety
    if variety >= FADED_LEVELS and chroma >= FADED_MORE * kept_chroma and \
            variety >= FADED_MORE * kept_variety:
        alike = (variety / chroma) / max(kept_variety / kept_chroma, 1e-9)
        if 1 / FADED_ALIKE <= alike <= FADED_ALIKE:
            return "faded", chroma, kept_chroma
    return None


def _holds_colour_of(k: PlanFile, f: PlanFile) -> bool:
    """Whether `k`, kept beside, holds the colours `f` would be kept for: read, in colour
    (chroma TONED_CHROMA or more), not toned, not FADED_MORE times greyer than `f`, and
    lacking none of `f`'s colour by `lacks_colour` (a review: a file not read, a grey copy with
    a red caption or a grey picture on a coloured mat lacks them too, and must not stand in)."""
    if k.tones is None or f.tones is None:
        return False
    chroma, variety = k.tones[0], k.tones[1]
    return (chroma >= TONED_CHROMA and variety / chroma > TONED_SHARE
            and chroma * FADED_MORE > f.tones[0] and lacks_colour(k, f) is None)


def colour_beside_grey(kept: PlanFile, f: PlanFile) -> bool:
    """Whether `f` is not grey beside a kept file whose grey pixels `with_colours` recorded
    outside session 32's colour rules (with their chroma, where `f` has none): `f` may hold
    the picture's colours (a hostile tester's smaller colour copy was acted on for a bigger grey
    JPEG, session 33)."""
    return (kept.colour is False and kept.chroma is not None and f.colour is not False
            and f.chroma is None)


def kept_too(kept: PlanFile, f: PlanFile, bare: bool = False,
             coloured: bool = False, beside: Sequence[PlanFile] = ()) -> str | None:
    """Why a plan keeping `kept` keeps `f` too, where the rules would act on it; None when it
    acts on it: `f` holds the picture finer (`finer_than`), or one of the two holds the other's
    picture with a band on its border that holds something (`banded`): `f` holds a caption the
    kept file lacks, or `f` is the picture as it was without the kept file's band (the first
    such file the rules rank: `bare` says one is kept already); or `f` is the first file the
    rules rank that is not grey beside a kept grey one (`colour_beside_grey`; `coloured` says
    one is kept already); or `f` holds colour that the kept file, grey, toned or faded, lacks
    (`lacks_colour`), and so does every file kept `beside` it so far (a tester's sepia, faded
    copy and original: the faded copy kept beside the sepia, the original acted on)."""
    if f.lossless is True and kept.lossless is False and f.colour is False \
            and kept.colour is True:  # each holds something the other lacks
        return (f"kept: the picture in grey stored without loss, beside the kept lossy "
                f"{kept.format or 'file'} in colour (a scan, a black-and-white master)")
    more = more_colour(kept, f)
    if more is not None:
        return (f"kept: holds colour the kept {os.path.basename(kept.path)} lacks (its colours "
                f"lie {more[0]:.1f} levels from grey, the kept file's {more[1]:.1f}: that file "
                f"is grey, faded or toned)")
    if not coloured and colour_beside_grey(kept, f):  # the first such file the rules rank
        return (f"kept: not grey, beside the kept {os.path.basename(kept.path)}, which is: it "
                f"may hold the picture's colours")
    lacks = lacks_colour(kept, f)
    if lacks is not None and any(_holds_colour_of(k, f) for k in beside):
        lacks = None  # a file kept already holds its colour
    if lacks is not None:
        kind, mine, theirs = lacks
        return (f"kept: holds colour the kept {os.path.basename(kept.path)} lacks: "
                + (f"{mine * 100:.3g}% of it is in colour (a stamp, a signature, a coloured line), "
                   f"the kept file is grey throughout" if kind == "part" else
                   f"its colours vary {mine:.1f} levels at one brightness, the kept file's "
                   f"{theirs:.1f} (that file is toned: a sepia, a tint)" if kind == "toned" else
                   f"its colours lie {mine:.1f} levels from grey, the kept file's {theirs:.1f} "
                   f"(that file is faded)"))
    at = finer_than(kept, f)
    if at is not None:
        return (f"kept: holds the picture at {at:.0%} of its size in the kept "
                f"{os.path.basename(kept.path)}: detail that file lacks (as a photo inside a "
                f"collage)")
    if banded(kept, f):
        if adds_bars(kept, f, BAND):
            return (f"kept: holds the picture of the kept {os.path.basename(kept.path)} with a "
                    f"band along its border that holds something (a caption, a title) that "
                    f"file lacks")
        if not bare:
            return (f"kept: the picture as it was, without the band along the border of the "
                    f"kept {os.path.basename(kept.path)} (a caption, a title)")
    return None


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
            order = tuple(normal_format(x) for x in arg.split(",") if x.strip())
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
    if fmt in RAW_KINDS and "raw" in order:
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


