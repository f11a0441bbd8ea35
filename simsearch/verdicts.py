"""The picture check's verdicts, kept in the index folder between runs (`checked.npz`).

Reading pictures is most of what `simsearch dedupe` costs with its check (a camera JPEG takes
~0.1 s to decode and ~0.04 s more for its keypoints), and a user runs it again and again on one
index: dedupe to look, dedupe --plan, review, dedupe after adding a folder. Each pair's verdict
depends only on its two pictures, which file goes first (by path) and the check itself, so it is
kept with the content hashes it was judged on, the order and a fingerprint of the check (its
settings, the code's and the decoders' versions): a pair whose file changed, moved past the
other by path or was indexed again (a new id), or a check made otherwise, is judged afresh.
Verdicts about a file that could not be read are never kept (it may be readable next time).
The file is derived data: deleting it costs only time, and a damaged or foreign one is ignored
and replaced. In memory the verdicts are sorted columns and compact buffers (~65 bytes a
pair), not a dict.
"""
from __future__ import annotations

import array
import dataclasses
import hashlib
import json
import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from simsearch.store import CHECKED as FILE
from simsearch.store import write_atomic

__all__ = ["Verdicts", "FILE", "fingerprint", "readable", "content_hash"]

FORMAT = 3  # 3: with the pair's geometry (session 24)
# the geometry (simsearch.picturecheck.Geometry) of a pair matched well enough, NaN when none:
# the map from lo's pixels to hi's, row by row, and the shares of lo's and hi's keypoints
# outside the other picture (simsearch.verify.beyond)
_SHAPE = ("m0", "m1", "m2", "m3", "out_lo", "out_hi")
_COLUMNS = {"lo": np.int64, "hi": np.int64, "hash_lo": np.int64, "hash_hi": np.int64,
            "flags": np.uint8, **{k: np.float32 for k in _SHAPE}}
_MAX_PAIRS = 50_000_000  # ~3.3 GB in memory: a file claiming more is not ours, and is not read
_FIRST, _PLAIN = 1 << 3, 1 << 4  # flag bits above the verdict's code (0-7)
_IDS = 1 << 32  # ids at or above this are not kept (a pair's key is lo << 32 | hi)


def fingerprint(**parts) -> str:
    """What a verdict depends on besides its pictures (settings, versions, constants: see
    `simsearch.picturecheck.PictureCheck`), as one string; the settings' `cache` (how many pictures
    are held at once) changes no verdict and is left out."""
    settings = parts.pop("settings", None)
    if settings is not None:
        parts["settings"] = {k: v for k, v in dataclasses.asdict(settings).items()
                             if k != "cache"}
    return json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=repr)


def content_hash(content: str) -> int:
    """A content hash in 64 bits, as a signed int64 (enough to see a change; any string)."""
    return int.from_bytes(hashlib.blake2b(str(content).encode(), digest_size=8).digest(),
                          "little", signed=True)


def _empty() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, t) for k, t in _COLUMNS.items()}


def _buffers() -> dict[str, array.array]:
    """Where this run's verdicts wait for `Verdicts.save`, a compact buffer a column."""
    codes = {np.uint8: "B", np.float32: "f", np.int64: "q"}
    return {k: array.array(codes[t]) for k, t in _COLUMNS.items()}


def readable(folder: str | os.PathLike) -> bool:
    """Whether the index folder's verdicts file, when there is one, can be read (by some check:
    the fingerprint is not compared). `simsearch check` warns when it cannot."""
    path = Path(folder) / FILE
    return not os.path.lexists(path) or _read_columns(path, None) is not None


def _read_columns(path: Path, fingerprint: str | None) -> dict[str, np.ndarray] | None:
    """The columns of a verdicts file written with `fingerprint` (None: any); None when it is
    missing, not a regular file, damaged, foreign or made by another check. Each member's header is read
    before its data: only uncompressed members whose data fits in the file are read, so a small
    file cannot claim gigabytes."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None  # the store refuses a link or a device here anyway
    try:
        with zipfile.ZipFile(path) as archive:
            made_by = _member(archive, "fingerprint", st.st_size, "U", 1 << 16).item()
            if fingerprint is not None and made_by != fingerprint:
                return None
            columns = {k: _member(archive, k, st.st_size, np.dtype(t).str, _MAX_PAIRS)
                       for k, t in _COLUMNS.items()}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MemoryError):
        return None
    if len({len(c) for c in columns.values()}) != 1:
        return None
    return columns


def _member(archive: zipfile.ZipFile, name: str, size: int, dtype: str, most: int) -> np.ndarray:
    """One .npy member: stored uncompressed, of `dtype` (its kind: "U" any string width), at
    most `most` items and no more bytes than the file holds (ValueError if not)."""
    info = archive.getinfo(name + ".npy")
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
        raise ValueError(f"{name}: not a plain member")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{name}: npy version {version}")
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, found = read(f)
        if len(shape) > 1 or (found.str != dtype and not (dtype == "U" and found.kind == "U")):
            raise ValueError(f"{name}: {shape} {found}")
        count = int(np.prod(shape)) if shape else 1
        if count > most or count * found.itemsize > info.file_size:
            raise ValueError(f"{name}: {count} items")
        data = f.read(count * found.itemsize)
    if len(data) != count * found.itemsize:
        raise ValueError(f"{name}: short")
    return np.frombuffer(data, found).reshape(shape)


def _latest(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`columns` sorted by pair (key lo << 32 | hi), the last row of any pair given twice, rows
    whose ids are not 0 <= lo < hi < 2**32 left out."""
    lo, hi = columns["lo"], columns["hi"]
    ok = np.flatnonzero((lo >= 0) & (lo < hi) & (hi < _IDS))
    keys = (lo[ok].astype(np.uint64) << np.uint64(32)) | hi[ok].astype(np.uint64)
    unique, first_back = np.unique(keys[::-1], return_index=True)  # read backwards: the last
    rows = ok[len(ok) - 1 - first_back]
    return unique, {k: c[rows] for k, c in columns.items()}


class Verdicts:
    """Verdicts by pair of ids (lower first): the code `simsearch.verify` gives the verdict,
    whether the lower id's file went first, whether the pair is plain, both files' hashes
    (`content_hash`) and the pair's geometry (`simsearch.picturecheck.Geometry`). Those of an earlier run are sorted columns searched in bulk (`find`);
    those of this run are appended to compact buffers (~57 bytes a pair) until `save`."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str):
        self.path = Path(folder) / FILE
        self.fingerprint = fingerprint
        columns = _read_columns(self.path, fingerprint)
        # a file that is there but cannot be used is replaced at the next save
        self.changed = columns is None and os.path.lexists(self.path)
        self._keys, self._cols = _latest(columns or _empty())
        self._new = _buffers()

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Where each pair (lo[i] < hi[i]) is among the earlier run's verdicts, -1 if not."""
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        ok = (lo >= 0) & (lo < hi) & (hi < _IDS)
        keys = ((np.where(ok, lo, 0).astype(np.uint64) << np.uint64(32))
                | np.where(ok, hi, 0).astype(np.uint64))
        if not len(self._keys):
            return np.full(len(keys), -1)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(ok & (self._keys[at] == keys), at, -1)

    def entry(self, at: int, hash_lo: int, hash_hi: int, lo_first: bool
              ) -> tuple[int, bool, tuple | None] | None:
        """The code, plainness and geometry (None when none) of the verdict at `at` (from
        `find`), when it was judged on these contents (`content_hash`) in this order; else
        None."""
        c = self._cols
        flags = int(c["flags"][at])
        if (int(c["hash_lo"][at]), int(c["hash_hi"][at])) != (hash_lo, hash_hi) or \
                bool(flags & _FIRST) != lo_first:
            return None
        first = c["m0"].item(at)
        if first != first:  # NaN: no geometry (most lookups stop here)
            return flags & 7, bool(flags & _PLAIN), None
        values = [c[k].item(at) for k in _SHAPE]
        shape = None
        if all(map(math.isfinite, values[:4])) and \
                abs(values[0] * values[3] - values[1] * values[2]) > 1e-9:
            shares = tuple(values[4:]) if all(map(math.isfinite, values[4:])) else None
            shape = (tuple(values[:4]), shares)
        return flags & 7, bool(flags & _PLAIN), shape

    def get(self, lo: int, hi: int, sha_lo: str, sha_hi: str, lo_first: bool
            ) -> tuple[int, bool, tuple | None] | None:
        """The verdict kept for ids (lo, hi) by an earlier run, judged on these contents in
        this order (see `entry`); else None."""
        at = int(self.find(np.array([lo]), np.array([hi]))[0])
        return None if at < 0 else self.entry(at, content_hash(sha_lo), content_hash(sha_hi),
                                              lo_first)

    def put(self, lo: int, hi: int, hash_lo: int, hash_hi: int, lo_first: bool, code: int,
            plain: bool, shape: tuple | None = None) -> None:
        """Keep a verdict of this run (hashes from `content_hash`; `shape` the pair's geometry
        seen from lo, or None), written at `save`."""
        if not 0 <= lo < hi < _IDS:
            return  # not kept: only a saving of time
        nan = float("nan")
        linear, shares = shape if shape is not None else ((nan,) * 4, None)
        for k, v in (("lo", lo), ("hi", hi), ("hash_lo", hash_lo), ("hash_hi", hash_hi),
                     ("flags", code | (_FIRST if lo_first else 0) | (_PLAIN if plain else 0)),
                     *zip(_SHAPE, (*linear, *(shares if shares is not None else (nan,) * 2)))):
            self._new[k].append(v)
        self.changed = True

    def save(self, ids: np.ndarray, contents: np.ndarray) -> None:
        """Write the verdicts whose files are still indexed with the same contents (`ids` in
        order, their content hashes), this run's replacing an earlier run's, the newest
        `_MAX_PAIRS` at most, through a temporary file. The file is read again first, so the
        verdicts another run saved since this one started are kept (only two saves in the
        same instant can still lose one's). A folder that cannot be written (a
        read-only index) keeps the old file: these are only a saving of time."""
        if not self.changed:
            return
        fresh = {k: np.frombuffer(self._new[k], t) if len(self._new[k]) else np.zeros(0, t)
                 for k, t in _COLUMNS.items()}
        # a stop (Ctrl-C, SIGTERM) between two columns of one `put` leaves the last pair half
        # written: it is dropped, and the save goes on
        whole = min(len(v) for v in fresh.values())
        fresh = {k: v[:whole] for k, v in fresh.items()}
        # the file as it is now, not as this run found it: another run on this index (a dedupe
        # beside a review) may have saved its verdicts since, and they are kept too
        now = _read_columns(self.path, self.fingerprint)
        earlier_keys, earlier = (self._keys, self._cols) if now is None else _latest(now)
        columns = {k: np.concatenate([earlier[k], fresh[k]]) for k in _COLUMNS}
        # the pairs another run saved since this one read the file
        theirs = np.concatenate([~np.isin(earlier_keys, self._keys),
                                 np.zeros(len(fresh["lo"]), bool)])
        ids = np.asarray(ids, np.int64)
        alive = np.zeros(len(columns["lo"]), bool)
        if len(ids) and len(alive):
            at = {}
            for side in ("lo", "hi"):
                pos = np.minimum(np.searchsorted(ids, columns[side]), len(ids) - 1)
                at[side] = np.where(ids[pos] == columns[side], pos, -1)
            used = np.unique(np.concatenate([at["lo"], at["hi"]]))
            used = used[used >= 0]
            hashes = np.zeros(len(ids), np.int64)
            hashes[used] = [content_hash(contents[i]) for i in used.tolist()]
            alive = ((at["lo"] >= 0) & (at["hi"] >= 0)
                     & (hashes[np.maximum(at["lo"], 0)] == columns["hash_lo"])
                     & (hashes[np.maximum(at["hi"], 0)] == columns["hash_hi"]))
            # another run's verdicts about files indexed since this run's snapshot (ids past
            # its last): kept; a run that knows them prunes them
            alive |= theirs & (columns["hi"] > ids.max())
        # this run's verdicts come last: they replace an earlier run's, and stay under the cap
        keys, columns = _latest({k: c[alive][-_MAX_PAIRS:] for k, c in columns.items()})
        try:
            write_atomic(self.path, lambda f: np.savez(
                f, fingerprint=np.array(self.fingerprint), **columns))
        except OSError:
            return
        self._keys, self._cols, self._new, self.changed = keys, columns, _buffers(), False
