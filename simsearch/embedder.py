"""Run-time inference without torch: ONNX Runtime, batching, preprocessing.

A model is named by a path (`.onnx`, `.safetensors`, or a folder holding `model.onnx` /
`model.safetensors`) or by `default`. A `.safetensors` file without a matching `.onnx` beside it
is exported once (that step needs torch) into the user cache and reused from there.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from simsearch.config import ModelConfig
from simsearch.errors import ModelError
from simsearch.images import resize_square

__all__ = ["ModelRef", "Embedder", "resolve_model", "resolve_device", "DEFAULT_MODEL_DIR",
           "cache_dir"]

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
    precision: str = "fp32"
    background_file: Path | None = None  # NAME.background.npz, see simsearch.scoring


def cache_dir() -> Path:
    root = os.environ.get("SIMSEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "simsearch")
    return Path(root)


def resolve_model(spec: str | os.PathLike | None = None, precision: str | None = None,
                  device: str = "cpu") -> ModelRef:
    """Find the ONNX file for a model spec, exporting it from safetensors when needed.

    `precision` ("auto", "fp32" or "int8"; default `$SIMSEARCH_PRECISION` or auto): an int8
    variant (`NAME.int8.onnx` beside `NAME.onnx`) is used where asked for, or with auto where the
    CPU has VNNI int8 instructions (elsewhere int8 is no faster; on a GPU `device` auto means
    fp32). Both variants have the same
    model identity: their vectors agree to within the quantisation error that the benchmarks
    report, so an index can be shared between machines that pick differently.
    """
    precision = (precision or os.environ.get("SIMSEARCH_PRECISION") or "auto").lower()
    if precision not in ("auto", "fp32", "int8"):
        raise ModelError(f"precision must be auto, fp32 or int8, not {precision!r}")
    from simsearch.scoring import background_path

    onnx_path, name = _locate(spec)
    source = onnx_path if name in ("default", "default (random init)") else Path(name)
    background = background_path(source)
    background = background if background.is_file() else None
    int8 = onnx_path.with_name(onnx_path.name[: -len(".onnx")] + ".int8.onnx")
    if precision == "int8" and not int8.is_file():
        raise ModelError(f"{name} has no int8 variant ({int8} not found)")
    if int8.is_file() and (precision == "int8" or (precision == "auto" and device == "cpu" and cpu_has_vnni())):
        ref = dataclasses.replace(_read_onnx(int8, name), precision="int8")
    else:
        ref = _read_onnx(onnx_path, name)
    return dataclasses.replace(ref, background_file=background)


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI or AVX-VNNI)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "avx512_vnni" in flags or "avx_vnni" in flags
    except OSError:
        pass
    return False


def _locate(spec: str | os.PathLike | None) -> tuple[Path, str]:
    """The fp32 ONNX file of a model spec and the model's display name."""
    if spec is None or str(spec) == "default":
        onnx_path = DEFAULT_MODEL_DIR / "default.onnx"
        if onnx_path.is_file():
            return onnx_path, "default"
        return _random_default(), "default (random init)"
    path = Path(spec).expanduser()
    if path.is_dir():
        for candidate in ("model.onnx", "model.safetensors"):
            if (path / candidate).is_file():
                return _locate(path / candidate)
        raise ModelError(f"{path}: folder has no model.onnx or model.safetensors")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if path.name.endswith(".int8.onnx"):
        raise ModelError(f"{path}: name the fp32 model (.onnx); its int8 variant is chosen by "
                         f"precision")
    if path.suffix == ".onnx":
        return path, str(path)
    if path.suffix == ".safetensors":
        return _from_safetensors(path), str(path)
    raise ModelError(f"{path}: a model is a .onnx or .safetensors file (or a folder of them)")


def _read_onnx(path: Path, name: str) -> ModelRef:
    """Config and identity from the ONNX metadata, read through the (cached) runtime session:
    no `import onnx`, and the file is parsed once for both metadata and inference."""
    meta = _session(path).get_modelmeta().custom_metadata_map
    if _META_CONFIG not in meta or _META_MODEL_ID not in meta:
        raise ModelError(f"{path}: ONNX file was not exported by simsearch (no model metadata)")
    try:
        threshold = float(meta[_META_THRESHOLD]) if _META_THRESHOLD in meta else None
    except ValueError:
        raise ModelError(f"{path}: malformed dedupe threshold in the model metadata") from None
    return ModelRef(path, ModelConfig.from_json(meta[_META_CONFIG]), meta[_META_MODEL_ID], name,
                    threshold)


def resolve_device(device: str | None = None) -> str:
    """"cpu" or "cuda:N" for a device spec: auto (default: `$SIMSEARCH_DEVICE` or auto) takes the
    first GPU where this ONNX Runtime build can use one (the onnxruntime-gpu package) and an
    NVIDIA device is present, else the CPU; cpu; cuda; cuda:N. Asking for a GPU that cannot be used is an error, not a fallback."""
    device = (device or os.environ.get("SIMSEARCH_DEVICE") or "auto").lower()
    if device == "cpu":
        return "cpu"
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "auto":
        gpu_present = any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/dxg"))
        return "cuda:0" if has_cuda and gpu_present else "cpu"
    number = device[len("cuda:"):] if device.startswith("cuda:") else "0" if device == "cuda" else None
    if number is None or not (number.isascii() and number.isdecimal()):
        raise ModelError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if not has_cuda:
        raise ModelError(f"device {device}: this ONNX Runtime has no CUDA support (providers: "
                         f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                         f"or use --device cpu")
    return f"cuda:{int(number)}"


_SESSIONS: dict[tuple[str, int, int, str], object] = {}


def _session(path: Path, threads: int | None = None, device: str = "cpu"):
    """One ONNX Runtime session per (file, version, thread count, device) in this process."""
    import onnxruntime as ort

    threads = threads or os.cpu_count() or 1
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns, threads, device)
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
        _SESSIONS[key] = session
    return _SESSIONS[key]


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _from_safetensors(path: Path) -> Path:
    """The ONNX export of a safetensors model: beside it, or made once into the user cache."""
    from simsearch.files import sha256

    model_id = sha256(path)
    for candidate in (path.with_suffix(".onnx"), cache_dir() / "onnx" / f"{model_id}.onnx"):
        if candidate.is_file() and _read_onnx(candidate, str(path)).model_id == model_id:
            return candidate
    from simsearch.export import export_onnx  # torch: only on the first use of this model
    from simsearch.model import load_model

    target = cache_dir() / "onnx" / f"{model_id}.onnx"
    export_onnx(load_model(path), target, model_id)
    return target


def _random_default() -> Path:
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
    return target


class Embedder:
    """Pictures in, unit vectors out, through one ONNX Runtime session on `device` ("cpu" or
    "cuda:N", as `resolve_device` returns)."""

    def __init__(self, model: ModelRef, threads: int | None = None, device: str = "cpu"):
        self.model = model
        self.config = model.config
        self.device = device
        self.session = _session(model.onnx_path, threads, device)

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
