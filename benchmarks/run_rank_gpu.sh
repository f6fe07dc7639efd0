#!/usr/bin/env bash
# One GPU-machine call for shopml.rank: the benchmark (issue cases), a profile of the fast step,
# the GPU tests. Run from the repository root (a copy of the rank worktree); results go to $OUT.
#   SHA=<git sha> bash benchmarks/run_rank_gpu.sh
# STAGES selects parts (bench variants bias tests auc; default "bench tests"); a stage's failure
# or timeout leaves the others' results in $OUT.
set -u
OUT=${OUT:-/tmp/rank-out}
SHA=${SHA:-unknown}
STAGES=${STAGES:-"bench tests"}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}  # carried wheels (typer) may be on it
has() { [[ " $STAGES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if has bench; then
  echo "== benchmark (no relative bias, the issue's table): the default fast step vs padded+compile"
  timeout "${BENCH_S:-200}" python3 benchmarks/bench_rank.py --cases ${CASES:-256x1024 1024x1024 256x256} \
    --num-bias-buckets 0 --providers ${PROVIDERS:-jagged+graphs padded+compile} \
    --profile ${PROFILE:-jagged+graphs} --profile-out "$OUT/rank-profile.txt" \
    --out "$OUT/rank.csv" --git-sha "$SHA" 2>&1 | tee "$OUT/bench.log" | grep -v "^|"
fi
if has variants; then
  echo "== variants of the fast step (no relative bias): uncompiled, static shapes, gathers only"
  timeout "${VARIANTS_S:-90}" python3 benchmarks/bench_rank.py --cases ${VARIANT_CASES:-1024x1024} \
    --num-bias-buckets 0 \
    --providers ${VARIANT_PROVIDERS:-jagged+graphs+nocompile jagged+graphs+gather jagged+graphs+static} \
    --out "$OUT/rank.csv" --git-sha "$SHA" 2>&1 | tee "$OUT/bench_variants.log" | grep -v "^|"
fi
if has bias; then
  echo "== the relative-time bias (the model's default, 16 buckets) beside the peer without it"
  # the padded model with the bias scatters its gradient into a 16 x 2 table (seconds a step)
  timeout "${BIAS_S:-90}" python3 benchmarks/bench_rank.py --cases ${BIAS_CASES:-256x1024} \
    --num-bias-buckets 0 --providers jagged+graphs+bias padded+compile \
    --profile jagged+graphs+bias --profile-out "$OUT/rank-profile.txt" \
    --out "$OUT/rank.csv" --git-sha "$SHA" 2>&1 | tee "$OUT/bench_bias.log" | grep -v "^|"
fi
if has tests; then
  echo "== GPU tests"
  timeout "${TESTS_S:-80}" python3 -m pytest -q -m gpu -p no:cacheprovider ${TESTS:-tests/rank} 2>&1 \
    | tee "$OUT/tests.log" | tail -15
fi
if has auc; then
  # the CLI's defaults but no relative bias (the padded model's dense bias gradient takes seconds
  # a step): AUC_ARGS adds or overrides options
  echo "== hold-out AUC per backend on a small world, default settings, ${AUC_ARGS:---num-bias-buckets 0}"
  python3 -m shopml.cli world generate --out /tmp/w --scale small --seed 0 >/dev/null 2>&1 || \
    python3 -c "from shopml.world.generate import generate_world; generate_world('/tmp/w', scale='small', seed=0)"
  for b in jagged padded; do
    timeout "${AUC_S:-150}" python3 -m shopml.rank.cli train --world /tmp/w --out "/tmp/runs/$b" \
      --sequence-backend "$b" --no-progress ${AUC_ARGS:---num-bias-buckets 0} 2>&1 | tail -2
    cp "/tmp/runs/$b/metrics.json" "$OUT/metrics-$b.json" 2>/dev/null
  done
fi
grep "^|" "$OUT"/bench*.log 2>/dev/null
