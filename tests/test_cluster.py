"""Ingest on a Ray cluster (simsearch.cluster) against a local ingest: the same paths and
vectors, and a worker killed mid-run loses and duplicates nothing. A local two-CPU cluster is
started by the tests, on this machine only."""
from __future__ import annotations

import os
import shutil
import signal

import numpy as np
import pytest

from conftest import write_pictures
from simsearch.index import open_index

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'simsearch[ray]'")

# a local cluster and an ONNX session per actor: about 30 s on a quiet 2-core machine
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    write_pictures(photos, 12, seed=3)
    write_pictures(photos / "sub", 6, seed=4)
    shutil.copy(photos / "img000.jpg", photos / "copy.jpg")  # a copy: reuses the stored vector
    (photos / "bad.jpg").write_bytes(b"not a picture")
    return photos


def _contents(index):
    paths, vectors = index.vectors()
    order = np.argsort(paths)
    return [paths[i] for i in order], vectors[order]


def _local(tmp_path, tiny_model, folder):
    index = open_index(tmp_path / "local", model=tiny_model / "model.onnx", create=True)
    report = index.add_paths([folder], batch_size=4)
    return report, _contents(index)


def test_ray_ingest_equals_local_ingest(cluster, tmp_path, tiny_model, folder):
    want_report, (want_paths, want_vectors) = _local(tmp_path, tiny_model, folder)
    index = open_index(tmp_path / "ray", model=tiny_model / "model.onnx", create=True)
    seen = []
    report = index.add_paths([folder], batch_size=4, ray="auto",
                             progress=lambda done, total: seen.append((done, total)))
    paths, vectors = _contents(index)
    assert paths == want_paths and len(paths) == 19
    np.testing.assert_allclose(vectors, want_vectors, atol=1e-5)
    assert (report.added, len(report.skipped)) == (want_report.added, len(want_report.skipped))
    assert seen[-1] == (20, 20)
    # incremental: a second run reads nothing, a moved file keeps its row
    os.rename(folder / "img001.jpg", folder / "moved.jpg")
    again = index.add_paths([folder], batch_size=4, ray="auto")
    assert (again.moved, again.added) == (1, 0)


def test_a_killed_worker_loses_nothing(cluster, tmp_path, tiny_model, folder):
    _, (want_paths, want_vectors) = _local(tmp_path, tiny_model, folder)
    index = open_index(tmp_path / "ray", model=tiny_model / "model.onnx", create=True)
    killed = []

    def kill_one(done, total):
        if done and not killed:  # after the first commit, while batches are in flight
            from simsearch.cluster import ACTOR_PREFIX
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith(ACTOR_PREFIX)]
            actor = ray.get_actor(sorted(names)[0])
            pid = ray.get(actor.pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    report = index.add_paths([folder], batch_size=2, ray="auto", workers=2, progress=kill_one)
    assert killed
    paths, vectors = _contents(index)
    assert paths == want_paths
    np.testing.assert_allclose(vectors, want_vectors, atol=1e-5)
    assert report.added == 19 and index.count() == 19
