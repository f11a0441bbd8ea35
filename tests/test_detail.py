"""The top band along each axis (simsearch.detail) and the keep rule `largest` reading it to
tell a copy stretched one way from its original (simsearch.layout.stretched_between)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import make_picture
from simsearch.detail import band, band_shares
from simsearch.errors import PlanError
from simsearch.files import sha256
from simsearch.plan import Plan, make_plan
from simsearch.keeprules import choose, parse_rules
from simsearch.layout import stretched_between, with_bands
from simsearch.planfile import PlanFile


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), np.float64)


def _ratio(shares, axis):
    return shares[axis] / shares[1 - axis]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_picture_stretched_one_way_has_an_empty_top_band_along_the_stretch(seed):
    """A generated picture holds detail alike along both axes; stretched 1.4-1.6 times one way
    (as the `stretch` edit does: bilinear), its top band along the stretch is nearly empty,
    across it is not; JPEG saves keep it so."""
    picture = make_picture(seed, (640, 480)).convert("RGB")
    own = band_shares(_grey(picture))
    assert 0.7 < _ratio(own, 0) < 1.4
    for axis, factor in ((0, 1.4), (1, 1.6)):
        size = (round(640 * factor), 480) if axis == 0 else (640, round(480 * factor))
        stretched = picture.resize(size, Image.Resampling.BILINEAR)
        shares = band_shares(_grey(stretched))
        assert _ratio(shares, axis) < 0.35, shares
        assert shares[1 - axis] > 0.5 * own[1 - axis]  # across it, as full as the picture's
    # a picture flat all over, or too small to tell: no band
    assert band_shares(np.full((200, 300), 128.0)) is None
    assert band_shares(_grey(picture.resize((50, 40)))) is None


def test_band_reads_the_file_upright_and_names_nothing_it_cannot_read(tmp_path):
    picture = make_picture(3, (320, 240)).convert("RGB")
    picture.resize((320, 384), Image.Resampling.BILINEAR).save(tmp_path / "tall.png")
    along_x, along_y = band(tmp_path / "tall.png")
    assert along_y < 0.35 * along_x  # stretched along y
    # the same file turned by its EXIF orientation (6: turn 90 degrees to show it) reads upright
    turned = picture.resize((320, 384), Image.Resampling.BILINEAR).transpose(
        Image.Transpose.ROTATE_90)  # stored on its side: stretched along x in the file
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.save(tmp_path / "turned.jpg", quality=95, exif=exif.tobytes())
    along_x, along_y = band(tmp_path / "turned.jpg")
    assert along_y < 0.5 * along_x  # as shown: stretched along y again
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a picture")
    assert band(tmp_path / "broken.jpg") is None
    assert band(tmp_path / "missing.jpg") is None


def _file(path, w, h, size, picture, shares=None, extent=1.0):
    return PlanFile(path=path, size=size, mtime_ns=0, sha256="", width=w, height=h,
                    date="2020-01-01T00:00:00", picture=picture, extent=extent, band=shares)


def test_largest_keeps_the_original_over_its_one_way_stretch_when_the_bands_tell():
    rules = parse_rules(["largest,biggest"])
    full, empty_x = (0.05, 0.05), (0.005, 0.05)
    original = _file("/p/original.jpg", 1000, 800, 500_000, (1, 0, 0, 1), full)
    stretched = _file("/p/stretched.jpg", 1500, 800, 900_000, (1.5, 0, 0, 1), empty_x)
    assert stretched_between(original, stretched) == -1
    assert stretched_between(stretched, original) == 1
    for group in ([original, stretched], [stretched, original]):
        best, rest = choose(group, rules)
        assert best.path == original.path
        assert best.reason == "kept: 1000x800, largest (the picture it holds)"
        assert rest[0].reason == ("1500x800, the kept 1000x800's picture stretched one way: its "
                                  "added pixels hold no finer detail")
    # without bands (not read), or bands that do not differ enough: a tie, as before
    for shares in (None, (0.04, 0.05), full):
        tied = _file("/p/stretched.jpg", 1500, 800, 900_000, (1.5, 0, 0, 1), shares)
        assert stretched_between(original, tied) == 0
        assert choose([original, tied], rules)[0].path == tied.path  # the bigger file
    # the original as the narrow one's squashed copy: the wide file's band is full, no verdict
    squashed = _file("/p/squashed.jpg", 667, 800, 300_000, (0.667, 0, 0, 1), full)
    assert stretched_between(original, squashed) == 0
    assert choose([original, squashed], rules)[0].path == original.path  # its bytes
    # the stretched copy, turned a quarter: along its y, the original's x
    turned = _file("/p/turned.jpg", 800, 1500, 900_000, (0, -1, 1.5, 0), (0.05, 0.005))
    assert stretched_between(original, turned) == -1
    assert choose([turned, original], rules)[0].path == original.path
    # a group of the original and two stretches, one along each axis: both are read and lose
    across = _file("/p/across.jpg", 1500, 800, 900_000, (1.5, 0, 0, 1))
    down = _file("/p/down.jpg", 1000, 1200, 950_000, (1, 0, 0, 1.5))
    plain = _file("/p/original.jpg", 1000, 800, 500_000, (1, 0, 0, 1))
    shares = {"/p/original.jpg": full, "/p/across.jpg": empty_x, "/p/down.jpg": (0.05, 0.005)}
    read = []
    banded = with_bands([plain, across, down], read=lambda p: read.append(p) or shares[p])
    assert sorted(read) == sorted(shares)
    assert choose(banded, rules)[0].path == "/p/original.jpg"
    # a stretch of under 1.3 times, or not along a canvas axis: the bands are not asked
    mild = _file("/p/mild.jpg", 1200, 800, 900_000, (1.2, 0, 0, 1), empty_x)
    slanted = _file("/p/slanted.jpg", 1500, 1000, 900_000,
                    tuple((np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
                           @ np.diag([1.5, 1.0])).ravel()), empty_x)
    for copy in (mild, slanted):
        assert stretched_between(original, copy) == 0


def test_a_plan_reads_the_bands_of_one_way_stretches_only(tmp_path):
    """make_plan reads the pixels of a group's files only where the maps show one file holding
    another's picture stretched one way, and keeps the original; a plan file keeps each file's
    band and refuses one that is not two shares."""
    from simsearch.dedupe import Group, Member
    picture = make_picture(5, (480, 360)).convert("RGB")
    paths = {"original": tmp_path / "original.png", "stretched": tmp_path / "stretched.png",
             "half": tmp_path / "half.png"}
    picture.save(paths["original"])
    picture.resize((720, 360), Image.Resampling.BILINEAR).save(paths["stretched"])
    picture.resize((240, 180), Image.Resampling.BILINEAR).save(paths["half"])
    maps = {"original": (1.0, 0.0, 0.0, 1.0), "stretched": (1.5, 0.0, 0.0, 1.0),
            "half": (0.5, 0.0, 0.0, 0.5)}
    members = [Member(i, str(p), 1.0, sha256(p), p.stat().st_size, *Image.open(p).size,
                      p.stat().st_mtime_ns, "centre" if name == "original" else "checked",
                      maps[name], 1.0) for i, (name, p) in enumerate(paths.items())]
    assert paths["stretched"].stat().st_size > paths["original"].stat().st_size
    files = [PlanFile(path=m.path, size=m.size, mtime_ns=m.mtime_ns, sha256=m.sha256,
                      width=m.width, height=m.height, picture=m.picture, extent=1.0)
             for m in members]
    read = []
    with_bands(files, read=lambda path: read.append(path) or (0.05, 0.05))
    assert sorted(read) == sorted([str(paths["original"]), str(paths["stretched"])])
    plan = make_plan([Group("near", members)], parse_rules(["largest,biggest"]))
    group = plan.groups[0]
    assert group.keep == [str(paths["original"])], [f.reason for f in group.files]
    shares = {f.path: f.band for f in group.files}
    assert shares[str(paths["half"])] is None  # not read: no stretch with it
    assert _ratio(shares[str(paths["stretched"])], 0) < 0.35
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert [f.band for f in again.groups[0].files] == [f.band for f in group.files]
    assert Plan.from_dict(plan.to_dict()).to_dict() == plan.to_dict()
    data = json.loads((tmp_path / "plan.json").read_text())
    for bad in ([0.1], [0.1, "x"], [0.1, 2.0], "full", [0.1, None]):
        data["groups"][0]["files"][1]["band"] = bad
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(PlanError, match="group 1, file 2 .*band"):
            Plan.load(tmp_path / "bad.json")
