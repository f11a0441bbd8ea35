"""Make and check the int8 variant for x86 CPUs without VNNI (`NAME.int8-avx2.onnx`).

On such a CPU (AVX2, or AVX-512 without VNNI) ONNX Runtime's int8 convolutions multiply
unsigned 8-bit activations by signed 8-bit weights and add each pair of products in 16 bits,
which saturates: the default model's `default.int8.onnx` gave vectors agreeing with fp32 to a
median cosine of only 0.91 on the evaluation originals there (0.997 on a CPU with VNNI), and
validation uAP 0.949 against fp32's 0.983 (session 25, AMD EPYC Zen 3). Weights quantised to
7 bits (`reduce_range`) cannot saturate, and the same file runs alike on every CPU, so it can
be checked on any.

This makes the variant from `NAME.onnx` with the same calibration pictures as ship.py, scores
it on validation (data/val, 4 edited copies an image, at the model's threshold with the
picture check, as ship.py scores the other variant) beside fp32 in the same run,
and keeps it by ship.py's rule (it loses <= 0.01 uAP), recording its figures in
NAME.calibration.json (`int8_avx2_validation`, with the vectors' agreement with fp32 on the
validation originals). ship.py calls `make` for every model it ships.

    python recipes/default_model/int8_avx2.py            # the shipped default model
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from simsearch.export import quantize_int8  # noqa: E402
from simsearch.models import (DEFAULT_MODEL_DIR, background_path, calibration_path,  # noqa: E402
                              int8_paths)
from simsearch.scorecard import run_eval  # noqa: E402

MAX_DROP = 0.01  # ship.py's rule for an int8 variant


def scored(model: Path, precision: str, val_dir: Path, per_image: int, threshold):
    """`model` scored on validation at `precision`, with the picture check (as ship.py)."""
    before = os.environ.get("SIMSEARCH_PRECISION")
    os.environ["SIMSEARCH_PRECISION"] = precision
    try:
        return run_eval(val_dir, model=str(model), baselines=(), per_image=per_image,
                        threshold=threshold)
    finally:
        if before is None:
            del os.environ["SIMSEARCH_PRECISION"]
        else:
            os.environ["SIMSEARCH_PRECISION"] = before


def make(onnx_path: Path, calibration, val_dir: Path, per_image: int = 4,
         threshold: float | None = None) -> dict:
    """Make `onnx_path`'s 7-bit int8 variant beside it, score it on validation beside fp32, and
    keep it if it loses <= MAX_DROP uAP; returns the figures (also when it is not kept)."""
    import numpy as np
    from ship import embed_files  # ship.py imports this module: imported when first needed

    _, seven_bit = int8_paths(onnx_path)
    with tempfile.TemporaryDirectory(prefix="simsearch-int8-") as tmp:
        # staged beside a copy of the model under both int8 names, so that asking for int8
        # runs this file on any CPU (the plain name where the CPU has VNNI)
        staged = Path(tmp) / onnx_path.name
        shutil.copyfile(onnx_path, staged)
        for sidecar in (background_path(onnx_path), calibration_path(onnx_path)):
            if sidecar.is_file():
                shutil.copyfile(sidecar, Path(tmp) / sidecar.name)
        plain_name, seven_name = int8_paths(staged)
        quantize_int8(onnx_path, seven_name, calibration, reduce_range=True)
        shutil.copyfile(seven_name, plain_name)
        fp32 = scored(staged, "fp32", val_dir, per_image, threshold)
        int8 = scored(staged, "int8", val_dir, per_image, threshold)
        originals = sorted(p for p in val_dir.iterdir() if p.is_file())
        cos = (embed_files(originals, staged) * embed_files(originals, staged, "int8")).sum(1)
        drop = fp32.metrics.uap - int8.metrics.uap
        figures = {**int8.figures(), "model": seven_bit.name, "fp32_uap": fp32.metrics.uap,
                   "fp32_recall_at_1": fp32.metrics.recall_at_1, "uap_drop": drop,
                   "kept": drop <= MAX_DROP,
                   "cosine_with_fp32": {"pictures": len(cos), "median": float(np.median(cos)),
                                        "p5": float(np.percentile(cos, 5)),
                                        "min": float(cos.min())}}
        print(f"7-bit int8 on validation: uAP {int8.metrics.uap:.4f} (fp32 {fp32.metrics.uap:.4f}), "
              f"Recall@1 {int8.metrics.recall_at_1:.4f} ({fp32.metrics.recall_at_1:.4f}); "
              f"vectors against fp32: median cosine {np.median(cos):.4f}, least {cos.min():.4f}")
        if drop > MAX_DROP:
            seven_bit.unlink(missing_ok=True)
            print(f"7-bit int8 variant not shipped: it loses {drop:.4f} uAP (> {MAX_DROP})")
        else:
            shutil.copyfile(seven_name, seven_bit)
            print(f"kept {seven_bit}")
    return figures


def main() -> None:
    from ship import calibration_batch

    from simsearch.models import resolve_model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR / "default.onnx")
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--train-dir", type=Path, default=ROOT / "data" / "train")
    parser.add_argument("--per-image", type=int, default=4)
    args = parser.parse_args()
    ref = resolve_model(args.model, precision="fp32")
    record = calibration_path(args.model)
    data = json.loads(record.read_text()) if record.is_file() else None
    if data is not None and data.get("model_id") != ref.model_id:
        sys.exit(f"{record} is another model's record ({str(data.get('model_id'))[:12]}, not "
                 f"{ref.model_id[:12]})")
    # at the model's own threshold, as ship.py scores the other variant
    figures = make(args.model, calibration_batch(args.train_dir, ref.config.input_size),
                   args.val_dir, args.per_image, threshold=ref.dedupe_threshold)
    if data is not None:
        data["int8_avx2_validation"] = figures
        record.write_text(json.dumps(data, indent=2) + "\n")
        print(f"figures written to {record}")


if __name__ == "__main__":
    main()
