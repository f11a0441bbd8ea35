"""The model resolver (`simsearch.models`) and every model error as a message (issue 17, point 6).

The metadata reader is checked against `onnx.load`; broken models are made here: weights of the
wrong shape, an ONNX graph whose output size differs from its metadata, graphs (built with
`onnx.helper`) that output NaN, non-unit vectors, or NaN for some pictures only.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import simsearch.models as models
from conftest import write_pictures
from simsearch.cli import main
from simsearch.config import ModelConfig
from simsearch.errors import ModelError
from simsearch.files import sha256
from simsearch.index import open_index
from simsearch.models import read_metadata, resolve_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [models.DEFAULT_MODEL_DIR / "default.onnx", models.DEFAULT_MODEL_DIR / "default.int8.onnx",
           models.DEFAULT_MODEL_DIR / "default.int8-avx2.onnx"]
# CPUs as /proc/cpuinfo's flags describe them
VNNI = frozenset({"sse2", "avx2", "avx512f", "avx512_vnni"})
AVX2 = frozenset({"sse2", "avx2", "fma"})
NOT_X86 = frozenset()
SMALL = ModelConfig(dim=32, input_size=32, pooling="avg")


@contextmanager
def time_limit(seconds: int):
    """A hang fails the test instead of blocking the run."""
    def expire(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _onnx_metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _graph_model(path: Path, tail: str = "normalise", config: ModelConfig = SMALL,
                 model_id: str = "made-in-a-test", extra_meta: dict | None = None,
                 doc: str = "") -> Path:
    """A small simsearch-shaped ONNX model: uint8 [n, s, s, 3] -> flatten -> random projection ->
    `tail`: "normalise" (unit vectors, NaN for a black picture: no epsilon), "nan" (NaN for
    every picture) or "raw" (the projection itself: not unit length)."""
    s, dim = config.input_size, config.dim
    weight = np.random.default_rng(0).normal(size=(s * s * 3, dim)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["x", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["v"])]
    inits = [numpy_helper.from_array(weight, "w"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]
    if tail == "normalise":
        nodes += [helper.make_node("ReduceSumSquare", ["v"], ["ss"], axes=[1], keepdims=1),
                  helper.make_node("Sqrt", ["ss"], ["n"]),
                  helper.make_node("Div", ["v", "n"], ["vectors"])]
    elif tail == "nan":
        inits.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
        nodes.append(helper.make_node("Mul", ["v", "nan"], ["vectors"]))
    else:
        nodes.append(helper.make_node("Identity", ["v"], ["vectors"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", s, s, 3])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", dim])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string=doc)
    proto.ir_version = 8
    meta = {models.META_CONFIG: config.to_json(), models.META_MODEL_ID: model_id,
            models.META_THRESHOLD: "0.9000", **(extra_meta or {})}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path


def _index(*args):
    return CliRunner().invoke(main, [*args, "-q"])


def _nothing_committed(index_dir: Path) -> None:
    assert not (index_dir / "manifest.json").exists()
    if (index_dir / "catalog.sqlite").exists():
        from simsearch.catalog import Catalog
        catalog = Catalog(index_dir / "catalog.sqlite", readonly=True)
        try:
            assert catalog.count() == 0
        finally:
            catalog.close()


# -- the metadata reader ----------------------------------------------------------------------
def test_metadata_read_as_onnx_reads_it(tiny_model, tmp_path):
    files = [tiny_model / "model.onnx", *[p for p in SHIPPED if p.is_file()]]
    files.append(_graph_model(tmp_path / "odd.onnx", doc="a doc string " * 1000, extra_meta={
        "ünïcode": "välue ✓", "empty": "", "long": "x" * 100_000}))
    for path in files:
        meta = read_metadata(path)
        assert meta == _onnx_metadata(path), path
        assert models.META_MODEL_ID in meta and models.META_CONFIG in meta
    assert json.loads(read_metadata(tiny_model / "model.onnx")[models.META_CONFIG])["dim"] == 32


def test_metadata_reader_skips_the_graph_unread(tiny_model, monkeypatch):
    """The graph (tens of MB) is skipped by its length: only a few hundred bytes are read."""
    read = []
    real = models._Reader.bytes

    def counting(self, n):
        read.append(n)
        return real(self, n)
    monkeypatch.setattr(models._Reader, "bytes", counting)
    path = tiny_model / "model.onnx"
    assert path.stat().st_size > 10_000_000
    read_metadata(path)
    assert sum(read) < 2000


def test_truncated_and_damaged_models_are_errors_that_name_the_file(tmp_path):
    good = _graph_model(tmp_path / "m.onnx").read_bytes()
    bad = tmp_path / "bad.onnx"
    rng = np.random.default_rng(1)
    cuts = sorted(set(range(0, 64)) | set(range(len(good) - 600, len(good)))
                  | set(rng.integers(0, len(good), 200).tolist()))
    cases = [good[:n] for n in cuts]
    for _ in range(300):  # a few bytes changed at random
        data = bytearray(good)
        for at in rng.integers(0, len(good), 3):
            data[at] = rng.integers(0, 256)
        cases.append(bytes(data))
    cases += [b"", b"garbage", b"\x00" * 4096, b"\xff" * 20, b"\x08\x00" * 120_000,
              b"\x3a\xff\xff\xff\xff\x0f", b"\x72\x05\x0a\x03abc"]  # a length past the end
    with time_limit(60):
        for data in cases:
            bad.write_bytes(data)
            try:
                meta = read_metadata(bad)
            except ModelError as e:
                assert str(bad) in str(e)
                continue
            assert isinstance(meta, dict)  # a cut between two fields leaves a shorter model
            try:
                ref = resolve_model(bad)
            except ModelError as e:
                assert str(bad) in str(e)
            else:
                assert ref.onnx_path == bad
    # a cut anywhere inside the graph or the metadata is refused
    for n in (len(good) // 2, len(good) - 1):
        bad.write_bytes(good[:n])
        with pytest.raises(ModelError, match="bad.onnx: not an ONNX model .*truncated"):
            resolve_model(bad)


def test_a_truncated_shipped_sized_model_is_refused_fast(tiny_model, tmp_path):
    cut = tmp_path / "cut.onnx"
    with open(tiny_model / "model.onnx", "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(os.path.getsize(tiny_model / "model.onnx") - 300))
    with time_limit(10), pytest.raises(ModelError, match="cut.onnx"):
        resolve_model(cut)


def test_pipes_folders_and_odd_names_are_not_models(tmp_path):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "model.pt").write_bytes(b"x")
    with time_limit(10):
        with pytest.raises(ModelError, match="pipe.onnx: not a regular file"):
            read_metadata(fifo)
        with pytest.raises(ModelError, match="pipe.onnx"):
            resolve_model(fifo)
        with pytest.raises(ModelError, match="folder.onnx"):
            resolve_model(tmp_path / "folder.onnx")
        with pytest.raises(ModelError, match="model.pt: a model is a .onnx or .safetensors"):
            resolve_model(tmp_path / "model.pt")
        with pytest.raises(ModelError, match="name the fp32 model"):
            resolve_model(_graph_model(tmp_path / "x.int8.onnx"))


def test_onnx_without_simsearch_metadata_is_refused(tmp_path):
    path = _graph_model(tmp_path / "plain.onnx")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    with pytest.raises(ModelError, match="plain.onnx: ONNX file was not exported by simsearch"):
        resolve_model(path)
    _graph_model(path, extra_meta={models.META_THRESHOLD: "high"})
    with pytest.raises(ModelError, match="plain.onnx: malformed dedupe threshold"):
        resolve_model(path)


# -- lookup, default, precision ----------------------------------------------------------------
def test_resolve_reads_metadata_only_and_never_imports_torch_or_onnxruntime(tiny_model):
    code = ("import sys; from simsearch.models import resolve_model; "
            f"ref = resolve_model({str(tiny_model)!r}); "
            "print(ref.config.dim, ref.model_id, ref.dedupe_threshold, "
            "'torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    assert out == ["32", sha256(tiny_model / "model.safetensors"), "0.95", "False", "False"]


def test_the_runtime_modules_import_no_torch_and_no_model_code():
    for name in ("embedder.py", "models/__init__.py"):
        tree = ast.parse((ROOT / "simsearch" / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        for banned in ("torch", "torchvision", "onnx", "simsearch.export", "simsearch.model"):
            assert banned not in imported, (name, banned)


def test_a_missing_default_model_is_an_error_not_a_random_network(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "DEFAULT_MODEL_DIR", tmp_path / "empty")
    for spec in (None, "default"):
        with pytest.raises(ModelError) as e:
            resolve_model(spec)
        message = str(e.value)
        assert str(tmp_path / "empty" / "default.onnx") in message
        assert "reinstall simsearch" in message and "--model PATH" in message
    assert not hasattr(__import__("simsearch.embedder").embedder, "_random_default")


def test_the_shipped_default_model_resolves(monkeypatch):
    if not SHIPPED[0].is_file():
        pytest.skip("no shipped default model")
    ref = resolve_model(None, precision="fp32")
    assert ref.name == "default" and ref.onnx_path == SHIPPED[0] and ref.config.dim == 256
    assert ref.model_id == read_metadata(SHIPPED[0])[models.META_MODEL_ID]
    calibration = json.loads(models.calibration_path(SHIPPED[0]).read_text())
    assert calibration["model_id"] == ref.model_id  # the recalibrated threshold is this model's
    assert ref.dedupe_threshold == pytest.approx(calibration["dedupe_threshold"])
    assert float(read_metadata(SHIPPED[0])[models.META_THRESHOLD]) == pytest.approx(0.85)  # ship.py's
    assert ref.background_file == models.DEFAULT_MODEL_DIR / "default.background.npz"
    for flags, variant in ((VNNI, SHIPPED[1]), (AVX2, SHIPPED[2])):
        monkeypatch.setattr(models, "_cpu_flags", lambda: flags)
        assert variant.is_file(), f"{variant} is shipped"
        int8 = resolve_model("default", precision="int8")
        assert int8.onnx_path == variant and int8.model_id == ref.model_id
        assert resolve_model("default", precision="auto").onnx_path == variant
        assert resolve_model("default", precision="auto", device="cuda:0").precision == "fp32"
    monkeypatch.setattr(models, "_cpu_flags", lambda: NOT_X86)
    monkeypatch.setattr(models.platform, "machine", lambda: "aarch64")
    assert resolve_model("default", precision="auto").precision == "fp32"


def test_each_cpu_gets_the_int8_variant_it_runs_well(tmp_path, monkeypatch):
    """VNNI: NAME.int8.onnx; an x86 CPU without VNNI: NAME.int8-avx2.onnx (7-bit weights),
    never NAME.int8.onnx, whose sums saturate there; with auto, fp32 where the CPU's variant
    is missing, on a GPU, and on CPUs not measured (no AVX2, another architecture)."""
    _graph_model(tmp_path / "m.onnx", model_id="one")
    plain, seven_bit = models.int8_paths(tmp_path / "m.onnx")
    assert (plain.name, seven_bit.name) == ("m.int8.onnx", "m.int8-avx2.onnx")
    assert models.int8_paths(seven_bit) == (plain, seven_bit)
    _graph_model(plain, model_id="one")

    def chosen(flags, precision, machine="x86_64"):
        monkeypatch.setattr(models, "_cpu_flags", lambda: flags)
        monkeypatch.setattr(models.platform, "machine", lambda: machine)
        return resolve_model(tmp_path / "m.onnx", precision=precision).onnx_path.name

    assert chosen(VNNI, "auto") == chosen(VNNI, "int8") == "m.int8.onnx"
    assert chosen(AVX2, "auto") == chosen(NOT_X86, "auto", "aarch64") == "m.onnx"
    assert chosen(NOT_X86, "int8", "aarch64") == "m.int8.onnx"
    with pytest.raises(ModelError, match="needs a CPU with VNNI.*m.int8-avx2.onnx.*is not "
                                         "beside it.*make it with"):
        chosen(AVX2, "int8")
    # an x86 CPU whose flags cannot be read (macOS, Windows) may saturate: refused too
    with pytest.raises(ModelError, match="needs a CPU with VNNI"):
        chosen(NOT_X86, "int8", "AMD64")
    _graph_model(seven_bit, model_id="one")
    assert chosen(AVX2, "auto") == chosen(AVX2, "int8") == "m.int8-avx2.onnx"
    # ... where the 7-bit file, right on every CPU, is taken when int8 is asked for; auto
    # stays fp32 there (not measured)
    assert chosen(NOT_X86, "int8", "AMD64") == "m.int8-avx2.onnx"
    assert chosen(NOT_X86, "auto", "AMD64") == "m.onnx"
    assert chosen(frozenset({"sse2"}), "auto") == "m.onnx"  # no AVX2: not measured
    assert chosen(frozenset({"sse2"}), "int8") == "m.int8-avx2.onnx"
    assert chosen(VNNI, "auto") == "m.int8.onnx"
    assert chosen(AVX2, "fp32") == "m.onnx"
    # a variant's file is never the model to name; each has the model's background beside it
    with pytest.raises(ModelError, match="name the fp32 model"):
        resolve_model(seven_bit)
    assert models.background_path(seven_bit) == tmp_path / "m.background.npz"
    # a CPU with VNNI where only the 7-bit file is there runs it (it does not saturate)
    plain.unlink()
    assert chosen(VNNI, "auto") == chosen(VNNI, "int8") == "m.int8-avx2.onnx"
    _graph_model(seven_bit, model_id="two")
    with pytest.raises(ModelError, match="m.int8-avx2.onnx is not a variant of"):
        chosen(AVX2, "int8")


def test_a_worker_runs_the_int8_file_its_own_cpu_runs_correctly(tmp_path, monkeypatch):
    """A cluster's head picks for its CPU; each worker (and a GPU) re-picks for its own:
    the head's 8-bit file on a worker without VNNI would give drifted vectors."""
    _graph_model(tmp_path / "m.onnx", model_id="one")
    plain, seven_bit = models.int8_paths(tmp_path / "m.onnx")
    _graph_model(plain, model_id="one")
    _graph_model(seven_bit, model_id="one")
    monkeypatch.setattr(models, "_cpu_flags", lambda: VNNI)
    head = resolve_model(tmp_path / "m.onnx", precision="int8")
    assert head.onnx_path == plain
    assert models.for_this_cpu(head) == head
    assert models.for_this_cpu(head, "cuda:0").onnx_path == tmp_path / "m.onnx"
    monkeypatch.setattr(models, "_cpu_flags", lambda: AVX2)
    worker = models.for_this_cpu(head)
    assert (worker.onnx_path, worker.precision, worker.model_id) == (seven_bit, "int8", "one")
    seven_bit.unlink()
    assert models.for_this_cpu(head).precision == "fp32"  # no file it runs correctly: fp32
    fp32 = resolve_model(tmp_path / "m.onnx", precision="fp32")
    assert models.for_this_cpu(fp32) == fp32


def test_cpu_flags_are_read_from_proc_cpuinfo_text():
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma\n\n" \
          "processor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n"
    assert models._parse_flags(x86) == {"fpu", "sse2", "avx2", "fma"}
    arm = "processor\t: 0\nFeatures\t: fp asimd aes sha2 asimddp\nCPU implementer\t: 0x41\n"
    assert models._parse_flags(arm) == frozenset()


def test_an_int8_file_of_another_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_cpu_flags", lambda: VNNI)
    _graph_model(tmp_path / "m.onnx", model_id="one")
    _graph_model(tmp_path / "m.int8.onnx", model_id="two")
    assert resolve_model(tmp_path / "m.onnx", precision="fp32").model_id == "one"
    with pytest.raises(ModelError, match="m.int8.onnx is not a variant of"):
        resolve_model(tmp_path / "m.onnx", precision="int8")


def test_a_folder_and_a_safetensors_file_find_their_onnx_export(tiny_model, tmp_path):
    model_id = sha256(tiny_model / "model.safetensors")
    for spec in (tiny_model, tiny_model / "model.onnx", tiny_model / "model.safetensors"):
        ref = resolve_model(spec)
        assert ref.onnx_path == tiny_model / "model.onnx" and ref.model_id == model_id
    # weights alone: the export is found in the cache, keyed by their SHA-256
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tiny_model / "model.safetensors", alone / "w.safetensors")
    with pytest.raises(ModelError, match="w.safetensors: no ONNX export .*simsearch convert"):
        resolve_model(alone / "w.safetensors")
    cached = models.cache_dir() / "onnx" / f"{model_id}.onnx"
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model / "model.onnx", cached)
    assert resolve_model(alone / "w.safetensors").onnx_path == cached
    cached.unlink()
    # an .onnx beside the weights that is another model's export is not taken for theirs
    _graph_model(alone / "w.onnx", model_id="someone else")
    with pytest.raises(ModelError, match="no ONNX export"):
        resolve_model(alone / "w.safetensors")


def test_convert_writes_beside_the_weights_and_never_overwrites(tiny_model, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(tiny_model / "model.safetensors", work / "model.safetensors")
    runner = CliRunner()
    result = runner.invoke(main, ["convert", str(work / "model.safetensors")])
    assert result.exit_code == 0, result.output
    assert str(work / "model.onnx") in result.stdout
    ref = resolve_model(work)
    assert ref.model_id == sha256(work / "model.safetensors")
    assert read_metadata(work / "model.onnx") == _onnx_metadata(work / "model.onnx")
    again = runner.invoke(main, ["convert", str(work / "model.safetensors")])  # already there
    assert again.exit_code == 0, again.output
    other = _graph_model(tmp_path / "other.onnx", model_id="someone else")
    before = other.read_bytes()
    result = runner.invoke(main, ["convert", str(work / "model.safetensors"), "--out", str(other)])
    assert result.exit_code == 1 and "nothing was overwritten" in result.stderr
    assert other.read_bytes() == before


def test_convert_without_torch_says_what_to_install(tiny_model, tmp_path):
    code = ("import sys; sys.modules['torch'] = None; from simsearch.cli import main; "
            f"main(['convert', {str(tiny_model / 'model.safetensors')!r}, '--out', "
            f"{str(tmp_path / 'x.onnx')!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert "pip install 'simsearch[train]'" in result.stderr and "Traceback" not in result.stderr


# -- dedupe and check open no session ---------------------------------------------------------
def test_dedupe_and_check_open_no_session(tiny_model, tmp_path, photos):
    index_dir = tmp_path / "idx"
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(index_dir),
                                       "--model", str(tiny_model), "-q"])
    assert result.exit_code == 0, result.output
    code = ("import sys\n"
            "from simsearch.index import open_index\n"
            "from simsearch.integrity import check_index\n"
            f"index = open_index({str(index_dir)!r})\n"
            "report = index.duplicates()\n"
            "assert index.model.model_id and check_index(index.folder).ok\n"
            "print(report.threshold, 'onnxruntime' in sys.modules, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.95", "False", "False"]


def test_dedupe_without_the_model_says_how_to_go_on(tiny_model, tmp_path, photos, monkeypatch):
    model = tmp_path / "mine" / "m.onnx"
    model.parent.mkdir()
    shutil.copy(tiny_model / "model.onnx", model)
    index_dir = tmp_path / "idx"
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # a relative --model is recorded as an absolute path
    assert runner.invoke(main, ["index", str(photos), "--index", str(index_dir), "--model",
                                "mine/m.onnx", "-q"]).exit_code == 0
    monkeypatch.chdir(photos)
    assert open_index(index_dir).model.onnx_path == model
    moved = tmp_path / "moved.onnx"
    model.rename(moved)
    result = runner.invoke(main, ["query", str(photos / "img000.jpg"), "--index", str(index_dir)])
    assert result.exit_code == 1 and str(model) in result.stderr and "not there any more" in result.stderr
    result = runner.invoke(main, ["dedupe", "--index", str(index_dir)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr
    assert str(model) in message and "--model PATH" in message and "--threshold" in message
    with pytest.raises(ModelError, match="--threshold"):
        open_index(index_dir).duplicates()
    result = runner.invoke(main, ["dedupe", "--index", str(index_dir), "--threshold", "0.9", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threshold"] == 0.9
    result = runner.invoke(main, ["dedupe", "--index", str(index_dir), "--model", str(moved),
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threshold"] == 0.95


# -- issue 17, point 6: every model error a message -------------------------------------------
def test_17_6_safetensors_with_a_wrong_tensor_shape_is_a_message(tmp_path):
    from safetensors.torch import save_file

    from simsearch.model import create_model, load_model
    small = create_model(dataclasses.replace(SMALL, dim=16))
    tensors = {k: v.contiguous() for k, v in small.state_dict().items()}
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"simsearch_config": SMALL.to_json()})  # says dim 32
    with pytest.raises(ModelError, match=r"bad.safetensors: tensor proj\.(weight|bias) has shape \[16"):
        load_model(bad)
    result = CliRunner().invoke(main, ["convert", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(bad) in result.stderr and "tensor proj." in result.stderr
    assert not (tmp_path / "bad.onnx").exists()


def test_17_6_nan_weights_are_not_exported(tmp_path):
    import torch

    from simsearch.export import export_onnx
    from simsearch.model import create_model
    net = create_model(SMALL)
    with torch.no_grad():
        net.proj.weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        export_onnx(net, tmp_path / "nan.onnx", "nan-weights", half_weights=False)
    assert not list(tmp_path.iterdir())


def _mislabelled_export(tmp_path: Path, declared: bool) -> Path:
    """A dim-16 network exported with metadata claiming dim 32; with `declared` False the
    graph's output shape is left symbolic, so only running it tells."""
    from simsearch.export import export_onnx
    from simsearch.model import create_model
    net = create_model(dataclasses.replace(SMALL, dim=16))
    net.config = SMALL  # the metadata says 32
    path = export_onnx(net, tmp_path / "wrong_dim.onnx", "wrong-dim", half_weights=False)
    if not declared:
        proto = onnx.load(str(path))
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "width"
        onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("declared", [True, False])
def test_17_6_onnx_output_size_differs_from_its_metadata(tmp_path, photos, declared):
    bad = _mislabelled_export(tmp_path, declared)
    index_dir = tmp_path / "idx"
    result = _index("index", str(photos), "--index", str(index_dir), "--model", str(bad))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert str(bad) in result.stderr and "16" in result.stderr and "32" in result.stderr
    _nothing_committed(index_dir)
    from simsearch.embedder import Embedder
    with pytest.raises(ModelError, match="wrong_dim.onnx"):
        Embedder(resolve_model(bad)).verify()
    if declared:  # the graph's declared output shape is read when the session starts
        with pytest.raises(ModelError, match="wrong_dim.onnx: the network outputs vectors of shape"):
            Embedder(resolve_model(bad))


def test_17_6_a_failed_model_leaves_the_index_as_it_was(tmp_path, tiny_model, photos):
    """A fresh index refused, then built with a good model, is consistent; a rebuild with a
    broken model keeps the index it would have replaced."""
    bad = _mislabelled_export(tmp_path, declared=False)
    index_dir = tmp_path / "idx"
    runner = CliRunner()
    assert _index("index", str(photos), "--index", str(index_dir), "--model", str(bad)).exit_code == 1
    result = _index("index", str(photos), "--index", str(index_dir), "--model", str(tiny_model))
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["check", "--index", str(index_dir)]).exit_code == 0
    result = _index("index", str(photos), "--rebuild", "--index", str(index_dir), "--model",
                     str(bad))
    assert result.exit_code == 1 and str(bad) in result.stderr
    index = open_index(index_dir)
    assert index.count() == 8 and index.model.onnx_path == tiny_model / "model.onnx"
    result = runner.invoke(main, ["check", "--index", str(index_dir)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("tail, words", [("nan", "NaN or infinite"), ("raw", "not unit vectors")])
def test_17_6_onnx_that_outputs_nan_or_non_unit_vectors_is_refused(tmp_path, photos, tail, words):
    bad = _graph_model(tmp_path / f"{tail}.onnx", tail=tail)
    index_dir = tmp_path / "idx"
    result = _index("index", str(photos), "--index", str(index_dir), "--model", str(bad))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert str(bad) in result.stderr and words in result.stderr
    _nothing_committed(index_dir)
    result = CliRunner().invoke(main, ["query", str(photos / "img000.jpg"), "--index",
                                       str(index_dir), "--model", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_17_6_nan_for_some_pictures_only_is_refused_before_their_batch_is_stored(tmp_path):
    """The network passes its start-up check but gives NaN for a black picture: the run stops
    at that batch, naming the model, and nothing of that batch is stored."""
    model = _graph_model(tmp_path / "fragile.onnx")
    photos = tmp_path / "photos"
    write_pictures(photos, 6)
    index_dir = tmp_path / "idx"
    result = _index("index", str(photos), "--index", str(index_dir), "--model", str(model))
    assert result.exit_code == 0, result.output  # the network itself works
    Image.new("RGB", (80, 60)).save(photos / "zz_black.jpg")
    write_pictures(tmp_path / "more", 2, seed=9)
    for p in (tmp_path / "more").iterdir():
        shutil.move(p, photos / f"zz_{p.name}")
    result = _index("index", str(photos), "--index", str(index_dir))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(model) in result.stderr and "NaN" in result.stderr
    index = open_index(index_dir)
    assert index.count() == 6
    paths, vectors = index.vectors()
    assert not any("zz_" in p for p in paths) and np.isfinite(vectors).all()


def test_a_calibration_sidecar_of_the_same_model_overrides_the_metadata_threshold(tmp_path, tiny_model):
    """A recalibrated threshold ships as NAME.calibration.json (no rewrite of the ONNX files);
    a record left by another model is ignored, a malformed one is an error naming the file."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    ref = resolve_model(model / "model.onnx")
    assert ref.dedupe_threshold == pytest.approx(0.95)  # the fixture's metadata
    sidecar = model / "model.calibration.json"
    assert models.calibration_path(model / "model.onnx") == sidecar
    assert models.calibration_path(model / "model.int8.onnx") == sidecar
    sidecar.write_text(json.dumps({"model_id": ref.model_id, "dedupe_threshold": 0.81}))
    assert resolve_model(model / "model.onnx").dedupe_threshold == pytest.approx(0.81)
    assert resolve_model(model).dedupe_threshold == pytest.approx(0.81)  # the folder, too
    index = open_index(tmp_path / "idx", model=model, create=True)
    assert index.default_threshold() == pytest.approx(0.81)
    sidecar.write_text(json.dumps({"model_id": "another" + ref.model_id[7:], "dedupe_threshold": 0.5}))
    assert resolve_model(model / "model.onnx").dedupe_threshold == pytest.approx(0.95)
    for bad in ('{"model_id": "%s", "dedupe_threshold": "high"}' % ref.model_id,
                '{"model_id": "%s", "dedupe_threshold": 1.5}' % ref.model_id, "{not json"):
        sidecar.write_text(bad)
        with pytest.raises(ModelError, match="model.calibration.json"):
            resolve_model(model / "model.onnx")


def test_check_says_which_file_of_the_model_this_cpu_runs(tmp_path, monkeypatch, photos):
    """`simsearch check` names the index's model and the file a CPU here runs, and why."""
    _graph_model(tmp_path / "m.onnx", model_id="one")
    plain, seven_bit = models.int8_paths(tmp_path / "m.onnx")
    _graph_model(plain, model_id="one")
    _graph_model(seven_bit, model_id="one")
    index_dir = tmp_path / "idx"
    runner = CliRunner()
    made = runner.invoke(main, ["index", str(photos), "--index", str(index_dir), "--model",
                                str(tmp_path / "m.onnx"), "-q"])
    assert made.exit_code == 0, made.output
    for flags, file, why in ((VNNI, "m.int8.onnx", "this CPU has VNNI"),
                             (AVX2, "m.int8-avx2.onnx", "7-bit weights: this CPU has no VNNI")):
        monkeypatch.setattr(models, "_cpu_flags", lambda: flags)
        out = runner.invoke(main, ["check", "--index", str(index_dir), "--json"])
        assert out.exit_code == 0, out.output
        runs = json.loads(out.stdout)["model"]
        assert (runs["id"], runs["precision"], runs["file"]) == ("one", "int8", file)
        assert runs["reason"].startswith(why)
        text = runner.invoke(main, ["check", "--index", str(index_dir)]).stdout
        assert f"on a CPU this machine runs {file} (int8, {why}" in text
    monkeypatch.setenv("SIMSEARCH_PRECISION", "fp32")
    out = runner.invoke(main, ["check", "--index", str(index_dir), "--json"])
    assert json.loads(out.stdout)["model"]["file"] == "m.onnx"
    # a model that cannot run here as set: not ok, and why (query would fail on it)
    monkeypatch.setenv("SIMSEARCH_PRECISION", "fp16")
    out = runner.invoke(main, ["check", "--index", str(index_dir)])
    assert out.exit_code == 1
    assert "problem: model: SIMSEARCH_PRECISION must be auto, fp32 or int8, not 'fp16'" in out.stdout
    assert "NOT ok (the model cannot run here as set" in out.stdout
    monkeypatch.setenv("SIMSEARCH_PRECISION", "int8")
    monkeypatch.setattr(models, "_cpu_flags", lambda: AVX2)
    seven_bit.unlink()
    out = runner.invoke(main, ["check", "--index", str(index_dir), "--json"])
    report = json.loads(out.stdout)
    assert out.exit_code == 1 and not report["ok"] and "needs a CPU with VNNI" in report["model"]["error"]


def _indexed_with_an_8bit_file(tmp_path, photos, monkeypatch, flags):
    """An index of `photos` made (at fp32) with a graph model that has only the 8-bit int8
    variant beside it, on a CPU with `flags`; the index folder and a CliRunner."""
    _graph_model(tmp_path / "m.onnx", model_id="one")
    plain, _ = models.int8_paths(tmp_path / "m.onnx")
    _graph_model(plain, model_id="one")
    monkeypatch.setattr(models, "_cpu_flags", lambda: flags)
    index_dir, runner = tmp_path / "idx", CliRunner()
    made = runner.invoke(main, ["index", str(photos), "--index", str(index_dir), "--model",
                                str(tmp_path / "m.onnx"), "-q", "--precision", "fp32"])
    assert made.exit_code == 0, made.output
    return index_dir, runner


def test_precision_option_is_what_the_commands_run(tmp_path, monkeypatch, photos):
    """`--precision` picks the file as SIMSEARCH_PRECISION does, and wins over it."""
    monkeypatch.setenv("SIMSEARCH_PRECISION", "fp16")  # refused, unless --precision says
    index_dir, runner = _indexed_with_an_8bit_file(tmp_path, photos, monkeypatch, VNNI)
    for asked, file in (("fp32", "m.onnx"), ("int8", "m.int8.onnx"), ("AUTO", "m.int8.onnx")):
        out = runner.invoke(main, ["check", "--index", str(index_dir), "--json",
                                   "--precision", asked])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["model"]["file"] == file
        assert open_index(index_dir, precision=asked.lower()).model.onnx_path.name == file
    import simsearch.index as index_module
    ran = []

    class Recording(index_module.Embedder):
        def __init__(self, ref, *args, **kwargs):
            ran.append(ref.onnx_path.name)
            super().__init__(ref, *args, **kwargs)

    monkeypatch.setattr(index_module, "Embedder", Recording)
    new = tmp_path / "new.jpg"  # a picture the index does not hold runs the network
    Image.open(photos / "img000.jpg").rotate(90).save(new)
    for asked, file in (("int8", "m.int8.onnx"), ("fp32", "m.onnx")):
        found = runner.invoke(main, ["query", str(new), "--index", str(index_dir),
                                     "--precision", asked, "--json"])
        assert found.exit_code == 0, found.output
        assert ran[-1] == file
    # where the CPU cannot run the 8-bit file correctly, --precision int8 is refused, with why
    monkeypatch.setattr(models, "_cpu_flags", lambda: AVX2)
    out = runner.invoke(main, ["query", str(new), "--index", str(index_dir),
                               "--precision", "int8"])
    assert out.exit_code == 1 and "needs a CPU with VNNI" in out.stderr, out.output
    # ... but an indexed file's query runs none: it is answered from its stored vector
    ran.clear()
    held = runner.invoke(main, ["query", str(photos / "img000.jpg"), "--index", str(index_dir),
                                "--precision", "int8", "--json"])
    assert held.exit_code == 0 and ran == [], held.output
    assert json.loads(held.stdout)["results"][0]["score"] >= 0.9999
    bad = runner.invoke(main, ["check", "--index", str(index_dir), "--precision", "fp16"])
    assert bad.exit_code == 2 and "'fp16' is not one of" in bad.output


def test_a_gpu_index_is_not_refused_for_a_cpu_int8_file(tmp_path, monkeypatch):
    """A GPU runs fp32: an int8 setting a CPU here would refuse does not stop an index that
    runs on a GPU (the device is looked for only then), and the model it gives is fp32."""
    import simsearch.index as index_module
    _graph_model(tmp_path / "m.onnx", model_id="one")
    plain, _ = models.int8_paths(tmp_path / "m.onnx")
    _graph_model(plain, model_id="one")
    monkeypatch.setattr(models, "_cpu_flags", lambda: AVX2)  # the 8-bit file saturates here
    on_cpu = open_index(tmp_path / "cpu", model=tmp_path / "m.onnx", create=True, device="cpu",
                        precision="int8")
    assert on_cpu.model.model_id == "one"  # its identity, threshold, background: no network
    with pytest.raises(models.PrecisionError, match="needs a CPU with VNNI.*--precision fp32"):
        on_cpu.runtime_model()  # what runs the network is refused, with the reason
    with pytest.raises(models.PrecisionError, match="needs a CPU with VNNI"):
        _ = on_cpu.embedder
    asked = []
    monkeypatch.setattr(index_module, "resolve_device",
                        lambda spec: asked.append(spec) or "cuda:0")
    on_gpu = open_index(tmp_path / "gpu", model=tmp_path / "m.onnx", create=True,
                        device="cuda", precision="int8")
    assert on_gpu.model.model_id == "one" and asked == []  # no device looked for yet
    ref = on_gpu.runtime_model()
    assert (ref.precision, ref.onnx_path.name, asked) == ("fp32", "m.onnx", ["cuda"])
    assert resolve_model(tmp_path / "m.onnx", precision="int8", device="cuda:0").precision == "fp32"
    with pytest.raises(models.PrecisionError, match="not 'fp16'"):  # a wrong setting still is
        resolve_model(tmp_path / "m.onnx", precision="fp16", device="cuda:0")
    asked.clear()  # opening, and the model's identity, never look for a device
    assert open_index(tmp_path / "gpu2", model=tmp_path / "m.onnx", create=True,
                      precision="int8").model.precision == "fp32" and asked == []


def test_a_refused_precision_stops_only_what_runs_the_network(tmp_path, monkeypatch, photos):
    """dedupe, review's grouping and check's consistency read no network: a precision this CPU
    refuses stops index and query (naming where it came from), not them; check says it is a
    problem here, or a warning where a GPU runs the network."""
    import simsearch.models as models_module
    index_dir, runner = _indexed_with_an_8bit_file(tmp_path, photos, monkeypatch, AVX2)
    monkeypatch.setenv("SIMSEARCH_PRECISION", "int8")
    grouped = runner.invoke(main, ["dedupe", "--index", str(index_dir), "--no-check", "--json"])
    assert grouped.exit_code == 0, grouped.output
    added = runner.invoke(main, ["index", str(photos), "--index", str(index_dir), "-q"])
    assert added.exit_code == 1
    assert "needs a CPU with VNNI" in added.stderr and "SIMSEARCH_PRECISION=fp32" in added.stderr
    new = tmp_path / "new.jpg"  # (the network runs for a picture the index does not hold)
    Image.open(photos / "img000.jpg").rotate(90).save(new)
    asked = runner.invoke(main, ["query", str(new), "--index", str(index_dir),
                                 "--precision", "int8"])
    assert asked.exit_code == 1 and "Run with --precision fp32 (auto" in asked.stderr
    assert runner.invoke(main, ["check", "--index", str(index_dir), "--precision",
                                "fp32"]).exit_code == 0
    out = runner.invoke(main, ["check", "--index", str(index_dir), "--json"])
    report = json.loads(out.stdout)
    assert out.exit_code == 1 and any("needs a CPU with VNNI" in p for p in report["problems"])
    monkeypatch.setattr(models_module, "resolve_device", lambda spec=None: "cuda:0")
    out = runner.invoke(main, ["check", "--index", str(index_dir), "--json"])
    report = json.loads(out.stdout)
    assert out.exit_code == 0 and report["ok"], out.output
    assert any("run the network on cuda:0, in fp32" in w for w in report["warnings"])


def test_check_without_an_index_says_what_would_run_and_how_to_begin(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_cpu_flags", lambda: AVX2)
    runner = CliRunner()
    missing = tmp_path / "none"
    out = runner.invoke(main, ["check", "--index", str(missing)])
    assert out.exit_code == 1 and "Traceback" not in out.output
    expected = resolve_model(None)  # the shipped model, as this CPU runs it
    assert (f"model: default ({expected.model_id[:12]}); on a CPU this machine runs "
            f"{expected.onnx_path.name}") in out.stdout
    assert (f"problem: no index at {missing}; create one with: simsearch index PHOTOS --index "
            f"{missing}") in out.stdout
    report = json.loads(runner.invoke(main, ["check", "--index", str(missing), "--json",
                                             "--precision", "fp32"]).stdout)
    assert not report["ok"] and report["images"] == 0 and report["model"]["file"] == "default.onnx"
    monkeypatch.setenv("SIMSEARCH_PRECISION", "fp16")
    out = runner.invoke(main, ["check", "--index", str(missing)])
    assert out.exit_code == 1 and "problem: model: SIMSEARCH_PRECISION must be" in out.stdout
    assert not missing.exists()  # nothing made
    half = tmp_path / "half"  # a manifest without its catalog: --json still answers in JSON
    half.mkdir()
    (half / "manifest.json").write_text("{}")
    out = runner.invoke(main, ["check", "--index", str(half), "--json"])
    assert out.exit_code == 1 and not json.loads(out.stdout)["ok"]
    assert "catalog.sqlite missing" in json.loads(out.stdout)["problems"][0]
