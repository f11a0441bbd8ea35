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
other instead (`simsearch.lineup.aligned`: small grey pictures, every quarter turn and mirror,
crops, insets and stretches, the best normalised cross-correlation): `plain_same` or more is one picture, below
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

OpenCV lives here alone (`simsearch.lineup`, the plain pairs' half of the check, reaches it
through `_cv2`); decoding goes through `simsearch.images` like everything else. The check
dedupe runs over many pairs (which to read, the features held, each pair's verdict kept) is
`simsearch.picturecheck.PictureCheck`.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from simsearch.errors import DecodeError, SimsearchError
from simsearch.images import load_image

__all__ = ["VerifySettings", "VerifyStats", "Features", "RerankSettings",
           "features", "picture_features", "inliers", "match", "agreeing", "agreement",
           "disagreement", "disagreements", "mirrored", "picture_map", "beyond", "copy_first",
           "grey_picture"]

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
        from simsearch.lineup import _colour_small  # (lineup imports this module)
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
