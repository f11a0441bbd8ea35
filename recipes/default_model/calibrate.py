"""Re-derive the shipped model's score taper and dedupe threshold on the validation images (never
the evaluation set), without retraining or re-exporting the network.

    python recipes/default_model/calibrate.py             # measure and print
    python recipes/default_model/calibrate.py --write     # also update default.calibration.json
    python recipes/default_model/calibrate.py --model runs/x/model.onnx --json x.json
                                                          # a candidate; every knee's sweep kept
    python recipes/default_model/calibrate.py --variants recipes/default_model/trials/val-variants.json

The score (simsearch/scoring.py) subtracts the pair's background offsets in full below a knee
and fades them out linearly to none at cosine 1. For each knee of a grid this measures, on the
800 validation images, their edited copies (4 per image, seeded, as ship.py) and their half-size
re-saves (JPEG q85): uAP and Recall@1 of the copies among the originals, the share of re-saves
scoring >= 0.95 against their original, and dedupe precision / recall over a threshold sweep
(with the number of groups, and of groups that join two or more originals' families).

Rules (set on validation figures alone; no evaluation figure under the taper had been seen):
- knee: the one with the best validation uAP among those that keep every validation image at
  >= 0.9999 against itself (the criterion ship.py uses for the adjustment's strength). The
  share of half-size re-saves at >= 0.95 is reported, not required: validation images are at
  most 256 px on the short side, so their half-size re-saves (<= 128 px, below the model's
  160 px input) lose detail that no score can restore (the lowest raw cosine is ~0.75);
- threshold: the lowest score (steps of 0.01 from 0.70) at which centre-linkage dedupe reaches
  pairwise precision >= 0.97 (TARGET_PRECISION; 0.95, ship.py's rule, until stage 5: the issue's
  dedupe target is 0.97, and a false group proposes deleting a unique picture) on the edited
  copies under that knee; with
  --variants, a pair of originals judged by eye to be variants of one picture (a texture in two
  colours, a sign and its mirror image; the labels file trials/val-variants.json, made with
  val_variants.py) counts as right in that precision, as a user would count it. Search figures
  still need each copy's own original. The strict rows are printed beside them;
- with --check, the same rule with the product's picture check (a pair the check cannot judge
  needs the knee's threshold without the check, as `simsearch dedupe` does), from CHECKED_FLOOR
  up: that threshold becomes dedupe's default, the one without the check `--no-check`'s.
With --write, the threshold and the measurements go into simsearch/models/default.calibration.json,
which simsearch.models prefers over the ONNX metadata when it names the same model id. The knee
is a constant of simsearch/scoring.py (KNEE): set it there by hand when this changes it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simsearch.dedupe import find_groups  # noqa: E402
from simsearch.evaluate import (DedupeScore, label_neighbors, make_benchmark, micro_average_precision,  # noqa: E402
                                recall_at_1, Neighbors)
from simsearch.errors import ModelError  # noqa: E402
from simsearch.families import set_roots  # noqa: E402
from simsearch.index import open_index  # noqa: E402
from simsearch.models import DEFAULT_MODEL_DIR, calibration_path  # noqa: E402
from simsearch.scoring import KNEE, adjust  # noqa: E402
from simsearch.picturecheck import PictureCheck  # noqa: E402

KNEES = (1.0, 0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.90)
SWEEP = tuple(round(0.70 + 0.01 * i, 2) for i in range(29))
RESAVE_FLOOR = 0.95
TARGET_PRECISION = 0.97
SELF_FLOOR = 0.9999
# With the picture check, dedupe's threshold is not set below this: every pair from the
# threshold up to the check's `below` is looked at in its files, and on validation the pairs to
# look at grow by 45% from 0.85 to 0.80 and by 97% to 0.76, for about 1.3 points of recall (a
# scratch run of session 18 with 20 agreeing matches and 30 keypoints: 0.910 at 0.80, 0.923 at 0.76)
CHECKED_FLOOR = 0.80


def family_dedupe_score(groups: list[list[str]], family: dict[str, int], bench,
                        threshold: float) -> DedupeScore:
    """Pairwise precision and recall of dedupe groups: a pair is right when both files are the
    same original or copies of it (`family`); recall counts each edited copy grouped with its
    original."""
    n_predicted = n_right = 0
    group_of: dict[str, int] = {}
    for gi, files in enumerate(groups):
        counts: dict[int, int] = {}
        for fam in (family.get(f, -1 - gi) for f in files):
            counts[fam] = counts.get(fam, 0) + 1
        n_predicted += len(files) * (len(files) - 1) // 2
        n_right += sum(c * (c - 1) // 2 for c in counts.values())
        for f in files:
            group_of.setdefault(f, gi)
    true_pairs = [(str(item.query), str(item.original)) for item in bench.items]
    found = sum(1 for q, o in true_pairs if q in group_of and group_of.get(o) == group_of[q])
    precision = n_right / n_predicted if n_predicted else 1.0
    recall = found / len(true_pairs) if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DedupeScore(precision, recall, f1, threshold, n_predicted, len(true_pairs), n_right)


def half_size_resaves(originals: list[Path], out: Path) -> list[Path]:
    out.mkdir(parents=True)
    paths = []
    for p in originals:
        with Image.open(p) as im:
            im = im.convert("RGB")
            half = im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BICUBIC)
        target = out / (p.stem + "_half.jpg")
        half.save(target, quality=85)
        paths.append(target)
    return paths


def recall_at_precision(sweep: list[dict], target: float = TARGET_PRECISION) -> float | None:
    """Recall where precision first reaches `target`, read off the sweep (thresholds ascending)
    by linear interpolation between the two steps that straddle it. Two models whose precision
    crosses the target at different points between 0.01-steps are then compared at the same
    precision, not at whichever step each one happens to pass it on. When the sweep's first step
    already passes the target, its recall is returned (measured at a higher precision); None
    when no step reaches it."""
    for i, step in enumerate(sweep):
        if step["precision"] >= target:
            if i == 0:
                return step["recall"]
            below = sweep[i - 1]
            share = (target - below["precision"]) / (step["precision"] - below["precision"])
            return below["recall"] + share * (step["recall"] - below["recall"])
    return None


def group_sweep(vectors: dict[str, np.ndarray], offsets: dict[str, float], ids_all: list[str],
                knee: float, check: PictureCheck | None = None) -> list[list[list[str]]]:
    """Centre-linkage dedupe groups of `ids_all` (file names) at each threshold of SWEEP, with
    the product's picture check when given (`picture_check(ids_all)`)."""
    V = np.stack([vectors[p] for p in ids_all])
    O = np.array([offsets[p] for p in ids_all], np.float32)
    ids = np.arange(len(ids_all), dtype=np.int64)
    return [[[ids_all[i] for i in g.ids]
             for g in find_groups(ids, V, O, ids, t, "centre", knee=knee, check=check)]
            for t in SWEEP]


def picture_check(ids_all: list[str]) -> PictureCheck:
    """The product's picture check (default settings) over the files `ids_all`, by position:
    one for a whole run, so each pair's pictures are looked at once whatever the knee. Set its
    `alone` to the knee's threshold without the check before grouping with it, as dedupe
    does."""
    return PictureCheck(lambda ids: {i: ids_all[i] for i in ids})


def measure(vectors: dict[str, np.ndarray], offsets: dict[str, float], bench, halves: dict[str, str],
            knee: float, ids_all: list[str], family: dict[str, int],
            dedupe_family: dict[str, int] | None = None,
            groupings: list[list[list[str]]] | None = None, floor: float = SWEEP[0]) -> dict:
    """Every figure of one knee. Search (uAP, Recall@1) is scored against each copy's own
    original (`family`); dedupe precision against `dedupe_family` when given (`family` with
    the originals judged variants of one picture merged, see merge_variants), else `family`.
    `groupings` (group_sweep's, for this knee) saves grouping again when one knee is scored
    against two families. The threshold and the recalls at a precision are read off the sweep
    from `floor` up."""
    refs = [str(p) for p in bench.originals]
    queries = [str(i.query) for i in bench.items]
    R = np.stack([vectors[p] for p in refs])
    Q = np.stack([vectors[q] for q in queries])
    o_r = np.array([offsets[p] for p in refs], np.float32)
    o_q = np.array([offsets[q] for q in queries], np.float32)
    scores = adjust(Q @ R.T, o_q[:, None] + o_r[None, :], knee)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    truth = np.array([family[q] for q in queries])
    labelled = label_neighbors(Neighbors(top, np.take_along_axis(scores, top, 1)), truth)
    uap = micro_average_precision(labelled.scores, labelled.is_positive, labelled.n_positives)
    r1 = recall_at_1(top[:, 0].tolist(), truth.tolist())
    pairs = [(p, h) for p, h in halves.items() if p in vectors and h in vectors]
    resave = np.array([adjust(np.float32(vectors[p] @ vectors[h]), offsets[p] + offsets[h], knee)
                       for p, h in pairs])
    selfs = np.array([adjust(np.float32(vectors[p] @ vectors[p]), 2 * offsets[p], knee) for p in refs])
    sweep = []
    grouped_as = family if dedupe_family is None else dedupe_family
    if groupings is None:
        groupings = group_sweep(vectors, offsets, ids_all, knee)
    for t, files in zip(SWEEP, groupings):
        s = family_dedupe_score(files, grouped_as, bench, t)
        mixed = sum(len({grouped_as.get(f, -1 - i) for f in g}) > 1 for i, g in enumerate(files))
        sweep.append({"threshold": t, "precision": s.precision, "recall": s.recall,
                      "groups": len(files), "mixed_groups": mixed})
    floored = [s for s in sweep if s["threshold"] >= floor]
    good = [s for s in floored if s["precision"] >= TARGET_PRECISION]
    return {"knee": knee, "uap": uap, "recall_at_1": r1,
            "resave_min": float(resave.min()) if len(resave) else None,
            "resave_share_ok": float((resave >= RESAVE_FLOOR).mean()) if len(resave) else None,
            "self_min": float(selfs.min()), "threshold": good[0]["threshold"] if good else None,
            "threshold_precision": good[0]["precision"] if good else None,
            "threshold_recall": good[0]["recall"] if good else None,
            "recall_at_target": recall_at_precision(floored),
            "recall_at_p95": recall_at_precision(floored, 0.95),
            "sweep": sweep}


def load_variants(path: Path) -> list[tuple[str, str]]:
    """The pairs of validation originals judged variants of one picture, by file name, from a
    labels file written by hand after val_variants.py (trials/val-variants.json)."""
    try:
        judged = json.loads(path.read_text())["pairs"]
        unjudged = [f"{p['a']} / {p['b']}" for p in judged if not isinstance(p["variant"], bool)]
        pairs = [(p["a"], p["b"]) for p in judged if p["variant"] is True]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"{path}: not a readable variants file ({e!r}); see val_variants.py")
    if unjudged:
        sys.exit(f"{path}: {len(unjudged)} pairs not judged (\"variant\" must be true or false), "
                 f"first {unjudged[0]}")
    return pairs


def merge_variants(family: dict[str, int], originals, pairs: list[tuple[str, str]]) -> dict[str, int]:
    """`family` with the families of each pair of variant originals (file names) joined: every
    file maps to the lowest original index of its merged family. Names not among `originals`
    are ignored, so one labels file serves any subset of the validation images."""
    index = {Path(p).name: i for i, p in enumerate(originals)}
    root = set_roots(len(index), [(index[a], index[b]) for a, b in pairs if a in index and b in index])
    return {f: root[fam] for f, fam in family.items()}


@dataclass
class Embedded:
    bench: object                  # simsearch.evaluate's benchmark: originals and edited copies
    halves: dict[str, str]         # original -> its half-size re-save ({} unless asked for)
    vectors: dict[str, np.ndarray]
    offsets: dict[str, float]      # each file's background offset under the model
    ids: list[str]                 # the originals, then the copies (those that embedded)
    model: object                  # the index's resolved model

    @property
    def family(self) -> dict[str, int]:
        """Each original and copy -> the index of its original in bench.originals."""
        of = {str(p): i for i, p in enumerate(self.bench.originals)}
        return {**of, **{str(item.query): of[str(item.original)] for item in self.bench.items}}


def trial_parser(doc: str) -> argparse.ArgumentParser:
    """A trial's command line: the validation folder, the model, the copies per original, the
    labels of variant originals (trials/val-variants.json) and the JSON to write."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--model", default="default")
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--variants", type=Path,
                        default=ROOT / "recipes" / "default_model" / "trials" / "val-variants.json")
    parser.add_argument("--json", type=Path, default=None)
    return parser


def embed_validation(val_dir: Path, model: str, per_image: int, tmp: Path,
                     halves: bool = False) -> Embedded:
    """The validation originals and their seeded edited copies (and, with `halves`, half-size
    re-saves), embedded by `model` in an index under `tmp`, with their background offsets."""
    val = sorted(p for p in val_dir.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not val:
        sys.exit(f"{val_dir} is empty; run: python recipes/default_model/build_data.py")
    os.environ.setdefault("SIMSEARCH_PRECISION", "fp32")
    try:  # the index resolves its model when first asked for it: a bad one stops us before any work
        index = open_index(tmp / "index", model=model, create=True)
        background = index.background
    except ModelError as e:
        sys.exit(str(e))
    if background is None:
        sys.exit(f"{model} has no background set: there is no adjustment to taper")
    bench = make_benchmark(val, tmp / "bench", seed=0, per_image=per_image)
    pairs = dict(zip(map(str, val), map(str, half_size_resaves(val, tmp / "half")))) if halves else {}
    index.add_paths([val_dir, tmp / "bench" / "queries"] + ([tmp / "half"] if halves else []))
    paths, matrix = index.vectors()
    vectors = dict(zip(paths, matrix))
    offsets = dict(zip(paths, index.background.offsets(matrix).tolist()))
    ids = [p for p in [str(p) for p in bench.originals] + [str(i.query) for i in bench.items]
           if p in vectors]
    return Embedded(bench, pairs, vectors, offsets, ids, index.model)


def _figure(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_rows(rows: list[dict], title: str = "") -> None:
    if title:
        print(title)
    print(f"knee   uAP     R@1     resave>={RESAVE_FLOOR}  resave min  self min  threshold (P, R)  "
          f"R at P {TARGET_PRECISION} / 0.95")
    for r in rows:
        if r["threshold"] is None:  # precision never reaches the target on the sweep
            at = f"none reaches precision {TARGET_PRECISION}"
        else:
            at = (f"{r['threshold']} ({r['threshold_precision']:.3f}, {r['threshold_recall']:.3f})"
                  f"  {r['recall_at_target']:.3f} / {r['recall_at_p95']:.3f}")
        print(f"{r['knee']:.2f}  {r['uap']:.4f}  {r['recall_at_1']:.4f}  {_figure(r['resave_share_ok'])}"
              f"        {_figure(r['resave_min'])}      {r['self_min']:.5f}  {at}")


def write_calibration(model: str, model_id: str, name: str, chosen: dict, rows: list[dict],
                      strict: list[dict], variants: str | None,
                      checked: dict | None = None) -> None:
    """Record the threshold and the rows behind it in the model's calibration file (the chosen
    knee's sweep kept, the others' left out). With `checked` ({"chosen", "rows", "strict",
    "settings"}: the same under the picture check), its threshold becomes dedupe's default and
    the one without the check is kept as `dedupe_threshold_unchecked`."""
    path = calibration_path(DEFAULT_MODEL_DIR / "default.onnx") if model == "default" \
        else calibration_path(model)
    record = json.loads(path.read_text()) if path.is_file() else {}
    if record.get("model_id") not in (None, model_id):
        sys.exit(f"{path} belongs to another model; not overwritten")

    def kept(table: list[dict]) -> list[dict]:
        return [r if r["knee"] == chosen["knee"] else {k: v for k, v in r.items() if k != "sweep"}
                for r in table]

    record.update({"model_id": model_id, "dedupe_threshold": chosen["threshold"],
                   "variants": variants,
                   "knee_in_use": KNEE,  # score_knee is the rule's pick; KNEE is set by hand
                   "score_knee": chosen["knee"],
                   "score_calibration": {
                       "rule": __doc__.split("Rules")[1].split("With --write")[0].strip(),
                       "model": name, "validation": kept(rows),
                       "validation_strict": kept(strict) if strict else None}})
    if checked is not None:
        record.update({"dedupe_threshold": checked["chosen"]["threshold"],
                       "dedupe_threshold_unchecked": chosen["threshold"],
                       "picture_check": {"settings": checked["settings"],
                                         "floor": CHECKED_FLOOR,
                                         "alone": chosen["threshold"],
                                         "validation": kept(checked["rows"]),
                                         "validation_strict": kept(checked["strict"])
                                         if checked["strict"] else None}})
    else:
        record.pop("dedupe_threshold_unchecked", None)
        record.pop("picture_check", None)
    tmp_path = path.with_name(path.name + ".tmp")
    tmp_path.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp_path, path)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--model", default="default")
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--variants", type=Path, default=None,
                        help="labels file of validation originals that are variants of one "
                             "picture (trials/val-variants.json): dedupe counts their pairs right")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every knee's row, threshold sweep included, to this file")
    parser.add_argument("--check", action="store_true",
                        help="also group with the product's picture check (simsearch.verify) "
                             "and calibrate its threshold: dedupe's default; the rows without "
                             "it then set --no-check's threshold")
    args = parser.parse_args()
    pairs = load_variants(args.variants) if args.variants else None  # a bad file stops us first
    with tempfile.TemporaryDirectory() as tmp:
        v = embed_validation(args.val_dir, args.model, args.per_image, Path(tmp), halves=True)
        family = v.family
        merged = None
        if pairs is not None:
            names = {Path(p).name for p in v.bench.originals}
            found = sum(a in names and b in names for a, b in pairs)
            print(f"{args.variants}: {found} of {len(pairs)} variant pairs are among these "
                  f"{len(names)} originals", file=sys.stderr)
            merged = merge_variants(family, v.bench.originals, pairs)
        rows, strict, checked, checked_strict = [], [], [], []
        check = picture_check(v.ids) if args.check else None
        for k in KNEES:  # each knee grouped once, scored against both families
            groupings = group_sweep(v.vectors, v.offsets, v.ids, k)
            rows.append(measure(v.vectors, v.offsets, v.bench, v.halves, k, v.ids, family, merged,
                                groupings))
            if merged:
                strict.append(measure(v.vectors, v.offsets, v.bench, v.halves, k, v.ids, family,
                                      groupings=groupings))
            if check is not None:
                check.alone = rows[-1]["threshold"]  # this knee's --no-check threshold
                if check.alone is None:
                    sys.exit(f"knee {k}: no threshold without the check reaches precision "
                             f"{TARGET_PRECISION}, so pairs the check cannot judge have none to "
                             f"reach")
                groupings = group_sweep(v.vectors, v.offsets, v.ids, k, check)
                checked.append(measure(v.vectors, v.offsets, v.bench, v.halves, k, v.ids, family,
                                       merged, groupings, CHECKED_FLOOR))
                if merged:
                    checked_strict.append(measure(v.vectors, v.offsets, v.bench, v.halves, k,
                                                  v.ids, family, groupings=groupings,
                                                  floor=CHECKED_FLOOR))
        model_id, name = v.model.model_id, v.model.name
    if strict:
        print_rows(strict, "strict (every other original a negative):")
        print_rows(rows, f"variants merged ({args.variants.name}; these rows decide):")
    else:
        print_rows(rows)
    if checked_strict:
        print_rows(checked_strict, "with the picture check, strict:")
    if checked:
        print_rows(checked, "with the picture check" + (", variants merged (these rows decide "
                                                        "dedupe's threshold):" if merged else ":"))
        print(f"picture check: {check.stats.to_dict() | {'unreadable': len(check.stats.unreadable)}}")
    if args.json:
        args.json.write_text(json.dumps({"model": name, "model_id": model_id, "rows": rows,
                                         "strict_rows": strict or None,
                                         "checked_rows": checked or None,
                                         "checked_strict_rows": checked_strict or None,
                                         "check_settings": dataclasses.asdict(check.settings)
                                         if check else None,
                                         "variants": str(args.variants) if merged else None},
                                        indent=1) + "\n")
    eligible = [r for r in rows if r["self_min"] >= SELF_FLOOR]
    if not eligible:
        sys.exit(f"no knee keeps every validation image at >= {SELF_FLOOR} against itself")
    chosen = max(eligible, key=lambda r: (r["uap"], r["knee"]))
    if chosen["threshold"] is None:
        sys.exit(f"no threshold from {SWEEP[0]} to {SWEEP[-1]} reaches precision {TARGET_PRECISION} "
                 f"under knee {chosen['knee']}: this model cannot be calibrated by this rule")
    print(f"chosen knee {chosen['knee']} (uAP {chosen['uap']:.4f}); threshold {chosen['threshold']}"
          f" (precision {chosen['threshold_precision']:.4f}, recall {chosen['threshold_recall']:.4f})"
          f"; simsearch.scoring.KNEE is {KNEE}")
    with_check = None
    if checked:
        pick = next(r for r in checked if r["knee"] == chosen["knee"])
        if pick["threshold"] is None:
            sys.exit(f"with the picture check no threshold from {CHECKED_FLOOR} to {SWEEP[-1]} reaches "
                     f"precision {TARGET_PRECISION} under knee {chosen['knee']}")
        print(f"with the picture check: threshold {pick['threshold']} (precision "
              f"{pick['threshold_precision']:.4f}, recall {pick['threshold_recall']:.4f}): "
              f"dedupe's default; {chosen['threshold']} without it (--no-check)")
        with_check = {"chosen": pick, "rows": checked, "strict": checked_strict,
                      "settings": dataclasses.asdict(check.settings)}
    if args.write:
        write_calibration(args.model, model_id, name, chosen, rows, strict,
                          args.variants.name if merged else None, with_check)


if __name__ == "__main__":
    main()
