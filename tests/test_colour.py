"""The picture check's colour measure (simsearch.lineup.colour_disagreement, session 30;
recipes/default_model/trials/colour-rule.md and colour-act-rule.md): copies keep their colours
under every edit, other pictures and recoloured ones do not."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from simsearch.edits import EDIT_NAMES, apply_edit, background
from simsearch.verify import picture_features
from simsearch.lineup import colour_disagreement

TOL = 10.0


def smooth(seed: int) -> Image.Image:
    """A smooth colour field: no keypoints, too little fine detail to be lined up (a smooth
    wallpaper)."""
    return background((320, 200), random.Random(seed))


def recoloured(img: Image.Image, turn: int) -> Image.Image:
    """`img` with every hue turned by `turn` of 256 (the same layout, other colours)."""
    h, s, v = img.convert("HSV").split()
    return Image.merge("HSV", (h.point(lambda x: (x + turn) % 256), s, v)).convert("RGB")


def figure(folder: Path, a: Image.Image, b: Image.Image) -> float | None:
    folder.mkdir(exist_ok=True)
    held = []
    for name, img in (("a.jpg", a), ("b.jpg", b)):
        img.save(folder / name, quality=92)
        held.append(picture_features(str(folder / name)))
    return colour_disagreement(*held, (TOL,))[0]


@pytest.mark.parametrize("edit", EDIT_NAMES)
def test_a_smooth_copy_keeps_its_colours_under_every_edit(tmp_path, edit):
    for seed in (0, 1):
        value = figure(tmp_path, smooth(seed), apply_edit(edit, smooth(seed), random.Random(seed)))
        if edit == "grayscale":  # a grey copy has no colour to compare
            assert value is None
        elif edit in ("brightness", "contrast"):  # chroma scaled; clipped colours left out
            assert value is None or value <= 0.3, value
        else:  # crops, turns, bars, insets and captions move colours or add some
            assert value is not None and value <= 0.3, value


def test_smooth_pictures_of_other_colours_disagree_either_way_round(tmp_path):
    for a, b in ((smooth(1), smooth(51)), (smooth(51), smooth(1)),
                 (smooth(1), recoloured(smooth(1), 60)), (recoloured(smooth(1), 60), smooth(1))):
        assert figure(tmp_path, a, b) > 0.7
    assert figure(tmp_path, smooth(1), smooth(1)) == 0.0


def tricolour(colours) -> Image.Image:
    """A flag: three vertical bands of flat colour (no keypoints: a plain picture)."""
    from PIL import ImageDraw
    img = Image.new("RGB", (300, 200))
    for i, c in enumerate(colours):
        ImageDraw.Draw(img).rectangle((i * 100, 0, (i + 1) * 100, 200), fill=c)
    return img


def test_flags_of_other_colours_line_up_as_one_picture_but_are_not_acted_on(tmp_path):
    """A hostile tester's case (session 30): lined up in grey, Italy's and France's flags are
    one picture (0.97 and more), and a plan trashed the only Italy flag."""
    import numpy as np

    from simsearch.picturecheck import PictureCheck
    from simsearch.verify import VerifySettings
    from simsearch.lineup import aligned
    italy = tricolour([(0, 146, 70), (255, 255, 255), (206, 43, 55)])
    france = tricolour([(0, 85, 164), (255, 255, 255), (239, 65, 53)])
    paths = {"france.png": france, "france_q80.jpg": france, "italy.png": italy}
    for name, img in paths.items():
        img.save(tmp_path / name, quality=80)
    by_id = {i: str(tmp_path / n) for i, n in enumerate(paths)}
    assert aligned(*(picture_features(by_id[i]) for i in (2, 0))) >= 0.97
    a, b, scores = np.array([0, 0]), np.array([1, 2]), np.array([0.9, 0.9])

    def check(cut):
        made = PictureCheck(lambda ids: {i: by_id[i] for i in ids},
                            VerifySettings(colour_tol=TOL, colour_cut=cut), alone=0.86)
        assert made(a, b, scores).tolist() == [True, True]  # grouped either way
        return [made.verdict(0, 1), made.verdict(0, 2)], made.stats.unsure
    assert check(None) == ([True, True], 0)  # grey alone: both confirmed, so acted on
    # colours compared: the JPEG of the same flag stays confirmed; Italy is grouped with
    # France, but not confirmed, so a plan keeps it
    assert check(0.5) == ([True, None], 1)


def test_the_colour_act_cut_is_what_its_trial_decided():
    import json

    from simsearch.verify import VerifySettings
    record = json.loads((Path(__file__).resolve().parents[1] / "recipes/default_model/trials"
                         / "colour-act-val.json").read_text())
    assert VerifySettings().colour_tol == record["chosen"]["tol"]
    assert VerifySettings().colour_cut == (record["chosen"]["cut"] if record["adopted"] else None)
