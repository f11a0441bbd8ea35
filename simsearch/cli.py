"""The `simsearch` command: parse, call the library, print. Nothing heavy is imported at module
level, so `simsearch --help` starts fast; each command imports what it needs."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from simsearch.config import BACKBONES, BF16_MODES, LOSSES, MINER_STRATEGIES, TrainConfig
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
@click.option("--ann", default=None, metavar="auto|flat|hnsw|ivf|ivfsq|ivfpq|FACTORY",
              help="How vectors are searched: auto (exact up to 500k images, then HNSW or IVF "
                   "by count and memory), a kind, or a FAISS factory string.  [default: what "
                   "the index recorded, auto]")
@_device_option
@_quiet_option
@_json_option
def index_cmd(paths, index_dir, model, rebuild, workers, batch_size, ann, device, quiet, as_json):
    """Ingest image files and folders into the index (recursive, incremental).

    Unchanged files (same size and mtime) are skipped, changed files re-embedded, files gone
    from disk under PATHS removed, and a moved or renamed file keeps its stored vector.
    """
    from simsearch.index import open_index

    missing = [_missing(p) for p in paths]
    if any(missing):  # a typo, or a link to a drive that is not there: say so, change nothing
        raise click.BadParameter("; ".join(m for m in missing if m) + "; nothing was indexed",
                                 param_hint="PATHS")
    index = open_index(index_dir, model=model, create=True, device=device)
    with _Progress("indexing", quiet) as progress:
        report = index.add_paths(paths, progress=progress, workers=workers, batch_size=batch_size,
                                 rebuild=rebuild, ann=ann)
    for s in report.skipped:
        click.echo(f"skipped {_show(s.path)}: {s.reason}", err=True)
    for fmt, install in report.missing_libraries.items():
        n = sum(s.reason.startswith(f"{fmt} needs a library") for s in report.skipped)
        click.echo(f"{n} {fmt} files skipped: the library that decodes them is not installed; "
                   f"install it with: {install}", err=True)
    for folder, n in report.kept.items():
        click.echo(f"kept {n} indexed images under {_show(folder)}: the folder is empty or "
                   f"unreadable now (a drive not mounted?); to forget them, index its parent "
                   f"folder", err=True)
    seen = report.added + report.updated + report.unchanged + report.moved + len(report.skipped)
    if seen == 0:
        click.echo("no image files (.jpg .png .webp .gif .bmp .tif .heic .avif .dng .cr2 .cr3 "
                   ".nef .arw .raf .orf .rw2) found under "
                   + ", ".join(_show(str(p)) for p in paths), err=True)
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
@_device_option
@_json_option
def query_cmd(images, k, index_dir, model, device, as_json):
    """The K indexed images most similar to each IMAGE, best first, with scores.

    A score is the cosine similarity of the two vectors, adjusted against the model's
    background set where it has one (pictures that resemble everything score a little lower,
    distinctive ones a little higher, by a bounded amount: see README, Scores).
    A query image need not be in the index. Exit status 1 if any query image was unreadable.
    """
    from simsearch.index import open_index

    index = open_index(index_dir, model=model, device=device)
    rebuilding = index.unfinished_rebuild()
    if rebuilding:
        _warn_rebuild(rebuilding, index_dir)
    if index.empty():
        click.echo(f"{index.folder} holds no images yet; add some with: simsearch index PHOTOS"
                   + ("" if index_dir is None else f" --index {index_dir}"), err=True)
    results = index.search([os.fspath(p) for p in images], k=k)
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            click.echo(f"error: {_show(result.query)}: {result.error}", err=True)
            if as_json:
                click.echo(json.dumps({"query": result.query, "error": result.error}))
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
@_threshold_option("Score (as in query) at or above which two images are near-duplicates.  "
                   "[default: the model's calibrated threshold]")
@_linkage_option("centre: each group is an image and its near-duplicates; complete: every "
                 "pair in a group is a near-duplicate (stricter, smaller groups).")
@_index_option
@_model_option
@_json_option
def dedupe_cmd(threshold, linkage, index_dir, model, as_json):
    """Groups of exact duplicates (same bytes) and near-duplicates (score >= threshold).

    Works from stored vectors only. Groups never chain: with the default centre linkage every
    member scores at least the threshold against the group's centre image; with complete
    linkage every pair does. Each file shows its score to the group's centre; files with
    identical content are marked inside their group. Nothing is deleted.
    """
    from simsearch.index import open_index

    index = open_index(index_dir, model=model)
    rebuilding = index.unfinished_rebuild()
    if rebuilding:
        _warn_rebuild(rebuilding, index_dir)
    report = index.duplicates(threshold, linkage)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    for number, g in enumerate(report.groups, 1):
        labels = {path: chr(ord("A") + i % 26) for i, paths in enumerate(g.exact) for path in paths}
        click.echo(f"group {number}: {g.kind}, {len(g.members)} files, centre {_show(g.centre)}")
        for m in g.members:
            tag = f"[{labels[m.path]}]" if m.path in labels else "   "
            click.echo(f"  {m.score:.4f} {tag} {_show(m.path)}")
    near = sum(g.kind == "near" for g in report.groups)
    source = {"model": "the model's calibrated threshold", "calibrated": "calibrated on your "
              "photos (simsearch eval)", "command line": "from --threshold"}.get(
        report.threshold_source, report.threshold_source)
    click.echo(f"{len(report.groups)} groups ({len(report.groups) - near} of identical files, "
               f"{near} with near-duplicates), {sum(len(g.members) for g in report.groups)} files, "
               f"at threshold {report.threshold:.4f} ({source}). Scores are to each group's "
               f"centre (its first file); [A], [B]... mark files with identical content.",
               err=True)


def _warn_rebuild(folders: list[str], index_dir) -> None:
    click.echo("warning: a --rebuild of this index was stopped before it finished, so it holds "
               "only part of your images; finish it with: simsearch index "
               + " ".join(_show(f) for f in folders)
               + ("" if index_dir is None else f" --index {index_dir}"), err=True)


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
@_json_option
def check_cmd(index_dir, repair, as_json):
    """Verify that the catalog, the FAISS vectors and the manifest agree.

    The catalog is the source of truth; --repair rebuilds what is derived from it. Exit status
    1 when problems remain.
    """
    from simsearch.index import default_index_dir
    from simsearch.integrity import check_index

    report = check_index(index_dir or default_index_dir(), repair=repair)
    if as_json:
        click.echo(json.dumps({"index": report.folder, "images": report.count, "ok": report.ok,
                               "problems": report.problems, "repaired": report.repaired,
                               "vectors": {"factory": report.factory,
                                           "recall_at_10": report.recall},
                               "warnings": report.warnings}))
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
        state = "ok" if report.ok else "NOT ok (run: simsearch check --repair)"
        click.echo(f"{report.folder}: {report.count} images, {state}")
    if not report.ok:
        sys.exit(1)


@main.command("serve")
@_index_option
@_model_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@_device_option
def serve_cmd(index_dir, model, host, port, device):
    """Keep the index loaded and answer queries over HTTP (JSON) until interrupted.

    GET /health; POST /query with {"path": FILE, "k": 10} (JSON) or the image's bytes
    (POST /query?k=10). Answers like query --json.
    """
    from simsearch.index import open_index
    from simsearch.server import serve

    index = open_index(index_dir, model=model, device=device)
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


@main.command("eval")
@click.argument("originals", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--distractors", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of unrelated images added to the references as negatives.")
@_eval_model_option
@_threshold_option("Dedupe threshold to score.  [default: the model's calibrated threshold]")
@click.option("--per-image", type=click.IntRange(1, 64), default=None,
              help="Edited copies per original (a seeded sample of the edits).  [default: all]")
@click.option("--seed", type=int, default=0, show_default=True)
@_linkage_option("Dedupe grouping to score (see simsearch dedupe).")
@click.option("--no-baselines", is_flag=True, help="Skip the pHash/dHash baselines.")
@_quiet_option
@_json_option
def eval_cmd(originals, distractors, model, threshold, per_image, seed, linkage, no_baselines,
             quiet, as_json):
    """Measure accuracy on your own pictures: edited copies of ORIGINALS are made in a
    temporary folder, the real pipeline runs on them, and uAP, Recall@1 (overall and per
    edit), dedupe precision/recall/F1 and a calibrated threshold are reported, beside the
    pHash and dHash baselines on the same files. Your files are only read.
    """
    import importlib.util

    from simsearch.scorecard import run_eval

    baselines = () if no_baselines else ("phash", "dhash")
    if baselines and importlib.util.find_spec("imagehash") is None:  # not in the light install
        click.echo("note: no pHash/dHash baselines: they need the imagehash package (pip install "
                   "imagehash); --no-baselines leaves them out without this note", err=True)
        baselines = ()
    with _Progress("evaluating", quiet) as progress:
        stage = None if progress is None else (lambda name, done, total: progress(done, total))
        report = run_eval(originals, distractors, model=model, threshold=threshold, seed=seed,
                          per_image=per_image, linkage=linkage, baselines=baselines,
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
                   "Default: a held-out share of the training data.")
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
              lr, weight_decay, loss, miner, margin, koleo_weight, backbone, dim, input_size,
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
        margin=margin, koleo_weight=koleo_weight, backbone=backbone, dim=dim,
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
        active = "" if event.active_fraction is None else f" active {event.active_fraction:.2f}"
        click.echo(f"epoch {event.epoch} step {event.step}/{event.total_steps} loss "
                   f"{event.loss:.4f}{active} lr {event.lr:.2e} {event.views_per_s:.0f} views/s",
                   err=True)
    elif event.kind == "epoch" and event.metrics is not None:
        m = event.metrics
        val = "" if m.uap is None else f" val uAP {m.uap:.3f} R@1 {m.recall_at_1:.3f}"
        click.echo(f"epoch {m.epoch} done: loss {m.loss:.4f}{val} ({m.seconds:.0f} s)", err=True)
    elif event.kind in ("warning", "collapse", "skip") and event.message:
        click.echo(f"{event.kind}: {event.message}", err=True)
    elif event.kind == "load" and event.total and event.done == event.total:
        click.echo(f"loaded {event.total} training images", err=True)


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


def _show(path: str) -> str:
    """A path as one line of text a terminal can show: undecodable bytes and control
    characters (a newline in a file name, say) escaped."""
    text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in text)


if __name__ == "__main__":
    main()
