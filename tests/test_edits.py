"""Copy-style edits: geometry, validity on extreme sizes, determinism, and training views."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from simsearch.edits import EDIT_NAMES, EDITS, apply_edit, random_box, random_view

REQUIRED = ("jpeg20", "resize25", "crop70", "crop50", "rotate90", "rotate15", "hflip", "grayscale",
            "brightness", "contrast", "blur", "text", "letterbox", "stretch", "pip", "combo")
EXTREME = [(448, 14), (14, 448), (1, 1), (1, 300), (2, 3), (20000, 50)]


def picture(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth random colour gradient with a few random shapes on it."""
    rs = np.random.default_rng(seed)
    corners = rs.uniform(0, 255, size=(2, 2, 3))
    y = np.linspace(0, 1, h)[:, None, None]
    x = np.linspace(0, 1, w)[None, :, None]
    arr = (corners[0, 0] * (1 - y) * (1 - x) + corners[0, 1] * (1 - y) * x
           + corners[1, 0] * y * (1 - x) + corners[1, 1] * y * x)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, x1 = sorted(rs.integers(0, w, 2))
        y0, y1 = sorted(rs.integers(0, h, 2))
        fill = tuple(int(v) for v in rs.integers(0, 256, 3))
        (draw.ellipse if rs.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    return img


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return picture(256, 192, seed=1)


def test_registry_has_every_required_edit():
    assert set(REQUIRED) <= set(EDITS)
    assert EDIT_NAMES == tuple(EDITS)


@pytest.mark.parametrize("size", [(256, 192), *EXTREME])
def test_every_edit_returns_a_nonempty_rgb_image(size):
    img = picture(*size, seed=2)
    for name in EDIT_NAMES:
        out = apply_edit(name, img, random.Random(3))
        assert out.mode == "RGB", name
        assert out.width >= 1 and out.height >= 1, name
        out.load()


def test_edits_accept_other_modes(photo):
    for mode in ("L", "RGBA", "P"):
        assert apply_edit("crop50", photo.convert(mode), random.Random(0)).mode == "RGB"


def test_unknown_edit_is_refused(photo):
    with pytest.raises(ValueError, match="unknown edit"):
        apply_edit("sepia", photo, random.Random(0))


@pytest.mark.parametrize("name", EDIT_NAMES)
def test_edits_are_deterministic_for_a_seed(photo, name):
    a = apply_edit(name, photo, random.Random(42))
    b = apply_edit(name, photo, random.Random(42))
    assert a.size == b.size and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", ["crop50", "rotate15", "text", "letterbox", "pip", "combo", "brightness"])
def test_random_edits_vary_with_the_seed(photo, name):
    outs = {apply_edit(name, photo, random.Random(s)).tobytes() for s in range(6)}
    assert len(outs) > 1


def test_rotate90_swaps_sides_pixel_exactly(photo):
    out = apply_edit("rotate90", photo, random.Random(0))
    assert out.size == (192, 256)
    np.testing.assert_array_equal(px(out), np.rot90(px(photo)))


def test_hflip_is_a_mirror(photo):
    out = apply_edit("hflip", photo, random.Random(0))
    np.testing.assert_array_equal(px(out), px(photo)[:, ::-1])


def test_crop70_keeps_the_centre(photo):
    out = apply_edit("crop70", photo, random.Random(0))
    assert out.size == (179, 134)  # round(0.7 * 256), round(0.7 * 192)
    np.testing.assert_array_equal(px(out), px(photo)[29:29 + 134, 38:38 + 179])


def test_resize25_is_a_quarter_with_a_floor(photo):
    assert apply_edit("resize25", photo, random.Random(0)).size == (64, 48)
    assert apply_edit("resize25", picture(448, 14), random.Random(0)).size == (112, 14)
    assert apply_edit("resize25", picture(40, 100), random.Random(0)).size == (16, 25)
    assert apply_edit("resize25", picture(1, 1), random.Random(0)).size == (1, 1)


def test_crop50_is_a_subimage_of_half_the_area():
    img = picture(64, 48, seed=5)
    src = px(img)
    for seed in range(5):
        out = px(apply_edit("crop50", img, random.Random(seed)))
        h, w = out.shape[:2]
        assert abs(w * h / (64 * 48) - 0.5) < 0.05
        found = any(np.array_equal(src[y:y + h, x:x + w], out)
                    for y in range(48 - h + 1) for x in range(64 - w + 1))
        assert found, f"seed {seed}: crop not found in the original"


def test_random_box_stays_inside_any_image():
    rng = random.Random(0)
    for w, h in [(1, 1), (448, 14), (20000, 50), (3, 1000)]:
        for _ in range(50):
            left, top, right, bottom = random_box(w, h, rng.uniform(0.05, 1), 1.0, rng)
            assert 0 <= left < right <= w and 0 <= top < bottom <= h


def test_rotate15_expands_the_canvas(photo):
    out = apply_edit("rotate15", photo, random.Random(0))
    assert out.width > 256 and out.height > 192
    corner = px(out)[0, 0]
    assert (px(out)[:3, :3] == corner).all()  # padding, not picture


def test_grayscale_has_equal_channels(photo):
    out = px(apply_edit("grayscale", photo, random.Random(0)))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


@pytest.mark.parametrize("seed", range(4))
def test_brightness_and_contrast_shift_noticeably(photo, seed):
    src = px(photo).astype(float)
    bright = px(apply_edit("brightness", photo, random.Random(seed))).astype(float)
    contrast = px(apply_edit("contrast", photo, random.Random(seed))).astype(float)
    assert abs(bright.mean() - src.mean()) > 0.2 * src.mean()
    assert abs(contrast.std() / src.std() - 1) > 0.2


def test_blur_removes_detail(photo):
    def detail(a: np.ndarray) -> float:  # gradient energy: blur spreads edges, so it drops
        return float((np.diff(a.astype(float), axis=1) ** 2).mean())
    for seed in range(3):
        assert detail(px(apply_edit("blur", photo, random.Random(seed)))) < 0.5 * detail(px(photo))


def test_text_draws_on_a_same_size_copy(photo):
    out = apply_edit("text", photo, random.Random(0))
    assert out.size == photo.size
    assert (px(out) != px(photo)).any(axis=2).mean() > 0.002


def test_letterbox_pads_one_axis_with_the_picture_inside(photo):
    for seed in range(4):
        out = px(apply_edit("letterbox", photo, random.Random(seed)))
        # A landscape picture gets bars above and below.
        assert out.shape[1] == 256 and out.shape[0] > 192 * 1.2
        top = (out.shape[0] - 192) // 2
        np.testing.assert_array_equal(out[top:top + 192], px(photo))
        assert (out[0] == out[0, 0]).all()


def test_stretch_changes_the_aspect_ratio(photo):
    for seed in range(4):
        w, h = apply_edit("stretch", photo, random.Random(seed)).size
        ratios = sorted((w / 256, h / 192))
        assert ratios[0] == 1.0 and 1.39 < ratios[1] < 1.61


def test_pip_keeps_the_size_and_shrinks_the_picture(photo):
    out = apply_edit("pip", photo, random.Random(0))
    assert out.size == photo.size
    assert np.abs(px(out) - px(photo)).mean() > 5


def test_jpeg20_and_combo_stay_close_to_the_picture(photo):
    out = px(apply_edit("jpeg20", photo, random.Random(0)))
    assert out.shape == px(photo).shape
    assert 0 < np.abs(out - px(photo)).mean() < 12
    combo = apply_edit("combo", photo, random.Random(0))
    assert combo.width < 256 and combo.height < 192


@pytest.mark.parametrize("recipe", ["copy", "copy-heavy-lowres"])
@pytest.mark.parametrize("size", [(256, 192), (2000, 1500), *EXTREME])
def test_random_view_is_square_rgb(size, recipe):
    img = picture(*size, seed=3)
    rng = random.Random(0)
    for _ in range(10):
        out = random_view(img, rng, 64, recipe)
        assert out.mode == "RGB" and out.size == (64, 64)
    for view in (1, 17):  # views smaller than the lowres step's floor
        assert random_view(img, rng, view, recipe).size == (view, view)


def test_every_step_of_every_view_recipe_runs():
    from simsearch.edits import _VIEW_ORDER, VIEW_RECIPES
    for name, recipe in VIEW_RECIPES.items():
        assert set(recipe.weights) <= set(_VIEW_ORDER), name  # a step not in the order never runs


def test_random_view_is_deterministic_and_varied(photo):
    a = [random_view(photo, random.Random(s), 96).tobytes() for s in range(20)]
    b = [random_view(photo, random.Random(s), 96).tobytes() for s in range(20)]
    assert a == b
    assert len(set(a)) >= 16  # a few views (e.g. just a flip) can coincide


def test_random_view_draws_grayscale_about_a_quarter_of_the_time(photo):
    rng = random.Random(0)
    grey = 0
    n = 300
    for _ in range(n):
        a = px(random_view(photo, rng, 48))
        grey += (a.max(axis=2) - a.min(axis=2)).mean() < 3  # text may add a little colour
    assert 0.15 < grey / n < 0.35


def test_random_view_rejects_a_zero_size(photo):
    with pytest.raises(ValueError):
        random_view(photo, random.Random(0), 0)


def test_lowres_step_keeps_the_picture_and_loses_its_fine_detail():
    from simsearch.edits import VIEW_RECIPES, _view_step
    rs = np.random.default_rng(5)
    noise = Image.fromarray(rs.integers(0, 256, (160, 160, 3), dtype=np.uint8), "RGB")
    base = picture(160, 160, seed=5)
    detailed = Image.blend(base, noise, 0.3)
    recipe = VIEW_RECIPES["copy-heavy-lowres"]

    def fine(a):  # mean difference between horizontal neighbours: the finest detail there is
        return np.abs(np.diff(a, axis=1)).mean()

    def coarse(a):  # 16 x 16 block means: the picture itself
        return a.reshape(10, 16, 10, 16, 3).mean(axis=(1, 3))

    for seed in range(10):
        out = _view_step("lowres", detailed, random.Random(seed), 160, recipe)
        assert out.size == (160, 160) and out.mode == "RGB"
        a, b = px(detailed), px(out)
        assert fine(b) < 0.6 * fine(a)
        assert np.abs(coarse(b) - coarse(a)).mean() < 6


def test_the_lowres_recipe_shrinks_about_a_fifth_of_its_views():
    from simsearch.edits import VIEW_RECIPES, _draw_chain
    rng = random.Random(0)
    table = VIEW_RECIPES["copy-heavy-lowres"].weights
    n = 2000
    share = sum("lowres" in _draw_chain(rng, table) for _ in range(n)) / n
    assert 0.15 < share < 0.28
    assert all("lowres" not in VIEW_RECIPES[name].weights for name in ("copy", "copy-heavy"))


def test_line_drawing_is_black_lines_on_white_of_the_pictures_own_shapes():
    from simsearch.edits import INK_SHARE, line_drawing
    img = Image.new("RGB", (160, 120), (200, 180, 40))
    ImageDraw.Draw(img).ellipse((40, 30, 120, 90), fill=(30, 60, 200))
    for seed in range(8):
        out = line_drawing(img, random.Random(seed))
        a = px(out)
        assert out.mode == "RGB" and out.size == img.size
        assert set(np.unique(a)) <= {0, 255} and (a.max(axis=2) == a.min(axis=2)).all()
        ink = a[..., 0] == 0
        assert INK_SHARE[0] <= ink.mean() <= INK_SHARE[1]
        # the ink is the ellipse's outline (or, inked in, its dark inside), never the frame
        assert not ink[0].any() and not ink[-1].any() and not ink[:, 0].any() and not ink[:, -1].any()
        assert not ink[:20, :].any() and not ink[:, :30].any()
    assert px(line_drawing(img, random.Random(3))).tobytes() == px(line_drawing(img, random.Random(3))).tobytes()
    for size in EXTREME:
        out = line_drawing(picture(*size), random.Random(0))
        assert out is None or out.size == size


def test_line_drawing_of_a_dark_or_busy_picture_stays_line_art_or_is_none():
    # light lines on black (a night sky, a blueprint) and grain: never a near-black rectangle
    from simsearch.edits import INK_SHARE, line_drawing
    dark = Image.new("RGB", (200, 150), (5, 5, 20))
    draw = ImageDraw.Draw(dark)
    for i in range(12):
        draw.line((0, 12 * i, 200, 150 - 9 * i), fill=(230, 230, 255), width=2)
    grain = Image.fromarray(np.random.default_rng(2).integers(0, 256, (150, 200, 3), dtype=np.uint8), "RGB")
    flat = Image.new("RGB", (200, 150), (90, 120, 30))
    for picture_ in (dark, grain):
        for seed in range(12):
            out = line_drawing(picture_, random.Random(seed))
            if out is not None:
                assert INK_SHARE[0] <= (px(out)[..., 0] == 0).mean() <= INK_SHARE[1]
    assert all(line_drawing(flat, random.Random(seed)) is None for seed in range(4))  # nothing to draw


def test_the_lineart_recipe_redraws_about_one_picture_in_six_and_the_others_none():
    from simsearch.edits import VIEW_RECIPES, picture_style
    img = picture(64, 48)
    redrawn = sum(picture_style(img, random.Random(s), "copy-heavy-lowres-lineart") is not img
                  for s in range(1200)) / 1200
    assert 0.13 < redrawn < 0.21
    for name in VIEW_RECIPES:
        if name != "copy-heavy-lowres-lineart":
            rng = random.Random(0)
            assert picture_style(img, rng, name) is img and rng.random() == random.Random(0).random()


def test_a_shared_frame_holds_two_different_pictures_in_one_place():
    # the same frame around both, different pictures in the same box; pasted or inked as line art
    from simsearch.edits import shared_frame
    first, second = picture(90, 70, seed=3), picture(60, 80, seed=4)
    modes = []
    for seed in range(40):
        a, b = shared_frame(first, second, random.Random(seed), 64)
        assert a.size == b.size == (64, 64) and a.mode == b.mode == "RGB"
        differ = (px(a) != px(b)).any(axis=2)
        ys, xs = np.nonzero(differ)
        assert differ.mean() > 0.02  # they are two pictures, not one
        box = differ[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert box.size <= 0.85 ** 2 * 64 * 64 + 2 * 64  # ...that differ only inside the box
        # inked: wherever the two differ, one of them is black ink on the shared frame
        one_inked = (px(a)[differ] < 5).all(axis=1) | (px(b)[differ] < 5).all(axis=1)
        assert one_inked.all() or one_inked.mean() < 0.5
        modes.append("inked" if one_inked.all() else "pasted")
        again = shared_frame(first, second, random.Random(seed), 64)
        assert np.array_equal(px(again[0]), px(a)) and np.array_equal(px(again[1]), px(b))
    assert 8 <= modes.count("inked") <= 28  # about half the frames, where both pictures draw


def test_only_the_frames_recipe_brings_a_second_picture():
    from simsearch.edits import VIEW_RECIPES
    assert VIEW_RECIPES["copy-heavy-lowres-frames"].frame_p == pytest.approx(1 / 4)
    assert VIEW_RECIPES["copy-heavy-lowres-frames-half"].frame_p == pytest.approx(1 / 2)
    assert all(r.frame_p == 0 for n, r in VIEW_RECIPES.items() if "frames" not in n)
    # the frames recipes differ from copy-heavy-lowres in nothing else
    for name in ("copy-heavy-lowres-frames", "copy-heavy-lowres-frames-half"):
        assert dataclasses.replace(VIEW_RECIPES[name], frame_p=0) == VIEW_RECIPES["copy-heavy-lowres"]
