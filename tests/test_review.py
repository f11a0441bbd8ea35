"""The review page: self-contained, and in a real browser (Debian's chromium driven by
Playwright) it loads without console errors, shows every group and image, and a choice flipped
in it saves as a plan that `apply` accepts."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from groups import group
from simsearch.actions import apply, undo
from simsearch.errors import SimsearchError
from simsearch.plan import Plan, PlanGroup, make_plan
from simsearch.keeprules import parse_rules
from simsearch.planfile import PlanFile
from simsearch.review import render_page, write_review

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _image(path: Path, size, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 20 + seed).convert("RGB").save(path, quality=85)
    return path


@pytest.fixture
def reviewed(tmp_path, monkeypatch):
    """Three groups, one with a hostile file name, and their review page."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    groups = [[_image(photos / "a" / "big.jpg", (120, 90), 1),
               _image(photos / "a" / "small.jpg", (60, 45), 2)],
              [_image(photos / "b" / "x<img src=x onerror=alert(1)>.jpg", (100, 75), 3),
               _image(photos / "b" / "y.jpg", (50, 40), 4),
               _image(photos / "b" / "z.jpg", (40, 30), 5)],
              [_image(photos / "c" / "one.jpg", (90, 60), 6),
               _image(photos / "c" / "two.jpg", (45, 30), 7)]]
    made = [group(g) for g in groups]
    # z.jpg joined on its score alone: the picture check could not judge it
    made[1].members[2] = dataclasses.replace(made[1].members[2], evidence="unchecked")
    plan = make_plan(made, parse_rules(["largest"]))
    page = write_review(plan, tmp_path / "report")
    return tmp_path, plan, page


def test_page_is_one_file_with_its_thumbnails_and_the_plan_inside(reviewed):
    tmp_path, plan, page = reviewed
    html = page.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)  # nothing from a network
    assert "<img src=x" not in html  # a file name never becomes markup
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                html, re.S).group(1))
    assert data["plan"] == plan.to_dict()
    thumbs = data["thumbs"]
    assert len(thumbs) == 7
    for path, rel in thumbs.items():
        with Image.open(page.parent / rel) as im:
            assert im.format == "JPEG" and max(im.size) <= 320
    before = {p: os.stat(page.parent / r).st_mtime_ns for p, r in thumbs.items()}
    write_review(plan, tmp_path / "report")  # a second run reuses the thumbnails
    assert before == {p: os.stat(page.parent / r).st_mtime_ns for p, r in thumbs.items()}
    from simsearch.files import REVIEW_MARK  # so that `simsearch index` never takes them
    assert (page.parent / REVIEW_MARK).is_file()


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, page_path: Path, viewport=(1280, 900)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]},
                            accept_downloads=True)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: errors.append("dialog: " + d.message))
    page.goto(page_path.as_uri())
    page.wait_for_selector("section.card")
    return page, errors


def _wait_for_thumbnails(page, seconds: float = 30):
    """Until every image drawn has loaded. (Polled from here: Playwright's wait_for_function
    evaluates strings in the page, which the page's Content-Security-Policy forbids.)"""
    for _ in range(int(seconds * 10)):
        if page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)"):
            return
        page.wait_for_timeout(100)
    raise AssertionError("thumbnails did not load")


def test_in_a_browser_flip_choices_save_and_apply(reviewed, browser):
    tmp_path, plan, page_path = reviewed
    page, errors = _open(browser, page_path)
    assert page.locator("section.card").count() == 3
    assert page.locator("figure").count() == 7
    _wait_for_thumbnails(page)
    assert page.locator("#n-groups").inner_text() == "3"
    assert page.locator("#n-act").inner_text() == "3"  # z.jpg, not confirmed, is kept
    assert "kept: 120x90, largest" in page.locator("section.card").first.inner_text()
    # the file the picture check could not confirm is marked, in its card and in the header
    assert page.locator("#n-unconfirmed").inner_text() == "1"
    doubted = page.locator("section.card").nth(1)
    assert "1 not confirmed by the picture check" in doubted.locator(".card-head").inner_text()
    assert "not confirmed by the picture check" in doubted.locator(
        f'figure:has(div.path[title="{tmp_path / "photos" / "b" / "z.jpg"}"])').inner_text()
    assert page.locator("figure .unconfirmed").count() == 1
    z = doubted.locator(f'figure:has(div.path[title="{tmp_path / "photos" / "b" / "z.jpg"}"])')
    y = doubted.locator(f'figure:has(div.path[title="{tmp_path / "photos" / "b" / "y.jpg"}"])')
    assert z.locator(".badge").inner_text() == "KEEP"
    assert "not confirmed by the picture check to be a copy" in z.inner_text()
    # keeping another copy instead still keeps the file not confirmed ...
    y.locator("button.keep-this").click()
    assert z.locator(".badge").inner_text() == "KEEP" and y.locator(".badge").inner_text() == "KEEP"
    # (x.jpg, holding y's picture 1.9 times as large, is kept too, until the person says it is a
    # copy: the finer rule, trials/keep-finer-rule.md)
    x = doubted.locator("figure").first
    assert "holds the picture at 188% of its size" in x.inner_text()
    assert page.locator("#n-act").inner_text() == "2"
    x.locator("button.act-too").click()
    assert x.locator(".badge").inner_text() == "ACT ON"
    assert page.locator("#n-act").inner_text() == "3"  # x.jpg now, instead of y.jpg
    # ... and it cannot be kept in place of the confirmed copies ...
    assert z.locator("button.keep-this").is_disabled()
    # ... until the person looks and calls it a copy
    z.locator("button.act-too").click()
    assert z.locator(".badge").inner_text() == "ACT ON" and page.locator("#n-act").inner_text() == "4"
    assert z.locator("button.act-too").count() == 0 and not z.locator("button.keep-this").is_disabled()
    # group 1: keep the small one instead; group 2 as flipped above; group 3: not duplicates
    small = str(tmp_path / "photos" / "a" / "small.jpg")
    first = page.locator("section.card").nth(0)
    first.locator(f'figure:has(div.path[title="{small}"])').locator("button.keep-this").click()
    big = first.locator(f'figure:has(div.path[title="{tmp_path / "photos" / "a" / "big.jpg"}"])')
    assert big.locator(".badge").inner_text() == "KEEP"  # (finer: kept, until called a copy)
    big.locator("button.act-too").click()
    page.locator("section.card").nth(2).locator("button.not-duplicates").click()
    assert page.locator("#n-act").inner_text() == "3"
    assert page.locator("#n-changed").inner_text() == "3"
    shot = tmp_path / "review.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nreview page screenshot: {shot}")
    with page.expect_download() as download:
        page.locator("#save").click()
    saved = tmp_path / "plan-from-page.json"
    download.value.save_as(saved)
    assert errors == []

    edited = Plan.load(saved)  # refused if it acted on z.jpg without the person's word
    assert edited.source == "review page" and not edited.act_on_unconfirmed
    assert edited.groups[0].keep == [small] and edited.groups[2].decision == "not-duplicates"
    b = tmp_path / "photos" / "b"
    assert edited.groups[1].confirmed == [str(b / "x<img src=x onerror=alert(1)>.jpg"),
                                          str(b / "z.jpg")]
    assert edited.groups[1].keep == [str(b / "y.jpg")]
    report = apply(edited, "trash", tmp_path / "journal")
    assert not report.skipped, report.skipped
    assert sorted(o.path for o in report.done) == sorted(
        [str(tmp_path / "photos" / "a" / "big.jpg"), str(b / "x<img src=x onerror=alert(1)>.jpg"),
         str(b / "z.jpg")])
    assert report.not_duplicates == [[f.path for f in plan.groups[2].files]]
    assert os.path.exists(small) and os.path.exists(b / "y.jpg")
    assert len(undo(tmp_path / "journal").restored) == 3


def test_a_plan_made_to_act_on_unconfirmed_files_lets_the_page_act_on_them(tmp_path, browser,
                                                                        monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    files = [_image(tmp_path / "p" / n, size, seed)
             for n, size, seed in (("x.jpg", (100, 75), 3), ("y.jpg", (50, 40), 4),
                                   ("z.jpg", (40, 30), 5))]
    made = group(files)
    made.members[2] = dataclasses.replace(made.members[2], evidence="unchecked")
    plan = make_plan([made], parse_rules(["largest"]), act_on_unconfirmed=True)
    assert plan.groups[0].act_on == [str(files[1]), str(files[2])]
    page, errors = _open(browser, write_review(plan, tmp_path / "report"))
    z = page.locator(f'figure:has(div.path[title="{files[2]}"])')
    y = page.locator(f'figure:has(div.path[title="{files[1]}"])')
    assert z.locator(".badge").inner_text() == "ACT ON" and z.locator("button.act-too").count() == 0
    # keeping y instead acts on the others, z included: the plan was made to
    y.locator("button.keep-this").click()  # (x, holding y's picture 1.9 times larger, kept)
    assert z.locator(".badge").inner_text() == "ACT ON" and page.locator("#n-act").inner_text() == "1"
    assert not z.locator("button.keep-this").is_disabled()
    assert errors == []


def test_a_copy_called_in_a_group_of_unconfirmed_files_makes_a_plan_apply_takes(
        tmp_path, browser, monkeypatch):
    """Every file of a group unconfirmed (plain pictures): the page keeps them all; "It is a
    copy" on one acts on it, keeping the first, which the person compared it with, so it
    counts as confirmed too (apply refuses a plan keeping only unconfirmed files)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    files = [_image(tmp_path / "p" / n, size, seed)
             for n, size, seed in (("x.jpg", (100, 75), 3), ("y.jpg", (50, 40), 4))]
    made = group(files)
    made.members[:] = [dataclasses.replace(m, evidence="unchecked") for m in made.members]
    plan = make_plan([made], parse_rules(["largest"]))
    assert plan.groups[0].decision == "keep-all"
    page, errors = _open(browser, write_review(plan, tmp_path / "report"))
    y = page.locator(f'figure:has(div.path[title="{files[1]}"])')
    y.locator("button.act-too").click()
    assert y.locator(".badge").inner_text() == "ACT ON"
    with page.expect_download() as download:
        page.locator("#save").click()
    download.value.save_as(tmp_path / "saved.json")
    assert errors == []
    saved = Plan.load(tmp_path / "saved.json")
    assert saved.groups[0].keep == [str(files[0])]
    assert sorted(saved.groups[0].confirmed) == sorted(map(str, files))
    report = apply(saved, "trash", tmp_path / "journal")
    assert [o.path for o in report.done] == [str(files[1])] and not report.skipped


def _badges(fig, files) -> list[str]:
    """Each file's badge on the page (KEEP, ACT ON), in the order of `files`."""
    return [fig[n].locator(".badge").inner_text() for n in files]


def test_the_page_keeps_a_file_holding_the_picture_finer_than_the_one_kept(tmp_path, browser):
    """A collage kept and a full-size photo in it kept too (finer): keeping a small copy
    instead on the page still keeps the photo (and the collage, which holds the small copy's
    picture twice as large); keeping the photo acts on the smaller ones."""
    files = {}
    for name, size, picture in (("collage.png", (810, 300), (1, 0, 0, 1)),
                                ("IMG_1.jpg", (1200, 900), (3, 0, 0, 3)),
                                ("half.jpg", (405, 150), (0.5, 0, 0, 0.5))):
        files[name] = _image(tmp_path / "p" / name, size, len(files))
    made = group(list(files.values()))
    maps = {"collage.png": ((1, 0, 0, 1), 1.0), "IMG_1.jpg": ((3, 0, 0, 3), 0.5),
            "half.jpg": ((0.5, 0, 0, 0.5), 1.0)}
    made.members[:] = [dataclasses.replace(m, evidence="checked", picture=maps[n][0],
                                           extent=maps[n][1]) for m, n in zip(made.members, files)]
    plan = make_plan([made], parse_rules(["largest"]))
    assert plan.groups[0].act_on == [str(files["half.jpg"])]
    page, errors = _open(browser, write_review(plan, tmp_path / "report"))
    fig = {n: page.locator(f'figure:has(div.path[title="{p}"])') for n, p in files.items()}
    fig["half.jpg"].locator("button.keep-this").click()
    assert _badges(fig, files) == ["KEEP", "KEEP", "KEEP"]
    assert "holds the picture at 600% of its size" in fig["IMG_1.jpg"].inner_text()
    fig["IMG_1.jpg"].locator("button.keep-this").click()
    assert _badges(fig, files) == ["ACT ON", "KEEP", "ACT ON"]
    assert errors == []


def test_the_page_keeps_a_captioned_copy_when_a_person_keeps_the_photo(tmp_path, browser):
    """The plan keeps a meme (a band holding a caption above the photo) and the photo; keeping
    the photo alone on the page still keeps the meme (its caption is something the photo
    lacks), acts on a half-size copy, and offers "It is a copy" on the meme."""
    files = {}
    for name, size in (("meme.jpg", (1000, 950)), ("photo.jpg", (1000, 800)),
                       ("half.jpg", (500, 400))):
        files[name] = _image(tmp_path / "p" / name, size, len(files))
    facts = {"meme.jpg": ((1, 0, 0, 1), 1.25, (0, 150 / 950, 0, 0) + (0,) * 4),
             "photo.jpg": ((1, 0, 0, 1), 1.0, None), "half.jpg": ((0.5, 0, 0, 0.5), 1.0, None)}
    plan_files = [PlanFile(path=str(p), size=p.stat().st_size, mtime_ns=p.stat().st_mtime_ns,
                           sha256="0" * 64, width=Image.open(p).width,
                           height=Image.open(p).height, format="jpeg",
                           date="2020-01-01T00:00:00", date_source="mtime", evidence="checked",
                           picture=facts[n][0], extent=facts[n][1], bars=facts[n][2])
                  for n, p in files.items()]
    group = PlanGroup("near", plan_files[0].path, 0.95, plan_files,
                      keep=[str(files["meme.jpg"]), str(files["photo.jpg"])],
                      act_on=[str(files["half.jpg"])])
    page, errors = _open(browser, write_review(Plan([group], keep_rules=["largest"]),
                                               tmp_path / "report"))
    fig = {n: page.locator(f'figure:has(div.path[title="{p}"])') for n, p in files.items()}
    fig["photo.jpg"].locator("button.keep-this").click()
    assert _badges(fig, files) == ["KEEP", "KEEP", "ACT ON"]
    assert "a band along its border that holds something" in fig["meme.jpg"].inner_text()
    fig["meme.jpg"].locator("button.act-too").click()
    assert _badges(fig, files) == ["ACT ON", "KEEP", "ACT ON"]
    fig["half.jpg"].locator("button.keep-this").click()  # the half: both others hold more
    assert fig["half.jpg"].locator(".badge").inner_text() == "KEEP"
    assert errors == []


def test_five_thousand_groups_page_through(tmp_path, browser):
    thumb = _image(tmp_path / "report" / "thumbs" / "t.jpg", (160, 120), 9)
    groups = []
    for i in range(5000):
        files = [PlanFile(path=f"/photos/{i}/{k}.jpg", size=1000 * (3 - k), mtime_ns=0,
                          sha256="0" * 64, width=40 * (3 - k), height=30 * (3 - k),
                          format="jpeg", date="2020-01-01T00:00:00", date_source="mtime",
                          score=1.0 - 0.01 * k) for k in range(3)]
        groups.append(PlanGroup("near", files[0].path, 0.98, files, keep=[files[0].path],
                                act_on=[f.path for f in files[1:]]))
    plan = Plan(groups, keep_rules=["largest"])
    thumbs = {f.path: "thumbs/t.jpg" for g in groups for f in g.files}
    page_path = tmp_path / "report" / "index.html"
    page_path.write_text(render_page(plan, thumbs))
    page, errors = _open(browser, page_path)
    assert page.locator("section.card").count() == 50
    assert page.locator("#n-groups").inner_text() == "5000"
    assert page.locator("#n-files").inner_text() == "15000"
    assert not page.locator("#unconfirmed").is_visible()  # nothing to doubt: no such count
    for _ in range(3):
        page.locator("#nav-top button.next").click()
    assert page.locator("#nav-top .pageinfo").inner_text() == "page 4 of 100 (groups 151-200)"
    assert page.locator("section.card").first.get_attribute("data-group") == "150"
    assert errors == [], thumb


def test_a_link_planted_in_the_report_folder_is_never_written_through(tmp_path):
    victim = _image(tmp_path / "victim.jpg", (40, 30), 1)
    before = victim.read_bytes()
    photo = _image(tmp_path / "photos" / "p.jpg", (60, 45), 2)
    plan = make_plan([group([photo, _image(tmp_path / "photos" / "q.jpg", (30, 20), 3)])],
                     parse_rules([]))
    report = tmp_path / "report"
    report.mkdir()
    from simsearch.files import REVIEW_MARK, REVIEW_TEXT
    (report / REVIEW_MARK).write_text(REVIEW_TEXT)  # an earlier page's folder, a link planted
    os.symlink(tmp_path, report / "thumbs")
    with pytest.raises(SimsearchError, match="not a folder"):
        write_review(plan, report)
    os.unlink(report / "thumbs")
    (report / "thumbs").mkdir()
    from simsearch.review import thumb_name
    os.symlink(victim, report / "thumbs" / f".{thumb_name(str(photo))}.{os.getpid()}.tmp")
    with pytest.raises(SimsearchError, match="cannot write the thumbnail"):
        write_review(plan, report)
    assert victim.read_bytes() == before


def test_a_review_page_never_goes_into_a_folder_holding_other_files(tmp_path):
    """--out a photo folder (or one with an album's own index.html) is refused before any
    work: the page would replace index.html and its mark would drop the photos from the
    index. A folder holding only the plan shown, or an earlier page, is taken."""
    from click.testing import CliRunner

    from simsearch.cli import main
    from simsearch.files import REVIEW_MARK, walk_images
    photo = _image(tmp_path / "photos" / "p.jpg", (60, 45), 2)
    album = tmp_path / "photos" / "index.html"
    album.write_text("<h1>my album</h1>")
    plan = make_plan([group([photo, _image(tmp_path / "photos" / "q.jpg", (30, 20), 3)])],
                     parse_rules([]))
    out = tmp_path / "pages"
    out.mkdir()
    plan.save(out / "plan.json")
    runner = CliRunner()
    refused = runner.invoke(main, ["review", "--plan", str(out / "plan.json"), "--out",
                                   str(tmp_path / "photos"), "-q"])
    assert refused.exit_code == 2 and "holds other files and no review page" in refused.output
    assert album.read_text() == "<h1>my album</h1>"
    assert not (tmp_path / "photos" / REVIEW_MARK).exists()
    with pytest.raises(SimsearchError, match="holds other files"):
        write_review(plan, tmp_path / "photos")
    for _ in range(2):  # beside its plan, then again over the page it made
        made = runner.invoke(main, ["review", "--plan", str(out / "plan.json"), "--out",
                                    str(out), "-q"])
        assert made.exit_code == 0, made.output
    # a page's thumbnails are passed over, even with its folder named as the photo folder;
    # a photo beside a page (an earlier simsearch allowed that) stays a photo, and a mark a
    # person made (empty) marks nothing
    problems = []
    assert list(walk_images([out], on_problem=problems.append)) == []
    assert [p.path for p in problems] == [str(out / "thumbs")]
    shutil.copy(photo, out / "beside.jpg")
    assert [f.path for f in walk_images([out])] == [str(out / "beside.jpg")]
    (tmp_path / "photos" / "thumbs").mkdir()
    shutil.copy(photo, tmp_path / "photos" / "thumbs" / "t.jpg")
    (tmp_path / "photos" / REVIEW_MARK).write_text("")
    assert len(list(walk_images([tmp_path / "photos"]))) == 3
    with pytest.raises(SimsearchError, match="holds other files"):
        write_review(plan, tmp_path / "photos")


def test_the_page_keeps_a_file_of_several_pages_whichever_copy_a_person_keeps(tmp_path, browser):
    """A scan of three pages beside two JPEGs of its cover (a review found "Keep this one
    instead" acted on the scan, session 31): keeping the other JPEG still keeps the scan, says
    so, and shows its pages; "It is a copy" acts on it all the same."""
    photos = tmp_path / "p"
    cover, cover2 = _image(photos / "cover.jpg", (240, 180), 1), _image(photos / "cover2.jpg",
                                                                        (200, 150), 2)
    scan = photos / "scan.tif"
    pages = [Image.effect_noise((120, 90), 20 + s).convert("RGB") for s in (1, 5, 6)]
    pages[0].save(scan, save_all=True, append_images=pages[1:])
    files = {"cover.jpg": cover, "scan.tif": scan, "cover2.jpg": cover2}
    made = group(list(files.values()))
    made.members[:] = [dataclasses.replace(m, evidence="checked") for m in made.members]
    plan = make_plan([made], parse_rules(["largest"]))
    assert plan.groups[0].keep == [str(cover), str(scan)]
    page, errors = _open(browser, write_review(plan, tmp_path / "report"))
    fig = {n: page.locator(f'figure:has(div.path[title="{p}"])') for n, p in files.items()}
    assert "3 pages (the first shown)" in fig["scan.tif"].inner_text()
    fig["cover2.jpg"].locator("button.keep-this").click()
    assert _badges(fig, files) == ["ACT ON", "KEEP", "KEEP"]
    assert "holds 3 pages, and only the first was compared" in fig["scan.tif"].inner_text()
    fig["scan.tif"].locator("button.act-too").click()
    assert _badges(fig, files) == ["ACT ON", "ACT ON", "KEEP"]
    assert errors == []


def test_a_picture_opens_the_file_itself_at_full_size(reviewed, browser):
    """A newcomer's case (session 31): a changed line does not show at thumbnail size, and the
    page had no way to see the file. Each thumbnail links the file (its name escaped: the
    hostile name stays a name), opened in a new tab."""
    from urllib.parse import unquote
    tmp_path, plan, page_path = reviewed
    page, errors = _open(browser, page_path)
    paths = [f.path for g in plan.groups for f in g.files]
    hostile = next(p for p in paths if "onerror" in p)
    link = page.locator(f'figure:has(div.path[title="{hostile}"]) a.full')
    href = link.get_attribute("href")
    assert href.startswith("file:///") and "<" not in href and unquote(href) == "file://" + hostile
    with page.context.expect_page() as opened:
        link.click()
    assert unquote(opened.value.url) == "file://" + hostile
    assert "simsearch undo PLAN.journal" in page.locator("#note").inner_text()
    assert errors == []


def test_a_name_that_is_not_utf8_links_its_file_and_the_page_draws_on(tmp_path, browser):
    """A review's case (session 31): a Latin-1 name came to the page as a lone surrogate and
    the link's escaping threw, so the rest of the page never drew."""
    from urllib.parse import unquote_to_bytes
    folder = tmp_path / "p"
    latin1 = Path(os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9 #1.jpg")))
    files = [_image(latin1, (120, 90), 1), _image(folder / "small.jpg", (60, 45), 2)]
    others = [_image(folder / "z" / "big.jpg", (120, 90), 3),
              _image(folder / "z" / "small.jpg", (60, 45), 4)]
    plan = make_plan([group(files), group(others)], parse_rules(["largest"]))
    page, errors = _open(browser, write_review(plan, tmp_path / "report"))
    href = page.locator("a.full").first.get_attribute("href")
    assert unquote_to_bytes(href) == b"file://" + os.fsencode(latin1)
    assert page.locator("section.card").count() == 2  # the second group drawn too
    assert errors == []


def test_a_picture_with_transparency_shows_on_a_chequered_ground(tmp_path, browser):
    """A newcomer's case (session 32): white logos on a clear ground were drawn as blank white
    boxes (transparency composited on white), so a person could not tell what they were. Their
    thumbnails keep the transparency (PNG) and the page draws them on a chequered ground; an
    opaque picture's thumbnail is a JPEG, as before."""
    photos = tmp_path / "p"
    photos.mkdir()
    logo = Image.new("RGBA", (200, 150), (0, 0, 0, 0))
    for x in range(60, 140):
        for y in range(40, 110):
            logo.putpixel((x, y), (255, 255, 255, 255))
    logo.save(photos / "logo-white.png")
    logo.convert("LA").save(photos / "logo-grey.png")
    photo = _image(photos / "photo.jpg", (200, 150), 3)
    Image.open(photo).convert("RGBA").save(photos / "opaque.png")  # alpha, none of it clear
    made = group([photos / "logo-white.png", photos / "logo-grey.png", photo,
                  photos / "opaque.png"])
    plan = make_plan([made], parse_rules(["largest"]))
    page_path = write_review(plan, tmp_path / "report")
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                page_path.read_text(), re.S).group(1))
    thumbs = data["thumbs"]
    for name in ("logo-white.png", "logo-grey.png"):
        with Image.open(page_path.parent / thumbs[str(photos / name)]) as im:
            assert im.format == "PNG" and im.mode == "RGBA"
            alpha = im.getchannel("A")
            assert alpha.getextrema() == (0, 255)  # the clear ground and the logo, as they are
            assert im.getpixel((im.width // 2, im.height // 2)) == (255, 255, 255, 255)
    for name in (photo, photos / "opaque.png"):
        with Image.open(page_path.parent / thumbs[str(name)]) as im:
            assert im.format == "JPEG"
    page, errors = _open(browser, page_path)
    _wait_for_thumbnails(page)
    classes = {name: page.locator(f'figure:has(div.path[title="{photos / name}"]) img')
               .get_attribute("class") for name in ("logo-white.png", "logo-grey.png", "photo.jpg")}
    assert classes == {"logo-white.png": "thumb clear", "logo-grey.png": "thumb clear",
                       "photo.jpg": "thumb"}
    ground = page.locator("img.thumb.clear").first.evaluate(
        "i => getComputedStyle(i).backgroundImage")
    assert "conic-gradient" in ground
    assert errors == []


def test_a_file_with_a_hard_link_outside_the_index_frees_no_space(tmp_path, browser):
    """Left alone in session 33: the plan's reclaimable bytes counted a file acted on whose
    bytes a hard link outside the index still holds. The plan, the command's summary and the
    page count it as freeing nothing, and say why."""
    files = {name: _image(tmp_path / "p" / name, size, 0)
             for name, size in (("big.jpg", (400, 300)), ("small.jpg", (200, 150)),
                                ("other.jpg", (100, 75)))}
    (tmp_path / "outside").mkdir()
    os.link(files["small.jpg"], tmp_path / "outside" / "small_link.jpg")
    plan = make_plan([group(list(files.values()))], parse_rules(["largest"]))
    g = plan.groups[0]
    assert g.act_on == [str(files["small.jpg"]), str(files["other.jpg"])]
    assert {f.path: f.links for f in g.files}[str(files["small.jpg"])] == 2
    assert plan.reclaimable() == os.path.getsize(files["other.jpg"]) and plan.linked() == 1
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert again.reclaimable() == plan.reclaimable()
    assert json.loads((tmp_path / "plan.json").read_text())["summary"]["reclaimable_bytes"] == \
        os.path.getsize(files["other.jpg"])
    page, errors = _open(browser, write_review(plan, tmp_path / "report"))
    shown = page.locator("#n-bytes").inner_text()
    size = os.path.getsize(files["other.jpg"])
    assert shown == (f"{size / 1000:.1f} KB" if size >= 1000 else f"{size} bytes"), shown
    assert size != os.path.getsize(files["small.jpg"])
    assert errors == []
