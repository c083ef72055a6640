#!/usr/bin/env bash
# Run the default model's recipe (m2v_search/train/recipes/m2v-base.json, through
# scripts/train_default_model.py = run_recipe) end to end and time it.
#
#   scripts/run_default_model_recipe.sh OUT_DIR [train_default_model.py options...]
#
# PYTHON picks the interpreter (default: python on PATH). Writes OUT_DIR/m2v-base (the model), OUT_DIR/train_report.json (every step timed),
# OUT_DIR/log.txt, and the wall time of the whole run as the log's last line. The GPU run of
# the shipped model was this with --corpus/--stsb-dir/--gcide-pairs pointing at copies of the
# data carried to a machine without the data packages.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [train_default_model.py options...]}
shift
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
start=$(date +%s)
"${PYTHON:-python}" scripts/train_default_model.py --out "$out/m2v-base" --work-dir "$out/work" \
    --report "$out/train_report.json" "$@" 2>&1 | tee "$out/log.txt"
machine="$(nproc) cores"
if command -v nvidia-smi >/dev/null 2>&1; then machine="$machine, $(nvidia-smi -L | head -1)"; fi
echo "recipe wall time: $(( $(date +%s) - start )) s ($machine)" | tee -a "$out/log.txt"
