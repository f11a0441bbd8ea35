"""What the picture check (simsearch/verify.py) costs `simsearch dedupe` and `query` on
camera-size JPEGs.

    python benchmarks/dedupe_check.py [--folder DIR] --json benchmarks/results/dedupe_check.json

The >= 6-megapixel JPEG wallpapers of the evaluation packages (as benchmarks/ingest.py), each
with three edited copies written at full size (JPEG quality 90: crop 70%, a quarter turn, and
text over a crop 50%), are indexed once; then `Index.duplicates` runs as `simsearch dedupe` does
(its default threshold, with the check), with session 22's act cuts (60 matches, no
disagreement cut: session 23's matches the pairs at or above 0.95 too), with the check as
session 20 shipped it (pairs with a plain picture lined up only below 0.95, where every check
stops reading: `plain_below` None; each timed twice, in the order A B C C B A, after a
warm-up check, each a first run: the
verdicts a run keeps in the index folder (simsearch/verdicts.py) are deleted before it; then the
shipped check once more, a second run reading the verdicts the run before kept) and with `--no-check`
(scores alone), and again at a low threshold (0.70) where many more pairs fall below 0.95 and
are checked. Reported: seconds (each run), pairs checked and set apart; and the parts of
the check's work timed alone, one thread: reading a file into its grey picture (reduced-size JPEG decode) with SIFT on it,
judging a pair (matching, RANSAC, the mirror tried when the straight fit fails), and judging a
pair too plain for keypoints by lining one picture up inside the other (`aligned`: random
pairs, which search every placing, and each original with its copies, the original first,
stopping as dedupe does at the first placing that calls them one picture). Then each
copy is searched for (k = 10, in process, warm) with the check and without it: the time a query
takes, and how many were looked at and re-ranked. From session 24, the geometry a matched pair
keeps for the keep rules (`picture_map`, `beyond`), timed alone beside matching the pair.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from common import report, table
from ingest import add_camera_options, camera_files

COPIES = (("crop70", ("crop70",)), ("rotate90", ("rotate90",)), ("text-crop50", ("crop50", "text")))


def write_copies(originals: list[Path], out: Path) -> list[Path]:
    from PIL import Image
    from simsearch.edits import apply_edit
    from simsearch.images import load_image

    out.mkdir(parents=True)
    written = []
    for i, path in enumerate(originals):
        picture = load_image(path).image
        for name, edits in COPIES:
            img = picture
            for edit in edits:
                img = apply_edit(edit, img, random.Random(i))
            target = out / f"{i:03d}_{path.stem}_{name}.jpg"
            img.save(target, quality=90)
            written.append(target)
        Image.Image.close(picture)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_camera_options(parser)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    originals = camera_files(args)
    from simsearch.index import open_index
    from simsearch.verdicts import FILE as VERDICTS
    from simsearch.verify import (VerifySettings, agreeing, agreement, beyond, picture_features,
                                  picture_map)
    from simsearch.lineup import aligned, plain_verdict

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        for i, p in enumerate(originals):  # many packages name their files alike
            (photos / f"{i:03d}_{p.name}").symlink_to(p.resolve())
        copies = write_copies(originals, tmp / "copies")
        index = open_index(tmp / "index", create=True)
        index.add_paths([photos, tmp / "copies"])
        # the check as shipped, the same with plain pairs lined up only below `below` (session
        # 20's: pairs at or above it never read), and scores alone; each on a fresh check, the
        # two checks timed twice in the order A B B A after a warm-up (a check of its own: it
        # loads OpenCV, the vectors and the files into the page cache)
        # and session 22's act cuts (60 matches, no disagreement cut: pairs at or above
        # `below` with keypoints are read but not matched); in the order A B C C B A
        shipped, before = VerifySettings(), VerifySettings(plain_below=None)
        session22 = VerifySettings(act_inliers=60, act_disagree=None)
        kinds = [("default", shipped)] + [(name, settings) for name, settings in (
            ("session 22's act cuts", session22), ("plain below 0.95 only", before))
            if settings != shipped]
        index.duplicates(None, check=index.picture_check())
        for threshold in (None, 0.70):
            timed_rows = {}
            for name, settings in kinds + kinds[::-1] + [("default, run again", shipped)]:
                if name != "default, run again":  # a first run: no verdicts kept from before
                    (tmp / "index" / VERDICTS).unlink(missing_ok=True)
                start = time.perf_counter()
                result = index.duplicates(threshold, check=index.picture_check(settings))
                seconds = time.perf_counter() - start
                done = result.check or {}
                row = timed_rows.setdefault(name, {
                    "threshold": result.threshold, "check": name, "seconds": [],
                    "groups": len(result.groups),
                    "files grouped": sum(len(g.members) for g in result.groups),
                    "pairs checked": done.get("checked"), "set apart": done.get("apart"),
                    "unjudged": done.get("unjudged"), "remembered": done.get("remembered")})
                row["seconds"].append(round(seconds, 2))
            start = time.perf_counter()
            result = index.duplicates(threshold, check=False)
            seconds = time.perf_counter() - start
            rows += list(timed_rows.values()) + [{
                "threshold": result.threshold, "check": "no check", "seconds": [round(seconds, 2)],
                "groups": len(result.groups),
                "files grouped": sum(len(g.members) for g in result.groups),
                "pairs checked": None, "set apart": None, "unjudged": None, "remembered": None}]
        queries = [str(p) for p in copies]
        timed = {}
        for check in (False, True):
            index.search(queries[:2], k=10, check=check)  # warm
            start = time.perf_counter()
            answers = [index.search([q], k=10, check=check)[0] for q in queries]
            timed[check] = (time.perf_counter() - start) / len(queries)
        moved = sum(any(m.checked is not None for m in a.matches) for a in answers)
        settings = VerifySettings()
        files = [str(p) for p in originals] + [str(p) for p in copies]
        start = time.perf_counter()
        held = [picture_features(f, settings) for f in files]
        per_picture = (time.perf_counter() - start) / len(files)
        pairs = [(i, j) for i in range(len(held)) for j in range(i + 1, len(held))]
        random.Random(0).shuffle(pairs)
        pairs = pairs[:400]
        start = time.perf_counter()
        for x, y in pairs:  # as dedupe judges them
            agreeing(held[x], held[y], settings, enough=settings.min_inliers)
        per_pair = (time.perf_counter() - start) / len(pairs)
        start = time.perf_counter()
        plain = pairs[:100]
        for x, y in plain:  # every placing searched, as for a pair never reaching "same"
            aligned(held[x], held[y])
        per_plain_pair = (time.perf_counter() - start) / len(plain)
        # each original with its copies through the judge dedupe uses for plain pairs (these
        # photos have keypoints enough to be matched instead: this is the judge's cost alone)
        n = len(originals)  # copies follow the originals, len(COPIES) to an original, in order
        copy_pairs = [(i, n + len(COPIES) * i + k) for i in range(n) for k in range(len(COPIES))]
        start = time.perf_counter()
        lined = [plain_verdict(held[x], held[y], settings) for x, y in copy_pairs]
        per_plain_copy = (time.perf_counter() - start) / len(copy_pairs)
        # session 24: what keeping a matched pair's geometry adds (simsearch.picturecheck: the
        # map between the files' pixels and the keypoints each shows beyond the other), on
        # each original with its copies, beside matching them
        fits = [(x, y, *agreement(held[x], held[y], settings, enough=settings.min_inliers))
                for x, y in copy_pairs]
        start = time.perf_counter()
        for x, y, _, transform, used in fits:
            picture_map(held[x], used, held[y], transform)
            beyond(used, held[y], transform)
        per_geometry = (time.perf_counter() - start) / len(fits)
        start = time.perf_counter()
        for x, y in copy_pairs:
            agreement(held[x], held[y], settings, enough=settings.min_inliers)
        per_copy_match = (time.perf_counter() - start) / len(copy_pairs)
    print(f"{len(originals)} camera JPEGs and {len(copies)} full-size edited copies")
    print(table(rows, list(rows[0])))
    print(f"one thread: {per_picture * 1000:.0f} ms a picture (read at <= {settings.side} px, "
          f"SIFT), {per_pair * 1000:.1f} ms a pair (random pairs: mostly different pictures, "
          "so the mirror is tried too); a pair too plain to match, lined up instead (simsearch."
          f"lineup.aligned): {per_plain_pair * 1000:.0f} ms; an original and its copy lined "
          f"up, the original first (stops once they line up at {settings.plain_same}): "
          f"{per_plain_copy * 1000:.1f} ms ({sum(v is True for v in lined)} of "
          f"{len(lined)} called one picture); an original and its copy matched "
          f"{per_copy_match * 1000:.1f} ms, their geometry kept +{per_geometry * 1000:.2f} ms")
    print(f"query (k = 10, warm, each copy in turn): {timed[False] * 1000:.0f} ms a query on "
          f"scores alone, {timed[True] * 1000:.0f} ms with the check ({moved} of {len(queries)} "
          f"had a copy moved first)")
    report("dedupe_check", {"originals": len(originals), "copies": len(copies), "rows": rows,
                            "ms_per_picture": per_picture * 1000, "ms_per_pair": per_pair * 1000,
                            "ms_per_plain_pair": per_plain_pair * 1000,
                            "ms_per_plain_copy": per_plain_copy * 1000,
                            "plain_copies_lined_up": sum(v is True for v in lined),
                            "ms_per_copy_match": per_copy_match * 1000,
                            "ms_per_geometry": per_geometry * 1000,
                            "query_ms": timed[False] * 1000, "query_ms_checked": timed[True] * 1000,
                            "queries_reranked": moved}, args.json)


if __name__ == "__main__":
    main()
