"""The picture check dedupe calls (`PictureCheck`): which near pairs to read, reading their
pictures on a few threads with a bounded cache of features, each pair judged once
(`simsearch.verify` says how a pair is judged), the verdicts kept for the run and, in an index
folder, between runs (`simsearch.verdicts`), and what it did (`VerifyStats`).
"""
from __future__ import annotations

import os
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from simsearch import lineup, verify
from simsearch.errors import DecodeError
from simsearch.verify import _UNSURE, Features, VerifySettings, VerifyStats, _lined_up

__all__ = ["PictureCheck", "Geometry"]

# how one file holds another's picture (PictureCheck.geometry): the map (2 x 2, row by row)
# from the first's pixels to the second's, and the shares of the first's and of the second's
# keypoints outside the other picture (simsearch.verify.beyond; None: not counted)
Geometry = tuple[tuple[float, float, float, float], "tuple[float, float] | None"]

Progress = Callable[[int, int], None]
_OWN = object()  # a call with no `alone` given: the check's own stands
# a call with this many pairs to read tells its caller once (`notice`): thousands of tiny plain
# pictures hold a million pairs, hours of lining up (a hostile tester's silent run, session 32)
NOTICE_PAIRS = 50_000
_STOOD = "stood"  # a pair read only to learn it is not plain, at or above `below`: its score stands
# session 23: the same picture for grouping, but the two differ somewhere (verify.disagreement):
# not confirmed at any score, where _UNSURE (too few matches) stands on its score from `below` up
_DIFFERS = "differs"
_VERDICTS = (False, True, _UNSURE, None, _STOOD, _DIFFERS)  # a verdict's code (simsearch.verdicts)


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
    for module in (sys.modules[__name__], verify, lineup, images, formats, jpeg, raw):
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
                       plain=[lineup.PLAIN_SIDE, lineup.PLAIN_FRACTIONS, lineup.PLAIN_MIN_SIDE,
                              lineup.PLAIN_MIN_SPREAD, lineup.PLAIN_MIN_DETAIL])


def _geometry(fx, used, fy, transform, swapped: bool) -> Geometry | None:
    """A pair's `Geometry` from the transform `agreement` fitted (`used`, fx or its mirror, to
    fy), turned round when fx holds the pair's second id (`swapped`)."""
    linear = verify.picture_map(fx, used, fy, transform)
    if linear is None:
        return None
    shares = verify.beyond(used, fy, transform)
    shape = (tuple(float(v) for v in linear.ravel()), shares)
    return _turned(shape) if swapped else shape


def _turned(shape: Geometry) -> Geometry:
    """The same geometry seen from the other file: the inverse map, the shares swapped."""
    linear, shares = shape
    inverse = np.linalg.inv(np.reshape(np.asarray(linear, np.float64), (2, 2)))
    return (tuple(float(v) for v in inverse.ravel()),
            None if shares is None else (shares[1], shares[0]))


_PACK = struct.Struct("<6f")


def _packed(shape: Geometry) -> bytes:
    linear, shares = shape
    return _PACK.pack(*linear, *(shares if shares is not None else (float("nan"),) * 2))


def _unpacked(packed: bytes) -> Geometry:
    values = _PACK.unpack(packed)
    shares = values[4:]
    return values[:4], (None if any(v != v for v in shares) else shares)


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
    Each pair's verdict is kept (about 150 bytes a pair; about 90 more for a pair matched with
    the matches grouping needs: its `geometry`, how one file holds the other's picture, which the
    keep rule `largest` reads) so that one asked again (a dense row's list in dedupe, a sweep
    over thresholds) costs nothing; `remember=False` keeps none (a
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
        self._few: set[tuple[int, int]] = set()  # too few matches, grouped from `below` up
        self._gone: set[int] = set()  # ids whose files are gone since they were indexed
        # pairs matched with the matches grouping needs: how the higher id's file holds the
        # lower's picture (`geometry`), packed as 6 float32s, as the verdicts file keeps them
        # (a run that recalls them plans exactly as the run that measured them; ~90 bytes a pair)
        self._shapes: dict[tuple[int, int], bytes] = {}
        self._noticed = False  # whether a caller was told of many pairs (`__call__`'s notice)

    def __call__(self, a: np.ndarray, b: np.ndarray, scores: np.ndarray,
                 paths_of: Callable[[list[int]], dict[int, str]] | None = None,
                 progress: Progress | None = None, alone: "float | None | object" = _OWN,
                 contents_of: Callable[[list[int]], dict[int, str]] | None = None,
                 notice: Callable[[int], None] | None = None) -> np.ndarray:
        """Keep (True) or part (False) each pair (a[i], b[i]). `paths_of`, `progress`,
        `contents_of` and `alone` (a float or None), when given, stand in for this call for the
        check's own. `notice(n)` is told, once a check, when a call has NOTICE_PAIRS or more
        pairs to read (n of them, not counting verdicts kept from an earlier run)."""
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

        def decide(row: int, verdict: bool | None | str, plain: bool = False) -> bool:
            """Kept: the same picture, standing on its score (_STOOD: at or above `below`, not
            plain; and from there up pictures with keypoints keeping too few matches, not
            confirmed), or not judged and scoring enough on its own (or with a file gone since
            indexing: dedupe then leaves it out and says so)."""
            return verdict in (True, _STOOD, _UNSURE, _DIFFERS) or (
                verdict is False and not plain and bool(high[row])) or (verdict is None and (
                    bool(enough[row]) or a[row] in self._gone or b[row] in self._gone))

        todo = np.flatnonzero(scores < np.asarray(self.settings.reads_below, scores.dtype))
        high = scores >= np.asarray(self.settings.below, scores.dtype)
        known = []
        for r in todo.tolist():
            key = self._key(a[r], b[r])
            if high[r] and (key in self._stood or (
                    key in self._verdicts and key not in self._plain_pairs)):
                known.append(r)  # not plain: at or above `below` it stands on its score
                if self._verdicts.get(key) is False and self.settings.act_disagree is not None:
                    self._few.add(key)  # parted below for too few matches: not confirmed here,
                    # as a fresh check at this score finds it
            elif key in self._verdicts:
                known.append(r)
                keep[r] = decide(r, self._verdicts[key], key in self._plain_pairs)
        todo = np.setdiff1d(todo, np.array(known, np.int64))
        if not len(todo):
            return keep
        cv2 = verify._cv2()  # a missing OpenCV stops the run here, before any file is read
        contents: dict[int, int] = {}  # id -> its content hash, for the verdicts kept
        if self.keep_in is not None and contents_of is not None:
            if self.memory is None:
                from simsearch.verdicts import Verdicts
                self.memory = Verdicts(self.keep_in, _fingerprint(self.settings, cv2))
            todo, contents = self._recall(todo, a, b, high, keep, decide, paths_of, contents_of)
            if not len(todo):
                return keep
        if notice is not None and len(todo) >= NOTICE_PAIRS and not self._noticed:
            self._noticed = True
            notice(len(todo))
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
                for row, x, y, (verdict, lined, plain, shape) in zip(
                        part.tolist(), a[part].tolist(), b[part].tolist(), verdicts):
                    keep[row] = decide(row, verdict, plain)
                    self._note(x, y, verdict, lined, plain, bool(keep[row]), shape)
                    fx, fy = self._held.get(x), self._held.get(y)
                    if x in contents and y in contents and fx is not None and fy is not None:
                        self.memory.put(x, y, contents[x], contents[y], fx.source <= fy.source,
                                        _VERDICTS.index(verdict), plain, shape)
                    for i in (x, y):
                        uses[i] -= 1
                        if uses[i] == 0 and len(self._held) > self.settings.cache // 2:
                            self._held.pop(i, None)  # needed no more: room for the next
                done += len(part)
                if progress:
                    progress(done, len(todo))
        return keep

    def _note(self, x: int, y: int, verdict, lined: bool, plain: bool, kept: bool,
              shape: "Geometry | None" = None) -> None:
        """Keep a pair's verdict (and how one file holds the other's picture) for this run and
        count it."""
        key = self._key(x, y)
        if self.remember and shape is not None:
            self._shapes[key] = _packed(shape if x <= y else _turned(shape))
        if self.remember and verdict is _STOOD:
            self._stood.add(key)
        elif self.remember:
            self._verdicts[key] = verdict
            if plain:
                self._plain_pairs.add(key)
            elif verdict is False and kept:  # too few matches, grouped on its score
                self._few.add(key)
        if verdict is not _STOOD:  # read, but not judged: not counted
            self.stats.checked += 1
            self.stats.apart += verdict is False and not kept
            self.stats.plain += lined
            self.stats.unjudged += verdict is None
            self.stats.unsure += verdict is _UNSURE or verdict is _DIFFERS
            self.stats.few += verdict is False and kept  # too few matches, grouped on its score
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
            verdict, plain, shape = _VERDICTS[hit[0]], hit[1], hit[2]
            if verdict is _STOOD and not high[r]:
                continue  # read above `below` only: below it, the pair is judged now
            if high[r] and not plain and verdict is not _DIFFERS and (
                    verdict is not False or self.settings.act_disagree is None):
                verdict = _STOOD  # pictures with keypoints stand on their score there (a pair
                # whose pictures differ, or keep too few matches, stays "not confirmed", as a
                # fresh check finds it)
            keep[r] = decide(r, verdict, plain)
            self._note(x, y, verdict, plain and verdict is not None, plain, bool(keep[r]), shape)
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
        act cuts, grouped all the same; or, with keypoints, too few matches: grouped only at
        or above `below`, on the score). KeyError when the pair was never judged (it scored
        `below` or more and was not plain, or this check keeps no verdicts)."""
        key = self._key(x, y)
        verdict = self._verdicts[key]
        if key in self._few:
            return None  # too few matches, grouped on its score from `below` up: not confirmed
        return None if verdict is _UNSURE or verdict is _DIFFERS else verdict

    def geometry(self, x: int, y: int) -> "Geometry | None":
        """How `y`'s file holds `x`'s picture, for a pair this check matched with the matches
        grouping needs (kept with the verdicts): the map (2 x 2, row by row) from `x`'s pixels
        to `y`'s (`simsearch.verify.picture_map`) and the shares of `x`'s and of `y`'s
        keypoints outside the other picture (`simsearch.verify.beyond`; None when it had none
        to count); None when it has none (a plain pair, too few matches, never read)."""
        packed = self._shapes.get(self._key(x, y))
        if packed is None:
            return None
        shape = _unpacked(packed)
        return shape if x <= y else _turned(shape)

    @staticmethod
    def _key(x, y) -> tuple[int, int]:
        return (int(x), int(y)) if x <= y else (int(y), int(x))

    def _load(self, path: str | None) -> tuple[Features | None, str | None]:
        """A picture's features, or None and why not (None too for a file gone since it was
        indexed: dedupe leaves it out and says so)."""
        if path is None:  # not in the index any more
            return None, None
        try:
            return verify.picture_features(path, self.settings), None
        except DecodeError as e:  # names the file and the reason
            return None, (str(e) if os.path.exists(path) else None)
        except OSError as e:  # unreadable since it was indexed
            return None, f"{path}: {e.strerror or e}"

    def _judge(self, x: int, y: int, high: bool = False
               ) -> tuple[bool | None | str, bool, bool, "Geometry | None"]:
        """The verdict (False: two different pictures; True: the same picture; None: cannot
        tell; _STOOD: a pair scoring `below` or more (`high`) whose pictures both have keypoints
        enough stands on its score), whether it came from lining plain pictures up (`aligned`),
        whether the pair is judged the same way at every score (a plain picture, or one that
        cannot be read), and, for a pair matched with the matches grouping needs, how `y`'s
        file holds `x`'s picture (`_geometry`)."""
        fx, fy = self._held.get(x), self._held.get(y)
        s = self.settings
        swapped = fx is not None and fy is not None and fx.source > fy.source
        if swapped:
            # matching is not symmetric: the file first by path goes first, whatever the ids (a
            # file indexed again gets a new id; its verdicts must not change)
            fx, fy = fy, fx
        if fx is None or fy is None:  # a picture unreadable: not judged at any score (it may
            return None, False, True, None  # be plain), and so never "score" evidence
        if min(fx.count, fy.count) >= s.min_keypoints:
            if high and s.act_disagree is None:
                return _STOOD, False, False, None
            # the mirror is tried only while the straight match falls short of grouping the
            # pair: the act cut then stands on the straight count (verify_trial.py, session 22)
            found, transform, used = verify.agreement(fx, fy, s, enough=s.min_inliers)
            # how much the two differ somewhere, once a transform lays one on the other (None:
            # not asked, or no overlap to compare)
            windows = (verify.DISAGREE_WINDOWS, s.small_windows)
            value, small = (verify.disagreements(used, fy, transform, verify.DISAGREE_SIDE, windows)
                            if s.act_disagree is not None and found >= s.min_inliers
                            and transform is not None else (None, None))
            differs = value is not None and (value > s.act_disagree or (
                s.small_disagree is not None and small is not None and small > s.small_disagree))
            shape = (_geometry(fx, used, fy, transform, swapped)
                     if found >= s.min_inliers else None)
            if high:  # it stands on its score for grouping; matched to learn whether the two
                # differ somewhere, and whether they keep the matches a copy keeps: pictures
                # with keypoints keeping too few (two drawings of one kind can score 0.95 and
                # more) are parted below `below` and, from it up, grouped on their score but
                # not confirmed, so that a plan keeps them (session 26: a newcomer's plan
                # acted on such pairs); the verdict is False either way (`decide`, `verdict`)
                if found < s.min_inliers:
                    return False, False, False, None
                return (_DIFFERS if differs else _STOOD), False, False, shape
            if found < s.min_inliers:
                return False, False, False, None
            if differs:
                return _DIFFERS, False, False, shape
            sure = found >= s.sure_inliers and (s.act_disagree is None or value is not None)
            return (True if sure else _UNSURE), False, False, shape
        if s.plain_same is None and s.plain_apart is None:
            return None, False, True, None
        verdict = _lined_up(lineup.aligned(fx, fy, enough=s.sure_aligned), s)
        if verdict is True and s.colour_cut is not None and lineup.colours_differ(
                fx, fy, s.colour_tol, s.colour_cut):
            verdict = _UNSURE  # one picture in grey, but of other colours: not acted on
        if verdict is True and s.plain_disagree is not None:
            def agrees(f: tuple[float, ...]) -> bool:
                return f[0] <= s.plain_disagree and (s.plain_small is None
                                                     or f[1] <= s.plain_small)
            figures = lineup.plain_figures(fx, fy, (verify.DISAGREE_WINDOWS, s.small_windows),
                                           agrees)
            if not figures or not agrees(figures[0]):
                verdict = _UNSURE  # no placing laid at full size agrees (or none could be
                # laid: as for pairs with keypoints, such a pair is not acted on either)
        return verdict, verdict is not None, True, None
