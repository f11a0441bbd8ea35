"""What judging a plain pair costs (`simsearch.lineup.plain_verdict`, the picture check's judge
for pictures too plain for keypoints), side by side with another commit's code in one run.

    python benchmarks/plain_judge.py [--against 940ba5c] [--json benchmarks/results/plain_judge.json]

Rendered glyphs (lookalikes.py's fonts and styles: the plain clip art this judge is for) give
two kinds of pair: different glyphs of one font and style (every placing is searched: nothing
lines up), and a glyph with its own edited copy (JPEG, a 70% crop, a caption), which dedupe
stops lining up once a placing calls them one picture. Both codes run on the same pictures in
one process, one thread, with the same settings ("same" 0.95, no "different" cut, so that a
copy's time is the search up to its verdict): milliseconds a pair, and how many pairs each
called one picture (the verdicts must agree); each timed --repeats times over fresh features
after a warm-up pair, the median and the best reported. `--against` names a commit whose
`simsearch/verify.py` is loaded beside this tree's (session 19's code: 940ba5c).
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, report, table

sys.path.insert(0, str(ROOT / "recipes" / "default_model"))


def load_verify(commit: str | None):
    """simsearch.verify as this tree has it, or as `commit` had it (a module of its own)."""
    if commit is None:
        from simsearch import verify
        return verify
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:simsearch/verify.py"],
                                check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        sys.exit(f"cannot read simsearch/verify.py at {commit}: {e.stderr.strip()}")
    path = Path(tempfile.mkdtemp()) / f"verify_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="940ba5c")
    parser.add_argument("--pairs", type=int, default=60, help="pairs of different glyphs")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; median and best")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from lookalikes import find_fonts, render
    from simsearch.edits import apply_edit

    fonts = list(find_fonts().values())[:2]
    pictures = [render(f, g, style) for f in fonts for g in "0123AB" for style in ("solid", "badge")]
    edits = ("jpeg20", "crop70", "text")
    copies = [apply_edit(e, p, random.Random(i)) for i, p in enumerate(pictures) for e in edits]
    rows = []
    for name, module in ((args.against, load_verify(args.against)), ("this tree", load_verify(None))):
        settings = module.VerifySettings(plain_same=0.95, plain_apart=None)
        for kind in ("different glyphs", "a glyph and its copy"):
            times = []
            for _ in range(args.repeats):  # fresh features each time: nothing kept between
                held = [module.features(np.asarray(p.convert("L")), settings) for p in pictures]
                edited = [module.features(np.asarray(c.convert("L")), settings) for c in copies]
                pairs = (list(itertools.combinations(held, 2))[:args.pairs]
                         if kind == "different glyphs"
                         else [(held[i // len(edits)], c) for i, c in enumerate(edited)])
                module.aligned(*pairs[0])  # warm: OpenCV's first calls
                start = time.perf_counter()
                verdicts = [module.plain_verdict(a, b, settings) for a, b in pairs]
                times.append((time.perf_counter() - start) / len(pairs))
            rows.append({"code": name, "pairs": kind, "n": len(pairs),
                         "ms_a_pair_median": round(float(np.median(times)) * 1000, 1),
                         "ms_a_pair_min": round(min(times) * 1000, 1),
                         "called_one_picture": sum(v is True for v in verdicts)})
    print(table(rows, list(rows[0])))
    report("plain_judge", {"against": args.against, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
