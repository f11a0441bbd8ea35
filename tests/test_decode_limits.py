"""Issue 17, points 4 and 5: decoding never blocks on a file that is not a regular file, and no
image costs more memory (or CPU) than a budget worked out from its header, before anything is
allocated, hashed or read in full. Every file is generated here, most as headers alone; the
large ones are sparse."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import make_picture, write_pictures
from simsearch import budget, images, ingest, open_index
from simsearch.cli import main
from simsearch.errors import DecodeError
from simsearch.images import MAX_DECODE_BYTES, load_image, probe

ROOT = Path(__file__).resolve().parents[1]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG whose header claims `width` x `height`, with a token IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def tiff_header(width: int, height: int, bits: int, sample_format: int) -> bytes:
    """An uncompressed one-sample TIFF header (no pixel data to speak of)."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 1), (262, 3, 1),
               (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, 16), (339, 3, sample_format)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHI", tag, kind, 1) + struct.pack("<I" if kind == 4 else "<HH",
                                                               *((value,) if kind == 4 else (value, 0)))
    return b"II*\x00" + struct.pack("<I", 24) + bytes(16) + ifd + struct.pack("<I", 0)


def gif_header(width: int, height: int) -> bytes:
    """A GIF whose one frame covers a `width` x `height` screen, with a token of image data."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)
            + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00;")


def rle8_bmp(width: int, height: int) -> bytes:
    """An RLE8 BMP whose rows are one pixel and an end-of-line code: Pillow's Python decoder
    pads each row to its width byte by byte."""
    data = b"\x01\x07\x00\x00" * height + b"\x00\x01"
    palette = bytes(4 * 256)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG with its frame header patched to claim `width` x `height`."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def read_bytes_so_far() -> int:
    """Bytes this process has read through read(2) and the like (Linux /proc)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


# -- 17.4: named pipes and other non-regular files ------------------------------------------


def test_17_4_a_named_pipe_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    for check in (load_image, probe):
        with pytest.raises(DecodeError, match="not a regular file"):
            _with_deadline(lambda: check(fifo), fifo)
    with pytest.raises(DecodeError, match="is a folder"):
        load_image(tmp_path)


def test_17_4_query_on_a_named_pipe_answers_at_once(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    write_pictures(photos, 3)
    index_dir = str(tmp_path / "idx")
    assert CliRunner().invoke(main, ["index", str(photos), "--index", index_dir, "--model",
                                     str(tiny_model / "model.onnx"), "--quiet"]).exit_code == 0
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run([sys.executable, "-m", "simsearch.cli", "query", str(fifo),
                               "--index", index_dir], env=env, capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        _unblock(fifo)
        pytest.fail("simsearch query on a named pipe is still waiting")
    assert done.returncode == 1
    assert f"error: {fifo}: not a regular file" in done.stderr


def test_17_4_a_file_swapped_for_a_pipe_mid_index_does_not_hang(tmp_path, tiny_model,
                                                                   monkeypatch):
    photos = tmp_path / "photos"
    paths = write_pictures(photos, 4)
    victim = str(paths[1])
    real_sha256 = ingest.sha256

    def sha256_then_swap(path):  # between the hash and the decode, the file becomes a pipe
        digest = real_sha256(path)
        if path == victim:
            os.unlink(path)
            os.mkfifo(path)
        return digest

    monkeypatch.setattr(ingest, "sha256", sha256_then_swap)
    index = open_index(tmp_path / "idx", model=str(tiny_model / "model.onnx"), create=True)
    report = _with_deadline(lambda: index.add_paths([photos], workers=2), Path(victim))
    assert {s.path: s.reason for s in report.skipped} == {victim: "not a regular file (a pipe, "
                                                                   "socket or device)"}
    assert report.added == 3


def _with_deadline(work, fifo: Path, seconds: float = 60):
    """Run `work` in a thread; a thread still blocked on the pipe after `seconds` is let go
    (a writer opens and closes the pipe) and the test fails."""
    result: dict = {}

    def run():
        try:
            result["value"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _unblock(fifo)
        thread.join(10)
        pytest.fail(f"still blocked on {fifo} after {seconds} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _unblock(fifo: Path) -> None:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


# -- 17.5: a memory budget per image, from the header ----------------------------------------


@pytest.mark.parametrize("name,data", [
    ("grey16.png", png_header(16000, 15000, 16, 0)),   # 240 MP, 2 bytes a pixel
    ("rgba.png", png_header(12000, 10000, 8, 6)),      # 120 MP, 4 bytes a pixel
    ("float.tif", tiff_header(16000, 15000, 32, 3)),   # 240 MP of 32-bit floats
    ("frame.gif", gif_header(16000, 15000)),           # one 240 MP frame
], ids=["grey16.png", "rgba.png", "float.tif", "frame.gif"])
def test_17_5_a_budget_counting_bit_depth_and_channels_refuses_from_the_header(tmp_path, name,
                                                                              data):
    """Each is under the 250 MP limit, but decoding it would take gigabytes: refused before a
    pixel is allocated, by `probe` and by `load_image` alike."""
    import resource

    path = tmp_path / name
    path.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for check in (probe, load_image):
        with pytest.raises(DecodeError, match=r"MiB, over the limit of 512 MiB per image"):
            check(path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 100 << 20


def test_17_5_ordinary_pictures_are_within_the_budget(tmp_path):
    """The budget refuses what is absurd, not what cameras and scanners make."""
    cases = {"photo.png": png_header(6000, 4000, 8, 2),       # 24 MP RGB
             "scan16.png": png_header(8000, 6000, 16, 0),     # 48 MP 16-bit grey
             "alpha.png": png_header(6000, 4000, 8, 6),       # 24 MP RGBA
             "scan.tif": tiff_header(8000, 6000, 16, 1),      # 48 MP 16-bit grey
             "camera.jpg": jpeg_claiming(12000, 8000)}        # 96 MP JPEG, read at 1/8
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        checked = probe(tmp_path / name, target=160)
        assert checked.cost < MAX_DECODE_BYTES, name
    assert probe(tmp_path / "camera.jpg", target=160).cost < 16 << 20  # 1/8 scale


def test_17_5_a_reduced_decode_does_not_read_a_sparse_tail(tmp_path):
    """A progressive JPEG followed by 3 GiB of (sparse) nothing: the DC-only path at 1/8 scale
    reads the DC scans, not the file."""
    path = tmp_path / "tail.jpg"
    make_picture(5, (2400, 1800)).save(path, quality=90, progressive=True)
    os.truncate(path, 3 << 30)
    before = read_bytes_so_far()
    picture = load_image(path, target=160)
    assert picture.image.size == (300, 225)
    assert read_bytes_so_far() - before < 64 << 20


def test_17_5_an_rle_bmp_bomb_is_refused_from_its_header(tmp_path):
    """32 KB of one-pixel rows in an RLE8 BMP of 240 MP: Pillow's Python decoder would pad
    every row byte by byte (tens of seconds of CPU). Refused unread."""
    path = tmp_path / "rle.bmp"
    path.write_bytes(rle8_bmp(30000, 8000))
    before = read_bytes_so_far()
    with pytest.raises(DecodeError, match="run-length-coded BMP"):
        load_image(path)
    assert read_bytes_so_far() - before < 1 << 20
    small = tmp_path / "small.bmp"  # an RLE8 BMP of ordinary size still decodes
    small.write_bytes(rle8_bmp(640, 480))
    assert load_image(small).image.size == (640, 480)


def test_17_5_decoding_threads_together_stay_within_the_process_budget(monkeypatch):
    """Each decode holds its estimate from a shared pool: two (or eight) threads never hold more
    than DECODE_MEMORY between them, and one image alone always fits."""
    assert 2 * MAX_DECODE_BYTES <= images.DECODE_MEMORY <= 1 << 30
    pool = budget.Pool(100)
    held, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(4)

    def decode():
        gate.wait()
        for _ in range(50):
            with pool.hold(60):
                with lock:
                    held[0] += 60
                    peak[0] = max(peak[0], held[0])
                with lock:
                    held[0] -= 60

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert peak[0] == 60 and pool.held == 0


def test_17_5_a_refused_file_is_never_hashed(tmp_path, tiny_model, monkeypatch):
    """An 8 GiB sparse .jpg whose header is a bomb: refused by the header check before the
    content hash reads a byte of it."""
    photos = tmp_path / "photos"
    write_pictures(photos, 2)
    bomb = photos / "huge.jpg"
    bomb.write_bytes(jpeg_claiming(65500, 65500))
    os.truncate(bomb, 8 << 30)
    hashed = []
    real_sha256 = ingest.sha256
    monkeypatch.setattr(ingest, "sha256", lambda path: hashed.append(path) or real_sha256(path))
    index = open_index(tmp_path / "idx", model=str(tiny_model / "model.onnx"), create=True)
    report = index.add_paths([photos])
    assert [s.path for s in report.skipped] == [str(bomb)]
    assert "decompression bomb" in report.skipped[0].reason
    assert str(bomb) not in hashed and len(hashed) == 2
