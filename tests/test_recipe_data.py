"""The default model's data recipe (recipes/default_model/build_data.py): what it drops by name,
how it caps frame folders, and that adding a training-only package leaves val/ as it was."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imagehash")
ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    from PIL import Image

    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes/default_model" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        spec.loader.exec_module(module)
    finally:  # build_data.py sets Pillow's own limit for its run; the library's tests need theirs
        Image.MAX_IMAGE_PIXELS = limit
    return module


build_data = _load("build_data")
stages = _load("stages")
calibrate = _load("calibrate")

ZIP = "extract/0ad-data/unzipped/usr__share__games__0ad__mods__public__public.zip"


@pytest.mark.parametrize("rel, reason", [
    (f"{ZIP}/art/textures/skins/props/shield/celt_round_norm.png.cached.dds", "channel_map_name"),
    (f"{ZIP}/art/textures/skins/props/shield/celt_round_spec.png.cached.dds", "channel_map_name"),
    (f"{ZIP}/art/textures/skins/structural/ao/barracks.png.cached.dds", "channel_map_name"),
    ("extract/0ad-data/unzipped/usr__share__games__0ad__mods__mod__mod.zip/fonts/sans-bold-16.png.cached.dds",
     "font_atlas"),
    (f"{ZIP}/art/textures/skins/props/shield/celt_round.png.cached.dds", ""),
    (f"{ZIP}/art/textures/ui/session/portraits/units/celt_hero.png.cached.dds", ""),
    ("extract/kstars-data/usr/share/doc/HTML/fr/kstars/screen.png", "other_language"),
])
def test_names_that_are_not_pictures_are_dropped(rel, reason):
    assert build_data.name_drop_reason(rel) == reason


def test_animation_frames_are_capped_per_folder():
    frames = [build_data.Candidate("0ad-data", f"{ZIP}/art/textures/animated/water/ocean/{i:03d}.png.cached.dds")
              for i in range(60)]
    shields = [build_data.Candidate("0ad-data", f"{ZIP}/art/textures/skins/props/shield/s{i:03d}.png.cached.dds")
               for i in range(60)]
    build_data.apply_folder_caps(frames + shields)
    assert sum(not c.dropped for c in frames) == 4
    assert all(not c.dropped for c in shields)  # distinct designs: only the default cap applies


def test_a_training_only_package_leaves_val_as_it_was():
    def pool(package, n):
        return [build_data.Candidate(package, f"extract/{package}/{i}.png") for i in range(n)]
    before = pool("redeclipse-data", 300) + pool("openclipart-png", 300)
    val, train = build_data.split_val(before, count=50)
    added = pool("0ad-data", 400)
    val2, train2 = build_data.split_val(before + added, count=50)
    assert [c.path for c in val2] == [c.path for c in val]
    assert {c.path for c in train2} == {c.path for c in train + added}
    assert not {c.path for c in val2} & {c.path for c in train2}
    # without the rule, the new package would take val places by its hash
    build_data.TRAIN_ONLY_PACKAGES, saved = set(), build_data.TRAIN_ONLY_PACKAGES
    try:
        val3, _ = build_data.split_val(before + added, count=50)
    finally:
        build_data.TRAIN_ONLY_PACKAGES = saved
    assert any(c.package == "0ad-data" for c in val3)


# ---- the stages (recipes/default_model/stages.py) -------------------------------------------

def _stages_command(out, data, *extra):
    return [sys.executable, str(ROOT / "recipes/default_model/stages.py"), "--out", str(out),
            "--train-dir", str(data / "train"), "--val-dir", str(data / "val"), "--until", "2",
            # the recipe on a tiny network: 3 steps an epoch, a checkpoint after every step
            "--set", "epochs=2", "--set", "dim=16", "--set", "input-size=48", "--set", "batch-size=8",
            "--set", "checkpoint-every=1", *extra]


def test_the_recipes_stages_resume_after_a_kill(tmp_path):
    """Stage 2 is killed after its first checkpoint; a rerun skips the finished stage 1 and
    continues stage 2 from that checkpoint instead of starting it over; a third run has nothing
    left to do."""
    import json
    import os
    import re
    import signal
    import subprocess
    import time

    pytest.importorskip("torch")
    from conftest import write_pictures

    data = tmp_path / "data"
    write_pictures(data / "train", 24, seed=1)
    write_pictures(data / "val", 6, seed=2)
    out = tmp_path / "runs" / "default"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_stages_command(out, data), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = stages.stage_dir(out, 2) / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended first: the asserts below say how
    proc.wait()
    assert checkpoint.exists(), proc.stderr.read().decode()
    assert stages.state(stages.stage_dir(out, 1), 2) == "finished"
    assert stages.state(stages.stage_dir(out, 2), 2) == "cut short"
    stage1 = (stages.stage_dir(out, 1) / "model.safetensors").read_bytes()

    again = subprocess.run(_stages_command(out, data), cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"stage 1 ({stages.stage_dir(out, 1)}): finished" in again.stderr
    assert f"stage 2 ({stages.stage_dir(out, 2)}): cut short" in again.stderr
    resumed_at = re.search(r"resuming at step (\d+)", again.stderr)
    assert resumed_at and int(resumed_at.group(1)) >= 1, again.stderr  # not started over
    assert (stages.stage_dir(out, 1) / "model.safetensors").read_bytes() == stage1  # not retrained
    log = [json.loads(line) for line in (stages.stage_dir(out, 2) / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    config = json.loads((stages.stage_dir(out, 2) / "train_config.json").read_text())
    assert config["init"] == str(stages.stage_dir(out, 1) / "model.safetensors")
    assert config["lr"] == stages.STAGES[1].lr and config["seed"] == stages.STAGES[1].seed

    third = subprocess.run(_stages_command(out, data), cwd=ROOT, env=env, capture_output=True, text=True)
    assert third.returncode == 0 and third.stderr.count(": finished") == 2, third.stderr


def test_the_stages_pass_what_train_sh_passed_and_refuse_another_run(tmp_path):
    out = tmp_path / "runs" / "default"
    args = stages.command(4, stages.STAGES[3], out, tmp_path / "train", tmp_path / "val", {}, resume=True)
    pairs = dict(zip(args[4::2], args[5::2]))
    assert pairs["--unlabeled"] == str(tmp_path / "train") and pairs["--out"] == str(out) + "-stage4"
    assert pairs["--init"] == str(out) + "-stage3/model.safetensors"
    assert (pairs["--epochs"], pairs["--lr"], pairs["--seed"], pairs["--memory"]) == ("3", "0.000125", "4", "4096")
    assert (pairs["--backbone"], pairs["--input-size"], pairs["--dim"], pairs["--margin"]) == ("resnet18", "160", "256", "0.25")
    assert args[-1] == "--resume"
    assert stages.options(1, stages.STAGES[0], out, {"epochs": "2"})["init"] == "random"
    # the last stage passes what the shipped model's last stage was trained with
    import json
    last = len(stages.STAGES)
    shipped = json.loads((ROOT / f"simsearch/models/default.stage{last}.train_config.json").read_text())
    mine = dict(zip(*[iter(stages.command(last, stages.STAGES[-1], out, tmp_path / "train",
                                          tmp_path / "val", {}, False)[4:])] * 2))
    assert mine["--init"] == str(out) + f"-stage{last - 1}/model.safetensors"
    assert (int(mine["--epochs"]), float(mine["--lr"]), int(mine["--seed"]), int(mine["--memory"]),
            float(mine["--negative-ceiling"]), float(mine["--koleo"]), float(mine["--margin"]),
            mine.get("--views", "copy"), int(mine["--batch-size"]), int(mine["--input-size"]),
            float(mine.get("--positive-floor", 0))) == (
        shipped["epochs"], shipped["lr"], shipped["seed"], shipped["memory"],
        shipped["negative_ceiling"], shipped["koleo_weight"], shipped["margin"], shipped["views"],
        shipped["batch_size"], shipped["input_size"], shipped.get("positive_floor", 0.0))
    assert last == 10
    # a folder holding a run made with other options is refused, not skipped or resumed
    folder = stages.stage_dir(out, 1)
    folder.mkdir(parents=True)
    (folder / "train_config.json").write_text('{"epochs": 1, "lr": 0.001, "seed": 0, "init": "random"}')
    (folder / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(stages.StageError, match="epochs=1, not '7'"):
        stages.run_stages(out, tmp_path / "train", tmp_path / "val", {}, until=1)
    assert stages.mismatch(folder, stages.options(1, stages.STAGES[0], out, {"epochs": "1"})) == ""
    (folder / "train_log.jsonl").write_text('{"epoch": 1')  # a half-written line reads as 0
    assert stages.finished_epochs(folder) == 0


def test_each_stage_names_its_data_build_and_train_sh_builds_each_once(tmp_path):
    assert all(stage.build in stages.BUILDS for stage in stages.STAGES)
    assert stages.build_plan() == [(4, ("--first-survey", "--skip", "0ad-data")), (6, ("--first-survey",)),
                                   (10, ())]
    assert stages.build_plan(3) == [(3, ("--first-survey", "--skip", "0ad-data"))]
    printed = subprocess.run([sys.executable, str(ROOT / "recipes/default_model/stages.py"), "--builds"],
                             capture_output=True, text=True, check=True).stdout
    assert printed.splitlines() == ["4 --first-survey --skip 0ad-data", "6 --first-survey", "10"]
    assert "--until 4" not in (ROOT / "recipes/default_model/train.sh").read_text()


def test_train_sh_builds_each_stages_data_before_training_them_then_ships(tmp_path):
    # train.sh run for real with a stand-in python that records each command and answers only
    # stages.py's --builds and --last-dir (the real stages.py): no data, no training
    log = tmp_path / "calls.jsonl"
    stub = tmp_path / "python"
    stub.write_text(f"""#!{sys.executable}
import json, subprocess, sys
with open({str(log)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1].endswith("stages.py") and ("--builds" in sys.argv or "--last-dir" in sys.argv):
    sys.exit(subprocess.run([{sys.executable!r}, *sys.argv[1:]]).returncode)
""")
    stub.chmod(0o755)
    out = tmp_path / "runs" / "default"

    def run(**env):
        log.write_text("")
        subprocess.run(["bash", str(ROOT / "recipes/default_model/train.sh")], check=True, cwd=tmp_path,
                       env={**os.environ, "PYTHON": str(stub), "OUT": str(out), "FETCH": "0", **env})
        return [[Path(a).name if a.endswith(".py") else a for a in json.loads(line)]
                for line in log.read_text().splitlines()]

    last = str(len(stages.STAGES))
    assert run() == [
        ["stages.py", "--builds"],
        ["build_data.py", "--first-survey", "--skip", "0ad-data"], ["build_data.py", "--check"],
        ["stages.py", "--out", str(out), "--until", "4"],
        ["build_data.py", "--first-survey"], ["build_data.py", "--check"],
        ["stages.py", "--out", str(out), "--until", "6"],
        ["build_data.py"], ["build_data.py", "--check"],
        ["stages.py", "--out", str(out), "--until", last],
        ["stages.py", "--out", str(out), "--last-dir"],
        ["ship.py", f"{out}-stage{last}"],
        ["calibrate.py", "--write", "--variants", "recipes/default_model/trials/val-variants.json"]]
    # BUILD_ARGS replaces every build's arguments
    assert [c for c in run(BUILD_ARGS="") if c[0] == "build_data.py"] == [
        ["build_data.py"], ["build_data.py", "--check"]] * len(stages.build_plan())


def test_a_first_survey_build_leaves_out_the_second_surveys_packages_and_fetch_data_fetches_them():
    extracted = ["0ad-data", "redeclipse-data", "flightgear-data-base", "wesnoth-1.16-httt"]
    assert build_data.skipped([], extracted) == frozenset()
    assert build_data.skipped(["--first-survey"], extracted) == {"flightgear-data-base", "wesnoth-1.16-httt"}
    assert build_data.skipped(["--first-survey", "--skip", "0ad-data"], extracted) == {
        "0ad-data", "flightgear-data-base", "wesnoth-1.16-httt"}
    assert build_data.skipped(["--skip", "0ad-data", "--first-survey"], ["0ad-data"]) == {"0ad-data"}
    for bad in (["--skip"], ["--first"], ["0ad-data"]):
        with pytest.raises(SystemExit, match="usage"):
            build_data.skipped(bad, extracted)
    # the second survey is training-only (val/ stays as it was) and fetch_data.sh downloads it
    assert build_data.SECOND_SURVEY <= build_data.TRAIN_ONLY_PACKAGES
    script = (ROOT / "recipes/default_model/fetch_data.sh").read_text()
    block = script.split("TRAIN_PACKAGES=(", 1)[1]
    listed = " ".join(line.split("#")[0] for line in block.splitlines()).split(")")[0].split()
    assert build_data.SECOND_SURVEY <= set(listed)
    assert not any(marker in p for p in listed for marker in build_data.EVAL_NAME_MARKERS)


def test_recall_at_a_fixed_precision_is_read_between_the_sweeps_steps():
    sweep = [{"threshold": 0.84, "precision": 0.90, "recall": 0.80},
             {"threshold": 0.85, "precision": 0.94, "recall": 0.76},
             {"threshold": 0.86, "precision": 0.98, "recall": 0.70}]
    # a quarter of the way from 0.94 to 0.98 in precision: a quarter of the way from 0.76 to 0.70
    assert calibrate.recall_at_precision(sweep, 0.95) == pytest.approx(0.745)
    assert calibrate.recall_at_precision(sweep, 0.98) == pytest.approx(0.70)
    assert calibrate.recall_at_precision(sweep, 0.85) == pytest.approx(0.80)  # the first step passes
    assert calibrate.recall_at_precision(sweep, 0.99) is None


def test_the_check_settings_rule_takes_the_fewest_glyphs_acted_on_then_most_precise_of_the_near_best():
    sys.path.insert(0, str(ROOT / "recipes/default_model"))  # verify_trial imports calibrate
    try:
        verify_trial = _load("verify_trial")
    finally:
        sys.path.remove(str(ROOT / "recipes/default_model"))
    rows = [{"setting": "a", "recall_at_p97": 0.910, "threshold": 0.80, "threshold_precision": 0.972},
            {"setting": "b", "recall_at_p97": 0.906, "threshold": 0.80, "threshold_precision": 0.979},
            {"setting": "c", "recall_at_p97": 0.904, "threshold": 0.80, "threshold_precision": 0.990},
            {"setting": "d", "recall_at_p97": None, "threshold": None, "threshold_precision": None}]
    assert verify_trial.choose(rows)["setting"] == "b"  # c is more than 0.005 behind a
    assert verify_trial.choose(rows, margin=0.01)["setting"] == "c"
    assert verify_trial.choose(rows[:1])["setting"] == "a"
    # among the near best, fewer files acted on by false groups of look-alike glyphs come
    # before precision
    glyphs = [r | {"glyph_false_members": n} for r, n in zip(rows, (30, 35, 20, None))]
    assert verify_trial.choose(glyphs)["setting"] == "a"  # c is still too far behind
    assert verify_trial.choose(glyphs, margin=0.01)["setting"] == "c"
    glyphs[0]["glyph_false_members"] = 35
    assert verify_trial.choose(glyphs)["setting"] == "b"  # a tie: the more precise
    # a row the glyphs were not measured for never wins on them
    unmeasured = glyphs[:3] + [glyphs[2] | {"setting": "e", "glyph_false_members": None}]
    assert verify_trial.choose(unmeasured, margin=0.01)["setting"] == "c"
    # the margin includes its edge, whatever the floats' rounding
    edge = [{"setting": "f", "recall_at_p97": 0.935625, "threshold": 0.80,
             "threshold_precision": 0.971, "glyph_false_members": 283},
            {"setting": "g", "recall_at_p97": 0.930625, "threshold": 0.80,
             "threshold_precision": 0.977, "glyph_false_members": 283}]
    assert verify_trial.choose(edge)["setting"] == "g"


def test_variant_originals_merge_into_one_family_transitively():
    originals = [Path(f"/val/{n}.jpg") for n in "abcde"]
    family = {str(p): i for i, p in enumerate(originals)}
    family.update({"/q/0.jpg": 2, "/q/1.jpg": 4})  # copies of c and e
    merged = calibrate.merge_variants(family, originals, [("e.jpg", "c.jpg"), ("b.jpg", "e.jpg"),
                                                          ("zz.jpg", "a.jpg")])  # zz: not in this set
    assert merged == {"/val/a.jpg": 0, "/val/b.jpg": 1, "/val/c.jpg": 1, "/val/d.jpg": 3,
                      "/val/e.jpg": 1, "/q/0.jpg": 1, "/q/1.jpg": 1}
    assert calibrate.merge_variants(family, originals, []) == family


def test_the_variants_file_keeps_only_pairs_judged_variants(tmp_path):
    labels = tmp_path / "v.json"
    labels.write_text('{"pairs": [{"a": "x.jpg", "b": "y.jpg", "variant": true},'
                      ' {"a": "x.jpg", "b": "z.jpg", "variant": false}]}')
    assert calibrate.load_variants(labels) == [("x.jpg", "y.jpg")]
    labels.write_text('{"pairs": [{"a": "x.jpg"}]}')
    with pytest.raises(SystemExit, match="v.json: not a readable variants file"):
        calibrate.load_variants(labels)
    # val_variants.py writes every pair with "variant": null, to be judged; none may stay so
    labels.write_text('{"pairs": [{"a": "x.jpg", "b": "y.jpg", "variant": true},'
                      ' {"a": "x.jpg", "b": "z.jpg", "variant": null}]}')
    with pytest.raises(SystemExit, match="1 pairs not judged.*first x.jpg / z.jpg"):
        calibrate.load_variants(labels)


def test_merged_variants_count_as_right_in_dedupe_but_search_stays_exact():
    import numpy as np

    class Item:
        def __init__(self, query, original):
            self.query, self.original = Path(query), Path(original)

    class Bench:
        originals = (Path("/v/a.jpg"), Path("/v/b.jpg"), Path("/v/c.jpg"))
        items = (Item("/q/a1.jpg", "/v/a.jpg"), Item("/q/b1.jpg", "/v/b.jpg"),
                 Item("/q/c1.jpg", "/v/c.jpg"))

    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 64)).astype(np.float32)
    unit = lambda v: (v / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    ab = unit(base[0])  # a and b are one picture to the model: a variant pair
    vectors = {"/v/a.jpg": ab, "/v/b.jpg": unit(ab + 0.01 * rng.normal(size=64)),
               "/v/c.jpg": unit(base[1]), "/q/a1.jpg": unit(ab + 0.02 * rng.normal(size=64)),
               "/q/b1.jpg": unit(ab + 0.02 * rng.normal(size=64)),
               "/q/c1.jpg": unit(base[1] + 0.02 * rng.normal(size=64))}
    offsets = dict.fromkeys(vectors, 0.0)
    ids = list(vectors)
    family = {"/v/a.jpg": 0, "/v/b.jpg": 1, "/v/c.jpg": 2, "/q/a1.jpg": 0, "/q/b1.jpg": 1, "/q/c1.jpg": 2}
    merged = calibrate.merge_variants(family, Bench.originals, [("a.jpg", "b.jpg")])
    strict = calibrate.measure(vectors, offsets, Bench, {}, 1.0, ids, family)
    fair = calibrate.measure(vectors, offsets, Bench, {}, 1.0, ids, family, merged)
    at = lambda row: next(s for s in row["sweep"] if s["threshold"] == 0.9)  # noqa: E731
    # a, b and their copies form one group: strict counts the a-b pairs false, fair counts them right
    assert at(strict)["precision"] < 1.0 and at(strict)["mixed_groups"] == 1
    assert at(fair)["precision"] == 1.0 and at(fair)["mixed_groups"] == 0
    assert at(fair)["recall"] == at(strict)["recall"] == 1.0
    assert fair["uap"] == strict["uap"] and fair["recall_at_1"] == strict["recall_at_1"]
    calibrate.print_rows([fair])  # no half-size re-saves were made: their columns print as "-"


def test_soup_averages_every_weight_and_refuses_bad_runs(tmp_path):
    """recipes/default_model/soup.py: the mean of two tiny runs' weights, exported like a trained
    model; a missing run, a different network or an existing folder is refused by name."""
    torch = pytest.importorskip("torch")
    from simsearch.config import ModelConfig
    from simsearch.model import create_model, load_model, save_model

    runs = []
    for seed, dim in ((1, 16), (2, 16), (3, 8)):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        save_model(create_model(ModelConfig(dim=dim, input_size=32, pooling="avg"), seed=seed),
                   run / "model.safetensors", half=False)
        runs.append(run)
    script = [sys.executable, str(ROOT / "recipes/default_model/soup.py")]
    done = subprocess.run(script + [str(runs[0]), str(runs[1]), "--out", str(tmp_path / "soup")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "soup" / "model.onnx").is_file()
    a, b, mean = (load_model(p / "model.safetensors").state_dict()
                  for p in (runs[0], runs[1], tmp_path / "soup"))
    for name, tensor in mean.items():
        if tensor.is_floating_point():  # saved as float16 by default
            assert torch.allclose(tensor.float(), (a[name].float() + b[name].float()) / 2, atol=2e-3), name
    for args, out, says in (([runs[0], tmp_path / "nothing"], "new", "missing: " + str(tmp_path / "nothing")),
                            ([runs[0], runs[2]], "new", "a different network"),
                            ([runs[0], runs[1]], "soup", "exists")):
        refused = subprocess.run(script + [str(p) for p in args] + ["--out", str(tmp_path / out)],
                                 capture_output=True, text=True, cwd=ROOT)
        assert refused.returncode != 0 and says in refused.stderr
    assert not (tmp_path / "new").exists()


def test_lookalikes_renders_distinct_symbols_and_counts_every_grouped_pair(tmp_path, tiny_model):
    # the recipe's look-alike check: each (font, style) set deduped on its own by the product;
    # every group is false and its pairs are counted; sets are never merged
    lookalikes = _load("lookalikes")
    try:
        fonts = lookalikes.find_fonts()
    except SystemExit as e:
        pytest.skip(str(e))
    font = dict([next(iter(fonts.items()))])
    sets = lookalikes.write_sets(tmp_path / "g", font, glyphs="0168E")
    assert len(sets) == len(lookalikes.STYLES) and all(len(list(d.iterdir())) == 5 for d in sets)
    from PIL import Image
    for d in sets:  # five different pictures in each set
        pixels = [np.asarray(Image.open(p)) for p in sorted(d.iterdir())]
        assert all((a != b).any() for i, a in enumerate(pixels) for b in pixels[i + 1:])
    model = str(tiny_model / "model.onnx")
    # scores alone: with the check, glyphs that do not line up would need the model's 0.95
    loose = lookalikes.score(model, sets, tmp_path / "a", threshold=-1.0, check=False)
    assert loose["pictures"] == 15 and loose["threshold"] == -1.0
    assert loose["false_groups"] == 3 and loose["false_pairs"] == 3 * 10  # one group of 5 per set
    assert sum(s["false_pairs"] for s in loose["by_style"].values()) == 30
    strict = lookalikes.score(model, sets, tmp_path / "b", threshold=0.99999)
    assert strict["false_groups"] == strict["false_pairs"] == 0
    with pytest.raises(SystemExit, match="fonts-dejavu-core"):
        lookalikes.find_fonts((tmp_path / "none",))
