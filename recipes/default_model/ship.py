"""Ship a trained run as the default model: calibrate its dedupe threshold on the validation
images (never on the evaluation set), export ONNX with the threshold in its metadata, and copy
both files into simsearch/models/.

    python recipes/default_model/ship.py runs/default [--min-precision 0.99]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simsearch.export import export_onnx  # noqa: E402
from simsearch.model import load_model  # noqa: E402
from simsearch.files import sha256  # noqa: E402
from simsearch.scorecard import run_eval  # noqa: E402

MODELS = ROOT / "simsearch" / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--val-dir", type=Path, default=ROOT / "data" / "val")
    parser.add_argument("--min-precision", type=float, default=0.99)
    args = parser.parse_args()

    weights = args.run / "model.safetensors"
    model_id = sha256(weights)
    staged = args.run / "model.onnx"
    export_onnx(load_model(weights), staged, model_id)
    report = run_eval(args.val_dir, model=str(staged), baselines=(),
                      min_precision=args.min_precision)
    calibrated = report.metrics.calibrated
    if calibrated is None:
        sys.exit("no threshold reaches the precision target on the validation images")
    threshold = round(calibrated.threshold, 4)
    print(f"validation: uAP {report.metrics.uap:.4f}, Recall@1 {report.metrics.recall_at_1:.4f}; "
          f"precision >= {args.min_precision} from score {threshold} (recall {calibrated.recall:.4f})")

    MODELS.mkdir(exist_ok=True)
    shutil.copyfile(weights, MODELS / "default.safetensors")
    shutil.copyfile(weights.with_suffix(".json"), MODELS / "default.json")
    export_onnx(load_model(MODELS / "default.safetensors"), MODELS / "default.onnx", model_id,
                dedupe_threshold=threshold)
    summary = {"model_id": model_id, "dedupe_threshold": threshold,
               "validation": report.to_dict()}
    (MODELS / "default.calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"shipped {model_id[:12]} to {MODELS}")


if __name__ == "__main__":
    main()
