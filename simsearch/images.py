"""Decoding image files into RGB pictures the network can take: the one decoder.

JPEG/PNG/WebP/GIF (first frame)/BMP/TIFF through Pillow, HEIC/HEIF through pillow-heif, AVIF
through Pillow's plugin, RAW camera files through rawpy (`simsearch.formats` says which library
reads what). EXIF orientation applied; transparency composited on white; palette, CMYK, 16-bit,
float and grayscale converted to 8-bit RGB. With a `target` size, a JPEG is decoded at reduced
size (`Image.draft`), a HEIC from its embedded thumbnail and a RAW file from its embedded
preview when those are at least that large: most of the cost of ingesting camera photos.

Nothing is decoded blind. A file is opened without blocking and refused unless it is a regular
file (a named pipe would otherwise wait forever); its header gives the size and pixel format,
from which the memory the decode will hold is worked out (bytes per pixel of the mode, the
conversion to RGB, libjpeg's coefficient buffers, a whole-file read where the library does one)
and refused above `MAX_DECODE_BYTES` before a pixel is allocated. `probe` is that check alone.
Every failure is a `DecodeError` naming file and reason.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageChops

from simsearch import formats, jpeg
from simsearch.budget import (ALPHA_MODES, BLOCK_BYTES, BLOCK_PIXELS, DECODE_MEMORY, DEEP_MODES,
                              MAX_DECODE_BYTES, SLACK, Pool, bytes_per_pixel, tiff_strip_bytes)
from simsearch.errors import DecodeError

__all__ = ["MAX_PIXELS", "MAX_DECODE_BYTES", "DECODE_MEMORY", "Picture", "Probe", "probe",
           "load_image", "to_rgb", "resize_square"]

# Larger than any camera or ordinary scan (a 150 MP medium-format frame fits), small enough that
# a decompression bomb is refused before a byte of it is decoded.
MAX_PIXELS = 250_000_000
# Pillow decodes run-length-coded BMPs pixel by pixel in Python (seconds per 100 MP); no real
# RLE bitmap comes near this.
RLE_BMP_MAX_PIXELS = 16_000_000

# Pillow checks sizes inside its plugins too, before we see the image: a GIF whose first frame
# claims 65535 x 65535 pixels allocates them while it is being opened. Its check warns above this
# limit (an error inside `load_image`) and raises above twice it; it must stay on.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

FORMATS = formats.PILLOW_FORMATS  # kept for callers of the earlier name
_ORIENTATION_TAG = 0x0112


@dataclass
class Picture:
    """A decoded picture, the full size of the file it came from (after EXIF rotation), and
    the format it was decoded as ("JPEG", "HEIF", "DNG"...)."""

    image: Image.Image
    width: int
    height: int
    format: str = ""


@dataclass(frozen=True)
class Probe:
    """What a file's header says: format, stored size, and the bytes decoding it would hold."""

    format: str
    width: int
    height: int
    cost: int


_DECODING = Pool(DECODE_MEMORY)


def probe(path: str | os.PathLike, target: int | None = None, max_pixels: int = MAX_PIXELS,
          max_bytes: int = MAX_DECODE_BYTES) -> Probe:
    """Check `path` from its header alone, as `load_image` would before decoding it: a regular
    file, in a format we read, of a sane size, within the memory budget. Raises `DecodeError`.
    Cheap for every format but HEIF/AVIF/RAW, whose libraries read the whole (small) file."""
    with _errors(path, max_pixels), _open_regular(path) as (f, size):
        head = _head(f)
        raw_kind = formats.raw_name(path, head)
        if raw_kind:
            with _open_raw(f, size, path, raw_kind, max_pixels, max_bytes) as raw:
                return Probe(raw_kind, raw.width, raw.height, size + raw.demosaic_cost)
        with _open_pillow(f, size, head, path, max_bytes) as img:
            plan = _plan(img, f, size, path, target, max_pixels, max_bytes)
            return plan.probe


def load_image(path: str | os.PathLike, target: int | None = None,
               max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODE_BYTES,
               alpha: bool = False) -> Picture:
    """Decode `path` to an RGB picture.

    With `target`, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale, a HEIC from a thumbnail and
    a RAW file from its preview, as long as both sides stay at least `target` pixels: the result
    is then smaller than the file, never smaller than needed. With `alpha`, a picture with an
    alpha channel or a transparent palette entry comes as RGBA, for showing it as it is (a
    white logo on a clear ground is blank on white)."""
    with _errors(path, max_pixels):
        with _open_regular(path) as (f, size):
            head = _head(f)
            raw_kind = formats.raw_name(path, head)
            if raw_kind:
                return _load_raw(f, size, path, raw_kind, target, max_pixels, max_bytes)
            with _open_pillow(f, size, head, path, max_bytes) as img:
                plan = _plan(img, f, size, path, target, max_pixels, max_bytes)
                orientation = _orientation(img, f)
                rgb = _decode(img, f, plan, alpha)
        return _upright(rgb, plan.width, plan.height, orientation, plan.probe.format)


@dataclass(frozen=True)
class _Plan:
    probe: Probe
    width: int  # the file's full size, before any draft
    height: int
    dc_only: bool


def _plan(img: Image.Image, f: BinaryIO, size: int, path, target: int | None, max_pixels: int,
          max_bytes: int) -> _Plan:
    """Check the header's size and work out the decode (draft, thumbnail, DC-only) and what it
    will hold; refuse it above `max_bytes`."""
    width, height = img.size
    if width < 1 or height < 1:
        raise DecodeError(path, f"invalid size {width}x{height}")
    if width * height > max_pixels:
        raise DecodeError(path, f"{width}x{height} pixels is over the limit of "
                                f"{max_pixels:,} (possible decompression bomb)")
    if img.format == "BMP" and img.info.get("compression") in (1, 2) \
            and width * height > RLE_BMP_MAX_PIXELS:
        raise DecodeError(path, f"run-length-coded BMP of {width}x{height} pixels is over the "
                                f"limit of {RLE_BMP_MAX_PIXELS:,} for that coding (possible "
                                f"decompression bomb)")
    extra, dc_only = 0, False
    if img.format in ("JPEG", "MPO"):
        if target:
            img.draft("RGB", (target, target))
        if jpeg.multi_scan(f):
            extra = jpeg.coefficient_bytes(img, width, height)
            dc_only = bool(target and img.info.get("progressive")
                           and img.size == (-(-width // 8), -(-height // 8)))
            if dc_only:
                extra += min(size, jpeg.DC_READ_LIMIT)
    elif img.format == "HEIF" and target:
        img.draft("RGB", (target, target))  # the smallest embedded thumbnail that is big enough
    elif img.format == "TIFF" and img.info.get("compression") != "raw":
        extra = tiff_strip_bytes(img)  # libtiff decodes it (Pillow streams uncompressed ones)
    if img.mode in DEEP_MODES:
        extra += BLOCK_BYTES
    if img.format in ("HEIF", "AVIF"):
        extra += size  # their libraries hold the whole file
    cost = img.width * img.height * bytes_per_pixel(img) + extra + SLACK
    if cost > max_bytes:
        raise DecodeError(path, f"decoding {width}x{height} pixels ({img.mode}) would take about "
                                f"{_mib(cost)} MiB, over the limit of {_mib(max_bytes)} MiB per "
                                f"image (possible decompression bomb)")
    fmt = formats.report_name(img.format)
    return _Plan(Probe(fmt, width, height, cost), width, height, dc_only)


def _decode(img: Image.Image, f: BinaryIO, plan: _Plan, alpha: bool = False) -> Image.Image:
    with _DECODING.hold(plan.probe.cost):
        small = jpeg.dc_only(f, img.size) if plan.dc_only else None
        if small is None:
            img.load()  # the first frame: Pillow opens every format at frame 0
        if alpha and small is None and (img.mode in ALPHA_MODES or (
                img.mode == "P" and "transparency" in img.info)):
            return img.convert("RGBA")
        return to_rgb(small if small is not None else img)


# -- opening -------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_regular(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, int]]:
    """The file opened for reading without blocking, with its size; refused unless it is a
    regular file. The path is opened once: what is checked is what is decoded."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError(path, "is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError(path, "not a regular file (a pipe, socket or device)")
        if st.st_size == 0:
            raise DecodeError(path, "empty file (0 bytes)")
        yield f, st.st_size


def _head(f: BinaryIO) -> bytes:
    head = f.read(64)
    f.seek(0)
    return head


@contextlib.contextmanager
def _open_pillow(f: BinaryIO, size: int, head: bytes, path,
                 max_bytes: int) -> Iterator[Image.Image]:
    kind = formats.sniff(head)
    allowed = formats.pillow_formats(kind, path)
    if kind is not None and size > max_bytes:  # pillow-heif and Pillow's AVIF read it all
        raise DecodeError(path, f"a {kind} file of {_mib(size)} MiB is over the limit of "
                                f"{_mib(max_bytes)} MiB per image")
    with warnings.catch_warnings():
        # Pillow's "Corrupt EXIF data" and the like: the picture itself decodes, or fails later
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(f, formats=allowed) as img:
            yield img


@contextlib.contextmanager
def _errors(path: str | os.PathLike, max_pixels: int) -> Iterator[None]:
    """Every failure below as a `DecodeError` with a one-line reason."""
    try:
        yield
    except DecodeError:
        raise
    except FileNotFoundError:
        raise DecodeError(path, "file not found") from None
    except PermissionError:
        raise DecodeError(path, "permission denied") from None
    except IsADirectoryError:
        raise DecodeError(path, "is a folder") from None
    except Image.UnidentifiedImageError:
        raise DecodeError(path, "not an image Pillow can read (unknown or damaged format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        claimed = re.search(r"\((\d+) pixels\)", str(e))  # Pillow's check, inside its plugins
        size = f"{int(claimed.group(1)):,} pixels" if claimed else "a size"
        raise DecodeError(path, f"{size} is over the limit of {max_pixels:,} (possible "
                                f"decompression bomb)") from None
    except MemoryError:
        raise DecodeError(path, "out of memory while decoding") from None
    except OSError as e:
        if e.errno is not None:  # the system's (a link loop, an I/O error); Pillow's carry none
            raise DecodeError(path, f"cannot read: {e.strerror or e.errno}") from None
        raise DecodeError(path, f"cannot decode: {_one_line(e)}") from None
    except Exception as e:  # Pillow's plugins raise SyntaxError, ValueError, struct.error...
        raise DecodeError(path, f"cannot decode: {_one_line(e)}") from None


def _one_line(e: Exception) -> str:
    """An exception as a short line of text, whatever its message looks like."""
    return " ".join(str(e).split())[:300] or type(e).__name__


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


# -- RAW -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_raw(f: BinaryIO, size: int, path, kind: str, max_pixels: int, max_bytes: int):
    from simsearch.raw import RawFile

    if size > max_bytes // 2:
        raise DecodeError(path, f"a {kind} file of {_mib(size)} MiB is over the limit of "
                                f"{_mib(max_bytes // 2)} MiB for RAW files")
    with RawFile(f.read(), path, kind) as raw:
        if raw.width < 1 or raw.height < 1:
            raise DecodeError(path, f"invalid size {raw.width}x{raw.height}")
        if raw.width * raw.height > max_pixels:
            raise DecodeError(path, f"{raw.width}x{raw.height} pixels is over the limit of "
                                    f"{max_pixels:,} (possible decompression bomb)")
        yield raw


def _load_raw(f: BinaryIO, size: int, path, kind: str, target: int | None, max_pixels: int,
              max_bytes: int) -> Picture:
    """The embedded preview when both its sides reach `target` and its shape is the picture's;
    the raw data demosaiced at half size otherwise."""
    with _open_raw(f, size, path, kind, max_pixels, max_bytes) as raw:
        rgb = _raw_preview(raw, target, max_pixels, max_bytes) if target else None
        if rgb is None:
            cost = size + raw.demosaic_cost
            if cost > max_bytes:
                raise DecodeError(path, f"decoding the {raw.width}x{raw.height} raw data would "
                                        f"take about {_mib(cost)} MiB, over the limit of "
                                        f"{_mib(max_bytes)} MiB per image")
            with _DECODING.hold(cost):
                rgb = raw.demosaic()
        return _upright(rgb, raw.width, raw.height, raw.orientation, kind)


def _raw_preview(raw, target: int, max_pixels: int, max_bytes: int) -> Image.Image | None:
    preview = raw.preview()
    if preview is None:
        return None
    try:
        if preview.pixels is not None:
            img = Image.fromarray(preview.pixels).convert("RGB")
            return img if _fits(img.size, raw, target) else None
        data = io.BytesIO(preview.jpeg)
        with Image.open(data, formats=["JPEG"]) as img:
            if not _fits(img.size, raw, target):
                return None
            plan = _plan(img, data, len(preview.jpeg), raw.path, target, max_pixels, max_bytes)
            return _decode(img, data, plan)
    except (DecodeError, OSError, ValueError, SyntaxError):
        return None  # a damaged preview: the raw data may still decode


def _fits(size: tuple[int, int], raw, target: int) -> bool:
    """At least `target` on both sides and the raw picture's shape (within rounding): some
    cameras store a preview cropped to another aspect ratio."""
    w, h = size
    return min(w, h) >= target and abs(w * raw.height - h * raw.width) <= 0.02 * raw.width * h


# -- orientation -----------------------------------------------------------------------------


def _orientation(img: Image.Image, f: BinaryIO) -> int:
    """The EXIF orientation to apply. libheif turns a HEIC upright itself by its `irot`/`imir`
    boxes (and pillow-heif then resets the EXIF tag), so the EXIF tag counts for a HEIC only
    when the file has neither box, as files written by some converters do."""
    if img.format == "HEIF":
        original = img.info.get("original_orientation") or 1
        return 1 if original == 1 or _heif_transformed(f) else int(original)
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # a damaged EXIF block should not lose the picture
        return 1


def _heif_transformed(f: BinaryIO) -> bool:
    """Whether the HEIF's item properties (meta/iprp/ipco) include a rotation or mirroring."""
    f.seek(0)
    data = f.read(1 << 20)
    f.seek(0)
    path = (b"meta", b"iprp", b"ipco")
    start, end, depth = 0, len(data), 0
    while start + 8 <= end:
        size = int.from_bytes(data[start:start + 4], "big")
        kind = data[start + 4:start + 8]
        if size < 8:
            return False
        if depth == len(path):
            if kind in (b"irot", b"imir"):
                return True
        elif kind == path[depth]:
            skip = 12 if kind == b"meta" else 8  # meta is a full box: version and flags
            start, end, depth = start + skip, min(end, start + size), depth + 1
            continue
        start += size
    return False


_TRANSPOSES = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


def _upright(rgb: Image.Image, width: int, height: int, orientation: int,
             fmt: str) -> Picture:
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    for op in _TRANSPOSES.get(orientation, ()):
        rgb = rgb.transpose(op)
    return Picture(rgb, width, height, fmt)


# -- pixels ----------------------------------------------------------------------------------


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparent pixels become white. Holds at most about one
    more RGB copy and an alpha mask beside the input (see `budget.bytes_per_pixel`)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        if "transparency" not in img.info:
            return img.convert("RGB")
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in DEEP_MODES:
        return _to_grey(img).convert("RGB")
    if mode in ALPHA_MODES:
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        white_where = ImageChops.invert(rgba.getchannel("A"))
        rgb = rgba.convert("RGB")
        rgb.paste((255, 255, 255), mask=white_where)  # rgb * alpha + white * (1 - alpha)
        return rgb
    return img.convert("RGB")


def _to_grey(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float pixels to 8-bit grey (16-bit scaled by 1/257, values
    outside 0..255 clipped), a block of rows at a time so that no float copy of the whole
    picture is ever made."""
    scale = 1.0
    if img.mode != "F":
        high = img.getextrema()[1]
        if high > 255:
            scale = 257.0
    out = Image.new("L", img.size)
    width, height = img.size
    step = max(1, BLOCK_PIXELS // max(1, width))
    for top in range(0, height, step):
        box = (0, top, width, min(height, top + step))
        arr = np.asarray(img.crop(box), dtype=np.float64)
        if scale != 1.0:
            arr /= scale
        arr += 0.5
        np.clip(arr, 0, 255, out=arr)
        out.paste(Image.fromarray(arr.astype(np.uint8), "L"), box[:2])
    return out


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Squash to `size` x `size` (no crop: nothing at the edges is lost). Training and
    inference both go through here so the network sees the same pixels in both."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
