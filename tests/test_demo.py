"""The demo folder writer: it parses its arguments and never overwrites a file unless asked."""
from __future__ import annotations

import os
import subprocess
import sys

from simsearch.demo import demo_files, main


def test_help_writes_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "simsearch.demo", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0 and "FOLDER" in done.stdout, done.stderr
    assert os.listdir(tmp_path) == []


def test_writes_the_tour_then_refuses_to_overwrite_it(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main([str(folder)]) == 0
    expected = demo_files(folder)
    assert len(expected) == 26 and all(p.is_file() for p in expected)
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == sorted(expected)

    kept = expected[3]
    kept.write_bytes(b"mine")
    others = {p: p.stat().st_mtime_ns for p in expected}
    capsys.readouterr()
    assert main([str(folder)]) == 1
    err = capsys.readouterr().err
    assert "already exist" in err and "nothing was written" in err and "--overwrite" in err
    assert kept.read_bytes() == b"mine"
    assert {p: p.stat().st_mtime_ns for p in expected} == others

    assert main([str(folder), "--overwrite"]) == 0
    assert kept.read_bytes()[:2] == b"\xff\xd8"  # a JPEG again


def test_one_existing_file_is_named(tmp_path, capsys):
    folder = tmp_path / "demo"
    target = demo_files(folder)[1]  # the first edited copy, in copies/
    target.parent.mkdir(parents=True)
    target.write_bytes(b"mine")
    assert main([str(folder)]) == 1
    assert f"{target} already exists" in capsys.readouterr().err
    assert [p for p in folder.rglob("*") if p.is_file()] == [target]
