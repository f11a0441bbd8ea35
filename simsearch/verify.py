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
The settings were chosen by a rule on the default model's validation images
(`recipes/default_model/verify_trial.py`); the evaluation set's distinct pictures had been
looked at while diagnosing what the check missed (README, How it works, Picture check, says how
much the choice hangs on that rule).

OpenCV lives here alone. Features are computed once per file and kept while a pair still needs
them; decoding goes through `simsearch.images` like everything else.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from simsearch.errors import DecodeError, SimsearchError
from simsearch.images import load_image

__all__ = ["VerifySettings", "VerifyStats", "Features", "PictureCheck", "RerankSettings",
           "features", "picture_features", "inliers", "agreeing", "mirrored", "aligned",
           "plain_verdict", "copy_first"]

Progress = Callable[[int, int], None]
_OWN = object()  # PictureCheck's call: no `alone` given, the check's own stands
_STOOD = "stood"  # a pair read only to learn it is not plain, at or above `below`: its score stands
_UNSURE = "unsure"  # the same picture for grouping, short of the cuts for a file action
_VERDICTS = (False, True, _UNSURE, None, _STOOD)  # a verdict's code (simsearch.verdicts) is its place


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
    # confirmed" and kept (two different glyphs, a B and an 8, line up at 0.91; different
    # glyphs keep 20-40 agreeing matches): verify_trial.py's act cuts, session 22
    act_inliers: int = 60
    act_aligned: float | None = 0.97

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

    def to_dict(self) -> dict:
        return {"checked": self.checked, "apart": self.apart, "plain": self.plain,
                "unjudged": self.unjudged, "held_back": self.held_back,
                "unsure": self.unsure, "remembered": self.remembered,
                "unreadable": dict(self.unreadable)}

    def copy(self) -> "VerifyStats":
        return dataclasses.replace(self, unreadable=dict(self.unreadable))

    def since(self, before: "VerifyStats") -> "VerifyStats":
        """What was added after `before` (a `copy()` of these stats taken earlier)."""
        return VerifyStats(self.checked - before.checked, self.apart - before.apart,
                           self.unjudged - before.unjudged, self.held_back - before.held_back,
                           {p: why for p, why in self.unreadable.items()
                            if p not in before.unreadable}, self.plain - before.plain,
                           self.unsure - before.unsure, self.remembered - before.remembered)


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
    source: str = field(default="", compare=False)  # the file's path, when read from one

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
    found = features(grey_picture(path, settings.side), settings)
    found.source = path
    return found


def mirrored(f: Features, settings: VerifySettings = VerifySettings()) -> Features:
    """The features of `f`'s picture flipped left to right (computed once, then kept, however
    many threads ask at once)."""
    with f.lock:
        if f.mirrored is None:
            f.mirrored = features(np.ascontiguousarray(f.grey[:, ::-1]), settings)
    return f.mirrored


def inliers(a: Features, b: Features, settings: VerifySettings = VerifySettings()) -> int:
    """How many ratio-test matches between `a` and `b` agree on one affine transform."""
    if a.count < 2 or b.count < 2:
        return 0
    cv2 = _cv2()
    try:
        pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors.astype(np.float32),
                                                    b.descriptors.astype(np.float32), k=2)
        good = [m[0] for m in pairs
                if len(m) == 2 and m[0].distance < settings.ratio * m[1].distance]
        if len(good) < 3:
            return 0
        src = a.points[[m.queryIdx for m in good]]
        dst = b.points[[m.trainIdx for m in good]]
        _, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC,
                                       ransacReprojThreshold=settings.tolerance)
    except cv2.error:  # no transform can be fitted (degenerate points): nothing agrees
        return 0
    return 0 if mask is None else int(mask.sum())


def agreeing(a: Features, b: Features, settings: VerifySettings = VerifySettings(),
             enough: int | None = None) -> int:
    """The matches between `a` and `b` that agree on one transform, straight or with `a`
    mirrored (for flipped copies), whichever is more; with `enough`, the mirror is tried only
    when the straight count falls short of it."""
    straight = inliers(a, b, settings)
    if enough is not None and straight >= enough:
        return straight
    return max(straight, inliers(mirrored(a, settings), b, settings))


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
    cv2 = _cv2()
    (small_a, detail_a), (small_b, detail_b) = _small(a), _small(b)
    if min(detail_a, detail_b) < PLAIN_MIN_DETAIL:
        return None
    best, spreads = None, {}
    for turn in range(8):
        t = np.rot90(small_a, turn // 2)
        t = np.ascontiguousarray(t[:, ::-1] if turn % 2 else t)
        for big, placed, fixed in ((small_b, t, True), (t, small_b, False)):
            H, W = big.shape
            for fw in PLAIN_FRACTIONS:
                for fh in PLAIN_FRACTIONS:
                    w, h = round(W * fw), round(H * fh)
                    if w < PLAIN_MIN_SIDE or h < PLAIN_MIN_SIDE:
                        continue
                    template = cv2.resize(placed, (w, h), interpolation=cv2.INTER_AREA)
                    if cv2.meanStdDev(template)[1][0, 0] < PLAIN_MIN_SPREAD:
                        continue
                    key = (w, h) if fixed else (turn, w, h)
                    if key not in spreads:
                        spreads[key] = _window_spread(big, w, h) >= PLAIN_MIN_SPREAD
                    found = cv2.matchTemplate(big, template, cv2.TM_CCOEFF_NORMED)
                    found = found[spreads[key] & np.isfinite(found)]
                    if found.size and (best is None or found.max() > best):
                        best = float(found.max())
                        if enough is not None and best >= enough:
                            return best
    return best


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
    from PIL import Image
    picture = load_image(path, target=side).image.convert("L")
    picture.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(picture, np.uint8)


def _fingerprint(settings: VerifySettings, cv2) -> str:
    """What a kept verdict depends on besides its two pictures (simsearch.verdicts): the
    settings; the code that reads and judges pictures (its source, hashed: a change to it
    without a new version number still counts) and its constants; the libraries that decode
    and match them."""
    import hashlib
    from importlib import metadata

    from simsearch import formats, images, jpeg, raw
    from simsearch.verdicts import fingerprint
    code = hashlib.sha256()
    for module in (sys.modules[__name__], images, formats, jpeg, raw):
        with open(module.__file__, "rb") as f:
            code.update(f.read())
    versions = {}
    for package in ("numpy", "pillow", "pillow-heif", "rawpy", "opencv-python-headless",
                    "opencv-python"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return fingerprint(settings=settings, code=code.hexdigest(), opencv=cv2.__version__,
                       versions=versions, verdicts=[repr(v) for v in _VERDICTS],
                       plain=[PLAIN_SIDE, PLAIN_FRACTIONS, PLAIN_MIN_SIDE, PLAIN_MIN_SPREAD,
                              PLAIN_MIN_DETAIL])


def _unchanged(path: str, size: int, mtime_ns: int) -> bool:
    """Whether the file at `path` is still the size and time it was indexed with, and readable."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns and os.access(path, os.R_OK)


class PictureCheck:
    """The check dedupe calls: `check(a, b, scores)` -> a bool mask, True for the pairs of ids
    to keep. Pairs at or above `settings.reads_below` are kept unlooked-at; the rest are read
    from their files (`paths_of(ids)` -> {id: path}, called on the caller's thread, so it may
    read a database) and judged, but for a pair of pictures with keypoints at or above
    `settings.below`: it stands on its score (only plain pairs are judged there). A pair that
    cannot be judged is kept when its score reaches `alone` (the threshold made for scores
    alone, or `below` if lower; None keeps every such pair). `stats`
    adds up over calls, counting each pair when it is first judged.
    Each pair's verdict is kept (about 150 bytes a pair) so that one asked again (a dense row's
    list in dedupe, a sweep over thresholds) costs nothing; `remember=False` keeps none (a
    caller that asks once). Ids are keys: reuse a check only while the index is unchanged.
    With `keep_in` (an index folder) and `contents_of(ids)` -> {id: (content hash, size,
    mtime_ns)} as indexed, verdicts are also kept between runs there (`simsearch.verdicts`;
    `save_verdicts` writes them)."""

    def __init__(self, paths_of: Callable[[list[int]], dict[int, str]],
                 settings: VerifySettings = VerifySettings(), progress: Progress | None = None,
                 workers: int | None = None, remember: bool = True, alone: float | None = None,
                 keep_in: "str | os.PathLike | None" = None,
                 contents_of: Callable[[list[int]], dict[int, str]] | None = None):
        self.paths_of, self.settings, self.progress = paths_of, settings, progress
        self.remember, self.alone = remember, alone
        self.keep_in, self.contents_of = keep_in, contents_of
        self.memory = None  # the verdicts kept in `keep_in`, read when first needed
        self._indexed: dict[int, tuple[int, str] | None] = {}  # id -> (hash, path) as indexed
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.stats = VerifyStats()
        self._held: OrderedDict[int, Features | None] = OrderedDict()  # least recent first
        self._verdicts: dict[tuple[int, int], bool | None] = {}  # asked again by a sweep
        # ... of those, the pairs judged alike at every score: a plain picture (lined up, or
        # tried) or one that cannot be read
        self._plain_pairs: set[tuple[int, int]] = set()
        self._stood: set[tuple[int, int]] = set()  # read at or above `below`: not plain
        self._gone: set[int] = set()  # ids whose files are gone since they were indexed

    def __call__(self, a: np.ndarray, b: np.ndarray, scores: np.ndarray,
                 paths_of: Callable[[list[int]], dict[int, str]] | None = None,
                 progress: Progress | None = None, alone: "float | None | object" = _OWN,
                 contents_of: Callable[[list[int]], dict[int, str]] | None = None
                 ) -> np.ndarray:
        """Keep (True) or part (False) each pair (a[i], b[i]). `paths_of`, `progress`,
        `contents_of` and `alone` (a float or None), when given, stand in for this call for the
        check's own."""
        paths_of, progress = paths_of or self.paths_of, progress or self.progress
        contents_of = contents_of or self.contents_of
        alone = self.alone if alone is _OWN else alone
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        a, b = np.minimum(a, b), np.maximum(a, b)  # one pair, one verdict, either way round
        scores = np.asarray(scores)
        keep = np.ones(len(a), bool)
        # enough on its score alone: at `alone`, or at `below` where pairs with keypoints stand
        # on their score anyway; compared in the scores' own precision, as the dedupe
        # threshold is
        enough = (np.ones(len(a), bool) if alone is None
                  else scores >= np.asarray(min(alone, self.settings.below), scores.dtype))

        def decide(row: int, verdict: bool | None | str) -> bool:
            """Kept: the same picture, standing on its score (_STOOD: at or above `below`, not
            plain), or not judged and scoring enough on its own (or with a file gone since
            indexing: dedupe then leaves it out and says so)."""
            return verdict in (True, _STOOD, _UNSURE) or (verdict is None and (
                bool(enough[row]) or a[row] in self._gone or b[row] in self._gone))

        todo = np.flatnonzero(scores < np.asarray(self.settings.reads_below, scores.dtype))
        high = scores >= np.asarray(self.settings.below, scores.dtype)
        known = []
        for r in todo.tolist():
            key = self._key(a[r], b[r])
            if high[r] and (key in self._stood or (
                    key in self._verdicts and key not in self._plain_pairs)):
                known.append(r)  # not plain: at or above `below` it stands on its score
            elif key in self._verdicts:
                known.append(r)
                keep[r] = decide(r, self._verdicts[key])
        todo = np.setdiff1d(todo, np.array(known, np.int64))
        if not len(todo):
            return keep
        cv2 = _cv2()  # a missing OpenCV stops the run here, before any file is read
        contents: dict[int, int] = {}  # id -> its content hash, for the verdicts kept
        if self.keep_in is not None and contents_of is not None:
            if self.memory is None:
                from simsearch.verdicts import Verdicts
                self.memory = Verdicts(self.keep_in, _fingerprint(self.settings, cv2))
            todo, contents = self._recall(todo, a, b, high, keep, decide, paths_of, contents_of)
            if not len(todo):
                return keep
        todo = todo[np.lexsort((b[todo], a[todo]))]  # each first picture's pairs together
        uses: dict[int, int] = {}
        for i in np.concatenate([a[todo], b[todo]]).tolist():
            uses[i] = uses.get(i, 0) + 1
        done, step = 0, max(1, min(256, self.settings.cache // 2))  # a part's pictures fit
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(todo), step):
                part = todo[start:start + step]
                wanted = [i for i in dict.fromkeys(np.concatenate([a[part], b[part]]).tolist())
                          if i not in self._held]
                for i in np.concatenate([a[part], b[part]]).tolist():
                    if i in self._held:
                        self._held.move_to_end(i)
                paths = paths_of(wanted)
                for i, (f, why) in zip(wanted, pool.map(self._load,
                                                        [paths.get(i) for i in wanted])):
                    self._held[i] = f
                    if why is not None:
                        self.stats.unreadable[paths[i]] = why
                    elif f is None:
                        self._gone.add(i)
                while len(self._held) > max(self.settings.cache, 2 * step):  # the part's stay
                    self._held.popitem(last=False)
                verdicts = list(pool.map(self._judge, a[part].tolist(), b[part].tolist(),
                                         high[part].tolist()))
                for row, x, y, (verdict, lined, plain) in zip(part.tolist(), a[part].tolist(),
                                                              b[part].tolist(), verdicts):
                    keep[row] = decide(row, verdict)
                    self._note(x, y, verdict, lined, plain, bool(keep[row]))
                    fx, fy = self._held.get(x), self._held.get(y)
                    if x in contents and y in contents and fx is not None and fy is not None:
                        self.memory.put(x, y, contents[x], contents[y], fx.source <= fy.source,
                                        _VERDICTS.index(verdict), plain)
                    for i in (x, y):
                        uses[i] -= 1
                        if uses[i] == 0 and len(self._held) > self.settings.cache // 2:
                            self._held.pop(i, None)  # needed no more: room for the next
                done += len(part)
                if progress:
                    progress(done, len(todo))
        return keep

    def _note(self, x: int, y: int, verdict, lined: bool, plain: bool, kept: bool) -> None:
        """Keep a pair's verdict for this run and count it."""
        key = self._key(x, y)
        if self.remember and verdict is _STOOD:
            self._stood.add(key)
        elif self.remember:
            self._verdicts[key] = verdict
            if plain:
                self._plain_pairs.add(key)
        if verdict is not _STOOD:  # read, but not judged: not counted
            self.stats.checked += 1
            self.stats.apart += verdict is False
            self.stats.plain += lined
            self.stats.unjudged += verdict is None
            self.stats.unsure += verdict is _UNSURE
            self.stats.held_back += verdict is None and not kept

    def _recall(self, todo: np.ndarray, a: np.ndarray, b: np.ndarray, high: np.ndarray,
                keep: np.ndarray, decide, paths_of, contents_of
                ) -> tuple[np.ndarray, dict[int, int]]:
        """Decide the pairs of `todo` judged in an earlier run on the same contents, in the same
        order (see `simsearch.verdicts`); returns the pairs still to judge and the content hash
        of each of their files unchanged since indexing (only those verdicts are kept)."""
        from simsearch.verdicts import content_hash
        ids = [i for i in dict.fromkeys(np.concatenate([a[todo], b[todo]]).tolist())
               if i not in self._indexed]
        if ids:  # once a file: its indexed hash, when it is as indexed (size, time, readable)
            rows, paths = contents_of(ids), paths_of(ids)
            for i in ids:
                row = rows.get(i)
                self._indexed[i] = (content_hash(row[0]), paths[i]) if (
                    row is not None and i in paths and _unchanged(paths[i], row[1], row[2])
                ) else None
        # a file changed, gone or unreadable since indexing is judged afresh (then named, or
        # left out as gone, as a fresh check does), and no verdict about it is kept
        indexed = {i: self._indexed[i] for i in np.concatenate([a[todo], b[todo]]).tolist()}
        where = self.memory.find(a[todo], b[todo])
        recalled = []
        for r, at in zip(todo[where >= 0].tolist(), where[where >= 0].tolist()):
            x, y = int(a[r]), int(b[r])
            if indexed[x] is None or indexed[y] is None:
                continue
            hit = self.memory.entry(at, indexed[x][0], indexed[y][0],
                                    indexed[x][1] <= indexed[y][1])
            if hit is None or hit[0] >= len(_VERDICTS):
                continue
            verdict, plain = _VERDICTS[hit[0]], hit[1]
            if verdict is _STOOD and not high[r]:
                continue  # read above `below` only: below it, the pair is judged now
            if high[r] and not plain:
                verdict = _STOOD  # pictures with keypoints stand on their score there
            keep[r] = decide(r, verdict)
            self._note(x, y, verdict, plain and verdict is not None, plain, bool(keep[r]))
            self.stats.remembered += verdict is not _STOOD
            recalled.append(r)
        hashes = {i: v[0] for i, v in indexed.items() if v is not None}
        return np.setdiff1d(todo, np.array(recalled, np.int64)), hashes

    def save_verdicts(self, ids: np.ndarray, contents: np.ndarray) -> None:
        """Write the verdicts kept between runs (see `keep_in`), those of files still indexed
        with these contents (`ids` in order)."""
        if self.memory is not None:
            self.memory.save(ids, contents)

    def verdict(self, x: int, y: int) -> bool | None:
        """The verdict kept for the pair of ids (x, y), either way round: True the same
        picture, sure enough for a file action; False two different pictures; None not
        confirmed (not judged: plain, a gradient or unreadable; or the same picture short of the
        act cuts, grouped all the same). KeyError when the pair was never judged (it scored
        `below` or more and was not plain, or this check keeps no verdicts)."""
        verdict = self._verdicts[self._key(x, y)]
        return None if verdict is _UNSURE else verdict

    @staticmethod
    def _key(x, y) -> tuple[int, int]:
        return (int(x), int(y)) if x <= y else (int(y), int(x))

    def _load(self, path: str | None) -> tuple[Features | None, str | None]:
        """A picture's features, or None and why not (None too for a file gone since it was
        indexed: dedupe leaves it out and says so)."""
        if path is None:  # not in the index any more
            return None, None
        try:
            return picture_features(path, self.settings), None
        except DecodeError as e:  # names the file and the reason
            return None, (str(e) if os.path.exists(path) else None)
        except OSError as e:  # unreadable since it was indexed
            return None, f"{path}: {e.strerror or e}"

    def _judge(self, x: int, y: int, high: bool = False
               ) -> tuple[bool | None | str, bool, bool]:
        """The verdict (False: two different pictures; True: the same picture; None: cannot
        tell; _STOOD: a pair scoring `below` or more (`high`) whose pictures both have keypoints
        enough stands on its score), whether it came from lining plain pictures up (`aligned`),
        and whether the pair is judged the same way at every score (a plain picture, or one that
        cannot be read)."""
        fx, fy = self._held.get(x), self._held.get(y)
        s = self.settings
        if fx is not None and fy is not None and fx.source > fy.source:
            # matching is not symmetric: the file first by path goes first, whatever the ids (a
            # file indexed again gets a new id; its verdicts must not change)
            fx, fy = fy, fx
        if fx is None or fy is None:  # a picture unreadable: not judged at any score (it may
            return None, False, True  # be plain), and so never "score" evidence
        if min(fx.count, fy.count) >= s.min_keypoints:
            if high:
                return _STOOD, False, False
            found = agreeing(fx, fy, s, enough=s.sure_inliers)
            return (found >= s.sure_inliers or (_UNSURE if found >= s.min_inliers else False),
                    False, False)
        if s.plain_same is None and s.plain_apart is None:
            return None, False, True
        verdict = _lined_up(aligned(fx, fy, enough=s.sure_aligned), s)
        return verdict, verdict is not None, True


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
