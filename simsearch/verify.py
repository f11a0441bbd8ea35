"""A second look at near-duplicate pairs: do the two pictures share local features in one layout?

The network's score says two pictures hold the same things; it cannot tell a copy from a
different picture of the same kind (two hand signs drawn in one style, two gnus, a 6 and an 8).
Below `VerifySettings.below`, dedupe asks the files themselves: SIFT keypoints of both pictures
(grey, at most `side` pixels on the long side; the first one also mirrored when the straight
match fails, for flipped copies) are matched with Lowe's ratio test and an affine transform is
fitted by RANSAC. A copy, however cropped, turned, stretched, inset or recoloured, keeps many
matches that agree on one transform (its inliers); two different pictures keep only a few
chance ones. A pair whose pictures both have at least `min_keypoints` keypoints and fewer than
`min_inliers` inliers is judged two different pictures and kept apart. A pair with a picture
under `min_keypoints` (clip art, a smooth gradient) is judged by placing one picture inside the
other instead (`aligned`: small grey pictures, every quarter turn and mirror, crops, insets and
stretches, the best normalised cross-correlation): `plain_same` or more is one picture, below
`plain_apart` two. Plain pairs are lined up up to `plain_below`, above `below` too (different
clip-art glyphs score 0.95 and more: the score cannot tell them apart there either), so every
pair under it is read to learn whether a picture is plain; a pair that is not plain stands on
its score from `below` up, as before. A pair that cannot be judged (between those two, a
picture flat all over, a file that cannot be read) is left to the score alone, at the threshold made for scores alone
(`alone`: dedupe passes the index's `--no-check` threshold with each call): the check lets
dedupe go below that threshold only for pairs it has looked at and found to be one picture.
A pair found one picture is grouped; a plan acts on it only when it also passes the act cuts
(`act_aligned` for plain pairs; for pairs with keypoints, at any score, `act_disagree`: the two
pictures, laid one on the other by the fitted transform, must differ nowhere by much, see
`disagreement`).
The settings were chosen by a rule on the default model's validation images
(`recipes/default_model/verify_trial.py`); the evaluation set's distinct pictures had been
looked at while diagnosing what the check missed (docs/how-it-works.md, Picture check, says how
much the choice hangs on that rule).

OpenCV lives here alone; decoding goes through `simsearch.images` like everything else. The check
dedupe runs over many pairs (which to read, the features held, each pair's verdict kept) is
`simsearch.picturecheck.PictureCheck`.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from simsearch.errors import DecodeError, SimsearchError
from simsearch.images import load_image

__all__ = ["VerifySettings", "VerifyStats", "Features", "RerankSettings",
           "features", "picture_features", "inliers", "match", "agreeing", "agreement",
           "disagreement", "disagreements", "mirrored", "picture_map", "beyond", "aligned",
           "plain_verdict", "plain_disagreement", "plain_figures", "copy_first"]

_UNSURE = "unsure"  # the same picture for grouping, short of the cuts for a file action


@dataclass(frozen=True)
class VerifySettings:
    """Which pairs are checked and when a check keeps them apart (see the module docstring)."""

    below: float = 0.95        # pairs scoring at or above this are copies on the score alone
    min_inliers: int = 20      # fewer matches agreeing on one transform: different pictures
    min_keypoints: int = 40    # both pictures need this many keypoints to be matched; else lined up
    side: int = 512            # long side of the grey picture the keypoints are found on
    keypoints: int = 1000      # at most this many keypoints a picture (the strongest)
    ratio: float = 0.8         # Lowe's ratio test: best match closer than this share of the next
    tolerance: float = 8.0     # RANSAC's reprojection error, pixels at `side`
    cache: int = 2048          # pictures' features held at once (at most ~0.5 MB each)
    # a pair with a picture under `min_keypoints`: one picture placed in the other (see `aligned`)
    plain_same: float | None = 0.9    # correlation at or above this: the same picture
    plain_apart: float | None = 0.6   # below this: two different pictures (None: never)
    # pairs with a plain picture are lined up while they score under this, above `below` too
    # (None: as `below`); to learn which pictures are plain, every pair under it is read
    plain_below: float | None = 1.01
    # a pair found the same picture is grouped; a plan acts on it only when it also reaches these
    # (more agreeing matches, or lined up more closely; None: `plain_same`), else it is "not
    # confirmed" and kept (two different glyphs, a B and an 8, line up at 0.91): verify_trial.py's
    # act cuts, session 22 (60 matches, 0.97). The matches are counted straight, the mirror
    # tried only while they fall short of `min_inliers`
    act_inliers: int = 20
    act_aligned: float | None = 0.97
    # session 23: nor when the two pictures, laid one on the other, differ somewhere by more
    # than this (`disagreement`; None: not looked at), at any score: a pair with keypoints at or
    # above `below` is matched too, and one that differs is grouped on its score but "not
    # confirmed" (two clock faces at other times score 0.99 and keep 91 matches). Chosen with
    # the matches' cut by session 22's rule (verify_trial.py): files a plan would lose on
    # validation and glyphs 17 to 8, copies acted on 2,346 to 2,475
    act_disagree: float | None = 0.4
    # session 31 (recipes/default_model/trials/fine-act-rule.md): nor when, laid the same way,
    # they differ by more than `small_disagree` in the worst of windows 1/`small_windows` of the
    # long side (`disagreements`; None: not looked at): documents, receipts and screenshots
    # differing in one line or one number keep hundreds of matches and differ under 0.4 in an
    # eighth. Adopted by the trial's rule: 864 of 1,388 different documents kept from a plan,
    # 70 of 3,592 validation copy pairs (text copies apart)
    small_disagree: float | None = 0.8
    small_windows: int = 32
    # session 30 (recipes/default_model/trials/colour-act-rule.md): nor, for a plain pair lined
    # up at `sure_aligned` or more, when more than `colour_cut` of the pixels bearing colour
    # differ by more than `colour_tol` chroma levels at every placing that lines it up
    # (`colours_differ`; None: colours not compared): two flags of one layout in other colours
    # line up in grey as one picture. Not adopted: the trial's choice (16, 0.3) fell short of
    # its rule (it kept 49% of different flags from a plan, half was asked), so off
    colour_tol: float = 16.0
    colour_cut: float | None = None
    # session 31 (recipes/default_model/trials/detail-act-rule.md): nor, for a plain pair lined
    # up at `sure_aligned` or more, when the two pictures, laid one on the other at their best
    # placings, differ somewhere by more than this (`plain_disagreement`, as `act_disagree` for
    # pairs with keypoints; None: not looked at): two signs with other numbers line up at 48 px
    # as one picture. Adopted by the trial's rule: it keeps 154 of 186 different badges a
    # plan acted on from it, and 14 of 1,338 validation copy pairs (text copies apart)
    plain_disagree: float | None = 0.4
    # session 31 (recipes/default_model/trials/plain-small-rule.md): and, at the same
    # transform, the worst window 1/`small_windows` of the side at most this (None: not looked
    # at): small icons with another digit differ under 0.4 in an eighth
    plain_small: float | None = None

    @property
    def reads_below(self) -> float:
        """Pairs scoring under this have their pictures read."""
        return max(self.below, self.plain_below or self.below)

    @property
    def sure_inliers(self) -> int:
        """A pair with keypoints keeping this many agreeing matches is the same picture for a
        file action too (an act cut under the grouping cut changes nothing)."""
        return max(self.min_inliers, self.act_inliers)

    @property
    def sure_aligned(self) -> float | None:
        """A plain pair lined up at or above this is the same picture for a file action too."""
        if self.plain_same is None or self.act_aligned is None:
            return self.plain_same
        return max(self.plain_same, self.act_aligned)


@dataclass
class VerifyStats:
    """What a check did: pairs looked at, pairs kept apart, pairs judged by placing one plain
    picture in the other, pairs it could not judge (and of those, the ones held back: scoring
    below the threshold for scores alone), and files it could not read."""

    checked: int = 0
    apart: int = 0
    unjudged: int = 0                                   # pairs it could not judge
    held_back: int = 0                                  # ... below the score-alone threshold
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> reason
    plain: int = 0                                      # pairs judged by `aligned`
    unsure: int = 0     # the same picture, short of the act cuts: grouped, not acted on
    remembered: int = 0  # of all these, pairs judged in an earlier run (simsearch.verdicts)
    # pairs at or above `below` whose pictures keep too few matches: grouped on their score,
    # not confirmed (session 26)
    few: int = 0

    def to_dict(self) -> dict:
        return {"checked": self.checked, "apart": self.apart, "plain": self.plain,
                "unjudged": self.unjudged, "held_back": self.held_back,
                "unsure": self.unsure, "remembered": self.remembered, "few": self.few,
                "unreadable": dict(self.unreadable)}

    def copy(self) -> "VerifyStats":
        return dataclasses.replace(self, unreadable=dict(self.unreadable))

    def since(self, before: "VerifyStats") -> "VerifyStats":
        """What was added after `before` (a `copy()` of these stats taken earlier)."""
        return VerifyStats(self.checked - before.checked, self.apart - before.apart,
                           self.unjudged - before.unjudged, self.held_back - before.held_back,
                           {p: why for p, why in self.unreadable.items()
                            if p not in before.unreadable}, self.plain - before.plain,
                           self.unsure - before.unsure, self.remembered - before.remembered,
                           self.few - before.few)


@dataclass
class Features:
    """One picture's keypoints: positions [n, 2] float32 and SIFT descriptors [n, 128] uint8
    (OpenCV's are whole numbers 0-255 in float32: a quarter of the memory, the same matches),
    the grey picture, and (made when first needed) the same of its mirror image and the small
    grey picture `aligned` lines up."""

    grey: np.ndarray
    points: np.ndarray
    descriptors: np.ndarray
    mirrored: "Features | None" = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # `aligned`'s small grey picture and its detail, made when first needed (`_small`)
    small: "tuple[np.ndarray, float] | None" = field(default=None, init=False, repr=False,
                                                     compare=False)
    # the pieces of `_placings`' search made from this picture, kept while it is among the
    # SEARCH_KEPT pictures last searched (`_pieces`): {key: template or window mask}
    pieces: "dict | None" = field(default=None, init=False, repr=False, compare=False)
    source: str = field(default="", compare=False)  # the file's path, when read from one
    # the file's full size (width, height, upright), when read from one: the transform `match`
    # fits, in `grey`'s pixels, becomes a map between files' own pixels (`picture_map`)
    full: tuple[int, int] | None = field(default=None, compare=False)
    # the picture's colours at `aligned`'s size (`_colour_small`), for `colours_differ`: made
    # with the features for a plain picture read from a file when the settings compare colours,
    # else when first needed (`_colour`)
    colour: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def count(self) -> int:
        return len(self.points)


def _cv2():
    """OpenCV, or an error that says what to install."""
    try:
        import cv2  # imported on first use: a run that looks at no picture never pays for it
    except ImportError as e:
        raise SimsearchError(f"the picture check (simsearch dedupe, query, eval, serve) needs "
                             f"OpenCV, which does not import here ({e}); install it with: pip "
                             f"install opencv-python-headless, or run on scores alone with "
                             f"--no-check (serve: \"check\": false)") from None
    _one_thread(cv2)
    return cv2


@functools.cache
def _one_thread(cv2) -> None:
    """Once: OpenCV runs one thread, our own pool runs pictures side by side."""
    cv2.setNumThreads(1)


def features(grey: np.ndarray, settings: VerifySettings = VerifySettings()) -> Features:
    """SIFT keypoints of a grey uint8 picture [h, w] (already at most `side` on its long side)."""
    cv2 = _cv2()
    sift = cv2.SIFT_create(nfeatures=settings.keypoints)
    try:
        found, descriptors = sift.detectAndCompute(np.ascontiguousarray(grey), None)
    except cv2.error:  # a picture OpenCV cannot work on (a degenerate size): no keypoints
        found, descriptors = (), None
    points = np.float32([k.pt for k in found]).reshape(-1, 2)
    if descriptors is None:
        descriptors = np.zeros((0, 128), np.float32)
    return Features(grey, points, np.clip(np.rint(descriptors), 0, 255).astype(np.uint8))


def picture_features(path: str, settings: VerifySettings = VerifySettings()) -> Features:
    """The features of the picture in the file at `path` (DecodeError or OSError when it cannot
    be read)."""
    compared = settings.colour_cut is not None  # colours: the decoded picture is kept a while
    grey, full, *picture = _grey(path, settings.side, keep=compared)
    found = features(grey, settings)
    found.source, found.full = path, full
    if compared and found.count < settings.min_keypoints:
        found.colour = _colour_small(picture[0], grey.shape)  # plain: its colours are compared
    return found


def mirrored(f: Features, settings: VerifySettings = VerifySettings()) -> Features:
    """The features of `f`'s picture flipped left to right (computed once, then kept, however
    many threads ask at once)."""
    with f.lock:
        if f.mirrored is None:
            flipped = features(np.ascontiguousarray(f.grey[:, ::-1]), settings)
            flipped.full = f.full
            f.mirrored = flipped
    return f.mirrored


def picture_map(a: Features, used: Features, b: Features, transform: np.ndarray | None
                ) -> np.ndarray | None:
    """The linear part (2 x 2) of the map from `a`'s file's pixels to `b`'s, from the transform
    `agreement` fitted (`used`'s grey pixels to `b`'s: `used` is `a` or its mirror): its
    singular values say at what scale `b` holds `a`'s picture along each axis (a quarter-size
    copy 0.25 and 0.25; a copy stretched one way 1.5 and 1; a turn or bars around it 1 and 1).
    None without a transform or without both files' full sizes."""
    if transform is None or a.full is None or b.full is None:
        return None
    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    linear = np.asarray(transform, np.float64)[:, :2]
    if used is not a:  # fitted on the mirror: x' = w - 1 - x
        linear = linear @ np.diag([-1.0, 1.0])
    # a's full pixels -> a's grey pixels -> b's grey pixels -> b's full pixels
    out = np.diag([b.full[0] / wb, b.full[1] / hb]) @ linear @ np.diag([wa / a.full[0],
                                                                        ha / a.full[1]])
    return out if np.all(np.isfinite(out)) and abs(np.linalg.det(out)) > 1e-9 else None


EXTENT_MARGIN = 0.02  # of the long side: keypoints this near the other's edge count as inside


def beyond(used: Features, b: Features, transform: np.ndarray | None
           ) -> tuple[float, float] | None:
    """The share of each picture's keypoints that the fitted transform (`used`'s grey pixels
    to `b`'s) puts outside the other picture: how much of its picture the other does not show.
    A crop shows none beyond its original and hides about half of it (0, 0.5 for crop and
    original); bars, filled corners and a flat backdrop hold no keypoints, so a letterboxed or
    turned copy shows nothing beyond (0, 0). None without a transform or keypoints."""
    if transform is None or used.count == 0 or b.count == 0:
        return None
    cv2 = _cv2()
    forward = np.asarray(transform, np.float64)
    try:
        backward = cv2.invertAffineTransform(forward)
    except cv2.error:
        return None

    def outside(points: np.ndarray, m: np.ndarray, shape: tuple[int, ...]) -> float:
        h, w = shape
        margin = EXTENT_MARGIN * max(h, w)
        p = points.astype(np.float64) @ m[:, :2].T + m[:, 2]
        out = ((p[:, 0] < -margin) | (p[:, 0] > w + margin)
               | (p[:, 1] < -margin) | (p[:, 1] > h + margin))
        return float(out.mean())

    return outside(used.points, forward, b.grey.shape), outside(b.points, backward,
                                                                used.grey.shape)


def inliers(a: Features, b: Features, settings: VerifySettings = VerifySettings()) -> int:
    """How many ratio-test matches between `a` and `b` agree on one affine transform."""
    return match(a, b, settings)[0]


def match(a: Features, b: Features, settings: VerifySettings = VerifySettings()
          ) -> tuple[int, np.ndarray | None]:
    """The ratio-test matches between `a` and `b` that agree on one affine transform, and that
    transform (2 x 3, `a`'s pixels to `b`'s; None when none could be fitted)."""
    if a.count < 2 or b.count < 2:
        return 0, None
    cv2 = _cv2()
    try:
        pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors.astype(np.float32),
                                                    b.descriptors.astype(np.float32), k=2)
        good = [m[0] for m in pairs
                if len(m) == 2 and m[0].distance < settings.ratio * m[1].distance]
        if len(good) < 3:
            return 0, None
        src = a.points[[m.queryIdx for m in good]]
        dst = b.points[[m.trainIdx for m in good]]
        transform, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC,
                                               ransacReprojThreshold=settings.tolerance)
    except cv2.error:  # no transform can be fitted (degenerate points): nothing agrees
        return 0, None
    return (0, None) if mask is None else (int(mask.sum()), transform)


def agreeing(a: Features, b: Features, settings: VerifySettings = VerifySettings(),
             enough: int | None = None) -> int:
    """The matches between `a` and `b` that agree on one transform, straight or with `a`
    mirrored (for flipped copies), whichever is more; with `enough`, the mirror is tried only
    when the straight count falls short of it."""
    return agreement(a, b, settings, enough)[0]


def agreement(a: Features, b: Features, settings: VerifySettings = VerifySettings(),
              enough: int | None = None) -> tuple[int, np.ndarray | None, Features]:
    """`agreeing`'s count, with the transform it found and the features it holds for `a` (its
    mirror's when the mirror won)."""
    straight, transform = match(a, b, settings)
    if enough is not None and straight >= enough:
        return straight, transform, a
    flipped = mirrored(a, settings)
    other, other_transform = match(flipped, b, settings)
    if other > straight:
        return other, other_transform, flipped
    return straight, transform, a


DISAGREE_SIDE, DISAGREE_WINDOWS, DISAGREE_BLUR = 128, 8, 1.0
DISAGREE_LEVELS = 33  # quantiles of the grey levels matched between the two pictures
DISAGREE_MIN_SPREAD = 8.0  # grey levels: a flatter picture's differences are not magnified


def disagreement(a: Features, b: Features, transform: np.ndarray, side: int = DISAGREE_SIDE,
                 windows: int = DISAGREE_WINDOWS) -> float | None:
    """Where two matched pictures differ most: the coarser of the two is laid onto the finer by
    `transform` (from `match`, `a`'s pixels to `b`'s; inverted when `a` is the finer), so that
    the warp enlarges and never shrinks (either way round, the same figure); both are compared
    at no more than `side` pixels on the long side and no finer than the coarser one,
    lightly blurred, the laid picture's grey levels mapped onto the other's (a monotone tone
    curve: brightness, contrast and gamma forgiven), its borders repeated outward so that the
    blur brings in no black; the figure is the mean difference in the worst window
    (1/`windows` of the long side, at most the short side), in units of the finer
    picture's spread (at least DISAGREE_MIN_SPREAD grey levels). A copy differs a little everywhere (re-saving,
    resampling): medians 0.04-0.16 over the evaluation's edits; two different pictures that
    share most of their pixels (two clock faces at other times, two dialogs of one program)
    differ a lot somewhere: 1 and more; so, less, does a copy with a caption drawn over it
    (about 0.5-0.7). None when the overlap is too small to say."""
    laid = _laid(a, b, transform, side)
    return None if laid is None else _worst_window(*laid, windows)


def disagreements(a: Features, b: Features, transform: np.ndarray, side: int,
                  windows: tuple[int, ...]) -> list[float | None]:
    """`disagreement` at `side` for each of `windows` (the two pictures laid once)."""
    laid = _laid(a, b, transform, side)
    return [None if laid is None else _worst_window(*laid, w) for w in windows]


class Laid(NamedTuple):
    """Two pictures laid one on the other (`_laid`): their difference (zero outside the
    overlap), the overlap and the finer picture's spread (grey levels, at least
    DISAGREE_MIN_SPREAD)."""

    diff: np.ndarray
    inside: np.ndarray
    spread: float


def _laid(a: Features, b: Features, transform: np.ndarray, side: int) -> Laid | None:
    """`disagreement`'s two pictures laid one on the other at no more than `side` pixels; None
    when the overlap is too small to say."""
    cv2 = _cv2()
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
    if not np.isfinite(scale) or scale < 1e-6:
        return None
    if scale < 1:  # `a` is the finer: lay `b` on it instead
        a, b, transform, scale = b, a, cv2.invertAffineTransform(transform), 1 / scale
    hb, wb = b.grey.shape
    laid = cv2.warpAffine(a.grey.astype(np.float32), transform, (wb, hb),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones(a.grey.shape, np.float32), transform, (wb, hb),
                            flags=cv2.INTER_NEAREST)
    side = min(side, max(hb, wb) / scale)  # `a` holds no finer detail than this
    f = side / max(hb, wb)
    size = (max(1, round(wb * f)), max(1, round(hb * f)))
    laid = cv2.resize(laid, size, interpolation=cv2.INTER_AREA)
    grey = cv2.resize(b.grey.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    inside = cv2.resize(inside, size, interpolation=cv2.INTER_AREA) > 0.999
    if inside.sum() < 64:
        return None
    laid = cv2.GaussianBlur(laid, (0, 0), DISAGREE_BLUR)
    grey = cv2.GaussianBlur(grey, (0, 0), DISAGREE_BLUR)
    levels = np.linspace(0, 100, DISAGREE_LEVELS)
    ours, theirs = np.percentile(laid[inside], levels), np.percentile(grey[inside], levels)
    ours = np.maximum.accumulate(ours + np.arange(len(ours)) * 1e-4)  # strictly rising
    diff = np.abs(grey - np.interp(laid, ours, theirs)).astype(np.float32)
    diff[~inside] = 0
    return Laid(diff, inside, max(float(grey[inside].std()), DISAGREE_MIN_SPREAD))


def _worst_window(diff: np.ndarray, inside: np.ndarray, spread: float,
                  windows: int) -> float | None:
    """The mean of `diff` in its worst window wholly inside the overlap (1/`windows` of the
    long side, at most the short side), in units of `spread`; None where no window fits."""
    cv2 = _cv2()
    size = diff.shape[::-1]
    k = max(2, min(round(max(size) / windows), min(size)))
    total = cv2.boxFilter(diff, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    count = cv2.boxFilter(inside.astype(np.float32), -1, (k, k), normalize=False,
                          borderType=cv2.BORDER_CONSTANT)
    full = count >= 0.999 * k * k  # windows wholly inside the overlap
    if not full.any():
        return None
    return float((total[full] / count[full]).max() / spread)


PLAIN_SIDE = 48                  # `aligned` compares pictures this size on the long side
PLAIN_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)  # ... placed at these shares of each side
PLAIN_MIN_SIDE, PLAIN_MIN_SPREAD = 8, 2.0  # smaller placed pictures, flatter windows: not compared
# a picture with less fine detail than this (the spread of what a 2-pixel blur takes away, at
# PLAIN_SIDE, borders left out) is a smooth gradient: any two of those line up after a turn and a
# stretch, so such a pair is not judged (synthetic linear, radial and vignette gradients: 0.2-1.7;
# 3.9% of the validation pictures under 40 keypoints fall below it)
PLAIN_MIN_DETAIL = 3.0


def _plain(grey: np.ndarray) -> np.ndarray:
    """A grey picture at PLAIN_SIDE pixels on its long side, float32."""
    cv2 = _cv2()
    h, w = grey.shape
    f = PLAIN_SIDE / max(h, w)
    return cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


def aligned(a: Features, b: Features, enough: float | None = None) -> float | None:
    """How well one picture, placed inside the other, lines up with it: the best normalised
    cross-correlation (1 for the same pixels; brightness, contrast and colour forgiven) over `a`
    turned by each quarter turn, mirrored or not, either picture inside the other, scaled to each
    of PLAIN_FRACTIONS of the other's width and, separately, of its height (a crop, an inset, a
    stretch), at every position; both at PLAIN_SIDE pixels. None when no placing can be compared
    (a picture flat all over) or a picture is a smooth gradient (PLAIN_MIN_DETAIL). With
    `enough`, the search stops at the first placing reaching it (the whole picture, unturned,
    comes first): the figure is then at least `enough`, not necessarily the best.

    For pairs with too few keypoints to match: a plain copy lines up almost perfectly, two
    different plain pictures mostly do not; a rotation by a few degrees, a caption over it or a
    crop of a copy lower the figure (recipes/default_model/plain_trial.py)."""
    (_, detail_a), (_, detail_b) = _small(a), _small(b)
    if min(detail_a, detail_b) < PLAIN_MIN_DETAIL:
        return None
    best = None
    for placing in _placings(a, b):
        if best is None or placing.value > best:
            best = placing.value
            if enough is not None and best >= enough:
                return best
    return best


@dataclass(frozen=True)
class Placing:
    """One way `_placings` lays a picture inside the other: `a` turned by `turn` (the quarter
    turns k = turn // 2, mirrored when turn is odd), then either it (`a_inside`) or `b` scaled to
    w x h and placed at (x, y) inside the other, lining up there with correlation `value`."""

    value: float
    turn: int
    a_inside: bool
    w: int
    h: int
    x: int
    y: int


def _turned(picture: np.ndarray, turn: int) -> np.ndarray:
    """`picture` (grey, or colour with channels last) turned by `turn` as `Placing` says."""
    t = np.rot90(picture, turn // 2)
    return np.ascontiguousarray(t[:, ::-1] if turn % 2 else t)


# `_placings` keeps what it makes of a picture (each size and turn it is placed at, each window
# mask where it is the larger) for the pictures it searched last: dedupe lines one picture up
# with its neighbours one after another (the same pieces each time). The sizes follow the other
# picture's shape, so a picture's pieces grow with its partners' shapes: at most PIECES_BYTES
# are kept a picture (8 turns x 49 sizes of one partner's shape is about 2 MB), the rest made
# each time; `forget_searched` lets them all go at the end of a run
SEARCH_KEPT = 32
PIECES_BYTES = 4 << 20
_searched: "OrderedDict[int, Features]" = OrderedDict()
_searched_lock = threading.Lock()


def _pieces(f: Features) -> dict:
    """`f`'s kept search pieces (made empty when first asked); `f` becomes the picture last
    searched, and the least recent beyond SEARCH_KEPT lose theirs (a search under way keeps
    the dict it holds)."""
    with _searched_lock:
        _searched[id(f)] = f
        _searched.move_to_end(id(f))
        if f.pieces is None:
            f.pieces = {}
        pieces = f.pieces
        while len(_searched) > SEARCH_KEPT:
            _, old = _searched.popitem(last=False)
            old.pieces = None
    return pieces


def forget_searched() -> None:
    """Let go of every picture's kept search pieces (and of the pictures): the end of a run."""
    with _searched_lock:
        for f in _searched.values():
            f.pieces = None
        _searched.clear()


def _keep(pieces: dict, key: tuple, value) -> None:
    """Keep a piece in a picture's `pieces` while they hold under PIECES_BYTES."""
    size = 0 if value is None else value.nbytes
    held = pieces.get("bytes", 0)
    if held + size <= PIECES_BYTES:
        pieces[key] = value
        pieces["bytes"] = held + size


def _placings(a: Features, b: Features):
    """`aligned`'s search: for each turn, way round and size, the best position (a `Placing`),
    the whole picture unturned first; sizes and windows too flat to correlate are left out."""
    cv2 = _cv2()
    small_a, small_b = _small(a)[0], _small(b)[0]
    kept_a, kept_b = _pieces(a), _pieces(b)
    for turn in range(8):
        t = _turned(small_a, turn)
        for big, placed, fixed in ((small_b, t, True), (t, small_b, False)):
            H, W = big.shape
            # the placed picture's pieces: `a` turned, or `b`; the window masks: the other's
            templates, placed_turn = (kept_a, turn) if fixed else (kept_b, 0)
            masks, big_turn = (kept_b, 0) if fixed else (kept_a, turn)
            for fw in PLAIN_FRACTIONS:
                for fh in PLAIN_FRACTIONS:
                    w, h = round(W * fw), round(H * fh)
                    if w < PLAIN_MIN_SIDE or h < PLAIN_MIN_SIDE:
                        continue
                    template = templates.get(("placed", placed_turn, w, h), False)
                    if template is False:
                        template = cv2.resize(placed, (w, h), interpolation=cv2.INTER_AREA)
                        if cv2.meanStdDev(template)[1][0, 0] < PLAIN_MIN_SPREAD:
                            template = None  # too flat to correlate
                        _keep(templates, ("placed", placed_turn, w, h), template)
                    if template is None:
                        continue
                    spread = masks.get(("windows", big_turn, w, h))
                    if spread is None:
                        spread = _window_spread(big, w, h) >= PLAIN_MIN_SPREAD
                        _keep(masks, ("windows", big_turn, w, h), spread)
                    found = cv2.matchTemplate(big, template, cv2.TM_CCOEFF_NORMED)
                    found[~(spread & np.isfinite(found))] = -np.inf  # in place
                    at = int(found.argmax())
                    if np.isfinite(found.flat[at]):
                        y, x = divmod(at, found.shape[1])
                        yield Placing(float(found.flat[at]), turn, fixed, w, h, x, y)


# colour (session 30, recipes/default_model/trials/colour-act-rule.md): none of the edits a copy
# is forgiven changes what colour a part of the picture has, only how much (brightness and
# contrast scale every pixel's chroma by one factor; grey takes it away)
COLOUR_NEAR, COLOUR_FLOOR = 0.05, 0.5  # placings compared: within this of the best, and at least
COLOUR_BEARING, COLOUR_GREY = 6.0, 3.0  # chroma levels: a pixel bearing colour; a grey picture
COLOUR_SHARE = 0.2  # of the overlap bearing colour, or a placing says nothing
COLOUR_CLIP = 3.0   # a channel this close to 0 or 255 is clipped (brightening turns colours)
COLOUR_REACH = 3    # pixels (at PLAIN_SIDE) a colour may be found away from where it is placed
_CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)


def _colour_small(picture, shape: tuple[int, int]) -> np.ndarray:
    """`picture` (PIL) in colour at the size `_plain` makes of a grey picture of `shape`: RGB
    and, as a fourth channel, the share of the pixels under each small one with a channel
    clipped (within COLOUR_CLIP of 0 or 255), float32."""
    from PIL import Image
    cv2 = _cv2()
    h, w = shape
    f = PLAIN_SIDE / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    picture = picture.convert("RGB")
    rgb = np.asarray(picture)  # uint8: a channel within COLOUR_CLIP (3) of 0 or 255 is clipped
    clipped = ((rgb < COLOUR_CLIP) | (rgb > 255 - COLOUR_CLIP)).any(axis=2).astype(np.float32)
    small = np.asarray(picture.resize(size, Image.Resampling.BOX), np.float32)
    clip = cv2.resize(clipped, size, interpolation=cv2.INTER_AREA)
    return np.dstack([small, clip]).astype(np.float32)


def colour_disagreement(a: Features, b: Features, tols: tuple[float, ...],
                        clip_one: bool = True, enough: float | None = None
                        ) -> list[float | None]:
    """How far two plain pictures' colours disagree where they line up, under each of `tols`:
    over the placings `_placings` finds (smooth pictures included) at least COLOUR_FLOOR and
    within COLOUR_NEAR of the best (a copy of a smooth picture lines up well at wrong placings
    too), the smallest share of the pixels bearing colour whose chroma differs by more than
    the tolerance (`_colour_share`). None where a picture has no colour (`_colour`: not read
    from a file) or no placing has colour to compare (a grey picture, too little colour,
    nothing lines up). `clip_one`: a pixel is left out when clipped in one picture and not the
    other (False, the first trial's: when clipped in either). With `enough` (one tolerance),
    the search stops at a placing lining up within COLOUR_NEAR of a perfect 1 whose share is at
    most `enough`: the figure is then at most `enough`, not necessarily the least."""
    least: list[float | None] = [None] * len(tols)
    colour_a, colour_b = _colour(a), _colour(b)
    if colour_a is None or colour_b is None:
        return least
    found, sure = [], 1.0 + 1e-5 - COLOUR_NEAR  # a placing lining up this well is compared
    for p in _placings(a, b):
        found.append(p)
        if enough is not None and p.value >= sure:
            share = _colour_share(p, colour_a, colour_b, tols[0], clip_one)
            if share is not None and share <= enough:
                return [share]
    if not found:
        return least
    best = max(p.value for p in found)
    for p in found:
        if p.value < max(COLOUR_FLOOR, best - COLOUR_NEAR):
            continue
        for k, tol in enumerate(tols):
            share = _colour_share(p, colour_a, colour_b, tol, clip_one)
            if share is not None and (least[k] is None or share < least[k]):
                least[k] = share
    return least


def _colour(f: Features) -> np.ndarray | None:
    """`f.colour`, read again from its file when it was not made with the features (a picture
    with keypoints enough, in a pair with a plain one); None without a file, or when it cannot
    be read now or has another size than when its features were made."""
    with f.lock:
        if f.colour is None and f.source:
            try:
                decoded = load_image(f.source, target=max(f.grey.shape))
            except (DecodeError, OSError):
                return None
            if f.full is None or (decoded.width, decoded.height) == f.full:  # else changed
                f.colour = _colour_small(decoded.image, f.grey.shape)
    return f.colour


def colours_differ(a: Features, b: Features, tol: float, cut: float) -> bool:
    """Whether two plain pictures' colours disagree at every placing that lines them up: more
    than `cut` of the pixels bearing colour differ by more than `tol` (`colour_disagreement`);
    False where there is no colour to compare."""
    share = colour_disagreement(a, b, (tol,), enough=cut)[0]
    return share is not None and share > cut


def _colour_share(p: Placing, colour_a: np.ndarray, colour_b: np.ndarray, tol: float,
                  clip_one: bool = True) -> float | None:
    """At placing `p`, the share of the overlap's pixels bearing colour (COLOUR_BEARING in
    either; `colour_disagreement` says which clipped ones are left out) whose chroma differs by
    more than `tol` from every pixel of the other picture within COLOUR_REACH pixels (a copy
    turned a few degrees is misplaced by a few), once the placed picture's is scaled by the
    ratio of the two pictures' mean chroma (brightness and contrast scale it); None for a grey
    picture (mean chroma under COLOUR_GREY) or under COLOUR_SHARE of the overlap bearing
    colour."""
    cv2 = _cv2()
    t = _turned(colour_a, p.turn)
    placed, big = (t, colour_b) if p.a_inside else (colour_b, t)
    template = cv2.resize(placed, (p.w, p.h), interpolation=cv2.INTER_AREA)
    r = COLOUR_REACH
    padded = np.pad(big, ((r, r), (r, r), (0, 0)), mode="edge")
    window = padded[p.y + r:p.y + r + p.h, p.x + r:p.x + r + p.w]
    if clip_one:
        kept = (template[..., 3] > 0) == (window[..., 3] > 0)
    else:
        kept = (template[..., 3] == 0) & (window[..., 3] == 0)
    cp, cw = template[..., :3] @ _CHROMA.T, window[..., :3] @ _CHROMA.T
    mp, mw = np.hypot(cp[..., 0], cp[..., 1]), np.hypot(cw[..., 0], cw[..., 1])
    if not kept.any() or mp[kept].mean() < COLOUR_GREY or mw[kept].mean() < COLOUR_GREY:
        return None
    bearing = kept & ((mp >= COLOUR_BEARING) | (mw >= COLOUR_BEARING))
    if bearing.sum() < COLOUR_SHARE * bearing.size:
        return None
    scaled = cp * float(np.clip(mw[bearing].mean() / max(mp[bearing].mean(), 1e-6), 0.3, 3.0))
    chroma = padded[..., :3] @ _CHROMA.T
    nearest = np.full(bearing.shape, np.inf, np.float32)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            near = chroma[p.y + dy:p.y + dy + p.h, p.x + dx:p.x + dx + p.w]
            nearest = np.minimum(nearest, np.hypot(*(near - scaled).transpose(2, 0, 1)))
    return float((nearest[bearing] > tol).mean())


# detail (session 31, recipes/default_model/trials/detail-act-rule.md): where lining up at
# PLAIN_SIDE confirms a plain pair, its best placings laid at full size and measured by
# `disagreement`, as pairs with keypoints are: two badges with other digits line up at 0.97-0.997
DETAIL_NEAR, DETAIL_PLACINGS = 0.02, 4  # placings measured: within this of the best, at most
DETAIL_REFINE = 128  # pixels on the long side where ECC refines a placing
# pixels at PLAIN_SIDE a refined placing may move a corner: a placing is off by up to half a
# pixel and a size step (PLAIN_FRACTIONS: a tenth of the side, so up to 5% of it either way)
DETAIL_DRIFT = 3.0


def plain_disagreement(a: Features, b: Features, enough: float | None = None) -> float | None:
    """How much two plain pictures differ somewhere where they line up best: the least worst
    eighth (`disagreement`) over `plain_figures`' transforms (a copy needs one placing where it
    agrees); None for a smooth picture or when nothing can be compared. With `enough`, the
    search stops at the first figure at most `enough`."""
    figures = plain_figures(a, b, (DISAGREE_WINDOWS,), None if enough is None else
                            (lambda f: f[0] <= enough))
    return None if not figures else min(f[0] for f in figures)


def plain_figures(a: Features, b: Features, windows: tuple[int, ...],
                  agrees=None) -> list[tuple[float, ...]] | None:
    """Where two plain pictures line up best, how much they differ somewhere: over the
    placings within DETAIL_NEAR of the best (at most DETAIL_PLACINGS, best first), each laid as
    a transform between the grey pictures (`_placing_transform`), as it is and refined by ECC
    (`_refined`), `disagreements` in each of `windows` (one tuple a transform). None for a
    smooth picture or when no placing is found. With `agrees` (a test of one tuple), a placing
    within DETAIL_NEAR of a perfect 1 (near the best, whatever the best) is measured as soon as
    it is found, and the search stops at the first tuple that agrees (a copy, mostly at the
    first placing: the whole picture, unturned), returned first, beside those measured with
    it."""
    (small_a, detail_a), (small_b, detail_b) = _small(a), _small(b)
    if min(detail_a, detail_b) < PLAIN_MIN_DETAIL:
        return None
    shapes = a.grey.shape, b.grey.shape, small_a.shape, small_b.shape
    found, measured, out = [], {}, []
    for p in _placings(a, b):
        found.append(p)
        if agrees is not None and p.value >= 1 - DETAIL_NEAR and len(measured) < DETAIL_PLACINGS:
            measured[p] = _laid_figures(a, b, p, shapes, windows)
            if any(agrees(f) for f in measured[p]):
                return _agreeing_first(measured[p], agrees)
    if not found:
        return None
    found.sort(key=lambda p: -p.value)
    for p in [p for p in found if p.value >= found[0].value - DETAIL_NEAR][:DETAIL_PLACINGS]:
        figures = measured[p] if p in measured else _laid_figures(a, b, p, shapes, windows)
        if agrees is not None and any(agrees(f) for f in figures):
            return _agreeing_first(out + figures, agrees)
        out.extend(figures)
    return out


def _agreeing_first(figures: list[tuple[float, ...]], agrees) -> list[tuple[float, ...]]:
    """`figures` with the first that `agrees` first (the others kept: the least is still
    among them)."""
    hit = next(f for f in figures if agrees(f))
    return [hit] + [f for f in figures if f is not hit]


def _laid_figures(a: Features, b: Features, p: Placing, shapes,
                  windows: tuple[int, ...]) -> list[tuple[float, ...]]:
    """`disagreements` at placing `p` in each of `windows`, for the transform as placed and as
    refined; none where neither can be compared (a picture too thin to turn, no overlap)."""
    m = _placing_transform(p, *shapes)
    if m is None:
        return []
    figures = [tuple(disagreements(a, b, t, DISAGREE_SIDE, windows))
               for t in (m, _refined(a, b, m)) if t is not None]
    return [f for f in figures if None not in f]


def _scaling(src: tuple[int, ...], dst: tuple[int, ...]) -> np.ndarray:
    """The 3x3 map of pixel positions (centres at whole numbers) of a picture of shape `src`
    resized to `dst` (rows, columns)."""
    fx, fy = dst[1] / src[1], dst[0] / src[0]
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])


def _turning(shape: tuple[int, ...], turn: int) -> np.ndarray | None:
    """The 3x3 map of pixel positions of a picture of `shape` to those of it `_turned`."""
    ys, xs = np.indices(shape[:2], dtype=np.float64)
    tx, ty = _turned(xs, turn), _turned(ys, turn)
    if min(tx.shape) < 2:
        return None
    back = np.array([[tx[0, 1] - tx[0, 0], tx[1, 0] - tx[0, 0], tx[0, 0]],
                     [ty[0, 1] - ty[0, 0], ty[1, 0] - ty[0, 0], ty[0, 0]], [0, 0, 1]])
    return np.linalg.inv(back)


def _placing_transform(p: Placing, grey_a: tuple[int, ...], grey_b: tuple[int, ...],
                       small_a: tuple[int, ...], small_b: tuple[int, ...]) -> np.ndarray | None:
    """The 2x3 transform from `a`'s grey pixels to `b`'s that placing `p` makes (shapes of the
    grey pictures and of `_plain`'s small ones); None for a picture too thin to turn."""
    turning = _turning(small_a, p.turn)
    if turning is None:
        return None
    turned = small_a if p.turn // 2 % 2 == 0 else small_a[::-1]
    shift = np.array([[1, 0, p.x], [0, 1, p.y], [0, 0, 1]], np.float64)
    if p.a_inside:  # the turned `a` resized to w x h at (x, y) in small `b`
        b_of_turned = shift @ _scaling(turned, (p.h, p.w))
    else:  # small `b` resized to w x h at (x, y) in the turned `a`
        b_of_turned = np.linalg.inv(shift @ _scaling(small_b, (p.h, p.w)))
    m = (_scaling(small_b, grey_b) @ b_of_turned @ turning @ _scaling(grey_a, small_a))
    return m[:2]


def _refined(a: Features, b: Features, m: np.ndarray) -> np.ndarray | None:
    """`m` (`a`'s grey pixels to `b`'s) refined by ECC (affine) at DETAIL_REFINE pixels on the
    long side; None where ECC fails (a flat overlap, no convergence)."""
    cv2 = _cv2()
    pictures, scalings = [], []
    for grey in (a.grey, b.grey):
        f = min(1.0, DETAIL_REFINE / max(grey.shape))
        size = (max(1, round(grey.shape[1] * f)), max(1, round(grey.shape[0] * f)))
        pictures.append(cv2.resize(grey.astype(np.float32), size, interpolation=cv2.INTER_AREA))
        scalings.append(_scaling(grey.shape, pictures[-1].shape))
    small = scalings[1] @ np.vstack([m, [0, 0, 1]]) @ np.linalg.inv(scalings[0])
    warp = np.linalg.inv(small)[:2].astype(np.float32)  # `b`'s small pixels to `a`'s
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-4)
    try:
        _, warp = cv2.findTransformECC(pictures[1], pictures[0], warp, cv2.MOTION_AFFINE,
                                       criteria, None, 3)
        small = np.linalg.inv(np.vstack([warp.astype(np.float64), [0, 0, 1]]))
    except (cv2.error, np.linalg.LinAlgError):
        return None
    refined = (np.linalg.inv(scalings[1]) @ small @ scalings[0])[:2]
    # a refinement that moves a corner further than a placing can be off is ECC drifting
    h, w = a.grey.shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    drift = np.abs(refined @ corners - m @ corners).max()
    if not np.isfinite(drift) or drift > DETAIL_DRIFT * max(b.grey.shape) / PLAIN_SIDE:
        return None
    return refined


def _small(f: Features) -> tuple[np.ndarray, float]:
    """`f`'s grey picture at PLAIN_SIDE pixels and its detail (made once, then kept)."""
    with f.lock:
        if f.small is None:
            small = _plain(f.grey)
            f.small = (small, _detail(small))
    return f.small


def _detail(small: np.ndarray) -> float:
    """How much fine detail a PLAIN_SIDE picture holds (see PLAIN_MIN_DETAIL)."""
    cv2 = _cv2()
    fine = small - cv2.GaussianBlur(small, (0, 0), 2)
    inner = fine[4:-4, 4:-4]  # the blur's mirrored borders make detail of their own
    return float((inner if inner.size else fine).std())


def _window_spread(big: np.ndarray, w: int, h: int) -> np.ndarray:
    """The standard deviation of `big` under every w x h window, laid out as matchTemplate's
    result (a window too flat to correlate is left out: OpenCV's figure there is noise)."""
    cv2 = _cv2()
    mean = cv2.boxFilter(big, -1, (w, h), borderType=cv2.BORDER_CONSTANT)
    square = cv2.boxFilter(big * big, -1, (w, h), borderType=cv2.BORDER_CONSTANT)
    spread = np.sqrt(np.maximum(square - mean * mean, 0))
    H, W = big.shape
    return spread[h // 2:h // 2 + H - h + 1, w // 2:w // 2 + W - w + 1]


def plain_verdict(a: Features, b: Features, settings: VerifySettings = VerifySettings()
                  ) -> bool | None:
    """The verdict on a pair too plain to match keypoints, from `aligned`: True (the same
    picture) at or above `settings.plain_same`, False (different) below `plain_apart`, None
    (cannot tell) between them or when nothing can be compared."""
    if settings.plain_same is None and settings.plain_apart is None:
        return None
    verdict = _lined_up(aligned(a, b, enough=settings.plain_same), settings)
    return True if verdict is _UNSURE else verdict


def _lined_up(value: float | None, settings: VerifySettings) -> bool | None | str:
    """`aligned`'s figure as a verdict: True at or above `sure_aligned`, _UNSURE from
    `plain_same` up to it, False below `plain_apart`, None between or for no figure."""
    if value is None:
        return None
    if settings.plain_same is not None and value >= settings.plain_same:
        return True if value >= settings.sure_aligned else _UNSURE
    if settings.plain_apart is not None and value < settings.plain_apart:
        return False
    return None


def grey_picture(path: str, side: int) -> np.ndarray:
    """The file's picture in grey, at most `side` pixels on its long side (DecodeError if not)."""
    return _grey(path, side)[0]


def _grey(path: str, side: int, keep: bool = False):
    """`grey_picture`, and the file's full size (width, height) after EXIF rotation; with `keep`,
    also the decoded picture (PIL, upright, at least `side` pixels a side where the file is)."""
    from PIL import Image
    decoded = load_image(path, target=side)
    picture = decoded.image.convert("L")
    picture.thumbnail((side, side), Image.Resampling.BILINEAR)
    grey, full = np.asarray(picture, np.uint8), (decoded.width, decoded.height)
    return (grey, full, decoded.image) if keep else (grey, full)


@dataclass(frozen=True)
class RerankSettings:
    """When search puts a checked copy first (see `copy_first`); set on validation images
    (`recipes/default_model/verify_trial.py --search`)."""

    candidates: int = 5        # the best this many matches are looked at
    within: float = 0.1        # ... those scoring within this of the first
    below: float = 0.95        # a first match scoring this or more stands on its score
    min_inliers: int = 20      # a candidate moved first keeps at least this many agreeing matches
    ratio: float = 3.0         # ... and this many times the first match's


def copy_first(query: str, candidates: list[str], scores: np.ndarray,
               settings: RerankSettings = RerankSettings(),
               check: VerifySettings = VerifySettings()) -> tuple[int, int] | None:
    """Which of a search's best `candidates` (paths, best score first) to show first: the one
    whose picture shares the most local features in one layout with the `query` picture, when
    it shares far more than the first match does (a copy behind a look-alike); None to keep the
    order (the first match scores `below` or more, no other is close to it, or no picture can
    be read). Returns (position, agreeing matches)."""
    scores = np.asarray(scores, np.float64)
    if not len(candidates) or scores[0] >= settings.below:
        return None
    close = [j for j in range(1, min(settings.candidates, len(candidates)))
             if scores[0] - scores[j] <= settings.within]
    if not close:
        return None
    try:
        q = picture_features(query, check)
        held = {j: picture_features(candidates[j], check) for j in [0] + close}
    except (DecodeError, OSError):  # a picture that cannot be read leaves the order to scores
        return None
    agree = {j: agreeing(f, q, check) for j, f in held.items()}
    best = max(close, key=lambda j: (agree[j], -j))
    if agree[best] >= settings.min_inliers and agree[best] >= settings.ratio * max(agree[0], 1):
        return best, agree[best]
    return None
