"""The `simsearch` command: parse, call the library, print. Nothing heavy is imported at module
level, so `simsearch --help` starts fast; each command imports what it needs."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from simsearch.errors import SimsearchError


def _index_option(f):
    return click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar="SIMSEARCH_INDEX", show_envvar=True, default=None,
                        help="Index folder.  [default: indexes/default]")(f)


def _model_option(f):
    return click.option("--model", "model", default=None, metavar="PATH",
                        help="Model file (.onnx/.safetensors) or folder; default: the model the "
                             "index was built with, else the shipped default model.")(f)


def _quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Machine-readable JSON on stdout.")(f)


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
    """


@main.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_index_option
@_model_option
@click.option("--rebuild", is_flag=True,
              help="Drop every stored vector and embed all files again (e.g. after a model change). "
                   "Your image files are never touched.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Decoding threads.  [default: CPU count]")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@_quiet_option
@_json_option
def index_cmd(paths, index_dir, model, rebuild, workers, batch_size, quiet, as_json):
    """Ingest image files and folders into the index (recursive, incremental).

    Unchanged files (same size and mtime) are skipped, changed files re-embedded, files gone
    from disk under PATHS removed, and a moved or renamed file keeps its stored vector.
    """
    from simsearch.index import open_index

    index = open_index(index_dir, model=model, create=True)
    with _Progress("indexing", quiet) as progress:
        report = index.add_paths(paths, progress=progress, workers=workers, batch_size=batch_size,
                                 rebuild=rebuild)
    for s in report.skipped:
        click.echo(f"skipped {_show(s.path)}: {s.reason}", err=True)
    if as_json:
        click.echo(json.dumps({"index": str(index.folder.resolve()), **report.to_dict()}))
    else:
        click.echo(f"{report.summary()} -> {index.folder} ({index.count()} images)")


@main.command("query")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "k", type=click.IntRange(1, 10000), default=10, show_default=True,
              help="Results per query image.")
@_index_option
@_model_option
@_json_option
def query_cmd(images, k, index_dir, model, as_json):
    """The K indexed images most similar to each IMAGE, best first, with cosine scores.

    A query image need not be in the index. Exit status 1 if any query image was unreadable.
    """
    from simsearch.index import open_index

    results = open_index(index_dir, model=model).search([os.fspath(p) for p in images], k=k)
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            click.echo(f"error: {_show(result.query)}: {result.error}", err=True)
            continue
        if as_json:
            click.echo(json.dumps({"query": result.query, "results": [
                {"path": m.path, "score": round(m.score, 6)} for m in result.matches]}))
        else:
            click.echo(f"{_show(result.query)}")
            for rank, m in enumerate(result.matches, 1):
                click.echo(f"  {rank:>3}  {m.score:.4f}  {_show(m.path)}")
    if failed:
        sys.exit(1)


@main.command("dedupe")
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Cosine score at or above which two images are near-duplicates.  "
                   "[default: the model's calibrated threshold]")
@_index_option
@_json_option
def dedupe_cmd(threshold, index_dir, as_json):
    """Groups of exact duplicates (same bytes) and near-duplicates (score >= threshold).

    Works from stored vectors only. In a near group every pair scores at least the threshold,
    so a chain of similar images never joins two that are far apart. Nothing is deleted.
    """
    from simsearch.index import open_index

    report = open_index(index_dir).duplicates(threshold)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    for g in report.groups:
        click.echo(f"{g.kind} ({len(g.files)} files, lowest score {g.min_score:.4f})")
        for path in g.files:
            click.echo(f"  {_show(path)}")
    near = sum(g.kind == "near" for g in report.groups)
    click.echo(f"{len(report.groups) - near} exact and {near} near-duplicate groups "
               f"at threshold {report.threshold:.4f}", err=True)


@main.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .npz file: vectors float32 [n, d] and paths.")
@_index_option
def export_cmd(out, index_dir):
    """Write the stored vectors and their paths to an .npz file."""
    from simsearch.index import open_index

    n = open_index(index_dir).export(out)
    click.echo(f"wrote {n} vectors to {out}")


@main.command("eval")
@click.argument("originals", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--distractors", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of unrelated images added to the references as negatives.")
@_model_option
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Dedupe threshold to score.  [default: the model's calibrated threshold]")
@click.option("--per-image", type=click.IntRange(1, 64), default=None,
              help="Edited copies per original (a seeded sample of the edits).  [default: all]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-baselines", is_flag=True, help="Skip the pHash/dHash baselines.")
@_quiet_option
@_json_option
def eval_cmd(originals, distractors, model, threshold, per_image, seed, no_baselines, quiet,
             as_json):
    """Measure accuracy on your own pictures: edited copies of ORIGINALS are made in a
    temporary folder, the real pipeline runs on them, and uAP, Recall@1 (overall and per
    edit), dedupe precision/recall/F1 and a calibrated threshold are reported, beside the
    pHash and dHash baselines on the same files. Your files are only read.
    """
    from simsearch.scorecard import run_eval

    with _Progress("evaluating", quiet) as progress:
        stage = None if progress is None else (lambda name, done, total: progress(done, total))
        report = run_eval(originals, distractors, model=model, threshold=threshold, seed=seed,
                          per_image=per_image, baselines=() if no_baselines else ("phash", "dhash"),
                          progress=stage)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    rows = [("simsearch", report.metrics)] + list(report.baselines.items())
    click.echo(f"{report.n_queries} edited copies of {report.n_references} references "
               f"(model: {report.model})")
    click.echo(f"{'':<10} {'uAP':>6} {'R@1':>6} {'dedupe P':>9} {'R':>6} {'F1':>6} {'at':>7}  "
               f"{'P>=0.99 at':>10} {'R':>6}")
    for name, m in rows:
        cal = m.calibrated
        click.echo(f"{name:<10} {m.uap:>6.3f} {m.recall_at_1:>6.3f} {m.dedupe.precision:>9.3f} "
                   f"{m.dedupe.recall:>6.3f} {m.dedupe.f1:>6.3f} {m.dedupe.threshold:>7.4f}  "
                   + (f"{cal.threshold:>10.4f} {cal.recall:>6.3f}" if cal else f"{'-':>10} {'-':>6}"))
    click.echo("\nRecall@1 per edit")
    click.echo(f"{'edit':<12}" + "".join(f"{name:>10}" for name, _ in rows))
    for edit in report.metrics.per_edit:
        click.echo(f"{edit:<12}" + "".join(f"{m.per_edit.get(edit, 0):>10.3f}" for _, m in rows))


class _Progress:
    """A progress bar on stderr when it is a terminal, nothing with --quiet. The library calls it as f(done, total)."""

    def __init__(self, label: str, quiet: bool):
        self.label, self.quiet = label, quiet
        self.bar = None

    def __enter__(self):
        return None if self.quiet or not sys.stderr.isatty() else self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None and total != self.bar.length:  # a new stage
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


def _show(path: str) -> str:
    """A path as text a terminal can show (undecodable bytes escaped)."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


if __name__ == "__main__":
    main()
