"""Crashes, concurrency and failed writes.

A `simsearch index` killed at any moment (SIGKILL, also in the middle of a commit) leaves an
index that `simsearch check` passes or repairs, that answers queries with the last committed
state, and that the next run brings to exactly the state of a clean run. Two writers: the
second is refused. Readers during an ingest see committed states and never fail. A full disk or
a read-only folder is a message, and the previous state stays.
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_picture, write_pictures
from simsearch import open_index
from simsearch.cli import main
from simsearch.integrity import check_index
from test_hostile import PERMISSIONS_IGNORED, child_env, cli

BATCH = "4"


def _index_args(photos: Path, index_dir: Path, tiny_model: Path, *extra) -> list[str]:
    return ["index", str(photos), "--index", str(index_dir), "--model",
            str(tiny_model / "model.onnx"), "--batch-size", BATCH, "-q", *extra]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _state(index_dir: Path) -> dict[str, np.ndarray]:
    paths, vectors = open_index(index_dir).vectors()
    return dict(zip(paths, vectors))


def _files(index_dir: Path) -> dict[str, bytes]:
    return {name: (index_dir / name).read_bytes() for name in ("manifest.json", "vectors.faiss")}


def _assert_same_state(index_dir: Path, reference: dict[str, np.ndarray]) -> None:
    state = _state(index_dir)
    assert sorted(state) == sorted(reference)
    for path, vector in state.items():
        np.testing.assert_allclose(vector, reference[path], atol=1e-6, err_msg=path)
    assert check_index(index_dir).problems == []


# -- SIGKILL at any point ---------------------------------------------------------------------
def _raw_image_count(index_dir: Path) -> int:
    """Rows in the catalog, read without simsearch (0 when the table is not even there)."""
    try:
        db = sqlite3.connect(f"file:{index_dir / 'catalog.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


# A `simsearch index` that kills itself at an exact point: just before or after the Nth catalog
# commit, or just before vectors.faiss or manifest.json is put in place.
_KILL_AT = ("import os, signal, sys\n"
            "point = sys.argv.pop(1)\n"
            "import simsearch.catalog as catalog\n"
            "kind, _, arg = point.partition(':')\n"
            "def die():\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "if kind == 'replace':\n"
            "    replace = os.replace\n"
            "    def hooked(src, dst, *args, **kwargs):\n"
            "        if os.path.basename(os.fspath(dst)) == arg:\n"
            "            die()\n"
            "        return replace(src, dst, *args, **kwargs)\n"
            "    os.replace = hooked\n"
            "else:\n"
            "    commits = [0]\n"
            "    finish = catalog._Transaction.__exit__\n"
            "    def hooked(self, *exc):\n"
            "        commits[0] += 1\n"
            "        if kind == 'before-commit' and commits[0] == int(arg):\n"
            "            die()\n"
            "        result = finish(self, *exc)\n"
            "        if kind == 'after-commit' and commits[0] == int(arg):\n"
            "            die()\n"
            "        return result\n"
            "    catalog._Transaction.__exit__ = hooked\n"
            "from simsearch.cli import main\n"
            "main(prog_name='simsearch')\n")


def _start_and_kill(args: list, index_dir: Path, how: tuple, timeout: float = 120) -> str:
    """Run `simsearch ARGS` and SIGKILL it at the moment `how` names: ("delay", seconds) after
    it took the writer's lock (most of a run is starting Python), ("wal", n) on the nth growth
    of the catalog's write-ahead log after that (a commit), ("file", name) as soon as that file
    appears, or ("point", where) from inside (see _KILL_AT)."""
    kind, value = how
    argv = [sys.executable, "-c", _KILL_AT, value, *args] if kind == "point" else cli(*args)
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wal, lock = index_dir / "catalog.sqlite-wal", index_dir / "lock"
    start = time.monotonic()
    growths, last, locked = 0, -1, None
    try:
        while proc.poll() is None and time.monotonic() - start < timeout:
            if locked is None:
                try:
                    if lock.read_text() == str(proc.pid):
                        locked = time.monotonic()
                except FileNotFoundError:
                    pass
            try:
                size = wal.stat().st_size
            except FileNotFoundError:
                size = -1
            if locked and size > last:
                growths += 1
            last = size
            if kind == "delay" and locked and time.monotonic() - locked >= value:
                break
            if kind == "wal" and growths >= value:
                break
            if kind == "file" and (index_dir / value).exists():
                break
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, stderr = proc.communicate(timeout=60)
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    assert proc.returncode == 0, stderr.decode(errors="replace")
    return "finished"


def _after_a_crash(index_dir: Path, references: list[dict[str, np.ndarray]], repair: bool) -> None:
    """What a crash may leave: `check` passes or repairs (or, when nothing was committed yet,
    says clearly what to do); the index opens, answers, and holds only committed vectors."""
    if not (index_dir / "catalog.sqlite").exists():
        result = _invoke("check", "--index", index_dir)
        assert result.exit_code == 1 and "no index at" in result.stderr, result.output
        return
    if repair:
        result = _invoke("check", "--repair", "--json", "--index", index_dir)
        if result.exit_code != 0:  # only before the first commit: the catalog knows no model
            assert _raw_image_count(index_dir) == 0, result.output
            assert "Traceback" not in result.output and result.stderr.startswith("Error: ")
            return
        assert json.loads(result.stdout)["ok"], result.stdout
        assert check_index(index_dir).problems == []
    if not (index_dir / "manifest.json").exists():
        return  # the first run died before its end, and no repair was asked for
    index = open_index(index_dir)
    state = _state(index_dir)
    allowed = set().union(*references)
    assert set(state) <= allowed
    for path, vector in state.items():  # every stored vector is one a clean run computes
        assert any(path in ref and np.allclose(vector, ref[path], atol=1e-6) for ref in references), path
    if state:
        some = np.stack(list(state.values())[:3])
        for match in index.search_vectors(some, k=1):
            assert match[0].score > 0.999
        assert isinstance(index.duplicates(threshold=0.9).groups, list)


@pytest.mark.slow
def test_sigkill_anywhere_then_check_and_resume(tmp_path, tiny_model):
    rng = random.Random(6)
    photos = tmp_path / "photos"
    write_pictures(photos, 60, seed=6)
    # the clean run, in a process of its own like the runs that get killed
    done = subprocess.run(cli(*_index_args(photos, tmp_path / "clean_a", tiny_model)),
                          env=child_env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref_a = _state(tmp_path / "clean_a")
    assert len(ref_a) == 60

    # a fresh index killed twice, then resumed; with and without `check --repair` in between
    # (a run spends about 0.3 s after taking the lock loading the model, then 0.3 s committing)
    rounds = [[("wal", rng.randint(2, 8)), ("delay", rng.uniform(0.25, 0.7))],
              [("point", f"before-commit:{rng.randint(3, 10)}"), ("delay", rng.uniform(0.25, 0.7))],
              [("point", "replace:vectors.faiss"), ("wal", rng.randint(1, 4))],
              [("point", f"after-commit:{rng.randint(3, 10)}"), ("point", "replace:manifest.json")],
              [("delay", rng.uniform(0.25, 0.7)), ("file", "vectors.faiss.tmp")]]
    outcomes = []
    for number, plan in enumerate(rounds):
        index_dir = tmp_path / f"crash{number}"
        for how in plan:
            outcomes.append(_start_and_kill(_index_args(photos, index_dir, tiny_model), index_dir, how))
            _after_a_crash(index_dir, [ref_a], repair=number % 2 == 0)
        result = _invoke(*_index_args(photos, index_dir, tiny_model))
        assert result.exit_code == 0, result.output
        _assert_same_state(index_dir, ref_a)
    assert outcomes.count("killed") >= 5, outcomes

    # an update killed on its way: files deleted, renamed, rewritten and added
    incremental = tmp_path / "incremental"
    shutil.copytree(tmp_path / "clean_a", incremental)
    for i in range(5):
        (photos / f"img{i:03d}.jpg").unlink()
        os.rename(photos / f"img{i + 5:03d}.jpg", photos / f"renamed{i}.jpg")
        path = photos / f"img{i + 10:03d}.jpg"
        make_picture(900 + i).save(path, quality=80)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    write_pictures(photos / "new", 5, seed=61)
    done = subprocess.run(cli(*_index_args(photos, tmp_path / "clean_b", tiny_model)),
                          env=child_env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref_b = _state(tmp_path / "clean_b")
    for how in (("point", "after-commit:1"), ("delay", rng.uniform(0.25, 0.4)),
                ("point", "replace:manifest.json")):
        _start_and_kill(_index_args(photos, incremental, tiny_model), incremental, how)
        _after_a_crash(incremental, [ref_a, ref_b], repair=True)
    result = _invoke(*_index_args(photos, incremental, tiny_model))
    assert result.exit_code == 0, result.output
    _assert_same_state(incremental, ref_b)


# -- two writers, and readers during a write ---------------------------------------------------
_SLOW_INDEX = ("import sys, time\n"
               "import simsearch.ingest as ingest\n"
               "delay = float(sys.argv.pop(1))\n"
               "decode = ingest.load_image\n"
               "def load_image(*args, **kwargs):\n"
               "    time.sleep(delay)\n"
               "    return decode(*args, **kwargs)\n"
               "ingest.load_image = load_image\n"
               "from simsearch.cli import main\n"
               "main(prog_name='simsearch')\n")


def test_a_second_writer_is_refused_and_readers_see_committed_states(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    write_pictures(photos, 12, seed=70)
    index_dir = tmp_path / "idx"
    assert _invoke(*_index_args(photos, index_dir, tiny_model)).exit_code == 0
    first = _state(index_dir)
    write_pictures(photos / "more", 32, seed=71)
    for i in range(3):
        (photos / f"img{i:03d}.jpg").unlink()
    known = set(first) | {str(p) for p in (photos / "more").iterdir()}

    # an ingest slowed down in its decoding (0.1 s a picture: readers on a loaded machine still
    # see three commits), committing every 4 pictures
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_INDEX, "0.1",
                               *_index_args(photos, index_dir, tiny_model, "--workers", "1")],
                              env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (index_dir / "lock").read_text().strip() != str(writer.pid):
            assert writer.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        second = subprocess.run(cli(*_index_args(photos, index_dir, tiny_model)), env=child_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert second.stderr.startswith("Error: ") and "Traceback" not in second.stderr
        assert f"being written by another simsearch process (pid {writer.pid})" in second.stderr

        counts = []
        query = np.stack(list(first.values())[:4])
        runner = CliRunner()
        while writer.poll() is None:
            assert time.monotonic() < deadline
            index = open_index(index_dir)
            counts.append(index.count())
            for matches in index.search_vectors(query, k=5):
                assert {m.path for m in matches} <= known
            groups = index.duplicates(threshold=0.5).groups
            assert {f for g in groups for f in g.files} <= known
            if len(counts) % 5 == 1:
                result = runner.invoke(main, ["query", str(photos / "img005.jpg"), "-k", "3",
                                              "--json", "--index", str(index_dir)])
                assert result.exit_code == 0, result.output
                assert json.loads(result.stdout)["results"][0]["path"] == str(photos / "img005.jpg")
                result = runner.invoke(main, ["dedupe", "--json", "--index", str(index_dir)])
                assert result.exit_code == 0, result.output
    finally:
        if writer.poll() is None:
            writer.kill()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode(errors="replace")
    assert len(set(counts)) >= 3, counts  # the readers saw the ingest progress, commit by commit
    assert index_dir.joinpath("catalog.sqlite").exists()
    assert check_index(index_dir).problems == []
    assert open_index(index_dir).count() == 12 - 3 + 32


# -- failed writes -----------------------------------------------------------------------------
@pytest.mark.parametrize("code,target", [(errno.ENOSPC, "vectors.faiss"),
                                         (errno.EROFS, "vectors.faiss"),
                                         (errno.EACCES, "manifest.json"),
                                         (errno.ENOSPC, "manifest.json")])
def test_a_failed_write_keeps_the_last_committed_state(tmp_path, tiny_model, photos, monkeypatch,
                                                        code, target):
    index_dir = tmp_path / "idx"
    assert _invoke(*_index_args(photos, index_dir, tiny_model)).exit_code == 0
    before = _files(index_dir)
    write_pictures(photos / "more", 5, seed=80)
    replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == target:
            raise OSError(code, os.strerror(code), os.fspath(dst))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    result = _invoke(*_index_args(photos, index_dir, tiny_model))
    monkeypatch.setattr(os, "replace", replace)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith(f"Error: {index_dir}: cannot write the index "
                                    f"({os.strerror(code)})"), result.stderr
    assert "Traceback" not in result.output
    assert not list(index_dir.glob("*.tmp"))
    after = _files(index_dir)
    assert after["manifest.json"] == before["manifest.json"]
    if target == "vectors.faiss":
        assert after["vectors.faiss"] == before["vectors.faiss"]
    # the catalog committed the new pictures; the derived files are only behind, and rebuilt
    problems = check_index(index_dir).problems
    assert problems and all("stale" in p or "vectors.faiss holds" in p for p in problems), problems
    match = open_index(index_dir).search([photos / "more" / "img002.jpg"], k=1)[0].matches[0]
    assert match.path == str(photos / "more" / "img002.jpg")
    assert _invoke(*_index_args(photos, index_dir, tiny_model)).exit_code == 0
    assert check_index(index_dir).problems == [] and open_index(index_dir).count() == 13


def test_a_full_disk_during_a_catalog_commit(tmp_path, tiny_model, photos, monkeypatch):
    index_dir = tmp_path / "idx"
    assert _invoke(*_index_args(photos, index_dir, tiny_model)).exit_code == 0
    before = _files(index_dir)
    write_pictures(photos / "more", 40, seed=81)
    connect = sqlite3.connect

    def small_disk(database, *args, **kwargs):  # the catalog file may not grow by a page
        db = connect(database, *args, **kwargs)
        if "mode=ro" not in str(database):
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return db

    monkeypatch.setattr(sqlite3, "connect", small_disk)
    result = _invoke(*_index_args(photos, index_dir, tiny_model))
    monkeypatch.setattr(sqlite3, "connect", connect)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "cannot write the catalog (database or disk is full)" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert _files(index_dir) == before
    assert all("stale" in p or "vectors.faiss holds" in p for p in check_index(index_dir).problems)
    committed = open_index(index_dir).count()
    assert 8 <= committed < 48
    assert _invoke(*_index_args(photos, index_dir, tiny_model)).exit_code == 0
    assert check_index(index_dir).problems == [] and open_index(index_dir).count() == 48


def test_a_failed_repair_is_a_message(tmp_path, tiny_model, photos, monkeypatch):
    index_dir = tmp_path / "idx"
    assert _invoke(*_index_args(photos, index_dir, tiny_model)).exit_code == 0
    (index_dir / "vectors.faiss").write_bytes(b"junk")
    replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(dst))

    monkeypatch.setattr(os, "replace", failing_replace)
    result = _invoke("check", "--repair", "--index", index_dir)
    monkeypatch.setattr(os, "replace", replace)
    assert result.exit_code == 1 and "No space left on device" in result.stderr, result.output
    assert "Traceback" not in result.output
    assert _invoke("check", "--repair", "--index", index_dir).exit_code == 0


def test_an_index_folder_that_cannot_be_made(tmp_path, tiny_model, photos):
    (tmp_path / "file").write_text("not a folder")
    result = _invoke(*_index_args(photos, tmp_path / "file" / "idx", tiny_model))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: {tmp_path / 'file' / 'idx'}: cannot write the index "
                                    f"(Not a directory)"), result.stderr


@pytest.mark.skipif(PERMISSIONS_IGNORED, reason="file modes are not enforced (root)")
def test_a_read_only_index_folder(tmp_path, tiny_model, photos):
    index_dir = tmp_path / "idx"
    assert _invoke(*_index_args(photos, index_dir, tiny_model)).exit_code == 0
    before = _files(index_dir)
    write_pictures(photos / "more", 3, seed=82)
    modes = {p: p.stat().st_mode for p in [index_dir, *index_dir.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        result = _invoke(*_index_args(photos, index_dir, tiny_model))
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
        result = _invoke("query", photos / "img001.jpg", "-k", "1", "--index", index_dir)
        assert result.exit_code == 0, result.output  # a read-only index still answers
        index_dir.chmod(0o755)  # as if copied to read-only media without SQLite's side files
        for side in index_dir.glob("catalog.sqlite-*"):
            side.unlink()
        index_dir.chmod(0o555)
        result = _invoke("query", photos / "img001.jpg", "-k", "1", "--index", index_dir)
        assert result.exit_code == 0, result.output
        assert _invoke("dedupe", "--index", index_dir).exit_code == 0
    finally:
        for p, mode in modes.items():
            if p.exists():
                p.chmod(mode)
    assert _files(index_dir) == before
