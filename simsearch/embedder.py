"""Run-time inference without torch: ONNX Runtime, batching, preprocessing.

A model is named by a path (`.onnx`, `.safetensors`, or a folder holding `model.onnx` /
`model.safetensors`) or by `default`. A `.safetensors` file without a matching `.onnx` beside it
is exported once (that step needs torch) into the user cache and reused from there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from simsearch.config import ModelConfig
from simsearch.errors import ModelError
from simsearch.images import resize_square

__all__ = ["ModelRef", "Embedder", "resolve_model", "DEFAULT_MODEL_DIR", "cache_dir"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models"
# The metadata keys are defined in export.py, which imports torch; repeat them here as data.
_META_CONFIG = "simsearch_config"
_META_MODEL_ID = "simsearch_model_id"
_META_THRESHOLD = "simsearch_dedupe_threshold"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: the ONNX file to run, its config and identity (SHA-256 of weights)."""

    onnx_path: Path
    config: ModelConfig
    model_id: str
    name: str
    dedupe_threshold: float | None = None


def cache_dir() -> Path:
    root = os.environ.get("SIMSEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "simsearch")
    return Path(root)


def resolve_model(spec: str | os.PathLike | None = None) -> ModelRef:
    """Find the ONNX file for a model spec, exporting it from safetensors when needed."""
    if spec is None or str(spec) == "default":
        onnx_path = DEFAULT_MODEL_DIR / "default.onnx"
        if onnx_path.is_file():
            return _read_onnx(onnx_path, "default")
        return _random_default()
    path = Path(spec).expanduser()
    if path.is_dir():
        for candidate in ("model.onnx", "model.safetensors"):
            if (path / candidate).is_file():
                return resolve_model(path / candidate)
        raise ModelError(f"{path}: folder has no model.onnx or model.safetensors")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if path.suffix == ".onnx":
        return _read_onnx(path, str(path))
    if path.suffix == ".safetensors":
        return _from_safetensors(path)
    raise ModelError(f"{path}: a model is a .onnx or .safetensors file (or a folder of them)")


def _read_onnx(path: Path, name: str) -> ModelRef:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX model ({e})") from e
    meta = {p.key: p.value for p in proto.metadata_props}
    if _META_CONFIG not in meta or _META_MODEL_ID not in meta:
        raise ModelError(f"{path}: ONNX file was not exported by simsearch (no model metadata)")
    threshold = float(meta[_META_THRESHOLD]) if _META_THRESHOLD in meta else None
    return ModelRef(path, ModelConfig.from_json(meta[_META_CONFIG]), meta[_META_MODEL_ID], name,
                    threshold)


def _from_safetensors(path: Path) -> ModelRef:
    from simsearch.files import sha256

    model_id = sha256(path)
    for candidate in (path.with_suffix(".onnx"), cache_dir() / "onnx" / f"{model_id}.onnx"):
        if candidate.is_file():
            ref = _read_onnx(candidate, str(path))
            if ref.model_id == model_id:
                return ref
    from simsearch.export import export_onnx  # torch: only on the first use of this model
    from simsearch.model import load_model

    target = cache_dir() / "onnx" / f"{model_id}.onnx"
    export_onnx(load_model(path), target, model_id)
    return _read_onnx(target, str(path))


def _random_default() -> ModelRef:
    """Until a trained default model ships, the default is a seeded random-init ResNet-18."""
    import hashlib

    config = ModelConfig()
    digest = hashlib.sha256(config.to_json().encode()).hexdigest()[:12]
    model_id = f"random-init-seed0-{digest}"
    target = cache_dir() / "onnx" / f"{model_id}.onnx"
    if not target.is_file():
        from simsearch.export import export_onnx
        from simsearch.model import create_model

        export_onnx(create_model(config, seed=0), target, model_id)
    return _read_onnx(target, "default (random init)")


class Embedder:
    """Pictures in, unit vectors out, through one ONNX Runtime session."""

    def __init__(self, model: ModelRef, threads: int | None = None):
        import onnxruntime as ort

        self.model = model
        self.config = model.config
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(model.onnx_path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"{model.onnx_path}: ONNX Runtime cannot load it ({e})") from e

    @property
    def dim(self) -> int:
        return self.config.dim

    def prepare(self, image: Image.Image) -> np.ndarray:
        """A decoded RGB picture to the uint8 [H, W, 3] array the graph takes."""
        return np.asarray(resize_square(image, self.config.input_size), dtype=np.uint8)

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [n, H, W, 3] -> float32 [n, dim] unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = self.session.run(None, {"images": np.ascontiguousarray(batch, dtype=np.uint8)})[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_arrays(np.stack([self.prepare(im) for im in images]))

    def describe(self) -> dict:
        return {"name": self.model.name, "id": self.model.model_id,
                "config": json.loads(self.config.to_json())}
