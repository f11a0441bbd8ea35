"""The `simsearch eval` report as text a person can read: every figure in the table has its
unit, every `-` its footnote, each baseline's threshold is in Hamming distance, and the
mistakes behind the figures are listed. Returns lines; the CLI prints them."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from simsearch.mistakes import FileRef, Mistakes
from simsearch.scorecard import EvalReport

__all__ = ["eval_lines"]


def eval_lines(report: EvalReport, root: Path, show: int,
               show_path: Callable[[str], str] = str) -> list[str]:
    """The eval report as lines of text: setup, look-alike originals, the table with its
    footnotes, intervals and warnings, Recall@1 per edit, and the first `show` mistakes of
    each kind. `show_path` makes a path printable (the CLI escapes control characters)."""
    out: list[str] = []
    fam = report.families
    name_of = functools.partial(_short, root=root, show_path=show_path)
    out.append(f"{report.n_queries} edited copies of {report.n_originals} originals"
               + (f" and {report.n_references - report.n_originals} distractors"
                  if report.n_references > report.n_originals else "")
               + f" (model: {report.model}, dedupe linkage {report.linkage})")
    how = ("counted as different pictures (--originals-distinct)" if report.originals_distinct
           else "pairs across them count neither right nor wrong (--originals-distinct counts "
                "them as different pictures)")
    if fam.sets:
        out.append(f"\nOriginals that already look alike (same content, pHash, or a model "
                   f"score >= {fam.model_bar:.3f}): {len(fam.sets)} sets, {fam.n_files} files; "
                   f"{how}")
        for i, f in enumerate(fam.sets, 1):
            links = "; ".join(_links_text(f.links))
            out.append(f"  {i}. " + ", ".join(name_of(fam.paths[m]) for m in f.members)
                       + f"  ({links})")
        aside, plain = report.set_aside, report.as_distinct
        if aside and not report.originals_distinct:
            out.append(f"  set aside: {aside['dedupe_pairs']} dedupe pairs across versions; "
                       f"{aside['search_top_hits']} copies whose top hit was another version "
                       f"(counted as found)")
        if plain:
            out.append(f"  counted as distinct pictures instead: uAP {plain['uap']:.3f}, R@1 "
                       f"{plain['recall_at_1']:.3f}, dedupe P {plain['precision']:.3f}, "
                       f"R {plain['recall']:.3f}")
    else:
        views = ", ".join(v for v in fam.views if v != "model score")
        out.append(f"\nOriginals that already look alike: none (by {views}, or a model score "
                   f">= {fam.model_bar:.3f})")
    if fam.unconfirmed:
        n = len(fam.unconfirmed)
        out.append(f"The model also scores {n} {'pair' if n == 1 else 'pairs'} of originals at or above "
                   f"its dedupe threshold but below {fam.model_bar:.3f} that neither content nor "
                   f"pHash links; they count as different pictures (versions of one, or the "
                   f"model's own false pairs: look at them):")
        for ln in sorted(fam.unconfirmed, key=lambda ln: -ln.value)[:max(show, 1)]:
            out.append(f"  {ln.value:.4f}  {name_of(fam.paths[ln.a])}  +  {name_of(fam.paths[ln.b])}")

    rows = [("simsearch", report.metrics)] + list(report.baselines.items())
    target = f"P>={report.target_precision:g} at"
    out.append(f"\n{'':<10} {'uAP':>6} {'R@1':>6} {'dedupe P':>9} {'R':>6} {'F1':>6} "
               f"{'threshold':>11}  {target:>12} {'R':>6}")
    notes = []
    for name, m in rows:
        cal = m.calibrated
        there = (f"{_threshold_text(cal.threshold, cal.unit):>12} {cal.recall:>6.3f}" if cal
                 else f"{'-':>12} {'-':>6}")
        if cal is None:
            notes.append(f"  {name}: {m.calibration_error}")
        out.append(f"{name:<10} {m.uap:>6.3f} {m.recall_at_1:>6.3f} {m.dedupe.precision:>9.3f} "
                   f"{m.dedupe.recall:>6.3f} {m.dedupe.f1:>6.3f} "
                   f"{_threshold_text(m.dedupe.threshold, m.dedupe.unit):>11}  {there}")
    out.append(f"threshold: where dedupe was scored (a score: score >= it; Hamming<=d: at most "
               f"d of 64 bits apart); {target}: the most lenient threshold at which dedupe "
               f"precision is at least {report.target_precision:g}, R the recall there"
               + (f" (with the picture check, none below {report.calibration_floor:g}, the "
                  f"model's own, was tried: each step lower reads more files)"
                  if report.calibration_floor is not None else ""))
    if notes:
        out.append("- : no such threshold\n" + "\n".join(notes))
    plan = report.plan
    if plan is not None:
        out.append(f"the default plan (dedupe --plan, default keep rules) on simsearch's groups: "
                   f"acts on {plan['acted_on']} files: {plan['copies_acted_on']} copies of a file "
                   f"it keeps, {plan['versions_acted_on']} versions of one (look-alike "
                   f"originals), {plan['not_copies_acted_on']} other pictures (each a picture "
                   f"lost if applied); keeps {plan['kept_unconfirmed']} files marked \"not "
                   f"confirmed\" (the picture check could not confirm them to be copies; "
                   f"{plan['copies_kept_unconfirmed']} of them are, left for you to review)")
        if plan.get("groups_with_original"):
            edits = ", ".join(f"{e} {n}" for e, n in plan["copy_kept_by_edit"].items())
            out.append(f"  of the {plan['groups_with_original']} groups it acts in that hold an "
                       f"original with a copy of it, it keeps a copy and acts on an original in "
                       f"{plan['copy_kept_over_original']}" + (f" (the copy kept: {edits})"
                                                               if edits else "")
                       + "; the keep rules cannot tell which file is the original (README, "
                         "Before you apply)")
    iv, boot = report.intervals, report.bootstrap
    if iv:
        out.append(f"95% intervals for simsearch (bootstrap over the {report.n_originals} "
                   f"originals, {boot['rounds']} draws, seed {boot['seed']}): "
                   + ", ".join(f"{label} {iv[key].low:.3f}-{iv[key].high:.3f}" for key, label in
                               (("uap", "uAP"), ("recall_at_1", "R@1"),
                                ("precision", "dedupe P"), ("recall", "R"))))
    for warning in report.warnings:
        out.append(f"warning: {warning}")

    out.append("\nRecall@1 per edit")
    out.append(f"{'edit':<12}" + "".join(f"{name:>10}" for name, _ in rows))
    for edit in report.metrics.per_edit:
        out.append(f"{edit:<12}" + "".join(f"{m.per_edit.get(edit, 0):>10.3f}" for _, m in rows))
    return out + _mistake_lines(report.mistakes, name_of, show)


def _mistake_lines(mistakes: Mistakes, name_of: Callable[[str], str], show: int) -> list[str]:
    out: list[str] = []
    wrong = mistakes.false_pairs
    more = "; --show-mistakes N for more, --json for all" if show else ""
    out.append(f"\nFalse pairs (simsearch dedupe): {len(wrong)}"
               + (f", the {min(show, len(wrong))} highest scores{more}" if wrong and show else ""))
    for p in wrong[:show]:
        out.append(f"  {p.score:.4f}  {_ref_text(p.a, name_of)}  +  {_ref_text(p.b, name_of)}")
    for stage, what in (("search", "top hit"), ("dedupe", "grouped with")):
        missed = [m for m in mistakes.missed if m.stage == stage]
        out.append(f"Copies missed by {stage}: {len(missed)}"
                   + (f", the {min(show, len(missed))} lowest scores to their original{more}"
                      if missed and show else ""))
        for m in missed[:show]:
            found = ("in no group" if m.found is None
                     else f"{what} {_ref_text(m.found, name_of)} {m.found_score:.4f}")
            out.append(f"  {m.score:.4f}  {_ref_text(m.copy, name_of)}; {found}")
    return out


def _threshold_text(value, unit: str) -> str:
    return f"Hamming<={int(value)}" if unit == "hamming" else f"{value:.4f}"


def _links_text(links) -> list[str]:
    """What joined a set of originals, one phrase per view: "model score 0.8612-0.9310"."""
    out = []
    for view, label, fmt in (("same content", "same content", None),
                             ("model score", "model score", "{:.4f}"),
                             ("phash", "pHash distance", "{:.0f}")):
        values = sorted(ln.value for ln in links if ln.view == view)
        if not values:
            continue
        if fmt is None:
            out.append(label)
        else:
            span = fmt.format(values[0]) + ("" if values[0] == values[-1]
                                            else "-" + fmt.format(values[-1]))
            out.append(f"{label} {span}")
    return out


def _short(path: str, root: Path, show_path: Callable[[str], str]) -> str:
    """A path relative to the originals folder when it is inside it."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        rel = path
    return show_path(path if rel.startswith("..") else rel)


def _ref_text(ref: FileRef, name_of: Callable[[str], str]) -> str:
    if ref.kind == "copy":
        return f"copy of {name_of(ref.original)} ({ref.edit})"
    return name_of(ref.path) + (" (distractor)" if ref.kind == "distractor" else "")
