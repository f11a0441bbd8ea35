"""Exact and near-duplicate groups from stored vectors (the network is never loaded).

Exact duplicates share a content hash. Near duplicates are found by a range search at a score
threshold (cosine, adjusted against the model's background set where it has one: see
`simsearch.scoring`) over one representative per content hash, then grouped without chaining (a chain
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
group. Memory is linear in the number of images plus the number of pairs above the threshold:
no n x n matrix.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from simsearch.errors import SimsearchError
from simsearch.vectors import range_pairs

if TYPE_CHECKING:
    from simsearch.scoring import Background

__all__ = ["LINKAGES", "IdGroup", "Member", "Group", "DuplicateReport", "find_groups",
           "near_pairs", "centre_linkage", "complete_linkage", "check_threshold"]

LINKAGES = ("centre", "complete")
SCORE_TOLERANCE = 1e-6  # a score this close below the threshold counts as at it


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

    def to_dict(self) -> dict:
        return {"path": self.path, "score": round(self.score, 6), "sha256": self.sha256,
                "size": self.size, "width": self.width, "height": self.height,
                "mtime_ns": self.mtime_ns}


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

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                "groups": [g.to_dict() for g in self.groups], "stale": self.stale}


def check_threshold(threshold: float) -> float:
    if not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:  # refuses nan
        raise SimsearchError(f"threshold must be a score between -1 and 1, not {threshold!r}")
    return float(threshold)


def find_groups(ids: np.ndarray, vectors: np.ndarray, offsets: np.ndarray, content: np.ndarray,
                threshold: float, linkage: str = "centre",
                apart: set[tuple[int, int]] | None = None) -> list[IdGroup]:
    """Groups of duplicates among the rows (`ids` [n], unit `vectors` [n, d], score `offsets`
    [n] (zeros for plain cosine), `content` [n]: rows with one value have identical bytes).

    Near duplicates are searched among one representative per content; the other rows with
    that content then join their representative's group at score 1.0, and content with no near
    duplicate makes a group of its own. `apart`: pairs of ids (a < b) never to be grouped
    together (a user said they are different pictures)."""
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
    left, right, scores, _ = near_pairs(rep_ids, vectors[reps], threshold, offsets=offsets[reps])
    rep_apart = set()
    if apart:
        by_id = np.argsort(ids, kind="stable")

        def rep(i: int) -> int:
            where = by_id[np.searchsorted(ids[by_id], i)] if len(ids) else 0
            return int(rep_of_row[where]) if len(ids) and ids[where] == i else int(i)

        rep_apart = {(min(a, b), max(a, b)) for a, b in ((rep(x), rep(y)) for x, y in apart)}
        keep = np.array([(min(a, b), max(a, b)) not in rep_apart
                         for a, b in zip(left.tolist(), right.tolist())], bool)
        left, right, scores = left[keep], right[keep], scores[keep]
    edges: dict[int, dict[int, float]] = defaultdict(dict)
    for a, b, s in zip(left.tolist(), right.tolist(), scores.tolist()):
        edges[a][b] = s
        edges[b][a] = s
    if linkage == "complete":
        clusters = [_with_scores(m, edges) for m, _ in complete_linkage(left, right, scores)]
    else:
        clusters = [_with_scores(m, edges) for m in centre_linkage(left, right, scores)]
    groups, grouped = [], set()
    for member_ids, member_scores in clusters:
        member_ids, member_scores = _drop_apart(member_ids, member_scores, rep_apart)
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


def _with_scores(member_ids: list[int], edges: dict[int, dict[int, float]]
                 ) -> tuple[list[int], list[float]]:
    """The members in group order (centre first, then best score first), each with its score
    to the centre. Centre linkage lists its centre first; the centre of a complete-linkage
    group (where every pair is an edge) is the member with the highest total score."""
    members = set(member_ids)
    if not all(m in edges[member_ids[0]] for m in member_ids[1:]):
        raise AssertionError("a group member is not a near-duplicate of its centre")
    centre = member_ids[0]
    if len(member_ids) > 2 and all(len(members & edges[m].keys()) == len(members) - 1
                                   for m in member_ids):  # a clique: the best-connected centre
        centre = max(member_ids, key=lambda m: (sum(edges[m][o] for o in members if o != m), -m))
    rest = sorted((m for m in member_ids if m != centre), key=lambda m: (-edges[centre][m], m))
    return [centre] + rest, [1.0] + [min(1.0, edges[centre][m]) for m in rest]


def _drop_apart(member_ids: list[int], member_scores: list[float],
                apart: set[tuple[int, int]]) -> tuple[list[int], list[float]]:
    """Members best first, leaving out any that a user set apart from one already kept."""
    if not apart:
        return member_ids, member_scores
    kept_ids, kept_scores = [], []
    for i, s in zip(member_ids, member_scores):
        if all((min(i, k), max(i, k)) not in apart for k in kept_ids):
            kept_ids.append(i)
            kept_scores.append(s)
    return kept_ids, kept_scores


def near_pairs(ids: np.ndarray, vectors: np.ndarray, threshold: float,
               background: Background | None = None, offsets: np.ndarray | None = None):
    """Every unordered pair of rows whose score is >= threshold, as (left ids, right ids,
    scores, offsets), where offsets[row] is o(vector) (zeros without a background; pass
    `offsets` when they are already known).

    With a background the range search runs at the lowest raw cosine that can still reach the
    threshold after adjustment, `threshold + 2 * min(offsets)`, and the pairs it finds are then
    judged on their adjusted scores."""
    if offsets is None:
        offsets = (background.offsets(vectors) if background is not None and background.max_shift
                   else np.zeros(len(ids), np.float32))
    # float32 scores carry ~1e-7 of rounding: a pair exactly at the threshold (identical pixels
    # at threshold 1.0, say) must not fall out by it; FAISS's range search also wants scores
    # strictly above its radius
    radius = (threshold + 2 * float(offsets.min()) if len(offsets) else threshold) - SCORE_TOLERANCE
    by_id = np.argsort(ids, kind="stable")
    left, right, scores = [], [], []
    for pairs in range_pairs(ids, vectors, radius):
        rows_l = by_id[np.searchsorted(ids[by_id], pairs.left)]
        rows_r = by_id[np.searchsorted(ids[by_id], pairs.right)]
        adjusted = np.minimum(pairs.scores - offsets[rows_l] - offsets[rows_r], 1.0)
        keep = adjusted >= threshold - SCORE_TOLERANCE
        left.append(pairs.left[keep])
        right.append(pairs.right[keep])
        scores.append(adjusted[keep].astype(np.float32))
    if not left:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32), offsets
    return np.concatenate(left), np.concatenate(right), np.concatenate(scores), offsets


def centre_linkage(left: np.ndarray, right: np.ndarray, scores: np.ndarray) -> list[list[int]]:
    """Groups around centres: the id with the most edges (then the highest total score, then
    the lowest id) becomes a centre and takes every ungrouped neighbour; repeat. Then every
    member moves to the centre it scores highest against (centres are never neighbours of one
    another, so each member keeps a score >= threshold against its own centre), except each
    centre's closest member, which stays so that no centre is left alone. Returns groups of two
    or more ids, centre first, the rest in id order."""
    adjacency: dict[int, dict[int, float]] = defaultdict(dict)
    for a, b, s in zip(left.tolist(), right.tolist(), scores.tolist()):
        adjacency[a][b] = s
        adjacency[b][a] = s
    order = sorted(adjacency, key=lambda i: (-len(adjacency[i]), -sum(adjacency[i].values()), i))
    centre_of: dict[int, int] = {}
    centres: list[int] = []
    for centre in order:
        if centre in centre_of:
            continue
        members = [m for m in adjacency[centre] if m not in centre_of]
        if members:
            centres.append(centre)
            centre_of[centre] = centre
            centre_of.update((m, centre) for m in members)
    is_centre = set(centres)
    # each centre keeps its closest first-pass member, so that no centre is left on its own
    pinned = {}
    for member, first in centre_of.items():
        if member != first:
            key = (adjacency[first][member], -member)
            if first not in pinned or key > pinned[first][0]:
                pinned[first] = (key, member)
    stays = {member for _, member in pinned.values()}
    members_of: dict[int, list[int]] = {c: [] for c in centres}
    for member, first in centre_of.items():
        if member in is_centre:
            continue
        near = adjacency[member]
        best = first if member in stays else max(
            (c for c in near if c in is_centre), key=lambda c: (near[c], c == first, -c))
        members_of[best].append(member)
    return [[c] + sorted(members_of[c]) for c in centres]


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
