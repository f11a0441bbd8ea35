"""The ingest pipeline: files -> decode pool -> embedder -> catalog (+ vector store).

Incremental: a file whose size and mtime match the catalog is not read at all; a changed file is
hashed, and re-embedded only when its content changed; a new file whose content hash is already
in the catalog reuses the stored vector (a move or rename keeps its vector id; a copy gets a new
row with the same vector). Files gone from disk under the folders being indexed are removed.
Decoding runs in a thread pool ahead of the network (Pillow releases the GIL while decoding).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from simsearch.catalog import Catalog, Row
from simsearch.embedder import Embedder
from simsearch.errors import DecodeError, MissingLibraryError
from simsearch.files import FileInfo, WalkProblem, sha256, stat_file, walk_images
from simsearch.images import load_image, probe
from simsearch.vectors import VectorStore

__all__ = ["Skipped", "IngestReport", "ingest"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    moved: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    # folders named in the run that were empty or unreadable, with how many indexed images
    # under each were kept anyway (an unmounted drive leaves an empty mount point: see
    # _remove_missing)
    kept: dict[str, int] = field(default_factory=dict)
    # files decoded in this run, by format ("JPEG", "HEIF", "DNG"...)
    formats: dict[str, int] = field(default_factory=dict)
    # formats whose optional library is not installed, each with the command that installs it
    missing_libraries: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        decoded = ", ".join(f"{n} {name}" for name, n in sorted(self.formats.items()))
        return (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
                f"removed {self.removed}, moved {self.moved}, skipped {len(self.skipped)}"
                + (f" (decoded: {decoded})" if decoded else ""))

    def to_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "removed": self.removed, "moved": self.moved,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "kept_under_empty_folders": self.kept, "formats": self.formats,
                "missing_libraries": self.missing_libraries}


@dataclass
class _Prepared:
    """What a worker made of one file: its hash and, when it must be embedded, its pixels."""

    info: FileInfo
    row: Row | None
    sha: str
    array: np.ndarray | None = None
    width: int = 0
    height: int = 0
    format: str = ""


@dataclass(frozen=True)
class _Missing(Skipped):
    """A file skipped because its format's optional library is not installed."""

    format: str = ""
    install: str = ""


# Files found by the walk but not yet handed to the decoders: enough to give the progress bar
# an exact total for most folders, small enough that memory does not grow with the folder.
LOOKAHEAD = 100_000


def ingest(catalog: Catalog, store: VectorStore, embedder_factory: Callable[[], Embedder],
           roots: Iterable[str], progress: Progress | None = None, workers: int | None = None,
           batch_size: int = 32) -> IngestReport:
    """Bring the catalog and `store` in line with the image files under `roots`.

    The folder walk streams into the decoders through a bounded look-ahead, so memory stays
    flat however many files there are. `progress(done, total)`: total is the number of new or
    changed files found so far (exact once the walk has finished)."""
    report = IngestReport()
    roots = [os.path.abspath(os.fspath(r)) for r in roots]

    def problem(p: WalkProblem) -> None:
        report.skipped.append(Skipped(p.path, p.reason))

    def changed() -> Iterator[tuple[FileInfo, Row | None]]:
        for info in walk_images(roots, on_problem=problem):
            row = catalog.get(info.path)
            if row is not None and row.size == info.size and row.mtime_ns == info.mtime_ns:
                report.unchanged += 1
            else:
                yield info, row

    batcher = _Batcher(catalog, store, embedder_factory, report, progress, batch_size)
    batcher.run(_LookAhead(changed(), LOOKAHEAD), workers)
    _remove_missing(catalog, store, roots, report)
    return report


class _LookAhead:
    """Iterate `items` while keeping up to `limit` of them read ahead; `found` counts every
    item read so far."""

    def __init__(self, items: Iterator, limit: int):
        self.items, self.limit = items, limit
        self.buffer: deque = deque()
        self.found = 0
        self.exhausted = False

    def fill(self) -> None:
        while not self.exhausted and len(self.buffer) < self.limit:
            try:
                self.buffer.append(next(self.items))
            except StopIteration:
                self.exhausted = True
            else:
                self.found += 1

    def __iter__(self):
        while True:
            self.fill()
            if not self.buffer:
                return
            yield self.buffer.popleft()


class _Batcher:
    def __init__(self, catalog, store, embedder_factory, report, progress, batch_size):
        self.catalog, self.store, self.embedder_factory = catalog, store, embedder_factory
        self.embedder: Embedder | None = None
        self.report, self.progress = report, progress
        self.batch_size = batch_size
        self.pending: list[_Prepared] = []
        self.done = 0
        self.work: _LookAhead | None = None

    def run(self, work: _LookAhead, workers: int | None) -> None:
        self.work = work
        work.fill()
        if self.progress:
            self.progress(0, work.found)
        if not work.buffer:
            return
        self.embedder = self.embedder_factory()
        workers = workers or min(8, os.cpu_count() or 1)
        window = max(2 * self.batch_size, 4 * workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="simsearch-decode") as pool:
            queue: deque[Future] = deque()
            for item in work:
                queue.append(pool.submit(self._prepare, *item))
                if len(queue) >= window:
                    self._take(queue.popleft().result())
            while queue:
                self._take(queue.popleft().result())
        self._flush()

    def _prepare(self, info: FileInfo, row: Row | None) -> _Prepared | Skipped:
        """Runs in a worker thread: check the header, hash, and decode only when the content
        is new. The header check comes first so that a file the decoder would refuse (a pipe,
        a bomb, a sparse file of gigabytes with a broken header) is never read in full."""
        try:
            probe(info.path, target=self.embedder.config.input_size)
            sha = sha256(info.path)
            if (row is not None and row.sha256 == sha) or self.catalog.has_sha256(sha):
                return _Prepared(info, row, sha)
            picture = load_image(info.path, target=self.embedder.config.input_size)
            array = self.embedder.prepare(picture.image)
            if stat_file(info.path) != info:
                return Skipped(info.path, "changed while being indexed (run again to pick it up)")
            return _Prepared(info, row, sha, array, picture.width, picture.height, picture.format)
        except MissingLibraryError as e:
            return _Missing(info.path, e.reason, e.format, e.install)
        except DecodeError as e:
            if not os.path.lexists(info.path):
                return Skipped(info.path, "disappeared while being indexed")
            return Skipped(info.path, e.reason)
        except FileNotFoundError:
            return Skipped(info.path, "disappeared while being indexed")
        except OSError as e:
            return Skipped(info.path, f"cannot read: {e.strerror or e}")

    def _take(self, item: _Prepared | Skipped) -> None:
        if isinstance(item, _Missing):
            self.report.missing_libraries.setdefault(item.format, item.install)
            item = Skipped(item.path, item.reason)
        if isinstance(item, Skipped):
            self.report.skipped.append(item)
            self._tick(1)
            return
        self.pending.append(item)
        if sum(p.array is not None for p in self.pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        fresh = [p for p in self.pending if p.array is not None]
        vectors = self.embedder.embed_arrays(np.stack([p.array for p in fresh])) if fresh else None
        new_ids, new_vectors, stale_ids = [], [], []
        with self.catalog.transaction():
            for i, p in enumerate(fresh):
                vector = vectors[i]
                self.report.formats[p.format] = self.report.formats.get(p.format, 0) + 1
                if p.row is None:
                    row_id = self.catalog.insert(p.info.path, p.info.size, p.info.mtime_ns, p.sha,
                                                 p.width, p.height, vector)
                    self.report.added += 1
                else:
                    row_id = p.row.id
                    self.catalog.update(row_id, p.info.size, p.info.mtime_ns, p.sha, p.width,
                                        p.height, vector)
                    stale_ids.append(row_id)
                    self.report.updated += 1
                new_ids.append(row_id)
                new_vectors.append(vector)
            for p in self.pending:
                if p.array is None:
                    self._reuse(p, new_ids, new_vectors, stale_ids)
        self.store.remove(np.array(stale_ids, dtype=np.int64))
        if new_ids:
            self.store.add(np.array(new_ids, dtype=np.int64), np.stack(new_vectors))
        self._tick(len(self.pending))
        self.pending = []

    def _reuse(self, p: _Prepared, new_ids: list, new_vectors: list, stale_ids: list) -> None:
        """Content already known: same file touched, a move, or a copy of an indexed file."""
        info = p.info
        if p.row is not None and p.row.sha256 == p.sha:
            self.catalog.touch(p.row.id, info.size, info.mtime_ns)
            self.report.unchanged += 1
            return
        sources = [r for r in self.catalog.by_sha256(p.sha) if r.path != info.path]
        if not sources:  # the only holder of this content was this very path: re-read it later
            self.report.skipped.append(Skipped(info.path, "content changed during the run"))
            return
        source = sources[0]
        vector = self.catalog.vector(source.id)
        if p.row is not None:
            self.catalog.update(p.row.id, info.size, info.mtime_ns, p.sha, source.width,
                                source.height, vector)
            stale_ids.append(p.row.id)
            new_ids.append(p.row.id)
            new_vectors.append(vector)
            self.report.updated += 1
            return
        gone = next((r for r in sources if not os.path.lexists(r.path)), None)
        if gone is not None:
            self.catalog.move(gone.id, info.path, info.size, info.mtime_ns)
            self.report.moved += 1
            return
        row_id = self.catalog.insert(info.path, info.size, info.mtime_ns, p.sha, source.width,
                                     source.height, vector)
        new_ids.append(row_id)
        new_vectors.append(vector)
        self.report.added += 1

    def _tick(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.work.found)


def _remove_missing(catalog: Catalog, store: VectorStore, roots: list[str],
                    report: IngestReport) -> None:
    """Forget files that no longer exist under the folders indexed in this run (and only those:
    a file that is merely unreadable today, or a folder not named in this run, is kept). A folder
    named in the run that is empty (or unreadable) keeps its images: it is more likely an
    unmounted drive than a deliberate purge (indexing its parent folder forgets them)."""
    gone: list[int] = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        missing = [row_id for row_id, path in catalog.paths_under(root)
                   if not os.path.lexists(path)]
        if missing and _empty_or_unreadable(root):
            report.kept[root] = len(missing)
            continue
        gone.extend(missing)
    if gone:
        with catalog.transaction():
            catalog.delete(gone)
        store.remove(np.array(gone, dtype=np.int64))
        report.removed += len(gone)


def _empty_or_unreadable(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return True  # cannot tell what is gone: keep everything
