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
and replaced. In memory the verdicts are sorted columns (~33 bytes a pair), not a dict.
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

__all__ = ["Verdicts", "FILE", "fingerprint", "readable"]

FORMAT = 2
_COLUMNS = {"lo": np.int64, "hi": np.int64, "hash_lo": np.int64, "hash_hi": np.int64,
            "flags": np.uint8}
_MAX_PAIRS = 50_000_000  # ~1.7 GB in memory: a file claiming more is not ours, and is not read
_FIRST, _PLAIN = 1 << 3, 1 << 4  # flag bits above the verdict's code (0-7)
_IDS = 1 << 32  # ids at or above this are not kept (a pair's key is lo << 32 | hi)


def fingerprint(**parts) -> str:
    """What a verdict depends on besides its pictures (settings, versions, constants: see
    `simsearch.verify.PictureCheck`), as one string; the settings' `cache` (how many pictures
    are held at once) changes no verdict and is left out."""
    settings = parts.pop("settings", None)
    if settings is not None:
        parts["settings"] = {k: v for k, v in dataclasses.asdict(settings).items()
                             if k != "cache"}
    return json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=repr)


def _hash(content: str) -> int:
    """A content hash in 64 bits, as a signed int64 (enough to see a change; any string)."""
    return int.from_bytes(hashlib.blake2b(str(content).encode(), digest_size=8).digest(),
                          "little", signed=True)


def _empty() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, t) for k, t in _COLUMNS.items()}


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


class Verdicts:
    """Verdicts by pair of ids (lower first): the code `simsearch.verify` gives the verdict,
    whether the lower id's file went first, whether the pair is plain, and both hashes."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str):
        self.path = Path(folder) / FILE
        self.fingerprint = fingerprint
        columns = _read_columns(self.path, fingerprint)
        # a file that is there but cannot be used is replaced at the next save
        self.changed = columns is None and os.path.lexists(self.path)
        self._set(columns or _empty())
        self._new: dict[tuple[int, int], tuple[int, int, int]] = {}  # since read: (hashes, flags)

    def _set(self, columns: dict[str, np.ndarray]) -> None:
        keys = (columns["lo"].astype(np.uint64) << np.uint64(32)) | columns["hi"].astype(np.uint64)
        ok = ((columns["lo"] >= 0) & (columns["lo"] < columns["hi"]) & (columns["hi"] < _IDS))
        order = np.argsort(keys[ok], kind="stable")
        self._keys = keys[ok][order]
        self._cols = {k: c[ok][order] for k, c in columns.items()}

    def __len__(self) -> int:
        return len(self._keys) + sum(1 for k in self._new if not self._in_file(*k))

    def _in_file(self, lo: int, hi: int) -> int | None:
        if not 0 <= lo < hi < _IDS:
            return None
        key = np.uint64(lo << 32 | hi)
        at = int(np.searchsorted(self._keys, key))
        return at if at < len(self._keys) and self._keys[at] == key else None

    def get(self, lo: int, hi: int, sha_lo: str, sha_hi: str, lo_first: bool
            ) -> tuple[int, bool] | None:
        """The code of the verdict kept for ids (lo, hi) and whether the pair is plain, when it
        was judged on these contents in this order; else None."""
        kept = self._new.get((lo, hi))
        if kept is None:
            at = self._in_file(lo, hi)
            if at is None:
                return None
            kept = (int(self._cols["hash_lo"][at]), int(self._cols["hash_hi"][at]),
                    int(self._cols["flags"][at]))
        if kept[:2] != (_hash(sha_lo), _hash(sha_hi)) or bool(kept[2] & _FIRST) != lo_first:
            return None
        return kept[2] & 7, bool(kept[2] & _PLAIN)

    def put(self, lo: int, hi: int, sha_lo: str, sha_hi: str, lo_first: bool, code: int,
            plain: bool) -> None:
        if not 0 <= lo < hi < _IDS:
            return  # not kept: only a saving of time
        self._new[(lo, hi)] = (_hash(sha_lo), _hash(sha_hi),
                               code | (_FIRST if lo_first else 0) | (_PLAIN if plain else 0))
        self.changed = True

    def save(self, ids: np.ndarray, contents: np.ndarray) -> None:
        """Write the verdicts whose files are still indexed with the same contents (`ids` in
        order, their content hashes), through a temporary file. A folder that cannot be written
        (a read-only index) keeps the old file: these are only a saving of time."""
        if not self.changed:
            return
        fresh = [(lo, hi, p, q, f) for (lo, hi), (p, q, f) in self._new.items()]
        replaced = {self._in_file(lo, hi) for lo, hi, *_ in fresh} - {None}
        keep = np.ones(len(self._keys), bool)
        keep[list(replaced)] = False
        columns = {k: np.concatenate([c[keep], np.array([r[i] for r in fresh], _COLUMNS[k])])
                   for i, (k, c) in enumerate(self._cols.items())}
        ids = np.asarray(ids, np.int64)
        alive = np.zeros(len(columns["lo"]), bool)
        if len(ids) and len(alive):
            hashes = {}  # each position's hash, computed once

            def hashed(at: int) -> int:
                if at not in hashes:
                    hashes[at] = _hash(contents[at])
                return hashes[at]
            at = {}
            for side in ("lo", "hi"):
                pos = np.minimum(np.searchsorted(ids, columns[side]), len(ids) - 1)
                at[side] = np.where(ids[pos] == columns[side], pos, -1)
            for n, (i, j) in enumerate(zip(at["lo"].tolist(), at["hi"].tolist())):
                alive[n] = (i >= 0 and j >= 0 and hashed(i) == columns["hash_lo"][n]
                            and hashed(j) == columns["hash_hi"][n])
        columns = {k: c[alive] for k, c in columns.items()}
        try:
            write_atomic(self.path, lambda f: np.savez(
                f, fingerprint=np.array(self.fingerprint), **columns))
        except OSError:
            return
        self._set(columns)
        self._new, self.changed = {}, False
