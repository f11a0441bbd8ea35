"""torch -> ONNX, with preprocessing inside the graph and an equality check.

The exported graph takes a uint8 batch [n, H, W, 3] (RGB, already resized to the model's input
size) and returns unit vectors [n, dim]: scaling, mean/std normalisation and the layout change
all run inside ONNX Runtime. The model's config and identity travel in the ONNX metadata, so an
.onnx file alone is a complete model for `simsearch query` and `simsearch index`.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from simsearch.errors import MissingDependencyError, ModelError

try:
    import torch
    from torch import nn
except ImportError as e:  # the light install has no torch
    raise MissingDependencyError("model export", e.name or "torch") from None

from simsearch.model import EmbeddingNet
from simsearch.models import META_CONFIG, META_MODEL_ID, META_THRESHOLD

__all__ = ["export_onnx", "convert", "quantize_int8", "META_CONFIG", "META_MODEL_ID",
           "META_THRESHOLD"]


class _Preprocessed(nn.Module):
    """uint8 NHWC in, unit vectors out."""

    def __init__(self, net: EmbeddingNet):
        super().__init__()
        self.net = net
        mean = torch.tensor(net.config.mean).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(net.config.std).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        return self.net((x - self.mean) / self.std)


def export_onnx(net: EmbeddingNet, path: str | os.PathLike, model_id: str,
                dedupe_threshold: float | None = None, half_weights: bool = True,
                check: bool = True) -> Path:
    """Write `net` as ONNX to `path` (atomically) and, with `check`, verify that ONNX Runtime
    gives the same vectors as torch (cosine >= 0.999 on random and smooth inputs)."""
    import onnx

    net = net.eval().float()
    wrapper = _Preprocessed(net).eval()
    size = net.config.input_size
    example = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), buffer, input_names=["images"],
                          output_names=["vectors"], opset_version=17, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "vectors": {0: "batch"}})
    proto = onnx.load_from_string(buffer.getvalue())
    if half_weights:
        _store_half(proto)
    meta = {META_CONFIG: net.config.to_json(), META_MODEL_ID: model_id}
    if dedupe_threshold is not None:
        meta[META_THRESHOLD] = f"{dedupe_threshold:.4f}"
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(proto.SerializeToString())
        if check:
            _check_equal(wrapper, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _store_half(proto) -> None:
    """Store large float initializers as fp16 with a Cast back to fp32 in front of their users.

    Halves the file; ONNX Runtime folds the casts when the session starts, so inference still
    runs in fp32 at full speed.
    """
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < 1024:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), name + "__fp16"))
        casts.append(onnx.helper.make_node("Cast", [name + "__fp16"], [name],
                                           to=onnx.TensorProto.FLOAT, name=name + "__cast"))
    for node in reversed(casts):
        graph.node.insert(0, node)


def _check_equal(wrapper: nn.Module, onnx_path: Path) -> None:
    import onnxruntime as ort

    size = wrapper.net.config.input_size
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    smooth = np.stack([np.stack([*np.meshgrid(ramp, ramp[::-1]), np.full((size, size), 90.0)], -1),
                       np.stack([np.outer(np.hanning(size), np.hanning(size)) * 255] * 3, -1)])
    batch = np.concatenate([noise, smooth.astype(np.uint8)])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": batch})[0]
    with torch.inference_mode():
        want = wrapper(torch.from_numpy(batch)).numpy()
    if not (np.isfinite(got).all() and np.isfinite(want).all()):
        raise ModelError("the network gives NaN or infinite values (damaged weights?); not exported")
    cos = (got * want).sum(1)
    if cos.min() < 0.999:
        raise ModelError(f"ONNX export differs from torch (cosine {cos.min():.5f} < 0.999)")


def convert(weights: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Export a safetensors model to ONNX: `out`, default `NAME.onnx` beside the weights, where
    `simsearch.models` looks for it. An existing `out` is kept when it is already this model's
    export and refused when it is anything else (nothing is overwritten)."""
    from simsearch.files import sha256
    from simsearch.model import load_model
    from simsearch.models import read_metadata

    weights = Path(weights)
    net = load_model(weights)  # checks the file: ModelError naming it
    model_id = sha256(weights)
    out = Path(out) if out is not None else weights.with_suffix(".onnx")
    if os.path.lexists(out):
        try:
            same = read_metadata(out).get(META_MODEL_ID) == model_id
        except ModelError:
            same = False
        if same:
            return out
        raise ModelError(f"{out} exists and is not the export of {weights}; nothing was "
                         f"overwritten: remove it, or choose another file with --out")
    try:
        return export_onnx(net, out, model_id)
    except OSError as e:
        raise ModelError(f"{out}: cannot write ({e.strerror or e}); choose another file with "
                         f"--out") from None


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike,
                  calibration: np.ndarray, reduce_range: bool = False) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) of an exported model.

    `calibration` is a uint8 batch [n, H, W, 3] of typical pictures (a few hundred). Only the
    convolutions and the projection are quantised; pooling and normalisation stay fp32. On CPUs
    with VNNI this is ~2-3x faster than fp32; `benchmarks/ingest.py` reports the quality cost.
    The metadata (config, model id, threshold) is carried over. `reduce_range`: 7-bit weights,
    for x86 CPUs without VNNI, whose int8 kernels add pairs of products in 16 bits that
    saturate with 8-bit weights (`NAME.int8-avx2.onnx`: simsearch.models.int8_paths).
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": calibration[i:i + 16]}
                                 for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self.batches, None)

    out_path = Path(out_path)
    pre = out_path.with_name(out_path.name + ".pre.onnx")
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(tmp), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                        reduce_range=reduce_range)
        proto = onnx.load(str(tmp))
        source = onnx.load(str(onnx_path), load_external_data=False)
        del proto.metadata_props[:]
        for entry in source.metadata_props:
            proto.metadata_props.add().CopyFrom(entry)
        onnx.save(proto, str(tmp))
        os.replace(tmp, out_path)
    finally:
        for leftover in (pre, tmp):
            leftover.unlink(missing_ok=True)
    return out_path
