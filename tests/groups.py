"""Dedupe groups made by hand from real files, for the keep-rule, action and page tests."""
from __future__ import annotations

import os

from PIL import Image

from simsearch.files import sha256

from simsearch.dedupe import Group, Member


def member(path, id: int, score: float = 1.0) -> Member:
    """A Member as the catalog would hold it for `path` now."""
    path = str(path)
    st = os.stat(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except OSError:  # a camera RAW file: the product's own decoder
        from simsearch.images import load_image
        picture = load_image(path)
        width, height = picture.width, picture.height
    return Member(id=id, path=path, score=score, sha256=sha256(path), size=st.st_size,
                  width=width, height=height, mtime_ns=st.st_mtime_ns)


def group(paths, kind: str = "near") -> Group:
    members = [member(p, i, score=1.0 - 0.01 * i) for i, p in enumerate(paths)]
    return Group(kind=kind, members=members)
