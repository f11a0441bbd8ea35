"""JPEG internals the decoder needs beyond Pillow: how much memory libjpeg will hold for a file,
and a progressive JPEG decoded at 1/8 scale from its DC scans alone.

Both walk the file's markers from its start and read only as far as they must: the header for
the first, the DC scans (capped) for the second, never the rest of the file.
"""
from __future__ import annotations

import io
from typing import BinaryIO

from PIL import Image

__all__ = ["coefficient_bytes", "multi_scan", "dc_only", "dc_scans_end", "DC_READ_LIMIT"]

# The most the DC-only path reads before giving up (the DC scans of a 250 MP picture are a few
# MB; a file whose first scans run on longer is decoded the ordinary way, which streams it).
DC_READ_LIMIT = 64 << 20
# Where a header is looked for: APPn segments are at most 64 KiB each; a file with more than
# this before its first scan is taken to be a multi-scan file (the costly assumption).
HEADER_READ_LIMIT = 1 << 20

_SOF_PROGRESSIVE = 0xC2
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}  # Huffman or arithmetic, plain or differential
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOF_OTHER = _SOF - {_SOF_PROGRESSIVE}
_MORE = object()  # the walk ran out of data: read on


def coefficient_bytes(img: Image.Image, width: int, height: int) -> int:
    """What libjpeg holds for a multi-scan (progressive, or non-interleaved) JPEG of `width` x
    `height`, whatever the output scale: every 8x8 block's 64 coefficients of 2 bytes, for
    every component at its own sampling."""
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * len(img.getbands())
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    total = 0
    for _, h, v, _ in layers:
        blocks_x = _ceil(_ceil(width * h, h_max), 8)
        blocks_y = _ceil(_ceil(height * v, v_max), 8)
        total += (blocks_x + h) * (blocks_y + v) * 128  # rounded up to whole MCUs
    return total


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def multi_scan(f: BinaryIO) -> bool:
    """True when libjpeg must buffer the whole file's coefficients: a progressive file, or a
    first scan that does not cover every component. Reads the header only."""
    for limit in (64 << 10, HEADER_READ_LIMIT):  # 64 KiB holds almost every header
        f.seek(0)
        data = f.read(limit)
        f.seek(0)
        answer = _first_scan_partial(data)
        if answer is not None or len(data) < limit:
            return True if answer is None else answer
    return True


def _first_scan_partial(data: bytes) -> bool | None:
    """Whether the first scan leaves out components (or the file is progressive); None when
    `data` ends before the first scan."""
    pos, n, components = 2, len(data), 0
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return True
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _SOF and pos + 9 < n:
            if marker in _PROGRESSIVE:
                return True
            components = data[pos + 9]
        if marker == 0xDA:
            return None if pos + 4 >= n else data[pos + 4] < components
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def dc_only(f: BinaryIO, size: tuple[int, int], limit: int = DC_READ_LIMIT) -> Image.Image | None:
    """A progressive JPEG decoded at 1/8 scale from its DC scans alone, or None.

    At 1/8 scale each output pixel is essentially one 8x8 block's DC coefficient, so the AC
    scans, most of a progressive file and most of its decoding time, are skipped: the file is
    read up to the end of its first DC scans (which must cover every component) and decoded
    from there. The picture is close to, not equal to, a full 1/8 decode: the DC refinement
    bit is missing, subsampled chroma is scaled without its AC detail, and libjpeg smooths
    blocks of a file without AC data (errors of a few levels on average, more at sharp colour
    edges; vectors agree with a full decode to cosine >= 0.997 in our checks). A file damaged
    after its DC scans decodes this way too. Anything unexpected, or DC scans longer than
    `limit` bytes: None, and the caller decodes the whole file as usual."""
    try:
        data, chunk = bytearray(), 1 << 20
        f.seek(0)
        while True:
            block = f.read(min(chunk, limit - len(data)))
            data += block
            cut = dc_scans_end(data)
            if cut is not _MORE:
                break
            if not block or len(data) >= limit:
                return None
            chunk = min(2 * chunk, 16 << 20)
        if cut is None:
            return None
        del data[cut:]
        data += b"\xff\xd9"
        img = Image.open(io.BytesIO(data), formats=["JPEG"])
        img.draft("RGB", size)
        if img.size != size:
            return None
        img.load()
        return img
    except Exception:
        return None
    finally:
        f.seek(0)


def dc_scans_end(data: bytes | bytearray):
    """Offset of the first scan that is not a first DC scan, in a progressive Huffman JPEG
    whose earlier scans cover all components; None when the file is not one; `_MORE` when
    `data` ends before the answer."""
    if len(data) < 2:
        return _MORE
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
        if marker == _SOF_PROGRESSIVE:
            if pos + 9 >= n:
                return _MORE
            components = data[pos + 9]
        if marker == 0xDA:  # start of scan
            if pos + 4 >= n:
                return _MORE
            count = data[pos + 4]
            header = pos + 5 + 2 * count
            if header + 3 > n:
                return _MORE
            spectral_start, successive_high = data[header], data[header + 2] >> 4
            if spectral_start != 0 or successive_high != 0:
                return pos if components and len(covered) == components else None
            covered.update(data[pos + 5 + 2 * i] for i in range(count))
            pos += 2 + length
            while True:  # entropy-coded data runs to the next marker that is not a restart
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return _MORE
                following = data[pos + 1]
                if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
            continue
        pos += 2 + length
    return _MORE
