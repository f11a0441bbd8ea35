import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import make_picture
from simsearch.errors import DecodeError
from simsearch.images import load_image, resize_square, to_rgb


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"),
                                        ("BMP", ".bmp"), ("TIFF", ".tif"), ("GIF", ".gif")])
def test_decodes_every_format(tmp_path, fmt, suffix):
    path = tmp_path / f"x{suffix}"
    make_picture(1, (90, 60)).save(path, format=fmt)
    picture = load_image(path)
    assert picture.image.mode == "RGB"
    assert picture.image.size == (90, 60) and (picture.width, picture.height) == (90, 60)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    pixel = load_image(tmp_path / "a.gif").image.getpixel((10, 10))
    assert pixel[0] > 200 and pixel[2] < 50


@pytest.mark.parametrize("orientation,expect", [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)),
                                                 (8, (20, 40))])
def test_exif_orientation_applied(tmp_path, orientation, expect):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 10))  # a white mark in the top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.jpg", exif=exif, quality=95)
    picture = load_image(tmp_path / "o.jpg")
    assert picture.image.size == expect and (picture.width, picture.height) == expect
    if orientation == 6:  # rotated 90 clockwise for display: the mark moves to the top right
        assert picture.image.getpixel((15, 4))[0] > 200


def test_alpha_composited_on_white(tmp_path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png").image.getpixel((3, 3)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([10, 20, 30] + [200, 0, 0] * 255)
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    assert load_image(tmp_path / "p.png").image.getpixel((1, 1)) == (255, 255, 255)


def test_cmyk_grayscale_and_16_bit(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    r, g, b = load_image(tmp_path / "c.jpg").image.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60
    Image.new("L", (8, 8), 128).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").image.getpixel((0, 0)) == (128, 128, 128)
    arr = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    value = load_image(tmp_path / "d.png").image.getpixel((0, 0))[0]
    assert 125 <= value <= 130


def test_to_rgb_modes():
    for mode in ("1", "L", "LA", "RGBA", "I", "F", "YCbCr"):
        assert to_rgb(Image.new(mode, (4, 4))).mode == "RGB"


def test_jpeg_draft_decodes_at_reduced_size(tmp_path):
    make_picture(2, (1600, 1200)).save(tmp_path / "big.jpg", quality=90)
    picture = load_image(tmp_path / "big.jpg", target=160)
    assert (picture.width, picture.height) == (1600, 1200)
    assert min(picture.image.size) >= 160 and picture.image.size[0] <= 400


def test_broken_files_raise_typed_error_with_path(tmp_path):
    good = io.BytesIO()
    make_picture(3).save(good, format="JPEG")
    cases = {"empty.jpg": b"", "text.jpg": b"hello, I am not a picture",
             "trunc.jpg": good.getvalue()[: len(good.getvalue()) // 3]}
    png = io.BytesIO()
    make_picture(3).save(png, format="PNG")
    cases["trunc.png"] = png.getvalue()[:200]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DecodeError) as info:
            load_image(tmp_path / name)
        assert name in str(info.value) and info.value.reason
    with pytest.raises(DecodeError, match="not found"):
        load_image(tmp_path / "missing.jpg")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(40000, 40000))
    with pytest.raises(DecodeError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")


def test_resize_square():
    assert resize_square(make_picture(4, (300, 100)), 64).size == (64, 64)


def test_progressive_jpeg_at_one_eighth_decodes_from_its_dc_scans(tmp_path, monkeypatch):
    from simsearch import jpeg

    big = make_picture(11, (2400, 1800))
    prog, base = tmp_path / "prog.jpg", tmp_path / "base.jpg"
    big.save(prog, quality=90, progressive=True)
    big.save(base, quality=90)
    data = prog.read_bytes()
    cut = jpeg.dc_scans_end(data)
    assert isinstance(cut, int) and cut < len(data) // 2  # the DC scans are a small part
    assert jpeg.dc_scans_end(base.read_bytes()) is None
    assert not isinstance(jpeg.dc_scans_end(data[:cut // 2]), int)  # cut short: read on

    with Image.open(prog) as img:  # what a full decode at the same scale gives
        img.draft("RGB", (160, 160))
        full = np.asarray(img.convert("RGB"), np.float32)
    picture = load_image(prog, target=160)
    assert (picture.width, picture.height) == (2400, 1800)
    fast = np.asarray(picture.image, np.float32)
    assert fast.shape == full.shape == (225, 300, 3)
    assert np.abs(fast - full).mean() < 3  # only the DC refinement bit is missing
    with open(prog, "rb") as f:
        direct = jpeg.dc_only(f, (300, 225))
    assert direct is not None
    np.testing.assert_array_equal(np.asarray(direct.convert("RGB")), fast)

    calls = []
    monkeypatch.setattr(jpeg, "dc_only", lambda *a: calls.append(a))
    small = tmp_path / "small.jpg"
    make_picture(12, (640, 480)).save(small, quality=90, progressive=True)
    load_image(small, target=160)  # 1/2 scale: AC coefficients matter, full decode
    load_image(prog)  # no target: full size
    assert calls == []
    load_image(prog, target=160)
    assert len(calls) == 1
    odd = tmp_path / "odd.jpg"  # a width that is not a multiple of 8 takes the fast path too
    make_picture(13, (2401, 1799)).save(odd, quality=90, progressive=True)
    load_image(odd, target=160)
    assert len(calls) == 2
