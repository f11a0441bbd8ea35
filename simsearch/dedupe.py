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

Each group reports its lowest pairwise score. Memory is linear in the number of images plus
the number of pairs above the threshold: no n x n matrix.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from simsearch.catalog import Catalog
from simsearch.scoring import Background
from simsearch.vectors import VectorStore, range_pairs

__all__ = ["DEFAULT_THRESHOLD", "LINKAGES", "Group", "DuplicateReport", "find_duplicates",
           "near_pairs", "centre_linkage", "complete_linkage", "lowest_pair_score"]

# Used only when the model carries no calibrated threshold of its own (see README: Dedupe).
DEFAULT_THRESHOLD = 0.90


@dataclass(frozen=True)
class Group:
    kind: str  # "exact" or "near"
    min_score: float
    files: list[str]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "min_score": round(self.min_score, 6), "files": self.files}


@dataclass
class DuplicateReport:
    threshold: float
    groups: list[Group] = field(default_factory=list)
    threshold_source: str = "model"  # "model" | "calibrated" | "command line"

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                "groups": [g.to_dict() for g in self.groups]}


LINKAGES = ("centre", "complete")


def find_duplicates(catalog: Catalog, store: VectorStore, threshold: float,
                    linkage: str = "centre", background: Background | None = None) -> DuplicateReport:
    """Exact groups by content hash, near groups at `threshold`; with a `background`, near
    groups are judged on adjusted scores (see `simsearch.scoring`)."""
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {', '.join(LINKAGES)}, not {linkage!r}")
    if not -1.0 <= threshold <= 1.0:  # also refuses nan
        raise ValueError(f"threshold must be a score between -1 and 1, not {threshold!r}")
    report = DuplicateReport(threshold)
    copies: dict[int, list[str]] = {}  # representative id -> every path with that content
    duplicate_ids: set[int] = set()  # every copy but the representative
    for rows in catalog.sha256_groups():
        paths = sorted(r.path for r in rows)
        copies[rows[0].id] = paths
        duplicate_ids.update(r.id for r in rows[1:])
        report.groups.append(Group("exact", 1.0, paths))

    ids = store.ids()
    keep = np.array([i not in duplicate_ids for i in ids.tolist()], dtype=bool)
    ids = ids[keep]
    vectors, stored = store.vectors_and_offsets()
    vectors, stored = vectors[keep], stored[keep]
    # offsets made at ingest for this background: no need to compare every vector with it again
    offsets = stored if background is not None and store.scoring == background.fingerprint else None
    left, right, scores, offsets = near_pairs(ids, vectors, threshold, background, offsets)
    if len(left) == 0:
        return report
    if linkage == "complete":
        clusters = complete_linkage(left, right, scores)
    else:
        row_of = {int(i): r for r, i in enumerate(ids.tolist())}
        clusters = []
        for group in centre_linkage(left, right, scores):
            rows = np.array([row_of[i] for i in group])
            clusters.append((group, lowest_pair_score(vectors[rows], offsets[rows])))
    members = [m for m, _ in clusters]
    paths = catalog.paths({i for m in members for i in m})
    for member_ids, min_score in clusters:
        files = sorted(p for i in member_ids for p in copies.get(i, [paths[i]]))
        report.groups.append(Group("near", min_score, files))
    report.groups.sort(key=lambda g: (g.kind != "exact", -len(g.files), g.files[0]))
    return report


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
    radius = threshold + 2 * float(offsets.min()) if len(offsets) else threshold
    by_id = np.argsort(ids, kind="stable")
    left, right, scores = [], [], []
    for pairs in range_pairs(ids, vectors, radius):
        rows_l = by_id[np.searchsorted(ids[by_id], pairs.left)]
        rows_r = by_id[np.searchsorted(ids[by_id], pairs.right)]
        adjusted = np.minimum(pairs.scores - offsets[rows_l] - offsets[rows_r], 1.0)
        keep = adjusted >= threshold
        left.append(pairs.left[keep])
        right.append(pairs.right[keep])
        scores.append(adjusted[keep].astype(np.float32))
    if not left:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32), offsets
    return np.concatenate(left), np.concatenate(right), np.concatenate(scores), offsets


def lowest_pair_score(vectors: np.ndarray, offsets: np.ndarray, block: int = 2048) -> float:
    """The lowest adjusted score over all pairs of a group's vectors, computed in blocks of rows
    so that a group of 20k near-identical frames needs no 20k x 20k matrix."""
    low = 1.0
    for start in range(0, len(vectors) - 1, block):
        stop = min(start + block, len(vectors))
        scores = (vectors[start:stop] @ vectors[start + 1:].T - offsets[start:stop, None]
                  - offsets[None, start + 1:])
        # keep only pairs (i, j) with j > i: column c stands for row start + 1 + c
        upper = np.arange(start, stop)[:, None] < np.arange(start + 1, len(vectors))[None, :]
        low = min(low, float(scores[upper].min()))
    return min(low, 1.0)


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
