"""Run-time inference without torch: ONNX Runtime sessions, batching, preprocessing.

Which model to run is `simsearch.models`' business; this module runs one. Every vector that
leaves it is checked: the network's output must be [n, dim] unit vectors, as its metadata
promises, or the model is refused (ModelError naming its file) before anything is stored.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from simsearch.errors import ModelError
from simsearch.images import resize_square
from simsearch.models import ModelRef

__all__ = ["Embedder"]

# A unit vector's norm, as an fp32 graph ending in L2 normalisation computes it, is 1 to ~1e-6.
_NORM_TOLERANCE = 1e-3

_SESSIONS: dict[tuple, object] = {}


def _session(model: ModelRef, threads: int | None = None, device: str = "cpu"):
    """One checked ONNX Runtime session per (file, version, thread count, device) in this
    process."""
    import onnxruntime as ort

    path = model.onnx_path
    threads = threads or os.cpu_count() or 1
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns, threads, device, model.config)
    except OSError as e:
        raise ModelError(f"{path}: cannot read model ({e.strerror or e})") from None
    providers: list = ["CPUExecutionProvider"]
    if device.startswith("cuda:"):
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device[5:])}))
    if key not in _SESSIONS:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:
            raise ModelError(f"{path}: not a model ONNX Runtime can load ({_first_line(e)})") from None
        if device != "cpu" and session.get_providers()[0] != "CUDAExecutionProvider":
            raise ModelError(f"device {device}: ONNX Runtime could not start CUDA there (it fell "
                             f"back to {', '.join(session.get_providers())}); check the GPU and "
                             f"driver, or use --device cpu")
        _check_session(session, model)
        _SESSIONS[key] = session
    return _SESSIONS[key]


def _check_session(session, model: ModelRef) -> None:
    """The graph takes `images` and gives [n, dim] vectors, as far as its declared shapes tell
    (free; `Embedder.verify` runs it, and every batch is checked)."""
    path, config = model.onnx_path, model.config
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != ["images"] or not outputs:
        raise ModelError(f"{path}: the graph does not take one input named 'images' (it takes "
                         f"{', '.join(i.name for i in inputs)[:200]}); not a simsearch export")
    declared = outputs[0].shape
    if len(declared) != 2 or (isinstance(declared[1], int) and declared[1] != config.dim):
        raise ModelError(f"{path}: the network outputs vectors of shape {declared}, its metadata "
                         f"says {config.dim} dimensions; the file is damaged or mislabelled")


def _run(session, path: Path, batch: np.ndarray) -> np.ndarray:
    try:
        return session.run(None, {"images": batch})[0]
    except Exception as e:  # ONNX Runtime raises its own types for a graph that fails to run
        raise ModelError(f"{path}: the network failed to run ({_first_line(e)})") from None


def _checked(path: Path, dim: int, out, n: int) -> np.ndarray:
    """`out` as float32 [n, dim] unit vectors, or ModelError naming the model file."""
    out = np.asarray(out)
    if out.shape != (n, dim):
        raise ModelError(f"{path}: the network gave vectors of shape {list(out.shape)} for {n} "
                         f"images, its metadata says {dim} dimensions; the file is damaged or "
                         f"mislabelled: use another model (--model PATH)")
    out = np.ascontiguousarray(out, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ModelError(f"{path}: the network gave NaN or infinite values; the model is broken: "
                         f"use another model (--model PATH)")
    norms = np.linalg.norm(out, axis=1)
    if np.abs(norms - 1).max() > _NORM_TOLERANCE:
        raise ModelError(f"{path}: the network gave vectors of length "
                         f"{float(norms[np.argmax(np.abs(norms - 1))]):.4g}, not unit vectors "
                         f"(a simsearch model ends in L2 normalisation): use another model "
                         f"(--model PATH)")
    return out


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


class Embedder:
    """Pictures in, unit vectors out, through one ONNX Runtime session on `device` ("cpu" or
    "cuda:N", as `resolve_device` returns)."""

    def __init__(self, model: ModelRef, threads: int | None = None, device: str = "cpu"):
        self.model = model
        self.config = model.config
        self.device = device
        self.session = _session(model, threads, device)

    @property
    def dim(self) -> int:
        return self.config.dim

    def verify(self) -> None:
        """Run one generated picture through the network and check what comes out ([1, dim]
        finite unit vectors), so that a broken model is refused before anything is written.
        (Every batch is checked anyway; this costs one forward pass, ~25 ms of CPU for the
        default model, so only writers call it.)"""
        size = self.config.input_size
        ramp = np.linspace(0, 255, size, dtype=np.float32)
        probe = np.stack([*np.meshgrid(ramp, ramp[::-1]), np.full((size, size), 60.0)], -1)
        self.embed_arrays(probe.astype(np.uint8)[None])

    def prepare(self, image: Image.Image) -> np.ndarray:
        """A decoded RGB picture to the uint8 [H, W, 3] array the graph takes."""
        return np.asarray(resize_square(image, self.config.input_size), dtype=np.uint8)

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [n, H, W, 3] -> float32 [n, dim] unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = _run(self.session, self.model.onnx_path, np.ascontiguousarray(batch, dtype=np.uint8))
        return _checked(self.model.onnx_path, self.dim, out, len(batch))

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_arrays(np.stack([self.prepare(im) for im in images]))

    def describe(self) -> dict:
        return {"name": self.model.name, "id": self.model.model_id,
                "config": json.loads(self.config.to_json())}
