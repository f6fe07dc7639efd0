#!/usr/bin/env bash
# One GPU-machine call for shopml.rank: GPU tests, the benchmark, hold-out AUC per backend.
# Run from the repository root (a copy of the rank worktree); results go to $OUT.
#   WORLD=worlds/small SHA=<git sha> bash benchmarks/run_rank_gpu.sh
set -u
OUT=${OUT:-/tmp/rank-out}
WORLD=${WORLD:-worlds/small}
SHA=${SHA:-unknown}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=src
if [ -d .whl ]; then  # safetensors (checkpoints) is not installed on the GPU machine
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=src:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== GPU tests"
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/rank/test_model.py 2>&1 | tail -4
echo "== benchmark, compile off"
timeout 200 python3 benchmarks/bench_rank.py --max-history 256 1024 4096 --out "$OUT/rank.csv" \
  --git-sha "$SHA" 2>&1 | tee "$OUT/bench_off.log" | tail -14
echo "== benchmark, no relative bias, N=1024"
timeout 60 python3 benchmarks/bench_rank.py --max-history 1024 --num-bias-buckets 0 \
  --backends jagged padded --out "$OUT/rank.csv" --git-sha "$SHA" 2>&1 | tail -4
echo "== hold-out AUC per backend on $WORLD"
for b in jagged padded pooling; do
  timeout 120 python3 -m shopml.rank.train --world "$WORLD" --out "/tmp/runs/$b" \
    --sequence-backend "$b" --max-history 256 --epochs 2 --batch-size 1024 --no-progress \
    2>&1 | tail -2
  cp "/tmp/runs/$b/metrics.json" "$OUT/metrics-$b.json" 2>/dev/null
done
echo "== benchmark, compile on, N=1024"
timeout 200 python3 benchmarks/bench_rank.py --max-history 1024 --compile on --out "$OUT/rank.csv" \
  --git-sha "$SHA" 2>&1 | tee "$OUT/bench_on.log" | tail -6
