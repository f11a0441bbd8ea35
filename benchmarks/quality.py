"""Copy-detection quality on real pictures never used in training: `simsearch eval` on the
evaluation set of the default model's recipe (Debian wallpapers and tuxpaint stamps), a third of
them held out as distractors, beside pHash and dHash on the same files.

Then the distinct-pictures set (data/eval/distinct/, see build_data.py): different pictures
only, so every pair that dedupe groups at the threshold is a false pair. It is indexed on its
own and reported as false groups and false pairs.

    bash recipes/default_model/fetch_data.sh && python recipes/default_model/build_data.py
    python benchmarks/quality.py --json benchmarks/results/quality.json [--model PATH]
    python benchmarks/quality.py --kind wallpapers    # the photographs and artwork alone
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report, table


KINDS = {"all": lambda name: True,
         "wallpapers": lambda name: not name.startswith("tuxpaint-stamps"),
         "stamps": lambda name: name.startswith("tuxpaint-stamps")}


def split(folder: Path, tmp: Path, kind: str = "all") -> tuple[Path, Path]:
    """Two thirds originals, one third distractors, by a stable hash of the file name; `kind`
    keeps the wallpapers (photographs and artwork) or the tuxpaint stamps (clip art) alone."""
    originals, distractors = tmp / "originals", tmp / "distractors"
    originals.mkdir()
    distractors.mkdir()
    for path in sorted(folder.iterdir()):
        if not KINDS[kind](path.name):
            continue
        bucket = int(hashlib.sha256(path.name.encode()).hexdigest(), 16) % 3
        _place(path, (distractors if bucket == 0 else originals) / path.name)
    return originals, distractors


def _place(path: Path, to: Path) -> None:
    """A file of the set in the run's folder as a user's file is: a regular file (a hard link,
    or a copy across file systems), never a symbolic link, which a plan never keeps or acts on
    (until session 23 the originals were links, so the plan figures left them out)."""
    try:
        os.link(path, to)
    except OSError:
        shutil.copy2(path, to)


def distinct_groups(folder: Path, tmp: Path, kind: str, model: str | None,
                    threshold: float | None, check: bool = True) -> dict:
    """Dedupe over the distinct-pictures set: every group is false, and so is every pair in it."""
    from simsearch.index import open_index

    pictures = tmp / "distinct"
    pictures.mkdir()
    for path in sorted(folder.iterdir()):
        if KINDS[kind](path.name):
            _place(path, pictures / path.name)
    index = open_index(tmp / "distinct-index", model=model, create=True)
    index.add_paths([pictures])
    out = {}
    for checked in ([True, False] if check else [False]):  # the check beside scores alone
        start = time.perf_counter()
        report = index.duplicates(threshold, check=checked)
        seconds = time.perf_counter() - start
        groups = [{"files": [Path(f).name for f in g.files], "min_score": round(g.min_score, 4),
                   "unconfirmed": [Path(f).name for f in g.unconfirmed]}
                  for g in report.groups]
        out["checked" if checked else "unchecked"] = {
            "pictures": index.count(), "threshold": report.threshold,
            "false_groups": len(groups),
            # groups with a member dedupe marks "not confirmed by the picture check"
            "marked_groups": sum(bool(g["unconfirmed"]) for g in groups),
            "false_pairs": sum(len(g["files"]) * (len(g["files"]) - 1) // 2 for g in groups),
            "grouped_pictures": sum(len(g["files"]) for g in groups), "groups": groups,
            "check": report.check, "dedupe_seconds": seconds}
    first = out["checked" if check else "unchecked"]
    return {**first, "without_check": out["unchecked"] if check else None}


def _use_act_cuts(value: str) -> None:
    """Every picture check of this run made with these act cuts (a benchmark's switch)."""
    from simsearch.index import Index
    from simsearch.verify import VerifySettings
    matches, lined, *differs = value.split(",")
    number = lambda text: None if text.lower() == "none" else float(text)  # noqa: E731
    cuts = VerifySettings(act_inliers=int(matches), act_aligned=number(lined),
                          act_disagree=number(differs[0]) if differs else None)
    made = Index.picture_check
    Index.picture_check = lambda self, settings=cuts: made(self, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=ROOT / "data" / "eval" / "originals")
    parser.add_argument("--distinct-dir", type=Path, default=ROOT / "data" / "eval" / "distinct")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=sorted(KINDS), default="all",
                        help="evaluate on all images, the wallpapers alone or the stamps alone")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="dedupe on scores alone (simsearch dedupe --no-check)")
    parser.add_argument("--act-cuts", default=None, metavar="MATCHES,LINED[,DIFFERS]",
                        help="the picture check's act cuts instead of the shipped ones, e.g. "
                             "20,none for session 21's, 60,0.97 for session 22's (no "
                             "disagreement cut; they change no group, only what the default "
                             "plan acts on)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not args.eval_dir.is_dir():
        sys.exit(f"{args.eval_dir} not found; build it with: bash recipes/default_model/fetch_data.sh"
                 " && python recipes/default_model/build_data.py")
    from simsearch.scorecard import run_eval

    with tempfile.TemporaryDirectory() as tmp:
        originals, distractors = split(args.eval_dir, Path(tmp), args.kind)
        start = time.perf_counter()
        if args.act_cuts:
            _use_act_cuts(args.act_cuts)
        result = run_eval(originals, distractors, model=args.model, threshold=args.threshold,
                          seed=args.seed, check=args.check)
        seconds = time.perf_counter() - start
        distinct = (distinct_groups(args.distinct_dir, Path(tmp), args.kind, args.model,
                                    args.threshold, args.check)
                    if args.distinct_dir.is_dir() else None)
    data = result.figures()  # the figures, not the per-pair predictions
    data["distinct"] = distinct
    rows = [{"system": name, "uAP": m["uap"], "R@1": m["recall_at_1"],
             "dedupe P": m["dedupe"]["precision"], "dedupe R": m["dedupe"]["recall"],
             "dedupe F1": m["dedupe"]["f1"], "threshold": m["dedupe"]["threshold"],
             "P>=target at": (m["calibrated"] or {}).get("threshold"),
             "R there": (m["calibrated"] or {}).get("recall")}
            for name, m in [("simsearch", data)] + list(data["baselines"].items())]
    data["kind"] = args.kind
    print(f"{args.kind}: {data['n_queries']} edited copies, {data['n_references']} references, model "
          f"{data['model']}, {seconds:.0f} s, picture check: {data['check'] or 'off'}")
    print(table(rows, list(rows[0])))
    if data.get("plan"):  # what `simsearch dedupe --plan` would do with simsearch's groups
        plan = data["plan"]
        print(f"default plan at {data['dedupe']['threshold']}: acts on {plan['acted_on']} files "
              f"({plan['copies_acted_on']} copies of a kept file, {plan['versions_acted_on']} "
              f"versions of one, {plan['not_copies_acted_on']} other pictures); keeps {plan['kept_unconfirmed']} not confirmed "
              f"({plan['copies_kept_unconfirmed']} of them copies)")
        if "groups_with_original" in plan:
            print(f"  in {plan['copy_kept_over_original']} of the {plan['groups_with_original']} "
                  f"groups it acts in that hold an original with its copy, it keeps a copy and "
                  f"acts on the original ({plan['copy_kept_by_edit'] or 'none'})")
    edits = [{"edit": e, "simsearch": r, **{k: data["baselines"][k]["per_edit"].get(e)
                                             for k in data["baselines"]}}
             for e, r in data["per_edit"].items()]
    print()
    print(table(edits, list(edits[0])))
    print()
    if distinct is None:
        print(f"no distinct-pictures set ({args.distinct_dir}); build it with: python "
              "recipes/default_model/build_data.py")
    else:
        print(f"distinct pictures: {distinct['pictures']}, dedupe at {distinct['threshold']}: "
              f"{distinct['false_groups']} false groups, {distinct['false_pairs']} false pairs "
              f"({distinct['dedupe_seconds']:.1f} s; picture check: {distinct['check'] or 'off'}); "
              f"{distinct['marked_groups']} of the groups hold a file marked \"not confirmed by "
              f"the picture check\"")
        for g in distinct["groups"]:
            marked = f"  (not confirmed: {' '.join(g['unconfirmed'])})" if g["unconfirmed"] else ""
            print(f"  {g['min_score']:.4f}  {' '.join(g['files'])}{marked}")
        plain = distinct["without_check"]
        if plain:
            print(f"without the check (--no-check), at {plain['threshold']}: {plain['false_groups']} "
                  f"false groups, {plain['false_pairs']} false pairs ({plain['dedupe_seconds']:.1f} s)")
    report("quality", {**data, "seconds": seconds}, args.json)


if __name__ == "__main__":
    main()
