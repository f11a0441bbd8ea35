"""Average the weights of runs fine-tuned from one parent (a 'model soup'), for a side-by-side trial.

    python recipes/default_model/soup.py runs/S7C runs/S7W --out runs/SP1
    python recipes/default_model/compare.py runs/SP1 --save-backgrounds --json cmp_sp1.json

Every floating-point tensor (BatchNorm statistics included) is the mean over the runs; the rest
(BatchNorm's step counters) is the first run's. The result is saved and exported as a training
run's model is (model.safetensors, model.onnx), so compare.py and calibrate.py take it as they
take any run. trials/stage7-soup.json holds the one trial made with it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders holding model.safetensors")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the average")
    args = parser.parse_args()
    weights = [run / "model.safetensors" for run in args.runs]
    missing = [str(w) for w in weights if not w.is_file()]
    if len(weights) < 2 or missing:
        sys.exit(f"need two or more runs with model.safetensors; missing: {', '.join(missing) or '-'}")
    if args.out.exists():
        sys.exit(f"{args.out} exists; name a new folder")
    from simsearch.export import export_onnx
    from simsearch.model import load_model, save_model

    models = [load_model(w) for w in weights]
    first = models[0]
    for path, model in zip(weights[1:], models[1:]):
        if model.config != first.config:
            sys.exit(f"{path}: a different network ({model.config}) from {weights[0]}")
    states = [m.state_dict() for m in models]
    first.load_state_dict({name: sum(s[name].float() for s in states).div(len(states)).to(t.dtype)
                           if t.is_floating_point() else t for name, t in states[0].items()})
    args.out.mkdir(parents=True)
    model_id = save_model(first, args.out / "model.safetensors")
    print(export_onnx(load_model(args.out / "model.safetensors"), args.out / "model.onnx", model_id))


if __name__ == "__main__":
    main()
