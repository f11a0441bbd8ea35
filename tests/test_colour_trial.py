"""The colour measure of recipes/default_model/colour_trial.py (session 30; not in the product:
trials/colour-rule.md says why): copies keep their colours under every edit, other pictures and
recoloured ones do not."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from PIL import Image

from simsearch.edits import EDIT_NAMES, apply_edit, background
from simsearch.verify import picture_features

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "default_model"))
colour_trial = pytest.importorskip("colour_trial")
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
        f = picture_features(str(folder / name))
        held.append((f, colour_trial.colour_picture(str(folder / name), f.grey.shape)))
    (fa, ca), (fb, cb) = held
    return colour_trial.colour_disagreement(fa, fb, ca, cb, (TOL,))[0]


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
