"""The check's small windows (simsearch.verify.disagreements, `small_disagree`, session 31;
recipes/default_model/trials/fine-act-rule.md): documents differing in one line keep hundreds
of matches and differ little in an eighth of the picture; in a thirty-second they differ."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from simsearch.picturecheck import PictureCheck
from simsearch.verify import VerifySettings, agreement, disagreements, picture_features


def receipt(total: str) -> Image.Image:
    img = Image.new("RGB", (420, 520), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=18)
    lines = [f"ITEM {i:02d} {'abcdefghij'[i % 10] * 5}   {i * 1.37 + 2:6.2f}" for i in range(14)]
    for i, line in enumerate(lines + ["-" * 26, f"TOTAL {total:>14}", "THANK YOU"]):
        d.text((20, 14 + i * 28), line, font=font, fill="black")
    return img


def saved(folder: Path, name: str, img: Image.Image, **kw) -> str:
    path = folder / name
    img.save(path, **kw)
    return str(path)


def test_a_receipt_with_another_total_differs_in_a_small_window_only(tmp_path):
    a = picture_features(saved(tmp_path, "a.png", receipt("17.05")))
    b = picture_features(saved(tmp_path, "b.png", receipt("117.05")))
    c = picture_features(saved(tmp_path, "c.jpg", receipt("17.05"), quality=75))
    s = VerifySettings()
    for x, y, other in ((a, b, True), (a, c, False)):
        found, transform, used = agreement(x, y, s, enough=s.min_inliers)
        assert found >= s.sure_inliers  # hundreds of matches either way
        eighth, small = disagreements(used, y, transform, 128, (8, s.small_windows))
        assert eighth < s.act_disagree  # the eighth cannot tell them apart
        assert (small > s.small_disagree) is other, (eighth, small)


def test_the_check_keeps_such_a_pair_from_a_plan_and_confirms_the_copy(tmp_path):
    paths = [saved(tmp_path, "a.png", receipt("17.05")),
             saved(tmp_path, "a_q75.jpg", receipt("17.05"), quality=75),
             saved(tmp_path, "b.png", receipt("117.05"))]
    a, b, scores = np.array([0, 0]), np.array([1, 2]), np.array([0.9, 0.9])

    def check(cut):
        made = PictureCheck(lambda ids: {i: paths[i] for i in ids},
                            VerifySettings(small_disagree=cut), alone=0.86)
        assert made(a, b, scores).tolist() == [True, True]  # grouped either way
        return [made.verdict(0, 1), made.verdict(0, 2)]
    assert check(None) == [True, True]  # the eighth alone: both acted on
    assert check(0.8)[1] is not True and check(0.8)[0] is True


def test_the_small_window_cut_is_what_its_trial_decided():
    record = json.loads((Path(__file__).resolve().parents[1] / "recipes/default_model/trials"
                         / "fine-act-val.json").read_text())
    s = VerifySettings()
    chosen = record["chosen"] if record["adopted"] else None
    assert (s.small_disagree, s.small_windows) == (
        (chosen["cut"], chosen["windows"]) if chosen else (None, s.small_windows))
    assert chosen is None or chosen["side"] == 128  # measured where `act_disagree` is
