"""What the picture check (simsearch/verify.py) sees in given pairs of pictures: each picture's
keypoints and the pair's agreeing matches, straight and with the first picture mirrored, as
dedupe judges them (default settings).

    python recipes/default_model/check_pairs.py A B [C D ...] [--json out.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simsearch.errors import DecodeError  # noqa: E402
from simsearch.verify import VerifySettings, inliers, mirrored, picture_features  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="pictures, two by two")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if len(args.files) % 2:
        sys.exit(f"give pictures two by two: {len(args.files)} is an odd number")
    s = VerifySettings()
    rows = []
    for a, b in zip(args.files[::2], args.files[1::2]):
        try:
            fa, fb = (picture_features(str(p), s) for p in (a, b))
        except DecodeError as e:
            sys.exit(str(e))
        straight, flipped = inliers(fa, fb, s), inliers(mirrored(fa, s), fb, s)
        judged = min(fa.count, fb.count) >= s.min_keypoints
        verdict = ("cannot tell" if not judged else
                   "same picture" if max(straight, flipped) >= s.min_inliers else "different")
        rows.append({"a": a.name, "b": b.name, "keypoints": [fa.count, fb.count],
                     "agreeing": straight, "agreeing_mirrored": flipped, "verdict": verdict})
        print(f"{a.name}  {b.name}: keypoints {fa.count} / {fb.count}, agreeing {straight} "
              f"(mirrored {flipped}): {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"settings": dataclasses.asdict(s), "pairs": rows},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
