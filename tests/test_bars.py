"""Bands and flat bars along a file's border and filled corners of a turned picture
(simsearch.detail bars, corners), and the plan reading them: a letterboxed or turned copy adds
no picture and loses a tie on `largest`; a band holding something (a caption) keeps both files
(simsearch.layout.bars_between, corners_between, banded; simsearch.keeprules.kept_too;
recipes/default_model/trials/keep-bars-rule.md, keep-corners-rule.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from simsearch.detail import bar_shares, bars, bars_hold, corner_shares, corners, turned_by
from simsearch.edits import rotate
from simsearch.errors import PlanError
from simsearch.files import sha256
from simsearch.plan import Plan, make_plan
from simsearch.keeprules import choose, kept_too, parse_rules
from simsearch.layout import (banded, bars_between, corners_between, turned_apart, with_bars,
                              with_corners)
from simsearch.planfile import PlanFile


def _texture(seed: int, size=(640, 480)) -> Image.Image:
    """A picture busy everywhere, to its border (no bar on any side)."""
    rng = np.random.default_rng(seed)
    cells = (rng.random((size[1] // 10, size[0] // 10, 3)) * 255).astype(np.uint8)
    return Image.fromarray(cells).resize(size, Image.Resampling.NEAREST).filter(
        ImageFilter.GaussianBlur(2))


def _caption(picture: Image.Image, tall: int, top: bool, ground="white", ink="black"):
    w, h = picture.size
    out = Image.new("RGB", (w, h + tall), ground)
    out.paste(picture, (0, tall if top else 0))
    y = (0 if top else h) + tall // 4
    ImageDraw.Draw(out).text((w // 10, y), "WHEN THE SCRIPT FINALLY RUNS", fill=ink,
                             font_size=tall // 2)
    return out


def _letterbox(picture: Image.Image, extra: int, axis: int, fill=(0, 0, 0)):
    w, h = picture.size
    out = Image.new("RGB", (w + extra, h) if axis == 0 else (w, h + extra), fill)
    out.paste(picture, (extra // 2, 0) if axis == 0 else (0, extra // 2))
    return out


def _shares(img: Image.Image):
    return bar_shares(np.asarray(img.convert("RGB"), np.int16))


def test_bars_read_a_letterbox_and_a_caption_band_and_nothing_on_a_busy_border(tmp_path):
    picture = _texture(0)
    assert _shares(picture) == (0,) * 8
    # black bars above and below, a random colour's left and right; saved as JPEG 75: bands
    # and flat bars alike
    for axis, fill in ((1, (0, 0, 0)), (0, (200, 120, 40))):
        _letterbox(picture, 240, axis, fill).save(tmp_path / "box.jpg", quality=75)
        shares = bars(tmp_path / "box.jpg")
        side = 880 if axis == 0 else 720
        for kind in (0, 4):
            left, top, right, bottom = shares[kind:kind + 4]
            along, across = ((left, right), (top, bottom)) if axis == 0 else (
                (top, bottom), (left, right))
            assert across == (0, 0)
            for share in along:  # 120 of the side each, to a pixel or two of the reduced picture
                assert abs(share * side - 120) <= 0.01 * side, (axis, shares)
    # a caption's band, its letters included, above or below the picture; no flat bar there
    for top in (True, False):
        _caption(picture, 120, top).save(tmp_path / "meme.png")
        shares = bars(tmp_path / "meme.png")
        at = 1 if top else 3
        assert abs(shares[at] - 120 / 600) <= 0.01, shares
        assert shares[4 + at] == 0, shares  # no flat bar: its band holds something
        assert shares[4 - at] == 0 and shares[0] == shares[2] == 0
    # flat ground running on from the bar (a sky of the bar's colour): the walk goes past the
    # bar, so the bar is more than the room a copy's canvas leaves (the rule then stays out)
    sky = picture.copy()
    sky.paste((0, 0, 0), (0, 0, 640, 150))
    assert _shares(_letterbox(sky, 200, 1))[5] * 680 >= 100 + 140
    # a flat picture (or grey noise, smoothed into one grey when reduced) has no bars: a bar
    # reaching the middle is the picture's own ground
    assert _shares(Image.new("RGB", (300, 200), "grey")) == (0,) * 8
    noise = np.random.default_rng(0).normal(128, 20, (300, 810)).clip(0, 255).astype(np.uint8)
    Image.fromarray(noise).convert("RGB").save(tmp_path / "noise.png")
    assert bars(tmp_path / "noise.png") == (0,) * 8
    # too small to tell; unreadable or missing files
    assert _shares(picture.resize((60, 40))) is None
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a picture")
    assert bars(tmp_path / "broken.jpg") is None
    assert bars(tmp_path / "missing.jpg") is None


def test_bars_are_read_upright(tmp_path):
    """A captioned copy stored on its side with EXIF orientation 6 reads its band on top."""
    meme = _caption(_texture(1), 120, top=True).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    meme.save(tmp_path / "m.jpg", quality=95, exif=exif.tobytes())
    left, top, right, bottom = bars(tmp_path / "m.jpg")[:4]
    assert abs(top - 0.2) <= 0.01 and left == right == bottom == 0


def _file(path, w, h, size, picture, extent=1.0, shares=None):
    return PlanFile(path=path, size=size, mtime_ns=0, sha256="", width=w, height=h,
                    date="2020-01-01T00:00:00", picture=picture, extent=extent, bars=shares)


def _bars(band, flat=None):
    """A file's `bars` from its bands (left, top, right, bottom) and flat bars (as the bands)."""
    return tuple(band) + tuple(band if flat is None else flat)


def test_largest_keeps_the_picture_over_its_letterboxed_copy_and_a_plan_keeps_a_caption():
    rules = parse_rules(["largest,biggest"])
    photo = _file("/p/photo.jpg", 1000, 800, 500_000, (1, 0, 0, 1), 1.0, (0,) * 8)
    # a letterbox ties on the extent (bars hold no keypoints) and loses the tie, either side
    box = _file("/p/box.jpg", 1400, 800, 900_000, (1, 0, 0, 1), 1.0,
                _bars((0.14, 0, 0.146, 0)))
    assert bars_between(photo, box) == 1 and bars_between(box, photo) == -1
    assert not banded(photo, box)
    for group in ([photo, box], [box, photo]):
        best, rest = choose(group, rules)
        assert best.path == photo.path
        assert rest[0].reason == ("1400x800, the kept 1000x800's picture with flat bars added "
                                  "along its border: they hold none of the picture")
    # bars not read, or not filling the room the photo leaves: as before, the bigger file
    for shares in (None, _bars((0.05, 0, 0.05, 0)), _bars((0.2, 0, 0.35, 0))):
        unread = _file("/p/box.jpg", 1400, 800, 900_000, (1, 0, 0, 1), 1.0, shares)
        assert bars_between(photo, unread) == 0
        assert choose([photo, unread], rules)[0].path == unread.path
    # a caption's band holds letters (keypoints the photo lacks): the meme shows more, as
    # before; its band is no flat bar, so a plan keeps the photo too, and the other way round
    meme = _file("/p/meme.jpg", 1000, 950, 700_000, (1, 0, 0, 1), 1.25,
                 _bars((0, 150 / 950, 0, 0), (0, 30 / 950, 0, 0)))
    assert bars_between(photo, meme) == 0 and banded(photo, meme) and banded(meme, photo)
    assert choose([photo, meme], rules)[0].path == meme.path
    assert kept_too(meme, photo) == ("kept: the picture as it was, without the band along the "
                                     "border of the kept meme.jpg (a caption, a title)")
    assert kept_too(photo, meme) == ("kept: holds the picture of the kept photo.jpg with a band "
                                     "along its border that holds something (a caption, a "
                                     "title) that file lacks")
    assert kept_too(photo, box) is None and kept_too(box, photo) is None
    # at half size: the photo keeps it on scale as before
    small = _file("/p/small.jpg", 700, 400, 300_000, (0.5, 0, 0, 0.5), 1.0,
                  _bars((0.07 / 0.7 * 0.5, 0, 0.07 / 0.7 * 0.5, 0)))
    assert choose([small, photo], rules)[0].path == photo.path
    # the copy twice the size, with its bars: it holds the picture larger, and is kept
    large = _file("/p/large.jpg", 2800, 1600, 900_000, (2, 0, 0, 2), 1.0,
                  _bars((0.14, 0, 0.146, 0)))
    assert bars_between(photo, large) == 1
    assert choose([photo, large], rules)[0].path == large.path
    # turned, or with room along both axes (a frame, a crop's original): not bars
    turned = _file("/p/turned.jpg", 800, 1400, 700_000, (0, -1, 1, 0), 1.0,
                   _bars((0, 0.14, 0, 0.146)))
    framed = _file("/p/framed.jpg", 1400, 950, 700_000, (1, 0, 0, 1), 1.0,
                   _bars((0.14, 0.08, 0.146, 0.08)))
    for copy in (turned, framed):
        assert bars_between(photo, copy) == 0 and not banded(photo, copy)
    assert bars_between(box, box) == 0


def test_a_plan_reads_bars_only_where_a_picture_leaves_room_and_keeps_them(tmp_path):
    """make_plan reads a file's bars only when the maps put another file's picture in it with
    room to spare along one axis; with a captioned copy it keeps both the copy (it shows more)
    and the photo (the picture without the caption), acts on the half-size copy, and a plan
    file keeps each file's bars and refuses ones that are not eight shares."""
    from simsearch.dedupe import Group, Member
    picture = _texture(2, (480, 360))
    paths = {"photo": tmp_path / "photo.png", "meme": tmp_path / "meme.png",
             "half": tmp_path / "half.png"}
    picture.save(paths["photo"])
    _caption(picture, 90, top=False).save(paths["meme"])
    picture.resize((240, 180), Image.Resampling.BILINEAR).save(paths["half"])
    maps = {"photo": ((1.0, 0.0, 0.0, 1.0), 1.0), "meme": ((1.0, 0.0, 0.0, 1.0), 1.3),
            "half": ((0.5, 0.0, 0.0, 0.5), 1.0)}
    members = [Member(i, str(p), 1.0, sha256(p), p.stat().st_size, *Image.open(p).size,
                      p.stat().st_mtime_ns, "centre" if name == "photo" else "checked",
                      *maps[name]) for i, (name, p) in enumerate(paths.items())]
    files = [PlanFile(path=m.path, size=m.size, mtime_ns=m.mtime_ns, sha256=m.sha256,
                      width=m.width, height=m.height, picture=m.picture, extent=m.extent)
             for m in members]
    read = []
    with_bars(files, read=lambda path: read.append(path) or (0,) * 8)
    assert read == [str(paths["meme"])]  # the others leave no room in a file, or room both ways
    plan = make_plan([Group("near", members)], parse_rules(["largest,biggest"]))
    group = plan.groups[0]
    assert group.keep == [str(paths["meme"]), str(paths["photo"])], [
        f.reason for f in group.files]
    assert group.act_on == [str(paths["half"])]
    found = {f.path: f.bars for f in group.files}
    assert found[str(paths["photo"])] is None and found[str(paths["half"])] is None
    assert abs(found[str(paths["meme"])][3] - 0.2) <= 0.01
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert [f.bars for f in again.groups[0].files] == [f.bars for f in group.files]
    assert Plan.from_dict(plan.to_dict()).to_dict() == plan.to_dict()
    data = json.loads((tmp_path / "plan.json").read_text())
    for bad in ([0.1] * 4, [0] * 7 + ["x"], [0] * 7 + [0.6], "none", [0] * 7 + [None],
                [0, -1] + [0] * 6):
        data["groups"][0]["files"][1]["bars"] = bad
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(PlanError, match="group 1, file 2 .*bars"):
            Plan.load(tmp_path / "bad.json")


def test_the_default_plan_never_acts_on_a_photo_or_its_captioned_copy(tmp_path):
    """A photo and its meme-style copy (a white band with a caption above it): the shipped
    model and picture check group them, and the default plan keeps both (session 27 kept the
    meme, it shows more, and acted on the photo; a hostile tester then showed that acting on
    the meme loses its caption); a letterboxed copy of another photo is acted on, its original
    kept."""
    from simsearch.demo import scene
    from simsearch.index import open_index
    photos = tmp_path / "p"
    photos.mkdir()
    photo = scene(101, (1200, 900))
    photo.save(photos / "IMG_1.jpg", quality=92)
    meme = Image.new("RGB", (1200, 1060), "white")
    meme.paste(photo, (0, 160))
    ImageDraw.Draw(meme).text((40, 40), "WHEN THE SCRIPT FINALLY RUNS", fill="black",
                              font_size=70)
    meme.save(photos / "meme.jpg", quality=92)
    other = scene(104, (1200, 900))
    other.save(photos / "IMG_2.jpg", quality=85)
    _letterbox(other, 300, 1).save(photos / "boxed.jpg", quality=95)
    index = open_index(tmp_path / "idx", model="default", create=True)
    index.add_paths([photos])
    report = index.duplicates()
    assert sorted(sorted(m.path for m in g.members) for g in report.groups) == [
        [str(photos / "IMG_1.jpg"), str(photos / "meme.jpg")],
        [str(photos / "IMG_2.jpg"), str(photos / "boxed.jpg")]]
    plan = make_plan(report.groups, parse_rules([]))  # the default rules
    groups = {len(g.keep): g for g in plan.groups}
    assert sorted(groups[2].keep) == [str(photos / "IMG_1.jpg"), str(photos / "meme.jpg")]
    assert groups[2].act_on == []
    assert groups[1].keep == [str(photos / "IMG_2.jpg")], [f.reason for f in groups[1].files]
    assert groups[1].act_on == [str(photos / "boxed.jpg")]


@pytest.mark.parametrize("angle", [15, -15, 30, 60, -40])
def test_corners_read_a_picture_turned_on_a_filled_canvas(tmp_path, angle):
    """Turned as the rotate edit turns (expanded canvas, black, white or a colour), saved as
    JPEG 75 and read as a plan reads it: the four filled corners agree on the turn; the
    picture itself, a letterbox and clip art on white are not turned."""
    picture = _texture(3, (1200, 900))
    expected = angle if angle > 0 else 90 + angle
    for fill in ((0, 0, 0), (255, 255, 255), (40, 200, 90)):
        turned = rotate(picture, angle, fill)
        turned.save(tmp_path / "turned.jpg", quality=75)
        a = turned_by(corners(tmp_path / "turned.jpg"), *turned.size)
        assert a is not None and abs(a - expected) <= 1.5, (fill, a)
    for still in (picture, _letterbox(picture, 240, 1)):
        assert turned_by(corner_shares(np.asarray(still, np.int16)), *still.size) is None
    art = Image.new("RGB", (400, 400), "white")
    ImageDraw.Draw(art).ellipse((150, 150, 250, 250), fill="red")
    assert turned_by(corner_shares(np.asarray(art, np.int16)), 400, 400) is None
    # too small to tell; unreadable or missing files
    assert corner_shares(np.asarray(picture.resize((60, 40)), np.int16)) is None
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not a picture")
    assert corners(tmp_path / "broken.png") is None
    assert corners(tmp_path / "missing.png") is None


def test_largest_keeps_the_picture_over_its_copy_turned_on_a_filled_canvas():
    """The turned copy holds the picture at the same scale and shows as much of it (its
    corners hold no keypoints): before, `biggest` then kept it; now it loses the tie."""
    rules = parse_rules(["largest,biggest"])
    theta = np.radians(15)
    c, s = np.cos(theta), np.sin(theta)
    turned_picture = _texture(5)
    turned = rotate(turned_picture, 15, (0, 0, 0))
    shares = corner_shares(np.asarray(turned, np.int16))
    photo = _file("/p/photo.jpg", 640, 480, 300_000, (1, 0, 0, 1))
    # the map from the photo's pixels to the turned copy's (y down: turned anticlockwise)
    copy = _file("/p/turned.jpg", *turned.size, 500_000, (c, s, -s, c))
    copy = PlanFile(**{**copy.__dict__, "corners": shares})
    assert turned_apart(photo, copy)
    assert corners_between(photo, copy) == 1 and corners_between(copy, photo) == -1
    for group in ([photo, copy], [copy, photo]):
        best, rest = choose(group, rules)
        assert best.path == photo.path
        assert rest[0].reason == (f"{turned.width}x{turned.height}, the kept 640x480's picture "
                                  f"turned on a larger canvas: its filled corners hold none of "
                                  f"the picture")
    # corners not read, a turn the maps do not share, or a canvas the turn does not explain
    unread = PlanFile(**{**copy.__dict__, "corners": None})
    other_turn = _file("/p/turned.jpg", *turned.size, 500_000, (np.cos(0.6), np.sin(0.6),
                                                                -np.sin(0.6), np.cos(0.6)))
    other_turn = PlanFile(**{**other_turn.__dict__, "corners": shares})
    cropped = PlanFile(**{**copy.__dict__, "width": turned.width - 100})
    for f in (unread, other_turn, cropped):
        assert corners_between(photo, f) == 0
        assert choose([photo, f], rules)[0].path == f.path  # as before: the bigger file
    # a copy twice the size, turned: it holds the picture larger, and is kept
    large = _file("/p/large.jpg", 2 * turned.width, 2 * turned.height, 900_000,
                  (2 * c, 2 * s, -2 * s, 2 * c))
    large = PlanFile(**{**large.__dict__, "corners": shares})
    assert corners_between(photo, large) == 1
    assert choose([photo, large], rules)[0].path == large.path


def test_a_plan_reads_corners_only_for_pictures_turned_apart_and_keeps_them(tmp_path):
    from simsearch.dedupe import Group, Member
    picture = _texture(6, (480, 360))
    paths = {"photo": tmp_path / "photo.png", "turned": tmp_path / "turned.png",
             "half": tmp_path / "half.png"}
    picture.save(paths["photo"])
    rotate(picture, -15, (255, 255, 255)).save(paths["turned"])
    picture.resize((240, 180), Image.Resampling.BILINEAR).save(paths["half"])
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    maps = {"photo": (1.0, 0.0, 0.0, 1.0), "turned": (c, -s, s, c), "half": (0.5, 0, 0, 0.5)}
    members = [Member(i, str(p), 1.0, sha256(p), p.stat().st_size, *Image.open(p).size,
                      p.stat().st_mtime_ns, "centre" if name == "photo" else "checked",
                      maps[name], 1.0) for i, (name, p) in enumerate(paths.items())]
    files = [PlanFile(path=m.path, size=m.size, mtime_ns=m.mtime_ns, sha256=m.sha256,
                      width=m.width, height=m.height, picture=m.picture, extent=1.0)
             for m in members]
    read = []
    with_corners(files, read=lambda path: read.append(path) or (0,) * 8)
    assert sorted(read) == sorted(str(p) for p in paths.values())  # each with the turned one
    read.clear()
    with_corners([f for f in files if "turned" not in f.path],
                 read=lambda path: read.append(path) or (0,) * 8)
    assert read == []  # the photo and its half-size copy: not turned apart
    plan = make_plan([Group("near", members)], parse_rules(["largest,biggest"]))
    group = plan.groups[0]
    assert group.keep == [str(paths["photo"])], [f.reason for f in group.files]
    assert str(paths["turned"]) in group.act_on
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert [f.corners for f in again.groups[0].files] == [f.corners for f in group.files]
    data = json.loads((tmp_path / "plan.json").read_text())
    for bad in ([0.1] * 7, [0.1] * 7 + ["x"], [0.1] * 7 + [1.5], "none", [0.1] * 7 + [None]):
        data["groups"][0]["files"][1]["corners"] = bad
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(PlanError, match="group 1, file 2 .*corners"):
            Plan.load(tmp_path / "bad.json")


def test_the_default_plan_keeps_the_photo_over_its_turned_copy(tmp_path):
    """A photo and its copy turned by 12 degrees on a black canvas: the shipped model and the
    picture check group them, and the default plan keeps the photo."""
    from simsearch.demo import scene
    from simsearch.index import open_index
    photos = tmp_path / "p"
    photos.mkdir()
    photo = scene(102, (1200, 900))
    photo.save(photos / "IMG_2.jpg", quality=92)
    rotate(photo, 12, (0, 0, 0)).save(photos / "turned.jpg", quality=95)
    index = open_index(tmp_path / "idx", model="default", create=True)
    index.add_paths([photos])
    report = index.duplicates()
    assert [sorted(m.path for m in g.members) for g in report.groups] == [
        [str(photos / "IMG_2.jpg"), str(photos / "turned.jpg")]]
    group = make_plan(report.groups, parse_rules([])).groups[0]  # the default rules
    assert group.keep[0] == str(photos / "IMG_2.jpg"), [f.reason for f in group.files]


def test_bars_hold_only_where_the_picture_lies_between_them(tmp_path):
    """The maps carry no offset, so the bars' sum alone cannot tell a captioned copy from an
    original with a flat band of its own beside its crop from the other end: the picture is
    placed along the axis, and the bars count only where it lies best between them."""
    picture = _texture(7, (480, 300))
    picture.save(tmp_path / "photo.png")
    _caption(picture, 60, top=True).save(tmp_path / "meme.png")
    assert bars_hold(tmp_path / "photo.png", tmp_path / "meme.png",
                     bars(tmp_path / "meme.png")[:4], 1)
    # flipped along x in the meme: held only when the maps say so
    _caption(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 60, top=True).save(
        tmp_path / "flipped.png")
    shares = bars(tmp_path / "flipped.png")[:4]
    assert bars_hold(tmp_path / "photo.png", tmp_path / "flipped.png", shares, 1, (True, False))
    assert not bars_hold(tmp_path / "photo.png", tmp_path / "flipped.png", shares, 1)
    # an original with a flat band of sky above, and its crop that keeps the band and loses
    # 60 rows at the bottom: the band fills the room, but the crop lies at the top
    original = Image.new("RGB", (480, 360), (150, 190, 235))
    original.paste(picture, (0, 60))
    original.save(tmp_path / "original.png")
    original.crop((0, 0, 480, 300)).save(tmp_path / "crop.png")
    shares = bars(tmp_path / "original.png")[4:]  # the flat bar: the band of sky
    assert abs(shares[1] - 60 / 360) <= 0.01
    assert not bars_hold(tmp_path / "crop.png", tmp_path / "original.png", shares, 1)
    assert not bars_hold(tmp_path / "missing.png", tmp_path / "original.png", shares, 1)


def test_an_original_with_a_flat_band_keeps_over_its_crop_from_the_other_end(tmp_path):
    """End to end with the picture check (a review's case): the original, a flat band above a
    busy picture, and its crop keeping the band and losing rows at the bottom. The band fills
    the room the crop leaves, but the crop is not between it: the original shows more of the
    picture and is kept (before the placement, the crop was kept and the original acted on)."""
    from simsearch.dedupe import Group, Member
    from simsearch.verify import VerifySettings, agreement, beyond, picture_features, picture_map
    from simsearch.layout import extent_of
    body = _texture(8, (480, 300))
    original = Image.new("RGB", (480, 360), (150, 190, 235))
    original.paste(body, (0, 60))
    paths = {"original": tmp_path / "original.jpg", "crop": tmp_path / "crop.jpg"}
    original.save(paths["original"], quality=92)
    original.crop((0, 0, 480, 300)).save(paths["crop"], quality=92)
    settings = VerifySettings()
    a, b = picture_features(str(paths["crop"]), settings), picture_features(
        str(paths["original"]), settings)
    found, transform, used = agreement(a, b, settings, enough=settings.min_inliers)
    assert found >= settings.min_inliers
    linear, shares = picture_map(a, used, b, transform), beyond(used, b, transform)
    assert extent_of((shares[1], shares[0])) > 1.15  # the original shows more
    maps = {"crop": ((1.0, 0.0, 0.0, 1.0), 1.0),
            "original": (tuple(linear.ravel().tolist()), extent_of((shares[1], shares[0])))}
    members = [Member(i, str(p), 1.0, sha256(p), p.stat().st_size, *Image.open(p).size,
                      p.stat().st_mtime_ns, "centre" if name == "crop" else "checked",
                      *maps[name]) for i, (name, p) in enumerate(paths.items())]
    group = make_plan([Group("near", members)], parse_rules(["largest,biggest"])).groups[0]
    assert group.keep == [str(paths["original"])], [f.reason for f in group.files]
    assert {f.path: f.bars for f in group.files}[str(paths["original"])][4:] == (0, 0, 0, 0)


def test_something_small_on_a_bar_or_in_a_corner_is_not_flat(tmp_path):
    """A second hostile pass: a moon on a plain sky band, a short word in a letterbox bar and
    a logo in a filled corner passed a flat share of 0.9 a line; a flat bar's lines and a
    corner's triangle must now be 0.995 ground, so such a file keeps its band (both files are
    kept) and its corners are not filled."""
    picture = _texture(9, (1200, 700))
    boxed = _letterbox(picture, 200, 1)
    ImageDraw.Draw(boxed).ellipse((900, 20, 960, 80), fill=(230, 230, 210))  # a moon, 5% wide
    boxed.save(tmp_path / "moon.png")
    shares = bars(tmp_path / "moon.png")
    assert shares[5] == 0 and shares[1] > 0.1, shares  # a band with the moon: not flat
    still = _letterbox(picture, 200, 1)
    ImageDraw.Draw(still).text((560, 820), "No.", fill="white", font_size=40)
    still.save(tmp_path / "still.png")
    shares = bars(tmp_path / "still.png")
    assert shares[7] == 0 and shares[3] > 0.1, shares  # the bottom bar holds the word
    turned = rotate(_texture(10, (1200, 900)), 10, (255, 255, 255))
    ImageDraw.Draw(turned).text((20, 15), "@kat", fill="black", font_size=36)
    turned.save(tmp_path / "turned.png")
    assert turned_by(corners(tmp_path / "turned.png"), *turned.size) is None


def test_a_caption_above_a_picture_with_its_own_flat_ground_below_keeps_both(tmp_path):
    """A newcomer's captions: the picture's own flat ground at the bottom runs on from the
    canvas edge, so the bands of both sides add up to more than the room; the caption's band
    alone fills it, and the picture lies below it: both files are kept."""
    from simsearch.dedupe import Group, Member
    picture = _texture(11, (480, 360))
    picture.paste((255, 255, 255), (0, 300, 480, 360))  # a white ground of its own below
    paths = {"photo": tmp_path / "photo.png", "meme": tmp_path / "meme.png"}
    picture.save(paths["photo"])
    _caption(picture, 90, top=True).save(paths["meme"])
    shares = bars(paths["meme"])
    assert shares[1] + shares[3] > 0.3  # the two bands: the caption's and the picture's own
    maps = {"photo": ((1.0, 0.0, 0.0, 1.0), 1.0), "meme": ((1.0, 0.0, 0.0, 1.0), 2.0)}
    members = [Member(i, str(p), 1.0, sha256(p), p.stat().st_size, *Image.open(p).size,
                      p.stat().st_mtime_ns, "centre" if name == "photo" else "checked",
                      *maps[name]) for i, (name, p) in enumerate(paths.items())]
    group = make_plan([Group("near", members)], parse_rules([])).groups[0]
    assert sorted(group.keep) == sorted(map(str, paths.values())) and group.act_on == [], [
        f.reason for f in group.files]
    meme = {f.path: f for f in group.files}[str(paths["meme"])]
    assert meme.bars[3] == 0 and meme.bars[1] > 0.15  # only the caption's band counts


def test_flat_bars_lose_only_when_they_leave_no_more_of_the_picture(tmp_path):
    """A review's cases: a credit line just under the picture in a letterbox bar (the flat
    part stops a few lines short of the band: not a flat bar, so both are kept); a crop that
    lost 3% at each end beside its letterbox (the bars fall short of the room: the letterbox
    holds more, and keeps); a turned picture beside a crop of the upright one (its canvas is
    larger than the crop's turned box: it holds more, no tie-break)."""
    picture = _texture(12, (1200, 720))
    boxed = _letterbox(picture, 480, 1)
    ImageDraw.Draw(boxed).text((300, 962), "Lake Tahoe, 4 July 1987 - photo by Jane Doe",
                               fill="white", font_size=13)
    boxed.save(tmp_path / "credit.png")
    shares = bars(tmp_path / "credit.png")
    assert shares[7] == 0 and shares[3] > 0.15, shares
    photo = _file("/p/photo.jpg", 1200, 720, 500_000, (1, 0, 0, 1))
    letterbox = _file("/p/box.jpg", 1200, 1200, 900_000, (1, 0, 0, 1), 1.0,
                      _bars((0, 0.2, 0, 0.2)))
    assert bars_between(photo, letterbox) == 1  # the whole picture: the letterbox loses
    crop = _file("/p/crop.jpg", 1200, 648, 400_000, (1, 0, 0, 1))
    assert bars_between(crop, letterbox) == 0  # 72 rows of the picture only it holds
    narrow = _file("/p/narrow.jpg", 1164, 720, 400_000, (1, 0, 0, 1))
    assert bars_between(narrow, letterbox) == 0  # 36 columns only it holds
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    turned = rotate(_texture(5), 15, (0, 0, 0))
    copy = PlanFile(**{**_file("/p/turned.jpg", *turned.size, 500_000, (c, s, -s, c)).__dict__,
                       "corners": corner_shares(np.asarray(turned, np.int16))})
    upright = _file("/p/photo.jpg", 640, 480, 300_000, (1, 0, 0, 1))
    assert corners_between(upright, copy) == 1
    cropped = _file("/p/crop.jpg", 617, 463, 300_000, (1, 0, 0, 1))  # 3.5% off each side
    assert corners_between(cropped, copy) == 0


def test_each_pair_is_placed_against_the_bands_as_read(tmp_path):
    """A review's group: the picture, a copy with a caption below, and one with captions above
    and below. The copy with one caption fills the room in the two-caption file with its top
    band alone; that must not drop the bottom band for the picture's own pair (it did, and the
    two-caption file was acted on under a rule keeping the bare picture)."""
    from simsearch.dedupe import Group, Member
    picture = _texture(13, (600, 450))
    paths = {"bare": tmp_path / "orig" / "bare.png", "one": tmp_path / "one.png",
             "two": tmp_path / "two.png"}
    paths["bare"].parent.mkdir()
    picture.save(paths["bare"])
    below = _caption(picture, 60, top=False)
    below.save(paths["one"])
    _caption(below, 60, top=True).save(paths["two"])
    members = [Member(i, str(p), 1.0, sha256(p), p.stat().st_size, *Image.open(p).size,
                      p.stat().st_mtime_ns, "centre" if name == "bare" else "checked",
                      (1.0, 0.0, 0.0, 1.0), 1.0) for i, (name, p) in enumerate(paths.items())]
    group = make_plan([Group("near", members)],
                      parse_rules([f"path={tmp_path / 'orig'}"])).groups[0]
    assert sorted(group.keep) == sorted(map(str, paths.values())) and group.act_on == [], [
        f.reason for f in group.files]
    two = {f.path: f for f in group.files}[str(paths["two"])]
    assert two.bars[1] > 0.1 and two.bars[3] > 0.1  # both bands count
