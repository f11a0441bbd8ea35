"""The review page: one self-contained HTML file and a folder of JPEG thumbnails beside it.

No server and no network: the plan is embedded in the page as JSON, the page's script and
style are inline, and the Content-Security-Policy forbids loading anything but the thumbnails
beside it. Cards are drawn from the JSON one page of groups at a time, so 5,000 groups cost
what 50 do; thumbnails load lazily. The person reviewing can keep another file, keep a whole
group, or mark it "not duplicates", and save the result as a plan file (a download made in
the page) that `simsearch apply` takes like any other, re-checking every file.

Thumbnails are made from the real files through simsearch's decoder (EXIF orientation
applied, JPEGs decoded at reduced size) and named by a hash of the path, so a second run
reuses them.
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from simsearch.errors import SimsearchError
from simsearch.files import REVIEW_MARK, REVIEW_TEXT, json_text, marked, no_ones
from simsearch.plan import Plan

__all__ = ["THUMB_SIZE", "PAGE_SIZE", "write_review", "review_folder_problem", "make_thumbnails",
           "render_page"]

THUMB_SIZE = 320   # pixels, longer side: sharp on a 2x screen at the page's 160 px width
PAGE_SIZE = 50     # groups drawn at a time
Progress = Callable[[int, int], None]


def review_folder_problem(folder: str | os.PathLike, besides: str | os.PathLike | None = None
                          ) -> str | None:
    """Why `folder` cannot take a review page, or None: it must be new, empty (but for the plan
    file `besides`) or an earlier review page's (its mark), since the page writes index.html
    there and the mark sets the whole folder aside from indexing (a photo folder, an album's
    own index.html)."""
    folder = Path(folder)
    try:
        if marked(folder, REVIEW_MARK) or not os.path.lexists(folder):
            return None
        if not folder.is_dir():
            return f"{folder} is not a folder"
        mine = {os.path.abspath(besides)} if besides is not None else set()
        if any(os.path.abspath(folder / name) not in mine and not no_ones(name)
               for name in os.listdir(folder)):
            return (f"{folder} holds other files and no review page (the page writes index.html "
                    f"and thumbs/ there): give a new or empty folder with --out")
    except OSError as e:
        return f"{folder}: cannot read it ({e.strerror or e})"
    return None


def write_review(plan: Plan, folder: str | os.PathLike, progress: Progress | None = None,
                 workers: int | None = None, besides: str | os.PathLike | None = None) -> Path:
    """Write FOLDER/index.html and FOLDER/thumbs/; return the page's path. FOLDER must be new,
    empty (but for the plan file `besides`) or an earlier page's (`review_folder_problem`)."""
    folder = Path(folder)
    problem = review_folder_problem(folder, besides=besides)
    if problem:
        raise SimsearchError(problem)
    try:
        (folder / "thumbs").mkdir(parents=True, exist_ok=True)
        mark = folder / REVIEW_MARK  # `simsearch index` never takes the thumbnails for photos
        if not marked(folder, REVIEW_MARK):
            mark.write_text(f"{REVIEW_TEXT}: its thumbnails (thumbs/) are not photos "
                            f"(simsearch index does not enter them)\n", encoding="utf-8")
        if not stat.S_ISDIR(os.lstat(folder / "thumbs").st_mode):  # never written through a link
            raise OSError(f"{folder / 'thumbs'} is not a folder (a link?)")
    except OSError as e:
        raise SimsearchError(f"{folder}: cannot write the review page ({e.strerror or e})") from e
    paths = [f.path for g in plan.groups for f in g.files]
    thumbs = make_thumbnails(paths, folder / "thumbs", progress=progress, workers=workers)
    page = folder / "index.html"
    _write(page, render_page(plan, {p: f"thumbs/{name}" for p, name in thumbs.items()}))
    return page


def thumb_name(path: str, clear: bool = False) -> str:
    """The thumbnail's file name: a JPEG, or a PNG for a picture with transparency (`clear`),
    which the page shows on a chequered ground."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:24] + (".png" if clear else ".jpg")


def make_thumbnails(paths: list[str], folder: Path, progress: Progress | None = None,
                    workers: int | None = None) -> dict[str, str]:
    """A JPEG thumbnail per path that decodes (others get none: the page says so). Returns
    {path: file name in folder}. An existing thumbnail newer than its file is kept."""
    from simsearch.images import load_image
    from simsearch.errors import DecodeError

    def one(path: str) -> str | None:
        for name in (thumb_name(path), thumb_name(path, clear=True)):
            try:
                if (folder / name).stat().st_mtime_ns >= os.stat(path).st_mtime_ns:
                    return name
            except OSError:
                pass
        try:
            picture = load_image(path, target=THUMB_SIZE, alpha=True)
        except DecodeError:
            return None
        image = picture.image
        image.thumbnail((THUMB_SIZE, THUMB_SIZE))
        # transparency kept as it is (white on a clear ground is no blank); an opaque RGBA
        # picture is a JPEG like any other
        clear = image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < 255
        if image.mode == "RGBA" and not clear:
            image = image.convert("RGB")
        name = thumb_name(path, clear)
        out = folder / name
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644),
                      "wb") as fh:
                image.save(fh, "PNG") if clear else image.save(fh, "JPEG", quality=82)
            os.replace(tmp, out)
        except OSError as e:
            raise SimsearchError(f"{out}: cannot write the thumbnail ({e.strerror or e})") from e
        return name

    unique = list(dict.fromkeys(paths))
    out: dict[str, str] = {}
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 2)) as pool:
        for done, (path, name) in enumerate(zip(unique, pool.map(one, unique)), 1):
            if name:
                out[path] = name
            if progress is not None:
                progress(done, len(unique))
    return out


def render_page(plan: Plan, thumbs: dict[str, str], page_size: int = PAGE_SIZE) -> str:
    """The page's HTML with the plan and the thumbnail names embedded."""
    data = {"plan": plan.to_dict(), "thumbs": thumbs, "pageSize": page_size}
    # inside <script>, "<" must never start a tag: every one escaped, JSON stays the same
    payload = json_text(data).replace("<", "\\u003c")
    template = resources.files("simsearch").joinpath("review.html").read_text(encoding="utf-8")
    return template.replace("/*DATA*/null", payload, 1)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644),
                  "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise SimsearchError(f"{path}: cannot write the review page ({e.strerror or e})") from e
