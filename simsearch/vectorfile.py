"""vectors.f16: the stored vectors in a file a query process memory-maps instead of reading.

Derived from the catalog like vectors.faiss and written with it at every commit (through
`simsearch.store.write_atomic`). Layout: a 4 KiB header (magic, then JSON: count, dim,
generation, scoring), the vectors as float16 [n, dim] in id order, their ids (int64, ascending)
and their score offsets (float32, NaN where none is stored). A query touches only the pages of
the rows it asks for: the ids and offsets (12 bytes a row) and the candidates' vectors, so a
cold query on ten million vectors reads megabytes, not gigabytes.

float16 keeps a unit vector's components to about 1e-4 of the largest; the scores it gives
differ from float32 scores by at most 8.7e-5 on 1M real-like vectors (recall@10 0.998 against
float32; benchmarks/query.py), so it is used to re-score the candidates of a lossy index.
"""
from __future__ import annotations

import json
import mmap
import os
import stat
from collections.abc import Iterable

import numpy as np

from simsearch.errors import IndexStoreError

__all__ = ["VectorFile", "write_vector_file", "MAGIC"]

MAGIC = b"SIMSVF16"
_HEADER = 4096


def write_vector_file(f, count: int, dim: int, generation: int, scoring: str | None,
                      batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Write the file into `f` from (ids, vectors, offsets) batches in ascending id order."""
    meta = json.dumps({"count": int(count), "dim": int(dim), "generation": int(generation),
                       "scoring": scoring}).encode()
    f.write((MAGIC + len(meta).to_bytes(4, "little") + meta).ljust(_HEADER, b"\0"))
    ids, offsets, written = [], [], 0
    for batch_ids, vectors, batch_offsets in batches:
        f.write(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())
        ids.append(np.asarray(batch_ids, np.int64))
        offsets.append(np.asarray(batch_offsets, np.float32))
        written += len(batch_ids)
    if written != count:
        raise IndexStoreError(f"the catalog changed while vectors.f16 was written ({written} "
                              f"rows, {count} expected)")
    for part in ids + offsets:
        f.write(part.tobytes())


class VectorFile:
    """A memory-mapped vectors.f16: `ids`, `offsets`, `vectors` are views into the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise IndexStoreError(f"{path}: cannot read ({e.strerror or e})") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size < _HEADER:
                raise IndexStoreError(f"{path}: not a vector file simsearch wrote")
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        head = self._map[:_HEADER]
        try:
            if head[:8] != MAGIC:
                raise ValueError("no magic")
            size = int.from_bytes(head[8:12], "little")
            meta = json.loads(head[12:12 + size])
            self.count, self.dim = int(meta["count"]), int(meta["dim"])
            self.generation = int(meta["generation"])
            self.scoring = meta["scoring"]
        except (ValueError, KeyError, TypeError) as e:
            raise IndexStoreError(f"{path}: not a vector file simsearch wrote ({e})") from None
        n, d = self.count, self.dim
        if n < 0 or d < 1 or st.st_size != _HEADER + n * (2 * d + 12):
            raise IndexStoreError(f"{path}: truncated or damaged ({st.st_size} bytes for {n} "
                                  f"vectors of {d} dimensions)")
        self.vectors = np.frombuffer(self._map, np.float16, n * d, _HEADER).reshape(n, d)
        self.ids = np.frombuffer(self._map, np.int64, n, _HEADER + 2 * n * d)
        self.offsets = np.frombuffer(self._map, np.float32, n, _HEADER + 2 * n * d + 8 * n)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row numbers of `ids`; -1 for an id the file does not hold."""
        ids = np.asarray(ids, np.int64)
        if self.count == 0:
            return np.full(ids.shape, -1, np.int64)
        where = np.clip(np.searchsorted(self.ids, ids), 0, self.count - 1)
        return np.where(self.ids[where] == ids, where, -1)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 [len(ids), dim] vectors of `ids` (each must be held)."""
        rows = self.rows(ids)
        if (rows < 0).any():
            raise IndexStoreError(f"{self.path}: holds no vector for id "
                                  f"{int(np.asarray(ids)[rows < 0][0])}; it is rebuilt at the "
                                  f"next commit, or with: simsearch check --repair")
        order = np.argsort(rows)  # read the file front to back
        out = np.empty((len(rows), self.dim), np.float32)
        out[order] = self.vectors[rows[order]]
        return out
