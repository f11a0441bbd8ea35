import json

import pytest
from click.testing import CliRunner

from conftest import write_pictures
from simsearch.cli import main
from simsearch.scorecard import family_dedupe_score, run_eval


def test_eval_end_to_end(tmp_path, tiny_model):
    write_pictures(tmp_path / "originals", 6, seed=11)
    write_pictures(tmp_path / "distractors", 4, seed=12)
    report = run_eval(tmp_path / "originals", tmp_path / "distractors",
                      model=str(tiny_model / "model.onnx"), per_image=4, seed=1)
    data = report.to_dict()
    assert report.n_queries == 24 and report.n_references == 10
    for key in ("uap", "recall_at_1", "per_edit", "dedupe", "calibrated", "baselines"):
        assert key in data
    assert 0 <= data["uap"] <= 1 and 0 <= data["recall_at_1"] <= 1
    assert set(data["baselines"]) == {"phash", "dhash"}
    assert set(data["dedupe"]) == {"threshold", "precision", "recall", "f1"}
    assert data["dedupe"]["threshold"] == pytest.approx(0.95)


def test_eval_cli_json(tmp_path, tiny_model):
    write_pictures(tmp_path / "originals", 4, seed=13)
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "originals"), "--model",
                                       str(tiny_model / "model.onnx"), "--per-image", "2",
                                       "--no-baselines", "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["baselines"] == {} and len(data["per_edit"]) >= 1


class _Item:
    def __init__(self, query, original):
        self.query, self.original = query, original


class _Bench:
    items = [_Item("q1", "a"), _Item("q2", "a"), _Item("q3", "b")]


def test_family_dedupe_score_by_hand():
    family = {"a": 0, "q1": 0, "q2": 0, "b": 1, "q3": 1, "x": 2}
    # group 1: a, q1, q2 -> 3 pairs, all one family; group 2: b, x -> 1 wrong pair
    score = family_dedupe_score([["a", "q1", "q2"], ["b", "x"]], family, _Bench, 0.9)
    assert score.precision == pytest.approx(3 / 4)
    assert score.recall == pytest.approx(2 / 3)  # (q1,a) and (q2,a) found, (q3,b) missed
    assert score.f1 == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))
