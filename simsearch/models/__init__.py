"""Which model: lookup, the default model, the cache, precision and device policy (no torch).

A model is named by a path (`.onnx`, `.safetensors`, or a folder holding `model.onnx` /
`model.safetensors`) or by `default`, the model shipped in this folder (package data:
`default.onnx`, its int8 variants, weights, background set, calibration). Its config, identity and
dedupe threshold are read from the ONNX metadata by a small protobuf reader that skips the
graph unparsed (a calibration sidecar `NAME.calibration.json` of the same model identity, when
there is one, overrides the threshold: a recalibration need not rewrite the ONNX files), so finding a model costs neither torch nor an ONNX Runtime session: `dedupe`
and `check` need only this; `simsearch.embedder` runs the network.

A `.safetensors` model runs through its ONNX export: `NAME.onnx` beside it, or one in the user
cache keyed by the weights' SHA-256. Without one it is refused with the command that makes it
(`simsearch convert`, which needs torch).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import platform
import stat
from dataclasses import dataclass
from pathlib import Path

from simsearch.config import ModelConfig
from simsearch.errors import ModelError, PrecisionError, PrecisionUnavailable

__all__ = ["ModelRef", "resolve_model", "resolve_device", "read_metadata", "background_path",
           "calibration_path", "cache_dir", "cpu_has_vnni", "cpu_int8_saturates", "int8_paths", "for_this_cpu",
           "fp32_path", "DEFAULT_MODEL_DIR", "META_CONFIG", "META_MODEL_ID", "META_THRESHOLD"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent
# ONNX metadata keys (export.py writes them).
META_CONFIG = "simsearch_config"
META_MODEL_ID = "simsearch_model_id"
META_THRESHOLD = "simsearch_dedupe_threshold"

# protobuf: ModelProto.graph = 7, ModelProto.metadata_props = 14 (StringStringEntryProto:
# key = 1, value = 2). Metadata is a few hundred bytes; a bigger entry is not ours.
_GRAPH, _METADATA = 7, 14
_MAX_ENTRY = 1 << 20
_MAX_FIELDS = 100_000  # a real model has a few dozen top-level fields; bounds a crafted file


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: the ONNX file to run, its config and identity (SHA-256 of weights)."""

    onnx_path: Path
    config: ModelConfig
    model_id: str
    name: str
    dedupe_threshold: float | None = None  # for dedupe with the picture check (simsearch.verify)
    precision: str = "fp32"
    background_file: Path | None = None  # NAME.background.npz, see simsearch.scoring
    unchecked_threshold: float | None = None  # for dedupe on scores alone (--no-check)


def cache_dir() -> Path:
    """Where converted models may be kept: `$SIMSEARCH_CACHE`, else `$XDG_CACHE_HOME/simsearch`."""
    root = os.environ.get("SIMSEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "simsearch")
    return Path(root)


def resolve_model(spec: str | os.PathLike | None = None, precision: str | None = None,
                  device: str = "cpu") -> ModelRef:
    """The ONNX file, config and identity of a model spec, from metadata alone.

    `precision` ("auto", "fp32" or "int8"; default `$SIMSEARCH_PRECISION` or auto): an int8
    variant beside `NAME.onnx` is used where asked for, or with auto where the CPU runs it fast
    and well (on a GPU auto means fp32). Which variant depends on the CPU (`int8_paths`):
    `NAME.int8.onnx` where it has VNNI int8 instructions; `NAME.int8-avx2.onnx` (7-bit weights)
    on an x86 CPU without them, whose int8 kernels add products in 16 bits that saturate with
    8-bit weights: `NAME.int8.onnx` there gives vectors that drift from fp32 (session 25, AMD
    Zen 3: the default model's validation uAP 0.949 against 0.983), so it is refused there;
    auto takes the 7-bit variant on such a CPU with AVX2 (1.6x fp32's speed there, the same
    validation figures). Every variant has the model's identity: their vectors agree to within
    the quantisation error that the benchmarks report, so an index can be shared between
    machines that pick differently. On a GPU (`device` not "cpu") the model runs in fp32 at
    any precision: nothing is refused there.
    """
    setting = "precision" if precision else "SIMSEARCH_PRECISION"

    def instead(what: str) -> str:  # how to ask for another precision, where this one came from
        return (f"--precision {what}" if setting == "precision" else
                f"SIMSEARCH_PRECISION={what} (or --precision {what})")
    precision = (precision or os.environ.get("SIMSEARCH_PRECISION") or "auto").strip().lower()
    if precision not in ("auto", "fp32", "int8"):
        raise PrecisionError(f"{setting} must be auto, fp32 or int8, not {precision!r}")
    onnx_path, name = _locate(spec)
    ref = _read_onnx(onnx_path, name)
    beside = onnx_path if name == "default" else Path(name)
    background = background_path(beside)
    ref = dataclasses.replace(ref, background_file=background if background.is_file() else None)
    checked, unchecked = _calibrated_threshold(calibration_path(beside), ref.model_id)
    if checked is not None:
        ref = dataclasses.replace(ref, dedupe_threshold=checked, unchecked_threshold=unchecked)
    if device != "cpu":  # a GPU runs fp32, whatever the precision asked for on a CPU
        return ref
    plain, seven_bit = int8_paths(onnx_path)
    int8 = _int8_file(onnx_path)
    if precision == "int8" and int8 is None:
        if plain.is_file():
            raise PrecisionUnavailable(
                f"{name}: its int8 variant ({plain.name}) needs a CPU with VNNI int8 "
                f"instructions, which this one lacks (or that simsearch cannot see here): "
                f"without them int8 products are added in 16 bits that saturate, and its "
                f"vectors drift from fp32 (the default model's validation uAP 0.949 against "
                f"0.983); the variant for such CPUs ({seven_bit.name}, 7-bit weights) is not "
                f"beside it ({'reinstall simsearch' if name == 'default' else 'make it with simsearch.export.quantize_int8(..., reduce_range=True)'}). "
                f"Run with {instead('fp32')} (auto runs fp32 here too)")
        raise PrecisionUnavailable(f"{name} has no int8 variant ({plain} and {seven_bit.name} not "
                             f"found): run with {instead('auto')} or fp32")
    fast = cpu_has_vnni() or "avx2" in _cpu_flags()  # measured: VNNI, and AVX2 with 7 bits
    if int8 is not None and (precision == "int8" or (precision == "auto" and fast)):
        variant = _read_onnx(int8, name)
        if variant.model_id != ref.model_id or variant.config != ref.config:
            raise ModelError(f"{int8} is not a variant of {onnx_path} (another model's metadata); "
                             f"remove it, or run with {instead('fp32')}")
        ref = dataclasses.replace(ref, onnx_path=int8, precision="int8")
    return ref


INT8_SUFFIXES = (".int8.onnx", ".int8-avx2.onnx")


def _int8_file(onnx_path: str | os.PathLike) -> Path | None:
    """The int8 variant of `NAME.onnx` this CPU runs correctly, if it is there: the 7-bit one
    where 8-bit sums saturate (`cpu_int8_saturates`), else the 8-bit one, or the 7-bit one
    where only that is there (it runs alike on every CPU); None when there is none."""
    plain, seven_bit = int8_paths(onnx_path)
    for path in (seven_bit,) if cpu_int8_saturates() else (plain, seven_bit):
        if path.is_file():
            return path
    return None


def for_this_cpu(ref: ModelRef, device: str = "cpu") -> ModelRef:
    """`ref` as this machine runs it: the fp32 model on a GPU; on a CPU, the int8 variant that
    this CPU runs correctly in place of the one another machine chose (a cluster's worker
    beside its head, whose 8-bit file may saturate here), or fp32 when this one has none."""
    if ref.precision != "int8":
        return ref
    fp32 = dataclasses.replace(ref, onnx_path=fp32_path(ref.onnx_path), precision="fp32")
    if device != "cpu":
        return fp32
    int8 = _int8_file(ref.onnx_path)
    return fp32 if int8 is None else dataclasses.replace(ref, onnx_path=int8)


def int8_paths(onnx_path: str | os.PathLike) -> tuple[Path, Path]:
    """The int8 variants of `NAME.onnx`: `NAME.int8.onnx` (8-bit weights, for CPUs with VNNI
    int8 instructions) and `NAME.int8-avx2.onnx` (7-bit weights, for x86 CPUs without them)."""
    path = fp32_path(onnx_path)
    stem = path.name[:-len(".onnx")]
    return path.with_name(stem + INT8_SUFFIXES[0]), path.with_name(stem + INT8_SUFFIXES[1])


def fp32_path(onnx_path: str | os.PathLike) -> Path:
    """`NAME.onnx` for any of its variants' files (or itself)."""
    path = Path(onnx_path)
    for suffix in INT8_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name[:-len(suffix)] + ".onnx")
    return path


def background_path(model_file: str | os.PathLike) -> Path:
    """Where a model's background set (`simsearch.scoring`) lives: `NAME.background.npz` beside
    `NAME.onnx` (or `NAME.safetensors`, or an int8 variant)."""
    path = fp32_path(model_file)
    return path.with_name(path.stem + ".background.npz")


def calibration_path(model_file: str | os.PathLike) -> Path:
    """Where a model's calibration record lives: `NAME.calibration.json` beside `NAME.onnx`."""
    background = background_path(model_file)
    return background.with_name(background.name[:-len(".background.npz")] + ".calibration.json")


def _calibrated_threshold(path: Path, model_id: str) -> tuple[float | None, float | None]:
    """The dedupe thresholds of a calibration record written for this model (its `model_id`):
    with the picture check (`dedupe_threshold`) and on scores alone (`dedupe_threshold_unchecked`,
    the same when the record has none); (None, None) for a record of another model (left behind
    by a retrained one) or none at all."""
    import json

    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{path}: not a readable calibration record ({e}); remove it to use "
                         f"the threshold in the model's metadata") from None
    if not isinstance(record, dict) or record.get("model_id") != model_id:
        return None, None
    checked = record.get("dedupe_threshold")
    unchecked = record.get("dedupe_threshold_unchecked", checked)
    for threshold in (checked, unchecked):
        if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                or not -1.0 <= threshold <= 1.0):  # refuses nan and missing values
            raise ModelError(f"{path}: malformed dedupe threshold {threshold!r}; remove the file "
                             f"to use the threshold in the model's metadata")
    return float(checked), float(unchecked)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The x86 feature flags of this CPU (/proc/cpuinfo); empty where there are none (another
    architecture, another system)."""
    try:
        with open("/proc/cpuinfo") as f:
            return _parse_flags(f.read())
    except OSError:
        return frozenset()


def _parse_flags(cpuinfo: str) -> frozenset[str]:
    """The first `flags` line of /proc/cpuinfo's text (x86; ARM's is `Features`: none)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[-1].split())
    return frozenset()


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI or AVX-VNNI)."""
    flags = _cpu_flags()
    return "avx512_vnni" in flags or "avx_vnni" in flags


def cpu_int8_saturates() -> bool:
    """Whether this may be an x86 CPU without VNNI: ONNX Runtime's int8 kernels there multiply
    unsigned 8-bit activations by signed 8-bit weights in pairs summed in 16 bits, which
    saturate (vectors drift); weights of 7 bits do not. An x86 CPU whose flags cannot be read
    (another system than Linux) counts as one: the 7-bit variant is right on every CPU."""
    flags = _cpu_flags()
    if flags:
        return "sse2" in flags and not cpu_has_vnni()
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def resolve_device(device: str | None = None) -> str:
    """"cpu" or "cuda:N" for a device spec: auto (default: `$SIMSEARCH_DEVICE` or auto) takes the
    first GPU where this ONNX Runtime build can use one (the onnxruntime-gpu package) and an
    NVIDIA device is present, else the CPU; cpu; cuda; cuda:N. Asking for a GPU that cannot be
    used is an error, not a fallback."""
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


def _locate(spec: str | os.PathLike | None) -> tuple[Path, str]:
    """The fp32 ONNX file of a model spec and the model's display name."""
    if spec is None or str(spec) == "default":
        onnx_path = DEFAULT_MODEL_DIR / "default.onnx"
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path}: the default model is missing from this installation; "
                             f"reinstall simsearch (pip install --force-reinstall simsearch), or "
                             f"name a model with --model PATH")
        return onnx_path, "default"
    path = Path(spec).expanduser()
    if path.is_dir():
        for candidate in ("model.onnx", "model.safetensors"):
            if (path / candidate).is_file():
                return _locate(path / candidate)
        raise ModelError(f"{path}: folder has no model.onnx or model.safetensors")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if fp32_path(path) != path:
        raise ModelError(f"{path}: name the fp32 model (.onnx); its int8 variant is chosen by "
                         f"precision")
    name = str(path.absolute())  # recorded in index manifests: found again from any folder
    if path.suffix == ".onnx":
        return path, name
    if path.suffix == ".safetensors":
        return _converted(path), name
    raise ModelError(f"{path}: a model is a .onnx or .safetensors file (or a folder of them)")


def _converted(path: Path) -> Path:
    """The ONNX export of a safetensors model: `NAME.onnx` beside it or one in the user cache,
    whichever carries the weights' identity (their SHA-256)."""
    from simsearch.files import sha256

    try:
        model_id = sha256(path)
    except OSError as e:
        raise ModelError(f"{path}: cannot read model ({e.strerror or e})") from None
    for candidate in converted_paths(path, model_id):
        if candidate.is_file():
            try:
                if _read_onnx(candidate, str(path)).model_id == model_id:
                    return candidate
            except ModelError:
                continue  # someone else's file of that name: not this model's export
    raise ModelError(f"{path}: no ONNX export of these weights (looked for "
                     f"{path.with_suffix('.onnx').name} beside it and in {cache_dir() / 'onnx'}); "
                     f"make one once with: simsearch convert {path} (needs torch: pip install "
                     f"'simsearch[train]'); this --model then finds it")


def converted_paths(path: Path, model_id: str) -> tuple[Path, Path]:
    """Where the ONNX export of safetensors weights is looked for: beside them, then the cache."""
    return path.with_suffix(".onnx"), cache_dir() / "onnx" / f"{model_id}.onnx"


def _read_onnx(path: Path, name: str) -> ModelRef:
    """A ModelRef from the simsearch metadata of an ONNX file."""
    meta = read_metadata(path)
    if META_CONFIG not in meta or META_MODEL_ID not in meta:
        raise ModelError(f"{path}: ONNX file was not exported by simsearch (no model metadata); "
                         f"export it with: simsearch convert MODEL.safetensors")
    try:
        threshold = float(meta[META_THRESHOLD]) if META_THRESHOLD in meta else None
    except ValueError:
        threshold = float("nan")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ModelError(f"{path}: malformed dedupe threshold in the model metadata")
    try:
        config = ModelConfig.from_json(meta[META_CONFIG])
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    return ModelRef(path, config, meta[META_MODEL_ID], name, threshold)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file, read without parsing the graph.

    Walks ModelProto's top-level fields by wire type and length, seeking past every field but
    metadata_props, so a model of many megabytes costs a few small reads. A file that is not a
    complete ONNX model (truncated, damaged, something else) raises ModelError naming it.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe must not block us
    except OSError as e:
        raise ModelError(f"{path}: cannot read model ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"{path}: not a regular file, so not a model")
        try:
            return _metadata(_Reader(f, info.st_size))
        except _Malformed as e:
            raise ModelError(f"{path}: not an ONNX model ({e})") from None
        except OSError as e:
            raise ModelError(f"{path}: cannot read model ({e.strerror or e})") from None


class _Malformed(Exception):
    pass


class _Reader:
    """Protobuf wire-format reading over a file, with every length checked against its end."""

    def __init__(self, f, end: int, start: int = 0):
        self.f, self.end, self.pos = f, end, start

    def varint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            byte = self.bytes(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise _Malformed(f"overlong varint at byte {self.pos}")

    def bytes(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise _Malformed(f"truncated: a field at byte {self.pos} runs past the end")
        self.f.seek(self.pos)
        data = self.f.read(n)
        if len(data) != n:
            raise _Malformed(f"truncated at byte {self.pos}")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n > self.end - self.pos:
            raise _Malformed(f"truncated: a field at byte {self.pos} runs past the end")
        self.pos += n

    def field(self) -> tuple[int, int]:
        """(field number, wire type) of the next field."""
        at = self.pos
        key = self.varint()
        number, wire = key >> 3, key & 7
        if number == 0 or wire not in (0, 1, 2, 5):  # 3, 4: groups, never in ONNX
            raise _Malformed(f"invalid field at byte {at}")
        return number, wire

    def skip_value(self, wire: int) -> None:
        if wire == 0:
            self.varint()
        elif wire == 1:
            self.skip(8)
        elif wire == 5:
            self.skip(4)
        else:
            self.skip(self.varint())


def _metadata(reader: _Reader) -> dict[str, str]:
    meta: dict[str, str] = {}
    graph = False
    for _ in range(_MAX_FIELDS):
        if reader.pos >= reader.end:
            break
        number, wire = reader.field()
        if number == _METADATA and wire == 2:
            size = reader.varint()
            if size > _MAX_ENTRY:
                raise _Malformed(f"a metadata entry of {size} bytes")
            key, value = _entry(reader.bytes(size))
            meta[key] = value
        else:
            graph = graph or (number == _GRAPH and wire == 2)
            reader.skip_value(wire)
    else:
        raise _Malformed(f"more than {_MAX_FIELDS} top-level fields")
    if not graph:
        raise _Malformed("no graph")
    return meta


def _entry(data: bytes) -> tuple[str, str]:
    """key and value of a StringStringEntryProto."""
    import io

    reader = _Reader(io.BytesIO(data), len(data))
    parts = {1: b"", 2: b""}
    while reader.pos < reader.end:
        number, wire = reader.field()
        if number in parts and wire == 2:
            parts[number] = reader.bytes(reader.varint())
        else:
            reader.skip_value(wire)
    try:
        return parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a metadata entry is not UTF-8 text") from None
