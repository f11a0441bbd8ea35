"""Decoding image files into RGB pictures the network can take.

JPEG/PNG/WebP/GIF (first frame)/BMP/TIFF; EXIF orientation applied; transparency composited on
white; palette, CMYK, 16-bit and grayscale converted to 8-bit RGB. JPEGs are decoded at reduced
size (`Image.draft`) when the network needs far fewer pixels than the file holds, which is most
of the cost of ingesting camera photos. Every failure is a `DecodeError` naming file and reason.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from simsearch.errors import DecodeError

__all__ = ["MAX_PIXELS", "FORMATS", "Picture", "load_image", "to_rgb", "resize_square"]

# Larger than any camera or ordinary scan (a 150 MP medium-format frame fits), small enough that
# a decompression bomb is refused before a byte of it is decoded.
MAX_PIXELS = 250_000_000

# Pillow checks sizes inside its plugins too, before we see the image: a GIF whose first frame
# claims 65535 x 65535 pixels allocates them while it is being opened. Its check warns above this
# limit (an error inside `load_image`) and raises above twice it; it must stay on.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# What the file's content may be, whatever its name says. Pillow can open many more formats,
# some through external programs (EPS runs Ghostscript); a photo library needs these. (Pillow
# opens multi-picture camera JPEGs, MPO, through its JPEG opener.)
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF")

_ORIENTATION_TAG = 0x0112


@dataclass
class Picture:
    """A decoded picture and the full size of the file it came from (after EXIF rotation)."""

    image: Image.Image
    width: int
    height: int


def load_image(path: str | os.PathLike, target: int | None = None,
               max_pixels: int = MAX_PIXELS) -> Picture:
    """Decode `path` to an RGB picture.

    With `target`, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as both sides stay at
    least `target` pixels: the result is then smaller than the file, never smaller than needed.
    """
    try:
        with warnings.catch_warnings():
            # Pillow's "Corrupt EXIF data" and the like: the picture itself decodes, or fails below
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as img:
                width, height = img.size
                if width < 1 or height < 1:
                    raise DecodeError(path, f"invalid size {width}x{height}")
                if width * height > max_pixels:
                    raise DecodeError(path, f"{width}x{height} pixels is over the limit of "
                                            f"{max_pixels:,} (possible decompression bomb)")
                orientation = _orientation(img)
                small = None
                if target and img.format in ("JPEG", "MPO"):
                    img.draft("RGB", (target, target))
                    if img.info.get("progressive") and img.size == (-(-width // 8), -(-height // 8)):
                        small = _dc_only(path, img.size)
                if small is None:
                    img.load()  # the first frame: Pillow opens every format at frame 0
                rgb = to_rgb(small if small is not None else img)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        if orientation and orientation != 1:
            rgb = _apply_orientation(rgb, orientation)
        return Picture(rgb, width, height)
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


def _dc_only(path: str | os.PathLike, size: tuple[int, int]) -> Image.Image | None:
    """A progressive JPEG decoded at 1/8 scale from its DC scans alone, or None.

    At 1/8 scale each output pixel is essentially one 8x8 block's DC coefficient, so the AC
    scans, most of a progressive file and most of its decoding time, are skipped: the file is
    cut after its first DC scans (which must cover every component) and decoded from there.
    The picture is close to, not equal to, a full 1/8 decode: the DC refinement bit is
    missing, subsampled chroma is scaled without its AC detail, and libjpeg smooths blocks of
    a file without AC data (errors of a few levels on average, more at sharp colour edges;
    vectors agree with a full decode to cosine >= 0.997 in our checks). A file damaged after
    its DC scans decodes this way too. Anything unexpected: None, and the caller decodes the
    whole file as usual."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        cut = _dc_scans_end(data)
        if cut is None:
            return None
        img = Image.open(io.BytesIO(data[:cut] + b"\xff\xd9"), formats=["JPEG"])
        img.draft("RGB", size)
        if img.size != size:
            return None
        img.load()
        return img
    except Exception:
        return None


_SOF_PROGRESSIVE = 0xC2
_SOF_OTHER = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _dc_scans_end(data: bytes) -> int | None:
    """Offset of the first scan that is not a first DC scan, in a progressive Huffman JPEG
    whose earlier scans cover all components; None otherwise."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, n, components, covered = 2, len(data), 0, set()
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF_OTHER:
            return None
        if marker == _SOF_PROGRESSIVE and pos + 9 < n:
            components = data[pos + 9]
        if marker == 0xDA:  # start of scan
            count = data[pos + 4]
            header = pos + 5 + 2 * count
            if header + 3 > n:
                return None
            spectral_start, successive_high = data[header], data[header + 2] >> 4
            if spectral_start != 0 or successive_high != 0:
                return pos if components and len(covered) == components else None
            covered.update(data[pos + 5 + 2 * i] for i in range(count))
            pos += 2 + length
            while True:  # entropy-coded data runs to the next marker that is not a restart
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return None
                following = data[pos + 1]
                if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
            continue
        pos += 2 + length
    return None


def _one_line(e: Exception) -> str:
    """An exception as a short line of text, whatever its message looks like."""
    return " ".join(str(e).split())[:300] or type(e).__name__


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # a damaged EXIF block should not lose the picture
        return 1


_TRANSPOSES = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    for op in _TRANSPOSES.get(orientation, ()):
        img = img.transpose(op)
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparent pixels become white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode != "F" and arr.max(initial=0) > 255:
            arr = arr / 257.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Squash to `size` x `size` (no crop: nothing at the edges is lost). Training and
    inference both go through here so the network sees the same pixels in both."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
