import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the train extra; CI installs it with .[test]

from simsearch.config import ModelConfig  # noqa: E402
from simsearch.embedder import Embedder  # noqa: E402
from simsearch.models import resolve_model  # noqa: E402
from simsearch.errors import ModelError  # noqa: E402
from simsearch.export import export_onnx  # noqa: E402
from simsearch.model import create_model, load_imagenet_trunk, load_model, save_model  # noqa: E402

TINY = ModelConfig(dim=16, input_size=48)


def test_output_is_unit_norm_and_seeded():
    a, b = create_model(TINY, seed=3), create_model(TINY, seed=3)
    x = torch.randn(4, 3, 48, 48)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(ya.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50"])
def test_backbones(backbone):
    model = create_model(ModelConfig(backbone=backbone, dim=8, input_size=32, pooling="avg"))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 8)


def test_save_load_identical_vectors(tmp_path):
    model = create_model(TINY, seed=1)
    save_model(model, tmp_path / "m.safetensors", half=False)
    loaded = load_model(tmp_path / "m.safetensors")
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x))
    assert loaded.config == TINY
    assert (tmp_path / "m.json").is_file()


def test_malformed_model_files_rejected(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}xxxxxx")
    with pytest.raises(ModelError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="bad.onnx"):
        resolve_model(tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="not found"):
        resolve_model(tmp_path / "missing.onnx")


def test_onnx_matches_torch_and_resolves_from_safetensors(tmp_path):
    from simsearch.export import convert
    model = create_model(TINY, seed=2)
    model_id = save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(ModelError, match="simsearch convert .*m.safetensors"):
        resolve_model(tmp_path / "m.safetensors")  # no export yet: never one made behind our back
    assert convert(tmp_path / "m.safetensors") == tmp_path / "m.onnx"
    ref = resolve_model(tmp_path / "m.safetensors")
    assert ref.model_id == model_id and ref.config == TINY and ref.onnx_path == tmp_path / "m.onnx"
    embedder = Embedder(ref)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    got = embedder.embed_arrays(batch)
    mean = torch.tensor(TINY.mean).view(1, 3, 1, 1)
    std = torch.tensor(TINY.std).view(1, 3, 1, 1)
    x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        want = load_model(tmp_path / "m.safetensors")(x).numpy()
    assert (got * want).sum(1).min() > 0.999


def test_imagenet_weights_from_file(tmp_path):
    import torchvision
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    model = load_imagenet_trunk(create_model(TINY), tmp_path / "resnet18-f37072fd.pth")
    torch.testing.assert_close(model.trunk[0].weight, reference.conv1.weight)
    torch.testing.assert_close(model.trunk[7][1].conv2.weight, reference.layer4[1].conv2.weight)


def test_imagenet_weights_missing_or_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelError, match="never downloads"):
        load_imagenet_trunk(create_model(TINY))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match="not resnet18 ImageNet weights"):
        load_imagenet_trunk(create_model(TINY), tmp_path / "wrong.pth")


def test_int8_variant_is_chosen_by_precision_and_agrees(tmp_path, monkeypatch):
    import shutil

    from conftest import make_picture
    from simsearch.export import quantize_int8
    model = create_model(TINY, seed=4)
    model_id = save_model(model, tmp_path / "m.safetensors", half=False)
    export_onnx(model, tmp_path / "m.onnx", model_id, half_weights=False)
    pictures = np.stack([np.asarray(make_picture(i).resize((48, 48))) for i in range(32)])
    quantize_int8(tmp_path / "m.onnx", tmp_path / "m.int8.onnx", pictures)
    quantize_int8(tmp_path / "m.onnx", tmp_path / "m.int8-avx2.onnx", pictures, reduce_range=True)
    from simsearch import models
    monkeypatch.setattr(models, "_cpu_flags", lambda: frozenset({"sse2", "avx2", "avx512_vnni"}))
    assert resolve_model(tmp_path / "m.onnx", precision="fp32").precision == "fp32"
    int8 = resolve_model(tmp_path / "m.onnx", precision="int8")
    assert int8.precision == "int8" and int8.model_id == model_id and int8.config == TINY
    assert int8.onnx_path.name == "m.int8.onnx"
    monkeypatch.setenv("SIMSEARCH_PRECISION", "int8")
    assert resolve_model(tmp_path / "m.onnx").precision == "int8"
    fp32 = Embedder(resolve_model(tmp_path / "m.onnx", precision="fp32")).embed_arrays(pictures)
    q8 = Embedder(int8).embed_arrays(pictures)
    assert (fp32 * q8).sum(1).min() > 0.95
    # the 7-bit variant, for x86 CPUs without VNNI (whichever this CPU is, it runs the file)
    monkeypatch.setattr(models, "_cpu_flags", lambda: frozenset({"sse2", "avx2"}))
    seven = resolve_model(tmp_path / "m.onnx", precision="int8")
    assert seven.onnx_path.name == "m.int8-avx2.onnx" and seven.model_id == model_id
    assert (fp32 * Embedder(seven).embed_arrays(pictures)).sum(1).min() > 0.95
    shutil.copy(tmp_path / "m.onnx", tmp_path / "solo.onnx")
    with pytest.raises(ModelError, match="no int8 variant"):
        resolve_model(tmp_path / "solo.onnx", precision="int8")
    with pytest.raises(ModelError, match="precision must be"):
        resolve_model(tmp_path / "m.onnx", precision="fp16")


def _shipped_model_agreement(images):
    """Cosines between the shipped default model run by ONNX Runtime (fp32 and, where shipped,
    int8) and the same weights run by torch, on the same uint8 pixels."""
    from simsearch.models import DEFAULT_MODEL_DIR
    from simsearch.images import resize_square
    weights = DEFAULT_MODEL_DIR / "default.safetensors"
    if not weights.is_file():
        pytest.skip("no shipped default model")
    fp32 = Embedder(resolve_model("default", precision="fp32"))
    size = fp32.config.input_size
    batch = np.stack([np.asarray(resize_square(img.convert("RGB"), size)) for img in images])
    model = load_model(weights).float().eval()
    mean = torch.tensor(fp32.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(fp32.config.std).view(1, 3, 1, 1)
    x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        want = model(x).numpy()
    got = fp32.embed_arrays(batch)
    from simsearch.models import cpu_int8_saturates, int8_paths
    int8 = int8_paths(DEFAULT_MODEL_DIR / "default.onnx")[1 if cpu_int8_saturates() else 0]
    q8 = Embedder(resolve_model("default", precision="int8")).embed_arrays(batch) \
        if int8.is_file() else None
    return (got * want).sum(1), None if q8 is None else (q8 * got).sum(1)


def test_shipped_onnx_model_gives_the_torch_vectors():
    import random

    from simsearch.demo import scene
    from simsearch.edits import EDIT_NAMES, apply_edit
    images = [scene(seed) for seed in range(6)]
    images += [apply_edit(name, images[i % 6], random.Random(i))
               for i, name in enumerate(EDIT_NAMES)]
    fp32, int8 = _shipped_model_agreement(images)
    assert fp32.min() >= 0.999
    assert int8 is None or (np.median(int8) >= 0.99 and int8.min() >= 0.9)
    from simsearch.models import cpu_int8_saturates
    if cpu_int8_saturates():  # the 7-bit file runs here; the 8-bit one's least was 0.907
        assert int8 is not None and int8.min() >= 0.98


@pytest.mark.slow
def test_shipped_onnx_model_gives_the_torch_vectors_on_real_photographs():
    from pathlib import Path

    from PIL import Image
    folder = Path(__file__).resolve().parents[1] / "data" / "eval" / "originals"
    photos = sorted(p for p in folder.glob("*.jpg") if "tuxpaint" not in p.name)
    if not photos:
        pytest.skip("no evaluation photographs here (bash recipes/default_model/fetch_data.sh "
                    "&& python recipes/default_model/build_data.py)")
    fp32, int8 = _shipped_model_agreement([Image.open(p) for p in photos])
    assert fp32.min() >= 0.999
    # int8 is further off on smooth gradients (worst seen: 0.92 on a lomiri wallpaper)
    assert int8 is None or (np.median(int8) >= 0.99 and int8.min() >= 0.9)
