"""Copy-style image edits, shared by training augmentation and the eval benchmark.

Every named edit is a function ``(img, rng) -> img`` that takes and returns an RGB
``PIL.Image`` and draws all of its randomness from the ``random.Random`` it is given, so
the same rng state gives the same output.  Every random range is clamped to the image
size: edits work on any size, 1x1 and 20000x50 included, and never return an empty image.

``random_view`` is the training-time augmentation: a random chain of one to three edits
from a broad distribution, squashed to ``size x size``.  It works at the output
resolution after the first step, so it costs a few milliseconds per view.

Pillow only (no torch, no numpy on the hot path).
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Edit = Callable[[Image.Image, random.Random], Image.Image]
Colour = tuple[int, int, int]
Box = tuple[int, int, int, int]

# libjpeg cannot encode a side longer than this; larger images skip the re-encode.
JPEG_MAX_SIDE = 65500
# Downscaling edits never shrink a side below this many pixels (unless it already is).
MIN_SIDE = 16
_BILINEAR = Image.Resampling.BILINEAR
_TEXT_CHARS = string.ascii_letters + string.digits + "  !?#@&"


# --- parameterised building blocks (shared by the named edits and random_view) ----------


def _side(x: float) -> int:
    """A pixel count from a float: rounded, never below 1."""
    return max(1, int(round(x)))


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _colour(rng: random.Random) -> Colour:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _fill(rng: random.Random) -> Colour:
    """Padding colour: black half the time (the common case), otherwise random."""
    return (0, 0, 0) if rng.random() < 0.5 else _colour(rng)


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` and decode again."""
    if max(img.size) > JPEG_MAX_SIDE:
        return img.copy()
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def scale(img: Image.Image, fx: float, fy: float) -> Image.Image:
    """Resize each side by its factor; a shrinking side stops at MIN_SIDE pixels."""
    w, h = img.size

    def one(side: int, f: float) -> int:
        new = _side(side * f)
        return new if f >= 1 else max(new, min(side, MIN_SIDE))

    return img.resize((one(w, fx), one(h, fy)), _BILINEAR, reducing_gap=3.0)


def random_box(w: int, h: int, area: float, max_log_ratio: float, rng: random.Random) -> Box:
    """A box covering ``area`` of a w x h image at a random position.

    The box's aspect ratio relative to the image is ``exp(U(-max_log_ratio, max_log_ratio))``;
    both sides are clamped to the image, so the area fraction holds for any aspect ratio.
    """
    ratio = math.exp(rng.uniform(-max_log_ratio, max_log_ratio))
    fw = min(1.0, math.sqrt(area * ratio))
    fh = min(1.0, area / fw)
    cw, ch = min(w, _side(fw * w)), min(h, _side(fh * h))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return (left, top, left + cw, top + ch)


def rotate(img: Image.Image, angle: float, fill: Colour) -> Image.Image:
    """Rotate counter-clockwise by ``angle`` degrees, expanding the canvas with ``fill``."""
    return img.rotate(angle, resample=_BILINEAR, expand=True, fillcolor=fill)


def pad(img: Image.Image, axis: int, fraction: float, fill: Colour) -> Image.Image:
    """Add a centred solid border along ``axis`` (0 = left/right, 1 = top/bottom)."""
    w, h = img.size
    extra = max(2, int(round((w, h)[axis] * fraction)))
    size = (w + extra, h) if axis == 0 else (w, h + extra)
    canvas = Image.new("RGB", size, fill)
    canvas.paste(img, (extra // 2, 0) if axis == 0 else (0, extra // 2))
    return canvas


def background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A smooth random colour field: a tiny random image blown up bilinearly."""
    gw, gh = rng.randint(2, 4), rng.randint(2, 4)
    tiny = Image.frombytes("RGB", (gw, gh), bytes(rng.randrange(256) for _ in range(gw * gh * 3)))
    return tiny.resize(size, _BILINEAR)


def picture_in_picture(img: Image.Image, fraction: float, rng: random.Random) -> Image.Image:
    """Paste ``img`` scaled by ``fraction`` at a random spot on a same-size random background."""
    w, h = img.size
    canvas = background((w, h), rng)
    inner = img.resize((_side(w * fraction), _side(h * fraction)), _BILINEAR, reducing_gap=3.0)
    iw, ih = inner.size
    canvas.paste(inner, (rng.randint(0, w - iw), rng.randint(0, h - ih)))
    return canvas


@lru_cache(maxsize=128)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (cached: loading it costs ~1 ms)."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def overlay_text(img: Image.Image, height_fraction: float, rng: random.Random) -> Image.Image:
    """Draw a random 3-12 character string in a random colour at a random position."""
    w, h = img.size
    text = "".join(rng.choice(_TEXT_CHARS) for _ in range(rng.randint(3, 12))).strip() or "x"
    # Font size follows the height, but not so large that the string overflows the width.
    size = max(4, int(min(h * height_fraction, w / (0.6 * len(text)))))
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    x = rng.randint(0, max(0, w - (right - left))) - left
    y = rng.randint(0, max(0, h - (bottom - top))) - top
    out = img.copy()
    stroke = max(1, size // 12) if rng.random() < 0.5 else 0
    ImageDraw.Draw(out).text(
        (x, y), text, fill=_colour(rng), font=font, stroke_width=stroke, stroke_fill=_colour(rng)
    )
    return out


def _factor(rng: random.Random) -> float:
    """A noticeable photometric factor: darker/flatter [0.5, 0.7] or brighter/sharper [1.4, 1.8]."""
    return rng.uniform(0.5, 0.7) if rng.random() < 0.5 else rng.uniform(1.4, 1.8)


# --- the named edits ---------------------------------------------------------------------


def _jpeg20(img: Image.Image, rng: random.Random) -> Image.Image:
    return jpeg(img, 20)


def _resize25(img: Image.Image, rng: random.Random) -> Image.Image:
    return scale(img, 0.25, 0.25)


def _crop70(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    cw, ch = _side(w * 0.7), _side(h * 0.7)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def _crop50(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.crop(random_box(*img.size, 0.5, math.log(2), rng))


def _rotate90(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.transpose(Image.Transpose.ROTATE_90)


def _rotate15(img: Image.Image, rng: random.Random) -> Image.Image:
    return rotate(img, rng.choice((-15, 15)), _fill(rng))


def _hflip(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _grayscale(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.convert("L").convert("RGB")


def _brightness(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(_factor(rng))


def _contrast(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(_factor(rng))


def _blur(img: Image.Image, rng: random.Random) -> Image.Image:
    # Radius 2-3 px at 256x256, scaled with the image so big photos blur as visibly.
    radius = rng.uniform(2.0, 3.0) * math.sqrt(img.width * img.height) / 256
    return img.filter(ImageFilter.GaussianBlur(max(0.5, radius)))


def _text(img: Image.Image, rng: random.Random) -> Image.Image:
    return overlay_text(img, rng.uniform(0.12, 0.3), rng)


def _letterbox(img: Image.Image, rng: random.Random) -> Image.Image:
    # Bars across the long side, as when a wide frame is shown in a squarer one.
    w, h = img.size
    axis = rng.randrange(2) if w == h else (1 if w > h else 0)
    return pad(img, axis, rng.uniform(0.25, 0.6), _fill(rng))


def _stretch(img: Image.Image, rng: random.Random) -> Image.Image:
    f = rng.uniform(1.4, 1.6)
    return scale(img, f, 1.0) if rng.random() < 0.5 else scale(img, 1.0, f)


def _pip(img: Image.Image, rng: random.Random) -> Image.Image:
    return picture_in_picture(img, rng.uniform(0.4, 0.7), rng)


def _combo(img: Image.Image, rng: random.Random) -> Image.Image:
    cropped = img.crop(random_box(*img.size, rng.uniform(0.5, 0.85), math.log(1.5), rng))
    f = rng.uniform(0.35, 0.7)
    return jpeg(scale(cropped, f, f), rng.randint(25, 50))


EDITS: dict[str, Edit] = {
    "jpeg20": _jpeg20,
    "resize25": _resize25,
    "crop70": _crop70,
    "crop50": _crop50,
    "rotate90": _rotate90,
    "rotate15": _rotate15,
    "hflip": _hflip,
    "grayscale": _grayscale,
    "brightness": _brightness,
    "contrast": _contrast,
    "blur": _blur,
    "text": _text,
    "letterbox": _letterbox,
    "stretch": _stretch,
    "pip": _pip,
    "combo": _combo,
}
EDIT_NAMES: tuple[str, ...] = tuple(EDITS)


def apply_edit(name: str, img: Image.Image, rng: random.Random) -> Image.Image:
    """Apply the named edit to ``img`` (any mode; converted to RGB first)."""
    try:
        edit = EDITS[name]
    except KeyError:
        raise ValueError(f"unknown edit {name!r}; choose from {', '.join(EDIT_NAMES)}") from None
    return _rgb(edit(_rgb(img), rng))


# --- training views ----------------------------------------------------------------------

# The random resized crop is drawn on its own, then a chain of k ~ U{1,2,3} further steps is
# drawn without replacement with the recipe's weights.  Two recipes:
# - "copy" (p = 0.75, area 0.25-1: the backbone of copy-detection training; the validation views
#   of every training run, so runs stay comparable): each step's chance of being in a view is
#   about jitter 0.42, flip 0.34, grayscale 0.27, rotate 0.21, jpeg 0.21, blur/text/pad/pip 0.14;
# - "copy-heavy" (p = 0.85, area 0.1-1, pip 0.25-0.7 of the side, and rotations and
#   picture-in-picture drawn about twice as often): for the edits the default model misses most,
#   heavy crops, picture-in-picture and quarter turns.
# - "copy-heavy-lowres" (copy-heavy plus a "lowres" step, chance about 0.2): the view is shrunk
#   to a quarter to two thirds of its side, sometimes saved as JPEG at that size, and scaled back
#   up the way the product scales a small picture: for small pictures re-saved at half size.
# - "copy-heavy-lowres-lineart" (copy-heavy-lowres, and one picture in six redrawn as black line
#   art *before* both of its views are cut, `line_drawing`): batches then hold several different
#   line drawings, which the loss must hold apart, as it must different clip-art hands, digits
#   or coins drawn in one style. A picture and its line drawing are never made a pair: a sketch
#   of a photograph is not a copy of it. A picture with no drawing (`INK_SHARE`) stays itself.
# - "copy-heavy-lowres-frames" (copy-heavy-lowres, and one item in four brings a look-alike:
#   `shared_frame` sets its picture and another training picture into one frame, a smooth colour
#   field or a badge, in the same place, half the time as line art inked onto it): the two are
#   different pictures that share most of their pixels, as digit stamps on one template do, and
#   each is a copy of its own picture (picture-in-picture), so the loss must judge a framed
#   picture by what is in the frame. Their views are cut with `FRAME_VIEWS`, whose crops keep
#   most of the frame, since a crop of the frame alone would be the same pixels in both.
# - "copy-heavy-lowres-frames-half": the same with one item in two framed (a double dose).


@dataclass(frozen=True)
class ViewRecipe:
    crop_p: float
    crop_area: tuple[float, float]
    pip_fraction: tuple[float, float]
    weights: dict
    lineart_p: float = 0.0  # chance a picture is redrawn as line art before its views (per picture)
    frame_p: float = 0.0  # chance an item brings a look-alike in a `shared_frame` (per item)


VIEW_RECIPES: dict[str, ViewRecipe] = {
    "copy": ViewRecipe(0.75, (0.25, 1.0), (0.4, 0.7), {
        "jitter": 2.5, "flip": 2.0, "grayscale": 1.4, "rotate": 1.1, "jpeg": 1.1,
        "blur": 0.7, "text": 0.7, "pad": 0.7, "pip": 0.7}),
    "copy-heavy": ViewRecipe(0.85, (0.1, 1.0), (0.25, 0.7), {
        "jitter": 2.5, "flip": 2.0, "grayscale": 1.4, "rotate": 2.2, "jpeg": 1.1,
        "blur": 0.7, "text": 0.7, "pad": 0.7, "pip": 1.5}),
}
VIEW_RECIPES["copy-heavy-lowres"] = dataclasses.replace(
    VIEW_RECIPES["copy-heavy"], weights={**VIEW_RECIPES["copy-heavy"].weights, "lowres": 1.3})
VIEW_RECIPES["copy-heavy-lowres-lineart"] = dataclasses.replace(
    VIEW_RECIPES["copy-heavy-lowres"], lineart_p=1 / 6)
VIEW_RECIPES["copy-heavy-lowres-frames"] = dataclasses.replace(
    VIEW_RECIPES["copy-heavy-lowres"], frame_p=1 / 4)
VIEW_RECIPES["copy-heavy-lowres-frames-half"] = dataclasses.replace(
    VIEW_RECIPES["copy-heavy-lowres"], frame_p=1 / 2)
# The views of a framed pair: no picture-in-picture or padding (the frame is one already), and
# crops of at least 60% of it, so that both pictures' views still show what tells them apart.
FRAME_VIEWS = dataclasses.replace(
    VIEW_RECIPES["copy-heavy-lowres"], crop_p=0.5, crop_area=(0.6, 1.0),
    weights={k: v for k, v in VIEW_RECIPES["copy-heavy-lowres"].weights.items() if k not in ("pip", "pad")})
# Steps run in this order whatever order they were drawn in: geometry, then framing,
# then colour, then overlays, and JPEG last so its artefacts survive.
_VIEW_ORDER = ("flip", "rotate", "pad", "pip", "grayscale", "jitter", "blur", "text", "lowres", "jpeg")


def _draw_chain(rng: random.Random, table: dict) -> set[str]:
    names, weights = list(table), list(table.values())
    chosen: set[str] = set()
    for _ in range(rng.randint(1, 3)):
        i = rng.choices(range(len(names)), weights=weights)[0]
        chosen.add(names.pop(i))
        weights.pop(i)
    return chosen


def _view_step(name: str, img: Image.Image, rng: random.Random, size: int,
               recipe: ViewRecipe) -> Image.Image:
    if name == "flip":
        flip = Image.Transpose.FLIP_LEFT_RIGHT if rng.random() < 0.8 else Image.Transpose.FLIP_TOP_BOTTOM
        return img.transpose(flip)
    if name == "rotate":
        if rng.random() < 0.5:
            turn = rng.choice((Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270))
            return img.transpose(turn)
        return rotate(img, rng.uniform(-30, 30), _fill(rng))
    if name == "pad":
        return pad(img, rng.randrange(2), rng.uniform(0.15, 0.6), _fill(rng))
    if name == "pip":
        return picture_in_picture(img, rng.uniform(*recipe.pip_fraction), rng)
    if name == "grayscale":
        return img.convert("L").convert("RGB")
    if name == "jitter":
        for enhancer in rng.sample((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), 2):
            img = enhancer(img).enhance(rng.uniform(0.5, 1.6))
        return img
    if name == "blur":
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5) * size / 256))
    if name == "text":
        return overlay_text(img, rng.uniform(0.08, 0.3), rng)
    if name == "jpeg":
        return jpeg(img, rng.randint(15, 80))
    if name == "lowres":
        small = scale(img, *(rng.uniform(0.25, 0.67),) * 2)
        if rng.random() < 0.5:
            small = jpeg(small, rng.randint(60, 95))
        return small.resize(img.size, _BILINEAR)
    raise ValueError(f"unknown view step {name!r}")  # pragma: no cover - internal table


# A line drawing's share of black pixels: a picture whose drawing falls outside it (too few
# edges, or mostly ink, as dark skies and busy textures give) is not redrawn.
INK_SHARE = (0.02, 0.45)
_MIN_EDGE = 24  # weaker edges are JPEG noise and grain, not outlines


def line_drawing(img: Image.Image, rng: random.Random) -> Image.Image | None:
    """``img`` redrawn as black lines on white (RGB, same size), or None when it gives no line
    drawing (`INK_SHARE`). Its outlines are the strongest edges of the softened grey picture,
    drawn 1-5 pixels wide and aimed, once drawn, at 8-22% of the picture; half the time its
    darkest areas are inked in as well, as stencil clip art is, unless they are over a third of it."""
    if min(img.size) <= 2:
        return None
    grey = ImageOps.autocontrast(_rgb(img).convert("L"), cutoff=1)
    soft = grey.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.4)))
    # FIND_EDGES marks the frame of the picture itself: blank a one-pixel border
    edges = ImageOps.expand(ImageOps.crop(soft.filter(ImageFilter.FIND_EDGES), 1), 1, 0)
    width, target = rng.choice((1, 3, 3, 5)), rng.uniform(0.08, 0.22)
    counts, pixels = edges.histogram(), img.width * img.height
    share = target / width  # of edge pixels, before they are drawn `width` wide
    for _ in range(4):
        cut, total = 255, 0
        while cut > _MIN_EDGE and total + counts[cut] < share * pixels:
            total += counts[cut]
            cut -= 1
        lines = edges.point(lambda v, c=cut: 0 if v >= c else 255)
        if width > 1:
            lines = lines.filter(ImageFilter.MinFilter(width))
        ink = lines.histogram()[0] / pixels
        if ink <= 1.5 * target:
            break
        share /= 2
    if rng.random() < 0.5:
        threshold = int(rng.uniform(40, 90))
        if sum(soft.histogram()[:threshold]) <= pixels / 3:
            lines = ImageChops.darker(lines, soft.point(lambda v: 0 if v < threshold else 255))
    ink = lines.histogram()[0] / pixels
    if not INK_SHARE[0] <= ink <= INK_SHARE[1]:
        return None
    return lines.convert("RGB")


def _badge(size: int, rng: random.Random) -> Image.Image:
    """A flat badge: a rounded plate of one colour with a dark rim, on a plain ground."""
    canvas = Image.new("RGB", (size, size), _fill(rng))
    edge, rim = rng.randint(0, size // 10), max(1, int(size * rng.uniform(0.01, 0.04)))
    ImageDraw.Draw(canvas).rounded_rectangle(
        (edge, edge, size - 1 - edge, size - 1 - edge), radius=rng.randint(0, size // 4),
        fill=_colour(rng), outline=tuple(rng.randrange(80) for _ in range(3)), width=rim)
    return canvas


def shared_frame(first: Image.Image, second: Image.Image, rng: random.Random,
                 size: int = 256) -> tuple[Image.Image, Image.Image]:
    """Two different pictures set into one frame (``size`` square): the same smooth colour field
    or badge, each picture scaled to the same box, 50-85% of the side, in the same place. Half
    the time, where both give one, each picture's `line_drawing` is inked onto the frame instead
    (white left see-through), as symbols on a stamp template are. Each result is a
    picture-in-picture copy of its own picture; the two are not copies of each other."""
    frame = background((size, size), rng) if rng.random() < 0.5 else _badge(size, rng)
    box_w, box_h = (_side(size * rng.uniform(0.5, 0.85)) for _ in range(2))
    at = (rng.randint(0, size - box_w), rng.randint(0, size - box_h))
    insets = [_rgb(p).resize((box_w, box_h), _BILINEAR, reducing_gap=3.0) for p in (first, second)]
    if rng.random() < 0.5:
        drawings = [line_drawing(p, rng) for p in insets]
        if all(d is not None for d in drawings):
            frame = Image.blend(frame, Image.new("RGB", frame.size, "white"), 0.5)  # ink must show
            out = []
            for drawing in drawings:
                canvas = frame.copy()
                region = canvas.crop((at[0], at[1], at[0] + box_w, at[1] + box_h))
                canvas.paste(ImageChops.darker(region, drawing), at)
                out.append(canvas)
            return out[0], out[1]
    out = []
    for inset in insets:
        canvas = frame.copy()
        canvas.paste(inset, at)
        out.append(canvas)
    return out[0], out[1]


def picture_style(img: Image.Image, rng: random.Random, recipe: str = "copy") -> Image.Image:
    """The picture a training item's views are cut from: ``img`` itself, or with the recipe's
    ``lineart_p`` chance its `line_drawing` (``img`` still where it gives none). Draws from
    ``rng`` only when the recipe can redraw."""
    chance = VIEW_RECIPES[recipe].lineart_p
    drawing = line_drawing(img, rng) if chance and rng.random() < chance else None
    return img if drawing is None else drawing


def random_view(img: Image.Image, rng: random.Random, size: int,
                recipe: str | ViewRecipe = "copy") -> Image.Image:
    """One random copy-style view of ``img`` as an RGB ``size x size`` image.

    ``recipe`` names an entry of `VIEW_RECIPES` (or is a `ViewRecipe`); the text below
    describes "copy".

    With probability 0.75 a random resized crop (area 0.25-1 of the image, relative aspect
    3/4-4/3, anywhere in the frame), then one to three further steps drawn from flips,
    rotations (90/180/270 or up to 30 degrees with padding), grayscale, colour jitter,
    blur, JPEG, text, letterbox padding and picture-in-picture.  The crop is fused
    with the first resize, so every later step runs at about
    ``size x size`` whatever the input size.  The result is squashed, never cropped, to
    ``size x size``.
    """
    if size < 1:
        raise ValueError(f"view size must be at least 1 pixel, got {size}")
    if isinstance(recipe, ViewRecipe):
        table = recipe
    elif recipe in VIEW_RECIPES:
        table = VIEW_RECIPES[recipe]
    else:
        raise ValueError(f"unknown view recipe {recipe!r}; choose one of {', '.join(VIEW_RECIPES)}")
    img = _rgb(img)
    box = None
    if rng.random() < table.crop_p:
        box = random_box(*img.size, rng.uniform(*table.crop_area), math.log(4 / 3), rng)
    img = img.resize((size, size), _BILINEAR, box=box, reducing_gap=3.0)
    chain = _draw_chain(rng, table.weights)
    for name in _VIEW_ORDER:
        if name in chain:
            img = _view_step(name, img, rng, size, table)
    if img.size != (size, size):
        img = img.resize((size, size), _BILINEAR)
    return img
