#!/usr/bin/env bash
# One GPU-machine call for shopml.rank: GPU tests, the benchmark, hold-out AUC per backend.
# Run from the repository root (a copy of the rank worktree); results go to $OUT.
#   WORLD=worlds/small SHA=<git sha> bash benchmarks/run_rank_gpu.sh
# (STAGES selects parts: tests bench bias auc compile; default: all.)
set -u
OUT=${OUT:-/tmp/rank-out}
WORLD=${WORLD:-worlds/small}
SHA=${SHA:-unknown}
STAGES=${STAGES:-"tests bench bias auc compile"}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=src
if [ -d .whl ]; then  # safetensors (checkpoints) is not installed on the GPU machine
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=src:/tmp/site
fi
has() { [[ " $STAGES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if has tests; then
  echo "== GPU tests"
  timeout 75 python3 -m pytest -q -m gpu -p no:cacheprovider tests/rank/test_model.py 2>&1 | tail -4
fi
if has bench; then
  echo "== benchmark: jagged vs padded vs pooling, no relative bias (the paper's comparison)"
  timeout 110 python3 benchmarks/bench_rank.py --max-history 256 1024 4096 --num-bias-buckets 0 \
    --out "$OUT/rank.csv" --git-sha "$SHA" 2>&1 | tee "$OUT/bench_nobias.log" | tail -12
fi
if has bias; then
  echo "== benchmark: the model with its relative-time bias"
  timeout 120 python3 benchmarks/bench_rank.py --max-history 256 1024 4096 --backends jagged padded \
    --out "$OUT/rank.csv" --git-sha "$SHA" 2>&1 | tee "$OUT/bench_bias.log" | tail -9
fi
if has auc; then
  echo "== hold-out AUC per backend on $WORLD (no bias, so padded trains at a normal speed)"
  for b in jagged padded; do
    timeout 45 python3 -m shopml.rank.train --world "$WORLD" --out "/tmp/runs/$b" \
      --sequence-backend "$b" --max-history 256 --epochs 2 --batch-size 1024 --no-progress \
      --num-bias-buckets 0 2>&1 | tail -1
    cp "/tmp/runs/$b/metrics.json" "$OUT/metrics-$b-nobias.json" 2>/dev/null
  done
fi
if has compile; then
  echo "== benchmark, compile on, N=1024"
  timeout 150 python3 benchmarks/bench_rank.py --max-history 1024 --compile on --num-bias-buckets 0 \
    --backends jagged padded --out "$OUT/rank.csv" --git-sha "$SHA" 2>&1 | tee "$OUT/bench_on.log" | tail -4
fi
