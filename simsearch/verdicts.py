"""The picture check's verdicts, kept in the index folder between runs (`checked.npz`).

Reading pictures is most of what `simsearch dedupe` costs with its check (a camera JPEG takes
~0.1 s to decode and ~0.04 s more for its keypoints), and a user runs it again and again on one
index: dedupe to look, dedupe --plan, review, dedupe after adding a folder. Each pair's verdict
depends only on its two pictures, which file goes first (by path) and the check's settings, so
it is kept with the content hashes it was judged on, the order and a fingerprint of the settings
(and OpenCV's version): a pair whose file changed, moved past the other by path or was indexed
again (a new id), or a check with other settings, is judged afresh. Verdicts about a file that
could not be read are never kept (it may be readable next time). The file is derived data:
deleting it costs only time, and a damaged or foreign one is ignored and replaced.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from simsearch.store import CHECKED as FILE
from simsearch.store import write_atomic

__all__ = ["Verdicts", "FILE", "fingerprint"]

FORMAT = 1
_MAX_BYTES = 1 << 31  # 33 bytes a pair: a file over this is not ours, and is not read
_FIRST, _PLAIN = 1 << 3, 1 << 4  # flag bits above the verdict's code (0-7)


def fingerprint(settings, opencv: str) -> str:
    """What a verdict depends on besides its pictures: the check's settings (but the size of its
    cache of pictures) and the OpenCV that found the keypoints."""
    fields = {k: v for k, v in dataclasses.asdict(settings).items() if k != "cache"}
    return json.dumps({"format": FORMAT, "opencv": opencv, "settings": fields}, sort_keys=True)


def _hash(content: str) -> int:
    """A content hash in 64 bits, as a signed int64 (enough to see a change; any string)."""
    return int.from_bytes(hashlib.blake2b(str(content).encode(), digest_size=8).digest(),
                          "little", signed=True)


class Verdicts:
    """Verdicts by pair of ids (lower first): the code `simsearch.verify` gives the verdict,
    whether the lower id's file went first, whether the pair is plain, and both hashes."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str):
        self.path = Path(folder) / FILE
        self.fingerprint = fingerprint
        self.changed = False
        self._table: dict[tuple[int, int], tuple[int, int, int]] = {}  # -> (hash, hash, flags)
        self._read()

    def __len__(self) -> int:
        return len(self._table)

    def _read(self) -> None:
        try:
            st = os.lstat(self.path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BYTES:
                self.changed = True  # not ours (the store refuses a link here anyway)
                return
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["fingerprint"]) != self.fingerprint:
                    self.changed = True  # another check's verdicts: replaced at the next save
                    return
                columns = [data[k] for k in ("lo", "hi", "hash_lo", "hash_hi", "flags")]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            self.changed = True  # damaged or not ours: ignored, and replaced at the next save
            return
        n = len(columns[0])
        if any(c.ndim != 1 or len(c) != n or c.dtype.kind not in "iu" for c in columns):
            self.changed = True
            return
        lo, hi, hash_lo, hash_hi, flags = (c.astype(np.int64).tolist() for c in columns)
        self._table = {(x, y): (p, q, f) for x, y, p, q, f in zip(lo, hi, hash_lo, hash_hi, flags)}

    def get(self, lo: int, hi: int, sha_lo: str, sha_hi: str, lo_first: bool
            ) -> tuple[int, bool] | None:
        """The code of the verdict kept for ids (lo, hi) and whether the pair is plain, when it
        was judged on these contents in this order; else None."""
        kept = self._table.get((lo, hi))
        if kept is None or kept[:2] != (_hash(sha_lo), _hash(sha_hi)):
            return None
        if bool(kept[2] & _FIRST) != lo_first:
            return None
        return kept[2] & 7, bool(kept[2] & _PLAIN)

    def put(self, lo: int, hi: int, sha_lo: str, sha_hi: str, lo_first: bool, code: int,
            plain: bool) -> None:
        self._table[(lo, hi)] = (_hash(sha_lo), _hash(sha_hi),
                                 code | (_FIRST if lo_first else 0) | (_PLAIN if plain else 0))
        self.changed = True

    def save(self, ids: np.ndarray, contents: np.ndarray) -> None:
        """Write the verdicts whose files are still indexed with the same contents (`ids` in
        order, their content hashes), through a temporary file. A folder that cannot be written
        (a read-only index) keeps the old file: these are only a saving of time."""
        if not self.changed:
            return
        ids = np.asarray(ids, np.int64)
        rows = []
        if len(ids) and self._table:
            keys = np.array(list(self._table), np.int64).reshape(-1, 2)
            at = np.minimum(np.searchsorted(ids, keys), len(ids) - 1)
            at = np.where(ids[at] == keys, at, -1)  # -1: no longer indexed
            for (i, j), ((x, y), (p, q, f)) in zip(at.tolist(), self._table.items()):
                if i >= 0 and j >= 0 and (_hash(contents[i]), _hash(contents[j])) == (p, q):
                    rows.append((x, y, p, q, f))
        table = np.array(rows, np.int64).reshape(-1, 5)
        try:
            write_atomic(self.path, lambda f: np.savez(
                f, fingerprint=np.array(self.fingerprint), lo=table[:, 0], hi=table[:, 1],
                hash_lo=table[:, 2], hash_hi=table[:, 3], flags=table[:, 4].astype(np.uint8)))
        except OSError:
            return
        self._table = {(x, y): (p, q, f) for x, y, p, q, f in table.tolist()}
        self.changed = False
