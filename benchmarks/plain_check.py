"""What the picture check costs a first `simsearch dedupe` of a folder of clip art or icons,
where most pairs are too plain for keypoints and are lined up (`simsearch.lineup.aligned`).

    python benchmarks/plain_check.py --json benchmarks/results/plain_check.json

Two folders, each indexed once: the tuxpaint stamps of the evaluation packages (real clip
art, PNG, data/eval-extract/tuxpaint-stamps-default) and 180 generated badges at 64 and 96
pixels (signs, tiles, shields, buttons, balls and tags bearing other numbers and letters:
recipes/default_model/detail_trial.py's stand-in, the small icons a hostile tester's folder
held). Each is deduped as `simsearch dedupe` does (its default threshold and check), every
run a first run (the verdicts the index folder keeps are deleted before it), with the search
pieces `_placings` keeps of the pictures it searched last (`lineup.SEARCH_KEPT`, the default)
and with none kept (0: each search makes its resized pictures and window masks afresh, as
before session 32), in the order A B B A after a warm-up. The groups, and the check's
counts, must be the same both ways; it stops if not. Reported: seconds (each run), pairs the
check judged and lined up, the groups.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report, table

sys.path.insert(0, str(ROOT / "recipes" / "default_model"))


def stamps(folder: Path, out: Path, limit: int) -> Path:
    """Up to `limit` of the PNG stamps under `folder`, linked into `out` (sorted by path)."""
    out.mkdir()
    for i, p in enumerate(sorted(folder.rglob("*.png"))[:limit]):
        (out / f"{i:04d}_{p.name}").symlink_to(p.resolve())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stamps", type=Path,
                        default=ROOT / "data" / "eval-extract" / "tuxpaint-stamps-default")
    parser.add_argument("--limit", type=int, default=400, help="stamps taken (default 400)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not any(args.stamps.rglob("*.png")):
        sys.exit(f"no PNG stamps under {args.stamps}; fetch them with: "
                 "bash recipes/default_model/fetch_data.sh")
    from detail_trial import write_badges
    import simsearch.lineup as lineup
    from simsearch.index import open_index
    from simsearch.verdicts import FILE as VERDICTS

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = {"tuxpaint stamps": stamps(args.stamps, tmp / "stamps", args.limit),
                   "badges 64-96 px": write_badges(tmp / "badges", sides=(64, 96))}
        kept = lineup.SEARCH_KEPT
        for name, folder in folders.items():
            index = open_index(tmp / f"index-{folder.name}", create=True)
            index.add_paths([folder])
            index.duplicates(None, check=index.picture_check())  # warm-up: OpenCV, files
            seen = {}
            for pieces in (kept, 0, 0, kept):
                lineup.SEARCH_KEPT = pieces
                lineup._searched.clear()
                (tmp / f"index-{folder.name}" / VERDICTS).unlink(missing_ok=True)
                start = time.perf_counter()
                result = index.duplicates(None, check=index.picture_check())
                seconds = time.perf_counter() - start
                done = result.check or {}
                groups = sorted(sorted(m.id for m in g.members) for g in result.groups)
                row = seen.setdefault(pieces, {
                    "folder": name, "files": index.count(),
                    "pieces kept": f"{pieces} pictures" if pieces else "none (before)",
                    "seconds": [], "pairs judged": done.get("checked"),
                    "lined up": done.get("plain"), "groups": len(groups),
                    "files grouped": sum(len(g) for g in groups), "_groups": groups,
                    "_check": done})
                if (groups, done) != (row["_groups"], row["_check"]):
                    sys.exit(f"{name}: the groups or the check's counts differ between runs")
                row["seconds"].append(round(seconds, 2))
            lineup.SEARCH_KEPT = kept
            a, b = seen[kept], seen[0]
            if (a["_groups"], a["_check"]) != (b["_groups"], b["_check"]):
                sys.exit(f"{name}: keeping the search pieces changed the groups or the counts")
            for row in (b, a):
                row["speed-up"] = round(sum(b["seconds"]) / sum(row["seconds"]), 2)
                rows.append({k: v for k, v in row.items() if not k.startswith("_")})
    print(table(rows, ["folder", "files", "pieces kept", "seconds", "pairs judged", "lined up",
                       "groups", "files grouped", "speed-up"]))
    report("plain_check", {"rows": rows}, args.json)


if __name__ == "__main__":
    main()
