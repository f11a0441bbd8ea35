"""The mistakes behind an eval run's figures: pairs dedupe grouped that come from different
pictures, and copies that search or dedupe did not put with their original.

Plain data for the text report, `--json` and a review page. A copy lived in eval's temporary
folder and is gone afterwards; it is named by its original, its edit and its file name in the
benchmark (`make_benchmark` with the same seed writes the same bytes again).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["FileRef", "FalsePair", "MissedCopy", "Mistakes", "false_pairs", "missed_by_dedupe"]


@dataclass(frozen=True)
class FileRef:
    """What one benchmark file is."""

    kind: str                   # "original" | "copy" | "distractor"
    path: str | None            # the file on disk; None for a copy (it was temporary)
    original: str | None = None  # for a copy: the original it was made from
    edit: str | None = None      # for a copy: the edit that made it
    copy: str | None = None      # for a copy: its file name in the benchmark

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class FalsePair:
    """Two files that dedupe put in one group, from pictures that are not versions of each other."""

    a: FileRef
    b: FileRef
    score: float

    def to_dict(self) -> dict:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "score": self.score}


@dataclass(frozen=True)
class MissedCopy:
    """A copy that `stage` ("search": its top hit; "dedupe": its group) did not put with its
    original. `score` is its score against its original; `found` what it went with instead
    (search: the top hit; dedupe: the closest member of its group, None when it is in none)."""

    copy: FileRef
    stage: str
    score: float
    found: FileRef | None = None
    found_score: float | None = None

    def to_dict(self) -> dict:
        return {"copy": self.copy.to_dict(), "stage": self.stage, "score": self.score,
                "found": None if self.found is None else self.found.to_dict(),
                "found_score": self.found_score}


@dataclass
class Mistakes:
    """False pairs, highest score first (the most confident errors); missed copies, search
    misses first, each kind lowest score first."""

    false_pairs: list[FalsePair] = field(default_factory=list)
    missed: list[MissedCopy] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"false_pairs": [p.to_dict() for p in self.false_pairs],
                "missed": [m.to_dict() for m in self.missed]}


def false_pairs(groups: Sequence[Sequence[str]], unit_of: dict[str, int], set_of: Sequence[int],
                score: Callable[[str, str], float], describe: Callable[[str], FileRef]
                ) -> list[FalsePair]:
    """Every pair inside a group whose files come from different units not in one set."""
    out = []
    for files in groups:
        for i, a in enumerate(files):
            for b in files[i + 1:]:
                ua, ub = unit_of[a], unit_of[b]
                if ua != ub and set_of[ua] != set_of[ub]:
                    out.append(FalsePair(describe(a), describe(b), score(a, b)))
    out.sort(key=lambda p: -p.score)
    return out


def missed_by_dedupe(groups: Sequence[Sequence[str]], true_pairs: Sequence[tuple[str, str]],
                     score: Callable[[str, str], float], describe: Callable[[str], FileRef]
                     ) -> list[MissedCopy]:
    """(copy, original) pairs that no group holds together."""
    group_of: dict[str, int] = {}
    for gi, files in enumerate(groups):
        for f in files:
            group_of.setdefault(f, gi)
    out = []
    for copy, original in true_pairs:
        gi = group_of.get(copy)
        if gi is not None and group_of.get(original) == gi:
            continue
        found = found_score = None
        if gi is not None:
            mates = [(score(copy, f), f) for f in groups[gi] if f != copy]
            found_score, mate = max(mates)
            found = describe(mate)
        out.append(MissedCopy(describe(copy), "dedupe", score(copy, original), found, found_score))
    out.sort(key=lambda m: m.score)
    return out
