"""Exact and near-duplicate groups from stored vectors (the network is never loaded), with an
optional second opinion on the near pairs (`check`: `simsearch.picturecheck.PictureCheck`).

Exact duplicates share a content hash. Near duplicates are the pairs at or above a score
threshold (cosine, adjusted against the model's background set where it has one: see
`simsearch.scoring`) among one representative per content hash, found by a k-nearest-neighbour
self-join verified exactly (`simsearch.pairs`), then grouped without chaining (a chain
A~B~C~D of small steps never puts A and D together). Two ways, `linkage`:

- "centre" (default): the image with the most near-duplicates becomes the centre of a group,
  with every not yet grouped image that scores >= threshold against it; then the next centre.
  Then each member moves to the centre it scores highest against (but for each centre's
  closest member, which stays), so an image that happens to pass the threshold against a busy
  centre still joins the picture it is a copy of. Every member is a near-duplicate of its
  centre, so two members are never further apart than twice the threshold angle. Bursts and
  edit families stay one group.
- "complete": two groups merge only if every pair across them scores >= threshold. Stricter:
  each group is a clique, and a family of very different edits splits into several groups.

Each member carries its score to the group's centre, always >= threshold. Files with identical
content are one member set inside their group (scored 1.0 against each other), never a second
group. Memory is linear in the number of images whatever the pair density (`simsearch.pairs`
keeps at most k pairs per image, `grow` for an image with more than k near duplicates); centre
linkage fetches a dense image's whole list, one image at a time, when it becomes a centre.
Complete linkage sees the pairs kept: a burst of more than `grow` frames may split into
several cliques.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simsearch.errors import SimsearchError
from simsearch.pairs import JoinSettings, NearPairs, Progress, near_pairs
from simsearch.scoring import KNEE

__all__ = ["LINKAGES", "EVIDENCE", "IdGroup", "Member", "Group", "DuplicateReport",
           "find_groups", "centre_linkage", "complete_linkage", "check_threshold"]

LINKAGES = ("centre", "complete")
# what put a member in its group (Member.evidence), in words; "" when not known
EVIDENCE = {
    "centre": "the group's centre",
    "identical": "the same bytes as the centre",
    "score": "its score alone: high enough (0.95) that the picture check does not judge a "
             "pair of pictures with local features, or the check was off",
    "checked": "the picture check found it the same picture as the centre",
    "unchecked": "not confirmed by the picture check: grouped on its score alone (plain "
                 "pictures that line up only in part, at any score; a smooth gradient; or a file "
                 "that cannot be read), or found the same picture but not closely enough to act "
                 "on (plain pictures not lined up closely, or the two pictures, laid one on the "
                 "other, differ somewhere: a caption, a changed detail), or scoring 0.95 or more "
                 "with too few local features in one layout for a copy",
}
_APART_CHUNK = 1 << 20  # pairs looked up at a time against the pairs set apart
# a second opinion on pairs of ids and their scores: True for each pair to keep
PairCheck = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class IdGroup:
    """A group as dedupe finds it: row ids, the centre first, and each member's score to the
    centre (1.0 for the centre itself and for files with the centre's exact content)."""

    ids: list[int]
    scores: list[float]

    @property
    def centre(self) -> int:
        return self.ids[0]


@dataclass(frozen=True)
class Member:
    id: int
    path: str
    score: float  # to the group's centre; 1.0 for the centre and its exact copies
    sha256: str
    size: int
    width: int
    height: int
    mtime_ns: int
    evidence: str = ""  # what put it in the group: a key of EVIDENCE, "" when not known
    # the map (2 x 2, row by row) from the centre's pixels to this file's that the picture
    # check fitted (simsearch.verify.picture_map): at what scale it holds the centre's picture;
    # None when it fitted none. The keep rule `largest` compares files by it (simsearch.keeprules)
    picture: tuple[float, float, float, float] | None = None
    extent: float | None = None  # how much of the centre's picture it shows (simsearch.keeprules)
    # the other indexed paths of this same file (a symbolic link to it, a hard link, one folder
    # indexed under two names): one file, listed once, under `path`
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        out = {"path": self.path, "score": round(self.score, 6), "sha256": self.sha256,
               "size": self.size, "width": self.width, "height": self.height,
               "mtime_ns": self.mtime_ns, "evidence": self.evidence}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out


@dataclass
class Group:
    """One set of files that are copies of one picture. `kind` is "exact" when every member
    has the same content, else "near"; `exact` lists the sets of members (two or more) that
    share one content, a marked subset of the group, never a group of their own."""

    kind: str
    members: list[Member]

    @property
    def centre(self) -> str:
        return self.members[0].path

    @property
    def min_score(self) -> float:
        return min(m.score for m in self.members)

    @property
    def files(self) -> list[str]:
        return sorted(m.path for m in self.members)

    @property
    def unconfirmed(self) -> list[str]:
        """Members the picture check could not confirm (grouped on their score alone, or found
        alike short of the cuts for a file action): the ones to look at before acting."""
        return [m.path for m in self.members if m.evidence == "unchecked"]

    @property
    def exact(self) -> list[list[str]]:
        by_sha: dict[str, list[str]] = defaultdict(list)
        for m in self.members:
            by_sha[m.sha256].append(m.path)
        return sorted(sorted(paths) for paths in by_sha.values() if len(paths) > 1)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "centre": self.centre, "min_score": round(self.min_score, 6),
                "files": self.files, "exact": self.exact,
                "members": [m.to_dict() for m in self.members]}


@dataclass
class DuplicateReport:
    threshold: float
    threshold_source: str = "command line"  # or "model", "calibrated"
    groups: list[Group] = field(default_factory=list)
    # files left out of every group: changed or gone since they were indexed (their rows no
    # longer describe them); `simsearch index` brings the index up to date
    stale: list[str] = field(default_factory=list)
    # what the picture check did (`simsearch.verify.VerifyStats.to_dict()`), None when off
    check: dict | None = None

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                "groups": [g.to_dict() for g in self.groups], "stale": self.stale,
                "check": self.check}


def check_threshold(threshold: float) -> float:
    if not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:  # refuses nan
        raise SimsearchError(f"threshold must be a score between -1 and 1, not {threshold!r}")
    return float(threshold)


def find_groups(ids: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, content: np.ndarray,
                threshold: float, linkage: str = "centre",
                apart: set[tuple[int, int]] | None = None,
                settings: JoinSettings = JoinSettings(),
                progress: Progress | None = None, knee: float = KNEE,
                check: PairCheck | None = None,
                prefer: np.ndarray | None = None) -> list[IdGroup]:
    """Groups of duplicates among the rows (`ids` [n], unit `vectors` [n, d], score `offsets`
    [n] (zeros for plain cosine), `content` [n]: rows with one value have identical bytes).

    Near duplicates are searched among one representative per content (`simsearch.pairs`:
    memory linear in the number of images); the other rows with that content then join their
    representative's group at score 1.0, and content with no near duplicate makes a group of
    its own. `apart`: pairs of ids (a < b) never to be grouped together (a user said they are
    different pictures). `progress(done, total)`: rows searched so far. `knee`: where the
    score adjustment starts to fade (see `simsearch.scoring`). `check(a, b, scores)`: a second
    opinion on the near pairs of ids (`simsearch.picturecheck.PictureCheck`), a bool mask of the
    pairs to keep; the others are never grouped, like pairs set apart. `prefer` [n]: each
    row's place among would-be centres that tie, lower first (`Catalog.centre_order`: the
    larger picture, then the older file: mostly the original rather than the first indexed; a
    newcomer's tour listed its copies as centres); without it, and in its ties, the lower id."""
    if linkage not in LINKAGES:
        raise SimsearchError(f"linkage must be one of {', '.join(LINKAGES)}, not {linkage!r}")
    threshold = check_threshold(threshold)
    ids = np.asarray(ids, dtype=np.int64)
    content = np.asarray(content)
    order = np.lexsort((ids, content))
    first = np.ones(len(order), bool)
    first[1:] = content[order][1:] != content[order][:-1]
    rep_of_row = np.empty(len(ids), np.int64)  # each row's representative id
    rep_of_row[order] = ids[order][np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    reps = order[first]
    copies: dict[int, list[int]] = defaultdict(list)
    for row in np.flatnonzero(rep_of_row != ids).tolist():
        copies[int(rep_of_row[row])].append(int(ids[row]))
    rep_ids = ids[reps]
    found = near_pairs(vectors, offsets, threshold, settings, progress, rows=reps, knee=knee)
    rep_apart = set()
    if apart:
        marked = np.array(sorted(apart), np.int64).reshape(-1, 2)
        rows, known = _rows_of(ids, marked)  # an id not indexed stands for itself
        rep_apart = {(min(a, b), max(a, b))
                     for a, b in np.where(known, rep_of_row[rows], marked).tolist()}
        found = _without_apart(found, rep_ids, rep_apart)
    if check is not None:
        found = _checked(found, rep_ids, check)
    if linkage == "complete":
        left, right, scores = rep_ids[found.left], rep_ids[found.right], found.scores
        edges: dict[int, dict[int, float]] = defaultdict(dict)
        for a, b, s in zip(left.tolist(), right.tolist(), scores.tolist()):
            edges[a][b] = s
            edges[b][a] = s
        clusters = [_with_scores(m, edges) for m, _ in complete_linkage(left, right, scores)]
    else:
        clusters = []
        for centre, members, scores in _centres(len(rep_ids), found, rep_ids,
                                                None if prefer is None else np.asarray(prefer)[reps]):
            rest = sorted(zip(rep_ids[members].tolist(), scores.tolist()), key=lambda m: (-m[1], m[0]))
            clusters.append(([int(rep_ids[centre])] + [m for m, _ in rest],
                             [1.0] + [min(1.0, s) for _, s in rest]))
    groups, grouped, partners = [], set(), _partners(rep_apart)
    for member_ids, member_scores in clusters:
        member_ids, member_scores = _drop_apart(member_ids, member_scores, partners)
        if len(member_ids) < 2:
            continue
        grouped.update(member_ids)
        out_ids, out_scores = [], []
        for i, s in zip(member_ids, member_scores):
            out_ids.append(i)
            out_scores.append(s)
            out_ids.extend(copies.get(i, []))
            out_scores.extend([s] * len(copies.get(i, [])))
        groups.append(IdGroup(out_ids, out_scores))
    for rep, rows in copies.items():
        if rep not in grouped:
            groups.append(IdGroup([rep] + rows, [1.0] * (len(rows) + 1)))
    return groups


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row of `ids` holding each of `wanted` (any shape), and which of them `ids` holds."""
    wanted = np.asarray(wanted, np.int64)
    if not len(ids):
        return np.zeros(wanted.shape, np.int64), np.zeros(wanted.shape, bool)
    by_id = np.argsort(ids, kind="stable")
    ordered = ids[by_id]
    at = np.minimum(np.searchsorted(ordered, wanted), len(ids) - 1)
    return by_id[at], ordered[at] == wanted


def _without_apart(found: NearPairs, ids: np.ndarray, apart: set[tuple[int, int]]) -> NearPairs:
    """The pairs (and dense rows' fetched lists) less those a user set apart: one vectorised
    lookup, however many pairs (a Python loop over 10^8 pairs would take minutes and gigabytes)."""
    n = len(ids)
    rows, known = _rows_of(ids, np.array(sorted(apart), np.int64).reshape(-1, 2))
    rows = rows[known.all(axis=1)]
    banned = np.unique(rows.min(axis=1) * n + rows.max(axis=1))  # row keys, a < b: a * n + b

    def kept(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.ones(len(a), bool)
        if not len(banned):
            return out
        for s in range(0, len(a), _APART_CHUNK):  # int64 keys a chunk at a time
            x, y = np.asarray(a[s:s + _APART_CHUNK], np.int64), np.asarray(b[s:s + _APART_CHUNK], np.int64)
            keys = np.minimum(x, y) * n + np.maximum(x, y)
            at = np.minimum(np.searchsorted(banned, keys), len(banned) - 1)
            out[s:s + _APART_CHUNK] = banned[at] != keys
        return out

    keep = kept(found.left, found.right)

    def fetch(row: int) -> tuple[np.ndarray, np.ndarray]:
        others, scores = found.fetch(row)
        ok = kept(np.full(len(others), row), others)
        return others[ok], scores[ok]

    return NearPairs(found.left[keep], found.right[keep], found.scores[keep], found.dense, fetch)


def _checked(found: NearPairs, ids: np.ndarray, check: PairCheck) -> NearPairs:
    """The pairs (and dense rows' fetched lists, when fetched) that `check` keeps."""
    keep = check(ids[found.left], ids[found.right], found.scores)

    def fetch(row: int) -> tuple[np.ndarray, np.ndarray]:
        others, scores = found.fetch(row)
        ok = check(np.full(len(others), ids[row]), ids[others], scores)
        return others[ok], scores[ok]

    return NearPairs(found.left[keep], found.right[keep], found.scores[keep], found.dense, fetch)


def _with_scores(member_ids: list[int], edges: dict[int, dict[int, float]]
                 ) -> tuple[list[int], list[float]]:
    """The members of a complete-linkage group in group order (centre first, then best score
    first), each with its score to the centre: the member with the highest total score (every
    pair of a clique is an edge)."""
    members = set(member_ids)
    centre = member_ids[0]
    if len(member_ids) > 2 and all(len(members & edges[m].keys()) == len(members) - 1
                                   for m in member_ids):  # a clique: the best-connected centre
        centre = max(member_ids, key=lambda m: (sum(edges[m][o] for o in members if o != m), -m))
    rest = sorted((m for m in member_ids if m != centre), key=lambda m: (-edges[centre][m], m))
    return [centre] + rest, [1.0] + [min(1.0, edges[centre][m]) for m in rest]


def _partners(apart: set[tuple[int, int]]) -> dict[int, set[int]]:
    """Each id a user set apart from others, with those others."""
    partners: dict[int, set[int]] = defaultdict(set)
    for a, b in apart:
        partners[a].add(b)
        partners[b].add(a)
    return partners


def _drop_apart(member_ids: list[int], member_scores: list[float],
                partners: dict[int, set[int]]) -> tuple[list[int], list[float]]:
    """Members best first, leaving out any that a user set apart from one already kept (in
    time linear in the group: a burst of 20,000 frames is one group). `partners`: `_partners`
    of the pairs set apart, built once for all groups."""
    if not partners:
        return member_ids, member_scores
    kept_ids, kept_scores, kept = [], [], set()
    for i, s in zip(member_ids, member_scores):
        if i not in partners or partners[i].isdisjoint(kept):
            kept_ids.append(i)
            kept_scores.append(s)
            kept.add(i)
    return kept_ids, kept_scores


def centre_linkage(left: np.ndarray, right: np.ndarray, scores: np.ndarray) -> list[list[int]]:
    """Groups around centres from scored pairs of ids (see `_centres`). Returns groups of two
    or more ids, centre first, the rest in id order."""
    left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
    ids, rows = np.unique(np.concatenate([left, right]), return_inverse=True)
    found = NearPairs(rows[:len(left)], rows[len(left):], np.asarray(scores, np.float32),
                      np.zeros(len(ids), bool), None)
    return [[int(ids[c])] + ids[m].tolist() for c, m, _ in _centres(len(ids), found, ids)]


def _fixed(scores: np.ndarray) -> np.ndarray:
    """Scores as whole multiples of 2^-24 (float64), so that a row's total is exact and does
    not depend on the order its pairs were found in."""
    return np.rint(np.asarray(scores, np.float64) * 2.0 ** 24)


def _centres(n: int, found: NearPairs, ids: np.ndarray, prefer: np.ndarray | None = None):
    """Centre linkage over rows 0..n-1: the row with the most near pairs (then the highest
    total score, then the lowest `prefer`, then the lowest id) becomes a centre and takes every
    ungrouped neighbour; repeat. Then every member moves to the centre it scores highest
    against (centres are never neighbours of one another, so each member keeps a score >=
    threshold against its own centre), except each centre's closest member, which stays so that no centre is left
    alone. A dense row's whole list is fetched when it becomes a centre. Yields (centre,
    members in id order, their scores to the centre), centres in the order they were taken."""
    src = np.concatenate([found.left, found.right])
    dst = np.concatenate([found.right, found.left])
    sc = np.concatenate([found.scores, found.scores])
    order = np.argsort(src, kind="stable")
    src, dst, sc = src[order], dst[order], sc[order]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    degree = np.diff(indptr)
    weight = np.bincount(src, weights=_fixed(sc), minlength=n)
    candidates = np.flatnonzero(degree > 0)
    place = np.zeros(n, np.int64) if prefer is None else np.asarray(prefer, np.int64)
    candidates = candidates[np.lexsort((ids[candidates], place[candidates], -weight[candidates],
                                        -degree[candidates]))]
    centre_of = np.full(n, -1, np.int64)
    centres, pinned, fetched = [], [], []
    for c in candidates.tolist():
        if centre_of[c] >= 0:
            continue
        near, near_scores = dst[indptr[c]:indptr[c + 1]], sc[indptr[c]:indptr[c + 1]]
        if found.dense[c]:
            more, more_scores = found.fetch(c)
            near, where = np.unique(np.concatenate([near, more]), return_index=True)
            near_scores = np.concatenate([near_scores, more_scores])[where]
            fetched.append((near, np.full(len(near), c), near_scores))
        free = centre_of[near] < 0
        if not free.any():
            continue
        members, member_scores = near[free], near_scores[free]
        centre_of[c] = c
        centre_of[members] = c
        centres.append(c)
        pinned.append(members[np.lexsort((-ids[members], member_scores))[-1]])
    is_centre = np.zeros(n, bool)
    is_centre[centres] = True
    # every (member, centre, score) pair: each centre's list is whole (complete or fetched)
    mask = is_centre[dst] & ~is_centre[src] & (centre_of[src] >= 0)
    m = np.concatenate([src[mask]] + [f[0] for f in fetched])
    c = np.concatenate([dst[mask]] + [f[1] for f in fetched])
    s = np.concatenate([sc[mask]] + [f[2] for f in fetched])
    ok = (centre_of[m] >= 0) & ~is_centre[m]
    m, c, s = m[ok], c[ok], s[ok]
    first = centre_of[m]
    # pinned members stay with their first centre
    stays = np.zeros(n, bool)
    stays[np.asarray(pinned, np.int64)] = True
    allowed = ~stays[m] | (c == first)
    m, c, s, first = m[allowed], c[allowed], s[allowed], first[allowed]
    best = np.lexsort((-ids[c], c == first, s, m))
    last = np.ones(len(best), bool)
    last[:-1] = m[best][1:] != m[best][:-1]
    chosen = best[last]
    final_m, final_c, final_s = m[chosen], c[chosen], s[chosen]
    by_centre = np.lexsort((ids[final_m], final_c))
    final_m, final_c, final_s = final_m[by_centre], final_c[by_centre], final_s[by_centre]
    starts = np.searchsorted(final_c, centres, side="left")
    ends = np.searchsorted(final_c, centres, side="right")
    for centre, a, b in zip(centres, starts.tolist(), ends.tolist()):
        yield centre, final_m[a:b], final_s[a:b]


def complete_linkage(left: np.ndarray, right: np.ndarray,
                     scores: np.ndarray) -> list[tuple[list[int], float]]:
    """Group ids so that every pair inside a group is an edge (scored >= threshold).

    Edges are taken best first; two groups merge when all cross pairs are edges. Returns
    (member ids, lowest pairwise score) for each group of two or more.
    """
    order = np.argsort(-scores, kind="stable")
    adjacency: dict[int, dict[int, float]] = defaultdict(dict)
    for a, b, s in zip(left.tolist(), right.tolist(), scores.tolist()):
        adjacency[a][b] = s
        adjacency[b][a] = s
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    lowest: dict[int, float] = {}
    refused: set[tuple[int, int]] = set()
    for e in order.tolist():
        a, b = int(left[e]), int(right[e])
        ga, gb = group_of.setdefault(a, a), group_of.setdefault(b, b)
        members.setdefault(ga, [a])
        members.setdefault(gb, [b])
        if ga == gb or (min(ga, gb), max(ga, gb)) in refused:
            continue
        cross = _cross_min(members[ga], members[gb], adjacency)
        if cross is None:
            refused.add((min(ga, gb), max(ga, gb)))
            continue
        if len(members[ga]) < len(members[gb]):
            ga, gb = gb, ga
        for m in members[gb]:
            group_of[m] = ga
        members[ga].extend(members.pop(gb))
        lowest[ga] = min(cross, lowest.get(ga, 1.0), lowest.pop(gb, 1.0))
    return [(sorted(m), lowest[g]) for g, m in members.items() if len(m) > 1]


def _cross_min(a: list[int], b: list[int], adjacency: dict[int, dict[int, float]]) -> float | None:
    low = 1.0
    for x in a:
        neighbours = adjacency[x]
        for y in b:
            s = neighbours.get(y)
            if s is None:
                return None
            low = min(low, s)
    return low
