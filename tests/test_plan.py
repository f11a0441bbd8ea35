"""Keep rules on hand-made groups: every rule, ties, protected folders, the plan file."""
from __future__ import annotations

import dataclasses
import json
import re
import os

import pytest
from PIL import Image

from simsearch.errors import PlanError
from simsearch.files import sha256
from simsearch.models import DEFAULT_MODEL_DIR
from simsearch.plan import Plan, make_plan
from simsearch.keeprules import parse_rules
from groups import group as _hand_group

# the plan's dates are local time: fix the zone so that mtimes read the same everywhere
os.environ["TZ"] = "UTC"


def _image(path, size, fmt="JPEG", date=None, mtime=None, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, (seed * 40 % 256, 90, 160))
    exif = Image.Exif()
    if date:
        exif.get_ifd(0x8769)[0x9003] = date
    im.save(path, fmt, exif=exif) if fmt in ("JPEG", "TIFF") else im.save(path, fmt)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _group(*paths):
    return _hand_group(paths)


def _plan(tmp_path, paths, keep=(), protect=()):
    plan = make_plan([_group(*paths)], parse_rules(keep), protect=[str(d) for d in protect])
    return plan.groups[0]


def test_largest_biggest_and_the_reason(tmp_path):
    small = _image(tmp_path / "a" / "small.jpg", (64, 48))
    big = _image(tmp_path / "b" / "big.jpg", (160, 120))
    g = _plan(tmp_path, [small, big], ["largest"])
    assert g.keep == [str(big)] and g.act_on == [str(small)]
    reasons = {f.path: f.reason for f in g.files}
    assert reasons[str(big)] == "kept: 160x120, largest"
    assert reasons[str(small)] == "64x48 against the kept 160x120"
    # same pixels, more bytes: biggest decides where largest ties
    noisy = tmp_path / "c" / "noisy.jpg"
    noisy.parent.mkdir()
    import numpy as np
    # the same colour with noise over it: in colour as much (a grey one would go after it)
    noise = np.random.default_rng(5).normal(0, 30, (120, 160, 3))
    Image.fromarray(np.clip(np.array([0, 90, 160]) + noise, 0, 255).astype(np.uint8)).save(
        noisy, quality=95)
    g = _plan(tmp_path, [big, noisy], ["largest", "biggest"])
    assert g.keep == [str(noisy)] and "biggest file" in g.files[1].reason


def _flag_through_plan(tmp_path, plan, name: str, expected: dict, bad) -> None:
    """The plan file keeps the flag `name` of each file (`expected`), and a plan whose first
    file has `bad` for it is refused, naming the field."""
    plan.save(tmp_path / "plan.json")
    assert {f.path: getattr(f, name) for f in Plan.load(tmp_path / "plan.json").groups[0].files
            } == expected
    data = json.loads((tmp_path / "plan.json").read_text())
    data["groups"][0]["files"][0][name] = bad
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match=f"{name} is not true, false or null"):
        Plan.load(tmp_path / "bad.json")


def test_biggest_puts_a_file_stored_without_loss_first_at_one_size(tmp_path):
    """A newcomer's case (session 31): a screenshot's PNG and its JPEG save, the JPEG the
    bigger file; the plan kept the JPEG and acted on the PNG."""
    from PIL import ImageDraw
    shot = Image.new("RGB", (320, 200), "white")
    ImageDraw.Draw(shot).text((10, 10), "Settings: 53 items", fill="black")
    png, jpg = tmp_path / "shot.png", tmp_path / "shot.jpg"
    shot.save(png)
    shot.save(jpg, quality=98)
    assert jpg.stat().st_size > png.stat().st_size
    g = _plan(tmp_path, [jpg, png], ["largest", "biggest"])
    assert g.keep == [str(png)] and g.act_on == [str(jpg)]
    reasons = {f.path: f.reason for f in g.files}
    assert reasons[str(png)] == ("kept: 320x200 png stored without loss, over a lossy file of the "
                                "picture at that size")
    assert reasons[str(jpg)].startswith("jpeg file of lossy compression")
    # a palette (GIF, a PNG of 256 colours) is a loss of its own: bytes decide there
    pal = tmp_path / "pal.png"
    shot.convert("P").save(pal)
    facts = {f.path: f.lossless for f in g.files}
    assert facts == {str(png): True, str(jpg): False}
    g = _plan(tmp_path, [jpg, pal], ["largest", "biggest"])
    assert g.keep == [str(jpg)] and "biggest file" in g.files[0].reason + g.files[1].reason
    # only after `largest`, which has compared the pictures' sizes: `biggest` alone is bytes
    g = _plan(tmp_path, [jpg, png], ["biggest"])
    assert g.keep == [str(jpg)] and "biggest file" in g.files[0].reason
    # the flag goes through the plan's file; a bad one is refused naming the field
    _flag_through_plan(tmp_path, make_plan([_group(jpg, png)], parse_rules(["largest"])),
                       "lossless", {str(png): True, str(jpg): False}, "yes")


def _photo(size=(240, 180), seed=3):
    """A busy RGB picture (noise over a gradient): its JPEG differs from it in every block."""
    import numpy as np
    rng = np.random.default_rng(seed)
    ys, xs = np.indices(size[::-1])
    base = np.stack([xs * 255 // size[0], ys * 255 // size[1], (xs + ys) % 256], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype("uint8"))


def test_a_png_of_a_jpegs_decoded_pixels_goes_after_that_jpeg(tmp_path):
    """A newcomer's case (session 32): a PNG saved from a JPEG's decoded pixels (a conversion,
    an export), bigger on disk and "stored without loss", was kept and the JPEG it was made
    from acted on. It holds those pixels exactly, nothing more: the JPEG is kept, also turned
    a quarter or flipped; a PNG with one pixel changed, a JPEG saved from a PNG and a PNG with
    any transparency are not such copies, and stay first."""
    from simsearch.resave import decoded
    jpg = tmp_path / "IMG_0001.jpg"
    _photo().save(jpg, quality=85)
    pixels = Image.open(jpg).convert("RGB")
    png = tmp_path / "Screenshot IMG_0001.png"
    pixels.save(png)
    turned = tmp_path / "turned.png"
    pixels.transpose(Image.Transpose.ROTATE_90).save(turned)
    assert png.stat().st_size > jpg.stat().st_size
    assert decoded(str(png), str(jpg)) is True and decoded(str(turned), str(jpg)) is True
    g = _plan(tmp_path, [jpg, png])  # the default rules
    assert g.keep == [str(jpg)] and g.act_on == [str(png)], [f.reason for f in g.files]
    reasons = {f.path: f.reason for f in g.files}
    assert "the next file holds its decoded pixels" in reasons[str(jpg)]
    assert reasons[str(png)].startswith("png file of") and "holding the kept 240x180 jpeg's " \
        "decoded pixels" in reasons[str(png)]
    g = _plan(tmp_path, [jpg, turned])
    assert g.keep == [str(jpg)] and g.act_on == [str(turned)]
    # what it read goes through the plan's file
    plan = make_plan([_group(jpg, png)], parse_rules([]))
    plan.save(tmp_path / "plan.json")
    files = {f.path: f for f in Plan.load(tmp_path / "plan.json").groups[0].files}
    assert files[str(png)].decodes == (str(jpg),) and files[str(jpg)].decodes is None
    data = json.loads((tmp_path / "plan.json").read_text())
    entry = next(f for f in data["groups"][0]["files"] if f["path"] == str(png))
    entry["decodes"] = "IMG_0001.jpg"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(PlanError, match="decodes"):
        Plan.load(tmp_path / "bad.json")

    # one pixel changed (a retouch): it holds something the JPEG lacks, and stays first
    touched = tmp_path / "touched.png"
    edit = pixels.copy()
    edit.putpixel((100, 50), tuple(255 - v for v in edit.getpixel((100, 50))))
    edit.save(touched)
    assert decoded(str(touched), str(jpg)) is False
    g = _plan(tmp_path, [jpg, touched])
    assert g.keep == [str(touched)] and "stored without loss" in g.files[1].reason
    # the other way round: a JPEG saved from a PNG, at quality 98, is not its pixels
    original = tmp_path / "original.png"
    _photo(seed=5).save(original)
    copy = tmp_path / "copy.jpg"
    Image.open(original).save(copy, quality=98)
    assert decoded(str(original), str(copy)) is False
    assert _plan(tmp_path, [copy, original]).keep == [str(original)]
    # a PNG with transparency holds what no JPEG does
    see = tmp_path / "see.png"
    rgba = pixels.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(see)
    assert decoded(str(see), str(jpg)) is None
    # `biggest` on its own is bytes, as the user asked: the PNG
    assert _plan(tmp_path, [jpg, png], ["biggest"]).keep == [str(png)]


def test_a_decoded_copy_ranks_with_its_jpeg_and_never_goes_round(tmp_path):
    """With a second lossless file of the same size beside them (the PNG the JPEG was saved
    from) and a third JPEG, the decoded PNG ranks right after its JPEG: one order, whatever the
    names, and the original PNG is kept."""
    first = tmp_path / "first.png"
    _photo(seed=7).save(first)
    jpg = tmp_path / "photo.jpg"
    Image.open(first).save(jpg, quality=90)
    again = tmp_path / "again.png"
    Image.open(jpg).convert("RGB").save(again)
    other = tmp_path / "other.jpg"
    Image.open(first).save(other, quality=95)
    kept = set()
    for names in (("a", "b", "c", "d"), ("d", "c", "b", "a"), ("b", "d", "a", "c")):
        paths = []
        for name, src in zip(names, (first, jpg, again, other)):
            dst = tmp_path / f"{name}{src.suffix}"
            dst.write_bytes(src.read_bytes())
            paths.append(dst)
        g = _plan(tmp_path, paths)
        kept.add(paths[0].read_bytes() == open(g.keep[0], "rb").read())
        reasons = {os.path.basename(f.path): f.reason for f in g.files}
        assert "decoded pixels" in reasons[paths[2].name], reasons
        for p in paths:
            p.unlink()
    assert kept == {True}


def test_a_grey_file_goes_after_one_holding_the_pictures_colours(tmp_path):
    """A hostile tester's case (session 32): a black-and-white PNG (and a 16-bit grey TIFF) of
    a colour JPEG was kept, "stored without loss", and the colour original acted on. A grey
    file holds less of the picture: the colour JPEG is kept. A JPEG stored in colour whose
    pixels are grey is grey too, and beside it the lossless grey PNG stays first."""
    jpg = tmp_path / "a.jpg"
    _photo(seed=11).save(jpg, quality=92)
    png = tmp_path / "a_bw.png"
    Image.open(jpg).convert("L").save(png)
    tif = tmp_path / "a_bw16.tif"
    Image.open(jpg).convert("L").convert("I;16").save(tif)
    grey_jpg = tmp_path / "a_bw.jpg"
    Image.open(jpg).convert("L").save(grey_jpg, quality=98)
    g = _plan(tmp_path, [jpg, png, tif, grey_jpg])
    # the colour JPEG is the rules' choice; the grey files stored without loss are kept beside
    # it (each holds something the other lacks: a review, session 32), the grey JPEG goes
    assert g.keep == [str(jpg), str(png), str(tif)] and g.act_on == [str(grey_jpg)]
    reasons = {f.path: f.reason for f in g.files}
    assert reasons[str(jpg)] == "kept: 240x180 jpeg holding the picture's colours, over a grey " \
        "file of it"
    assert reasons[str(png)].startswith("kept: the picture in grey stored without loss")
    assert reasons[str(grey_jpg)] == "jpeg file in grey, against the kept jpeg holding the " \
        "picture's colours"
    colours = {f.path: f.colour for f in g.files}
    assert colours == {str(jpg): True, str(png): False, str(tif): False, str(grey_jpg): False}
    # grey pixels stored in colour: both grey, and the lossless file goes first again
    grey_jpg = tmp_path / "a_grey_rgb.jpg"
    Image.open(png).convert("RGB").save(grey_jpg, quality=95)
    g = _plan(tmp_path, [grey_jpg, png])
    assert g.keep == [str(png)] and "stored without loss" in g.files[1].reason
    assert {f.path: f.colour for f in g.files} == {str(grey_jpg): False, str(png): False}
    # a black-and-white conversion saved in colour mode (RGB) is read as grey too
    rgb_png = tmp_path / "a_bw_rgb.png"
    Image.open(png).convert("RGB").save(rgb_png)
    g = _plan(tmp_path, [jpg, rgb_png])
    assert g.keep[0] == str(jpg) and "in grey stored without loss" in g.files[1].reason
    # the flag goes through the plan's file; a bad one is refused naming it
    _flag_through_plan(tmp_path, make_plan([_group(jpg, png)], parse_rules([])), "colour",
                       {str(jpg): True, str(png): False}, "grey")
    # with `biggest` alone, bytes decide, as asked
    assert _plan(tmp_path, [jpg, tif], ["biggest"]).keep == [str(tif)]
    # a coloured caption on a grey original is no colour of the picture's (a trial's copies,
    # session 32): the grey PNG stays first, stored without loss
    from PIL import ImageDraw
    captioned = Image.open(png).convert("RGB")
    ImageDraw.Draw(captioned).rectangle((10, 150, 120, 172), fill=(220, 30, 30))
    captioned.save(tmp_path / "captioned.jpg", quality=95)
    g = _plan(tmp_path, [png, tmp_path / "captioned.jpg"])
    assert g.keep[0] == str(png) and "stored without loss" in g.files[0].reason
    assert {f.path: f.colour for f in g.files}[str(tmp_path / "captioned.jpg")] is None
    # ... but its caption is colour the grey PNG lacks: it is kept too, never acted on
    assert g.keep == [str(png), str(tmp_path / "captioned.jpg")] and g.act_on == []
    assert g.files[1].reason.startswith("kept: holds colour the kept a_bw.png lacks")


def test_a_grey_jpeg_stored_in_colour_goes_after_its_colour_original_in_any_group(tmp_path):
    """A newcomer's case (session 33): a colour JPEG at quality 70 and a black-and-white copy of
    it saved in colour mode (RGB) at quality 98, bigger on disk. With no file stored in grey and
    no lossless file beside a lossy one, colour was not read and bytes kept the grey copy. Now
    every group's files are read: the colour original is kept and the grey copy acted on."""
    jpg = tmp_path / "colour.jpg"
    _photo(seed=23, size=(320, 240)).save(jpg, quality=70)
    grey = tmp_path / "grey_rgb.jpg"
    Image.open(jpg).convert("L").convert("RGB").save(grey, quality=98)
    assert grey.stat().st_size > jpg.stat().st_size and Image.open(grey).mode == "RGB"
    g = _plan(tmp_path, [jpg, grey])
    assert g.keep == [str(jpg)] and g.act_on == [str(grey)], [f.reason for f in g.files]
    # outside session 32's colour rules only grey pixels are recorded (with their chroma)
    assert {f.path: f.colour for f in g.files} == {str(jpg): None, str(grey): False}
    assert [f.chroma is None for f in g.files] == [True, False]
    assert g.files[1].reason == "jpeg file in grey, against the kept jpeg"
    # two colour JPEGs: bytes decide, as before, and the smaller is acted on; so do a copy
    # more saturated (it is not kept too for its colour) and one mostly grey (not demoted)
    from PIL import ImageEnhance
    again = tmp_path / "again.jpg"
    Image.open(jpg).save(again, quality=95)
    g = _plan(tmp_path, [jpg, again])
    assert g.keep == [str(again)] and g.act_on == [str(jpg)]
    vivid = tmp_path / "vivid.jpg"
    ImageEnhance.Color(Image.open(jpg)).enhance(2.0).save(vivid, quality=60)
    g = _plan(tmp_path, [jpg, vivid])
    assert g.keep == [str(jpg)] and g.act_on == [str(vivid)], [f.reason for f in g.files]


def test_a_plan_reads_each_files_colour_once_ahead_and_as_with_colours_would(tmp_path,
                                                                             monkeypatch):
    """make_plan reads every grouped file's colour ahead on threads (`plan._colour_reads`),
    identical bytes once, and plans as `with_colours` reading one by one would."""
    import simsearch.resave
    jpg = tmp_path / "colour.jpg"
    _photo(seed=29).save(jpg, quality=80)
    twin = tmp_path / "twin.jpg"
    twin.write_bytes(jpg.read_bytes())
    grey = tmp_path / "grey.jpg"
    Image.open(jpg).convert("L").convert("RGB").save(grey, quality=97)
    other = tmp_path / "other.jpg"
    _photo(seed=31).save(other, quality=80)
    other_grey = tmp_path / "other_grey.jpg"
    Image.open(other).convert("L").convert("RGB").save(other_grey, quality=97)
    real, reads = simsearch.resave.has_colour, []
    monkeypatch.setattr(simsearch.resave, "has_colour", lambda p: reads.append(p) or real(p))
    plan = make_plan([_group(jpg, twin, grey), _group(other, other_grey)], parse_rules([]))
    # every file once, the twin not at all (its bytes are jpg's)
    assert sorted(reads) == sorted(map(str, (jpg, grey, other, other_grey)))
    for g, colour, bw in zip(plan.groups, (jpg, other), (grey, other_grey)):
        assert g.keep[0] == str(colour) and str(bw) in g.act_on
        assert {f.path: f.colour for f in g.files}[str(bw)] is False


def test_a_changed_file_lends_no_colour_to_its_old_twin_and_big_groups_are_read(tmp_path):
    """A review's cases (session 33): colours were read once per indexed hash, so a file
    rewritten in grey since indexing gave its grey to its old twin, which was acted on for the
    grey copy; and a group counted before its changed file was left out was not read at all,
    and kept a grey PNG over every colour JPEG."""
    jpg = tmp_path / "a.jpg"
    _photo(seed=37).save(jpg, quality=80)
    twin = tmp_path / "b.jpg"
    twin.write_bytes(jpg.read_bytes())
    grey = tmp_path / "grey.jpg"
    Image.open(jpg).convert("L").convert("RGB").save(grey, quality=97)
    group = _group(jpg, twin, grey)
    Image.open(grey).save(jpg, quality=70)  # rewritten since it was indexed, now grey
    g = make_plan([group], parse_rules([])).groups[0]
    files = {os.path.basename(f.path): f for f in g.files}
    assert files["a.jpg"].problem and str(twin) in g.keep and str(grey) in g.act_on, \
        [(f.path, f.colour, f.reason) for f in g.files]
    # a group of BAND_GROUP + 1 files, one changed since indexing: the rest are read
    from simsearch.layout import BAND_GROUP
    png = tmp_path / "grey.png"
    Image.open(grey).convert("L").save(png)
    copies = []
    for i in range(BAND_GROUP - 1):
        p = tmp_path / f"c{i:03d}.jpg"
        p.write_bytes(twin.read_bytes())
        copies.append(p)
    changed = tmp_path / "changed.jpg"
    changed.write_bytes(twin.read_bytes())
    group = _group(png, *copies, changed)
    Image.open(grey).save(changed, quality=60)  # changed since indexing: left out
    g = make_plan([group], parse_rules([])).groups[0]
    assert g.keep[0] != str(png), g.files[0].reason
    assert {f.colour for f in g.files if f.path != str(png) and not f.problem} == {True}


def test_a_colour_file_stays_beside_a_kept_grey_one_palette_or_smaller(tmp_path):
    """A hostile tester's cases (session 33): a 64-colour palette PNG was acted on for a bigger
    grey JPEG of it, and a colour JPEG for a grey palette GIF (a palette is neither lossless nor
    lossy, so bytes decide); and a smaller colour copy was acted on beside a bigger grey JPEG
    stored in colour mode, where a grey file stored as grey kept it. The first file not grey
    the rules rank is kept beside a kept grey one; the others are acted on (a review: every
    colour copy had been kept)."""
    photo = _photo(seed=41, size=(200, 150))
    palette = tmp_path / "jester.png"
    photo.quantize(64).save(palette)
    grey = tmp_path / "jester_grey.jpg"
    photo.convert("L").convert("RGB").save(grey, quality=98)
    assert grey.stat().st_size > palette.stat().st_size
    g = _plan(tmp_path, [palette, grey])
    assert g.keep == [str(grey), str(palette)] and g.act_on == [], [f.reason for f in g.files]
    colour = tmp_path / "duck.jpg"
    photo.save(colour, quality=60)
    gif = tmp_path / "duck_bw.gif"
    photo.convert("L").convert("RGB").quantize(64).save(gif)  # grey, in a palette
    assert Image.open(gif).mode == "P" and gif.stat().st_size > colour.stat().st_size
    g = _plan(tmp_path, [colour, gif])
    assert set(g.keep) == {str(colour), str(gif)} and g.act_on == [], [f.reason for f in g.files]
    # a bigger grey JPEG in colour mode is kept (largest); the best colour copy is kept too,
    # and the smaller ones are acted on
    big_grey = tmp_path / "mountain_bw.jpg"
    photo.resize((400, 300)).convert("L").convert("RGB").save(big_grey, quality=90)
    copies = []
    for side in (280, 200, 120):
        copies.append(tmp_path / f"mountain_{side}.jpg")
        photo.resize((side, side * 3 // 4)).save(copies[-1], quality=90)
    g = _plan(tmp_path, [big_grey, *copies])
    assert g.keep == [str(big_grey), str(copies[0])], [f.reason for f in g.files]
    assert sorted(g.act_on) == sorted(map(str, copies[1:]))
    assert "may hold the picture's colours" in {f.path: f.reason for f in g.files}[str(copies[0])]


def test_a_grey_original_is_not_demoted_for_a_copy_with_a_coloured_caption(tmp_path):
    """Session 33's validation run: recording grey beside any file not grey kept copies with a
    coloured caption (colour in a part only) over their grey originals. Grey is recorded only
    where every other file is in colour throughout; here bytes decide, as before."""
    from PIL import ImageDraw
    original = tmp_path / "scan.jpg"
    _photo(seed=43, size=(320, 240)).convert("L").convert("RGB").save(original, quality=95)
    captioned = Image.open(original).convert("RGB")
    ImageDraw.Draw(captioned).rectangle((10, 200, 200, 230), fill=(220, 30, 30))
    copy = tmp_path / "scan_captioned.jpg"
    captioned.save(copy, quality=75)
    assert original.stat().st_size > copy.stat().st_size
    g = _plan(tmp_path, [original, copy])
    assert g.keep[0] == str(original), [f.reason for f in g.files]
    assert {f.colour for f in g.files} == {None}


def test_grey_is_read_whatever_the_canvas_and_transparency_is_never_grey(tmp_path):
    """A review's cases (session 32): a grey PNG beside a JPEG of its grey pixels stored in
    colour on a canvas 2% smaller (`largest` ties them by the picture) lost to that JPEG, read
    as holding colour for want of a read; a grey logo on a clear ground lost to a JPEG of it
    flattened on blue. The JPEG's colour is read whatever its canvas (grey: the lossless PNG
    first), and a picture with transparency is neither grey nor coloured there."""
    png = tmp_path / "scan.png"
    _photo(seed=13, size=(400, 300)).convert("L").save(png)
    jpg = tmp_path / "scan.jpg"
    Image.open(png).convert("RGB").resize((392, 294)).save(jpg, quality=90)
    made = _group(png, jpg)
    maps = [(1.0, 0.0, 0.0, 1.0), (0.98, 0.0, 0.0, 0.98)]
    made.members[:] = [dataclasses.replace(m, picture=p, extent=1.0, evidence="checked")
                       for m, p in zip(made.members, maps)]
    g = make_plan([made], parse_rules([])).groups[0]
    assert g.keep == [str(png)], [f.reason for f in g.files]
    assert {f.path: f.colour for f in g.files} == {str(png): False, str(jpg): False}
    # a grey logo on a clear ground, and a JPEG of it flattened on blue
    logo = Image.new("LA", (200, 150), (0, 0))
    for x in range(50, 150):
        for y in range(40, 110):
            logo.putpixel((x, y), (90, 255))
    logo.save(tmp_path / "logo.png")
    blue = Image.new("RGB", (200, 150), (30, 60, 200))
    blue.paste(logo.convert("RGBA"), mask=logo.convert("RGBA").getchannel("A"))
    blue.save(tmp_path / "logo_on_blue.jpg", quality=95)
    g = _plan(tmp_path, [tmp_path / "logo.png", tmp_path / "logo_on_blue.jpg"])
    assert g.keep[0] == str(tmp_path / "logo.png"), [f.reason for f in g.files]
    assert g.act_on == []  # the blue ground is colour the logo lacks: kept too
    assert {f.colour for f in g.files} == {None, True}


def test_a_photo_with_colour_in_a_part_is_never_acted_on_for_a_grey_or_faded_file(tmp_path):
    """A hostile tester's cases (session 32): a colour photo of a bird on a grey wall (colour
    in under half its cells, so not "in colour throughout") was acted on for its black-and-
    white PNG, and a colour JPEG for a PNG of it at 3% or 30% saturation. Whatever ranks
    first, a file holding colour the kept file lacks is kept too."""
    from PIL import ImageDraw, ImageEnhance
    import numpy as np
    rng = np.random.default_rng(21)
    wall = Image.fromarray(np.clip(128 + rng.normal(0, 30, (300, 400)), 0, 255).astype("uint8"))
    photo = wall.convert("RGB")
    ImageDraw.Draw(photo).ellipse((150, 100, 250, 180), fill=(230, 120, 20))  # the bird
    jpg = tmp_path / "bird.jpg"
    photo.save(jpg, quality=85)
    copies = {"bird_bw.png": Image.open(jpg).convert("L"),
              "bird_faint.png": ImageEnhance.Color(Image.open(jpg)).enhance(0.03),
              "bird_muted.png": ImageEnhance.Color(Image.open(jpg)).enhance(0.3)}
    for name, img in copies.items():
        img.save(tmp_path / name)
        g = _plan(tmp_path, [jpg, tmp_path / name])
        assert str(jpg) in g.keep and g.act_on in ([], [str(tmp_path / name)]), (name, g.keep)
        reasons = {os.path.basename(f.path): f.reason for f in g.files}
        if str(jpg) != g.keep[0]:
            assert reasons["bird.jpg"].startswith(f"kept: holds colour the kept {name} lacks")
    # a grey JPEG of it, bigger on disk (bytes would keep it): the colour one is kept
    big_grey = tmp_path / "bird_bw.jpg"
    Image.open(jpg).convert("L").save(big_grey, quality=98)
    assert big_grey.stat().st_size > jpg.stat().st_size
    g = _plan(tmp_path, [jpg, big_grey])
    assert str(jpg) in g.keep, [f.reason for f in g.files]


def _toned(photo, kind):
    """A sepia, a blue-tinted black-and-white, a duotone, a split tone, a sepia with a red
    caption, or the photo at 30% of its saturation."""
    from PIL import ImageDraw, ImageEnhance, ImageOps
    if kind == "sepia":
        return ImageOps.colorize(photo.convert("L"), "#2b1a0e", "#f5e6c8", mid="#a07850")
    if kind == "duotone":
        return ImageOps.colorize(photo.convert("L"), (30, 20, 90), (250, 170, 60))
    if kind == "split":
        return ImageOps.colorize(photo.convert("L"), (10, 25, 60), (255, 235, 200),
                                 mid=(128, 120, 115))
    if kind == "captioned":
        out = _toned(photo, "sepia")
        ImageDraw.Draw(out).text((30, 190), "Farm 1952", fill=(200, 30, 30), font_size=28)
        return out
    if kind == "tint":
        return Image.blend(photo.convert("L").convert("RGB"),
                           Image.new("RGB", photo.size, (40, 90, 160)), 0.25)
    return ImageEnhance.Color(photo).enhance(0.3)


@pytest.mark.parametrize("kind,fmt", [("sepia", "PNG"), ("tint", "JPEG"), ("faded", "JPEG"),
                                      ("duotone", "PNG"), ("split", "JPEG"),
                                      ("captioned", "JPEG")])
def test_a_toned_or_faded_copy_kept_for_its_bytes_keeps_its_colour_original_too(tmp_path, kind,
                                                                                 fmt):
    """Left alone in session 33: a sepia, tinted or faded copy of a colour photo, stored without
    loss or bigger on disk, was kept and the photo acted on: their colours lie far from grey too
    (a sepia's more than the photo's). A toned copy's colour follows its brightness, and a
    faded one's lies nearer grey in every part alike; the photo's colours vary at one
    brightness: it holds colour the kept copy lacks, and is kept too, in any group."""
    from simsearch.resave import has_colour
    jpg = tmp_path / "photo.jpg"
    _photo(seed=47, size=(320, 240)).save(jpg, quality=70)
    copy = tmp_path / f"photo_{kind}.{fmt.lower()}"
    _toned(Image.open(jpg).convert("RGB"), kind).save(copy, fmt, **(
        {"quality": 98} if fmt == "JPEG" else {}))
    assert copy.stat().st_size > jpg.stat().st_size
    g = _plan(tmp_path, [jpg, copy])
    assert g.keep == [str(copy), str(jpg)] and g.act_on == [], [f.reason for f in g.files]
    reason = {f.path: f.reason for f in g.files}[str(jpg)]
    assert reason.startswith(f"kept: holds colour the kept photo_{kind}.{fmt.lower()} lacks"), \
        reason
    assert ("faded" if kind == "faded" else "toned") in reason  # (a PNG beside a JPEG: by chroma)
    # a hostile tester's cases (session 34): the duotone, the split tone and the captioned
    # sepia vary too much for the first rule's 1.5 levels, and a dusk photo too little for its
    # floor of 3; read by their share (variety for their chroma) now
    tones = {f.path: f.tones for f in g.files}
    assert tones[str(jpg)] == pytest.approx(tuple(has_colour(jpg)[1:]), abs=1e-3)
    assert tones[str(jpg)][2] > 0.5  # (a busy photo: in colour almost everywhere)
    # a copy of the photo's colours (brighter, more saturated, re-saved) is acted on as before
    from PIL import ImageEnhance
    for name, img in (("bright", ImageEnhance.Brightness(Image.open(jpg)).enhance(1.4)),
                      ("vivid", ImageEnhance.Color(Image.open(jpg)).enhance(1.8))):
        other = tmp_path / f"photo_{name}.jpg"
        img.save(other, quality=98)
        g = _plan(tmp_path, [jpg, other])
        assert g.keep == [str(other)] and g.act_on == [str(jpg)], [f.reason for f in g.files]


def test_beside_a_kept_toned_copy_only_the_first_colour_file_is_kept_and_a_plan_says_why(
        tmp_path):
    """Of several colour files beside a kept sepia JPEG, the first the rules rank is kept too;
    the others are acted on, as copies of it. The plan file records each file's tones and reads
    them back."""
    photo = _photo(seed=53, size=(320, 240))
    sepia = tmp_path / "sepia.jpg"  # (all lossy: a PNG beside them keeps every colour file)
    _toned(photo, "sepia").save(sepia, quality=90)
    copies = []
    for side in (300, 200):
        copies.append(tmp_path / f"colour_{side}.jpg")
        photo.resize((side, side * 3 // 4)).save(copies[-1], quality=90)
    plan = make_plan([_group(sepia, *copies)], parse_rules([]))
    g = plan.groups[0]
    assert g.keep == [str(sepia), str(copies[0])] and g.act_on == [str(copies[1])], \
        [f.reason for f in g.files]
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json").groups[0]
    assert [f.tones for f in again.files] == [f.tones for f in g.files]
    assert all(f.tones is not None for f in g.files)


def test_a_scan_with_colour_in_a_small_part_stays_beside_its_grey_png(tmp_path):
    """Left alone in session 33: a colour scan whose colour is a thin blue signature (its mean
    chroma far under the 2 levels `more_colour` asks) was acted on for its grey PNG. A file with
    any part in colour, read on finer cells, is kept beside a kept file grey throughout; a grey
    JPEG stored in colour mode has no such part, and is acted on as before."""
    from PIL import ImageDraw
    from simsearch.resave import has_colour
    scan = _photo(seed=59, size=(1200, 900)).convert("L").convert("RGB")
    ImageDraw.Draw(scan).line([(300 + 20 * i, 700 + (-1) ** i * 12) for i in range(11)],
                              fill=(20, 40, 190), width=4)
    jpg = tmp_path / "letter.jpg"
    scan.save(jpg, quality=85)
    png = tmp_path / "letter_grey.png"
    Image.open(jpg).convert("L").save(png)
    assert has_colour(jpg).chroma < 2 and has_colour(jpg).spots > 0
    g = _plan(tmp_path, [jpg, png])
    assert g.keep == [str(png), str(jpg)] and g.act_on == [], [f.reason for f in g.files]
    reason = {f.path: f.reason for f in g.files}[str(jpg)]
    assert reason.startswith("kept: holds colour the kept letter_grey.png lacks: ") and \
        "of it is in colour (a stamp, a signature" in reason, reason
    share = float(re.search(r"lacks: ([0-9.]+)% of it", reason).group(1))  # (a review: 0.0%)
    assert share > 0 and share == pytest.approx(100 * has_colour(jpg).spots, rel=0.05)
    grey = tmp_path / "letter_bw.jpg"
    Image.open(png).convert("RGB").save(grey, quality=85)
    assert has_colour(grey).spots == 0
    g = _plan(tmp_path, [grey, png])
    assert g.keep == [str(png)] and g.act_on == [str(grey)], [f.reason for f in g.files]


def test_a_toned_copy_and_a_copy_with_the_cameras_exif_keep_what_the_other_lacks(tmp_path):
    """A hostile tester's cases (session 32): a grey PNG scan was acted on for a sepia-toned
    JPEG made from it ("holding the picture's colours"), and a PNG of a JPEG's decoded pixels
    carrying the camera's EXIF date for the JPEG without it. The scan is kept beside the toned
    JPEG; the PNG with the EXIF date ranks as itself, stored without loss, and is kept."""
    from PIL import ImageOps
    scan = tmp_path / "scan_bw.png"
    _photo(seed=17, size=(300, 200)).convert("L").save(scan)
    sepia = tmp_path / "scan_sepia.jpg"
    ImageOps.colorize(Image.open(scan), (40, 26, 13), (255, 240, 192)).save(sepia, quality=85)
    g = _plan(tmp_path, [scan, sepia])
    assert sorted(g.keep) == sorted([str(scan), str(sepia)]) and g.act_on == []
    web = tmp_path / "IMG_web.jpg"
    _photo(seed=19).save(web, quality=90)
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # (an IFD0 entry: Pillow then writes the Exif sub-IFD too)
    exif.get_ifd(0x8769)[0x9003] = "2015:06:01 10:00:00"
    archive = tmp_path / "IMG_archive.png"
    Image.open(web).convert("RGB").save(archive, exif=exif.tobytes())
    g = _plan(tmp_path, [web, archive])
    assert g.keep == [str(archive)] and g.act_on == [str(web)], [f.reason for f in g.files]
    assert {f.path: f.decodes for f in g.files}[str(archive)] == (str(web),)


def test_lossless_first_never_goes_round_whatever_the_names():
    """A review's case (session 31): a lossless PNG, a bigger JPEG of its size and a JPEG
    4% larger (inside `largest`'s tie band) each beat one other pairwise, and the names
    decided which was kept."""
    from dataclasses import replace

    from simsearch.keeprules import choose
    from simsearch.planfile import PlanFile

    def made(path, side, size, fmt, lossless, k):
        return PlanFile(path=path, size=size, mtime_ns=0, sha256=path, width=side, height=side,
                        format=fmt, date="2020-01-01T00:00:00", date_source="mtime",
                        lossless=lossless, picture=(k, 0.0, 0.0, k), extent=1.0,
                        evidence="centre" if k == 1 else "checked")
    files = [made("/x/a.png", 1000, 1_000_000, "png", True, 1.0),
             made("/x/b.jpg", 1000, 2_000_000, "jpeg", False, 1.0),
             made("/x/c.jpg", 1040, 1_500_000, "jpeg", False, 1.04)]
    for names in (("a", "b", "c"), ("z", "b", "c"), ("a", "z", "c"), ("c", "b", "a"),
                  ("b", "a", "c")):
        renamed = [replace(f, path=f"/x/{n}{f.path[-4:]}") for f, n in zip(files, names)]
        best, _ = choose(renamed, parse_rules(["largest", "biggest", "oldest"]))
        assert best.format == "png" and "stored without loss" in best.reason, names


def test_oldest_newest_from_exif_else_mtime(tmp_path):
    with_exif = _image(tmp_path / "exif.jpg", (80, 60), date="2015:03:04 10:11:12", mtime=2e9)
    plain = _image(tmp_path / "plain.jpg", (80, 60), mtime=1.6e9)  # 2020-09-13, UTC
    g = _plan(tmp_path, [plain, with_exif], ["oldest"])
    assert g.keep == [str(with_exif)]
    assert g.files[1].reason == "kept: 2015-03-04 10:11:12 (EXIF), oldest"
    g = _plan(tmp_path, [plain, with_exif], ["newest"])
    assert g.keep == [str(plain)] and "(mtime), newest" in g.files[0].reason
    assert {f.date_source for f in g.files} == {"exif", "mtime"}


def test_format_order_and_path_preference(tmp_path):
    jpg = _image(tmp_path / "x" / "p.jpg", (80, 60))
    png = _image(tmp_path / "y" / "p.png", (80, 60), fmt="PNG")
    tif = _image(tmp_path / "z" / "p.tif", (80, 60), fmt="TIFF")
    g = _plan(tmp_path, [jpg, png, tif], ["format=tiff,png,jpeg"])
    assert g.keep == [str(tif)] and "preferred format (tiff > png > jpeg)" in g.files[2].reason
    g = _plan(tmp_path, [jpg, png, tif], ["format=jpg,png"])
    assert g.keep == [str(jpg)]
    g = _plan(tmp_path, [jpg, png, tif], [f"path={tmp_path / 'y'}", "format=tiff"])
    assert g.keep == [str(png)] and g.files[1].reason.startswith("kept: under ")
    # the second path rule only decides among files the first one ties
    (tmp_path / "q").mkdir()
    g = _plan(tmp_path, [jpg, png, tif], [f"path={tmp_path / 'q'}", f"path={tmp_path / 'z'}"])
    assert g.keep == [str(tif)]


def test_a_camera_raw_file_has_its_format_and_a_format_rule_keeps_it(tmp_path):
    """A DNG beside the camera's JPEG of it: the plan names its format (dng) and format=dng or
    format=raw keeps it (session 23's newcomer saw format "" and the RAW acted on)."""
    from dng_writer import dng_bytes
    picture = Image.new("RGB", (96, 64), (120, 80, 40))
    raw = tmp_path / "a" / "DSC_0042.DNG"
    raw.parent.mkdir()
    raw.write_bytes(dng_bytes(picture))
    jpg = _image(tmp_path / "b" / "DSC_0042.JPG", (96, 64))
    for rule in ("format=dng,jpeg", "format=raw,jpeg", "format"):  # "format": the default order
        g = _plan(tmp_path, [jpg, raw], [rule])
        assert g.keep == [str(raw)] and g.act_on == [str(jpg)], rule
        assert {f.path: f.format for f in g.files} == {str(raw): "dng", str(jpg): "jpeg"}
    g = _plan(tmp_path, [jpg, raw], ["format=jpeg,raw"])
    assert g.keep == [str(jpg)]
    # a format rule that ties (two JPEGs) is decided by the default rules after it, not the path
    small = _image(tmp_path / "a" / "small.jpg", (48, 32))
    g = _plan(tmp_path, [small, jpg], ["format=raw,jpeg"])
    assert g.keep == [str(jpg)] and "largest" in next(f.reason for f in g.files if f.path == str(jpg))


def test_a_misspelt_format_or_missing_folder_is_refused(tmp_path):
    with pytest.raises(PlanError, match="unknown format 'bogus'"):
        parse_rules(["format=bogus"])
    with pytest.raises(PlanError, match="no such folder"):
        parse_rules([f"path={tmp_path / 'nowhere'}"])
    assert [str(r) for r in parse_rules(["format=jpg,tif,heif,raw,nef"])] == [
        "format=jpeg,tiff,heic,raw,nef", "largest", "biggest", "oldest"]


def test_of_files_that_tie_on_every_rule_one_named_as_a_copy_goes(tmp_path):
    """Identical files: "Aqua (1).jpg" sorts first by path, yet the plain name is kept; a name
    with a number that is not another file's name is no copy's ("Vacation (12).jpg")."""
    original = _image(tmp_path / "originals" / "Aqua.jpg", (80, 60), mtime=1.5e9)
    album = tmp_path / "album" / "Vacation (12).jpg"
    album.parent.mkdir()
    album.write_bytes(original.read_bytes())
    os.utime(album, (1.5e9, 1.5e9))
    g = _plan(tmp_path, [original, album])
    assert g.keep == [str(album)]  # by path: album/ before originals/
    assert next(f for f in g.files if f.path == str(album)).reason.endswith("first by path")
    copy = tmp_path / "dup" / "Aqua (1).jpg"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    os.utime(copy, (1.5e9, 1.5e9))
    for order in ([original, copy], [copy, original]):
        g = _plan(tmp_path, order)
        assert g.keep == [str(original)] and g.act_on == [str(copy)]
        reasons = {f.path: f.reason for f in g.files}
        assert reasons[str(original)] == ("kept: ties on largest, biggest, oldest; the other is "
                                          "named as a copy")
        assert reasons[str(copy)] == "ties with the kept file on every rule; named as a copy"
    second = tmp_path / "dup" / "Copy of Aqua.jpg"
    second.write_bytes(original.read_bytes())
    os.utime(second, (1.5e9, 1.5e9))
    g = _plan(tmp_path, [copy, second, original])
    assert g.keep == [str(original)] and sorted(g.act_on) == sorted([str(copy), str(second)])
    assert next(f for f in g.files if f.path == str(original)).reason.endswith(
        "the others are named as copies")
    # a rule that tells them apart still decides: the copy is kept when it is bigger
    big = tmp_path / "dup" / "Aqua copy.jpg"
    Image.new("RGB", (160, 120), (0, 90, 160)).save(big)
    assert _plan(tmp_path, [original, big]).keep == [str(big)]


def test_ties_fall_to_path_order_whatever_the_input_order(tmp_path):
    files = [_image(tmp_path / f"{c}.jpg", (80, 60), mtime=1.5e9) for c in "cab"]
    for order in (files, files[::-1], files[1:] + files[:1]):
        g = _plan(tmp_path, order, ["largest", "oldest"])
        assert g.keep == [str(tmp_path / "a.jpg")]
        kept = next(f for f in g.files if f.path == g.keep[0])
        assert kept.reason == "kept: ties on largest, oldest, biggest; first by path"
        assert sorted(g.act_on) == [str(tmp_path / "b.jpg"), str(tmp_path / "c.jpg")]


def test_protected_files_are_always_kept_and_the_best_copy_too(tmp_path):
    ref = _image(tmp_path / "reference" / "r.jpg", (64, 48))
    best = _image(tmp_path / "inbox" / "best.jpg", (160, 120))
    other = _image(tmp_path / "inbox" / "other.jpg", (80, 60))
    g = _plan(tmp_path, [ref, best, other], ["largest"], protect=[tmp_path / "reference"])
    assert g.keep == [str(best), str(ref)] and g.act_on == [str(other)]
    assert next(f for f in g.files if f.path == str(ref)).reason.startswith("kept: protected (")
    # a protected folder holding the best copy: nothing else is kept
    g = _plan(tmp_path, [ref, best, other], ["largest"], protect=[tmp_path / "inbox"])
    assert set(g.keep) == {str(best), str(other)} and g.act_on == [str(ref)]


def test_a_file_changed_since_indexing_is_neither_kept_nor_acted_on(tmp_path):
    a = _image(tmp_path / "a.jpg", (80, 60))
    b = _image(tmp_path / "b.jpg", (80, 60), seed=3)
    c = _image(tmp_path / "c.jpg", (40, 30))
    group = _group(a, b, c)
    with open(b, "ab") as fh:
        fh.write(b"more")
    g = make_plan([group], parse_rules(["largest"])).groups[0]
    assert str(b) not in g.keep + g.act_on and "changed since it was indexed" in g.files[1].problem
    os.unlink(c)
    g = make_plan([group], parse_rules(["largest"])).groups[0]
    assert g.decision == "keep-all" and g.act_on == []


def test_plan_file_round_trip_and_refusals(tmp_path):
    a = _image(tmp_path / "a.jpg", (80, 60))
    b = _image(tmp_path / "b.jpg", (40, 30))
    plan = make_plan([_group(a, b)], parse_rules([]), protect=[str(tmp_path / "keepme")])
    plan.save(tmp_path / "plan.json")
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["format"] == "simsearch-plan" and data["version"] == 1
    assert data["summary"] == {"groups": 1, "files": 2, "act_on": 1,
                               "reclaimable_bytes": os.path.getsize(b)}
    f = data["groups"][0]["files"][1]
    assert (f["size"], f["mtime_ns"], f["sha256"]) == (os.path.getsize(b),
                                                       str(os.stat(b).st_mtime_ns), sha256(b))
    assert Plan.load(tmp_path / "plan.json").to_dict() == data
    # a plan written before members said what grouped them still loads, evidence unknown
    older = json.loads(json.dumps(data))
    for f in older["groups"][0]["files"]:
        del f["evidence"]
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert [f.evidence for f in Plan.load(tmp_path / "older.json").groups[0].files] == ["", ""]

    def refused(edit, words):
        bad = json.loads(json.dumps(data))
        edit(bad["groups"][0])
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(PlanError, match=words):
            Plan.load(tmp_path / "bad.json")

    refused(lambda g: g.update(keep=[]), "keeps none")
    refused(lambda g: g.update(keep=g["act_on"]), "both kept and acted on")
    refused(lambda g: g.update(act_on=["/etc/passwd"]), "must name files of the group")
    refused(lambda g: g["files"][1].update(protected=True), "protected")
    refused(lambda g: g.update(decision="burn"), "not one of")
    with pytest.raises(PlanError, match="unknown keep rule 'prettiest'"):
        parse_rules(["largest,prettiest"])
    # a rule with a value at the end of a list: the message says how to give it (a hostile
    # tester's `--keep largest,source,format=jpeg,png`)
    with pytest.raises(PlanError, match="--keep largest,source --keep format=jpeg,png"):
        parse_rules(["largest,source,format=jpeg,png"])
    with pytest.raises(PlanError, match="only format= and path= take a value"):
        parse_rules(["largest,sorce=x"])
    assert [str(r) for r in parse_rules(["largest,source", "format=jpeg,png"])] == \
        ["largest", "source", "format=jpeg,png", "biggest", "oldest"]
    # the default rules not named follow the given ones, to decide their ties
    assert [str(r) for r in parse_rules(["largest,oldest", "format=PNG,jpg"])] == \
        ["largest", "oldest", "format=png,jpeg", "biggest"]
    assert [str(r) for r in parse_rules([])] == ["largest", "biggest", "oldest"]


def test_a_plan_never_replaces_a_file_that_is_not_a_plan(tmp_path):
    a = _image(tmp_path / "a.jpg", (80, 60))
    b = _image(tmp_path / "b.jpg", (40, 30))
    plan = make_plan([_group(a, b)], parse_rules([]))
    before = (tmp_path / "a.jpg").read_bytes()
    with pytest.raises(PlanError, match="a.jpg exists and is not a simsearch plan; it was left"):
        plan.save(a)  # `--plan a.jpg` by mistake
    assert (tmp_path / "a.jpg").read_bytes() == before
    with pytest.raises(PlanError, match="is a folder"):
        plan.save(tmp_path)
    plan.save(tmp_path / "plan.json")
    plan.save(tmp_path / "plan.json")  # a plan is replaced by a newer one
    assert Plan.load(tmp_path / "plan.json").to_dict() == plan.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg", "plan.json"]
    # through the CLI, before any work: dedupe --plan on a photo is refused, the photo kept
    from click.testing import CliRunner
    from simsearch.cli import main
    result = CliRunner().invoke(main, ["dedupe", "--index", str(tmp_path / "no-index"),
                                       "--plan", str(a)])
    assert result.exit_code != 0 and "is not a simsearch plan" in result.output
    assert "no index" not in result.output  # refused before the index is even opened
    assert (tmp_path / "a.jpg").read_bytes() == before
    # reading a file that is not a plan never suggests writing a plan over it
    with pytest.raises(PlanError, match=r"make one with: simsearch dedupe --plan new-plan.json$"):
        Plan.load(a)
    # a plan edited by hand, keys sorted, is still a plan; an empty file may be replaced
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(plan.to_dict(), sort_keys=True, indent=2))
    plan.save(edited)
    (tmp_path / "empty.json").touch()
    plan.save(tmp_path / "empty.json")
    not_a_plan = tmp_path / "other.json"
    not_a_plan.write_text('{"format": "something else", "note": "simsearch-plan"}')
    with pytest.raises(PlanError, match="not a simsearch plan"):
        plan.save(not_a_plan)


def _doubted(*paths, unchecked=()):
    """A hand-made group whose members at the positions `unchecked` the picture check could
    not confirm (grouped on their score alone)."""
    import dataclasses
    g = _group(*paths)
    for i in unchecked:
        g.members[i] = dataclasses.replace(g.members[i], evidence="unchecked")
    return g


def test_files_the_check_could_not_confirm_are_kept_unless_asked(tmp_path):
    centre = _image(tmp_path / "centre.jpg", (100, 80))
    copy = _image(tmp_path / "copy.jpg", (60, 48), seed=1)
    doubt = _image(tmp_path / "doubt.jpg", (400, 320), seed=2)  # the largest: the rule's pick
    g = _doubted(centre, copy, doubt, unchecked=[2])
    plan = make_plan([g], parse_rules(["largest"]))
    p = plan.groups[0]
    # the rules choose among the confirmed files; the doubted one is kept, and says why
    assert p.keep == [str(centre), str(doubt)] and p.act_on == [str(copy)]
    reasons = {f.path: f.reason for f in p.files}
    assert reasons[str(doubt)].startswith("kept: not confirmed by the picture check")
    assert "--act-on-unconfirmed" in reasons[str(doubt)]
    assert not plan.act_on_unconfirmed
    # asked: as before, the largest is kept and the centre with its copy acted on
    asked = make_plan([g], parse_rules(["largest"]), act_on_unconfirmed=True)
    assert asked.groups[0].keep == [str(doubt)]
    assert sorted(asked.groups[0].act_on) == sorted([str(centre), str(copy)])
    # the choice travels with the plan; a plan from before it was made acting on such files
    plan.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json").act_on_unconfirmed is False
    asked.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json").act_on_unconfirmed is True
    data = json.loads((tmp_path / "plan.json").read_text())
    del data["act_on_unconfirmed"]
    assert Plan.from_dict(data).act_on_unconfirmed is True
    # only the centre confirmed: nothing to act on, every file kept and said why
    alone = make_plan([_doubted(centre, doubt, unchecked=[1])], parse_rules([])).groups[0]
    assert alone.decision == "keep-all" and alone.act_on == []
    assert alone.keep == [str(centre), str(doubt)]
    assert {f.path: f.reason for f in alone.files}[str(centre)] == (
        "kept: the group's other files are not confirmed by the picture check")


def test_a_plan_acting_on_an_unconfirmed_file_it_was_not_made_to_is_refused(tmp_path):
    centre = _image(tmp_path / "centre.jpg", (100, 80))
    copy = _image(tmp_path / "copy.jpg", (60, 48), seed=1)
    doubt = _image(tmp_path / "doubt.jpg", (50, 40), seed=2)
    data = make_plan([_doubted(centre, copy, doubt, unchecked=[2])], parse_rules([])).to_dict()
    g = data["groups"][0]
    g["keep"], g["act_on"] = [str(centre)], [str(copy), str(doubt)]  # edited by hand
    with pytest.raises(PlanError, match="doubt.jpg was not confirmed by the picture check"):
        Plan.from_dict(data)
    # a person called it a copy on the review page, or the plan was made to act on such files
    assert Plan.from_dict({**data, "groups": [{**g, "confirmed": [str(doubt)]}]}).groups[0] \
        .confirmed == [str(doubt)]
    assert Plan.from_dict({**data, "act_on_unconfirmed": True}).act_on_unconfirmed


def test_apply_counts_only_the_unconfirmed_files_it_acted_on(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from simsearch.cli import main
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    centre = _image(tmp_path / "p" / "centre.jpg", (100, 80))
    copy = _image(tmp_path / "p" / "copy.jpg", (60, 48), seed=1)
    doubt = _image(tmp_path / "p" / "doubt.jpg", (50, 40), seed=2)
    group = _doubted(centre, copy, doubt, unchecked=[2])
    runner = CliRunner()
    for acting, moved, unconfirmed in ((False, [copy], []), (True, [copy, doubt], [doubt])):
        plan = tmp_path / f"plan-{acting}.json"
        made = make_plan([group], parse_rules([]), act_on_unconfirmed=acting)
        made.save(plan)
        out = runner.invoke(main, ["apply", str(plan), "--action", "move", "--to",
                                   str(tmp_path / f"moved-{acting}"), "--json"])
        assert out.exit_code == 0, out.output
        report = json.loads(out.stdout)
        assert sorted(o["path"] for o in report["done"]) == sorted(map(str, moved))
        assert report["unconfirmed"] == [str(p) for p in unconfirmed]
        assert runner.invoke(main, ["undo", f"{plan}.journal"]).exit_code == 0


def _mapped(path, w, h, size, picture, extent=1.0):
    from simsearch.planfile import PlanFile
    return PlanFile(path=path, size=size, mtime_ns=0, sha256="", width=w, height=h,
                    date="2020-01-01T00:00:00", picture=picture, extent=extent)


def test_largest_compares_the_picture_a_file_holds_when_the_check_mapped_it():
    from simsearch.keeprules import choose
    rules = parse_rules(["largest,biggest"])
    original = _mapped("/p/original.jpg", 1000, 800, 500_000, (1, 0, 0, 1))
    # bars, a turn with filled corners and a one-way stretch hold the picture at its size: a
    # bigger canvas is no more picture, and the next rule decides (here the copy's bytes)
    for copy in (_mapped("/p/bars.jpg", 1000, 1300, 600_000, (1, 0, 0, 1)),
                 _mapped("/p/turned.jpg", 1173, 1032, 600_000, (0.966, -0.259, 0.259, 0.966)),
                 _mapped("/p/stretched.jpg", 1500, 800, 600_000, (1.5, 0, 0, 1))):
        best, rest = choose([original, copy], rules)
        assert best.path == copy.path and best.reason == "kept: 600.0 KB, biggest file"
        assert rest[0].reason == "500.0 KB against the kept 600.0 KB"
    # a quarter-size copy holds it smaller along both axes, however its canvas compares
    small = _mapped("/p/small.jpg", 1000, 800, 900_000, (0.25, 0, 0, 0.25))
    best, rest = choose([small, original], rules)
    assert best.path == original.path
    assert best.reason == "kept: 1000x800, largest (the picture it holds)"
    assert rest[0].reason == ("1000x800, holding the picture at 25% of its size in the kept "
                              "1000x800")
    # a crop holds it at one scale but shows less of it: the original wins, either way round
    crop = _mapped("/p/crop.jpg", 700, 560, 900_000, (1, 0, 0, 1), extent=0.49)
    best, rest = choose([crop, original], rules)
    assert best.path == original.path
    assert rest[0].reason == ("700x560, showing 49% of what the kept 1000x800 shows of the "
                              "picture")
    centre_crop = [_mapped("/p/crop.jpg", 700, 560, 900_000, (1, 0, 0, 1)),
                   _mapped("/p/original.jpg", 1000, 800, 500_000, (1, 0, 0, 1), extent=2.0)]
    assert choose(centre_crop, rules)[0].path == "/p/original.jpg"
    # a crop enlarged: larger along both axes, but fewer pixels of the picture (1.5^2 x 0.29)
    zoomed = _mapped("/p/zoomed.jpg", 720, 540, 900_000, (1.5, 0, 0, 1.5), extent=0.29)
    best, rest = choose([zoomed, original], rules)
    assert best.path == original.path
    assert rest[0].reason == ("720x540, showing 29% of what the kept 1000x800 shows of the "
                              "picture, at 150% of its size there")
    # ... however much it was enlarged: its extra pixels are only its own, enlarged
    zoomed = _mapped("/p/zoomed.jpg", 1667, 1333, 900_000, (1.667, 0, 0, 1.667), extent=0.5)
    assert choose([zoomed, original], rules)[0].path == original.path
    # within 5% of one scale and 15% of one extent: a tie
    near = _mapped("/p/near.jpg", 1000, 800, 900_000, (1.04, 0, 0, 0.97), extent=1.1)
    assert choose([original, near], rules)[0].path == near.path
    # a file the check did not map (a thumbnail too small for keypoints, a plain picture) is
    # taken to hold the picture at its canvas: the mapped files' picture resized
    plain = _mapped("/p/plain.png", 1000, 1300, 100, None, extent=None)
    assert choose([original, plain], rules)[0].path == plain.path
    best, rest = choose([original, small, plain], rules)
    assert best.path == plain.path and best.reason == (
        "kept: 1000x1300, largest (by canvas: the picture check did not map it)")
    assert best.picture is None and best.extent is None  # the estimate is not kept
    assert {f.path: f.reason for f in rest}["/p/small.jpg"] == "1000x800 against the kept 1000x1300"
    thumb = _mapped("/p/thumb.jpg", 250, 200, 90_000, None, extent=None)
    bars = _mapped("/p/bars.jpg", 1000, 1300, 600_000, (1, 0, 0, 1))
    best, rest = choose([thumb, bars, original], rules)
    # the thumbnail does not turn the group back to canvases: bars still tie with the
    # original on the picture, and the bytes decide
    assert best.path == bars.path and best.reason == "kept: 600.0 KB, biggest file"
    reasons = {f.path: f.reason for f in rest}
    assert reasons == {"/p/original.jpg": "500.0 KB against the kept 600.0 KB",
                       "/p/thumb.jpg": "250x200 against the kept 1000x1300"}


def test_when_the_rules_go_round_the_plan_says_so_and_never_fails():
    """Tie bands can go round: 1.00 ties 1.04 on `largest` and wins on bytes, 1.04 ties 1.08
    and wins on bytes, yet 1.08 holds the picture larger than 1.00. Whatever the names, the
    plan keeps one and never says a file lost on a rule that prefers it."""
    import itertools
    from simsearch.keeprules import choose
    rules = parse_rules(["largest,biggest"])
    files = [("a", (1.0, 0, 0, 1.0), 900_000), ("b", (1.04, 0, 0, 1.04), 800_000),
             ("c", (1.08, 0, 0, 1.08), 700_000)]
    for names in itertools.permutations("xyz"):
        group = [_mapped(f"/p/{n}{tag}.jpg", 1000, 800, size, pic)
                 for n, (tag, pic, size) in zip(names, files)]
        best, rest = choose(group, rules)
        assert best.reason == ("kept: it beats as many of the group's files as any other "
                               "(the rules go round)")  # one each: a hostile tester's loop
        for f in rest:
            wins_over_kept = rules[0].compare(best, f) > 0 or (
                rules[0].compare(best, f) == 0 and rules[1].compare(best, f) > 0)
            assert ("the rules go round" in f.reason) == wins_over_kept, (f.path, f.reason)
            assert "beats more" not in f.reason, f.reason  # each beats one: as many


def test_a_plan_keeps_each_files_map_through_its_file(tmp_path):
    from simsearch.dedupe import Group, Member
    a, b = _image(tmp_path / "a.jpg", (64, 48)), _image(tmp_path / "b.jpg", (64, 48), seed=1)
    members = [Member(i, str(p), 1.0, sha256(p), p.stat().st_size, 64, 48, p.stat().st_mtime_ns,
                      e, picture, extent)
               for i, p, e, picture, extent in ((0, a, "centre", (1.0, 0.0, 0.0, 1.0), 1.0),
                                                (1, b, "checked", (0.5, 0.0, 0.0, 0.5), 1.0))]
    plan = make_plan([Group("near", members)], parse_rules([]))
    assert plan.groups[0].keep == [str(a)]  # same canvas; b holds the picture at half size
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert [(f.picture, f.extent) for f in again.groups[0].files] == [
        ((1.0, 0.0, 0.0, 1.0), 1.0), ((0.5, 0.0, 0.0, 0.5), 1.0)]
    # an extent of 0 (none of the centre's keypoints fall in the file: extent_of gives it
    # when the other's all fall outside) is a plan dedupe makes: it loads (session 26)
    from simsearch.layout import extent_of
    assert extent_of((0.2, 1.0)) == 0.0
    zero = json.loads((tmp_path / "plan.json").read_text())
    zero["groups"][0]["files"][1]["extent"] = 0.0
    (tmp_path / "zero.json").write_text(json.dumps(zero))
    assert Plan.load(tmp_path / "zero.json").groups[0].files[1].extent == 0.0
    # ... and through a plan's own dict (the review page's server reads it so)
    assert Plan.from_dict(plan.to_dict()).to_dict() == plan.to_dict()
    # a plan file whose figures are not numbers is refused, naming the file
    data = json.loads((tmp_path / "plan.json").read_text())
    for key, bad in (("picture", [1, 2, 3]), ("picture", "wide"), ("picture", [1, None, 0, 1]),
                     ("picture", [1, "x", 0, 1]), ("extent", "wide"),
                     ("extent", True), ("extent", -5), ("extent", float("inf")),
                     ("size", "big"), ("mtime_ns", "abc")):
        broken = json.loads(json.dumps(data))
        broken["groups"][0]["files"][1][key] = bad
        (tmp_path / "bad.json").write_text(json.dumps(broken))
        # the entry is named: its group, its place and its path
        with pytest.raises(PlanError, match=f"bad.json: group 1, file 2 \\({re.escape(str(b))}\\)"
                                            f": .*{key}|bad.json: group 1, file 2 .*invalid"):
            Plan.load(tmp_path / "bad.json")
    for edit, words in ((lambda f: f.pop("sha256"), "missing sha256"),
                        (lambda f: f.update(foo=1), "unknown foo .*make it again")):
        broken = json.loads(json.dumps(data))
        edit(broken["groups"][0]["files"][1])
        (tmp_path / "bad.json").write_text(json.dumps(broken))
        with pytest.raises(PlanError, match=f"group 1, file 2 .*: {words}"):
            Plan.load(tmp_path / "bad.json")


def test_a_file_holding_the_picture_finer_than_the_kept_one_is_kept_too(tmp_path):
    """The rules keep a collage (it shows more of the picture: both photos), and a photo it
    holds at a third of its size is kept too, not acted on (trials/keep-finer-rule.md); a copy
    the collage holds at its own size or larger is acted on as before."""
    import dataclasses
    paths = {}
    for name, size in (("collage.png", (810, 300)), ("IMG_1.jpg", (1200, 900)),
                       ("half.jpg", (405, 150)), ("zoom.jpg", (1000, 370))):
        paths[name] = tmp_path / name
        Image.new("RGB", size, "grey").save(paths[name])
    maps = {"collage.png": ((1, 0, 0, 1), 1.0), "IMG_1.jpg": ((3, 0, 0, 3), 0.5),
            "half.jpg": ((0.5, 0, 0, 0.5), 1.0), "zoom.jpg": ((1.25, 0, 0, 1.25), 0.6)}
    made = _hand_group(list(paths.values()))
    made.members[:] = [dataclasses.replace(m, evidence="checked", picture=maps[name][0],
                                           extent=maps[name][1])
                       for m, name in zip(made.members, paths)]
    g = make_plan([made], parse_rules(["largest"])).groups[0]
    assert g.keep == [str(paths["collage.png"]), str(paths["IMG_1.jpg"])]
    assert sorted(g.act_on) == sorted([str(paths["half.jpg"]), str(paths["zoom.jpg"])])
    reason = next(f.reason for f in g.files if f.path == str(paths["IMG_1.jpg"]))
    assert reason == ("kept: holds the picture at 300% of its size in the kept collage.png: "
                      "detail that file lacks (as a photo inside a collage)")


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "default.onnx").is_file(), reason="no default model")
def test_the_default_plan_never_trashes_a_photo_for_the_collage_holding_it(tmp_path):
    """Two photos pasted small side by side: the shipped model and picture check group the
    collage with a photo, and the plan keeps both (before, it acted on the full-size photo)."""
    from simsearch.demo import scene
    from simsearch.index import open_index
    photos = tmp_path / "p"
    photos.mkdir()
    a, b = scene(11, (1200, 900)), scene(12, (1200, 900))
    a.save(photos / "IMG_1.jpg", quality=92)
    b.save(photos / "IMG_2.jpg", quality=92)
    collage = Image.new("RGB", (810, 300), "white")
    collage.paste(a.resize((400, 300)), (0, 0))
    collage.paste(b.resize((400, 300)), (410, 0))
    collage.save(photos / "collage.png")
    index = open_index(tmp_path / "idx", model="default", create=True)
    index.add_paths([photos])
    report = index.duplicates()
    grouped = [g for g in report.groups if str(photos / "collage.png") in
               [m.path for m in g.members]]
    assert grouped, "the collage was grouped with no photo"
    plan = make_plan(report.groups, parse_rules([]))  # the default rules
    acted = {p for g in plan.groups for p in g.act_on}
    assert not acted & {str(photos / "IMG_1.jpg"), str(photos / "IMG_2.jpg")}


def test_without_maps_canvases_tell_a_file_holding_the_picture_finer(tmp_path):
    """Unmapped (a thumbnail too small for keypoints): kept by a rule that prefers the
    thumbnail's folder, the full-size photo is kept too, by canvas (sides sorted: turned too)."""
    thumb = tmp_path / "made" / "thumb.jpg"
    photo = tmp_path / "photos" / "photo.jpg"
    turned = tmp_path / "photos" / "turned.jpg"
    for path, size in ((thumb, (160, 120)), (photo, (640, 480)), (turned, (480, 640))):
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", size, "grey").save(path)
    g = make_plan([_hand_group([thumb, photo, turned])],
                  parse_rules([f"path={tmp_path / 'made'}"])).groups[0]
    assert g.keep == [str(thumb), str(photo), str(turned)] and g.act_on == []
    assert {f.path: f.reason for f in g.files}[str(turned)].startswith(
        "kept: holds the picture at 400% of its size in the kept thumb.jpg")


def _pages(path, covers, fmt="TIFF"):
    """A file of several frames: each of `covers` (seeds) a flat page of its own colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pages = [Image.new("RGB", (120, 90), (s * 40 % 256, 90, 160)) for s in covers]
    pages[0].save(path, fmt, save_all=True, append_images=pages[1:])
    return path


def test_a_file_of_several_frames_is_kept_unless_its_twin_is(tmp_path):
    """A hostile tester's case (session 31): two scans with one cover page (score 1.0) and a
    scan beside a JPEG of its cover; the plan acted on a file whose later pages no other file
    held."""
    contract = _pages(tmp_path / "contract.tif", [0, 1, 2])
    invoice = _pages(tmp_path / "invoice.tif", [0, 3, 4])
    g = _plan(tmp_path, [contract, invoice], ["largest", "biggest"])
    assert g.act_on == [] and sorted(g.keep) == sorted([str(contract), str(invoice)])
    kept = next(f for f in g.files if f.path not in g.keep[:1])
    assert kept.frames == 3 and kept.reason.startswith("kept: holds 3 pages, and only the first")
    cover = _image(tmp_path / "cover.jpg", (240, 180))  # larger: the rules' choice
    g = _plan(tmp_path, [contract, cover], ["largest"])
    assert g.keep == [str(cover), str(contract)] and g.act_on == []
    # a twin with the same bytes holds every page: one of the two is acted on
    twin = tmp_path / "twin.tif"
    twin.write_bytes(contract.read_bytes())
    g = _plan(tmp_path, [contract, twin, cover], ["largest"])
    assert len(g.act_on) == 1 and g.act_on[0] in (str(contract), str(twin))
    # a GIF's frames too; a file of one frame in such a format is as any other
    gif = _pages(tmp_path / "clip.gif", [0, 5], fmt="GIF")
    one = _pages(tmp_path / "one.gif", [0], fmt="GIF")
    g = _plan(tmp_path, [gif, one, cover], ["largest"])
    assert g.keep == [str(cover), str(gif)] and g.act_on == [str(one)]
    assert {f.path: f.frames for f in g.files}[str(gif)] == 2


def test_the_frames_of_a_plan_go_through_its_file(tmp_path):
    contract = _pages(tmp_path / "contract.tif", [0, 1])
    plan = make_plan([_group(contract, _image(tmp_path / "cover.jpg", (240, 180)))],
                     parse_rules(["largest"]))
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert {f.path: f.frames for f in again.groups[0].files}[str(contract)] == 2
    data = json.loads((tmp_path / "plan.json").read_text())
    for f in data["groups"][0]["files"]:
        del f["frames"]  # a plan written before frames were read: one frame each
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert {f.frames for f in Plan.load(tmp_path / "old.json").groups[0].files} == {1}


def test_frames_with_the_best_file_of_several_frames_a_protected_twin_and_bad_plans(tmp_path):
    scan = _pages(tmp_path / "a" / "scan.tif", [0, 1, 2])
    other = _pages(tmp_path / "b" / "other.tif", [0, 7])
    cover = _image(tmp_path / "c" / "cover.jpg", (60, 45))  # smaller: the scan is the best
    g = _plan(tmp_path, [scan, other, cover], ["largest", "biggest"])
    assert g.keep[0] == str(scan) and str(other) in g.keep and g.act_on == [str(cover)]
    # a protected twin holds every page: the unprotected one may go
    twin = tmp_path / "p" / "twin.tif"
    twin.parent.mkdir()
    twin.write_bytes(other.read_bytes())
    g = _plan(tmp_path, [scan, other, twin], ["largest", "biggest"], protect=[tmp_path / "p"])
    assert str(twin) in g.keep and g.act_on == [str(other)]
    # a file of several frames is kept with --act-on-unconfirmed too, even unconfirmed
    made = _group(scan, other)
    made.members[1] = dataclasses.replace(made.members[1], evidence="unchecked")
    for unconfirmed in (False, True):
        plan = make_plan([made], parse_rules(["largest"]), act_on_unconfirmed=unconfirmed)
        assert plan.groups[0].act_on == []
    # frames read back from a plan must be a whole number of at least 1
    plan.save(tmp_path / "plan.json")
    data = json.loads((tmp_path / "plan.json").read_text())
    for bad in ("3", None, 0, True, 1.5):
        data["groups"][0]["files"][0]["frames"] = bad
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(PlanError, match="frames is not a whole number"):
            Plan.load(tmp_path / "bad.json")


def test_what_is_stored_without_loss_is_read_from_the_header(tmp_path):
    """WebP's kind past an extended header (a review's case: EXIF made a lossless WebP read
    as lossy), a TIFF compressed as JPEG, a palette (neither), a JPEG."""
    from simsearch.planfile import _header
    img = Image.effect_noise((64, 48), 40).convert("RGB")
    exif = Image.Exif()
    exif[0x010E] = "a description"
    cases = {"lossless.webp": dict(lossless=True, exif=exif),
             "lossy.webp": dict(quality=80, exif=exif), "plain.webp": dict(lossless=True), "deflate.tif": dict(compression="tiff_deflate"),
             "jpeg.tif": dict(compression="jpeg"), "photo.jpg": dict(quality=90),
             "grey.png": {}}
    for name, kw in cases.items():
        (img.convert("L") if name == "grey.png" else img).save(tmp_path / name, **kw)
    img.convert("P").save(tmp_path / "palette.png")
    got = {p.name: _header(str(p)).lossless for p in tmp_path.iterdir()}
    assert got == {"lossless.webp": True, "lossy.webp": False, "plain.webp": True,
                   "deflate.tif": True, "jpeg.tif": False, "photo.jpg": False, "grey.png": True,
                   "palette.png": None}


def test_a_hand_edited_plan_with_wrong_types_is_refused_naming_the_field(tmp_path):
    """A hostile tester's hand-edited plans (session 33): a path that is a number and a size of
    Infinity stopped apply and review with a traceback; `"act_on_unconfirmed": "no"` counted
    as true and a file marked not confirmed was moved; an evidence word of its own passed; and
    `"groups": {}` made an empty journal. Each is refused before any file is touched."""
    from simsearch.dedupe import EVIDENCE
    from simsearch.plan import EVIDENCE as PLAN_EVIDENCE
    assert set(PLAN_EVIDENCE) == set(EVIDENCE)
    a, b = _image(tmp_path / "a.jpg", (64, 48)), _image(tmp_path / "b.jpg", (64, 48), seed=1)
    make_plan([_group(a, b)], parse_rules([])).save(tmp_path / "plan.json")
    good = json.loads((tmp_path / "plan.json").read_text())
    cases = [(("groups", 0, "files", 0, "path"), 5, "path is not text"),
             (("groups", 0, "files", 0, "size"), float("inf"), "size is not a whole number"),
             (("groups", 0, "files", 0, "size"), -3, "size is not a whole number"),
             (("groups", 0, "files", 0, "mtime_ns"), "soon", "mtime_ns is not a whole number"),
             (("groups", 0, "files", 0, "evidence"), "banana", "evidence 'banana' is not one of"),
             (("groups", 0, "files", 0, "score"), "high", "score: 'high' is not a number"),
             (("groups", 0, "files", 0, "protected"), "no", "protected is not true, false"),
             (("act_on_unconfirmed",), "no", "act_on_unconfirmed is not true, false or null"),
             (("groups",), {}, "groups is not a list"),
             (("index",), 5, "index is not text"),
             (("threshold",), "high", "threshold: 'high' is not a number"),
             (("groups", 0, "files", 0, "size"), 10 ** 400, "size is not a whole number"),
             (("groups", 0, "files", 0, "path"), "/a\0b.jpg", "path is not text"),
             (("groups", 0, "min_score"), None, "min_score is not a number"),
             (("groups", 0, "keep"), "a.jpg", "keep is not a list"),
             (("groups", 0), 7, "a group is not an object"),
             (("groups", 0, "files", 0, "tones"), [3.0], "tones: [3.0] is not three numbers"),
             (("groups", 0, "files", 0, "tones"), [3.0, 300, 0], "tones: 300 is not a number"),
             (("groups", 0, "files", 0, "tones"), [3.0, 3.0, 2], "tones: 2 is not a share"),
             (("groups", 0, "files", 0, "tones"), "vivid", "tones: 'vivid' is not three")]
    for where, value, message in cases:
        data = json.loads(json.dumps(good))
        node = data
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(PlanError, match=re.escape(message)):
            Plan.load(tmp_path / "bad.json")
    assert Plan.load(tmp_path / "plan.json").groups[0].files[0].path in (str(a), str(b))
    # null is no, as the review page reads it; absent is yes (plans made before the flag)
    for value, expected in ((None, False), (False, False), (True, True)):
        data = json.loads(json.dumps(good))
        data["act_on_unconfirmed"] = value
        (tmp_path / "flag.json").write_text(json.dumps(data))
        assert Plan.load(tmp_path / "flag.json").act_on_unconfirmed is expected
    del data["act_on_unconfirmed"]
    (tmp_path / "flag.json").write_text(json.dumps(data))
    assert Plan.load(tmp_path / "flag.json").act_on_unconfirmed is True


def test_not_alike_holds_only_files_every_known_score_puts_under_the_threshold(tmp_path):
    """`Plan.not_alike`: a file acted on is held back when it scores under the plan's
    threshold (less ALIKE_SLACK) with every kept file of its group and its centre; one pair
    not known (a file not indexed), or a plan without a threshold, holds nothing back."""
    from simsearch.plan import ALIKE_SLACK
    a, b, c = (_image(tmp_path / f"{n}.jpg", (64 + 8 * k, 48), seed=k)
               for k, n in enumerate("abc"))
    plan = make_plan([_group(c, b, a)], parse_rules(["largest"]), threshold=0.8)
    g = plan.groups[0]
    assert g.keep == [str(c)] and g.centre == str(c) and sorted(g.act_on) == [str(a), str(b)]
    table = {frozenset((str(a), str(c))): 0.5, frozenset((str(b), str(c))): 0.9}
    asked = []

    def scores(pairs):
        asked.extend(pairs)
        return [table.get(frozenset(p)) for p in pairs]
    held = plan.not_alike(scores)
    assert list(held) == [str(a)] and "best score 0.50, the plan's threshold 0.80" in held[str(a)]
    assert sorted(asked) == sorted([(str(b), str(c)), (str(a), str(c))])
    table[frozenset((str(a), str(c)))] = 0.8 - ALIKE_SLACK  # (at the floor: alike)
    assert plan.not_alike(scores) == {}
    table[frozenset((str(a), str(c)))] = 0.5
    # a kept file the index does not hold leaves the others to judge (a tester's case: it
    # had turned the check off for the whole group) ...
    g.keep.append(str(tmp_path / "backup.jpg"))
    assert list(plan.not_alike(scores)) == [str(a)]
    # ... but without the pair with the centre (which every grouped file reaches) nothing is
    # judged: the file is left to the other checks
    del table[frozenset((str(a), str(c)))]
    table[frozenset((str(a), str(tmp_path / "backup.jpg")))] = 0.1
    assert plan.not_alike(scores) == {}
    # the index holding other content under a file's name than the plan's (a file indexed
    # again since): that file is held back, whatever its vector says; under a kept file's name,
    # that pair is not known
    table[frozenset((str(a), str(c)))] = 0.95
    other = {str(a): "0" * 64, str(b): g.files[1].sha256 if g.files[1].path == str(b) else
             next(f.sha256 for f in g.files if f.path == str(b)), str(c): "f" * 64}
    held = plan.not_alike(scores, lambda paths: {p: other[p] for p in paths if p in other})
    assert list(held) == [str(a)] and "other content under its name" in held[str(a)]
    plan.threshold = None
    assert plan.not_alike(lambda pairs: [0.0] * len(pairs)) == {}


def test_a_file_kept_for_lacking_colour_does_not_stop_a_colour_file_beside_a_grey_one():
    """A review's case (session 34): one flag said both "a file not grey is kept beside the
    kept grey one" and "a file holding colour the kept one lacks is kept", so a file kept for
    the second stopped the first from keeping a colour file it had kept before. The second
    now asks the files kept beside so far whether they hold its colour."""
    from simsearch.keeprules import kept_too
    from simsearch.planfile import PlanFile
    grey = PlanFile(path="/p/grey.jpg", size=9, mtime_ns=0, sha256="a", width=8, height=8,
                    colour=False, chroma=0.0, tones=(0.0, 0.0, 0.0))
    other = PlanFile(path="/p/other.jpg", size=8, mtime_ns=0, sha256="b", width=8, height=8)
    spotted = dataclasses.replace(other, path="/p/spotted.jpg", tones=(0.5, 0.5, 0.01))
    assert kept_too(grey, other, beside=[spotted]) is not None  # (colour_beside_grey)
    assert kept_too(grey, other, coloured=True) is None
    assert "of it is in colour" in kept_too(grey, spotted, coloured=True)
    photo = dataclasses.replace(other, path="/p/photo.jpg", tones=(12.0, 11.0, 0.9))
    assert "of it is in colour" in kept_too(grey, photo, coloured=True)
    assert kept_too(grey, spotted, coloured=True, beside=[photo]) is None  # (photo holds it)


def test_beside_a_kept_sepia_and_a_faded_copy_the_colour_original_is_kept_too(tmp_path):
    """A hostile tester's case (session 34): a sepia JPEG (biggest), a faded copy and the colour
    original: the faded copy was kept beside the sepia (it holds colour the sepia lacks) and
    the original acted on. A file is kept for colour the kept file lacks unless a file kept
    beside it so far holds that colour: the original holds colour the faded copy lacks."""
    photo = _photo(seed=61, size=(320, 240))
    files = {"sepia.jpg": (_toned(photo, "sepia"), 98), "faded.jpg": (_toned(photo, "faded"), 92),
             "photo.jpg": (photo, 75)}
    for name, (img, quality) in files.items():
        img.save(tmp_path / name, quality=quality)
    g = _plan(tmp_path, [tmp_path / n for n in files])
    assert g.keep[0] == str(tmp_path / "sepia.jpg") and g.act_on == [], \
        [f.reason for f in g.files]
    # a second copy of the photo's colours is acted on: the photo kept holds them
    (tmp_path / "photo_small.jpg").write_bytes(b"")
    photo.resize((240, 180)).save(tmp_path / "photo_small.jpg", quality=75)
    g = _plan(tmp_path, [tmp_path / n for n in [*files, "photo_small.jpg"]])
    assert g.act_on == [str(tmp_path / "photo_small.jpg")], [f.reason for f in g.files]


def test_a_dusk_photo_stays_beside_its_bigger_sepia(tmp_path):
    """A hostile tester's case (session 34): a photo at a mean brightness of about 21/255 varies
    in colour by under 3 levels, the first rule's floor, and was acted on for its sepia PNG."""
    from PIL import ImageEnhance
    dusk = tmp_path / "dusk.jpg"
    muted = ImageEnhance.Color(_photo(seed=67, size=(320, 240))).enhance(0.25)
    ImageEnhance.Brightness(muted).enhance(0.17).save(dusk, quality=90)
    sepia = tmp_path / "dusk_sepia.png"
    _toned(Image.open(dusk).convert("RGB"), "sepia").save(sepia)
    from simsearch.resave import has_colour
    assert 2 <= has_colour(dusk).variety < 3, has_colour(dusk)
    g = _plan(tmp_path, [dusk, sepia])
    assert g.keep == [str(sepia), str(dusk)] and g.act_on == [], [f.reason for f in g.files]


def test_only_a_file_in_the_photos_colours_stands_in_for_it_beside_a_kept_sepia(tmp_path):
    """A review's case (session 34): a file kept beside the sepia (here protected) that holds
    none of the photo's colours (a grey copy with a red caption) stood in for the photo, which
    was acted on. Only a file read in colour, not toned and not much greyer stands in."""
    from PIL import ImageDraw
    photo = _photo(seed=71, size=(320, 240))
    _toned(photo, "sepia").save(tmp_path / "sepia.jpg", quality=98)
    (tmp_path / "keep").mkdir()
    grey = photo.convert("L").convert("RGB")
    ImageDraw.Draw(grey).text((30, 190), "Farm 1952", fill=(200, 30, 30), font_size=28)
    grey.save(tmp_path / "keep" / "grey_caption.jpg", quality=80)
    photo.save(tmp_path / "photo.jpg", quality=75)
    paths = [tmp_path / "sepia.jpg", tmp_path / "keep" / "grey_caption.jpg", tmp_path / "photo.jpg"]
    g = _plan(tmp_path, paths, protect=[tmp_path / "keep"])
    assert str(tmp_path / "photo.jpg") in g.keep and g.act_on == [], [f.reason for f in g.files]
