"""Ingest's compute step on a Ray cluster: the only module that imports ray.

The head (the process running `simsearch index --ray ADDRESS`) plans as a local ingest does
(walks the folders, compares each file with its catalog row), hands batches of files to a pool
of Ray actors, and commits each batch that comes back through `simsearch.ingest.Committer`, the
index's one commit path, under the writer lock that `Index.add_paths` holds. Each actor loads
the ONNX model once and runs `simsearch.ingest.compute_files` (hash, decode, embed: no catalog,
no index). At most two batches per actor are in flight, so memory on the head stays bounded.

A worker that dies (its process killed, its node lost) loses only the batches it held: they
were not committed (a batch is committed on the head, in one transaction, once its whole
result is back), so they are sent again to a fresh actor; a batch is committed once, however
many times it was computed. The paths must be readable under the same names on every node (a
shared file system), and so must the model file.
"""
from __future__ import annotations

import os
import socket
import uuid
from collections import deque
from collections.abc import Iterable

import numpy as np
import ray
from ray.exceptions import RayActorError

from simsearch.catalog import Catalog, Row
from simsearch.embedder import Embedder
from simsearch.errors import SimsearchError
from simsearch.files import FileInfo, absolute
from simsearch.ingest import (Committer, Computed, IngestReport, Progress, Skipped, compute_files,
                              plan, remove_missing)
from simsearch.models import ModelRef, for_this_cpu
from simsearch.scoring import Background
from simsearch.vectors import VectorIndex

__all__ = ["ray_ingest", "check_address", "ACTOR_PREFIX"]

ACTOR_PREFIX = "simsearch-compute"
_IN_FLIGHT_PER_ACTOR = 2
_RETRIES = 3  # times one batch may be sent again after its worker died


@ray.remote(num_cpus=1, max_restarts=0)
class _Computer:
    """One ONNX Runtime session per actor, loaded once."""

    def __init__(self, model: ModelRef, device: str):
        # the int8 file the head chose may saturate on this worker's CPU: its own choice
        self.embedder = Embedder(for_this_cpu(model, device), threads=1, device=device)

    def compute(self, infos: list[FileInfo]) -> list[Computed | Skipped]:
        return compute_files(infos, self.embedder)

    def pid(self) -> int:
        return os.getpid()


def check_address(address: str, timeout: float = 5.0) -> None:
    """An explicit HOST:PORT (or ray://HOST:PORT) that nothing answers on is refused at once:
    ray.init would otherwise retry it for minutes."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SimsearchError(f"Ray address {address!r} is not HOST:PORT, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise SimsearchError(f"cannot reach a Ray cluster at {address!r} ({e.strerror or e}); "
                             "check the address, or start one with: ray start --head") from None


def connect(address: str) -> bool:
    """Join the Ray cluster at `address` ("auto": the one `ray start` began on this machine;
    "local": start one in this process); returns whether this call connected (and so should
    disconnect). An already connected process keeps its connection."""
    if ray.is_initialized():
        return False
    check_address(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SimsearchError(f"cannot reach a Ray cluster at {address!r} ({e}); start one with: "
                             f"ray start --head, then: simsearch index PHOTOS --ray auto") from e
    return True


def ray_ingest(catalog: Catalog, vectors: VectorIndex, model: ModelRef, roots: Iterable[str],
               address: str = "auto", progress: Progress | None = None,
               workers: int | None = None, batch_size: int = 32,
               background: Background | None = None, device: str = "cpu") -> IngestReport:
    """`simsearch.ingest.ingest`, with compute on `workers` Ray actors (default: one per CPU
    of the cluster)."""
    report = IngestReport()
    roots = [absolute(r) for r in roots]
    todo = _Batches(plan(catalog, roots, report), batch_size)
    if todo.peek():  # the cluster is reached only when there is something to compute
        connected = connect(address)
        try:
            pool = _Pool(model, device, workers or max(1, int(ray.cluster_resources().get("CPU", 1))))
            try:
                _run(pool, todo, catalog, Committer(catalog, vectors, report, background), progress)
            finally:
                pool.close()
        finally:
            if connected:
                ray.shutdown()
    elif progress:
        progress(0, 0)
    remove_missing(catalog, vectors, roots, report)
    return report


class _Pool:
    """Actors, each with a bounded number of batches; a dead one is replaced."""

    def __init__(self, model: ModelRef, device: str, size: int):
        self.model, self.device = model, device
        self.run_id = uuid.uuid4().hex[:8]
        self.created = 0
        self.actors = [self._new() for _ in range(size)]

    def _new(self):
        self.created += 1
        return _Computer.options(name=f"{ACTOR_PREFIX}-{self.run_id}-{self.created}").remote(
            self.model, self.device)

    def replace(self, actor) -> None:
        if actor in self.actors:
            self.actors[self.actors.index(actor)] = self._new()

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


class _Batches:
    """The planned files in batches, read from the walk only as they are sent (memory stays
    flat however many files there are); `found` counts the files planned so far, `retry`
    puts a batch back at the front."""

    def __init__(self, planned: Iterable, size: int):
        self.planned, self.size = iter(planned), size
        self.again: deque = deque()
        self.found = 0
        self.exhausted = False

    def peek(self) -> bool:
        if not self.again and not self.exhausted:
            batch = [item for _, item in zip(range(self.size), self.planned)]
            self.found += len(batch)
            self.exhausted = len(batch) < self.size
            if batch:
                self.again.append(batch)
        return bool(self.again)

    def next(self) -> list:
        self.peek()
        return self.again.popleft()

    def retry(self, batch: list) -> None:
        self.again.appendleft(batch)


def _run(pool: _Pool, batches: _Batches, catalog: Catalog, committer: Committer,
         progress: Progress | None) -> None:
    tries: dict[int, int] = {}
    in_flight: dict = {}  # object ref -> (batch, actor)
    load = {id(a): 0 for a in pool.actors}
    done = 0
    if progress:
        progress(0, batches.found)
    while batches.peek() or in_flight:
        while batches.peek():
            actor = min(pool.actors, key=lambda a: load.get(id(a), 0))
            if load.get(id(actor), 0) >= _IN_FLIGHT_PER_ACTOR:
                break
            batch = batches.next()
            in_flight[actor.compute.remote([info for info, _ in batch])] = (batch, actor)
            load[id(actor)] = load.get(id(actor), 0) + 1
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        batch, actor = in_flight.pop(ready[0])
        load[id(actor)] = load.get(id(actor), 0) - 1
        try:
            results = ray.get(ready[0])
        except RayActorError as e:
            key = id(batch)
            tries[key] = tries.get(key, 0) + 1
            if tries[key] > _RETRIES:
                raise SimsearchError(f"a Ray worker died {tries[key]} times on the batch starting "
                                     f"with {batch[0][0].path}; what was committed before stays; "
                                     f"run the same command again to carry on") from e
            pool.replace(actor)
            batches.retry(batch)
            continue
        _commit(results, batch, catalog, committer)
        done += len(batch)
        if progress:
            progress(done, batches.found)


def _commit(results: list[Computed | Skipped], batch: list[tuple[FileInfo, Row | None]],
            catalog: Catalog, committer: Committer) -> None:
    """One batch through the commit path, as a local ingest would: content already indexed is
    not stored as new (a move keeps its row, a copy reuses the stored vector)."""
    pending = []
    for item, (_, row) in zip(results, batch):
        if isinstance(item, Skipped):
            committer.skip(item, row)
            continue
        if item.vector is not None and ((row is not None and row.sha256 == item.sha)
                                        or catalog.has_sha256(item.sha)):
            item.vector = None
        elif item.vector is not None:
            item.vector = np.asarray(item.vector, dtype=np.float32)
        pending.append((item, row))
    if pending:
        committer.commit(pending)
