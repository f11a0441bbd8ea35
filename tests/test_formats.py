"""Issue 16: the pictures phones and cameras write. HEIC/HEIF (pillow-heif), AVIF (Pillow's
plugin) and RAW (rawpy, on DNG files written by tests/dng_writer.py) open, turn upright, are
refused as bombs from their headers, are skipped with a reason when damaged or when their
library is missing, are counted per format, and group with their JPEG twins."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import make_picture, write_pictures
from dng_writer import dng_bytes
from simsearch import formats, open_index
from simsearch.cli import main
from simsearch.errors import DecodeError, MissingLibraryError
from simsearch.images import _heif_transformed, load_image, probe

pytest.importorskip("pillow_heif")
pytest.importorskip("rawpy")
SAVE_AS = {"HEIF": ".heic", "AVIF": ".avif"}


def encode(picture: Image.Image, fmt: str, **options) -> bytes:
    if fmt == "HEIF":
        formats.pillow_formats("HEIF", "")  # registers pillow-heif's writer too
    buf = io.BytesIO()
    picture.save(buf, format=fmt, quality=85, **options)
    return buf.getvalue()


def marked(size=(120, 60)) -> Image.Image:
    """Black with a white square in the top-left corner."""
    img = Image.new("RGB", size, (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 30, 30))
    return img


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_open(tmp_path, fmt):
    path = tmp_path / f"x{SAVE_AS[fmt]}"
    source = make_picture(1, (320, 240))
    path.write_bytes(encode(source, fmt))
    picture = load_image(path)
    assert (picture.format, picture.image.mode, picture.image.size) == (fmt, "RGB", (320, 240))
    assert (picture.width, picture.height) == (320, 240)
    diff = np.abs(np.asarray(picture.image, np.float32) - np.asarray(source, np.float32))
    assert diff.mean() < 12
    assert probe(path).format == fmt
    named_as_jpeg = tmp_path / "really.jpg"  # the content decides, not the name
    named_as_jpeg.write_bytes(path.read_bytes())
    assert load_image(named_as_jpeg).format == fmt


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
@pytest.mark.parametrize("orientation,size", [(1, (120, 60)), (3, (120, 60)), (6, (60, 120)),
                                              (8, (60, 120))])
def test_orientation_is_honoured(tmp_path, fmt, orientation, size):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{SAVE_AS[fmt]}"
    path.write_bytes(encode(marked(), fmt, exif=exif))
    picture = load_image(path)
    assert picture.image.size == size and (picture.width, picture.height) == size
    corner = {1: (5, 5), 3: (115, 55), 6: (55, 5), 8: (5, 115)}[orientation]
    assert picture.image.getpixel(corner)[0] > 200  # the mark is where a viewer shows it


def _box(kind: bytes, payload: bytes, full: bool = False) -> bytes:
    payload = (b"\x00" * 4 if full else b"") + payload
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def test_a_heic_turned_by_its_own_boxes_ignores_its_exif_tag():
    """libheif applies `irot`/`imir` itself: the EXIF tag then must not turn it again."""
    ispe = _box(b"ispe", bytes(12), full=True)
    for props, expected in (((ispe, _box(b"irot", b"\x01")), True), ((ispe,), False),
                            ((ispe, _box(b"imir", b"\x00")), True)):
        data = (_box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic")
                + _box(b"meta", _box(b"hdlr", bytes(20), full=True)
                       + _box(b"iprp", _box(b"ipco", b"".join(props))), full=True)
                + _box(b"mdat", b"\x00" * 16))
        assert _heif_transformed(io.BytesIO(data)) is expected


def test_a_heic_thumbnail_is_a_reduced_decode(tmp_path):
    path = tmp_path / "thumb.heic"
    path.write_bytes(encode(make_picture(2, (1280, 960)), "HEIF", thumbnails=[320]))
    picture = load_image(path, target=160)
    assert picture.image.size == (320, 240) and (picture.width, picture.height) == (1280, 960)
    assert load_image(path, target=400).image.size == (1280, 960)  # too small: the image


def _claiming(data: bytes, width: int, height: int) -> bytes:
    """The file with every `ispe` (image spatial extent) box patched to claim another size."""
    data, at = bytearray(data), 0
    while (at := data.find(b"ispe", at)) >= 0:
        data[at + 8:at + 16] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        at += 4
    return bytes(data)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_bomb_is_refused_unopened(tmp_path, fmt):
    import resource

    small = encode(make_picture(3, (128, 64)), fmt)  # no clean-aperture crop box to patch
    bomb, over = tmp_path / f"bomb{SAVE_AS[fmt]}", tmp_path / f"budget{SAVE_AS[fmt]}"
    bomb.write_bytes(_claiming(small, 16384, 16384))   # over 250 MP
    over.write_bytes(_claiming(small, 15000, 15000))   # 225 MP: under it, over the budget
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for check in (probe, load_image):
        with pytest.raises(DecodeError, match="decompression bomb"):
            check(bomb)
        with pytest.raises(DecodeError, match="over the limit of 512 MiB per image"):
            check(over)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 100 << 20


def _mixed_folder(tmp_path):
    photos = tmp_path / "photos"
    write_pictures(photos, 3)
    heic = encode(make_picture(10, (320, 240)), "HEIF")
    avif = encode(make_picture(11, (320, 240)), "AVIF")
    (photos / "phone.heic").write_bytes(heic)
    (photos / "web.avif").write_bytes(avif)
    (photos / "cut.heic").write_bytes(heic[:len(heic) // 2])
    (photos / "cut.avif").write_bytes(avif[:len(avif) // 2])
    (photos / "camera.dng").write_bytes(dng_bytes(make_picture(12, (320, 240))))
    return photos


def test_index_counts_formats_and_skips_truncated_files(tmp_path, tiny_model):
    photos = _mixed_folder(tmp_path)
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "idx"),
                                       "--model", str(tiny_model / "model.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["formats"] == {"JPEG": 3, "HEIF": 1, "AVIF": 1, "DNG": 1}
    assert report["missing_libraries"] == {}
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {str(photos / "cut.heic"), str(photos / "cut.avif")}
    assert all(reason for reason in skipped.values())
    text = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "idx2"),
                                     "--model", str(tiny_model / "model.onnx")])
    assert "(decoded: 1 AVIF, 1 DNG, 1 HEIF, 3 JPEG)" in text.stdout


def test_a_missing_library_is_reported_once_with_its_install_command(tmp_path, tiny_model,
                                                                     monkeypatch):
    photos = _mixed_folder(tmp_path)
    (photos / "second.heic").write_bytes((photos / "phone.heic").read_bytes()[:-1] + b"\x00")
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import pillow_heif fails
    monkeypatch.setitem(sys.modules, "rawpy", None)
    monkeypatch.setattr(formats, "_registered", {})
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "idx"),
                                       "--model", str(tiny_model / "model.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["missing_libraries"] == {"HEIF": "pip install pillow-heif",
                                           "DNG": "pip install rawpy"}
    assert report["formats"] == {"JPEG": 3, "AVIF": 1}
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    for name in ("phone.heic", "second.heic", "cut.heic"):
        assert "pip install pillow-heif" in skipped[str(photos / name)]
    assert "pip install rawpy" in skipped[str(photos / "camera.dng")]
    lines = [line for line in result.stderr.splitlines() if not line.startswith("skipped ")]
    assert sorted(lines) == [
        "1 DNG files skipped: the library that decodes them is not installed; install it "
        "with: pip install rawpy",
        "3 HEIF files skipped: the library that decodes them is not installed; install it "
        "with: pip install pillow-heif"]
    with pytest.raises(MissingLibraryError) as info:
        probe(photos / "camera.dng")
    assert info.value.install == "pip install rawpy"


def test_raw_decodes_its_preview_or_its_raw_data_upright(tmp_path):
    picture = make_picture(13, (400, 300))
    with_preview, bare = tmp_path / "p.dng", tmp_path / "b.dng"
    with_preview.write_bytes(dng_bytes(picture, preview=picture, orientation=6))
    bare.write_bytes(dng_bytes(picture, orientation=6))
    upright = np.asarray(picture.transpose(Image.Transpose.ROTATE_270), np.float32)
    fast = load_image(with_preview, target=160)  # the preview: full 400 x 300, turned
    assert (fast.width, fast.height, fast.format) == (300, 400, "DNG")
    assert np.abs(np.asarray(fast.image, np.float32) - upright).mean() < 6
    slow = load_image(bare, target=160)  # no preview: the raw data at half size, turned
    assert slow.image.size == (150, 200) and (slow.width, slow.height) == (300, 400)
    half = np.asarray(Image.fromarray(upright.astype(np.uint8)).resize((150, 200)), np.float32)
    assert np.abs(np.asarray(slow.image, np.float32) - half).mean() < 20
    assert probe(bare).format == "DNG"
    (tmp_path / "cut.dng").write_bytes(bare.read_bytes()[:4000])
    with pytest.raises(DecodeError):
        load_image(tmp_path / "cut.dng")


def test_a_heic_and_a_raw_file_group_with_their_jpegs(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    write_pictures(photos, 6, seed=7)
    phone, camera = make_picture(20, (640, 480)), make_picture(21, (640, 480))
    phone.save(photos / "phone.jpg", quality=90)
    (photos / "phone.heic").write_bytes(encode(phone, "HEIF"))
    camera.save(photos / "camera.jpg", quality=90)
    (photos / "camera.dng").write_bytes(dng_bytes(camera, preview=camera))
    index = open_index(tmp_path / "idx", model=str(tiny_model / "model.onnx"), create=True)
    report = index.add_paths([photos])
    assert not report.skipped and report.formats == {"JPEG": 8, "HEIF": 1, "DNG": 1}
    groups = {tuple(g.files) for g in index.duplicates().groups}
    assert (str(photos / "phone.heic"), str(photos / "phone.jpg")) in groups
    assert (str(photos / "camera.dng"), str(photos / "camera.jpg")) in groups


def test_jfif_files_are_indexed_as_jpegs(tmp_path, tiny_model):
    """A newcomer's `b.jfif` (the name Windows browsers often give a saved JPEG) was passed over
    without a word: the walk picks files by suffix, and .jfif and .jfi were not among them."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(("a.jfif", "b.JFI", "c.jpg")):
        Image.new("RGB", (64, 48), (40 * i, 90, 160)).save(photos / name, format="JPEG")
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "idx"),
                                       "--model", str(tiny_model / "model.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["formats"] == {"JPEG": 3} and report["skipped"] == []
