"""How much the distinct set's false groups hang on the picture check's chosen settings: the
near-best settings of the validation grid (recipes/default_model/trials/picture-check.json),
each at the threshold calibrate's rule gives it there, deduped over the distinct-pictures set.

    python benchmarks/distinct_settings.py [--json benchmarks/results/distinct_settings.json]

This reports; it never chooses. The settings were chosen on validation by
`recipes/default_model/verify_trial.py` (`choose`); this shows what a neighbouring choice would
have given on evaluation pictures. (Session 17's settings gave 13 false groups, 55 false pairs:
its row in benchmarks/RESULTS.md.) The settings not named here are the shipped defaults of the run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import ROOT, report, table

# (agreeing matches, keypoints, the threshold calibrate's rule gives that setting on validation,
# trials/picture-check.json, the plain judge's "same" and "different" cuts, and the score plain
# pairs are lined up under: None as the check's 0.95, 1.01 every score), pairs the check cannot
# judge held to --no-check's threshold: session 18's settings within 0.005 of the best recall at
# precision 0.97 there, and the two best (no plain judge); session 20's grid rows within 0.005
# of its best (20 matches, 40 keypoints, the plain judge's cuts); then session 21's (the plain
# judge at every score added), the chosen first, and last session 20's cuts at every score
# (0.0012 outside the margin)
SETTINGS = ((20, 40, 0.80, None, None, None), (15, 40, 0.80, None, None, None),
            (15, 30, 0.80, None, None, None), (15, 50, 0.80, None, None, None),
            (15, 20, 0.80, None, None, None), (12, 30, 0.81, None, None, None),
            (12, 20, 0.81, None, None, None),
            (20, 40, 0.80, 0.95, 0.6, None), (20, 40, 0.80, 0.95, None, None),
            (20, 40, 0.80, 0.95, 0.5, None), (20, 40, 0.80, 0.9, None, None),
            (20, 40, 0.80, 0.9, 0.5, None), (20, 40, 0.80, 0.9, 0.6, None),
            (20, 40, 0.80, 0.9, 0.6, 1.01), (20, 40, 0.80, 0.9, None, 1.01),
            (20, 40, 0.80, 0.9, 0.5, 1.01), (20, 40, 0.80, 0.95, None, 1.01),
            (20, 40, 0.80, 0.95, 0.5, 1.01), (20, 40, 0.80, 0.95, 0.6, 1.01))
# the cuts a plan's files must also pass to be acted on (session 22: agreeing matches, lined up):
# every row above with the shipped ones, and the chosen setting again with session 21's (the
# grouping cuts), which changes no group, only the files a plan acts on
SESSION_21_ACT = (20, None, None)
SESSION_22_ACT = (60, 0.97, None)  # and session 22's: no disagreement cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distinct-dir", type=Path, default=ROOT / "data" / "eval" / "distinct")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not args.distinct_dir.is_dir():
        sys.exit(f"{args.distinct_dir} not found; build it with: python "
                 "recipes/default_model/build_data.py")
    from simsearch.index import open_index
    from simsearch.verify import VerifySettings

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index = open_index(Path(tmp) / "index", create=True)
        index.add_paths([args.distinct_dir])
        alone, pictures = index.score_alone_threshold(), index.count()
        shipped = VerifySettings()
        runs = [(row, (shipped.act_inliers, shipped.act_aligned, shipped.act_disagree))
                for row in SETTINGS]
        at = SETTINGS.index((20, 40, 0.80, 0.9, 0.6, 1.01)) + 1
        runs[at:at] = [((20, 40, 0.80, 0.9, 0.6, 1.01), SESSION_21_ACT),
                       ((20, 40, 0.80, 0.9, 0.6, 1.01), SESSION_22_ACT)]
        for (matches, keypoints, threshold, same, apart, plain_below), act in runs:
            check = index.picture_check(VerifySettings(
                min_inliers=matches, min_keypoints=keypoints, plain_same=same, plain_apart=apart,
                plain_below=plain_below, act_inliers=act[0], act_aligned=act[1],
                act_disagree=act[2]))
            found = index.duplicates(threshold, check=check)
            groups = [sorted(Path(m.path).name.split("__")[1] for m in g.members)
                      for g in found.groups]
            # the files the default plan would act on: confirmed members, all but one kept
            planned = sum(sum(m.evidence in ("checked", "score", "identical")
                              for m in g.members[1:]) for g in found.groups)
            rows.append({"matches": matches, "keypoints": keypoints, "plain same": same,
                         "plain different": apart, "plain below": plain_below or 0.95,
                         "act matches": act[0], "act differs": act[2],
                         "act lined up": None if same is None else max(act[1] or same, same),
                         "unjudged held to": alone, "threshold": threshold,
                         "false groups": len(groups),
                         "marked": sum(any(m.evidence == "unchecked" for m in g.members)
                                       for g in found.groups),
                         "planned": planned,
                         "false pairs": sum(len(g) * (len(g) - 1) // 2 for g in groups),
                         "groups": groups})
    print(table([{k: v for k, v in r.items() if k != "groups"} for r in rows],
                [k for k in rows[0] if k != "groups"]))
    report("distinct_settings", {"pictures": pictures, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
