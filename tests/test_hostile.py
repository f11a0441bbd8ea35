"""Hostile inputs: a folder of broken, tricky and malicious files mixed with good pictures.

`simsearch index` must exit 0, index every good picture, name every bad file on stderr with a
one-line reason, never hang, and never decode a bomb at full size. Query, JSON output and odd
file names; model files and index folders from someone else (nothing of theirs is executed,
nothing of yours is written). Every file is generated here; nothing binary is committed.
"""
from __future__ import annotations

import faulthandler
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import make_picture, write_pictures
from simsearch import open_index
from simsearch.cli import main
from simsearch.errors import DecodeError, SimsearchError
from simsearch.images import load_image

ROOT = Path(__file__).resolve().parents[1]


def _permissions_ignored() -> bool:
    """Root (with its usual capabilities) reads and writes whatever the modes say."""
    with tempfile.TemporaryDirectory() as folder:
        probe = os.path.join(folder, "probe")
        with open(probe, "w") as f:
            f.write("x")
        os.chmod(probe, 0)
        try:
            with open(probe):
                return True
        except PermissionError:
            return False


PERMISSIONS_IGNORED = _permissions_ignored()
# Address space for a child `simsearch index`: enough for Python, ONNX Runtime, faiss and their
# threads, far too little for a decompression bomb decoded at full size (1.6 to 4.3 GB). Its
# peak resident memory is a few hundred MB.
ADDRESS_SPACE = 3 << 30
MAX_RSS = 600 << 20


# -- helpers shared with test_crash.py ---------------------------------------------------------
@pytest.fixture
def hang_guard():
    """A hang ends the whole run with every thread's traceback instead of blocking CI."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m simsearch.cli` child: this checkout first on the path."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def cli(*args) -> list:
    return [sys.executable, "-m", "simsearch.cli", *args]


# `python -m simsearch.cli` under an address-space limit, writing its peak resident memory at
# exit. Peak from /proc (VmHWM, this program's own memory): ru_maxrss of a child counts the memory
# of the parent it was forked from, and pytest's is large.
_BOUNDED = ("import atexit, resource, runpy, sys\n"
            "limit, report = int(sys.argv.pop(1)), sys.argv.pop(1)\n"
            "if limit:\n"
            "    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
            "def peak():\n"
            "    with open('/proc/self/status') as f:\n"
            "        kib = next(line.split()[1] for line in f if line.startswith('VmHWM'))\n"
            "    with open(report, 'w') as f:\n"
            "        f.write(kib)\n"
            "atexit.register(peak)\n"
            "runpy.run_module('simsearch.cli', run_name='__main__', alter_sys=True)\n")


@dataclass
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes
    max_rss: int  # bytes
    seconds: float


def run_bounded(args: list, timeout: float, address_space: int = 0,
                env: dict | None = None) -> Finished:
    """Run `simsearch ARGS...` in a child with a wall-clock limit and, optionally, an
    address-space limit; report its peak resident memory."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        report = os.path.join(scratch, "peak")
        argv = [sys.executable, "-c", _BOUNDED, str(address_space), report, *args]
        with open(os.path.join(scratch, "out"), "w+b") as out, \
                open(os.path.join(scratch, "err"), "w+b") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env or child_env())
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"simsearch {' '.join(map(str, args))} still running after {timeout} s")
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        peak = int(open(report).read()) * 1024 if os.path.exists(report) else -1
    return Finished(proc.returncode, stdout, stderr, peak, time.monotonic() - start)


def show(path: str) -> str:
    """A path as the CLI prints it: undecodable bytes and control characters escaped."""
    text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\n", "\\n")


def tree_state(folder: Path) -> dict:
    """Every entry under `folder` with its kind, size, mtime, mode and content hash (or link
    target): two equal states mean nothing was written, moved or deleted."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(folder)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(st.st_mode) and os.access(path, os.R_OK):
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            else:
                content = None
            state[path] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_size,
                           st.st_mtime_ns, content)
    return state


# -- the corpus --------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def _png(width: int, height: int, idat: bytes, depth: int = 8, colour: int = 0,
         ihdr_crc: int | None = None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr, ihdr_crc) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def zeros_deflated(n: int, piece: int) -> bytes:
    """A zlib stream of `n` zero bytes (a multiple of `piece`) made without compressing `n`
    bytes: each piece ends in a full flush, so it refers to nothing before it and one
    compressed piece can be repeated. The checksum of zeros is computed directly."""
    assert n % piece == 0
    c = zlib.compressobj(9)
    first = c.compress(bytes(piece)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(piece)) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush(zlib.Z_FINISH)[:-4]
    adler = ((n % 65521) << 16) | 1  # Adler-32 of zeros: a stays 1, b grows by 1 a byte
    return first + again * (n // piece - 1) + end + struct.pack(">I", adler)


def _bomb_png(side: int = 40000) -> bytes:
    """A real decompression bomb: side x side grey pixels, all zero, in about 1.5 MB."""
    row = side + 1  # the filter byte, then the pixels
    return _png(side, side, zeros_deflated(row * side, row * math.gcd(side, 1000)))


def _gif_claiming(width: int, height: int) -> bytes:
    """A 1x1 GIF whose only frame claims width x height and asks to be disposed to the
    background: Pillow allocates the disposal area while it opens the file."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    control = b"\x21\xf9\x04" + bytes([2 << 2, 0, 0, 0]) + b"\x00"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return screen + control + frame + b"\x02\x02\x44\x01\x00" + b"\x3b"


def _jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def _segment(data: bytes, marker: int) -> int:
    """Where the first JPEG segment with `marker` starts (walking the segments, not searching)."""
    i = 2
    while data[i] == 0xFF and data[i + 1] != marker:
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    assert data[i + 1] == marker
    return i


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_jpeg_bytes(make_picture(41, (32, 24))))
    sof = _segment(data, 0xC0)
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _corrupt_entropy_jpeg() -> bytes:
    data = bytearray(_jpeg_bytes(make_picture(42, (160, 120)), quality=90))
    start = _segment(data, 0xDA) + 20
    rng = np.random.default_rng(42)
    for pos in rng.integers(start, len(data) - 4, 40):
        data[pos] = int(rng.integers(0, 0xFF))  # never 0xFF: no new markers
    return bytes(data)


def _png_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _rgb16_png(width: int, height: int) -> bytes:
    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 65536, (height, width, 3)).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return _png(width, height, zlib.compress(raw), depth=16, colour=2)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg_bytes(make_picture(60 + orientation, (64, 40)), exif=exif, quality=90)


def _animated_gif() -> bytes:
    frames = [make_picture(70 + i, (48, 36)).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


@dataclass
class Corpus:
    folder: Path
    good: set[str] = field(default_factory=set)  # must be indexed
    bad: dict[str, str] = field(default_factory=dict)  # must be skipped: path -> words of the reason
    either: set[str] = field(default_factory=set)  # damaged but maybe decodable: one or the other

    def write(self, name: str | bytes, data: bytes, kind: str = "good", reason: str = "") -> str:
        path = os.path.join(os.fsencode(self.folder), os.fsencode(name))
        with open(path, "wb") as f:
            f.write(data)
        return self.expect(path, kind, reason)

    def expect(self, path: bytes | str, kind: str, reason: str = "") -> str:
        path = os.fsdecode(path)
        if kind == "good":
            self.good.add(path)
        elif kind == "bad":
            self.bad[path] = reason
        else:
            self.either.add(path)
        return path


def build_corpus(folder: Path) -> Corpus:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(folder)
    for path in write_pictures(folder / "good", 4, seed=31):
        corpus.expect(str(path), "good")
    w = corpus.write
    # broken files
    w("empty.jpg", b"", "bad", "empty file (0 bytes)")
    w("text.jpg", b"hello, I am a text file with a picture's name\n", "bad", "not an image")
    jpeg = _jpeg_bytes(make_picture(32, (200, 150)), quality=90)
    w("truncated.jpg", jpeg[: len(jpeg) // 3], "bad", "truncated")
    png = _png_bytes(make_picture(33, (120, 90)))
    w("truncated.png", png[: len(png) // 2], "bad", "truncated")
    w("bad_crc.png", _png(8, 8, zlib.compress(bytes(9 * 8)), ihdr_crc=0xDEADBEEF), "bad", "not an image")
    idat_crc = bytearray(png)
    idat = idat_crc.index(b"IDAT")
    length = struct.unpack(">I", idat_crc[idat - 4:idat])[0]
    idat_crc[idat + 4 + length] ^= 0xFF
    w("bad_idat_crc.png", bytes(idat_crc), "either")
    w("corrupt_entropy.jpg", _corrupt_entropy_jpeg(), "either")
    w("postscript.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "bad",
      "not an image")
    # bombs and absurd headers
    w("bomb.png", _bomb_png(), "bad", "decompression bomb")
    w("absurd.png", _png(2**31 - 1, 2**31 - 1, zlib.compress(b"\x00" * 64)), "bad", "decompression bomb")
    w("absurd.gif", _gif_claiming(65535, 65535), "bad", "decompression bomb")
    w("absurd.jpg", _jpeg_claiming(65500, 65500), "bad", "decompression bomb")
    # unusual but good pictures
    w("cmyk.jpg", _jpeg_bytes(make_picture(34, (80, 60)).convert("CMYK")))
    w("grey16.png", _png_bytes(Image.fromarray((np.arange(64 * 48, dtype=np.uint16) * 21)
                                              .reshape(48, 64))))
    w("rgb16.png", _rgb16_png(40, 30))
    palette = make_picture(35, (64, 48)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    w("palette_alpha.png", _png_bytes(palette, transparency=0))
    w("animated.gif", _animated_gif())
    w("one_pixel.png", _png_bytes(Image.new("RGB", (1, 1), (200, 30, 30))))
    w("one_pixel.jpg", _jpeg_bytes(Image.new("RGB", (1, 1), (30, 200, 30))))
    w("panorama.jpg", _jpeg_bytes(make_picture(36, (20000, 50)), quality=85))
    w("tall.png", _png_bytes(make_picture(37, (20, 3000))))
    webp = io.BytesIO()
    make_picture(38, (64, 48)).save(webp, format="WEBP")
    w("picture.webp", webp.getvalue())
    for orientation in range(1, 9):
        w(f"exif_{orientation}.jpg", _exif_jpeg(orientation))
    # names
    w(b"caf\xe9.jpg", _jpeg_bytes(make_picture(39, (64, 48))))
    w("odd 'single' \"double\" \n newline \U0001F4F7 emoji.jpg", _jpeg_bytes(make_picture(40, (64, 48))))
    w(b"bad \xff name.jpg", b"not a picture either", "bad", "not an image")
    # the file system
    os.symlink("loop.jpg", folder / "loop.jpg")
    corpus.expect(str(folder / "loop.jpg"), "bad", "symbolic link loop")
    os.symlink("ping.jpg", folder / "pong.jpg")
    os.symlink("pong.jpg", folder / "ping.jpg")
    corpus.expect(str(folder / "ping.jpg"), "bad", "symbolic link loop")
    corpus.expect(str(folder / "pong.jpg"), "bad", "symbolic link loop")
    os.symlink("nowhere.jpg", folder / "dangling.jpg")
    corpus.expect(str(folder / "dangling.jpg"), "bad", "broken symbolic link")
    os.symlink("/dev/zero", folder / "zero.jpg")
    corpus.expect(str(folder / "zero.jpg"), "bad", "not a regular file")
    os.mkfifo(folder / "pipe.jpg")
    corpus.expect(str(folder / "pipe.jpg"), "bad", "not a regular file")
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")  # a folder loop: links to folders are not followed
    os.symlink(folder / "good", folder / "linked.jpg")  # a link to a folder with an image's name
    (folder / "x.jpg").mkdir()  # a folder with an image's name is walked like any other
    corpus.write("x.jpg/inside.jpg", _jpeg_bytes(make_picture(43, (64, 48))))
    if not PERMISSIONS_IGNORED:  # root reads anything: nothing to test there
        path = corpus.write("unreadable.jpg", jpeg, "bad", "permission denied")
        os.chmod(path, 0)
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    corpus = build_corpus(tmp_path_factory.mktemp("hostile") / "photos")
    yield corpus
    for path in corpus.bad:  # let pytest clean up
        if os.path.lexists(path) and not os.path.islink(path):
            os.chmod(path, 0o644)


def check_accounting(corpus: Corpus, indexed: set[str], skipped: dict[str, str], stderr: str) -> None:
    """Every good picture indexed, every bad file skipped with its reason on one stderr line."""
    assert corpus.good <= indexed, sorted(corpus.good - indexed)
    assert not set(corpus.bad) & indexed
    assert set(corpus.bad) <= set(skipped), sorted(set(corpus.bad) - set(skipped))
    assert set(skipped) <= set(corpus.bad) | corpus.either, sorted(set(skipped) - set(corpus.bad))
    assert indexed == corpus.good | (corpus.either - set(skipped))
    for path, words in corpus.bad.items():
        assert words.lower() in skipped[path].lower(), (path, skipped[path])
    lines = stderr.splitlines()
    for path, reason in skipped.items():
        assert "\n" not in reason
        assert f"skipped {show(path)}: {reason}" in lines, (path, reason)
    assert all(line.startswith("skipped ") for line in lines), stderr
    assert "Traceback" not in stderr


def _index_args(corpus_folder, index_dir, tiny_model, *extra) -> list[str]:
    return ["index", str(corpus_folder), "--index", str(index_dir), "--model",
            str(tiny_model / "model.onnx"), "--quiet", *extra]


def test_the_bomb_in_the_corpus_is_a_real_one():
    """The cheap construction of the bomb's zlib stream is a valid stream of zeros."""
    assert zlib.decompress(zeros_deflated(3 * 5000, 5000)) == bytes(3 * 5000)
    with Image.open(io.BytesIO(_bomb_png(300))) as img:  # the same recipe, small
        img.load()
        assert img.size == (300, 300) and not np.asarray(img).any()


def test_index_a_hostile_folder_with_the_cli(corpus, tiny_model, tmp_path, hang_guard):
    start = time.monotonic()
    result = CliRunner().invoke(main, _index_args(corpus.folder, tmp_path / "idx", tiny_model, "--json"))
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start < 120
    report = json.loads(result.stdout)
    indexed = set(open_index(tmp_path / "idx").vectors()[0])
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    check_accounting(corpus, indexed, skipped, result.stderr)
    assert report["added"] == len(indexed)


def test_index_a_hostile_folder_in_a_small_bounded_process(corpus, tiny_model, tmp_path):
    """The real command, in its own process, under an address-space limit that a bomb decoded
    at full size would break, and with a clock that a hang would run out."""
    run = run_bounded(_index_args(corpus.folder, tmp_path / "idx", tiny_model, "--json"),
                      timeout=180, address_space=ADDRESS_SPACE)
    stderr = run.stderr.decode("utf-8")  # strictly: odd names are escaped
    assert run.returncode == 0, stderr
    assert 0 < run.max_rss < MAX_RSS, f"peak memory {run.max_rss / 2**20:.0f} MiB"
    report = json.loads(run.stdout.decode("ascii"))
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    indexed = set(open_index(tmp_path / "idx").vectors()[0])
    check_accounting(corpus, indexed, skipped, stderr)


def test_a_second_run_over_the_hostile_folder_changes_nothing(corpus, tiny_model, tmp_path):
    index_dir = tmp_path / "idx"
    runner = CliRunner()
    assert runner.invoke(main, _index_args(corpus.folder, index_dir, tiny_model)).exit_code == 0
    result = runner.invoke(main, _index_args(corpus.folder, index_dir, tiny_model, "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["added"], report["updated"], report["removed"], report["moved"]) == (0, 0, 0, 0)
    assert report["unchanged"] == len(open_index(index_dir).vectors()[0])


def test_queries_with_bad_images_fail_clearly(corpus, tiny_model, tmp_path, photos, hang_guard):
    index_dir = str(tmp_path / "idx")
    runner = CliRunner()
    assert runner.invoke(main, _index_args(photos, index_dir, tiny_model)).exit_code == 0
    folder = corpus.folder
    cases = {"text.jpg": "not an image", "empty.jpg": "empty file", "truncated.jpg": "truncated",
             "bomb.png": "decompression bomb", "absurd.gif": "decompression bomb",
             "absurd.jpg": "decompression bomb", "missing.jpg": "not found", "x.jpg": "folder",
             "loop.jpg": "symbolic links", "dangling.jpg": "not found"}
    for name, words in cases.items():
        result = runner.invoke(main, ["query", str(folder / name), "--index", index_dir])
        assert result.exit_code == 1, (name, result.output)
        assert isinstance(result.exception, SystemExit), (name, result.exception)
        line = result.stderr.strip()
        assert line.startswith(f"error: {folder / name}: ") and "\n" not in line, (name, line)
        assert words in line.lower(), (name, line)
        assert result.stdout == ""
    # a good query beside a bad one: the good one is answered, the run still fails
    result = runner.invoke(main, ["query", str(photos / "img001.jpg"), str(folder / "text.jpg"),
                                  "--index", index_dir, "--json"])
    assert result.exit_code == 1
    answer, failed = (json.loads(line) for line in result.stdout.splitlines())
    assert answer["results"][0]["path"] == str(photos / "img001.jpg")
    assert failed["query"] == str(folder / "text.jpg") and "not an image" in failed["error"]


def test_decoding_a_bomb_allocates_nothing_big(corpus):
    """In this very process: refused from the header, whatever the format."""
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in ("bomb.png", "absurd.png", "absurd.gif", "absurd.jpg"):
        with pytest.raises(DecodeError, match="decompression bomb"):
            load_image(corpus.folder / name)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grown < 200 << 20


def test_odd_names_in_json_and_text_output(tmp_path, tiny_model, hang_guard):
    photos = tmp_path / "photos"
    photos.mkdir()
    latin1 = os.path.join(os.fsencode(photos), b"caf\xe9.jpg")
    odd = photos / "odd 'single' \"double\" \n newline \U0001F4F7.jpg"
    Path(os.fsdecode(latin1)).write_bytes(_jpeg_bytes(make_picture(50, (64, 48))))
    odd.write_bytes(_jpeg_bytes(make_picture(51, (64, 48))))
    Path(os.fsdecode(os.path.join(os.fsencode(photos), b"bad\xff.jpg"))).write_bytes(b"nope")
    write_pictures(photos, 3, seed=52)
    index_dir = str(tmp_path / "idx")
    runner = CliRunner()
    result = runner.invoke(main, _index_args(photos, index_dir, tiny_model, "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 5
    bad = os.fsdecode(os.path.join(os.fsencode(photos), b"bad\xff.jpg"))
    assert [s["path"] for s in report["skipped"]] == [bad]
    assert "bad\\udcff.jpg" in result.stdout  # escaped in JSON, not raw bytes
    assert "skipped " + show(report["skipped"][0]["path"]) in result.stderr

    name = os.fsdecode(latin1)
    for query in (name, str(odd)):
        result = runner.invoke(main, ["query", query, "--index", index_dir, "-k", "2", "--json"])
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert answer["query"] == query and answer["results"][0]["path"] == query
        assert os.fsencode(answer["results"][0]["path"]) == os.fsencode(query)
        result.stdout.encode("ascii")  # JSON output is plain ASCII whatever the names
        text = runner.invoke(main, ["query", query, "--index", index_dir, "-k", "2"])
        assert text.exit_code == 0 and show(query) in text.stdout
    # scores alone at -1: every file grouped, whatever the picture check would say of them
    result = runner.invoke(main, ["dedupe", "--index", index_dir, "--json", "--threshold", "-1",
                                  "--no-check"])
    assert result.exit_code == 0
    files = {f for g in json.loads(result.stdout)["groups"] for f in g["files"]}
    assert name in files and str(odd) in files

    # the real thing: a byte path on the command line, bytes on stdout
    done = subprocess.run(cli("query", latin1, "--index", index_dir, "-k", "1", "--json"),
                          env=child_env(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.decode("ascii"))
    assert os.fsencode(answer["query"]) == latin1
    assert os.fsencode(answer["results"][0]["path"]) == latin1
    done = subprocess.run(cli("query", latin1, "--index", index_dir, "-k", "1"),
                          env=child_env(), capture_output=True, timeout=120)
    assert done.returncode == 0 and "caf\\udce9.jpg" in done.stdout.decode("utf-8")


def test_a_bad_file_named_with_a_newline_is_reported_on_one_line(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    write_pictures(photos, 1)
    (photos / "two\nlines.jpg").write_bytes(b"not a picture")
    result = CliRunner().invoke(main, _index_args(photos, tmp_path / "idx", tiny_model))
    assert result.exit_code == 0
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_files_that_change_or_vanish_while_being_indexed(tmp_path, tiny_model, monkeypatch):
    import simsearch.ingest as ingest_module

    photos = tmp_path / "photos"
    write_pictures(photos, 6, seed=53)
    changing, vanishing, vanishing_early = (str(photos / f"img00{i}.jpg") for i in (1, 2, 3))
    real_load, real_sha = ingest_module.load_image, ingest_module.sha256

    def load_image(path, *args, **kwargs):  # runs between the walk (and hash) and the decode
        if path == changing:
            make_picture(77, (160, 120)).save(path, quality=80)
            st = os.stat(path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        elif path == vanishing:
            os.unlink(path)
        return real_load(path, *args, **kwargs)

    def sha256(path):
        if path == vanishing_early:
            os.unlink(path)
        return real_sha(path)

    monkeypatch.setattr(ingest_module, "load_image", load_image)
    monkeypatch.setattr(ingest_module, "sha256", sha256)
    index_dir = tmp_path / "idx"
    result = CliRunner().invoke(main, _index_args(photos, index_dir, tiny_model, "--json"))
    assert result.exit_code == 0, result.output
    skipped = {s["path"]: s["reason"] for s in json.loads(result.stdout)["skipped"]}
    assert skipped == {changing: "changed while being indexed (run again to pick it up)",
                       vanishing: "disappeared while being indexed",
                       vanishing_early: "disappeared while being indexed"}
    assert len(result.stderr.splitlines()) == 3
    assert sorted(open_index(index_dir).vectors()[0]) == sorted(
        str(photos / f"img00{i}.jpg") for i in (0, 4, 5))

    monkeypatch.setattr(ingest_module, "load_image", real_load)
    monkeypatch.setattr(ingest_module, "sha256", real_sha)
    again = CliRunner().invoke(main, _index_args(photos, index_dir, tiny_model, "--json"))
    report = json.loads(again.stdout)
    assert (report["added"], report["unchanged"], report["skipped"]) == (1, 3, [])
    index = open_index(index_dir)
    match = index.search([changing], k=1)[0].matches[0]
    assert match.path == changing and match.score > 0.999  # the new content is what is stored


def test_a_very_deep_folder_tree(tmp_path, tiny_model, hang_guard):
    """Deeper than Python's recursion limit: the walk must not recurse per level."""
    photos = tmp_path / "photos"
    write_pictures(photos, 2)
    deep = os.fsencode(photos)
    try:
        for _ in range(1100):  # os.makedirs recurses per level
            deep += b"/d"
            os.mkdir(deep)
        with open(deep + b"/deep.jpg", "wb") as f:
            f.write(_jpeg_bytes(make_picture(54, (64, 48))))
        result = CliRunner().invoke(main, _index_args(photos, tmp_path / "idx", tiny_model, "--json"))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["added"] == 3
    finally:  # shutil.rmtree (and so pytest's clean-up) recurses per level too
        while deep != os.fsencode(photos):
            for name in os.listdir(deep):
                os.unlink(os.path.join(deep, name))
            os.rmdir(deep)
            deep = os.path.dirname(deep)


@pytest.mark.skipif(PERMISSIONS_IGNORED, reason="file modes are not enforced (root)")
def test_an_unreadable_file_is_skipped(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    write_pictures(photos, 2)
    os.chmod(photos / "img001.jpg", 0)
    try:
        result = CliRunner().invoke(main, _index_args(photos, tmp_path / "idx", tiny_model))
        assert result.exit_code == 0
        assert "img001.jpg: cannot read: Permission denied" in result.stderr
    finally:
        os.chmod(photos / "img001.jpg", 0o644)


# -- files from someone else ------------------------------------------------------------------
class _Payload:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _pickle_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Model files that carry a pickle which would run code if anything unpickled it, each in
    a folder of its own (so that no .onnx beside a .safetensors is found first)."""
    payload = pickle.dumps(_Payload(marker))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # the layout of torch.save
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    files = {"raw.safetensors": payload, "raw.onnx": payload, "torch_zip.safetensors": buf.getvalue(),
             "torch_zip.onnx": buf.getvalue(), "in_a_folder/model.onnx": payload}
    paths = {}
    for name, data in files.items():
        path = folder / name.replace(".", "_") / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        paths[name] = path.parent if name.startswith("in_a_folder") else path
    return paths


def test_pickle_bearing_model_files_are_refused_and_never_run(tmp_path, photos, hang_guard):
    marker = tmp_path / "pwned"
    runner = CliRunner()
    for name, path in _pickle_files(tmp_path / "models", marker).items():
        result = runner.invoke(main, ["index", str(photos), "--index", str(tmp_path / name),
                                      "--model", str(path), "-q"])
        assert result.exit_code == 1, (name, result.output)
        assert isinstance(result.exception, SystemExit), (name, result.exception)
        assert result.stderr.startswith("Error: ") and str(path) in result.stderr, result.stderr
        assert "Traceback" not in result.output
        with pytest.raises(SimsearchError):
            open_index(tmp_path / name, model=path, create=True).model
        if name.endswith(".safetensors"):  # the index only looks for its export; convert reads it
            result = runner.invoke(main, ["convert", str(path)])
            assert result.exit_code == 1 and "Traceback" not in result.output, (name, result.output)
            assert result.stderr.startswith("Error: ") and str(path) in result.stderr
            assert not path.with_suffix(".onnx").exists()
        assert not marker.exists(), name
    assert not marker.exists()


def _good_index(tmp_path: Path, tiny_model: Path, photos: Path) -> Path:
    index_dir = tmp_path / "idx"
    result = CliRunner().invoke(main, _index_args(photos, index_dir, tiny_model))
    assert result.exit_code == 0, result.output
    return index_dir


def _damaged_copy(index_dir: Path, name: str, data: bytes) -> Path:
    copy = index_dir.with_name(f"{index_dir.name}-{name.replace('.', '_')}")
    shutil.copytree(index_dir, copy)
    (copy / name).write_bytes(data)
    return copy


def test_damaged_or_foreign_index_folders_give_messages(tmp_path, tiny_model, photos, hang_guard):
    index_dir = _good_index(tmp_path, tiny_model, photos)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    manifest = json.loads((index_dir / "manifest.json").read_text())
    evil_model = tmp_path / "evil.onnx"
    evil_model.write_bytes(payload)
    pointing = dict(manifest, model=dict(manifest["model"], name=str(evil_model), id="other"))
    cases = {
        ("manifest.json", "noise"): noise,
        ("manifest.json", "pickle"): payload,
        ("manifest.json", "nested"): b"[" * 100000 + b"]" * 100000,
        ("manifest.json", "a list"): b"[]",
        ("manifest.json", "model is a string"): json.dumps(dict(manifest, model="x")).encode(),
        ("manifest.json", "config mean is text"): json.dumps(dict(manifest, model=dict(
            manifest["model"], config=dict(manifest["model"]["config"], mean="abc")))).encode(),
        ("manifest.json", "dim is text"): json.dumps(dict(manifest, dim="32")).encode(),
        ("manifest.json", "config lacks dim"): json.dumps(dict(manifest, model=dict(
            manifest["model"], config={k: v for k, v in manifest["model"]["config"].items()
                                       if k != "dim"}))).encode(),
        ("manifest.json", "model elsewhere"): json.dumps(pointing).encode(),
        ("catalog.sqlite", "noise"): noise,
        ("catalog.sqlite", "pickle"): payload,
        ("catalog.sqlite", "empty"): b"",
        ("catalog.sqlite", "half"): (index_dir / "catalog.sqlite").read_bytes()[:6000],
    }
    # what still works: the catalog, not the manifest, says which model built the index (the
    # manifest's pointer to another model is never followed: only check reports it), and an
    # empty file is an empty catalog
    works = {("manifest.json", "model elsewhere"): {"dedupe", "export", "query", "index"},
             ("catalog.sqlite", "empty"): {"index"}}
    commands = {"query": ["query", str(photos / "img001.jpg")], "dedupe": ["dedupe"],
                "export": ["export", "--out", str(tmp_path / "v.npz")], "check": ["check"],
                "index": ["index", str(photos), "--model", str(tiny_model / "model.onnx"), "-q"]}
    runner = CliRunner()
    for (name, what), data in cases.items():
        damaged = _damaged_copy(index_dir, name, data)
        for command, args in commands.items():
            result = runner.invoke(main, [*args, "--index", str(damaged)])
            assert "Traceback" not in result.output
            if command in works.get((name, what), ()):
                assert result.exit_code == 0, (name, what, command, result.output)
                continue
            assert result.exit_code == 1, (name, what, command, result.output)
            assert isinstance(result.exception, SystemExit), (name, what, command, result.exception)
            if command != "check" or name == "catalog.sqlite":
                assert result.stderr.startswith("Error: "), (name, what, command, result.stderr)
            assert str(damaged) in result.output, (name, what, command, result.output)
            if name == "manifest.json" and what in ("noise", "a list"):
                assert "check --repair" in result.output, (what, command, result.output)
        shutil.rmtree(damaged)
    assert not marker.exists()


def test_a_manifest_can_be_repaired_from_the_catalog(tmp_path, tiny_model, photos):
    index_dir = _good_index(tmp_path, tiny_model, photos)
    (index_dir / "manifest.json").write_bytes(b"\x00garbage")
    runner = CliRunner()
    result = runner.invoke(main, ["check", "--repair", "--index", str(index_dir)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["query", str(photos / "img002.jpg"), "-k", "1", "--json",
                                  "--index", str(index_dir)])
    assert json.loads(result.stdout)["results"][0]["path"] == str(photos / "img002.jpg")


def test_a_damaged_catalog_is_not_repaired_from_derived_files(tmp_path, tiny_model, photos):
    index_dir = _good_index(tmp_path, tiny_model, photos)
    data = bytearray((index_dir / "catalog.sqlite").read_bytes())
    data[4096 + 8:4096 + 40] = bytes(32)  # wreck the header of the second page
    (index_dir / "catalog.sqlite").write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["check", "--repair", "--index", str(index_dir)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "damaged" in result.output


def test_damaged_or_foreign_vector_files_are_rebuilt_from_the_catalog(tmp_path, tiny_model, photos):
    import faiss

    index_dir = _good_index(tmp_path, tiny_model, photos)
    good = (index_dir / "vectors.faiss").read_bytes()
    flat = faiss.IndexFlatIP(32)
    flat.add(np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32))
    foreign = bytes(faiss.serialize_index(flat))  # a faiss index without ids, not ours
    runner = CliRunner()
    for what, data in {"noise": os.urandom(len(good)), "truncated": good[: len(good) // 2],
                       "empty": b"", "foreign": foreign}.items():
        damaged = _damaged_copy(index_dir, "vectors.faiss", data)
        result = runner.invoke(main, ["query", str(photos / "img003.jpg"), "-k", "1", "--json",
                                      "--index", str(damaged)])
        assert result.exit_code == 0, (what, result.output)
        assert json.loads(result.stdout)["results"][0]["path"] == str(photos / "img003.jpg")
        result = runner.invoke(main, ["dedupe", "--index", str(damaged), "--json"])
        assert result.exit_code == 0, (what, result.output)
        result = runner.invoke(main, ["check", "--index", str(damaged)])
        assert result.exit_code == 1 and "problem: " in result.stdout, (what, result.output)
        result = runner.invoke(main, ["check", "--repair", "--index", str(damaged)])
        assert result.exit_code == 0, (what, result.output)
        assert runner.invoke(main, ["check", "--index", str(damaged)]).exit_code == 0
        shutil.rmtree(damaged)


def test_your_photos_are_never_written(tmp_path, tiny_model, corpus):
    """Index, query, dedupe, export, check and repair, rebuild, prune: afterwards every file
    under the photo folder has the same bytes, size, mode and mtime, and none came or went."""
    photos = tmp_path / "photos"
    write_pictures(photos, 6, seed=55)
    shutil.copy(photos / "img000.jpg", photos / "copy.jpg")
    (photos / "broken.jpg").write_bytes(b"broken")
    other = tmp_path / "other"
    write_pictures(other, 2, seed=56)
    before, corpus_before = tree_state(photos), tree_state(corpus.folder)
    index_dir = str(tmp_path / "idx")
    model = str(tiny_model / "model.onnx")
    runner = CliRunner()
    for args in (["index", str(photos), str(corpus.folder), "--model", model, "-q"],
                 ["query", str(photos / "img001.jpg"), str(photos / "broken.jpg")],
                 ["dedupe", "--threshold", "0.5"],
                 ["export", "--out", str(tmp_path / "v.npz")],
                 ["export", "--out", str(photos / "img002.jpg")],  # refused: a photo
                 ["check"],
                 ["index", str(other), "-q"],
                 ["index", str(photos), "-q", "--rebuild", "--model", model]):
        result = runner.invoke(main, [*args, "--index", index_dir])
        assert "Traceback" not in result.output
    (Path(index_dir) / "vectors.faiss").write_bytes(b"junk")
    assert runner.invoke(main, ["check", "--repair", "--index", index_dir]).exit_code == 0
    assert tree_state(photos) == before
    assert tree_state(corpus.folder) == corpus_before


def test_names_that_look_alike_are_told_apart_and_undo_says_each_on_one_line(
        tmp_path, tiny_model, monkeypatch):
    """A hostile tester's case (session 31): café.jpg composed and decomposed, the same bytes,
    were listed as `keep café.jpg` and `act on café.jpg`; undo printed a newline in a name raw."""
    import unicodedata
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    photos = tmp_path / "photos"
    photos.mkdir()
    data = _jpeg_bytes(make_picture(60, (64, 48)))
    composed = photos / unicodedata.normalize("NFC", "café.jpg")
    decomposed = photos / unicodedata.normalize("NFD", "café.jpg")
    composed.write_bytes(data)
    decomposed.write_bytes(data)
    (photos / "new\nline.jpg").write_bytes(data)
    index_dir = str(tmp_path / "idx")
    runner = CliRunner()
    assert runner.invoke(main, _index_args(photos, index_dir, tiny_model)).exit_code == 0
    plan = tmp_path / "plan.json"
    result = runner.invoke(main, ["dedupe", "--index", index_dir, "--plan", str(plan)])
    assert result.exit_code == 0, result.output
    listed = [line.split("photos/")[1].split()[0] for line in result.stdout.splitlines()
              if "photos/caf" in line and line.startswith("  ")]
    assert sorted(listed) == ["caf\\xe9.jpg", "cafe\\u0301.jpg"], result.stdout
    result = runner.invoke(main, ["apply", str(plan), "--action", "trash"])
    assert result.exit_code == 0, result.output
    gone = [line for line in result.stdout.splitlines() if line.startswith("trashed")]
    assert len(gone) == 2 and all("\\u" in g or "\\x" in g or "\\n" in g for g in gone), gone
    result = runner.invoke(main, ["undo", str(plan) + ".journal"])
    assert result.exit_code == 0, result.output
    restored = [line for line in result.stdout.splitlines() if line.startswith("restored ")]
    assert len(restored) == 2, result.stdout
    newline = [line for line in restored if "new\\nline" in line]  # its path and its place
    assert len(newline) == 1 and newline[0].count("new\\nline") == 2, restored
    assert composed.read_bytes() == decomposed.read_bytes() == data


def test_export_never_replaces_a_file_that_is_not_an_export(tmp_path, tiny_model, photos):
    """A hostile tester's case (session 32): `export --out photos/x.jpg` replaced the photo
    with a zip of vectors, and the next index dropped it. Only an earlier export (or an empty
    file) is replaced; a photo, a .npy, a document is refused by name and left as it was."""
    runner = CliRunner()
    index_dir = str(tmp_path / "idx")
    assert runner.invoke(main, _index_args(photos, index_dir, tiny_model)).exit_code == 0
    np.save(tmp_path / "other.npy", np.zeros(3))
    (tmp_path / "notes.npz").write_text("my notes")
    for victim in (photos / "img003.jpg", tmp_path / "other.npy", tmp_path / "notes.npz"):
        before = victim.read_bytes()
        result = runner.invoke(main, ["export", "--out", str(victim), "--index", index_dir])
        assert result.exit_code == 1, result.output
        assert f"{victim} exists and is not a simsearch export" in result.output
        assert victim.read_bytes() == before
    out = tmp_path / "v.npz"
    for _ in range(2):  # written, then replaced
        result = runner.invoke(main, ["export", "--out", str(out), "--index", index_dir])
        assert result.exit_code == 0 and "wrote 8 vectors" in result.output
    with np.load(out) as held:
        assert held["vectors"].shape[0] == 8
