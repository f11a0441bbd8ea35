"""Ship a trained run as the default model: build its background set, calibrate the score
adjustment and the dedupe threshold on the validation images (never on the evaluation set),
export ONNX with the threshold in its metadata, make the int8 variants (each kept only if it loses
<= 0.01 uAP on validation: `default.int8.onnx` for CPUs with VNNI, made only on such a CPU, and
`default.int8-avx2.onnx`, 7-bit weights, for x86 CPUs without VNNI: int8_avx2.py), and copy the
files into simsearch/models/.

The background set (simsearch/scoring.py) is the vectors of a seeded sample of 10,000 training
images (3,000 until stage 7); its strength (beta, delta) is the grid point with the best validation uAP, and no
background ships unless it beats plain cosine there. The threshold is the lowest score (in steps of 0.01 from 0.70) at
which `dedupe` reaches pairwise precision >= 0.95 on edited copies of the validation images: a
false group puts two different pictures side by side for deletion, so precision comes first.
The score's taper (simsearch.scoring.KNEE) is used as it stands; calibrate.py beside this file
re-derives the knee and the threshold for a shipped model and writes default.calibration.json,
which the model resolver prefers over the threshold in the ONNX metadata.

    python recipes/default_model/ship.py runs/default [--min-precision 0.95]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from int8_avx2 import make as make_seven_bit, scored  # noqa: E402
from simsearch.export import export_onnx, quantize_int8  # noqa: E402
from simsearch.model import load_model  # noqa: E402
from simsearch.files import sha256  # noqa: E402
from simsearch.models import cpu_has_vnni, int8_paths  # noqa: E402
from simsearch.scorecard import run_eval  # noqa: E402
from simsearch.scoring import background_path, build_background  # noqa: E402

MODELS = ROOT / "simsearch" / "models"


def report_size(weights: Path) -> int:
    from simsearch.model import read_config
    return read_config(weights).input_size


def calibration_batch(folder: Path, size: int, n: int = 256):
    """A seeded sample of training images (never evaluation images) for int8 calibration."""
    import random

    import numpy as np

    from simsearch.images import load_image, resize_square
    files = sorted(folder.iterdir())
    random.Random(0).shuffle(files)
    return np.stack([np.asarray(resize_square(load_image(p, size).image, size))
                     for p in files[:n]])


def embed_files(files: list[Path], model: Path, precision: str = "fp32"):
    """The files' vectors under `model` (ONNX, at `precision`), as simsearch embeds them."""
    import numpy as np

    from simsearch.embedder import Embedder
    from simsearch.images import load_image
    from simsearch.models import resolve_model
    embedder = Embedder(resolve_model(model, precision=precision))
    size = embedder.config.input_size
    return np.concatenate([
        embedder.embed_arrays(np.stack([embedder.prepare(load_image(p, size).image)
                                        for p in files[s:s + 64]]))
        for s in range(0, len(files), 64)])


# Background images: 10,000 since stage 7. Three seeded samples of 3,000 gave the stage-7 run
# validation dedupe recall at precision 0.95 of 0.869-0.873 and uAP 0.9771-0.9780; two of 10,000
# gave 0.883-0.898 and 0.9777-0.9788 (recipes/default_model/trials/stage7-second-survey.json).
BACKGROUND_IMAGES = 10_000


def background_vectors(folder: Path, model: Path, n: int = BACKGROUND_IMAGES):
    """Vectors of a seeded sample of training images (never evaluation or validation images)."""
    import random

    files = sorted(folder.iterdir())
    random.Random(1).shuffle(files)
    return embed_files(files[:n], model)


GRID = [(beta, delta) for beta in (0.5, 0.75, 1.0) for delta in (0.05, 0.1, 0.2)]
# A freshly trained model carries no threshold yet; the scorecard needs one to find look-alike
# originals among the validation images (and for its single dedupe figure). The shipped model's.
PROVISIONAL = 0.85


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--min-precision", type=float, default=0.95,
                        help="dedupe pairwise precision the default threshold must reach on the "
                             "validation images (centre linkage)")
    parser.add_argument("--per-image", type=int, default=4,
                        help="edited copies per validation image (a seeded sample of the edits)")
    args = parser.parse_args()

    os.environ["SIMSEARCH_PRECISION"] = "fp32"
    weights = args.run / "model.safetensors"
    model_id = sha256(weights)
    staged = args.run / "model.onnx"
    export_onnx(load_model(weights), staged, model_id)
    background = build_background(background_vectors(ROOT / "data" / "train", staged), model_id)
    plain = run_eval(args.val_dir, model=str(staged), baselines=(), per_image=args.per_image,
                     background=None, variants=[background.with_params(*p) for p in GRID],
                     threshold=PROVISIONAL)
    print(f"validation uAP, plain cosine: {plain.metrics.uap:.4f}")
    best = max(plain.variants, key=lambda v: v["uap"])
    for v in plain.variants:
        print(f"  background beta {v['beta']} delta {v['delta']}: uAP {v['uap']:.4f}")
    background = background.with_params(best["beta"], best["delta"]) \
        if best["uap"] > plain.metrics.uap else None
    sweep = [round(0.70 + 0.01 * i, 2) for i in range(29)]
    report = run_eval(args.val_dir, model=str(staged), baselines=(), per_image=args.per_image,
                      sweep=sweep, background=background, threshold=PROVISIONAL)
    for s in report.sweep:
        print(f"  dedupe at {s.threshold:.2f}: P {s.precision:.3f} R {s.recall:.3f} F1 {s.f1:.3f}")
    good = [s for s in report.sweep if s.precision >= args.min_precision]
    if not good:
        sys.exit(f"no threshold reaches dedupe precision {args.min_precision} on the validation images")
    threshold = good[0].threshold
    print(f"validation: uAP {report.metrics.uap:.4f}, Recall@1 {report.metrics.recall_at_1:.4f}; "
          f"dedupe precision >= {args.min_precision} from score {threshold} "
          f"(recall {good[0].recall:.4f})")

    MODELS.mkdir(exist_ok=True)
    shutil.copyfile(weights, MODELS / "default.safetensors")
    shutil.copyfile(weights.with_suffix(".json"), MODELS / "default.json")
    export_onnx(load_model(MODELS / "default.safetensors"), MODELS / "default.onnx", model_id,
                dedupe_threshold=threshold)
    stale = background_path(MODELS / "default.onnx")
    if background is not None:
        background.save(stale)
    elif stale.exists():
        stale.unlink()
    summary = {"model_id": model_id, "dedupe_threshold": threshold,
               "validation_plain_cosine": {"uap": plain.metrics.uap, "variants": plain.variants},
               "validation": report.figures()}
    int8, seven_bit = int8_paths(MODELS / "default.onnx")
    for stale_variant in (int8, seven_bit):
        stale_variant.unlink(missing_ok=True)  # the last model's: never beside this one
    calibration = calibration_batch(ROOT / "data" / "train", report_size(weights))
    if cpu_has_vnni():  # only there does default.int8.onnx run as its users run it
        quantize_int8(MODELS / "default.onnx", int8, calibration)
        quantised = scored(MODELS / "default.onnx", "int8", args.val_dir, args.per_image,
                           threshold)
        drop = report.metrics.uap - quantised.metrics.uap
        print(f"int8 on validation: uAP {quantised.metrics.uap:.4f} (fp32 {report.metrics.uap:.4f})")
        if drop > 0.01:
            int8.unlink()
            print(f"int8 variant not shipped: it loses {drop:.4f} uAP (> 0.01)")
        else:
            summary["int8_validation"] = quantised.figures()
    else:
        print("int8 variant for CPUs with VNNI not made: this CPU has no VNNI, where its int8 "
              "kernels saturate and could not check it (run ship.py on a CPU with VNNI)")
    # the variant for x86 CPUs without VNNI (7-bit weights): the same file runs alike anywhere
    summary["int8_avx2_validation"] = make_seven_bit(MODELS / "default.onnx", calibration,
                                                     args.val_dir, args.per_image, threshold)
    (MODELS / "default.calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"shipped {model_id[:12]} to {MODELS}")


if __name__ == "__main__":
    main()
