"""Originals that already look alike: sets of a user's pictures that are copies or versions of
one another before eval makes any copies (a light and a dark version, a resized export, the
same file twice).

Three views, each a list of linked pairs: the same content hash; pHash (a Hamming distance of
at most 10 of 64 bits, the usual default of hash-based finders); and the model's own score at
its dedupe threshold. Linked pairs are joined into sets (a union: A~B and B~C put A, B and C in
one set). Eval counts the pairs inside one set neither right nor wrong by default: whether a
light and a dark version are "duplicates" is the user's call, not a fact the benchmark can
score.

A model link joins two originals on its own only when it scores at least half-way from the
dedupe threshold to 1 (0.93 for the default model's 0.86); below that it joins nothing unless
content or pHash agree, and is listed as unconfirmed for the user to look at. Near the
threshold is where the model's own false pairs are, and a set excuses every pair in it: on 56
Debian wallpapers (GNOME, MATE, Sway, Xfce) the model-only links below 0.92 were two different
green close-ups (0.858) and two different near-white overlays (0.840), while Sway's one picture
in eight sizes and orientations (pHash splits portrait from landscape) and Xfce's blue and teal
versions score 0.92-1.0.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Link", "Family", "Families", "link_hashes", "link_hamming", "join", "set_roots"]

PHASH_DISTANCE = 10  # bits of 64


@dataclass(frozen=True)
class Link:
    """Two originals (indices into the list of originals) seen alike by one view."""

    a: int
    b: int
    view: str      # "same content" | "model score" | "phash"
    value: float   # the score (model), the Hamming distance (phash), 1 (same content)


@dataclass(frozen=True)
class Family:
    """One set of originals that look alike, and the links that joined it."""

    members: tuple[int, ...]
    links: tuple[Link, ...]


@dataclass(frozen=True)
class Families:
    """The sets found among `paths` (the originals), the views used and those skipped."""

    paths: tuple[str, ...]
    sets: tuple[Family, ...]
    views: tuple[str, ...]
    skipped_views: dict[str, str] = field(default_factory=dict)  # view -> why it did not run
    unconfirmed: tuple[Link, ...] = ()  # listed links across sets (the model's), joining nothing
    model_bar: float | None = None  # the score at which a model link joins on its own

    def set_of(self) -> np.ndarray:
        """For each original, the index of its set's first member (itself when in no set)."""
        out = np.arange(len(self.paths))
        for family in self.sets:
            out[list(family.members)] = family.members[0]
        return out

    @property
    def n_files(self) -> int:
        return sum(len(f.members) for f in self.sets)

    def to_dict(self) -> dict:
        return {"views": list(self.views), "skipped_views": dict(self.skipped_views),
                "n_sets": len(self.sets), "n_files": self.n_files,
                "sets": [{"files": [self.paths[i] for i in f.members],
                          "links": [{"a": self.paths[ln.a], "b": self.paths[ln.b],
                                     "view": ln.view, "value": ln.value} for ln in f.links]}
                         for f in self.sets],
                "model_bar": self.model_bar,
                "unconfirmed": [{"a": self.paths[ln.a], "b": self.paths[ln.b], "view": ln.view,
                                 "value": ln.value} for ln in self.unconfirmed]}


def link_hashes(sha256: Sequence[str]) -> list[Link]:
    """Originals with identical content: each file linked to the first with its hash."""
    first: dict[str, int] = {}
    links = []
    for i, sha in enumerate(sha256):
        j = first.setdefault(sha, i)
        if j != i:
            links.append(Link(j, i, "same content", 1.0))
    return links


def link_hamming(hashes: np.ndarray, max_distance: int = PHASH_DISTANCE,
                 block: int = 1024) -> list[Link]:
    """Pairs of 64-bit hashes at most `max_distance` bits apart, in blocks of rows (no n x n
    matrix held at once)."""
    from simsearch.evaluate import popcount

    h = np.asarray(hashes, dtype=np.uint64)
    links = []
    for start in range(0, len(h), block):
        d = popcount(h[start:start + block, None] ^ h[None, :])
        rows, cols = np.nonzero(d <= max_distance)
        rows = rows + start
        keep = cols > rows
        links += [Link(int(a), int(b), "phash", int(dist))
                  for a, b, dist in zip(rows[keep], cols[keep], d[rows[keep] - start, cols[keep]])]
    return links


def set_roots(n: int, pairs: Iterable[tuple[int, int]]) -> list[int]:
    """Union-find over items 0..n-1: for each item, the lowest index of the set that `pairs`
    (item indices) put it in."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(n)]


def join(paths: Sequence[str], links: Sequence[Link], views: Sequence[str],
         skipped_views: dict[str, str] | None = None, listed: Sequence[Link] = ()) -> Families:
    """Union the originals that `links` link into sets, each set in order of first index.
    `listed` links join nothing: each is shown with its set when both ends are in one, else
    as unconfirmed."""
    root = set_roots(len(paths), [(link.a, link.b) for link in links])
    members: dict[int, list[int]] = {}
    for i in range(len(paths)):
        members.setdefault(root[i], []).append(i)
    by_root: dict[int, list[Link]] = {}
    unconfirmed = []
    for link in list(links) + list(listed):
        if root[link.a] == root[link.b]:
            by_root.setdefault(root[link.a], []).append(link)
        else:
            unconfirmed.append(link)
    sets = tuple(Family(tuple(m), tuple(by_root.get(r, ()))) for r, m in sorted(members.items())
                 if len(m) > 1)
    return Families(tuple(str(p) for p in paths), sets, tuple(views), dict(skipped_views or {}),
                    tuple(unconfirmed))
