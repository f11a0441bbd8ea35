"""Short, seeded fuzz runs: mutated image bytes through the decoder, mutated manifests and
catalogs through the index's load path. Every input ends in success or a `SimsearchError`
(a `DecodeError` for pictures): never another exception, never a hang."""
from __future__ import annotations

import io
import json
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import make_picture
from simsearch import open_index
from simsearch.catalog import Catalog
from simsearch.config import ModelConfig
from simsearch.errors import DecodeError, SimsearchError
from simsearch.images import load_image
from simsearch.store import CATALOG, MANIFEST, VECTORS, Store
from simsearch.integrity import check_index
from simsearch.vectors import VectorIndex

FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class _Hang(BaseException):
    """Not an Exception: nothing under test can catch it and call it a decode error."""


@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise _Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _seed_images() -> dict[str, bytes]:
    picture = make_picture(90, (48, 36))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [make_picture(91 + i, (24, 18)).convert("P") for i in range(3)]
    grey16 = Image.fromarray(np.arange(24 * 18, dtype=np.uint16).reshape(18, 24) * 99)
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=40)
    return {
        "jpeg": _encoded(picture, "JPEG", quality=80),
        "jpeg_progressive_exif": _encoded(picture, "JPEG", progressive=True, exif=exif),
        "png": _encoded(picture, "PNG"),
        "png_palette_alpha": _encoded(picture.convert("P"), "PNG", transparency=3),
        "png_16bit": _encoded(grey16, "PNG"),
        "gif": _encoded(picture.convert("P"), "GIF"),
        "gif_animated": gif.getvalue(),
        "webp": _encoded(picture, "WEBP", quality=70),
        "webp_lossless": _encoded(picture, "WEBP", lossless=True),
    }


SEEDS = _seed_images()


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """A seed file with a few byte-level mutations, biased towards the header."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        head = min(len(data) - 1, 96)
        pos = draw(st.one_of(st.integers(0, head), st.integers(0, len(data) - 1)))
        kind = draw(st.sampled_from(["flip", "byte", "cut", "insert", "repeat", "zero"]))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "repeat":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
        else:
            data[pos:pos + draw(st.integers(1, 16))] = bytes(draw(st.integers(1, 16)))
    return name, bytes(data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_seed_images_decode():
    for name, data in SEEDS.items():
        assert Image.open(io.BytesIO(data)).size, name


@FUZZ
@given(case=mutated(SEEDS), target=st.sampled_from([None, 32, 64]))
def test_decoding_mutated_images(scratch, case, target):
    name, data = case
    path = scratch / f"x.{name.split('_')[0]}"
    path.write_bytes(data)
    with time_limit(10):
        try:
            picture = load_image(path, target=target)
        except DecodeError as e:
            assert e.path == path and e.reason and "\n" not in e.reason
            return
    assert picture.image.mode == "RGB" and min(picture.image.size) >= 1
    assert picture.width >= 1 and picture.height >= 1


# -- index folders ------------------------------------------------------------------------------
DIM = 8
QUERY = np.eye(DIM, dtype=np.float32)[:2]


def _build_index(folder: Path) -> None:
    """A small, valid index folder made without a model: six vectors, two of them copies."""
    folder.mkdir(parents=True)
    config = ModelConfig(dim=DIM, input_size=32, pooling="avg")
    record = {"name": "fuzz-model", "id": "f" * 64, "config": config.to_dict()}
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, DIM)).astype(np.float32)
    vectors[5] = vectors[4]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = Catalog(folder / CATALOG)
    with catalog.transaction():
        catalog.set_model(json.dumps(record))
        catalog.set_meta("scoring", "cosine")
        for i, vector in enumerate(vectors):
            sha = f"{min(i, 4):064x}"
            catalog.insert(f"/photos/p{i}.jpg", 1000 + i, 10**18 + i, sha, 32, 24, vector, 0.0)
    store = VectorIndex(DIM)
    for ids, batch in catalog.vectors():
        store.add(ids, batch)
    Store(folder).commit(catalog, store, record, "cosine")
    catalog.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("index") / "pristine"
    _build_index(folder)
    assert not (folder / (CATALOG + "-wal")).exists()
    return folder


def _exercise(folder: Path) -> None:
    """The load path of every read command, then check and repair, then a read again."""
    def reads():
        index = open_index(folder)
        index.count()
        for matches in index.search_vectors(QUERY, k=3):
            assert all(isinstance(m.path, str) for m in matches)
        index.duplicates(threshold=0.5)
        index.vectors()

    for step in (reads, lambda: check_index(folder), lambda: check_index(folder, repair=True), reads):
        try:
            step()
        except SimsearchError as e:
            assert str(e)


def test_the_pristine_index_reads(pristine):
    index = open_index(pristine)
    assert index.count() == 6 and check_index(pristine).problems == []
    report = index.duplicates(threshold=0.99)  # the copies p4, p5 are found, then left out:
    assert report.groups == [] and report.stale == ["/photos/p4.jpg", "/photos/p5.jpg"]  # no files


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                     | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_FIELDS = [("format_version",), ("model",), ("model", "name"), ("model", "id"), ("model", "config"),
           ("model", "config", "dim"), ("model", "config", "mean"), ("model", "config", "backbone"),
           ("dim",), ("count",), ("generation",), ("metric",)]


@st.composite
def manifests(draw, original: bytes) -> bytes:
    """A manifest with fields replaced or removed, or its bytes mutated, or noise."""
    how = draw(st.sampled_from(["field", "field", "bytes", "noise"]))
    if how == "noise":
        return draw(st.binary(max_size=600))
    if how == "bytes":
        return draw(mutated({"manifest": original}))[1]
    data = json.loads(original)
    for _ in range(draw(st.integers(1, 3))):
        keys = draw(st.sampled_from(_FIELDS))
        parent = data
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(keys[-1], None)
        else:
            parent[keys[-1]] = draw(_JSON)
    return json.dumps(data).encode()


@FUZZ
@given(data=st.data())
def test_loading_mutated_manifests(pristine, scratch, data):
    folder = scratch / "manifest"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    (folder / MANIFEST).write_bytes(data.draw(manifests((pristine / MANIFEST).read_bytes())))
    with time_limit(20):
        _exercise(folder)


@FUZZ
@given(data=st.data())
def test_loading_mutated_catalogs(pristine, scratch, data):
    folder = scratch / "catalog"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    original = (pristine / CATALOG).read_bytes()
    how = data.draw(st.sampled_from(["bytes", "bytes", "bytes", "page", "noise"]))
    if how == "noise":
        damaged = data.draw(st.binary(max_size=4096))
    elif how == "page":  # a whole page of noise, headers included
        page = data.draw(st.integers(0, len(original) // 4096 - 1))
        noise = data.draw(st.binary(min_size=4096, max_size=4096))
        damaged = original[:page * 4096] + noise + original[(page + 1) * 4096:]
    else:
        damaged = data.draw(mutated({"catalog": original}))[1]
    (folder / CATALOG).write_bytes(damaged)
    with time_limit(20):
        _exercise(folder)
