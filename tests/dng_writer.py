"""A minimal DNG writer for tests: a real RAW file that LibRaw decodes, made from a picture.

The picture's linear-light values are laid out on an RGGB Bayer mosaic (16-bit, uncompressed),
with a colour matrix that makes the camera's space linear sRGB, so that demosaicing gives back
roughly the picture. Optionally IFD 0 holds a JPEG preview and the raw data moves to a SubIFD,
as cameras and converters write them. No camera sample ships in any package we could find.
"""
from __future__ import annotations

import io
import struct
from fractions import Fraction

import numpy as np
from PIL import Image

_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("I", 4), 10: ("i", 4)}
# XYZ (D65) to linear sRGB: the DNG colour matrix when the camera "sees" linear sRGB
_XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def mosaic(picture: Image.Image) -> np.ndarray:
    """The picture as an RGGB Bayer mosaic of 16-bit linear values."""
    srgb = np.asarray(picture.convert("RGB"), np.float64) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    out = np.empty(linear.shape[:2])
    out[0::2, 0::2] = linear[0::2, 0::2, 0]
    out[0::2, 1::2] = linear[0::2, 1::2, 1]
    out[1::2, 0::2] = linear[1::2, 0::2, 1]
    out[1::2, 1::2] = linear[1::2, 1::2, 2]
    return np.round(out * 65535).astype("<u2")


def dng_bytes(picture: Image.Image, preview: Image.Image | None = None,
              orientation: int = 1) -> bytes:
    """A DNG of `picture` (even width and height), with `preview` as an embedded JPEG."""
    width, height = picture.size
    matrix = []
    for value in np.asarray(_XYZ_TO_SRGB).flatten():
        f = Fraction(float(value)).limit_denominator(10000)
        matrix += [f.numerator, f.denominator]
    blobs = [mosaic(picture).tobytes()]
    raw = [(254, 4, [0]), (256, 4, [width]), (257, 4, [height]), (258, 3, [16]), (259, 3, [1]),
           (262, 3, [32803]), (273, 4, ["blob", 0]), (277, 3, [1]), (278, 4, [height]),
           (279, 4, [len(blobs[0])]), (284, 3, [1]), (33421, 3, [2, 2]),
           (33422, 1, [0, 1, 1, 2]), (50714, 4, [0]), (50717, 4, [65535])]
    common = [(271, 2, b"simsearch\x00"), (272, 2, b"test\x00"), (274, 3, [orientation]),
              (50706, 1, [1, 4, 0, 0]), (50708, 2, b"simsearch test\x00"),
              (50721, 10, matrix), (50728, 5, [1, 1, 1, 1, 1, 1]), (50778, 3, [21])]
    if preview is None:
        ifds = [raw + common]
    else:
        buf = io.BytesIO()
        preview.convert("RGB").save(buf, "JPEG", quality=92)
        blobs.append(buf.getvalue())
        pw, ph = preview.size
        ifds = [[(254, 4, [1]), (256, 4, [pw]), (257, 4, [ph]), (258, 3, [8, 8, 8]),
                 (259, 3, [7]), (262, 3, [6]), (273, 4, ["blob", 1]), (277, 3, [3]),
                 (278, 4, [ph]), (279, 4, [len(blobs[1])]), (284, 3, [1]),
                 (330, 4, ["ifd", 1])] + common, raw]
    return _tiff(ifds, blobs)


def _tiff(ifds: list, blobs: list[bytes]) -> bytes:
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    blob_at = []
    for blob in blobs:
        out += b"\x00" * (len(out) % 2)
        blob_at.append(len(out))
        out += blob
    out += b"\x00" * (len(out) % 2)
    encoded = [[_encode(tag, kind, values) for tag, kind, values in sorted(ifd)] for ifd in ifds]
    ifd_at, pos = [], len(out)
    for entries in encoded:
        ifd_at.append(pos)
        pos += 6 + 12 * len(entries) + sum(len(d) + len(d) % 2 for _, _, _, d in entries
                                           if len(d) > 4)
    for entries in encoded:
        extra_at = len(out) + 6 + 12 * len(entries)
        body, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag, kind, count, data in entries:
            if isinstance(data, tuple):  # an offset to fill in now that it is known
                data = struct.pack("<I", (blob_at if data[0] == "blob" else ifd_at)[data[1]])
            if len(data) <= 4:
                body += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\x00")
            else:
                body += struct.pack("<HHII", tag, kind, count, extra_at + len(extra))
                extra += data + b"\x00" * (len(data) % 2)
        out += body + struct.pack("<I", 0) + extra
    struct.pack_into("<I", out, 4, ifd_at[0])
    return bytes(out)


def _encode(tag: int, kind: int, values):
    if kind == 2:
        return tag, kind, len(values), bytes(values)
    if values and values[0] in ("blob", "ifd"):
        return tag, kind, 1, (values[0], values[1])
    code = _TYPES[kind][0]
    count = len(values) // 2 if kind in (5, 10) else len(values)
    return tag, kind, count, struct.pack("<" + code * len(values), *values)
