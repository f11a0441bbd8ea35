"""The image formats simsearch reads: their names, file suffixes, the library that decodes each,
and how a file's first bytes say which it is.

Pillow decodes JPEG, PNG, GIF, WebP, BMP and TIFF itself, and AVIF from Pillow 11.3 on (its
wheels carry libavif; `pillow-avif-plugin` fills in for a Pillow built without it). HEIC/HEIF
needs `pillow-heif` and RAW camera files need `rawpy`. Each library is imported the first time
a file needs it, so a folder of JPEGs costs no import, and a library that is absent makes its
files a `MissingLibraryError` naming the install command, never a failure of the whole run.
"""
from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass

from simsearch.errors import MissingLibraryError

__all__ = ["Format", "FORMATS", "SUFFIXES", "RAW_SUFFIXES", "PILLOW_FORMATS", "sniff",
           "raw_name", "report_name", "pillow_formats"]


@dataclass(frozen=True)
class Format:
    """One format: the name reports count it under, its file suffixes, and the pip package
    that decodes it with the command that installs it ("" where Pillow alone does)."""

    name: str
    suffixes: tuple[str, ...]
    package: str = ""
    install: str = ""


FORMATS = (
    Format("JPEG", (".jpg", ".jpeg", ".jpe", ".jfif", ".jfi")),
    Format("PNG", (".png",)),
    Format("GIF", (".gif",)),
    Format("WEBP", (".webp",)),
    Format("BMP", (".bmp", ".dib")),
    Format("TIFF", (".tif", ".tiff")),
    Format("HEIF", (".heic", ".heif", ".hif"), "pillow-heif", "pip install pillow-heif"),
    Format("AVIF", (".avif",), "pillow-avif-plugin", "pip install pillow-avif-plugin"),
    Format("RAW", (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".raf", ".orf", ".rw2"),
           "rawpy", "pip install rawpy"),
)
_BY_NAME = {f.name: f for f in FORMATS}
SUFFIXES = frozenset(s for f in FORMATS for s in f.suffixes)
RAW_SUFFIXES = frozenset(_BY_NAME["RAW"].suffixes)

# What Pillow may open a file as, whatever its name says. Pillow can open many more formats,
# some through external programs (EPS runs Ghostscript); a photo library needs these. (Pillow
# opens multi-picture camera JPEGs, MPO, through its JPEG opener.)
PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF")

# ISO base media file brands (the `ftyp` box): AVIF first, since an AVIF file may also list
# the generic HEIF brands `mif1`/`msf1` among its compatible brands.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1",
                b"msf1"}
# Files that Pillow reads whatever their suffix: a JPEG named .nef goes to Pillow, not LibRaw
_PILLOW_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")


def sniff(head: bytes) -> str | None:
    """"HEIF" or "AVIF" when the first bytes of a file are an ISO base media `ftyp` box with
    one of their brands; None otherwise (Pillow recognises its own formats itself)."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size if size >= 16 else 16)
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


def raw_name(path: str | os.PathLike, head: bytes) -> str | None:
    """The RAW kind ("DNG", "NEF", ...) of a file named as a camera RAW file, None otherwise.
    Most RAW formats are TIFF inside, so the name decides; a file whose content is plainly one
    of Pillow's formats is left to Pillow whatever it is called."""
    suffix = os.path.splitext(os.fsdecode(path))[1].lower()
    if suffix not in RAW_SUFFIXES or head.startswith(_PILLOW_MAGIC):
        return None
    return suffix[1:].upper()


def report_name(pillow_format: str | None) -> str:
    """The name a decoded file is counted under: Pillow's, with its aliases folded."""
    return {"MPO": "JPEG", "DIB": "BMP"}.get(pillow_format or "", pillow_format or "unknown")


_lock = threading.Lock()
_registered: dict[str, bool] = {}


def pillow_formats(kind: str | None, path: str | os.PathLike) -> tuple[str, ...]:
    """The Pillow formats to open a file as: ours, or only HEIF/AVIF when `sniff` said so, after
    registering the plugin that reads it. Raises `MissingLibraryError` when none is installed."""
    if kind is None:
        return PILLOW_FORMATS
    with _lock:
        if kind not in _registered:
            _registered[kind] = _register(kind)
    if not _registered[kind]:
        fmt = _BY_NAME[kind]
        raise MissingLibraryError(path, fmt.name, fmt.install)
    return (kind,)


def _register(kind: str) -> bool:
    if kind == "AVIF":
        from PIL import features
        if features.check("avif"):  # Pillow's own plugin (11.3+ wheels)
            return True
        return _imports("pillow_avif")  # registers "AVIF" with Pillow on import
    try:
        heif = importlib.import_module("pillow_heif")
    except ImportError:
        return False
    heif.register_heif_opener()
    return True


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
