"""The memory budget of decoding: what one image may hold, what all decodes in flight may hold
together, and how much a picture of a given size and Pillow mode holds while it is decoded and
converted to RGB (measured against peak memory with benchmarks/decode_memory.py); and the
memory the machine has free (`available_memory`), which bounds what dedupe may keep."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from PIL import Image

__all__ = ["MAX_DECODE_BYTES", "DECODE_MEMORY", "Pool", "bytes_per_pixel", "tiff_strip_bytes",
           "available_memory"]

# The memory one decode may hold: a 130 MP RGB TIFF or PNG, a 70 MP 16-bit grey PNG, a 50 MP
# RGBA PNG, any JPEG at the reduced size ingest asks for. DECODE_MEMORY is what all decodes in
# the process may hold at once: a decode waits until its share is free, so the decoding
# threads together stay within it however many there are.
MAX_DECODE_BYTES = 512 << 20
DECODE_MEMORY = 1 << 30


def available_memory() -> int:
    """Bytes the machine can give this process now without swapping: MemAvailable on Linux
    (within a container's cgroup limit, where it sets one), else half of physical memory; 0
    when neither can be read (no limit is then applied)."""
    free = _meminfo_available()
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
        except (ValueError, OSError, AttributeError):
            return 0
    room = _cgroup_room()
    return free if room is None else min(free, room)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit still allows (memory.max - memory.current), or None."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            cap = f.read().strip()
        if cap == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(cap) - int(f.read().strip()))
    except (OSError, ValueError):
        return None


class Pool:
    """Bytes held by decodes in flight, shared by every thread of the process."""

    def __init__(self, total: int):
        self.total, self.held = total, 0
        self.changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, n: int) -> Iterator[None]:
        n = min(n, self.total)
        with self.changed:
            self.changed.wait_for(lambda: self.held + n <= self.total)
            self.held += n
        try:
            yield
        finally:
            with self.changed:
                self.held -= n
                self.changed.notify_all()


# Bytes per pixel of each Pillow mode as held in memory (Pillow keeps every mode of more than
# one band, RGB included, in 4 bytes a pixel), and the most `to_rgb` adds on top
MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
DEEP_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
SLACK = 8 << 20  # the allocator's and the libraries' small change, per decode
BLOCK_PIXELS = 1 << 20  # pixels converted at a time from 16-bit, 32-bit and float modes
BLOCK_BYTES = 24 * BLOCK_PIXELS  # a block's crop, float64 copy and 8-bit result
# Besides Pillow's own copy: libwebp's canvas and previous frame, then the decoded bytes;
# libavif's and libheif's planes and decoded bytes (a 48 MP HEIC still fits the budget)
LIBRARY_BYTES = {"WEBP": 12, "AVIF": 6, "HEIF": 6}


def bytes_per_pixel(img: Image.Image) -> int:
    mode = img.mode
    own = MODE_BYTES.get(mode, 4)
    if mode == "RGB":
        convert = 0
    elif mode == "P":
        convert = 10 if "transparency" in img.info else 4  # P -> RGBA, then as RGBA
    elif mode in ALPHA_MODES:
        convert = 6 if mode == "RGBA" else 10  # (-> RGBA,) mask (1 + 1 while inverted), RGB
    elif mode in DEEP_MODES:
        convert = 5  # 8-bit grey, then RGB (and one block of rows: `BLOCK_BYTES`)
    else:
        convert = 4
    extra = LIBRARY_BYTES.get(img.format, 0)
    if img.format == "BMP" and img.info.get("compression") in (1, 2):
        extra = 1  # the RLE decoder's bytearray
    return own + convert + extra


def tiff_strip_bytes(img: Image.Image) -> int:
    """libtiff's buffers for one strip or tile (the whole image, for a file made of one strip),
    read as stored and unpacked as RGBA where libtiff converts (YCbCr, JPEG)."""
    tags = getattr(img, "tag_v2", {})
    width, height = img.size
    if 322 in tags and 323 in tags:
        area = int(tags[322]) * int(tags[323])
    else:
        area = width * min(height, int(tags.get(278, height) or height))
    counts = tags.get(279) or tags.get(325) or (0,)
    stored = max(counts) if isinstance(counts, tuple) else int(counts)
    return area * 4 + int(stored)
