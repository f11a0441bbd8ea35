"""Plan files: which copy of each duplicate group stays, which are acted on, and why.

A plan is data, written before anything is touched: each group with every file's identity at
planning time (size, mtime_ns, sha256), what the keep rules (simsearch.keeprules) chose and
the reason in words. `simsearch.actions.apply` carries a plan out and re-checks every file
against it; the review page (`simsearch.review`) lets a person change the choices and save the
plan again. Files under a protected folder are always kept and never acted on; the rules still
choose the best copy among all files, so protecting a folder of small copies never costs the
large one.

This module only reads: file headers (format, EXIF capture date), and the pixels the keep
rules ask for (simsearch.layout, simsearch.keeprules).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from simsearch.errors import PlanError
from simsearch.files import json_text
from simsearch.keeprules import (KeepRule, choose, colour_beside_grey, kept_too, lossless_first,
                                 parse_rules, with_colours, with_decodes)
from simsearch.layout import (BAND, BAND_GROUP, adds_bars, with_bands, with_bars, with_corners,
                              with_resaves)
from simsearch.planfile import PlanFile, file_facts, under

__all__ = ["PLAN_VERSION", "PLAN_FORMAT", "DECISIONS", "writable_plan_path", "PlanGroup", "Plan",
           "UNCONFIRMED", "linked_kept", "frames_kept", "make_plan",
           # where the README's Python API found them before they had modules of their own
           "parse_rules", "PlanFile"]

PLAN_VERSION = 1
PLAN_FORMAT = "simsearch-plan"
# act: keep `keep`, act on `act_on`; keep-all: touch nothing; not-duplicates: touch nothing and
# remember (in the index) that these files are not duplicates of one another
DECISIONS = ("act", "keep-all", "not-duplicates")


def writable_plan_path(path: str | os.PathLike) -> None:
    """PlanError unless `path` is free (or an empty file, or a link to nothing) or holds a plan,
    which a new plan may replace: a plan is recognised by its content, in any key order."""
    if not os.path.exists(path):  # free, or a dangling link (replaced, its target never made)
        return
    if os.path.isdir(path):
        raise PlanError(f"{path} is a folder; give a file name for the plan, e.g. {path}/plan.json")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
            whole = not fh.read(1)
    except OSError as e:
        raise PlanError(f"{path}: cannot write the plan over it ({e.strerror or e})") from e
    if not head:
        return
    is_plan = head.lstrip().startswith(b"{") and f'"{PLAN_FORMAT}"'.encode() in head
    if is_plan and whole:  # read whole: the format key itself must say so, in any key order;
        try:               # a larger plan names it near the top however its keys are ordered
            is_plan = json.loads(head.decode("utf-8")).get("format") == PLAN_FORMAT
        except (ValueError, AttributeError):
            is_plan = False
    if not is_plan:
        raise PlanError(f"{path} exists and is not a simsearch plan; it was left as it is "
                        f"(give another file name for the plan)")


@dataclass
class PlanGroup:
    kind: str                 # "exact" | "near"
    centre: str
    min_score: float
    files: list[PlanFile]     # centre first, then by score
    keep: list[str]
    act_on: list[str]
    decision: str = "act"
    exact: list[list[str]] = field(default_factory=list)
    # files the picture check could not confirm that a person called copies (the review page's
    # "It is a copy"): these may be acted on whatever the plan's act_on_unconfirmed
    confirmed: list[str] = field(default_factory=list)

    def reclaimable(self) -> int:
        """The bytes acting on the group frees: a file with other names on disk (a hard link
        outside the index) frees none."""
        if self.decision != "act":
            return 0
        sizes = {f.path: f.size if f.links == 1 else 0 for f in self.files}
        return sum(sizes[p] for p in self.act_on)

    def linked(self) -> int:
        """How many of the files acted on have other names on disk (they free no space)."""
        if self.decision != "act":
            return 0
        acted = set(self.act_on)
        return sum(f.links > 1 for f in self.files if f.path in acted)


# how far under a plan's threshold a file acted on may score with its group's kept files and
# centre (`Plan.not_alike`): scores read again from an index may differ in the last digits
ALIKE_SLACK = 0.02
ALIKE_BATCH = 50_000  # pairs asked of the index at a time


@dataclass
class Plan:
    groups: list[PlanGroup]
    keep_rules: list[str] = field(default_factory=list)
    protect: list[str] = field(default_factory=list)
    index: str | None = None
    threshold: float | None = None
    created: str = ""
    source: str = "simsearch dedupe"
    # whether files the picture check could not confirm (evidence "unchecked") may be acted on;
    # when False they are kept, and the review page keeps them when a choice is flipped
    act_on_unconfirmed: bool = False

    def reclaimable(self) -> int:
        return sum(g.reclaimable() for g in self.groups)

    def not_alike(self, scores: Callable[[list[tuple[str, str]]], list[float | None]],
                  contents: Callable[[list[str]], dict[str, str]] | None = None
                  ) -> dict[str, str]:
        """The files the plan acts on that the index says dedupe never grouped where the plan
        puts them (a plan edited by hand: a unique photo added to a group), each with the
        reason. `scores`: pairs of paths -> their scores, None where one is not indexed
        (`Index.scores_between`); `contents`: paths -> the content hash the index holds for
        those it holds (`Index.contents_of`). A file acted on is held back when the index holds
        other content under its name than the plan's (its vector says nothing of the file the
        plan names), or when it scores under the plan's threshold (less ALIKE_SLACK) with every
        kept file of its group and with its centre, judged on the pairs the index knows (with
        a file's own content) so long as it knows the pair with the centre: every file dedupe
        groups reaches the threshold with its centre (a centre acted on, with its kept files).
        A plan without a threshold holds nothing back."""
        if self.threshold is None:
            return {}
        groups = [g for g in self.groups if g.decision == "act"]
        shas = {f.path: f.sha256 for g in groups for f in g.files}
        indexed = contents(sorted(shas)) if contents is not None else {}
        held: dict[str, str] = {}
        asked = []
        for g in groups:
            for path in g.act_on:
                if path in indexed and indexed[path] != shas[path]:
                    held[path] = ("the index holds other content under its name than the plan "
                                  "says (indexed again since, or the plan was edited): it cannot "
                                  "tell that it is a copy of its group")
                    continue
                asked += [(path, other, other == g.centre)
                          for other in dict.fromkeys([*g.keep, g.centre]) if other != path]
        found: list[float | None] = []
        for start in range(0, len(asked), ALIKE_BATCH):  # (vectors read a batch at a time)
            found += scores([(a, b) for a, b, _ in asked[start:start + ALIKE_BATCH]])
        best: dict[str, float] = {}
        centre_known: dict[str, bool] = {}
        for (path, other, centre), score in zip(asked, found):
            if score is not None and indexed.get(other, shas.get(other)) != shas.get(other):
                score = None  # (the index holds other content under that name)
            if centre:
                centre_known[path] = score is not None
            if score is not None:
                best[path] = max(best.get(path, -1.0), score)
        floor = self.threshold - ALIKE_SLACK
        for path, score in best.items():
            if score < floor and centre_known.get(path, True):
                held[path] = (f"not alike any kept file of its group by the index's vectors "
                              f"(best score {score:.2f}, the plan's threshold "
                              f"{self.threshold:.2f}): dedupe did not group it there; was the "
                              f"plan edited by hand?")
        return held

    def linked(self) -> int:
        return sum(g.linked() for g in self.groups)

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "created": self.created,
                "source": self.source, "index": self.index, "threshold": self.threshold,
                "keep_rules": self.keep_rules, "protect": self.protect,
                "act_on_unconfirmed": self.act_on_unconfirmed,
                "summary": {"groups": len(self.groups),
                            "files": sum(len(g.files) for g in self.groups),
                            "act_on": sum(len(g.act_on) for g in self.groups
                                          if g.decision == "act"),
                            "reclaimable_bytes": self.reclaimable()},
                "groups": [{**asdict(g), "files": [_file_dict(f) for f in g.files]}
                           for g in self.groups]}

    def save(self, path: str | os.PathLike) -> None:
        """Written to a temporary name beside it, then renamed: a plan is whole or absent. A
        file already at `path` is replaced only when it is a plan: `--plan photo.jpg` by
        mistake must not cost the photo."""
        path = Path(path)
        writable_plan_path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        data = (json_text(self.to_dict(), indent=1) + "\n").encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with open(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise PlanError(f"{path}: cannot write the plan ({e.strerror or e})") from e

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
        except (OSError, ValueError) as e:
            target = "new-plan.json" if os.path.lexists(path) else path  # never over this file
            raise PlanError(f"{path}: cannot read the plan ({getattr(e, 'strerror', None) or e}); "
                            f"make one with: simsearch dedupe --plan {target}") from e
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, name: str = "plan") -> "Plan":
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f"{name}: not a simsearch plan (make one with: simsearch dedupe --plan)")
        if data.get("version") != PLAN_VERSION:
            raise PlanError(f"{name}: plan version {data.get('version')!r}; this simsearch reads "
                            f"version {PLAN_VERSION} (make the plan again with simsearch dedupe --plan)")
        if not isinstance(data.get("groups"), list):
            raise PlanError(f"{name}: malformed plan (groups is not a list: "
                            f"{data.get('groups')!r:.60})")
        try:
            groups = [PlanGroup(kind=_text(g["kind"], "kind"), centre=_text(g["centre"], "centre"),
                                min_score=_real(g["min_score"], "min_score"),
                                files=[_plan_file(f, f"{name}: group {n + 1}, file {i + 1}")
                                       for i, f in enumerate(_list(g["files"], "files"))],
                                keep=_texts(g["keep"], "keep"),
                                act_on=_texts(g["act_on"], "act_on"),
                                decision=_text(g.get("decision", "act"), "decision"),
                                exact=[_texts(s, "exact") for s in _list(g.get("exact", []),
                                                                          "exact")],
                                confirmed=_texts(g.get("confirmed", []), "confirmed"))
                      if isinstance(g, dict) else _not_a_group(g)
                      for n, g in enumerate(data["groups"])]
            index = data.get("index")
            if index is not None:
                _text(index, "index")
            plan = cls(groups=groups, keep_rules=_texts(data.get("keep_rules", []), "keep_rules"),
                       protect=_texts(data.get("protect", []), "protect"),
                       index=index, threshold=_number(data.get("threshold"), "threshold"),
                       created=str(data.get("created", "")), source=str(data.get("source", "")),
                       # absent: a plan from before session 20, made acting on them; null is
                       # no (as the review page reads it)
                       act_on_unconfirmed=_flag(data.get("act_on_unconfirmed", True),
                                                "act_on_unconfirmed") is True)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise PlanError(f"{name}: malformed plan ({type(e).__name__}: {e})") from e
        plan.validate(name)
        return plan

    def doubted(self, g: PlanGroup, f: PlanFile) -> bool:
        """Whether the file `f` of group `g` may be another picture for this plan: the picture
        check did not confirm it, a person did not call it a copy (the review page's "It is a
        copy"), and the plan does not act on such files. Such a file is never acted on, and
        is no kept copy that makes acting on the group's others safe."""
        return (f.evidence == "unchecked" and f.path not in g.confirmed
                and not self.act_on_unconfirmed)

    def validate(self, name: str = "plan") -> None:
        """Refuse a plan (edited by hand, or by a page) that could lose a picture: every group
        that acts on a file keeps another one, nothing protected is acted on, no file is in two
        groups or kept and acted on at once."""
        seen: set[str] = set()
        for n, g in enumerate(self.groups):
            where = f"{name}: group {n + 1} ({g.centre})"
            if g.decision not in DECISIONS:
                raise PlanError(f"{where}: decision {g.decision!r} is not one of {', '.join(DECISIONS)}")
            by_path = {f.path: f for f in g.files}
            if not all(os.path.isabs(p) for p in by_path):
                raise PlanError(f"{where}: file paths must be absolute")
            odd = [p for p in by_path if os.path.normpath(p) != p or p.startswith("//")]
            if odd:  # "a/link/../b" is not "a/b" on disk when "link" is a link
                raise PlanError(f"{where}: {odd[0]}: file paths must be plain (no '.' or '..' "
                                f"parts, no doubled or trailing '/')")
            if len(by_path) != len(g.files) or seen & by_path.keys():
                raise PlanError(f"{where}: a file is listed twice")
            seen |= by_path.keys()
            if not set(g.keep) <= by_path.keys() or not set(g.act_on) <= by_path.keys():
                raise PlanError(f"{where}: keep and act_on must name files of the group")
            if any(not set(f.carries or ()) <= by_path.keys() for f in g.files):
                raise PlanError(f"{where}: a file's carries must name files of the group")
            if len(set(g.keep)) != len(g.keep) or len(set(g.act_on)) != len(g.act_on):
                raise PlanError(f"{where}: a file is listed twice in keep or act_on")
            if set(g.keep) & set(g.act_on):
                raise PlanError(f"{where}: a file is both kept and acted on")
            if g.decision == "act" and g.act_on and not g.keep:
                raise PlanError(f"{where}: acts on files but keeps none")
            if g.decision == "act" and g.act_on and all(self.doubted(g, by_path[p])
                                                         for p in g.keep):
                raise PlanError(f"{where}: acts on files but keeps only files the picture check "
                                f"did not confirm to be copies ({', '.join(g.keep)}), which may be "
                                f"other pictures: keep a confirmed file, or call the kept one a "
                                f"copy on the review page")
            for p in g.act_on:
                f = by_path[p]
                if f.protected or any(under(p, d) for d in self.protect):
                    raise PlanError(f"{where}: {p} is protected and cannot be acted on")
                if self.doubted(g, f):
                    raise PlanError(f"{where}: {p} was not confirmed by the picture check to be "
                                    f"a copy, and this plan does not act on such files (make it "
                                    f"with --act-on-unconfirmed, or call it a copy on the "
                                    f"review page)")


UNCONFIRMED = "kept: not confirmed by the picture check to be a copy (see --act-on-unconfirmed)"
def linked_kept(f: PlanFile) -> str:
    """Why a plan keeps a file with other indexed names (`PlanFile.aliases`): acting on one name
    would leave a symbolic link pointing at nothing, or free nothing while a hard link holds
    the bytes (a hostile tester's second plan broke the links a first apply had made)."""
    names = ", ".join(f.aliases[:3]) + (f" and {len(f.aliases) - 3} more" if len(f.aliases) > 3
                                        else "")
    return (f"kept: also indexed as {names} (a link to this file, or another name of it): "
            f"acting on one name would break a link or free nothing; act on every name "
            f"yourself if you mean to")


def frames_kept(f: PlanFile) -> str:
    """Why a plan keeps a file of more frames than one (a hostile tester's case, session 31:
    two scans with one cover page, two animations with one title frame, score 1.0): only its
    first frame was compared; the others may be pictures the group's other files lack."""
    what = "pages" if f.format == "tiff" else "frames"
    return (f"kept: holds {f.frames} {what}, and only the first was compared with the group's "
            f"other files (the rest may be pictures they lack)")


COLOUR_READERS = 4  # threads reading files' colours for a plan (decoding releases the GIL)


def _colour_reads(groups: Sequence[Sequence[PlanFile]], workers: int = COLOUR_READERS) -> dict:
    """`simsearch.resave.has_colour` of every file of `groups` (each the usable files of a
    group the rules choose in), read ahead on `workers` threads, identical bytes once:
    `with_colours` reads every such file (a black-and-white copy saved in colour mode is grey
    only in its pixels), and one by one a thousand groups of camera JPEGs took about a minute
    (a reduced decode each). Files changed since indexing are not among them (`problem`):
    their catalog hash no longer says what they hold, so it must not stand for another file."""
    from concurrent.futures import ThreadPoolExecutor

    from simsearch.resave import has_colour
    wanted = [f for files in groups for f in files]
    by_content = {f.sha256 or f.path: f.path for f in reversed(wanted)}  # (the first path)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        read = dict(zip(by_content, pool.map(has_colour, by_content.values())))
    return {f.path: read[f.sha256 or f.path] for f in wanted}


def make_plan(groups, rules: Sequence[KeepRule], protect: Sequence[str] = (),
              index: str | None = None, threshold: float | None = None,
              act_on_unconfirmed: bool = False) -> Plan:
    """A plan for dedupe groups (simsearch.dedupe.Group): in each, the rules' best file and
    every protected file are kept, the others acted on. A file the picture check could not
    confirm to be a copy (evidence "unchecked": grouped on its score alone, and different plain
    pictures can score that high) is kept too, and the rules choose among the others, unless
    `act_on_unconfirmed`. A file of more frames than one is kept beside the rules' choice
    unless a kept file has its bytes (`frames_kept`), whatever `act_on_unconfirmed`."""
    protect = [os.path.abspath(os.path.expanduser(d)) for d in protect]
    parts = []  # (group, its files, those held as not confirmed, those the rules choose in)
    for g in groups:
        files = [file_facts(m, protect) for m in g.members]
        held = set() if act_on_unconfirmed else {
            f.path for f in files if f.evidence == "unchecked" and not f.problem}
        parts.append((g, files, held, [f for f in files if not f.problem and f.path not in held]))
    colours = (_colour_reads([usable for *_, usable in parts  # (as `with_colours` reads)
                              if 2 <= len(usable) <= BAND_GROUP])
               if lossless_first(rules) else {})
    out = []
    for g, files, held, usable in parts:
        if len(usable) < 2:
            reasons = {f.path: f.problem for f in files}
            files = [replace(f, reason=reasons[f.path] or (
                UNCONFIRMED if f.path in held else
                "kept: the group's other files are not confirmed by the picture check" if held
                else "kept: the group has no other usable file")) for f in files]
            out.append(PlanGroup(g.kind, g.centre, float(g.min_score), files,
                                 keep=[f.path for f in files if not f.problem], act_on=[],
                                 decision="keep-all", exact=[list(s) for s in g.exact]))
            continue
        if any(r.name == "largest" for r in rules):
            usable = with_corners(with_bars(with_bands(usable)))
        if any(r.name == "source" for r in rules):
            usable = with_resaves(usable)
        if lossless_first(rules):
            usable = with_decodes(with_colours(usable, read=colours.__getitem__))
        best, rest = choose(usable, rules)
        chosen = {best.path: best, **{f.path: f for f in rest}}
        also = set()  # files kept beside the rules' choice (kept_too: finer, a band's content)
        bare = False  # whether one file without the kept file's band is kept (kept_too)
        coloured = False  # whether one file not grey is kept beside a kept grey one (kept_too)
        # the files kept beside the rules' choice so far, and the protected ones (kept_too)
        beside = [f for path, f in chosen.items() if path != best.path and f.protected]
        # a file with more frames is acted on only with a twin kept (the best, a protected one)
        kept_bytes = {best.sha256} | {f.sha256 for f in chosen.values() if f.protected}
        for path, f in chosen.items():
            if f.protected:
                chosen[path] = replace(f, reason="kept: protected (" + ", ".join(
                    d for d in protect if under(path, d)) + ")" + (
                    "; also " + best.reason if path == best.path else ""))
            elif path != best.path and f.frames > 1 and f.sha256 not in kept_bytes:
                chosen[path] = replace(f, reason=frames_kept(f))
                also.add(path)
                beside.append(f)
                kept_bytes.add(f.sha256)
            elif path != best.path and f.aliases:
                chosen[path] = replace(f, reason=linked_kept(f))
                also.add(path)
                beside.append(f)
            elif path != best.path and (
                    why := kept_too(best, f, bare, coloured, beside)) is not None:
                chosen[path] = replace(f, reason=why)
                also.add(path)
                beside.append(f)
                bare = bare or adds_bars(f, best, BAND)
                coloured = coloured or colour_beside_grey(best, f)
        files = [chosen.get(f.path, replace(f, reason=(
            UNCONFIRMED + ("; also protected" if f.protected else "")) if f.path in held
            else f.problem)) for f in files]
        # the rules' choice first: the file that links point to
        keep = [best.path] + [f.path for f in files if (f.protected or f.path in held
                                                        or f.path in also)
                              and not f.problem and f.path != best.path]
        act_on = [f.path for f in files if f.path in chosen and f.path not in keep]
        out.append(PlanGroup(g.kind, g.centre, float(g.min_score), files, keep, act_on,
                             exact=[list(s) for s in g.exact]))
    plan = Plan(out, keep_rules=[str(r) for r in rules], protect=protect, index=index,
                threshold=threshold, act_on_unconfirmed=act_on_unconfirmed,
                created=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
    plan.validate()
    return plan


_FILE_FIELDS = {f.name for f in fields(PlanFile)}
_FILE_NEEDED = {f.name for f in fields(PlanFile) if f.default is MISSING}


def _plan_file(f, where: str) -> PlanFile:
    """One file entry of a plan as read from JSON, or a PlanError naming the entry and what is
    wrong with it."""
    if not isinstance(f, dict):
        raise PlanError(f"{where}: not a file entry ({type(f).__name__})")
    where = f"{where} ({f.get('path')})" if isinstance(f.get("path"), str) else where
    missing = sorted(_FILE_NEEDED - set(f))
    unknown = sorted(set(f) - _FILE_FIELDS)
    if missing:
        raise PlanError(f"{where}: missing {', '.join(missing)}")
    if unknown:
        raise PlanError(f"{where}: unknown {', '.join(unknown)} (a plan from another simsearch "
                        f"version? make it again with simsearch dedupe --plan)")
    try:
        texts = {name: _text(f.get(name, ""), name) for name in _FILE_TEXTS}
        if not texts["path"]:
            raise ValueError("path is empty")
        if texts["evidence"] and texts["evidence"] not in EVIDENCE:
            raise ValueError(f"evidence {texts['evidence']!r} is not one of "
                             f"{', '.join(sorted(EVIDENCE))}")
        return PlanFile(**{**f, **texts, "mtime_ns": _whole(f["mtime_ns"], "mtime_ns"),
                           "size": _whole(f["size"], "size"), "width": _whole(f["width"], "width"),
                           "height": _whole(f["height"], "height"),
                           "score": _number(f.get("score", 1.0), "score") or 0.0,
                           "protected": bool(_flag(f.get("protected", False), "protected")),
                           "picture": _picture(f.get("picture")),
                           "extent": _extent(f.get("extent")),
                           "band": _shares(f.get("band"), "band", 2),
                           "bars": _shares(f.get("bars"), "bars", 8, 0.5),
                           "corners": _shares(f.get("corners"), "corners", 8),
                           "carries": _paths(f.get("carries"), "carries"),
                           "decodes": _paths(f.get("decodes"), "decodes"),
                           "frames": _count(f.get("frames", 1), "frames"),
                           "links": _count(f.get("links", 1), "links"),
                           "lossless": _flag(f.get("lossless"), "lossless"),
                           "colour": _flag(f.get("colour"), "colour"),
                           "chroma": _chroma(f.get("chroma")),
                           "tones": _tones(f.get("tones")),
                           "aliases": _paths(f.get("aliases", []), "aliases")})
    except (TypeError, ValueError) as e:
        raise PlanError(f"{where}: {e}") from None


_FILE_TEXTS = ("path", "sha256", "format", "date", "date_source", "problem", "evidence", "reason")
# simsearch.dedupe.EVIDENCE's words (a test keeps them equal; importing dedupe loads faiss)
EVIDENCE = ("centre", "identical", "score", "checked", "unchecked")


def _text(value, name: str) -> str:
    """A text field of a plan (a path, a hash, a reason...), or a ValueError naming it; no
    text holds a NUL, which no path can."""
    if not isinstance(value, str) or "\0" in value:
        raise ValueError(f"{name} is not text: {value!r:.60}")
    return value


def _real(value, name: str) -> float:
    """A number a plan must give (not null), or a ValueError naming the field."""
    if value is None:
        raise ValueError(f"{name} is not a number: null")
    return _number(value, name)


def _list(value, name: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{name} is not a list: {value!r:.60}")
    return value


def _texts(value, name: str) -> list[str]:
    """A list of text read from a plan (paths, rules), or a ValueError naming the field."""
    return [_text(v, name) for v in _list(value, name)]


def _not_a_group(value):
    raise ValueError(f"a group is not an object: {value!r:.60}")


def _whole(value, name: str) -> int:
    """A whole number of at least 0 read from a plan (a size, a time: `mtime_ns` is written as
    text, since it needs more digits than JavaScript keeps), or a ValueError naming it."""
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise ValueError(f"{name} is not a whole number from 0 to 2**63: {value!r:.40}")
    return value


def _chroma(value, name: str = "chroma") -> float | None:
    chroma = _number(value, name)
    if chroma is not None and not 0 <= chroma <= 255:
        raise ValueError(f"{name}: {value!r} is not a number from 0 to 255")
    return chroma


def _tones(value) -> tuple[float, float, float] | None:
    """A file's (chroma, variety, spots), or None."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3 or None in value:
        raise ValueError(f"tones: {value!r:.60} is not three numbers")
    spots = _number(value[2], "tones")
    if not 0 <= spots <= 1:
        raise ValueError(f"tones: {value[2]!r} is not a share from 0 to 1")
    return _chroma(value[0], "tones"), _chroma(value[1], "tones"), spots


def _flag(value, name: str) -> bool | None:
    """True, False or None read from a plan, or a ValueError naming the field."""
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{name} is not true, false or null: {value!r}")
    return value


def _count(value, name: str) -> int:
    """A whole number of at least 1 read from a plan, or a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} is not a whole number of at least 1: {value!r}")
    return value


def _paths(value, name: str) -> tuple[str, ...] | None:
    """A list of paths read from a plan (None stays None), or a ValueError naming the field."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"{name}: {value!r} is not a list of paths")
    return tuple(value)


def _extent(value) -> float | None:
    extent = _number(value, "extent")
    if extent is not None and not 0 <= extent < float("inf"):  # 0: none of the centre's
        raise ValueError(f"extent: {value!r} is not a number of 0 or more")  # keypoints in it
    return extent


def _shares(value, name: str, count: int, top: float = 1.0) -> tuple[float, ...] | None:
    """A plan file's `band` (two), `bars` (eight, at most one half) or `corners` (eight) as
    read from JSON: `count` shares from 0 to `top`, or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != count or None in value or not all(
            0 <= _number(v, name) <= top for v in value):
        words = {2: "two", 8: "eight"}[count] + " shares" + (
            " of at most one half" if top == 0.5 else "")
        raise ValueError(f"{name}: {value!r} is not {words}")
    return tuple(float(v) for v in value)


def _picture(value) -> tuple[float, float, float, float] | None:
    """A plan file's `picture` as read from JSON: four numbers, or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 4 or None in value:
        raise ValueError(f"picture: {value!r} is not four numbers")
    return tuple(_number(v, "picture") for v in value)


def _number(value, name: str) -> float | None:
    """A number of a plan file as read from JSON (its `extent`, its `picture`'s four): a
    number, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not abs(value) < float("inf"):  # NaN and infinities too
        raise ValueError(f"{name}: {value!r} is not a number")
    return float(value)


def _file_dict(f: PlanFile) -> dict:
    # nanosecond mtimes pass 2**53: as a string, so that the page's JavaScript keeps every digit;
    # `carries`, `decodes` and `tones` only where they were read, so that a plan without them
    # reads as before
    out = {**asdict(f), "mtime_ns": str(f.mtime_ns)}
    for name in ("carries", "decodes", "tones"):
        if out[name] is None:
            del out[name]
    if f.tones is not None:
        out["tones"] = list(f.tones)
    if f.links == 1:
        del out["links"]
    if not f.aliases:
        del out["aliases"]
    return out


