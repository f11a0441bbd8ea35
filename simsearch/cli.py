"""The `simsearch` command: parse, call the library, print. Nothing heavy is imported at module
level, so `simsearch --help` starts fast; each command imports what it needs."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
import unicodedata
from pathlib import Path

import click

from simsearch.config import (BACKBONES, BF16_MODES, LOSSES, MINER_STRATEGIES, VIEW_RECIPE_NAMES,
                              TrainConfig)
from simsearch.errors import SimsearchError


def _index_option(f):
    return click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar="SIMSEARCH_INDEX", show_envvar=True, default=None,
                        help="Index folder.  [default: indexes/default]")(f)


def _model_option(f, text="Model file (.onnx/.safetensors) or folder; default: the model the "
                         "index was built with, else the shipped default model."):
    return click.option("--model", "model", default=None, metavar="PATH", help=text)(f)


def _eval_model_option(f):
    return _model_option(f, "Model file (.onnx/.safetensors) or folder to evaluate.  "
                            "[default: the shipped default model]")


def _linkage_option(text: str):
    # the names of simsearch.dedupe.LINKAGES, repeated so that --help need not import numpy
    return click.option("--linkage", type=click.Choice(["centre", "complete"]), default="centre",
                        show_default=True, help=text)


def _check_option(f):
    return click.option("--check/--no-check", "check", default=True, show_default=True,
                        help="Look at the pictures of the pairs the score alone leaves in doubt "
                             "(below 0.95): two pictures that share too few local features in "
                             "one layout are different pictures and are not grouped; plain "
                             "pictures are lined up one inside the other instead, at any score: "
                             "a pair that lines up badly is two different pictures, one that "
                             "lines up only in part (or a smooth gradient, or a file that cannot "
                             "be read) must reach --no-check's threshold and stays unconfirmed. "
                             "Reads the files of every pair scoring at or above the threshold; "
                             "--no-check groups on scores alone (faster, less precise, its own "
                             "calibrated threshold).")(f)


def _threshold_option(text: str):
    def reject_nan(ctx, param, value):
        if value is not None and value != value:  # FloatRange lets nan through
            raise click.BadParameter("must be a number between -1 and 1, not nan")
        return value
    return click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
                        callback=reject_nan, help=text)


def _device_option(f):
    return click.option("--device", default=None, envvar="SIMSEARCH_DEVICE", show_envvar=True,
                        metavar="auto|cpu|cuda[:N]",
                        help="Where the network runs: auto takes a GPU when ONNX Runtime can use "
                             "one (onnxruntime-gpu).  [default: auto]")(f)


def _precision_option(f):
    return click.option("--precision", type=click.Choice(["auto", "fp32", "int8"],
                                                         case_sensitive=False), default=None,
                        help="How a CPU runs the network (its numbers: not --target-"
                             "precision): auto takes the model's int8 file "
                             "where this CPU runs it fast and correctly (simsearch check says "
                             "which file); a GPU always runs fp32.  [default: "
                             "$SIMSEARCH_PRECISION, else auto]")(f)


def _quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Machine-readable JSON on stdout.")(f)


def _keep_options(f):
    f = click.option("--act-on-unconfirmed", "act_on_unconfirmed", is_flag=True, default=False,
                     help="Let the plan act on files the picture check could not confirm to be "
                          "copies (marked \"not confirmed\"); by default they are kept.")(f)
    f = click.option("--protect", "protect", multiple=True, metavar="DIR",
                     type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Files under DIR are always kept and never touched (repeatable; DIR "
                          "must exist: a misspelt folder would protect nothing).")(f)
    return click.option("--keep", "keep", multiple=True, metavar="RULE",
                        help="Which copy of a group to keep, as ordered rules: largest (the most "
                             "pixels of the picture, as the picture check maps it; else the "
                             "canvas), "
                             "biggest (bytes), oldest, newest (EXIF capture date, else mtime), "
                             "format=raw,png,tiff,heic,jpeg (raw: any camera RAW; or dng, nef, "
                             "...), path=DIR, source (a JPEG over files saved again from its "
                             "pixels: a finer or PNG re-save, a flipped, quarter-turned or grey "
                             "copy; not in the default). Repeatable; the default rules not "
                             "named follow "
                             "yours; of files that tie, one named as a "
                             "copy of another ('photo (1).jpg' beside 'photo.jpg') goes, then "
                             "path order decides.  [default: largest,biggest,oldest]")(f)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SimsearchError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="simsearch")
def main():
    """Find similar images and near-duplicates in your photo folders, offline.

    \b
      simsearch index ~/Pictures        ingest a folder (recursive, incremental)
      simsearch query photo.jpg -k 10   the 10 most similar indexed images
      simsearch dedupe                  groups of exact and near-duplicate images

    \b
    Environment: SIMSEARCH_INDEX (the index folder), SIMSEARCH_PRECISION (auto, fp32 or
    int8, as --precision: auto runs int8 where this CPU runs it fast and correctly; simsearch
    check says which file runs), SIMSEARCH_DEVICE (auto, cpu, cuda, cuda:N), SIMSEARCH_CACHE
    (converted models).
    """


@main.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_index_option
@_model_option
@click.option("--rebuild", is_flag=True,
              help="Drop every stored vector and embed all files again (e.g. after a model change). "
                   "Your image files are never touched.")
@click.option("--workers", type=click.IntRange(1, 1024), default=None,
              help="Decoding threads; with --ray, Ray workers.  [default: CPU count]")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Hash, decode and embed on a Ray cluster (auto: the one `ray start` began "
                   "here; or host:port); this process plans and commits. Needs "
                   "pip install 'simsearch[ray]' and the photos and model at the same paths on "
                   "every node.")
@click.option("--ann", default=None, metavar="auto|flat|hnsw|ivf|ivfsq|ivfpq|FACTORY",
              help="How vectors are searched: auto (exact up to 500k images, then IVF "
                   "by count and memory), a kind, or a FAISS factory string.  [default: what "
                   "the index recorded, auto]")
@_device_option
@_precision_option
@_quiet_option
@_json_option
def index_cmd(paths, index_dir, model, rebuild, workers, batch_size, ray_address, ann, device,
              precision, quiet, as_json):
    """Ingest image files and folders into the index (recursive, incremental).

    Unchanged files (same size and mtime) are skipped, changed files re-embedded, files gone
    from disk under PATHS removed, and a moved or renamed file keeps its stored vector.
    """
    from simsearch.index import open_index

    missing = [_missing(p) for p in paths]
    if any(missing):  # a typo, or a link to a drive that is not there: say so, change nothing
        raise click.BadParameter("; ".join(m for m in missing if m) + "; nothing was indexed",
                                 param_hint="PATHS")
    if ray_address:  # an address nothing answers on: refused before an index folder is made
        try:
            from simsearch.cluster import check_address
        except ModuleNotFoundError as e:
            if e.name != "ray":
                raise
        else:
            check_address(ray_address)
    index = open_index(index_dir, model=model, create=True, device=device, precision=precision)
    with _Progress("indexing", quiet) as progress:
        report = index.add_paths(paths, progress=progress, workers=workers, batch_size=batch_size,
                                 rebuild=rebuild, ray=ray_address, ann=ann)
    for s in report.skipped:
        click.echo(f"skipped {_show(s.path)}: {_show(s.reason)}", err=True)
    for fmt, install in report.missing_libraries.items():
        n = sum(s.reason.startswith(f"{fmt} needs a library") for s in report.skipped)
        click.echo(f"{n} {fmt} files skipped: the library that decodes them is not installed; "
                   f"install it with: {install}", err=True)
    if report.other_files:
        click.echo(f"note: this run embedded with {index.embedder.model.onnx_path.name}, the index "
                   f"also holds vectors made with {', '.join(report.other_files)} (another "
                   f"precision or machine): the two agree to a cosine of about 0.998, so scores "
                   f"between them may move by that much; to keep one, run with the same "
                   f"--precision everywhere, or re-embed all with --rebuild", err=True)
    for folder, n in report.kept.items():
        click.echo(f"kept {n} indexed images under {_show(folder)}: the folder is empty or "
                   f"unreadable now (a drive not mounted?); to forget them, index its parent "
                   f"folder", err=True)
    seen = report.added + report.updated + report.unchanged + report.moved + len(report.skipped)
    if seen == 0:
        from simsearch.formats import FORMATS
        suffixes = " ".join(s for f in FORMATS for s in f.suffixes)
        click.echo(f"no image files ({suffixes}) found under "
                   + ", ".join(_show(str(p)) for p in paths), err=True)
    if as_json:
        click.echo(json.dumps({"index": str(index.folder.resolve()), **report.to_dict()}))
    else:
        click.echo(f"{report.summary()} -> {index.folder} ({index.count()} images)")


@main.command("query")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("-k", "k", type=click.IntRange(1, 10000), default=10, show_default=True,
              help="Results per query image.")
@click.option("--check/--no-check", "check", default=True, show_default=True,
              help="When the best match scores below 0.95 and others are within 0.1 of it, "
                   "look at the pictures (the query and up to 5 matches) and move a copy of "
                   "the query that a look-alike outscored to the top; scores are unchanged. "
                   "--no-check ranks by score alone, reading no indexed file.")
@_index_option
@_model_option
@_device_option
@_precision_option
@_json_option
def query_cmd(images, k, check, index_dir, model, device, precision, as_json):
    """The K indexed images most similar to each IMAGE, best first, with scores.

    A score is the cosine similarity of the two vectors, adjusted against the model's
    background set where it has one (pictures that resemble everything score a little lower,
    distinctive ones a little higher, by a bounded amount: see docs/how-it-works.md, Scores).
    A query image need not be in the index. Exit status 1 if any query image was unreadable.
    """
    from simsearch.index import open_index

    index = open_index(index_dir, model=model, device=device, precision=precision)
    rebuilding = index.unfinished_rebuild()
    if rebuilding:
        _warn_rebuild(rebuilding, index_dir)
    if index.empty():
        click.echo(f"{index.folder} holds no images yet; add some with: simsearch index PHOTOS"
                   + ("" if index_dir is None else f" --index {index_dir}"), err=True)
    results = index.search([os.fspath(p) for p in images], k=k, check=check)
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            click.echo(f"error: {_show(result.query)}: {result.error}", err=True)
            if as_json:
                click.echo(json.dumps({"query": result.query, "error": result.error}))
            continue
        if as_json:
            click.echo(json.dumps({"query": result.query,
                                   "results": [m.to_dict() for m in result.matches]}))
        else:
            click.echo(f"{_show(result.query)}")
            for rank, m in enumerate(result.matches, 1):
                moved = "" if m.checked is None else \
                    f"  (moved first: shares {m.checked} local features with the query)"
                click.echo(f"  {rank:>3}  {m.score:.4f}  {_show(m.path)}{moved}")
    if failed:
        sys.exit(1)


@main.command("dedupe")
@_threshold_option("Score (as in query) at or above which two images are near-duplicates.  "
                   "[default: the model's calibrated threshold]")
@_linkage_option("centre: each group is an image and its near-duplicates; complete: every "
                 "pair in a group is a near-duplicate (stricter, smaller groups).")
@_check_option
@_keep_options
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the keep rules' plan to this file, for simsearch review "
                                 "--plan and simsearch apply.")
@_index_option
@_model_option
@_quiet_option
@_json_option
def dedupe_cmd(threshold, linkage, check, keep, protect, act_on_unconfirmed, plan_path, index_dir,
               model, quiet, as_json):
    """Groups of exact duplicates (same bytes) and near-duplicates (score >= threshold).

    Works from stored vectors, then looks at the pictures of the pairs the score alone leaves
    in doubt (below 0.95): two pictures that share too few local features in one layout are not
    grouped; pictures too plain for local features are lined up one inside the other instead,
    at any score: a pair that lines up badly is not grouped, one that lines up only in part
    must reach --no-check's threshold and stays unconfirmed (--no-check: scores alone, no file
    read). Groups never chain: with the default centre linkage every
    member scores at least the threshold against the group's centre image; with complete
    linkage every pair does. Each file shows its score to the group's centre; files with
    identical content are marked inside their group. Nothing is deleted: with --keep, --protect
    or --plan each group also shows which file the keep rules keep and why, and --plan writes
    that plan for simsearch review and simsearch apply.
    """
    from simsearch.index import open_index
    from simsearch.plan import writable_plan_path
    from simsearch.keeprules import parse_rules

    parse_rules(keep)  # a misspelt rule is refused before the work, not after it
    if plan_path is not None:
        writable_plan_path(plan_path)
    index = open_index(index_dir, model=model)
    rebuilding = index.unfinished_rebuild()
    if rebuilding:
        _warn_rebuild(rebuilding, index_dir)
    with _Progress("searching", quiet) as progress, \
            _Progress("checking pairs", quiet) as check_progress, _term_stops():
        report = index.duplicates(threshold, linkage, progress=progress, check=check,
                                  check_progress=check_progress,
                                  check_notice=None if quiet else _many_pairs)
    _tell_check(report, quiet or as_json)
    _tell_threshold_otherwise(index, report, check, index_dir)
    kept = index.threshold() if report.threshold_source == "calibrated" else None
    plan = (_make_plan(index, report, keep, protect, act_on_unconfirmed)
            if plan_path or keep or protect or act_on_unconfirmed else None)
    if plan_path is not None:
        plan.save(plan_path)
    if as_json:
        data = {**report.to_dict(), "threshold_calibration": kept}
        if plan is not None:
            data["plan"] = None if plan_path is None else str(plan_path)
            for g, p in zip(data["groups"], plan.groups):
                g.update(decision=p.decision, keep=p.keep, act_on=p.act_on,
                         reasons={f.path: f.reason for f in p.files})
        click.echo(json.dumps(data))
        return
    from simsearch.plan import UNCONFIRMED  # a plan's reason for keeping such a file says so

    shown = _shows(m.path for g in report.groups for m in g.members)  # names alike told apart
    for number, g in enumerate(report.groups, 1):
        labels = {path: chr(ord("A") + i % 26) for i, paths in enumerate(g.exact) for path in paths}
        click.echo(f"group {number}: {g.kind}, {len(g.members)} files, centre {_show(g.centre)}")
        chosen = plan.groups[number - 1] if plan is not None else None
        reasons = {f.path: f.reason for f in chosen.files} if chosen else {}
        for m in g.members:
            tag = f"[{labels[m.path]}]" if m.path in labels else "   "
            mark = "" if chosen is None else "act on " if m.path in chosen.act_on else \
                "keep   " if m.path in chosen.keep else "leave  "
            why = f"  ({_show(reasons[m.path])})" if reasons.get(m.path) else ""
            plain = ("  (not confirmed by the picture check)" if m.evidence == "unchecked"
                     and not reasons.get(m.path, "").startswith(UNCONFIRMED) else "")
            click.echo(f"  {m.score:.4f} {tag} {mark}{shown[m.path]}{why}{plain}")
    near = sum(g.kind == "near" for g in report.groups)
    click.echo(f"{len(report.groups)} groups ({len(report.groups) - near} of identical files, "
               f"{near} with near-duplicates), {sum(len(g.members) for g in report.groups)} files, "
               f"at threshold {report.threshold:.4f} ({_threshold_origin(report, kept)}). Scores "
               f"are to each group's centre (its first file); [A], [B]... mark files with "
               f"identical content.", err=True)
    _tell_unconfirmed(report, acting=plan is not None and plan.act_on_unconfirmed)
    if report.stale:
        click.echo(f"left out {len(report.stale)} files that changed or are gone since they were "
                   f"indexed (e.g. {_show(report.stale[0])}); bring the index up to date with: "
                   f"simsearch index FOLDER" + ("" if index_dir is None else f" --index {index_dir}"),
                   err=True)
    if plan is not None:
        acts = sum(len(g.act_on) for g in plan.groups)
        click.echo(f"plan: act on {acts} files, {_size(plan.reclaimable())} reclaimable"
                   + _linked(plan)
                   + (f"; written to {plan_path}; look at it with: simsearch review --plan "
                      f"{plan_path}; carry it out with: simsearch apply {plan_path} --action trash"
                      if plan_path else "; write it with --plan FILE"), err=True)


def _tell_check(report, quiet: bool) -> None:
    """What the picture check did, on stderr: files it could not read, each with its reason,
    always; the counts unless `quiet`."""
    done = report.check
    if done is None:
        return
    alone = done.get("alone")
    on_score = ("on their score alone" if alone is None
                else f"only when they score {alone} or more, as with --no-check")
    for path, why in done["unreadable"].items():
        click.echo(f"could not check {_show(path)}: {_show(why)}; its pairs are grouped {on_score}",
                   err=True)
    if not quiet and done["checked"]:
        pairs = "pair" if done["checked"] == 1 else "pairs"
        few = done.get("few", 0)
        same = done["checked"] - done["apart"] - done["unjudged"] - few
        held = (f" ({done['held_back']} of them scored less: not grouped)"
                if alone is not None and done["held_back"] else "")
        unsure = done.get("unsure", 0)
        short = (f" ({unsure} of them not closely enough to act on" + (
                 ", or differing somewhere" if done.get("act_disagree") is not None
                 or done.get("plain_disagree") is not None else "") + (
                 ", or in other colours" if done.get("colour_cut") is not None else "")
                 + ": a member whose pair with its centre is one is marked \"not confirmed\")"
                 if unsure else "")
        # which pairs are read (below `below`; with a plain picture, at any score; with local
        # features at or above it, to learn whether they differ somewhere): docs/commands.md
        lines = [f"picture check: looked at {done['checked']} {pairs} the score alone leaves "
                 f"in doubt:",
                 f"  {same} the same picture{short}",
                 f"  {done['apart']} different pictures (not grouped)"] + ([
                 f"  {few} scoring {done['below']} or more with too few local features in "
                 f"common for a copy: grouped on their score, marked \"not confirmed\""]
                 if few else []) + [
                 f"  {done['unjudged']} could not be told (plain pictures that line up only in "
                 f"part, smooth gradients" + (", unreadable files" if done["unreadable"] else "")
                 + f"): grouped {on_score}{held}"]
        if done.get("remembered"):
            lines.append(f"  {done['remembered']} of the {done['checked']} were judged in an "
                         f"earlier run on the same files (kept in the index folder, checked.npz), "
                         f"not read again")
        if done.get("plain"):
            lines.append(f"  {done['plain']} of the pairs counted as the same or as different "
                         f"pictures had a picture too plain for local features: they were judged "
                         f"by lining one picture up inside the other (the same picture when it "
                         f"lines up almost perfectly, different when it lines up badly)")
        click.echo("\n".join(lines), err=True)


def _tell_unconfirmed(report, acting: bool = False) -> None:
    """On stderr: how many grouped files the picture check could not confirm, and what to do."""
    unconfirmed = [p for g in report.groups for p in g.unconfirmed]
    if not unconfirmed:
        return
    files = "file is" if len(unconfirmed) == 1 else "files are"
    click.echo(f"{len(unconfirmed)} {files} marked \"not confirmed by the picture check\": "
               f"plain pictures that line up only in part, smooth gradients or unreadable files, "
               f"grouped on their score alone, or pictures found alike but not closely enough "
               f"to act on, or that differ somewhere (e.g. {_show(unconfirmed[0])}); different "
               f"pictures (clip art, two versions of one drawing) can score this high, so look "
               f"at them before acting on them"
               + ("; this plan acts on them (--act-on-unconfirmed)" if acting else
                  ": a plan keeps them unless --act-on-unconfirmed")
               + ", and simsearch review marks them", err=True)


def _tell_threshold_otherwise(index, report, check: bool, index_dir) -> None:
    """Say so when a threshold kept by eval was passed over, made the other way."""
    if report.threshold_source != "model":
        return
    other = index.threshold_made_otherwise(check)
    if other is None:
        return
    how = "with" if other.get("checked") else "without"
    where = "" if index_dir is None else f" --index {index_dir}"
    click.echo(f"note: the threshold simsearch eval kept on {other.get('date', '?')} "
               f"({other['value']:.4f}) was calibrated {how} the picture check, so this run "
               f"{'with' if check else 'without'} it uses the model's; run with "
               f"{'--check' if other.get('checked') else '--no-check'} to use it, or calibrate "
               f"again with: simsearch eval PHOTOS --save-threshold{where}", err=True)


def _warn_rebuild(folders: list[str], index_dir) -> None:
    click.echo("warning: a --rebuild of this index was stopped before it finished, so it holds "
               "only part of your images; finish it with: simsearch index "
               + " ".join(_show(f) for f in folders)
               + ("" if index_dir is None else f" --index {index_dir}"), err=True)


def _threshold_origin(report, kept: dict | None) -> str:
    """Where a dedupe threshold came from, in words."""
    if report.threshold_source == "command line":
        return "--threshold on the command line"
    if report.threshold_source == "calibrated" and kept:
        measured = ""
        if kept.get("precision") is not None:
            measured = (f": precision {kept['precision']:.3f}, recall {kept['recall']:.3f} "
                        f"on {kept.get('n_originals', '?')} originals")
        return (f"calibrated on your photos on {kept.get('date', '?')} by simsearch eval for "
                f"precision >= {kept.get('precision_target', '?')}{measured}; --threshold "
                f"overrides it")
    return "the model's default"


@main.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .npz file: vectors float32 [n, d] and paths.")
@_index_option
def export_cmd(out, index_dir):
    """Write the stored vectors and their paths to an .npz file."""
    from simsearch.index import open_index

    n = open_index(index_dir).export(out)
    click.echo(f"wrote {n} vectors to {out}")


@main.command("check")
@_index_option
@click.option("--repair", is_flag=True,
              help="Rebuild the derived files (vectors.faiss, manifest.json) from the catalog.")
@_precision_option
@_json_option
def check_cmd(index_dir, repair, precision, as_json):
    """Verify that the catalog, the FAISS vectors and the manifest agree, and say which file of
    the model this machine's CPU runs (--precision, as index and query would run it).

    The catalog is the source of truth; --repair rebuilds what is derived from it. Exit status
    1 when problems remain. Without an index it still says which file of the shipped model
    runs here (exit status 1: no index).
    """
    from simsearch.errors import IndexStoreError
    from simsearch.index import NOT_RECORDED, default_index_dir
    from simsearch.integrity import check_index
    from simsearch.store import Store

    folder = index_dir or default_index_dir()
    if not Store(folder).exists:  # a fresh install: what would run here, and how to begin
        runs = _model_here(None, precision) or {"error": "the shipped model cannot be read"}
        where = "" if index_dir is None else f" --index {index_dir}"
        problem = f"no index at {folder}; create one with: simsearch index PHOTOS{where}"
        if as_json:
            click.echo(json.dumps({"index": str(folder), "images": 0, "ok": False,
                                   "problems": [problem] + (
                                       [f"model: {runs['error']}"] if "error" in runs else []),
                                   "repaired": [], "vectors": None, "warnings": [],
                                   "model": runs}))
        else:
            click.echo(f"problem: model: {runs['error']}" if "error" in runs
                       else _model_line(runs))
            click.echo(f"problem: {problem}")
        sys.exit(1)
    try:
        report = check_index(folder, repair=repair)
    except IndexStoreError as e:  # a folder with a manifest and no catalog, a planted link
        if not as_json:
            raise
        click.echo(json.dumps({"index": str(folder), "images": None, "ok": False,
                               "problems": [str(e)], "repaired": [], "vectors": None,
                               "warnings": [], "model": None}))
        sys.exit(1)
    runs = _model_here(folder, precision) if report.ok else None
    unusable = runs is not None and "error" in runs and "device" not in runs
    if unusable:  # query and index would fail: not ok
        report.problems.append(f"model: {runs['error']}")
    elif runs is not None and "error" not in runs and [f for f in runs["made_with"]
                               if f != runs["file"] and f != NOT_RECORDED]:
        report.warnings.append(
            f"model: the index holds vectors made with {', '.join(runs['made_with'])}, and this "
            f"machine runs {runs['file']}: vectors of two files agree to a cosine of about 0.998, "
            f"so new files score up to that much apart from how the others would (an indexed "
            f"file queried scores 1.0 against itself all the same); keep one with --precision, "
            f"or re-embed all with: simsearch index PHOTOS --rebuild")
    elif runs is not None and "error" in runs:  # the GPU here runs it, in fp32
        report.warnings.append(f"model: on this machine's CPU: {runs['error']}; commands here "
                               f"run the network on {runs['device']}, in fp32")
    if as_json:
        click.echo(json.dumps({"index": report.folder, "images": report.count,
                               "ok": report.ok and not unusable,
                               "problems": report.problems, "repaired": report.repaired,
                               "vectors": {"factory": report.factory,
                                           "recall_at_10": report.recall},
                               "warnings": report.warnings, "model": runs}))
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        for fix in report.repaired:
            click.echo(f"repaired: {fix}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        if report.recall is not None:
            click.echo(f"vectors: {report.factory}, recall@10 {report.recall:.3f} against exact "
                       f"search (measured when built)")
        if runs is not None and "error" not in runs:
            click.echo(_model_line(runs))
        if runs is not None and runs.get("made_with"):
            click.echo(f"vectors made with: {', '.join(runs['made_with'])}")
        where = "" if index_dir is None else f" --index {index_dir}"
        state = ("NOT ok (the model cannot run here as set: see the problem above)" if unusable
                 else "ok" if report.ok else "NOT ok (each problem above says what to run)"
                 if report.fatal or report.repaired else
                 f"NOT ok (run: simsearch check --repair{where})")
        click.echo(f"{report.folder}: {report.count} images, {state}")
    if not report.ok or unusable:
        sys.exit(1)


def _model_line(runs: dict) -> str:
    why = f", {runs['reason']}" if runs["reason"] else ""
    gpu = "" if runs["precision"] == "fp32" else "; a GPU runs fp32"
    return (f"model: {runs['name']} ({runs['id'][:12]}); on a CPU this machine runs "
            f"{runs['file']} ({runs['precision']}{why}{gpu})")


def _model_here(folder, precision: str | None = None) -> dict | None:
    """The model of the index in `folder` (None: the shipped default model, which a new index
    takes) and which of its files this machine's CPU runs at `precision` (`simsearch.models`:
    the precision asked for and CPU flags; a GPU runs fp32), for `check`; None when it cannot
    be told (check says what is wrong), or {"error": why} when the model cannot run here as
    set. Reads metadata only: no network is loaded."""
    from simsearch.errors import ModelError, PrecisionError, SimsearchError
    from simsearch.index import open_index
    from simsearch.models import cpu_has_vnni, cpu_int8_saturates, resolve_device, resolve_model
    made: list[str] = []
    try:
        if folder is None:
            ref = resolve_model(None, precision=precision)
        else:
            index = open_index(folder, device="cpu", precision=precision)
            made = index.made_with()
            ref = index.runtime_model()
    except PrecisionError as e:  # this CPU cannot run the model as set; a GPU here would
        try:
            device = resolve_device(None)
        except ModelError:
            device = "cpu"
        return {"error": str(e), **({"device": device} if device != "cpu" else {})}
    except ModelError as e:  # the model cannot run here (its files)
        return {"error": str(e)}
    except (SimsearchError, OSError):
        return None
    why = ("" if ref.precision == "fp32" else "this CPU has VNNI" if cpu_has_vnni() else
           "7-bit weights: this CPU has no VNNI, where 8-bit ones saturate"
           if cpu_int8_saturates() else "")
    return {"name": ref.name, "id": ref.model_id, "precision": ref.precision,
            "file": ref.onnx_path.name, "reason": why, "made_with": made}


@main.command("serve")
@_index_option
@_model_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@_device_option
@_precision_option
def serve_cmd(index_dir, model, host, port, device, precision):
    """Keep the index loaded and answer queries over HTTP (JSON) until interrupted.

    GET /health; POST /query with {"path": FILE, "k": 10} (JSON) or the image's bytes
    (POST /query?k=10). Answers like query --json.
    """
    from simsearch.index import open_index
    from simsearch.server import serve

    index = open_index(index_dir, model=model, device=device, precision=precision)
    try:
        serve(index, host, port, on_ready=lambda h, p: click.echo(
            f"serving {index.folder} on http://{h}:{p} (Ctrl-C stops)", err=True))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                                   f"choose another with --port")


@main.command("convert")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The ONNX file to write.  [default: WEIGHTS with .onnx, beside it]")
def convert_cmd(weights, out):
    """Export a .safetensors model to the ONNX file that index, query and dedupe run.

    Needs torch (pip install 'simsearch[train]'); the ONNX file then runs without it. The export
    is checked against torch (cosine >= 0.999). An existing file is never overwritten.
    """
    try:
        from simsearch.export import convert
    except ImportError as e:
        raise click.ClickException(f"simsearch convert needs torch ({e}); install it with: "
                                   f"pip install 'simsearch[train]'") from None
    written = convert(weights, out)
    click.echo(f"{written} (use --model {written})")


def _make_plan(index, report, keep, protect, act_on_unconfirmed=False):
    from simsearch.plan import make_plan
    from simsearch.keeprules import parse_rules

    return make_plan(report.groups, parse_rules(keep), protect=[str(p) for p in protect],
                     index=str(index.folder.resolve()), threshold=report.threshold,
                     act_on_unconfirmed=act_on_unconfirmed)


@main.command("review")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default="simsearch-review", show_default=True,
              help="Folder for index.html, its thumbnails and plan.json.")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Show this plan instead of making one from the index.")
@_keep_options
@_threshold_option("Score at or above which two images are near-duplicates.  "
                   "[default: the index's threshold]")
@_linkage_option("Grouping (see simsearch dedupe).")
@_check_option
@_index_option
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Thumbnail threads.  [default: CPU count, at most 8]")
@_quiet_option
def review_cmd(out_dir, plan_path, keep, protect, act_on_unconfirmed, threshold, linkage, check,
               index_dir, workers, quiet):
    """Write a review page: OUT/index.html, one card per duplicate group with every image side
    by side (thumbnails in OUT/thumbs), the keep rules' choice and why.

    Open it in any browser (no server, nothing loaded from the network). Flip a choice there
    (keep another copy, keep all, not duplicates) and press "Save plan"; then carry the plan
    out with: simsearch apply plan.json --action trash. Your image files are only read.
    """
    from simsearch.plan import Plan
    from simsearch.review import review_folder_problem, write_review

    problem = review_folder_problem(out_dir, besides=plan_path)  # before any work, and before
    if problem:                                                   # plan.json is written
        raise click.UsageError(problem)
    if plan_path is not None:
        if act_on_unconfirmed or keep or protect:
            raise click.UsageError("--keep, --protect and --act-on-unconfirmed make a new plan; "
                                   "with --plan the plan's own choices are shown")
        plan = Plan.load(plan_path)
    else:
        from simsearch.index import open_index
        from simsearch.plan import writable_plan_path
        from simsearch.keeprules import parse_rules

        parse_rules(keep)  # refused before the work, not after it
        writable_plan_path(out_dir / "plan.json")
        index = open_index(index_dir)
        with _Progress("checking pairs", quiet) as check_progress, _term_stops():
            report = index.duplicates(threshold, linkage, check=check,
                                      check_progress=check_progress,
                                      check_notice=None if quiet else _many_pairs)
        _tell_check(report, quiet)
        plan = _make_plan(index, report, keep, protect, act_on_unconfirmed)
        out_dir.mkdir(parents=True, exist_ok=True)
        plan.save(out_dir / "plan.json")
    with _Progress("thumbnails", quiet) as progress:
        page = write_review(plan, out_dir, progress=progress, workers=workers,
                            besides=plan_path or out_dir / "plan.json")
    files = sum(len(g.files) for g in plan.groups)
    acts = sum(len(g.act_on) for g in plan.groups)
    click.echo(f"{len(plan.groups)} groups, {files} files; the plan acts on {acts} of them, "
               f"{_size(plan.reclaimable())} reclaimable{_linked(plan)}: open "
               f"{page.resolve().as_uri()}")
    if plan_path is None:
        click.echo(f"the rules' plan is in {out_dir / 'plan.json'}; apply it as it is with: "
                   f"simsearch apply {out_dir / 'plan.json'} --action trash", err=True)


@main.command("apply")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--action", type=click.Choice(["trash", "move", "hardlink", "symlink", "delete"]),
              required=True,
              help="trash: to the desktop trash; move: under --to DIR (by absolute path); "
                   "hardlink/symlink: the duplicate becomes a link to the kept file; delete: "
                   "removed for good (needs --yes-delete; cannot be undone).")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for --action move: new, empty, or one earlier moves made; it is set "
                   "aside (never indexed, nothing in it acted on or kept).")
@click.option("--yes-delete", is_flag=True, help="Confirm --action delete: files are removed "
                                                 "for good, and undo cannot bring them back.")
@click.option("--journal", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Journal folder (what undo reads; running apply again with it resumes an "
                   "interrupted run).  [default: PLAN.journal beside the plan]")
@_index_option
@_quiet_option
@_json_option
def apply_cmd(plan_path, action, to, yes_delete, journal, index_dir, quiet, as_json):
    """Carry out a plan (from simsearch dedupe --plan or the review page's "Save plan").

    Every file is checked first: one that changed since the plan was made (size or content;
    a file only touched is acted on, and undo puts back its time), is protected, is a link, or whose group has no intact kept copy left is skipped
    and reported, never acted on. Every step is written to the journal before it is taken;
    simsearch undo JOURNAL puts every file back. The index forgets trashed, deleted and moved
    files (--to is set aside: never indexed); groups marked "not duplicates" are remembered.
    Exit status 1 when a file the plan acts on was skipped (a file already the kept one under
    another name, with nothing to free, does not count) or the index could not be updated.
    """
    from simsearch.actions import apply, default_journal
    from simsearch.files import sha256
    from simsearch.plan import Plan

    if action == "move" and to is None:
        raise click.UsageError("--action move needs --to DIR")
    if to is not None and action != "move":
        raise click.UsageError("--to is for --action move")
    if action == "delete" and not yes_delete:
        raise click.UsageError("--action delete removes files for good, and undo cannot bring "
                               "them back; add --yes-delete to confirm, or use --action trash")
    plan = Plan.load(plan_path)
    journal = journal or default_journal(plan_path)
    if action == "delete":
        click.echo("delete: files are removed for good; undo will list them as not restorable",
                   err=True)
    held = _not_alike(plan, index_dir or plan.index)
    with _Progress(f"{action}", quiet) as progress:
        report = apply(plan, action, journal, to=to, confirm_delete=yes_delete,
                       plan_id=sha256(plan_path), progress=progress,
                       index=os.path.abspath(index_dir) if index_dir else None,
                       on_wait=_waiting, held=held)
    # moved files are set aside (never indexed again): the index forgets them as trashed ones,
    # at their new paths too (where an earlier simsearch followed them under --to)
    folder = index_dir or plan.index
    index_note = _update_index(folder, forget=report.removed + list(report.moved) + list(
                                   report.moved.values()),
                               not_duplicates=report.not_duplicates,
                               add=report.back + _not_indexed(folder, sorted(
                                   set(report.there) - set(report.back))) if folder else [])
    for path in report.back:
        click.echo(f"left {_show(path)} where you put it back (done by an earlier run, then "
                   f"put back by hand; undo is how to take an apply back)", err=True)
    shown = _shows({f.path for g in plan.groups for f in g.files})  # names alike told apart
    for o in report.skipped:
        click.echo(f"skipped {shown.get(o.path) or _show(o.path)}: {_show(o.detail)}", err=True)
    # files acted on that the picture check did not confirm to be copies of a kept file: grouped
    # on their score alone (it could not judge them), or every file acted on in a group that
    # keeps no confirmed file
    unconfirmed = set()
    for g in plan.groups:
        doubt = {f.path for f in g.files if f.evidence == "unchecked"}
        unconfirmed |= (set(g.act_on) & doubt) if set(g.keep) - doubt else set(g.act_on)
    doubted = [o.path for o in report.done if o.path in unconfirmed]
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "index": index_note, "unconfirmed": doubted}))
        sys.exit(1 if report.left_undone or index_note else 0)
    verb = {"trash": "trashed", "move": "moved", "hardlink": "linked", "symlink": "linked",
            "delete": "deleted"}[action]
    for o in report.done:
        click.echo(f"{verb} {shown.get(o.path) or _show(o.path)}"
                   + (f" -> {_show(o.detail)}" if action != "delete" else ""))
    earlier = f" (and {report.earlier} in an earlier run)" if report.earlier else ""
    where = {"trash": " (in the trash until you empty it)", "move": f" (now under {to})",
             "hardlink": " (the originals are held in the journal until you delete it)",
             "symlink": " (the originals are held in the journal until you delete it)",
             "delete": ""}[action]
    click.echo(f"{len(report.done)} files {verb}{earlier}, {_size(report.freed)}{where}; "
               f"{len(report.skipped)} skipped; {len(report.not_duplicates)} groups remembered "
               f"as not duplicates", err=True)
    if report.linked:
        click.echo(f"{len(report.linked)} of them had another name (a hard link, e.g. "
                   f"{_show(report.linked[0])} has one): their bytes stay on disk under it, "
                   f"not counted as freed", err=True)
    if doubted:
        click.echo(f"{len(doubted)} of them had not been confirmed by the picture check to be "
                   f"copies of the file kept (one or the other joined its group on its score "
                   f"alone; e.g. {_show(doubted[0])})" + (
                       "" if action == "delete" else "; if one is not a copy, undo puts it back"),
                   err=True)
    if index_note:
        click.echo(index_note, err=True)
    if action != "delete":
        click.echo(f"journal: {journal}; undo with: simsearch undo {journal}", err=True)
    if report.left_undone:
        click.echo(f"left as they were: {len(report.left_undone)} of the plan's files (each "
                   f"named above as skipped); exit status 1", err=True)
    if report.left_undone or index_note:  # (index_note: the index could not follow)
        sys.exit(1)


def _waiting() -> None:
    click.echo("waiting for another simsearch apply or undo to finish (one runs at a time, so "
               "that two plans never remove each other's kept copies)", err=True)


@main.command("undo")
@click.argument("journal", type=click.Path(exists=True, path_type=Path))
@_index_option
@_json_option
def undo_cmd(journal, index_dir, as_json):
    """Put back every file an apply changed, from its JOURNAL folder: byte-identical, with its
    name, mtime and mode, whatever state an interrupted apply left. Deleted files cannot come
    back and are listed. The index follows the files back (they are embedded again, those an
    interrupted undo put back too). Exit status 1 when a file could not be restored, or the
    index could not take the files back (it says how to)."""
    from simsearch.actions import undo

    report = undo(journal, on_wait=_waiting)
    folder = index_dir or report.index
    added: list[str] = []
    # files moved back are embedded again, as those back from the trash (an index that
    # followed them under --to, before simsearch set that folder aside, follows them back)
    back = report.reappeared + list(report.moved_back.values()) + _not_indexed(
        folder, report.back_earlier)
    index_note = _update_index(folder, relocate=report.moved_back, add=back, added=added)
    index_failed = bool(index_note)
    if back and not folder:
        index_note = (f"undo does not know which index held the files it brought back "
                      f"(the plan named none; give --index DIR); to index them: simsearch "
                      f"index {_folders_text(back)} --index DIR")
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "index": index_note, "reindexed": added}))
    else:
        for o in report.restored:
            click.echo(f"restored {_show(o.path)}: {_show(o.detail)}")
        for o in report.not_restored:
            click.echo(f"NOT restored {_show(o.path)}: {_show(o.detail)}", err=True)
        click.echo(f"{len(report.restored)} restored, {len(report.not_restored)} not restored",
                   err=True)
        if report.undone_before and not (report.restored or report.not_restored):
            click.echo(f"nothing left to undo: {report.undone_before} steps of this journal "
                       f"were already undone", err=True)
        if added:
            click.echo(f"{len(added)} restored files are in the index again", err=True)
        if report.still_aside:
            from simsearch.files import MOVED_MARK
            click.echo(f"{_show(report.still_aside)} still holds other files (duplicates another "
                       f"apply moved there, or files put there since) and stays set aside: "
                       f"simsearch does not index it. Undo the other applies that moved files "
                       f"there; only if what is left is your own, delete "
                       f"{_show(os.path.join(report.still_aside, MOVED_MARK))} to index it",
                       err=True)
        if index_note:
            click.echo(index_note, err=True)
    if report.not_restored or index_failed:
        sys.exit(1)


@main.command("not-duplicates")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_index_option
def not_duplicates_cmd(files, index_dir):
    """Remember that FILES (two or more indexed images) are not duplicates of one another:
    later dedupe runs never group them together. Files not in the index are named and left
    out (exit status 1); nothing is remembered unless two different indexed pictures remain."""
    from simsearch.files import absolute
    from simsearch.index import open_index

    if len(files) < 2:
        raise click.UsageError("name two or more files")
    index = open_index(index_dir)
    contents = index.contents_of(files)
    left_out = [p for p in dict.fromkeys(absolute(f) for f in files) if p not in contents]
    for path in left_out:
        why = ("no such file" if not os.path.lexists(path) else
               "not in the index (index it first: simsearch index FOLDER)")
        click.echo(f"not remembered: {_show(path)}: {why}", err=True)
    pictures = len(set(contents.values()))
    if pictures < 2:
        what = ("only one indexed picture was named" if contents else "no indexed file was named")
        if len(contents) > 1:
            what = "the indexed files named have identical content: they are one picture"
        raise click.ClickException(f"nothing remembered: {what}; name two or more indexed "
                                   f"pictures")
    pairs = index.mark_not_duplicates(list(contents))
    click.echo(f"remembered: {len(contents)} files ({pictures} pictures, {pairs} "
               f"pair{'s' if pairs != 1 else ''}) are not duplicates of one another")
    if left_out:
        sys.exit(1)


def _many_pairs(n: int) -> None:
    """Said once when the picture check has many pairs to read (a folder of tiny plain
    pictures can hold a million: hours of lining up), progress bar or not."""
    click.echo(f"picture check: {n:,} pairs to look at; pictures too plain for keypoints (clip "
               f"art, icons, tiny pictures) take tens of ms a pair, so this can take long. "
               f"Stopping (Ctrl-C) keeps the verdicts so far for the next run; --no-check "
               f"groups on scores alone", err=True)


@contextlib.contextmanager
def _term_stops():
    """A SIGTERM (a `kill`, a service stopping) stops the block as Ctrl-C does, by an exception
    (SystemExit 143) that lets it keep what it did: dedupe saves the picture check's verdicts
    so far (a hostile tester's three-hour check lost them all to a kill)."""
    import signal
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _not_alike(plan, folder) -> dict[str, str]:
    """The files `plan` acts on that the index's vectors say are no copy of their group
    (`Plan.not_alike`), each with its reason; none when there is no index to ask (the other
    checks stand), with a word on stderr when it cannot be read."""
    if not folder:
        return {}
    if not os.path.isdir(folder):
        click.echo(f"the index {_show(str(folder))} is not there to ask whether each file is a "
                   f"copy of its group; the files are checked as before (their bytes)", err=True)
        return {}
    from simsearch.index import open_index

    try:
        index = open_index(folder)
        return plan.not_alike(index.scores_between, index.contents_of)
    except SimsearchError as e:
        click.echo(f"could not ask the index {_show(str(folder))} whether each file is a copy "
                   f"of its group ({e}); the files are checked as before", err=True)
        return {}


def _update_index(folder, forget=(), relocate=None, not_duplicates=(), add=(),
                  added: list | None = None) -> str:
    """The file actions' changes, through the index's commit path: files gone forgotten, moved
    ones followed, files put back by undo embedded again (`add`: apply forgot them; those
    indexed go to `added`). Returns a note for the user when the index could not be updated
    (the file actions themselves stand)."""
    relocate = relocate or {}
    if not folder or not (forget or relocate or not_duplicates or add):
        return ""
    from simsearch.index import open_index

    try:
        index = open_index(folder)
        if forget:
            index.forget(list(forget))
        if relocate:
            index.relocate(dict(relocate))
        for paths in not_duplicates:
            index.mark_not_duplicates(paths)
        if add:
            report = index.add_paths(list(add))
            skipped = {os.path.abspath(s.path) for s in report.skipped}
            if added is not None:
                added.extend(p for p in add if os.path.abspath(p) not in skipped)
            if report.skipped:
                return "; ".join(f"{_show(s.path)} was not indexed again: {s.reason}"
                                 for s in report.skipped[:3]) + (
                    f" (and {len(report.skipped) - 3} more)" if len(report.skipped) > 3 else ""
                ) + (f"; once it can be read, add it with: simsearch index "
                     f"{_folders_text([s.path for s in report.skipped])} --index {folder}")
    except SimsearchError as e:
        where = _folders_text(add) if add else "PHOTOS"
        gone = "" if os.path.isdir(folder) else " (that makes a new index holding only these)"
        return (f"the index was not updated ({e}); the files are as reported. Bring it up to "
                f"date with: simsearch index {where} --index {folder}{gone}")
    return ""


def _not_indexed(folder, paths: list[str]) -> list[str]:
    """Those of `paths` the index in `folder` does not hold (all of them without an index)."""
    if not folder or not paths:
        return list(paths)
    from simsearch.index import open_index
    try:
        catalog = open_index(folder).catalog()
    except SimsearchError:
        return list(paths)
    try:
        return [p for p in paths if catalog.get(os.path.abspath(p)) is None]
    finally:
        catalog.close()


def _folders_text(paths) -> str:
    """The folders holding `paths` for a command line, leaving out those inside another listed
    one; at most three, then " ..."."""
    folders = sorted({os.path.dirname(os.path.abspath(p)) for p in paths})
    folders = [f for f in folders
               if not any(f.startswith(o.rstrip(os.sep) + os.sep) for o in folders)]
    return " ".join(_show(f) for f in folders[:3]) + (" ..." if len(folders) > 3 else "")


def _linked(plan) -> str:
    """Words on the files a plan acts on that free no space (other names on disk), or ""."""
    n = plan.linked()
    if not n:
        return ""
    return (" (1 of them has another name on disk, a hard link outside the index: acting on it "
            "frees no space)" if n == 1 else f" ({n} of them have other names on disk, hard "
            f"links outside the index: acting on them frees no space)")


def _size(n: int) -> str:
    from simsearch.planfile import size_text

    return size_text(n)


@main.command("eval")
@click.argument("originals", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--distractors", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of unrelated images added to the references as negatives.")
@_eval_model_option
@_threshold_option("Dedupe threshold to score.  [default: the model's calibrated threshold]")
@click.option("--per-image", type=click.IntRange(1, 64), default=None,
              help="Edited copies per original (a seeded sample of the edits).  [default: all]")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the edits and the bootstrap.")
@_linkage_option("Dedupe grouping to score (see simsearch dedupe).")
@_check_option
@click.option("--no-baselines", is_flag=True, help="Skip the pHash/dHash baselines.")
@click.option("--originals-distinct", is_flag=True,
              help="Count originals that look alike (same content, pHash, the model's score) "
                   "as different pictures.  [default: pairs across them count neither way]")
# simsearch.scorecard.TARGET_PRECISION, repeated so that --help need not import numpy
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0), default=0.97,
              show_default=True,
              help="Dedupe precision the calibrated threshold must reach (the shipped "
                   "threshold was chosen at 0.97 on validation images).")
@click.option("--save-threshold", is_flag=True,
              help="Keep the calibrated threshold in the index (--index) for simsearch dedupe; "
                   "evaluates with the index's model.")
@_index_option
@click.option("--show-mistakes", type=click.IntRange(0), default=10, show_default=True,
              metavar="N", help="False pairs and missed copies listed (all of them in --json).")
@_precision_option
@_quiet_option
@_json_option
def eval_cmd(originals, distractors, model, threshold, per_image, seed, linkage, check, no_baselines,
             originals_distinct, target_precision, save_threshold, index_dir, show_mistakes,
             precision, quiet, as_json):
    """Measure accuracy on your own pictures: edited copies of ORIGINALS are made in a
    temporary folder, the real pipeline runs on them, and uAP, Recall@1 (overall and per
    edit), dedupe precision/recall/F1 with 95% bootstrap intervals and a calibrated threshold
    are reported, beside the pHash and dHash baselines on the same files. Originals that
    already look alike are listed first. Your files are only read; with --save-threshold the
    calibrated threshold is written into the index.
    """
    import importlib.util

    from simsearch.index import open_index
    from simsearch.scorecard import run_eval

    baselines = () if no_baselines else ("phash", "dhash")
    if baselines and importlib.util.find_spec("imagehash") is None:  # not in the light install
        click.echo("note: no pHash/dHash baselines: they need the imagehash package (pip install "
                   "imagehash); --no-baselines leaves them out without this note", err=True)
        baselines = ()
    target = None
    if save_threshold:  # --index alone changes nothing (it may come from $SIMSEARCH_INDEX)
        target = open_index(index_dir, model=model, precision=precision)
        name = target.model.name  # also refuses a --model the index was not built with
        model = model or (None if name.startswith("default (") else name)
    with _Stages(quiet) as progress:
        report = run_eval(originals, distractors, model=model, threshold=threshold, seed=seed,
                          per_image=per_image, linkage=linkage, baselines=baselines,
                          target_precision=target_precision,
                          originals_distinct=originals_distinct, check=check,
                          progress=progress, precision=precision)
    saved = None
    if save_threshold:
        cal = report.metrics.calibrated
        if cal is None:
            raise click.ClickException(
                f"no threshold saved: {report.metrics.calibration_error} on these photos; "
                f"lower --target-precision, or keep the model's default")
        target.save_threshold(cal.threshold, "calibrated", report.threshold_details())
        saved = {"index": str(target.folder), "threshold": cal.threshold}
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "saved_threshold": saved}))
        return
    from simsearch.scoresheet import eval_lines

    for s in report.skipped:
        click.echo(f"skipped {_show(s['path'])}: {s['reason']}", err=True)
    for line in eval_lines(report, Path(originals), show_mistakes, _show):
        click.echo(line)
    if saved:
        click.echo(f"\nsaved threshold {saved['threshold']:.4f} in {target.folder}: simsearch "
                   f"dedupe uses it from now on (--threshold overrides it)")


# Training settings: defaults and choices come from TrainConfig (simsearch.config needs no
# torch, so `simsearch train --help` works in the light install).
_TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _train_option(*decls, field: str, **kwargs):
    return click.option(*decls, default=_TRAIN[field], show_default=True, **kwargs)


@main.command("train")
@click.option("--unlabeled", "unlabeled", type=click.Path(exists=True, file_okay=False),
              help="Self-supervised: two random copy-style edits of each image are anchor and "
                   "positive, the rest of the batch negatives.")
@click.option("--classes", "classes", type=click.Path(exists=True, file_okay=False),
              help="One subfolder per identity; batches of P classes x K images.")
@click.option("--pairs", "pairs", nargs=2, type=click.Path(exists=True, file_okay=False),
              metavar="LEFT RIGHT", help="Matched images with the same file name in LEFT and RIGHT.")
@click.option("--val-dir", type=click.Path(exists=True, file_okay=False),
              help="Validation images (scored each epoch: uAP and Recall@1 of edited copies). "
                   "Default: a held-out share of the training data. The same images and copies "
                   "whatever --seed, so two runs' figures compare.")
@_train_option("--out", "out_dir", field="out_dir", type=click.Path(file_okay=False),
               help="Checkpoints, log, and the final model.safetensors/.onnx.")
@_train_option("--epochs", field="epochs", type=click.IntRange(1))
@_train_option("--steps-per-epoch", field="steps_per_epoch", type=click.IntRange(0),
               help="Cap the steps of an epoch (0: one pass over the data).")
@_train_option("--batch-size", field="batch_size", type=click.IntRange(2),
               help="Images (unlabeled), pairs, or P x K images per batch.")
@_train_option("--samples-per-class", "k", field="samples_per_class", type=click.IntRange(2),
               help="K images per class in a batch (--classes).")
@_train_option("--lr", field="lr", type=float)
@_train_option("--weight-decay", field="weight_decay", type=float)
@_train_option("--loss", field="loss", type=click.Choice(LOSSES))
@_train_option("--miner", field="miner", type=click.Choice(MINER_STRATEGIES),
               help="Online triplet mining in the batch.")
@_train_option("--margin", field="margin", type=float,
               help="Triplet margin in cosine distance (1 - score).")
@_train_option("--koleo", "koleo_weight", field="koleo_weight", type=float,
               help="Weight of the KoLeo term that spreads embeddings (0: off).")
@_train_option("--views", field="views", type=click.Choice(VIEW_RECIPE_NAMES),
               help="Edit recipe of the two views of each image (--unlabeled; four for a "
                    "framed item); copy-heavy draws heavier crops, more picture-in-picture "
                    "and more quarter turns; -lowres adds views shrunk and scaled back up; "
                    "-lineart redraws one picture in six as line art before both its views "
                    "(different line drawings held apart); -frames sets one item in four and "
                    "another picture into one shared frame (look-alikes held apart), "
                    "-frames-half one in two.")
@_train_option("--memory", field="memory", type=click.IntRange(0),
               help="Remember the last N embeddings and mine look-alike negatives among them "
                    "(0: off; triplet loss only).")
@_train_option("--memory-weight", field="memory_weight", type=float,
               help="Weight of the memory triplet term.")
@_train_option("--negative-ceiling", field="negative_ceiling",
               type=click.FloatRange(0, 1, max_open=True),
               help="Hold pictures of other labels (batch and memory) under this cosine, "
                    "whatever their positives score (0: off).")
@_train_option("--ceiling-weight", field="ceiling_weight", type=click.FloatRange(0),
               help="Weight of the --negative-ceiling term.")
@_train_option("--positive-floor", field="positive_floor",
               type=click.FloatRange(0, 1, max_open=True),
               help="Lift pictures of one label (an image's views, a class, a pair) over "
                    "this cosine (0: off).")
@_train_option("--floor-weight", field="floor_weight", type=click.FloatRange(0),
               help="Weight of the --positive-floor term.")
@_train_option("--backbone", field="backbone", type=click.Choice(BACKBONES))
@_train_option("--dim", field="dim", type=click.IntRange(8, 4096))
@_train_option("--input-size", field="input_size", type=click.IntRange(32, 1024))
@_train_option("--freeze", field="freeze", type=click.IntRange(0, 4),
               help="Freeze the first N trunk stages (stem, layer1, layer2, layer3).")
@_train_option("--init", field="init",
               help="random | imagenet | imagenet:PATH | default | a model file to fine-tune.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@_train_option("--checkpoint-every", field="checkpoint_every", type=click.IntRange(0),
               help="Also checkpoint every N steps (0: at epoch ends only).")
@_train_option("--device", field="device", help="auto | cpu | cuda | cuda:N")
@_train_option("--bf16", field="bf16", type=click.Choice(BF16_MODES),
               help="bf16 autocast (auto: where the CPU/GPU supports it).")
@_train_option("--workers", field="workers", type=click.IntRange(0, 64),
               help="Threads building the next batches (0: in the training loop).")
@_train_option("--seed", field="seed", type=int)
@click.option("--stop-on-collapse", is_flag=True,
              help="Stop when the embedding space collapses instead of only reporting it.")
@_quiet_option
def train_cmd(unlabeled, classes, pairs, val_dir, out_dir, epochs, steps_per_epoch, batch_size, k,
              lr, weight_decay, loss, miner, margin, koleo_weight, views, memory, memory_weight,
              negative_ceiling, ceiling_weight, positive_floor, floor_weight, backbone, dim, input_size,
              freeze, init, resume, checkpoint_every, device, bf16, workers, seed,
              stop_on_collapse, quiet):
    """Triplet-train the embedding network on your own images (needs the train extra:
    pip install 'simsearch[train]').

    Give exactly one of --unlabeled DIR, --classes DIR or --pairs LEFT RIGHT. The result,
    OUT/model.safetensors and OUT/model.onnx, is accepted by --model everywhere.
    """
    given = [x for x in (unlabeled, classes, pairs) if x]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --unlabeled, --classes or --pairs")
    from simsearch.train import train  # MissingDependencyError (a message) without torch

    if init == "default":
        from simsearch.models import DEFAULT_MODEL_DIR
        init = str(DEFAULT_MODEL_DIR / "default.safetensors")
    kind = "unlabeled" if unlabeled else "classes" if classes else "pairs"
    config = TrainConfig(
        data=kind, data_dir=str(unlabeled or classes or pairs[0]),
        right_dir=str(pairs[1]) if pairs else "", val_dir=str(val_dir or ""), out_dir=out_dir,
        epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
        samples_per_class=k, lr=lr, weight_decay=weight_decay, loss=loss, miner=miner,
        margin=margin, koleo_weight=koleo_weight, views=views, memory=memory,
        memory_weight=memory_weight, negative_ceiling=negative_ceiling,
        ceiling_weight=ceiling_weight, positive_floor=positive_floor, floor_weight=floor_weight,
        backbone=backbone, dim=dim,
        input_size=input_size, freeze=freeze, init=init, resume=resume,
        checkpoint_every=checkpoint_every, device=device, bf16=bf16, workers=workers, seed=seed,
        stop_on_collapse=stop_on_collapse)
    result = train(config, progress=None if quiet else _train_progress)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    last = result.epochs[-1] if result.epochs else None
    summary = f"trained {result.steps} steps on {result.device}"
    if last is not None and last.uap is not None:
        summary += f"; validation uAP {last.uap:.3f}, Recall@1 {last.recall_at_1:.3f}"
    click.echo(f"{summary}\nmodel: {result.model_path} and {result.onnx_path} "
               f"(use --model {out_dir})")


def _train_progress(event) -> None:
    if event.kind == "step" and event.step % 20 == 0:
        terms = "" if event.active_fraction is None else f" active {event.active_fraction:.2f}"
        terms += "" if event.ceiling is None else f" ceiling {event.ceiling:.4f}"
        terms += "" if event.floor is None else f" floor {event.floor:.4f}"
        click.echo(f"epoch {event.epoch} step {event.step}/{event.total_steps} loss "
                   f"{event.loss:.4f}{terms} lr {event.lr:.2e} {event.views_per_s:.0f} views/s",
                   err=True)
    elif event.kind == "epoch" and event.metrics is not None:
        m = event.metrics
        val = "" if m.uap is None else f" val uAP {m.uap:.3f} R@1 {m.recall_at_1:.3f}"
        click.echo(f"epoch {m.epoch} done: loss {m.loss:.4f}{val} ({m.seconds:.0f} s)", err=True)
    elif event.kind in ("warning", "collapse", "skip") and event.message:
        click.echo(f"{event.kind}: {event.message}", err=True)
    elif event.kind == "load" and event.total and event.done == event.total:
        click.echo(f"loaded {event.total} training images", err=True)
    elif event.kind == "start" and event.message:
        click.echo(event.message, err=True)  # says "resuming at step N" on a resumed run


class _Progress:
    """A progress bar on stderr when it is a terminal, nothing with --quiet. The library calls it as f(done, total)."""

    def __init__(self, label: str, quiet: bool):
        self.label, self.quiet = label, quiet
        self.bar = None

    def __enter__(self):
        return None if self.quiet or not sys.stderr.isatty() else self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None and total != self.bar.length:
            if total > self.bar.length and done >= self.bar.pos:  # more work found while it runs
                self.bar.length = total
            else:  # a new stage
                self.bar.__exit__(None, None, None)
                self.bar = None
        if self.bar is None:
            if total == 0:
                return
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr,
                                         show_pos=True, show_eta=True)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


class _Stages:
    """One progress bar per named stage (the library calls it as f(stage, done, total)); nothing
    with --quiet or when stderr is not a terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.name: str | None = None
        self.bar: _Progress | None = None

    def __enter__(self):
        return None if self.quiet or not sys.stderr.isatty() else self

    def __call__(self, name: str, done: int, total: int) -> None:
        if name != self.name:
            self._close()
            self.name, self.bar = name, _Progress(name, False)
        self.bar(done, total)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        self.bar = None

    def __exit__(self, *exc):
        self._close()
        return False


def _missing(path: Path) -> str | None:
    """Why a PATH named to `index` is not there, or None when it is (a PATH that is there but
    unreadable is reported by the walk, like any unreadable file)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{_show(str(path))}: broken symbolic link (to {_show(os.readlink(path))})"
        return f"{_show(str(path))}: no such file or folder"
    except OSError:
        pass
    return None


def _show(path: str, apart: bool = False) -> str:
    """A path as one line of text a terminal can show: undecodable bytes and control
    characters (a newline in a file name, say) escaped; with `apart`, every character beyond
    ASCII too (two names that look alike, one composed and one decomposed, told apart)."""
    text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if (c.isprintable() and (c.isascii() or not apart)) or c == " "
                   else c.encode("unicode_escape").decode("ascii") for c in text)


def _shows(paths) -> dict[str, str]:
    """`_show` of each path, escaped beyond ASCII where two of them would look the same."""
    shown = {p: _show(p) for p in paths}
    seen: dict[str, int] = {}
    for text in shown.values():
        key = unicodedata.normalize("NFC", text)
        seen[key] = seen.get(key, 0) + 1
    return {p: _show(p, apart=True) if seen[unicodedata.normalize("NFC", text)] > 1 else text
            for p, text in shown.items()}


if __name__ == "__main__":
    main()
