"""A file of a duplicate group as a plan sees it (`PlanFile`): its identity when the plan was
made, what its header says (format, capture date, frames, whether it is stored without loss),
and what the picture check and the keep rules' reads found about it.

This module only reads file headers.
"""
from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from simsearch.formats import RAW_SUFFIXES, raw_name

__all__ = ["RAW_KINDS", "FORMAT_NAMES", "PlanFile", "under", "file_facts", "Header", "MULTI_FRAME",
           "normal_format", "date_seconds", "size_text"]

# a camera RAW file's format is its kind (dng, nef, ...); "raw" in a format order stands for all
RAW_KINDS = tuple(sorted(suffix[1:] for suffix in RAW_SUFFIXES))
FORMAT_NAMES = ("jpeg", "png", "gif", "webp", "bmp", "tiff", "heic", "avif", "raw") + RAW_KINDS
_SUFFIX_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".jfif": "jpeg", ".jfi": "jpeg",
                   ".png": "png", ".webp": "webp",
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
    # (chroma, variety, spots) of its pixels (`simsearch.resave.has_colour`: how far its
    # colours lie from grey and how far they vary at one brightness, in levels, and the share
    # of it in colour), read for every file of a group of 2 to BAND_GROUP usable files where
    # `biggest` follows `largest` (the default), however they are stored
    # (`keeprules.lacks_colour`); None when not read
    tones: tuple[float, float, float] | None = None
    # the file's other indexed names (a symbolic link to it, a hard link: simsearch.dedupe's
    # `Member.aliases`); a plan keeps such a file (`linked_kept`)
    aliases: tuple[str, ...] = ()
    # the names its bytes have on disk (st_nlink) when the plan was made: with more than one,
    # acting on it frees no space while another name stays (`PlanGroup.reclaimable`)
    links: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height



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
                lossless=head.lossless, colour=head.colour, links=max(1, st.st_nlink))
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
                fmt = kind.lower() if kind else normal_format(im.format or "")
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


def normal_format(name: str) -> str:
    name = name.strip().lower().lstrip(".")
    return {"jpg": "jpeg", "mpo": "jpeg", "tif": "tiff", "heif": "heic"}.get(name, name)



def date_seconds(iso: str) -> float:
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

