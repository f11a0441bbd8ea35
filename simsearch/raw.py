"""RAW camera files (DNG, CR2/CR3, NEF, ARW, RAF, ORF, RW2) through rawpy, LibRaw's binding.

Cameras store a JPEG preview inside their RAW files (from about 1,600 pixels wide to full
size); when it is large enough for the network it is what gets decoded, in milliseconds, and
otherwise the raw data is demosaiced at half size (LibRaw's fast path: one pixel per 2x2
sensor block). `images.py` decides which and keeps the budget; this module only talks to LibRaw.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from simsearch.errors import DecodeError, MissingLibraryError
from simsearch.formats import FORMATS

__all__ = ["RawFile", "Preview"]

_INSTALL = next(f.install for f in FORMATS if f.name == "RAW")

# LibRaw's `flip` (dcraw's bits: 4 swaps the axes, 2 mirrors vertically, 1 horizontally) as
# an EXIF orientation, so that one code path turns every picture upright
_FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

# What a half-size demosaic holds at once: LibRaw's raw buffer (2 bytes per sensor pixel),
# and per pixel of the picture its half-size 4 x 16-bit working image (2 bytes) and the 8-bit
# RGB result as LibRaw, NumPy and Pillow each hold it (3 x 0.75).
RAW_BYTES_PER_SENSOR_PIXEL = 2
HALF_SIZE_BYTES_PER_PIXEL = 4.25


@dataclass(frozen=True)
class Preview:
    """An embedded preview: JPEG bytes, or already decoded pixels."""

    jpeg: bytes | None = None
    pixels: np.ndarray | None = None


class RawFile:
    """An opened RAW file (the whole file in memory: LibRaw reads it from a buffer)."""

    def __init__(self, data: bytes, path: str | os.PathLike, kind: str):
        try:
            import rawpy
        except ImportError:
            raise MissingLibraryError(path, kind, _INSTALL) from None
        self._rawpy, self.path = rawpy, path
        try:
            self._raw = rawpy.imread(io.BytesIO(data))
        except rawpy.LibRawFileUnsupportedError:
            raise DecodeError(path, f"not a {kind} file LibRaw can read") from None
        except rawpy.LibRawError as e:
            raise DecodeError(path, f"cannot decode: {_message(e)}") from None
        sizes = self._raw.sizes
        self.width, self.height = int(sizes.width), int(sizes.height)
        self.raw_pixels = int(sizes.raw_width) * int(sizes.raw_height)
        self.orientation = _FLIP_TO_EXIF.get(int(sizes.flip), 1)

    def __enter__(self) -> "RawFile":
        return self

    def __exit__(self, *exc) -> None:
        self._raw.close()

    @property
    def demosaic_cost(self) -> int:
        return (self.raw_pixels * RAW_BYTES_PER_SENSOR_PIXEL
                + int(self.width * self.height * HALF_SIZE_BYTES_PER_PIXEL))

    def preview(self) -> Preview | None:
        """The embedded preview, or None when there is none LibRaw can give."""
        rawpy = self._rawpy
        try:
            thumb = self._raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            return None
        except rawpy.LibRawError:
            return None  # a damaged preview: the raw data may still decode
        if thumb.format == rawpy.ThumbFormat.JPEG:
            return Preview(jpeg=bytes(thumb.data))
        return Preview(pixels=np.asarray(thumb.data))

    def demosaic(self) -> Image.Image:
        """The raw data as an 8-bit RGB picture at half size, not yet turned upright."""
        rawpy = self._rawpy
        try:
            rgb = self._raw.postprocess(half_size=True, use_camera_wb=True, user_flip=0,
                                        output_bps=8)
        except rawpy.LibRawError as e:
            raise DecodeError(self.path, f"cannot decode the raw data: {_message(e)}") from None
        return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def _message(e: Exception) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__
