"""The review page at size: 500 and 5,000 groups of 3 files (synthetic plans, one shared
thumbnail), opened in headless chromium: page size, time to the first cards drawn, time to
draw the next page; and thumbnail making on generated 12 MP JPEGs.

    python benchmarks/review.py --json benchmarks/results/review.json

Needs playwright and Debian's chromium (apt-get install -y chromium).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import report, table


def synthetic_plan(groups: int):
    from simsearch.plan import Plan, PlanGroup
    from simsearch.planfile import PlanFile

    out = []
    for i in range(groups):
        files = [PlanFile(path=f"/home/user/Pictures/{i // 100}/IMG_{i:05d}_{k}.jpg",
                          size=3_000_000 - 10_000 * k, mtime_ns=1_600_000_000_000_000_000 + i,
                          sha256=f"{i:064x}", width=4032 // (k + 1), height=3024 // (k + 1),
                          format="jpeg", date="2020-01-01T00:00:00", date_source="exif",
                          score=1.0 - 0.01 * k, reason="kept: 4032x3024, largest" if k == 0
                          else f"{4032 // (k + 1)}x{3024 // (k + 1)} against the kept 4032x3024")
                 for k in range(3)]
        out.append(PlanGroup("near", files[0].path, 0.97, files, keep=[files[0].path],
                             act_on=[f.path for f in files[1:]]))
    return Plan(out, keep_rules=["largest"], threshold=0.84)


def page_timings(browser, folder: Path, groups: int) -> dict:
    from simsearch.review import render_page

    plan = synthetic_plan(groups)
    start = time.perf_counter()
    html = render_page(plan, {f.path: "thumbs/t.jpg" for g in plan.groups for f in g.files})
    render_s = time.perf_counter() - start
    page_path = folder / f"page{groups}.html"
    page_path.write_text(html)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_path.as_uri())
    page.wait_for_selector("section.card")
    loaded_ms = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    flips = page.evaluate("""() => { const t = [];
        for (let i = 0; i < 5; i++) { const s = performance.now();
          document.querySelector('#nav-top button.next').click(); t.push(performance.now() - s); }
        return t; }""")
    page.close()
    return {"groups": groups, "files": groups * 3, "html_mb": len(html.encode()) / 1e6,
            "render_s": render_s, "first_cards_ms": loaded_ms,
            "next_page_ms": sorted(flips)[len(flips) // 2], "errors": len(errors)}


def thumbnail_rate(folder: Path, n: int) -> dict:
    from simsearch.demo import picture
    from simsearch.review import make_thumbnails

    paths = []
    for i in range(n):
        path = folder / f"photo{i}.jpg"
        picture(i, (4032, 3024)).save(path, quality=90)
        paths.append(str(path))
    out = folder / "thumbs"
    out.mkdir()
    start = time.perf_counter()
    made = make_thumbnails(paths, out)
    seconds = time.perf_counter() - start
    return {"photos": n, "megapixels": 12.2, "thumbnails": len(made), "seconds": seconds,
            "per_s": len(made) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--photos", type=int, default=40, help="12 MP JPEGs to thumbnail")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "thumbs").mkdir()
        from simsearch.demo import picture
        picture(0, (320, 240)).save(folder / "thumbs" / "t.jpg")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            pages = [page_timings(browser, folder, g) for g in args.groups]
            browser.close()
        (folder / "photos").mkdir()
        thumbs = thumbnail_rate(folder / "photos", args.photos)
    print(table(pages, ["groups", "files", "html_mb", "render_s", "first_cards_ms",
                        "next_page_ms", "errors"]))
    print(table([thumbs], ["photos", "megapixels", "thumbnails", "seconds", "per_s"]))
    report("review", {"pages": pages, "thumbnails": thumbs}, args.json)


if __name__ == "__main__":
    main()
