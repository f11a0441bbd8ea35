"""Benchmark generation and metrics, checked by hand and against brute-force loops."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from simsearch.errors import SimsearchError
from simsearch.evaluate import (
    GROUND_TRUTH, Calibration, CalibrationError, DedupeScore, Metrics, Neighbors,
    calibrate_threshold, hash_baseline, label_neighbors, load_benchmark, make_benchmark,
    micro_average_precision, pair_precision_recall_f1, recall_at_1, recall_at_1_per_edit,
)


def picture(w: int, h: int, seed: int) -> Image.Image:
    """A smooth random gradient with a few shapes: distinct per seed, cheap to make."""
    rs = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    a, b, c = rs.uniform(-255, 255, (3, 3))
    arr = np.clip(a[None, None] * x[..., None] + b[None, None] * y[..., None] + 128 + c, 0, 255)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, x1 = sorted(rs.integers(0, w, 2))
        y0, y1 = sorted(rs.integers(0, h, 2))
        draw.ellipse((x0, y0, x1 + 2, y1 + 2), fill=tuple(int(v) for v in rs.integers(0, 256, 3)))
    return img


# --- uAP ---------------------------------------------------------------------------------


def brute_uap(scores, positives, n_positives) -> float:
    """The ISC2021 definition, spelled out: rank by (score desc, negatives first on ties)."""
    ranked = sorted(zip(scores, positives), key=lambda sp: (-sp[0], sp[1]))
    hits, total = 0, 0.0
    for rank, (_, positive) in enumerate(ranked, start=1):
        if positive:
            hits += 1
            total += hits / rank
    return total / n_positives


def test_uap_by_hand():
    # 3 ground-truth pairs; 2 are retrieved, at ranks 1 and 3; the third is never predicted.
    scores = [0.9, 0.8, 0.7, 0.6]
    positives = [True, False, True, False]
    assert micro_average_precision(scores, positives, 3) == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_uap_is_one_for_a_perfect_ranking_and_ignores_input_order():
    assert micro_average_precision([0.1, 0.9, 0.5], [False, True, True], 2) == pytest.approx(1.0)
    assert micro_average_precision([0.5, 0.1, 0.9], [True, False, True], 2) == pytest.approx(1.0)


def test_uap_ties_are_pessimistic():
    # Equal scores: the negative is ranked first whatever the input order.
    for scores, positives in (([0.5, 0.5], [True, False]), ([0.5, 0.5], [False, True])):
        assert micro_average_precision(scores, positives, 1) == pytest.approx(1 / 2)
    # Ties with the pair above them: ranks are 1 (T), 2 (F), 3 (T) -> (1 + 2/3) / 2.
    assert micro_average_precision([0.9, 0.4, 0.4], [True, True, False], 2) == pytest.approx((1 + 2 / 3) / 2)


def test_uap_edge_cases():
    assert micro_average_precision([], [], 5) == 0.0
    assert micro_average_precision([0.3, 0.2], [False, False], 2) == 0.0
    with pytest.raises(ValueError, match="predicted twice"):
        micro_average_precision([0.3, 0.2], [True, True], 1)
    with pytest.raises(ValueError):
        micro_average_precision([0.3], [True], 0)
    with pytest.raises(ValueError):
        micro_average_precision([0.3, 0.1], [True], 1)


@pytest.mark.parametrize("seed", range(5))
def test_uap_matches_brute_force(seed):
    rs = np.random.default_rng(seed)
    n = int(rs.integers(1, 300))
    scores = np.round(rs.uniform(0, 1, n), 1)  # coarse scores: many ties
    positives = rs.random(n) < 0.3
    n_positives = int(positives.sum()) + int(rs.integers(0, 10))
    if n_positives == 0:
        n_positives = 1
    got = micro_average_precision(scores.astype(np.float32), positives, n_positives)
    assert got == pytest.approx(brute_uap(scores.astype(np.float32).tolist(), positives.tolist(), n_positives))


# --- calibration -------------------------------------------------------------------------


def test_calibrate_threshold_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    positives = [True, True, False, True, True]
    # Precision of "score >= t": 1/1, 2/2, 2/3, 3/4, 4/5; 5 true pairs in all.
    assert calibrate_threshold(scores, positives, 5, min_precision=0.75) == Calibration(0.5, 0.8, 0.8)
    assert calibrate_threshold(scores, positives, 5, min_precision=0.99) == Calibration(0.8, 1.0, 0.4)


def test_calibrate_threshold_counts_a_tie_as_a_whole():
    # At t = 0.8 both 0.8 pairs are in, one of them wrong: precision 2/3.
    cal = calibrate_threshold([0.9, 0.8, 0.8], [True, True, False], 2, min_precision=0.9)
    assert cal == Calibration(0.9, 1.0, 0.5)


def test_calibrate_threshold_says_when_precision_is_out_of_reach():
    with pytest.raises(CalibrationError, match="no threshold reaches precision 0.99"):
        calibrate_threshold([0.9, 0.8], [False, True], 1)
    with pytest.raises(CalibrationError):
        calibrate_threshold([], [], 1)


def test_calibrate_threshold_matches_brute_force():
    rs = np.random.default_rng(7)
    scores = np.round(rs.uniform(0, 1, 200), 2)
    positives = rs.random(200) < 1 / (1 + np.exp(-12 * (scores - 0.6)))
    n_pos = int(positives.sum()) + 3
    for min_p in (0.6, 0.8, 0.95):
        best = None
        for t in np.unique(scores):
            kept = scores >= t
            if positives[kept].mean() >= min_p and (best is None or t < best[0]):
                best = (t, positives[kept].mean(), positives[kept].sum() / n_pos)
        assert calibrate_threshold(scores, positives, n_pos, min_p) == Calibration(*map(pytest.approx, best))


# --- Recall@1 and dedupe P/R/F1 ----------------------------------------------------------


def test_recall_at_1_and_per_edit():
    top1 = ["a", "x", "c", None, 5]
    truth = ["a", "b", "c", "d", 5]
    edits = ["crop", "crop", "blur", "blur", "text"]
    assert recall_at_1(top1, truth) == pytest.approx(3 / 5)
    assert recall_at_1_per_edit(top1, truth, edits) == {"crop": 0.5, "blur": 0.5, "text": 1.0}
    with pytest.raises(ValueError):
        recall_at_1(top1, truth[:2])


def test_pair_scores_by_hand():
    # Predicted pairs: ab ac bc de (4); true pairs: ab bc df (3); correct: ab bc (2).
    score = pair_precision_recall_f1([["a", "b", "c"], ["d", "e"], ["f"]],
                                     [("a", "b"), ("c", "b"), ("d", "f"), ("g", "g")], threshold=0.9)
    assert (score.precision, score.recall) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert score.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert (score.n_predicted, score.n_true, score.n_correct, score.threshold) == (4, 3, 2, 0.9)


def test_pair_scores_empty_sides():
    assert pair_precision_recall_f1([], [("a", "b")]) == DedupeScore(1.0, 0.0, 0.0, None, 0, 1, 0)
    assert pair_precision_recall_f1([["a", "b"]], []).recall == 1.0


@pytest.mark.parametrize("overlap", [False, True])
def test_pair_scores_match_brute_force(overlap):
    rs = np.random.default_rng(int(overlap))
    items = list(range(40))
    rs.shuffle(items)
    groups = [items[i:i + int(rs.integers(1, 6))] for i in range(0, 40, 5)]
    if overlap:
        groups += [[int(v) for v in rs.choice(40, 4, replace=False)] for _ in range(4)]
    truth = [tuple(int(v) for v in rs.choice(40, 2, replace=False)) for _ in range(30)]
    truth += [p for g in groups[:3] for p in combinations(g, 2)]
    predicted = {frozenset(p) for g in groups for p in combinations(g, 2)}
    true_set = {frozenset(p) for p in truth}
    p = len(predicted & true_set) / len(predicted)
    r = len(predicted & true_set) / len(true_set)
    score = pair_precision_recall_f1(groups, truth)
    assert (score.precision, score.recall) == (pytest.approx(p), pytest.approx(r))


# --- result dataclasses ------------------------------------------------------------------


def test_metrics_to_dict_is_the_json_report():
    metrics = Metrics(uap=0.5, recall_at_1=0.75, per_edit={"crop50": 0.5},
                      dedupe=DedupeScore(0.9, 0.8, 0.847, threshold=0.95),
                      calibrated=Calibration(0.93, 0.99, 0.7))
    d = json.loads(json.dumps(metrics.to_dict()))
    assert d == {"uap": 0.5, "recall_at_1": 0.75, "per_edit": {"crop50": 0.5},
                 "dedupe": {"threshold": 0.95, "unit": "score", "precision": 0.9, "recall": 0.8,
                            "f1": 0.847, "n_predicted": 0, "n_correct": 0, "n_true": 0},
                 "calibrated": {"threshold": 0.93, "precision": 0.99, "recall": 0.7,
                                "unit": "score"},
                 "calibration_error": None}
    assert Metrics(0.1, 0.2).to_dict()["dedupe"] is None


def test_label_neighbors():
    nb = Neighbors(indices=np.array([[2, 0], [1, -1], [0, 1]]),
                   scores=np.array([[0.9, 0.5], [0.8, 0.0], [0.7, 0.6]], dtype=np.float32))
    pairs = label_neighbors(nb, [0, 1, -1])  # the third query is a distractor
    np.testing.assert_allclose(pairs.scores, [0.9, 0.5, 0.8, 0.7, 0.6], rtol=1e-6)
    assert pairs.is_positive.tolist() == [False, True, True, False, False]
    assert pairs.n_positives == 2


# --- benchmark generation ----------------------------------------------------------------


@pytest.fixture
def originals(tmp_path: Path) -> list[Path]:
    src = tmp_path / "originals"
    src.mkdir()
    paths = []
    for i, size in enumerate([(96, 64), (48, 80), (120, 12)]):
        path = src / f"img{i}.png"
        picture(*size, seed=i).save(path)
        paths.append(path)
    broken = src / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    paths.insert(1, broken)
    return paths


def test_make_benchmark_writes_every_edit_and_the_ground_truth(tmp_path, originals):
    calls = []
    bench = make_benchmark(originals, tmp_path / "bench", seed=3, progress=lambda d, t: calls.append((d, t)))
    good = [p for p in originals if p.name != "broken.jpg"]
    assert bench.originals == tuple(good)
    assert [s.path.name for s in bench.skipped] == ["broken.jpg"] and bench.skipped[0].reason
    assert len(bench.items) == 3 * 16
    assert {it.edit for it in bench.items if it.original == good[0]} == set(
        ["jpeg20", "resize25", "crop70", "crop50", "rotate90", "rotate15", "hflip", "grayscale",
         "brightness", "contrast", "blur", "text", "letterbox", "stretch", "pip", "combo"])
    for item in bench.items:
        assert item.query.parent == tmp_path / "bench" / "queries"
        with Image.open(item.query) as img:
            assert img.mode == "RGB" and min(img.size) >= 1
    with Image.open(next(it.query for it in bench.items if it.edit == "rotate90" and it.original == good[0])) as img:
        assert img.size == (64, 96)
    assert calls[-1] == (4, 4) and len(calls) == 4
    assert (tmp_path / "bench" / GROUND_TRUTH).exists()
    assert load_benchmark(tmp_path / "bench") == bench
    assert bench.true_pairs() == {(it.query, it.original) for it in bench.items}


def test_make_benchmark_is_deterministic_for_a_seed(tmp_path, originals):
    edits = ["crop50", "text", "pip", "combo"]
    a = make_benchmark(originals, tmp_path / "a", seed=1, edits=edits, per_image=2)
    b = make_benchmark(originals, tmp_path / "b", seed=1, edits=edits, per_image=2)
    c = make_benchmark(originals, tmp_path / "c", seed=2, edits=edits, per_image=2, image_format="png")
    assert len(a.items) == 3 * 2
    assert [(x.edit, x.original) for x in a.items] == [(y.edit, y.original) for y in b.items]
    assert all(x.query.read_bytes() == y.query.read_bytes() for x, y in zip(a.items, b.items))
    assert all(it.query.suffix == ".png" for it in c.items)
    pixels = lambda bench: [np.asarray(Image.open(it.query)).tobytes() for it in bench.items]
    assert pixels(a) != pixels(c)


def test_make_benchmark_rejects_bad_arguments(tmp_path, originals):
    with pytest.raises(ValueError, match="unknown"):
        make_benchmark(originals, tmp_path / "x", edits=["sepia"])
    with pytest.raises(ValueError, match="per_image"):
        make_benchmark(originals, tmp_path / "x", edits=["hflip"], per_image=2)


def test_load_benchmark_explains_a_missing_or_bad_folder(tmp_path):
    with pytest.raises(SimsearchError, match="not found"):
        load_benchmark(tmp_path)
    (tmp_path / GROUND_TRUTH).write_text("{}")
    with pytest.raises(SimsearchError, match="not a simsearch benchmark"):
        load_benchmark(tmp_path)


# --- perceptual-hash baseline ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["phash", "dhash"])
def test_hash_baseline_matches_brute_force(tmp_path, kind):
    imagehash = pytest.importorskip("imagehash")
    paths = []
    for i in range(6):
        path = tmp_path / f"r{i}.png"
        picture(64, 48, seed=10 + i).save(path)
        paths.append(path)
    queries, refs = paths[:3] + paths[5:], paths[:5]
    nb = hash_baseline(kind, queries, refs, k=3)
    assert nb.indices.shape == nb.scores.shape == (4, 3)
    fn = getattr(imagehash, kind)
    for qi, q in enumerate(queries):
        h = fn(Image.open(q).convert("RGB"))
        sims = [1 - (h - fn(Image.open(r).convert("RGB"))) / 64 for r in refs]
        order = sorted(range(len(refs)), key=lambda j: (-sims[j], j))[:3]
        assert nb.indices[qi].tolist() == order
        np.testing.assert_allclose(nb.scores[qi], [sims[j] for j in order], rtol=1e-6)
    assert nb.indices[:3, 0].tolist() == [0, 1, 2] and (nb.scores[:3, 0] == 1.0).all()
    assert hash_baseline(kind, queries, refs, k=None).indices.shape == (4, 5)


def test_hash_baseline_rejects_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="phash or dhash"):
        hash_baseline("ahash", [], [tmp_path / "x.png"])
