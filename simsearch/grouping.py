"""Grouping an index's files: dedupe over the stored vectors of one committed state, the
picture check on the pairs the score alone leaves in doubt, and the groups as files (one per
file on disk, a file changed since indexing left out, a group whose centre is gone stood up
again around its first file). `Index.duplicates` is the way in; the grouping itself, over
arrays, is `simsearch.dedupe`.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from simsearch.dedupe import DuplicateReport, Group, Member, check_threshold, find_groups
from simsearch.errors import IndexStoreError
from simsearch.ingest import Progress
from simsearch.layout import extent_of
from simsearch.lineup import forget_searched
from simsearch.pairs import exact_scores
from simsearch.picturecheck import PictureCheck
from simsearch.scoring import Background

if TYPE_CHECKING:
    from simsearch.index import Index

__all__ = ["duplicates"]


def duplicates(index: Index, threshold: float | None = None, linkage: str = "centre",
               background: "str | Background | None" = "model",
               progress: Progress | None = None, check: "bool | PictureCheck" = True,
               check_progress: Progress | None = None,
               check_notice: Callable[[int], None] | None = None) -> DuplicateReport:
    """`Index.duplicates` (its arguments and what it returns are told there)."""
    if threshold is None:
        threshold, source = index.threshold_to_use(bool(check))
    else:
        threshold, source = check_threshold(threshold), "command line"
    # what a pair the check cannot judge must reach; read before the snapshot is opened
    alone = index.score_alone_threshold() if check else None
    catalog = index.catalog()
    try:
        with catalog.snapshot():  # vectors, offsets and paths from one committed state
            ids, contents = catalog.contents()
            # filled in place, one copy, in float16: half the memory of float32 (5 GB at
            # ten million 256-d vectors), scores within ~1e-4 of float32 ones (vectors.f16,
            # which re-scores a lossy index's candidates, keeps the same precision)
            vectors = np.empty((len(ids), index.dim), np.float16)
            filled = 0
            for _, batch in catalog.vectors():
                end = filled + len(batch)
                if end > len(ids):
                    filled = -1
                    break
                vectors[filled:end] = batch
                filled = end
            if filled != len(ids):
                raise IndexStoreError(f"{index.path}: the catalog's rows and vectors do not "
                                      "match; run: simsearch check --repair")
            if isinstance(background, Background):
                offsets = background.offsets(vectors)
            elif background == "model":
                offsets = index.stored_offsets(catalog).of(ids)
            else:
                offsets = np.zeros(len(ids), np.float32)
            codes = np.unique(contents, return_inverse=True)[1] if len(ids) else np.zeros(0, np.int64)
            apart = _apart_ids(catalog.not_duplicates(), ids, contents)
            if check is True:
                check = index.picture_check()
            judge, before = None, None
            if check:
                before = check.stats.copy()

                def contents_of(wanted):
                    """This snapshot's content hash, size and time of `wanted` ids."""
                    return {i: (r.sha256, r.size, r.mtime_ns)
                            for i, r in catalog.rows_by_id(wanted).items()}

                def judging(a, b, scores):  # this snapshot's paths, this call's progress
                    return check(a, b, scores, paths_of=catalog.paths,
                                 progress=check_progress, alone=alone,
                                 contents_of=contents_of, notice=check_notice)
                judge = judging
            try:
                found = find_groups(ids, vectors, offsets, codes, threshold, linkage, apart,
                                    progress=progress, check=judge,
                                    prefer=catalog.centre_order())
            except (KeyboardInterrupt, SystemExit):
                if check:  # stopped (Ctrl-C, a SIGTERM): what was judged is kept, and the
                    check.save_verdicts(ids, contents)  # next run starts from there
                raise
            finally:
                forget_searched()  # the lining-up search's pieces: this run's only
            if check:
                check.save_verdicts(ids, contents)  # the next run need not read them again
            rows = catalog.rows_by_id({i for g in found for i in g.ids})
    finally:
        catalog.close()
    report = DuplicateReport(threshold, source, check=None if not check else
                             {**check.stats.since(before).to_dict(),
                              "below": check.settings.below,
                              "plain_below": check.settings.reads_below, "alone": alone,
                              "act_inliers": check.settings.act_inliers,
                              "act_aligned": check.settings.sure_aligned,
                              "act_disagree": check.settings.act_disagree,
                              "small_disagree": check.settings.small_disagree,
                              "small_windows": check.settings.small_windows,
                              "colour_tol": check.settings.colour_tol,
                              "colour_cut": check.settings.colour_cut,
                              "plain_disagree": check.settings.plain_disagree,
                              "plain_small": check.settings.plain_small})
    row_of: dict[int, int] = {}  # id -> its row of `vectors`, made when a centre is gone

    def scores(x: int, ys: list[int]) -> np.ndarray:  # as find_groups scores pairs
        if not row_of:
            row_of.update((int(i), k) for k, i in enumerate(ids.tolist()))
        r = np.array([row_of[y] for y in ys], np.int64)
        return np.minimum(1.0, exact_scores(vectors, offsets, np.full(len(r), row_of[x]), r))
    for g in found:
        evidence = _evidence(g, rows, check or None)
        shapes = _shapes(g.ids, rows, check or None)
        members = _current_files([Member(i, rows[i].path, s, rows[i].sha256, rows[i].size,
                                         rows[i].width, rows[i].height, rows[i].mtime_ns, e,
                                         *shapes[i])
                                  for i, s, e in zip(g.ids, g.scores, evidence)], report.stale)
        parts = [members]
        if members and members[0].id != g.ids[0]:  # the centre is gone: the first left
            parts = _restand(members, check or None, scores, threshold)
        for members in parts:
            if len(members) > 1:
                kind = "exact" if len({m.sha256 for m in members}) == 1 else "near"
                report.groups.append(Group(kind, members))
    report.groups.sort(key=lambda g: (-len(g.members), g.centre))
    return report


def _apart_ids(pairs: set[tuple[str, str]], ids: np.ndarray, contents: np.ndarray
               ) -> set[tuple[int, int]]:
    """Content pairs a user set apart, as pairs of row ids (one row per content suffices:
    dedupe groups whole contents)."""
    if not pairs:
        return set()
    first: dict[str, int] = {}
    for i, sha in zip(ids.tolist(), contents.tolist()):
        first.setdefault(sha, i)
    return {(min(first[a], first[b]), max(first[a], first[b]))
            for a, b in pairs if a in first and b in first}


def _evidence(group, rows, check: "PictureCheck | None") -> list[str]:
    """What put each member of `group` (ids, centre first) in it (`simsearch.dedupe.EVIDENCE`):
    the centre; the centre's bytes; the picture check's verdict on its pair with the centre
    (for a member the check never looked at, that of a member with the same bytes); else its
    score alone ("" when the check keeps no verdicts)."""
    centre = group.ids[0]
    same_bytes: dict[str, list[int]] = {}
    for i in group.ids:
        same_bytes.setdefault(rows[i].sha256, []).append(i)
    out = []
    for i in group.ids:
        if i == centre:
            out.append("centre")
        elif rows[i].sha256 == rows[centre].sha256:
            out.append("identical")
        elif not check:
            out.append("score")
        else:
            found = "score" if check.remember else ""
            for j in same_bytes[rows[i].sha256]:
                try:
                    verdict = check.verdict(centre, j)
                except KeyError:  # not judged: pictures with keypoints at or above `below`
                    continue
                found = "checked" if verdict else "unchecked" if verdict is None else found
                break
            out.append(found)
    return out


def _shapes(ids: list[int], rows, check: "PictureCheck | None"
            ) -> dict[int, tuple[tuple | None, float | None]]:
    """How each member (ids, the centre first) holds the centre's picture, for the keep rule
    `largest` (simsearch.layout): the map from the centre's pixels to its own and its extent,
    from the picture check's geometry of its pair with the centre (for a member the check never
    matched, that of a member with the same bytes; the centre's own bytes: the identity);
    (None, None) when there is none."""
    centre = ids[0]
    same: dict[str, tuple] = {}
    out: dict[int, tuple] = {}
    for i in ids:
        if rows[i].sha256 == rows[centre].sha256:
            out[i] = ((1.0, 0.0, 0.0, 1.0), 1.0)
            continue
        shape = check.geometry(centre, i) if check is not None else None
        if shape is None:
            out[i] = (None, None)
            continue
        linear, shares = shape  # shares: the centre's keypoints and the member's outside
        out[i] = (linear, None if shares is None else extent_of((shares[1], shares[0])))
        same.setdefault(rows[i].sha256, out[i])
    return {i: same.get(rows[i].sha256, v) if v[0] is None else v for i, v in out.items()}


def _restand(members: list[Member], check: "PictureCheck | None", scores=None,
             threshold: float | None = None) -> list[list[Member]]:
    """The group again, its centre gone since indexing: each member scored against the first
    member left (`scores(first_id, ids)`, as `find_groups` scores pairs; without it, each keeps
    its score to the gone centre) with evidence against it (its bytes, the check's verdict on
    the pair if it judged it, else "unchecked": the pair may never have been looked at, nothing
    confirms it; "score" without the check). The members joined the centre, never one another
    (a hostile tester's four photos stayed one group once their centre was deleted, and a plan
    with --act-on-unconfirmed acted on them), so a member scoring under `threshold` against
    that first one, or judged another picture by the check, does not stay with it: those
    members make a group of their own the same way, and so on (a member left alone is in no
    group, as it would be without its pair). Groups of one are left out by the caller."""
    out: list[list[Member]] = []
    while members:
        first, left = members[0], []
        part = [dataclasses.replace(first, evidence="centre", score=1.0)]
        rest = members[1:]
        values = (scores(first.id, [m.id for m in rest]).tolist() if scores is not None and rest
                  else [m.score for m in rest])
        for m, value in zip(rest, values):
            identical = m.sha256 == first.sha256
            value = 1.0 if identical else value
            if threshold is not None and value < threshold:
                left.append(m)  # not a near duplicate of this first one
                continue
            m = dataclasses.replace(m, score=value)
            if identical:
                evidence = "identical"
            elif not check:
                evidence = "score"
            else:
                try:
                    verdict = check.verdict(first.id, m.id)
                except KeyError:  # never looked at, or the check keeps no verdicts
                    verdict = None
                if verdict is False:  # judged another picture than this first one
                    left.append(m)
                    continue
                evidence = "checked" if verdict else "unchecked"
            part.append(dataclasses.replace(m, evidence=evidence))
        out.append(part)
        members = left
    # the maps and extents measured against the centre that is gone still compare the files
    # with one another (simsearch.keeprules)
    return out


def _other_name(path: str, first: str) -> bool:
    """Whether `path`, one file with `first`, is another name of it that acting on `first`
    leaves behind: a symbolic link to it (or `first` one to it), or a hard link (another
    entry of a folder); not the same entry reached through a linked or mounted folder (one
    folder indexed under two names), which goes with it."""
    return (os.path.islink(path) or os.path.islink(first)
            or os.path.realpath(path) != os.path.realpath(first))


def _current_files(members: list[Member], stale: list[str]) -> list[Member]:
    """The members that are still what was indexed (same size and mtime as their row; a file
    changed or gone since goes to `stale`), one per file: two paths of one file (a link and its
    target, one folder indexed under two names) are the same file, never duplicates."""
    seen: dict[tuple[int, int], int] = {}  # (device, inode) -> its member's place in `out`
    out = []
    for m in members:
        try:
            st = os.stat(m.path)
        except OSError:
            stale.append(m.path)
            continue
        if st.st_size != m.size or st.st_mtime_ns != m.mtime_ns:
            stale.append(m.path)
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen[key] = len(out)
            out.append(m)
        elif _other_name(m.path, out[seen[key]].path):  # for a plan to see (`aliases`)
            first = out[seen[key]]
            out[seen[key]] = dataclasses.replace(first, aliases=first.aliases + (m.path,))
    return out
