#!/usr/bin/env bash
# Rebuild the default model from nothing: fetch the Debian images, build the training cache,
# train (resumable: rerun this script after a stop and it continues from the last checkpoint),
# then ship it (background set, score adjustment and dedupe threshold calibrated on the validation
# images, export, int8 variant, copy into
# simsearch/models/). CPU is fine (2 cores: ~60 views/s with bf16 on AMD Zen 4, ~92 on an Intel
# Xeon with AMX); a GPU is used if present.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
OUT=${OUT:-runs/default}

# FETCH=0 skips the download (the packages are already in data/debs and extracted)
[ "${FETCH:-1}" = 0 ] || bash recipes/default_model/fetch_data.sh

# The stages (recipes/default_model/stages.py): stage 1 from random initialisation, each later
# one from the weights of the one before at a lower learning rate; the fourth adds look-alike
# negatives mined from a memory of the last 4,096 embeddings, the fifth holds every pair of
# different pictures under cosine 0.75, the sixth adds heavier and shrunk views, the seventh trains
# on the second survey's packages too, the eighth lifts each image's two views over cosine 0.85,
# the ninth over 0.90, and the tenth adds look-alikes set into one shared frame.
# Rerun after a stop or a kill: a finished stage is skipped and
# one cut short continues from its last checkpoint.
# Each stage names its data build (`stages.py --builds`: stages 1-4 on the first survey's packages
# without 0ad-data, 5-6 with it, 7-10 with the second survey's too; 0ad-data's and the second survey's
# images go to train/ only, so val/ stays the same 800 images). BUILD_ARGS, when set, replaces
# every build's arguments: BUILD_ARGS= (empty) trains every stage on all packages. The evaluation
# packages never reach training: checked after each build, because `simsearch train` itself
# trains on whatever folder it is given.
PLAN=$("$PY" recipes/default_model/stages.py --builds)
while read -r -u 3 UNTIL ARGS; do
  "$PY" recipes/default_model/build_data.py ${BUILD_ARGS-$ARGS}
  "$PY" recipes/default_model/build_data.py --check
  "$PY" recipes/default_model/stages.py --out "$OUT" --until "$UNTIL"
done 3<<<"$PLAN"
LAST=$("$PY" recipes/default_model/stages.py --out "$OUT" --last-dir)
"$PY" recipes/default_model/ship.py "$LAST"
# the dedupe threshold: precision 0.97 on validation, originals judged variants of one picture
# counted as one (recipes/default_model/trials/val-variants.json)
"$PY" recipes/default_model/calibrate.py --write --variants recipes/default_model/trials/val-variants.json
