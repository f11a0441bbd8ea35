#!/usr/bin/env bash
# Rebuild the default model from nothing: fetch the Debian images, build the training cache,
# train (resumable: rerun this script after a stop and it continues from the last checkpoint),
# then ship it (calibrate the dedupe threshold on the validation images, export, copy into
# simsearch/models/). CPU is fine (2 cores: ~60 views/s with bf16); a GPU is used if present.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
OUT=${OUT:-runs/default}

bash recipes/default_model/fetch_data.sh
"$PY" recipes/default_model/build_data.py

resume=()
if [ -f "$OUT/checkpoint.pt" ]; then resume=(--resume); fi
if [ ! -f "$OUT/model.safetensors" ] || [ ${#resume[@]} -gt 0 ]; then
  "$PY" -m simsearch.cli train --unlabeled data/train --val-dir data/val --out "$OUT" \
    --epochs "${EPOCHS:-7}" --batch-size 64 --lr 1e-3 --loss triplet --miner semihard \
    --margin 0.25 --koleo 0.5 --backbone resnet18 --dim 256 --input-size 160 \
    --checkpoint-every 100 --workers 1 --seed 0 "${resume[@]}"
fi
"$PY" recipes/default_model/ship.py "$OUT"
