import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import ImageEnhance, ImageOps

from conftest import make_picture, write_pictures
from simsearch.cli import main
from simsearch.evaluate import Neighbors, make_benchmark, micro_average_precision
from simsearch.index import open_index
from simsearch.evidence import Truth, score_groups, score_search
from simsearch.scorecard import run_eval
from simsearch.scoresheet import eval_lines
from simsearch import evidence

EASY = ("jpeg20", "resize25")  # edits a random tiny network still sees through


def test_eval_end_to_end(tmp_path, tiny_model):
    write_pictures(tmp_path / "originals", 6, seed=11)
    write_pictures(tmp_path / "distractors", 4, seed=12)
    report = run_eval(tmp_path / "originals", tmp_path / "distractors",
                      model=str(tiny_model / "model.onnx"), per_image=4, seed=1, rounds=50)
    data = json.loads(json.dumps(report.to_dict()))
    assert report.n_queries == 24 and report.n_references == 10 and report.n_originals == 6
    for key in ("uap", "recall_at_1", "per_edit", "dedupe", "calibrated", "baselines",
                "intervals", "families", "mistakes", "warnings", "calibration_error"):
        assert key in data
    assert 0 <= data["uap"] <= 1 and 0 <= data["recall_at_1"] <= 1
    assert set(data["baselines"]) == {"phash", "dhash"}
    # which file computed the vectors (the tiny model has no int8 variant: fp32)
    assert data["runtime"] == {"file": "model.onnx", "precision": "fp32", "device": "cpu"}
    assert data["dedupe"]["threshold"] == pytest.approx(0.95) and data["dedupe"]["unit"] == "score"
    # each baseline's threshold in its own unit: Hamming distance, not 0.84375
    assert data["baselines"]["phash"]["dedupe"] == {**data["baselines"]["phash"]["dedupe"],
                                                    "threshold": 10, "unit": "hamming"}
    for name in ("uap", "recall_at_1", "precision", "recall"):
        assert data["intervals"][name]["low"] <= data["intervals"][name]["high"]
    assert any("only 6 originals" in w for w in data["warnings"])
    # a calibration that failed says why; one that worked says where
    for m in [data] + list(data["baselines"].values()):
        assert (m["calibrated"] is None) == (m["calibration_error"] is not None)
    # with the picture check, calibration never goes below the model's own threshold
    assert data["calibration_floor"] == pytest.approx(0.95)
    assert data["calibrated"] is None or data["calibrated"]["threshold"] >= 0.95 - 1e-9
    assert "none below 0.95, the model's own, was tried" in "\n".join(eval_lines(report, tmp_path, 5))


def test_eval_cli_json(tmp_path, tiny_model):
    write_pictures(tmp_path / "originals", 4, seed=13)
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "originals"), "--model",
                                       str(tiny_model / "model.onnx"), "--per-image", "2",
                                       "--no-baselines", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["baselines"] == {} and len(data["per_edit"]) >= 1
    # --precision reaches the run: this model has no int8 file, so int8 is refused, with why
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "originals"), "--model",
                                       str(tiny_model / "model.onnx"), "--per-image", "2",
                                       "--no-baselines", "--json", "-q", "--precision", "int8"])
    assert result.exit_code == 1 and "has no int8 variant" in result.output, result.output


def _truth(set_of=None) -> Truth:
    # references a, b (originals) and x (a distractor); copies q1, q2 of a and q3 of b
    return Truth(["a", "b", "x"], ["q1", "q2", "q3"], np.array([0, 0, 1]),
                 ["jpeg20", "crop50", "jpeg20"],
                 np.arange(3) if set_of is None else np.array(set_of), 2)


def test_dedupe_pairs_by_hand():
    g = score_groups([["a", "q1", "q2"], ["b", "x"]], _truth())
    ones = np.ones(3, np.int64)
    assert evidence.precision(g, ones) == pytest.approx(3 / 4)  # (b, x) is wrong
    assert evidence.recall(g, ones) == pytest.approx(2 / 3)  # (q3, b) missed
    # a and b versions of one picture: the (q3, a) and (b, a) pairs count neither way
    g = score_groups([["a", "q1", "q2", "b"], ["q3", "x"]], _truth([0, 0, 2]))
    assert evidence.precision(g, ones) == pytest.approx(3 / 4)  # 3 right, (q3, x) wrong
    assert evidence.recall(g, ones) == pytest.approx(2 / 3)


def test_search_by_hand_with_versions():
    nb = Neighbors(np.array([[0, 1], [1, 0], [2, 1]]),
                   np.array([[0.9, 0.5], [0.8, 0.7], [0.6, 0.4]], np.float32))
    ones = np.ones(3, np.int64)
    distinct = score_search(nb, _truth())
    assert distinct.hit.tolist() == [True, False, False]
    assert evidence.uap(distinct, ones) == pytest.approx(
        micro_average_precision([0.9, 0.5, 0.8, 0.7, 0.6, 0.4],
                                [True, False, False, True, False, True], 3))
    # with a and b one picture, q2's top hit b is not a miss, and (q2, b) is dropped from uAP
    versions = score_search(nb, _truth([0, 0, 2]))
    assert versions.hit.tolist() == [True, True, False]
    assert evidence.uap(versions, ones) == pytest.approx(
        micro_average_precision([0.9, 0.7, 0.6, 0.4], [True, True, False, True], 3))


def test_bootstrap_intervals_cover_the_known_value():
    """Synthetic scores: each of 200 originals has a copy found first with probability 0.8
    and a true pair with probability 0.7; the 95% interval covers 0.8 / 0.7 in nearly every
    one of 40 seeded experiments."""
    covered = {"recall_at_1": 0, "recall": 0}
    for trial in range(40):
        rng = np.random.default_rng(trial)
        n = 200
        hit = rng.random(n) < 0.8
        units = np.arange(n)
        r = evidence.Retrieval(units, hit, units, rng.random(n), hit)
        g = evidence.Grouping(units, units, np.ones(n, np.int64), units, rng.random(n) < 0.7)
        spread = evidence.intervals(r, g, n, n, rounds=200, seed=trial)
        covered["recall_at_1"] += spread["recall_at_1"].low <= 0.8 <= spread["recall_at_1"].high
        covered["recall"] += spread["recall"].low <= 0.7 <= spread["recall"].high
    assert covered["recall_at_1"] >= 34 and covered["recall"] >= 34
    # seeded: the same draw twice
    assert evidence.intervals(r, g, n, n, rounds=20, seed=3) == \
        evidence.intervals(r, g, n, n, rounds=20, seed=3)


def test_bootstrap_weights_count_a_twice_drawn_original_twice():
    r = evidence.Retrieval(np.array([0, 1]), np.array([True, False]), np.array([0, 1]),
                           np.array([0.9, 0.8]), np.array([True, False]))
    assert evidence.recall_at_1(r, np.array([2, 1])) == pytest.approx(2 / 3)
    w = evidence.draws(5, 2, rounds=7, seed=0)
    assert w.shape == (7, 7) and (w[:, :5].sum(1) == 5).all() and (w[:, 5:] == 1).all()


def _planted(folder, n=6):
    """n distinct originals plus three planted versions: a colour variant of picture 0, a dark
    version of picture 1, an exact copy of picture 2."""
    paths = write_pictures(folder, n, seed=21)
    ImageOps.colorize(ImageOps.grayscale(make_picture(21000)), "#002040", "#ffe0a0").save(
        folder / "v0_colour.jpg", quality=92)
    ImageEnhance.Brightness(make_picture(21001)).enhance(0.6).save(folder / "v1_dark.jpg",
                                                                    quality=92)
    shutil.copyfile(paths[2], folder / "v2_copy.jpg")
    return paths


def test_planted_versions_are_found_and_do_not_count_as_wrong(tmp_path, tiny_model):
    paths = _planted(tmp_path / "originals")
    kw = dict(model=str(tiny_model / "model.onnx"), seed=2, baselines=(), rounds=20, edits=EASY)
    report = run_eval(tmp_path / "originals", **kw)
    sets = {frozenset(report.families.paths[i] for i in f.members) for f in report.families.sets}
    folder = tmp_path / "originals"
    for planted in ({str(paths[0]), str(folder / "v0_colour.jpg")},
                    {str(paths[1]), str(folder / "v1_dark.jpg")},
                    {str(paths[2]), str(folder / "v2_copy.jpg")}):
        assert any(planted <= s for s in sets), (planted, sets)
    views = {ln.view for f in report.families.sets for ln in f.links}
    assert "same content" in views
    # on these easy edits the model makes no mistake but the versions: counted neither way,
    # precision is that of distinct pictures (1.0) and no false pair is listed
    assert report.metrics.dedupe.precision == 1.0 and report.mistakes.false_pairs == []
    assert report.metrics.recall_at_1 == 1.0
    distinct = run_eval(tmp_path / "originals", originals_distinct=True, **kw)
    assert distinct.metrics.dedupe.precision < 1.0
    assert all({p.a.original or p.a.path, p.b.original or p.b.path} <= set().union(*sets)
               for p in distinct.mistakes.false_pairs)


def test_known_answer_against_an_independent_scoring(tmp_path, tiny_model):
    """The report's figures equal a brute-force scoring of the same copies with the same model:
    fails when copies are matched to the wrong originals."""
    originals = write_pictures(tmp_path / "originals", 7, seed=31)
    model = str(tiny_model / "model.onnx")
    report = run_eval(tmp_path / "originals", model=model, seed=5, per_image=3, baselines=(),
                      rounds=10, k=7, check=False)  # scores alone, like the oracle below
    bench = make_benchmark(originals, tmp_path / "bench", seed=5, per_image=3)
    index = open_index(tmp_path / "index", model=model, create=True)
    index.add_paths([tmp_path / "originals", tmp_path / "bench" / "queries"])
    paths, matrix = index.vectors()
    vec = dict(zip(paths, matrix))
    refs = np.stack([vec[str(p)] for p in originals])
    hits, scores, positive = [], [], []
    for item in bench.items:
        sims = refs @ vec[str(item.query)]
        want = originals.index(item.original)
        hits.append(int(np.argmax(sims)) == want)
        scores += sims.tolist()
        positive += [j == want for j in range(len(originals))]
    assert report.families.sets == ()  # distinct pictures: nothing to set aside
    assert report.metrics.recall_at_1 == pytest.approx(np.mean(hits))
    assert report.metrics.uap == pytest.approx(
        micro_average_precision(scores, positive, len(bench.items)), abs=1e-6)
    edits = {item.edit for item in bench.items}
    for edit in edits:
        rows = [h for h, item in zip(hits, bench.items) if item.edit == edit]
        assert report.metrics.per_edit[edit] == pytest.approx(np.mean(rows))
    missed = [m for m in report.mistakes.missed if m.stage == "search"]
    assert len(missed) == len(hits) - sum(hits)

    # dedupe: every pair of every group of the same index, judged one by one
    origin = {str(p): str(p) for p in originals}
    origin.update({str(item.query): str(item.original) for item in bench.items})
    pairs = [(a, b) for g in index.duplicates(0.95).groups for i, a in enumerate(g.files)
             for b in g.files[i + 1:]]
    right = sum(origin[a] == origin[b] for a, b in pairs)
    together = {frozenset(p) for p in pairs}
    found = sum(frozenset((str(item.query), str(item.original))) in together for item in bench.items)
    d = report.metrics.dedupe
    assert (d.n_predicted, d.n_correct) == (len(pairs), right)
    assert d.recall == pytest.approx(found / len(bench.items))
    assert len(report.mistakes.false_pairs) == len(pairs) - right
    assert sum(m.stage == "dedupe" for m in report.mistakes.missed) == len(bench.items) - found
    # the default plan over those groups, its files acted on told apart one by one
    from simsearch.plan import make_plan
    from simsearch.keeprules import parse_rules
    made = make_plan(index.duplicates(0.95, check=False).groups, parse_rules(()))
    acted = [(f, g.keep) for g in made.groups for f in g.act_on]
    copies = sum(any(origin[f] == origin[k] for k in keep) for f, keep in acted)
    # ... and the groups holding an original with a copy of it, where a copy is kept over it
    edit_of = {str(item.query): item.edit for item in bench.items}
    held, over, edits = 0, 0, {}
    for g in made.groups:  # each group once
        paths = [f.path for f in g.files]
        paired = [o for o in paths if origin[o] == o and g.decision == "act"
                  and any(p != o and origin[p] == o for p in paths)]
        held += bool(paired)
        lost = [(o, k) for o in paired if o in g.act_on for k in g.keep if origin[k] == o != k]
        if lost:
            over += 1
            edits[edit_of[lost[0][1]]] = edits.get(edit_of[lost[0][1]], 0) + 1
    assert report.plan == {"acted_on": len(acted), "copies_acted_on": copies,
                           "versions_acted_on": 0, "not_copies_acted_on": len(acted) - copies,
                           "kept_unconfirmed": 0, "copies_kept_unconfirmed": 0,
                           "groups_with_original": held, "copy_kept_over_original": over,
                           "copy_kept_by_edit": edits}
    assert len(acted) > 0 and held > 0


def _cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_saved_threshold_is_used_by_dedupe_and_reported(tmp_path, tiny_model):
    from simsearch.integrity import check_index

    write_pictures(tmp_path / "photos", 5, seed=41)
    idx = tmp_path / "idx"
    model = tiny_model / "model.onnx"
    assert _cli(["index", tmp_path / "photos", "--index", idx, "--model", model, "-q"]).exit_code == 0
    before = json.loads(_cli(["dedupe", "--index", idx, "--json"]).stdout)
    assert before["threshold"] == pytest.approx(0.95) and before["threshold_source"] == "model"
    assert before["threshold_calibration"] is None

    # --model not given: eval takes the index's model
    result = _cli(["eval", tmp_path / "photos", "--per-image", "2", "--no-baselines",
                   "--target-precision", "0.5", "--save-threshold", "--index", idx, "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    saved = data["saved_threshold"]["threshold"]
    assert saved == data["calibrated"]["threshold"]
    index = open_index(idx)
    kept = index.threshold()
    assert kept["value"] == saved and kept["source"] == "calibrated"
    assert kept["model_id"] == index.manifest["model"]["id"] and kept["precision_target"] == 0.5
    assert kept["n_originals"] == 5 and len(kept["date"]) == 10
    assert kept["runtime"] == {"file": "model.onnx", "precision": "fp32", "device": "cpu"}
    assert check_index(idx).ok  # the kept threshold leaves vectors.faiss current

    after = json.loads(_cli(["dedupe", "--index", idx, "--json"]).stdout)
    assert after["threshold"] == saved and after["threshold_source"] == "calibrated"
    assert after["threshold_calibration"]["value"] == saved
    text = _cli(["dedupe", "--index", idx])
    assert f"at threshold {saved:.4f} (calibrated on your photos on {kept['date']}" in text.stderr
    given = json.loads(_cli(["dedupe", "--index", idx, "--threshold", "0.9", "--json"]).stdout)
    assert given["threshold"] == 0.9 and given["threshold_source"] == "command line"
    assert "--threshold on the command line" in _cli(["dedupe", "--index", idx,
                                                      "--threshold", "0.9"]).stderr


def test_a_threshold_of_another_model_is_refused_and_ignored(tmp_path, tiny_model):
    from simsearch.errors import ModelMismatchError

    write_pictures(tmp_path / "photos", 3, seed=42)
    index = open_index(tmp_path / "idx", model=str(tiny_model / "model.onnx"), create=True)
    index.add_paths([tmp_path / "photos"])
    with pytest.raises(ModelMismatchError, match="simsearch eval PHOTOS --index"):
        index.save_threshold(0.9, "calibrated", {"model_id": "0" * 64, "model": "other"})
    assert index.threshold() is None
    # a record left by another model (say the index was rebuilt since) is not used
    catalog = index.catalog(readonly=False)
    with catalog.transaction():
        catalog.set_meta("dedupe_threshold", json.dumps({"value": 0.5, "model_id": "0" * 64}))
    catalog.close()
    report = open_index(tmp_path / "idx").duplicates()
    assert report.threshold == pytest.approx(0.95) and report.threshold_source == "model"


def test_without_imagehash_the_phash_view_is_skipped_and_said(tmp_path, tiny_model, monkeypatch):
    import simsearch.scorecard as scorecard
    from simsearch.errors import SimsearchError

    def no_imagehash(*args, **kwargs):
        raise SimsearchError("the phash/dhash baselines need the imagehash package")

    monkeypatch.setattr(scorecard, "image_hashes", no_imagehash)
    write_pictures(tmp_path / "originals", 3, seed=43)
    report = run_eval(tmp_path / "originals", model=str(tiny_model / "model.onnx"), per_image=1,
                      baselines=(), rounds=5)
    assert report.families.views == ("same content", "model score")
    assert "imagehash" in report.families.skipped_views["phash"]
    assert any("phash view was skipped" in w for w in report.warnings)


def test_model_links_are_listed_but_join_nothing():
    from simsearch.families import Link, join, link_hamming, link_hashes

    links = link_hashes(["s1", "s2", "s1", "s3", "s4"]) + link_hamming(
        np.array([0, 0b1111, 1 << 40, (1 << 64) - 1, 0b111], np.uint64), max_distance=4)
    model = [Link(0, 2, "model score", 1.0), Link(3, 4, "model score", 0.86)]
    fam = join(list("abcde"), links, ["same content", "model score", "phash"], listed=model)
    # 0=2 by content, 0~1 (4 bits), 0~4 and 1~4 (3 bits, 1 bit) by pHash; 3 alone
    assert [f.members for f in fam.sets] == [(0, 1, 2, 4)]
    assert Link(0, 2, "model score", 1.0) in fam.sets[0].links
    assert fam.unconfirmed == (Link(3, 4, "model score", 0.86),)
    assert fam.set_of().tolist() == [0, 0, 0, 3, 0]


def test_eval_text_explains_its_table(tmp_path, tiny_model):
    write_pictures(tmp_path / "originals", 4, seed=44)
    shutil.copyfile(tmp_path / "originals" / "img000.jpg", tmp_path / "originals" / "again.jpg")
    result = _cli(["eval", tmp_path / "originals", "--model", tiny_model / "model.onnx",
                   "--per-image", "2", "-q", "--show-mistakes", "2"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "1 sets, 2 files" in out and "again.jpg, img000.jpg" in out.replace(
        "img000.jpg, again.jpg", "again.jpg, img000.jpg")
    assert "Hamming<=10" in out and "0.8438" not in out  # the hashes' threshold in bits
    assert re.search(r"the default plan \(dedupe --plan, default keep rules\) on simsearch's "
                     r"groups: acts on \d+ files: \d+ copies of a file it keeps, \d+ versions", out)
    assert "threshold: where dedupe was scored" in out
    table = out[out.index("uAP"):out.index("threshold: where")]
    if " - " in table:  # every - has its footnote
        assert "- : no such threshold" in out and "no threshold reaches dedupe precision" in out
    assert "95% intervals for simsearch" in out and "warning: only 5 originals" in out
    assert "False pairs (simsearch dedupe):" in out and "Copies missed by search:" in out


def test_save_threshold_refuses_when_no_threshold_reaches_the_target(tmp_path, tiny_model,
                                                                      monkeypatch):
    import simsearch.scorecard as scorecard
    from simsearch.evaluate import DedupeScore, Metrics

    write_pictures(tmp_path / "photos", 3, seed=45)
    idx = tmp_path / "idx"
    assert _cli(["index", tmp_path / "photos", "--index", idx, "--model",
                 tiny_model / "model.onnx", "-q"]).exit_code == 0
    why = "no threshold reaches dedupe precision 0.95; the best is 0.900 at score >= 0.9900"
    failed = scorecard.EvalReport(Metrics(0.5, 0.5, {}, DedupeScore(0.8, 0.5, 0.6, 0.95), None, why),
                                  {}, 3, 3, "m")
    monkeypatch.setattr(scorecard, "run_eval", lambda *a, **kw: failed)
    result = _cli(["eval", tmp_path / "photos", "--save-threshold", "--index", idx, "-q"])
    assert result.exit_code == 1 and f"no threshold saved: {why}" in result.output
    assert open_index(idx).threshold() is None


def test_a_model_without_a_threshold_is_scored_at_the_one_given(tmp_path, tiny_model):
    """A freshly trained model carries no dedupe threshold; eval with --threshold must not ask
    for one (the look-alike finder took the model's own, and failed)."""
    from simsearch.export import export_onnx
    from simsearch.model import load_model
    from simsearch.files import sha256
    weights = tiny_model / "model.safetensors"
    bare = tmp_path / "bare.onnx"
    export_onnx(load_model(weights), bare, sha256(weights), half_weights=False)
    _planted(tmp_path / "originals")
    report = run_eval(tmp_path / "originals", model=str(bare), seed=2, baselines=(), rounds=5,
                      edits=EASY, threshold=0.9)
    assert report.metrics.dedupe.threshold == 0.9


def test_eval_cli_aims_at_the_precision_the_shipped_threshold_was_chosen_by():
    from simsearch.scorecard import TARGET_PRECISION

    option = next(p for p in main.commands["eval"].params if p.name == "target_precision")
    assert option.default == TARGET_PRECISION == 0.97


def test_plan_figures_tell_copies_versions_and_other_pictures_apart(tmp_path):
    """By hand: what the default plan acts on, against who is whose."""
    import dataclasses

    from groups import group
    from simsearch.scorecard import _plan_figures
    # originals o0, o1 (a version of o0: one set), o2, a distractor d; copies c0 (of o0), c2 (of
    # o2); the originals are the largest, so the keep rules keep them
    sizes = {"o0": (64, 48), "o1": (60, 45), "o2": (64, 48), "d": (36, 27), "c0": (40, 30),
             "c2": (32, 24), "c3": (80, 60)}  # c3: a letterboxed copy of o2, larger than it
    paths = {}
    for i, (name, size) in enumerate(sizes.items()):
        make_picture(i, size).save(tmp_path / f"{name}.png")
        paths[name] = str(tmp_path / f"{name}.png")
    truth = Truth(refs=[paths[n] for n in ("o0", "o1", "o2", "d")],
                  queries=[paths["c0"], paths["c2"], paths["c3"]], true_ref=np.array([0, 2, 2]),
                  edits=["crop50", "crop50", "letterbox"], set_of=np.array([0, 0, 2, 3]),
                  n_originals=3)

    def made(names, evidence):
        g = group([paths[n] for n in names])
        g.members[1:] = [dataclasses.replace(m, evidence=e) for m, e in zip(g.members[1:],
                                                                            evidence)]
        return g
    # o0 kept; c0 (a copy) and o1 (a version) acted on; d, another picture, marked: kept. o2
    # kept, its copy c2 marked: kept for review
    groups = [made(["o0", "c0", "o1", "d"], ["checked", "score", "unchecked"]),
              made(["o2", "c2"], ["unchecked"])]
    assert _plan_figures(groups, truth) == {
        "acted_on": 2, "copies_acted_on": 1, "versions_acted_on": 1, "not_copies_acted_on": 0,
        "kept_unconfirmed": 2, "copies_kept_unconfirmed": 1, "groups_with_original": 1,
        "copy_kept_over_original": 0, "copy_kept_by_edit": {}}
    # the letterboxed copy is larger: the keep rules keep it and act on its original
    figures = _plan_figures([made(["o2", "c3", "c2"], ["checked", "checked"])], truth)
    assert figures["acted_on"] == 2 and figures["copies_acted_on"] == 2
    assert (figures["groups_with_original"], figures["copy_kept_over_original"],
            figures["copy_kept_by_edit"]) == (1, 1, {"letterbox": 1})
    # the other picture confirmed by mistake: acted on, and counted as lost
    groups = [made(["o0", "c0", "o1", "d"], ["checked", "score", "checked"])]
    assert _plan_figures(groups, truth)["not_copies_acted_on"] == 1
