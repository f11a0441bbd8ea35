"""The ingest pipeline, in three steps: plan -> compute -> commit.

- plan: walk the folders and compare each file with its catalog row (size and mtime): only new
  or changed files go on;
- compute (`compute_file`, `compute_files`): a pure function of one file: its content hash and,
  unless that content is indexed already, its decoded pixels, then its vector; or a reason to
  skip it. Threads run it here; processes or remote workers (`simsearch.cluster`) can too;
- commit (`Committer`): one catalog transaction per batch, then the in-memory vector index.

Incremental: a file whose size and mtime match the catalog is not read at all; a changed file is
hashed, and re-embedded only when its content changed; a new file whose content hash is already
in the catalog reuses the stored vector (a move or rename keeps its vector id; a copy gets a new
row with the same vector). Files gone from disk under the folders being indexed are removed.
Decoding runs in a thread pool ahead of the network (Pillow releases the GIL while decoding).
"""
from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from simsearch.catalog import Catalog, Row
from simsearch.embedder import Embedder
from simsearch.errors import DecodeError, MissingLibraryError
from simsearch.files import (CACHE_FOLDER, OWN_FOLDER, TRASH_FOLDER, TRASHED_FILE, FileInfo,
                             WalkProblem, absolute, sha256, stat_file, walk_images)
from simsearch.images import load_image, probe
from simsearch.scoring import Background
from simsearch.vectors import VectorIndex

__all__ = ["Skipped", "IngestReport", "Computed", "compute_file", "compute_files", "Committer",
           "ingest", "plan", "remove_missing"]

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
    # simsearch's own folders (journals, review pages, moves), trashes and thumbnail caches
    # the walk passed over
    own_folders: list[str] = field(default_factory=list)
    # other files of the model (fp32, int8) that made vectors the index held before this run
    other_files: list[str] = field(default_factory=list)

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


@dataclass(frozen=True)
class _Missing(Skipped):
    """A file skipped because its format's optional library is not installed."""

    format: str = ""
    install: str = ""


@dataclass
class Computed:
    """What compute made of one file: its hash and, when its content is new, its pixels (for
    the network) and then its vector."""

    info: FileInfo
    sha: str
    array: np.ndarray | None = None
    width: int = 0
    height: int = 0
    vector: np.ndarray | None = None
    format: str = ""

    @property
    def new_content(self) -> bool:
        return self.array is not None or self.vector is not None


def compute_file(info: FileInfo, input_size: int, prepare: Callable,
                 known: Callable[[str], bool] | None = None) -> Computed | Skipped:
    """Hash one file and, unless `known(sha)` says its content is indexed already, decode it to
    the network's input (`prepare(picture) -> uint8 array`). Never raises for a bad file: the
    reason comes back as `Skipped`. The header is checked first, so that a file the decoder
    would refuse (a pipe, a bomb, a sparse file of gigabytes) is never read in full."""
    try:
        probe(info.path, target=input_size)
        sha = sha256(info.path)
        if known is not None and known(sha):
            return Computed(info, sha)
        picture = load_image(info.path, target=input_size)
        array = prepare(picture.image)
        if stat_file(info.path) != info:
            return Skipped(info.path, "changed while being indexed (run again to pick it up)")
        return Computed(info, sha, array, picture.width, picture.height, format=picture.format)
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


def compute_files(infos: list[FileInfo], embedder: Embedder) -> list[Computed | Skipped]:
    """Hash, decode and embed a batch of files: what a remote worker runs (no catalog, no
    index: its results are committed by the one writer)."""
    done = [compute_file(info, embedder.config.input_size, embedder.prepare) for info in infos]
    fresh = [c for c in done if isinstance(c, Computed) and c.array is not None]
    if fresh:
        vectors = embedder.embed_arrays(np.stack([c.array for c in fresh]))
        for c, v in zip(fresh, vectors):
            c.vector, c.array = v, None
    return done


# Files found by the walk but not yet handed to the decoders: enough to give the progress bar
# an exact total for most folders, small enough that memory does not grow with the folder.
LOOKAHEAD = 100_000


def plan(catalog: Catalog, roots: list[str], report: IngestReport) -> Iterator[tuple[FileInfo, Row | None]]:
    """Every image file under `roots` that is new or changed since its catalog row (an
    unchanged one is only counted), with that row."""
    def problem(p: WalkProblem) -> None:
        report.skipped.append(Skipped(p.path, p.reason))
        if p.reason in (OWN_FOLDER, TRASH_FOLDER, CACHE_FOLDER):  # what an earlier run took
            # is forgotten
            report.own_folders.append(p.path)

    for info in walk_images(roots, on_problem=problem):
        row = catalog.get(info.path)
        if row is not None and row.size == info.size and row.mtime_ns == info.mtime_ns:
            report.unchanged += 1
        else:
            yield info, row


def ingest(catalog: Catalog, vectors: VectorIndex, embedder_factory: Callable[[], Embedder],
           roots: Iterable[str], progress: Progress | None = None, workers: int | None = None,
           batch_size: int = 32, background: Background | None = None,
           first_rows: Callable[[Catalog], None] | None = None) -> IngestReport:
    """Bring the catalog and `store` in line with the image files under `roots`.

    The folder walk streams into the decoders through a bounded look-ahead, so memory stays
    flat however many files there are. `progress(done, total)`: total is the number of new or
    changed files found so far (exact once the walk has finished). `first_rows(catalog)`
    runs inside the transaction that stores the run's first rows, new vectors or vectors reused
    for moved and copied files (the index notes there which model file the run uses, so that a
    run killed later has noted it)."""
    report = IngestReport()
    roots = [absolute(r) for r in roots]
    committer = Committer(catalog, vectors, report, background, first_rows)
    batcher = _Batcher(catalog, committer, embedder_factory, report, progress, batch_size)
    batcher.run(_LookAhead(plan(catalog, roots, report), LOOKAHEAD), workers)
    remove_missing(catalog, vectors, roots, report)
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
    """Runs compute in a thread pool ahead of the network and hands batches to the committer."""

    def __init__(self, catalog, committer, embedder_factory, report, progress, batch_size):
        self.catalog, self.committer, self.embedder_factory = catalog, committer, embedder_factory
        self.embedder: Embedder | None = None
        self.report, self.progress = report, progress
        self.batch_size = batch_size
        self.pending: list[tuple[Computed, Row | None]] = []
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
            queue: deque[tuple[Future, Row | None]] = deque()
            for info, row in work:
                queue.append((pool.submit(self._compute, info, row), row))
                if len(queue) >= window:
                    self._take(*self._result(queue.popleft()))
            while queue:
                self._take(*self._result(queue.popleft()))
        self._flush()

    @staticmethod
    def _result(item: tuple[Future, Row | None]):
        future, row = item
        return future.result(), row

    def _compute(self, info: FileInfo, row: Row | None) -> Computed | Skipped:
        """Runs in a worker thread; content already indexed is not decoded again."""
        known = lambda sha: (row is not None and row.sha256 == sha) or self.catalog.has_sha256(sha)
        return compute_file(info, self.embedder.config.input_size, self.embedder.prepare, known)

    def _take(self, item: Computed | Skipped, row: Row | None) -> None:
        if isinstance(item, Skipped):
            self.committer.skip(item, row)
            self._tick(1)
            return
        self.pending.append((item, row))
        if sum(c.array is not None for c, _ in self.pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        fresh = [c for c, _ in self.pending if c.array is not None]
        if fresh:
            vectors = self.embedder.embed_arrays(np.stack([c.array for c in fresh]))
            for c, v in zip(fresh, vectors):
                c.vector, c.array = v, None
        self.committer.commit(self.pending)
        self._tick(len(self.pending))
        self.pending = []

    def _tick(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.work.found)


class Committer:
    """The one place ingest writes: a batch of computed files becomes one catalog transaction,
    then the same change in the in-memory vector index. Score offsets against the model's
    background are computed here, once per new vector, and stored with it."""

    def __init__(self, catalog: Catalog, vectors: VectorIndex, report: IngestReport,
                 background: Background | None = None,
                 first_rows: Callable[[Catalog], None] | None = None):
        self.catalog, self.vectors, self.report = catalog, vectors, report
        self.background = background
        self.first_rows = first_rows  # run once, in the first transaction storing rows

    def skip(self, item: Skipped, row: Row | None) -> None:
        """A file that cannot be used now. If it was indexed before (and has changed since,
        or it would not have been read), its old row no longer describes it: that row is
        removed, so that it can never stand in a group for a file that is not there."""
        if isinstance(item, _Missing):
            self.report.missing_libraries.setdefault(item.format, item.install)
            item = Skipped(item.path, item.reason)
        self.report.skipped.append(item)
        if row is not None and self.catalog.get(row.path) is not None:
            with self.catalog.transaction():
                self.catalog.delete([row.id])
            self.vectors.remove(np.array([row.id], dtype=np.int64))
            self.report.removed += 1

    def commit(self, batch: list[tuple[Computed, Row | None]]) -> None:
        fresh = [(c, row) for c, row in batch if c.vector is not None]
        vectors = np.stack([c.vector for c, _ in fresh]) if fresh else None
        if vectors is not None and not np.isfinite(vectors).all():
            from simsearch.errors import ModelError
            raise ModelError("the model produced vectors that are not finite numbers (NaN or "
                             "infinity); nothing of this batch was stored. The model file is "
                             "broken: use another with --model")
        offsets = (self.background.offsets(vectors) if self.background is not None and fresh
                   else np.zeros(len(fresh), np.float32))
        new_ids, new_vectors, new_offsets, stale_ids = [], [], [], []
        with self.catalog.transaction():
            if batch and self.first_rows is not None:
                self.first_rows(self.catalog)
                self.first_rows = None
            for (c, row), vector, offset in zip(fresh, vectors if fresh else [], offsets):
                self.report.formats[c.format] = self.report.formats.get(c.format, 0) + 1
                if row is None:
                    row_id = self.catalog.insert(c.info.path, c.info.size, c.info.mtime_ns, c.sha,
                                                 c.width, c.height, vector, float(offset))
                    self.report.added += 1
                else:
                    row_id = row.id
                    self.catalog.update(row_id, c.info.size, c.info.mtime_ns, c.sha, c.width,
                                        c.height, vector, float(offset))
                    stale_ids.append(row_id)
                    self.report.updated += 1
                new_ids.append(row_id)
                new_vectors.append(vector)
                new_offsets.append(float(offset))
            for c, row in batch:
                if c.vector is None:
                    self._reuse(c, row, new_ids, new_vectors, new_offsets, stale_ids)
        self.vectors.remove(np.array(stale_ids, dtype=np.int64))
        if new_ids:
            self.vectors.add(np.array(new_ids, dtype=np.int64), np.stack(new_vectors),
                             np.array(new_offsets, np.float32))

    def _reuse(self, c: Computed, row: Row | None, new_ids: list, new_vectors: list,
               new_offsets: list, stale_ids: list) -> None:
        """Content already known: same file touched, a move, or a copy of an indexed file."""
        info = c.info
        if row is not None and row.sha256 == c.sha:
            self.catalog.touch(row.id, info.size, info.mtime_ns)
            self.report.unchanged += 1
            return
        sources = [r for r in self.catalog.by_sha256(c.sha) if r.path != info.path]
        if not sources:  # the only holder of this content was this very path: re-read it later
            self.report.skipped.append(Skipped(info.path, "content changed during the run"))
            return
        source = sources[0]
        vector = self.catalog.vector(source.id)
        offset = self.catalog.offset(source.id)
        if row is not None:
            self.catalog.update(row.id, info.size, info.mtime_ns, c.sha, source.width,
                                source.height, vector, offset)
            stale_ids.append(row.id)
            new_ids.append(row.id)
            new_vectors.append(vector)
            new_offsets.append(0.0 if offset is None else offset)
            self.report.updated += 1
            return
        gone = next((r for r in sources if not os.path.lexists(r.path)), None)
        if gone is not None:
            self.catalog.move(gone.id, info.path, info.size, info.mtime_ns)
            self.report.moved += 1
            return
        row_id = self.catalog.insert(info.path, info.size, info.mtime_ns, c.sha, source.width,
                                     source.height, vector, offset)
        new_ids.append(row_id)
        new_vectors.append(vector)
        new_offsets.append(0.0 if offset is None else offset)
        self.report.added += 1


def remove_missing(catalog: Catalog, vectors: VectorIndex, roots: list[str],
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
                   if _gone(path)
                   or os.path.basename(path).startswith(TRASHED_FILE)]  # in Android's trash
        if missing and _empty_or_unreadable(root):
            report.kept[root] = len(missing)
            continue
        gone.extend(missing)
    for folder in report.own_folders:  # simsearch's own, a trash, a cache, indexed before
        gone.extend(row_id for row_id, _ in catalog.paths_under(folder))  # session 26
    gone = list(dict.fromkeys(gone))
    if gone:
        with catalog.transaction():
            catalog.delete(gone)
        vectors.remove(np.array(gone, dtype=np.int64))
        report.removed += len(gone)


def _gone(path: str) -> bool:
    """Whether the file is gone: no such name, or a symbolic link to nothing (its target
    deleted or moved: a hostile tester's dead link stayed indexed, and query answered it, for
    ever); a file that cannot be read today is not."""
    if not os.path.lexists(path):
        return True
    try:
        os.stat(path)
    except OSError as e:
        return e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
    return False


def _empty_or_unreadable(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return True  # cannot tell what is gone: keep everything
