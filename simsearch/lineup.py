"""Pictures too plain for keypoints, judged by placing one inside the other (`aligned`).

Clip art, icons, glyphs and smooth gradients have too few SIFT keypoints for `simsearch.verify`
to match. Such a pair is lined up instead: both pictures shrunk to PLAIN_SIDE pixels, one placed
in the other at every quarter turn, mirrored or not, at 40-100% of each side and every position
(a crop, an inset, a letterbox, a stretch), keeping the best normalised cross-correlation
(brightness, contrast and colour forgiven). For a file action, the best placings are then laid at
full size and refined (`plain_disagreement`: two signs with other numbers line up at 48 pixels
as one picture), and, where the settings ask, their colours compared (`colours_differ`).

The pieces of the search made from a picture are kept for the SEARCH_KEPT pictures searched
last (`forget_searched` lets them go), since dedupe lines one picture up with its neighbours in
turn. OpenCV is reached through `simsearch.verify`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from simsearch.errors import DecodeError
from simsearch.images import load_image
from simsearch.verify import (_UNSURE, DISAGREE_SIDE, DISAGREE_WINDOWS, Features, VerifySettings,
                              _cv2, _lined_up, disagreements)

__all__ = ["PLAIN_SIDE", "aligned", "plain_verdict", "plain_disagreement", "plain_figures",
           "colour_disagreement", "colours_differ", "forget_searched", "Placing", "SEARCH_KEPT"]

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
