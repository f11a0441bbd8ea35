"""Shared fixtures: a tiny seeded model exported to ONNX, generated images, an isolated cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simsearch.demo import picture

TINY_SIZE = 64


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """No test touches the user's cache or ./indexes."""
    monkeypatch.setenv("SIMSEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("SIMSEARCH_INDEX", raising=False)


def make_picture(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A distinct synthetic 'photo': a smooth colour field with random shapes on it."""
    return picture(seed, size)


def write_pictures(folder: Path, n: int, seed: int = 0, suffix: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}{suffix}"
        make_picture(seed * 1000 + i).save(path, quality=92)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A seeded random-init ResNet-18 at 64 px, dim 32, exported to ONNX.

    The projection bias is set so that the mean embedding of random pictures is zero: a random
    network otherwise maps every picture into one narrow cone (cosine ~0.98 for anything), which
    would make dedupe tests meaningless. The trunk stays random. Without torch (the light
    install) the tests that use it are skipped; CI installs torch with '.[test]'.
    """
    torch = pytest.importorskip("torch")

    from simsearch.config import ModelConfig
    from simsearch.export import export_onnx
    from simsearch.model import create_model, save_model

    folder = tmp_path_factory.mktemp("tiny_model")
    model = create_model(ModelConfig(dim=32, input_size=TINY_SIZE, pooling="avg"), seed=0)
    pictures = [np.asarray(make_picture(500 + i).resize((TINY_SIZE, TINY_SIZE)), np.float32)
                for i in range(32)]
    x = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(model.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.std).view(1, 3, 1, 1)
    with torch.no_grad():
        pooled = model.pool(model.forward_features((x - mean) / std)).flatten(1)
        model.proj.bias -= model.proj(pooled).mean(0)
    model_id = save_model(model, folder / "model.safetensors", half=False)
    export_onnx(model, folder / "model.onnx", model_id, dedupe_threshold=0.95, half_weights=False)
    return folder


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    write_pictures(folder, 8)
    return folder
