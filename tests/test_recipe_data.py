"""The default model's data recipe (recipes/default_model/build_data.py): what it drops by name,
how it caps frame folders, and that adding a training-only package leaves val/ as it was."""
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("imagehash")
ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_data", ROOT / "recipes/default_model/build_data.py")
build_data = sys.modules["build_data"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_data)

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
