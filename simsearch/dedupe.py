"""Exact and near-duplicate groups from stored vectors (the network is never loaded).

Exact duplicates share a content hash. Near duplicates are found by a range search at a cosine
threshold over one representative per content hash, then grouped by complete linkage: two
groups merge only if *every* pair across them scores at or above the threshold, so a chain
A~B~C never puts A and C together when they are far apart. Memory is linear in the number of
images plus the number of pairs above the threshold: no n x n matrix.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from simsearch.catalog import Catalog
from simsearch.vectors import VectorStore, range_pairs

__all__ = ["DEFAULT_THRESHOLD", "Group", "DuplicateReport", "find_duplicates", "complete_linkage"]

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

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "groups": [g.to_dict() for g in self.groups]}


def find_duplicates(catalog: Catalog, store: VectorStore, threshold: float) -> DuplicateReport:
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
    vectors = store.vectors()[keep] if len(ids) else np.zeros((0, store.dim), np.float32)
    left, right, scores = [], [], []
    for pairs in range_pairs(ids, vectors, threshold):
        left.append(pairs.left)
        right.append(pairs.right)
        scores.append(pairs.scores)
    if not left:
        return report
    clusters = complete_linkage(np.concatenate(left), np.concatenate(right),
                                np.concatenate(scores))
    members = [m for m, _ in clusters]
    paths = catalog.paths({i for m in members for i in m})
    for member_ids, min_score in clusters:
        files = sorted(p for i in member_ids for p in copies.get(i, [paths[i]]))
        report.groups.append(Group("near", min_score, files))
    report.groups.sort(key=lambda g: (g.kind != "exact", -len(g.files), g.files[0]))
    return report


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
