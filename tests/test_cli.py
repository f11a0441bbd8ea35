import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import write_pictures
from simsearch.cli import main

COMMANDS = ["index", "query", "dedupe", "export"]


def _run(args, env=None):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_index_query_dedupe_export_json(tmp_path, tiny_model, photos):
    shutil.copy(photos / "img000.jpg", photos / "copy.jpg")
    Image.open(photos / "img001.jpg").resize((100, 75)).save(photos / "small.png")
    env = {"SIMSEARCH_INDEX": str(tmp_path / "idx")}
    model = str(tiny_model / "model.onnx")
    result = _run(["index", str(photos), "--model", model, "--quiet", "--json"], env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 10

    result = _run(["query", str(photos / "img001.jpg"), str(photos / "img002.jpg"), "-k", "3",
                   "--json"], env)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == [str(photos / "img001.jpg"), str(photos / "img002.jpg")]
    first = lines[0]["results"]
    assert len(first) == 3 and first[0]["path"] == str(photos / "img001.jpg")
    assert {r["path"] for r in first[:2]} == {str(photos / "img001.jpg"), str(photos / "small.png")}

    result = _run(["dedupe", "--json", "--quiet"], env)
    data = json.loads(result.stdout)
    assert data["threshold"] == 0.95
    kinds = {(g["kind"], tuple(sorted(os.path.basename(f) for f in g["files"]))) for g in data["groups"]}
    assert ("exact", ("copy.jpg", "img000.jpg")) in kinds
    assert ("near", ("img001.jpg", "small.png")) in kinds

    result = _run(["export", "--out", str(tmp_path / "v.npz")], env)
    assert result.exit_code == 0 and (tmp_path / "v.npz").is_file()


def test_readable_output_and_errors(tmp_path, tiny_model, photos):
    idx = str(tmp_path / "idx")
    (photos / "bad.jpg").write_bytes(b"not an image")
    result = _run(["index", str(photos), "--index", idx, "--model", str(tiny_model / "model.onnx")])
    assert result.exit_code == 0
    assert "added 8" in result.stdout and "skipped 1" in result.stdout
    assert "bad.jpg" in result.stderr
    result = _run(["query", str(photos / "img003.jpg"), "--index", idx, "-k", "2"])
    assert result.exit_code == 0 and "1.0000" in result.stdout
    result = _run(["query", str(photos / "bad.jpg"), "--index", idx])
    assert result.exit_code == 1 and "bad.jpg" in result.stderr
    result = _run(["dedupe", "--index", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no index at" in result.stderr
    result = _run(["query", "--index", idx, "-k", "0", str(photos / "img003.jpg")])
    assert result.exit_code == 2


def test_bad_arguments_are_refused_with_the_reason(tmp_path, tiny_model, photos):
    idx = tmp_path / "idx"
    model = str(tiny_model / "model.onnx")
    result = _run(["index", str(photos), str(tmp_path / "nosuchdir"), "--index", str(idx),
                   "--model", model])
    assert result.exit_code == 2
    assert "nosuchdir: no such file or folder; nothing was indexed" in result.stderr
    assert not idx.exists()  # refused before anything was created
    (tmp_path / "drive").symlink_to(tmp_path / "unmounted")
    result = _run(["index", str(tmp_path / "drive"), "--index", str(idx), "--model", model])
    assert result.exit_code == 2 and "drive: broken symbolic link (to " in result.stderr
    assert not idx.exists()
    assert _run(["index", str(photos), "--index", str(idx), "--model", model, "-q"]).exit_code == 0
    for value in ("nan", "2", "abc"):
        result = _run(["dedupe", "--index", str(idx), "--threshold", value])
        assert result.exit_code == 2 and "--threshold" in result.stderr, value


def test_query_json_has_a_line_for_each_query_failed_or_not(tmp_path, tiny_model, photos):
    idx = str(tmp_path / "idx")
    _run(["index", str(photos), "--index", idx, "--model", str(tiny_model / "model.onnx"), "-q"])
    missing = str(photos / "nosuch.jpg")
    result = _run(["query", missing, str(photos / "img001.jpg"), "--index", idx, "--json"])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == [missing, str(photos / "img001.jpg")]
    assert "not found" in lines[0]["error"] and "results" not in lines[0]
    assert lines[1]["results"][0]["path"] == str(photos / "img001.jpg")


def test_an_unreadable_query_image_is_one_error_line_and_the_others_are_answered(
        tmp_path, tiny_model, photos, monkeypatch):
    """A hostile tester's case (session 32): one query file of mode 000 stopped the whole
    batch with a usage error (exit 2) before any image was looked at. It gets its own error
    line (exit 1), as a missing file does, and the readable image is answered."""
    idx = str(tmp_path / "idx")
    _run(["index", str(photos), "--index", idx, "--model", str(tiny_model / "model.onnx"), "-q"])
    locked = tmp_path / "locked.jpg"
    shutil.copy(photos / "img002.jpg", locked)
    if os.geteuid() != 0:
        locked.chmod(0)
        monkeypatch.setattr(os, "access", os.access)
    else:  # root reads any file: the check a command line makes is told it cannot
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if os.fspath(p) == str(
            locked) else real(p, mode, *a, **k))
    result = _run(["query", str(photos / "img001.jpg"), str(locked), "--index", idx, "--json"])
    assert result.exit_code in (0, 1), result.output  # never a usage error
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == [str(photos / "img001.jpg"), str(locked)]
    assert lines[0]["results"][0]["path"] == str(photos / "img001.jpg")
    if os.geteuid() != 0:
        assert result.exit_code == 1 and "permission denied" in lines[1]["error"]


def test_an_emptied_folder_keeps_its_images_until_its_parent_is_indexed(tmp_path, tiny_model, photos):
    idx = str(tmp_path / "idx")
    mount = tmp_path / "mnt" / "drive"
    shutil.copytree(photos, mount)
    model = str(tiny_model / "model.onnx")
    assert _run(["index", str(mount), "--index", idx, "--model", model, "-q"]).exit_code == 0
    moved_away = tmp_path / "elsewhere"
    mount.rename(moved_away)
    mount.mkdir()  # an empty mount point, as an unmounted drive leaves
    result = _run(["index", str(mount), "--index", idx, "-q", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["removed"] == 0
    n = len(list(photos.iterdir()))
    assert f"kept {n} indexed images under" in result.stderr and "index its parent" in result.stderr
    result = _run(["index", str(tmp_path / "mnt"), "--index", idx, "-q", "--json"])
    assert json.loads(result.stdout)["removed"] == n


def test_query_on_an_empty_index_says_so(tmp_path, tiny_model, photos):
    idx = str(tmp_path / "idx")
    empty = tmp_path / "empty"
    empty.mkdir()
    _run(["index", str(empty), "--index", idx, "--model", str(tiny_model / "model.onnx"), "-q"])
    result = _run(["query", str(photos / "img001.jpg"), "--index", idx])
    assert result.exit_code == 0 and f"holds no images yet; add some with: simsearch index " \
        f"PHOTOS --index {idx}" in result.stderr


def test_every_command_has_help_and_is_in_the_readme():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    for command in main.commands:
        result = _run([command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout
        assert f"simsearch {command}" in readme, command


def test_real_subprocess_and_light_help(tmp_path, tiny_model, photos):
    env = {**os.environ, "SIMSEARCH_INDEX": str(tmp_path / "idx")}
    cmd = [sys.executable, "-m", "simsearch.cli"]
    done = subprocess.run(cmd + ["index", str(photos), "--model", str(tiny_model / "model.onnx"), "-q"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(cmd + ["query", str(photos / "img004.jpg"), "-k", "1", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["path"] == str(photos / "img004.jpg")
    probe = ("import sys; sys.argv = ['simsearch', '--help']\n"
             "from simsearch.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('torch', 'torchvision', 'faiss', 'onnxruntime', 'numpy', 'PIL') "
             "if m in sys.modules]\n"
             "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_train_end_to_end_then_index_with_the_result(tmp_path, photos):
    pytest.importorskip("torch")
    write_pictures(photos / "more", 8, seed=21)
    out = tmp_path / "run"
    result = _run(["train", "--unlabeled", str(photos), "--out", str(out), "--epochs", "1",
                   "--steps-per-epoch", "2", "--batch-size", "4", "--input-size", "48",
                   "--dim", "16", "--workers", "1", "--memory", "16", "--negative-ceiling", "0.8",
                   "--positive-floor", "0.9", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "model.onnx").is_file()
    made = json.loads((out / "train_config.json").read_text())
    assert made["negative_ceiling"] == 0.8 and made["positive_floor"] == 0.9
    result = _run(["index", str(photos), "--index", str(tmp_path / "idx"), "--model", str(out),
                   "-q", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 16


def test_train_needs_exactly_one_kind_of_data(tmp_path, photos):
    result = _run(["train", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "exactly one of" in result.output
    result = _run(["train", "--unlabeled", str(photos), "--negative-ceiling", "1"])
    assert result.exit_code == 2 and "--negative-ceiling" in result.output
    pytest.importorskip("torch")
    result = _run(["train", "--unlabeled", str(photos), "--out", str(tmp_path / "run"),
                   "--ceiling-weight", "2"])
    assert result.exit_code != 0 and "negative_ceiling" in result.output
    result = _run(["train", "--unlabeled", str(photos), "--out", str(tmp_path / "run"),
                   "--floor-weight", "2"])
    assert result.exit_code != 0 and "positive_floor" in result.output
    assert not (tmp_path / "run").exists()


def test_device_option(tmp_path, tiny_model, photos):
    import onnxruntime as ort

    from simsearch.models import resolve_device
    from simsearch.errors import ModelError

    env = {"SIMSEARCH_INDEX": str(tmp_path / "idx")}
    model = str(tiny_model / "model.onnx")
    result = _run(["index", str(photos), "--model", model, "-q", "--device", "cpu"], env)
    assert result.exit_code == 0, result.output
    assert resolve_device("cpu") == "cpu"
    from simsearch.index import open_index
    index = open_index(tmp_path / "idx", device="cpu")
    assert index.embedder.session.get_providers() == ["CPUExecutionProvider"]
    result = _run(["query", str(photos / "img000.jpg"), "--device", "tpu"], env)
    assert result.exit_code == 1 and "device must be auto, cpu, cuda or cuda:N" in result.output
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert resolve_device("auto") == "cuda:0"
        return
    assert resolve_device("auto") == "cpu"
    result = _run(["index", str(photos), "-q", "--device", "cuda:1"], env)
    assert result.exit_code == 1
    assert "no CUDA support" in result.output and "--device cpu" in result.output
    try:
        resolve_device("cuda")
    except ModelError as e:
        assert "onnxruntime-gpu" in str(e)
    else:
        raise AssertionError("cuda without CUDA support must be refused")


def test_the_readme_and_docs_links_lead_somewhere():
    """Every relative link of the README and docs/ names a file that exists, and every link to a
    heading names one the page it points at has (GitHub's anchors: lower case, spaces to
    dashes)."""
    root = os.path.join(os.path.dirname(__file__), "..")
    pages = ["README.md"] + [os.path.join("docs", n) for n in sorted(os.listdir(os.path.join(root, "docs")))
                             if n.endswith(".md")]
    assert len(pages) >= 4

    def anchors(page: str) -> set[str]:
        text = open(os.path.join(root, page)).read()
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}

    for page in pages:
        text = open(os.path.join(root, page)).read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            into = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            assert os.path.exists(os.path.join(root, into)), (page, target)
            if anchor:
                assert into.endswith(".md") and anchor in anchors(into), (page, target)
