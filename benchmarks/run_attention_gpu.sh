#!/usr/bin/env bash
# The attention's GPU checks and timings for issue 15 on one sm_90 GPU, in one call of the GPU
# machine (each part under its own time limit, so a later part still runs if one hangs):
#
#   bash benchmarks/run_attention_gpu.sh tests     # the Gluon kernels' and launchers' GPU tests
#   bash benchmarks/run_attention_gpu.sh variants  # the Gluon backward's configurations, timed
#   bash benchmarks/run_attention_gpu.sh grid      # the issue's grid + extra cases: default, Triton only, varlen
#   bash benchmarks/run_attention_gpu.sh graph     # the same grid replayed from CUDA graphs (device time)
#   bash benchmarks/run_attention_gpu.sh host      # eager host time against varlen_attn
#   bash benchmarks/run_attention_gpu.sh split     # where the eager host time goes, piece by piece
#   bash benchmarks/run_attention_gpu.sh harness   # small D=128 forwards in the grid's loop, profiled
#   bash benchmarks/run_attention_gpu.sh steps     # host-bound eager fwd+bwd steps: host against device
#   bash benchmarks/run_attention_gpu.sh short     # the grid's short D=128 cases (the routing's edge)
#   bash benchmarks/run_attention_gpu.sh cold      # cold start with the Gluon kernels
#   bash benchmarks/run_attention_gpu.sh providers # every provider on the 22-case subset
#   bash benchmarks/run_attention_gpu.sh causal    # the causal Gluon kernels' tests; the causal
#                                                  # Gluon backward timed (forced) against Triton
#   bash benchmarks/run_attention_gpu.sh causal-fwd  # the causal Gluon forward timed
#
# Several parts may be given (`... tests variants`). Logs and CSVs go to $OUT (default
# /tmp/attention_out); the commands are the ones benchmarks/README.md quotes. Give the commit as
# SHOPML_GIT_SHA=<sha> (a copied tree may not have it) for the CSV rows.
set -u
OUT=${OUT:-/tmp/attention_out}
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE"
mkdir -p "$OUT"
export PYTHONPATH=$HERE/src PYTHONUNBUFFERED=1
SHORT_CASES=B1024-N256-f1.0-H4-D128,B1024-N256-f0.5-H4-D128,B1024-N256-f1.0-H2-D128,\
B1024-N256-f0.5-H2-D128,B1024-N1024-f0.1-H4-D128,B1024-N1024-f0.1-H2-D128,\
B1024-N256-f0.25-H4-D128,B256-N256-f1.0-H4-D128
GRID="--grid full --providers shopml,shopml_triton,varlen --modes fwd,fwd+bwd --quick-timing --check --flex-cases 0 --rounds ${GRID_ROUNDS:-3}"
for part in "$@"; do
  case $part in
    tests)
      # TESTS_K: a pytest -k filter (default: all); TESTS_TIME seconds at most
      SHOPML_ATTN_AUTOTUNE=0 timeout -k 5 "${TESTS_TIME:-240}" python3 -m pytest -q -m gpu \
        -p no:cacheprovider -k "${TESTS_K:-}" \
        tests/jagged/test_launch.py tests/jagged/test_precompile.py \
        tests/jagged/test_attention_gluon.py tests/jagged/test_attention_gluon_bwd.py \
        > "$OUT/tests.log" 2>&1
      grep -v DEBUG "$OUT/tests.log" | grep -E "passed|failed|FAILED|Error" | tail -15 ;;
    variants)
      # VARIANTS_TIME seconds at most
      SHOPML_ATTN_AUTOTUNE=0 OUT=$OUT timeout -k 5 "${VARIANTS_TIME:-300}" \
        python3 benchmarks/attention_gluon.py --parts bench,bench-bwd --rounds 3 --variants '' \
        --bwd-variants tma,tma2,tma_1wg,nosplit \
        --cases 1024x1024x2x64x0.25,1024x256x2x64x0.5,256x4096x2x64x0.25,64x2048x8x128x1.0,1024x256x2x128x0.5 \
        > "$OUT/variants.log" 2>&1
      grep "^| " "$OUT/variants.log" | tail -80 ;;
    grid)
      # the whole grid, or from case GRID_SKIP on (a call that ran out of time goes on from where
      # the CSV stops); GRID_TIME seconds at most
      # shellcheck disable=SC2086
      timeout -k 5 "${GRID_TIME:-560}" python3 benchmarks/bench_attention.py $GRID \
        --skip "${GRID_SKIP:-0}" --out "$OUT/attention_full.csv" > "$OUT/grid.log" 2>&1
      grep -E "check|x[0-9]|rror" "$OUT/grid.log" | tail -20 ;;
    graph)
      # the grid's device time: each call captured in a CUDA graph and replayed (no host time),
      # ours (default routing) against varlen_attn; GRID_SKIP / GRID_TIME as for grid
      # shellcheck disable=SC2086
      timeout -k 5 "${GRID_TIME:-560}" python3 benchmarks/bench_attention.py --grid full \
        --providers shopml,varlen --modes fwd,fwd+bwd --quick-timing --graph --flex-cases 0 \
        --skip "${GRID_SKIP:-0}" --out "$OUT/attention_graph.csv" > "$OUT/graph.log" 2>&1
      grep -E "^graph|rror" "$OUT/graph.log" | tail -5 ;;
    host)
      # eager host time of the attention on host-bound grid cases against varlen_attn (host
      # loops, do_bench rounds, cProfile and the GPU's share; HOST_TIME seconds at most)
      OUT=$OUT timeout -k 5 "${HOST_TIME:-240}" python3 benchmarks/attention_host.py \
        --parts attention > "$OUT/host.log" 2>&1
      grep -E "us|x[0-9]|rror" "$OUT/host.log" | tail -30 ;;
    harness)
      # small D=128 forwards timed as the grid times them and alone, Gluon on and off, profiled
      # (the GPU's idle gap before our kernels, their device time, the host's waits)
      OUT=$OUT timeout -k 5 "${HOST_TIME:-240}" python3 benchmarks/attention_host.py \
        --parts harness > "$OUT/harness.log" 2>&1
      grep -E " us|rror" "$OUT/harness.log" | tail -20 ;;
    steps)
      # host-bound eager forward+backward steps of D=128 grid cases, default routing, Triton
      # kernels alone and varlen_attn: enqueue, synchronised, do_bench and device time per call,
      # profiles to $OUT (HOST_TIME seconds at most)
      OUT=$OUT timeout -k 5 "${HOST_TIME:-240}" python3 benchmarks/attention_host.py \
        --parts steps > "$OUT/steps.log" 2>&1
      grep -E " / |rror" "$OUT/steps.log" | tail -12 ;;
    short)
      # the grid's short D=128 cases where the routing changes kernel (session 18: the Gluon
      # backward from 2^25 values on sequences of at most 256 rows), timed as the grid times
      # them; SHORT_TIME seconds at most
      # shellcheck disable=SC2086
      timeout -k 5 "${SHORT_TIME:-200}" python3 benchmarks/bench_attention.py $GRID \
        --only "$SHORT_CASES" --out "$OUT/attention_short.csv" > "$OUT/short.log" 2>&1
      grep -E "check|x[0-9]|rror" "$OUT/short.log" | tail -20 ;;
    split)
      # the eager fwd+bwd host time taken apart (the forward with and without the graph, the
      # backward launcher, an empty Function's floor; the Gluon forward's host path)
      OUT=$OUT timeout -k 5 "${HOST_TIME:-240}" python3 benchmarks/attention_host.py \
        --parts split > "$OUT/split.log" 2>&1
      grep -E "us$|rror" "$OUT/split.log" | tail -40 ;;
    providers)
      # every provider (compiled Flex with its mask build on the first FLEX_CASES cases, padded
      # SDPA, nested tensors, dense, the FBGEMM-semantics path) on `--grid final`: 16 of the
      # issue's cases covering every N, fill, H and D, then the ads and HSTU cases; one round
      # (PROVIDERS_TIME seconds at most)
      timeout -k 5 "${PROVIDERS_TIME:-420}" python3 benchmarks/bench_attention.py --grid final \
        --providers shopml,varlen,flex,fbgemm_compat,sdpa_flash_pad,sdpa_mask_pad,nested,dense \
        --modes fwd,fwd+bwd --quick-timing --check --flex-cases "${FLEX_CASES:-4}" --rounds 1 \
        --out "$OUT/attention_peers.csv" > "$OUT/providers.log" 2>&1
      grep -E "geomean|rror" "$OUT/providers.log" | tail -6 ;;
    cold)  # the default routing (the Gluon kernels on sm_90)
      OUT=$OUT timeout -k 5 500 python3 benchmarks/attention_cold.py \
        --deadline 480 > "$OUT/cold.log" 2>&1
      tail -20 "$OUT/cold.log" ;;
    causal)
      # the causal Gluon forward's and backward's GPU tests (the forward's tilings and the
      # backward's configurations, D=64/128, self and cross attention, rows that see no key),
      # then the backward alone and forward + backward timed with both Gluon kernels (switch on:
      # every call, where auto takes them by size) against the Triton kernels and
      # varlen_attn, with the one-warpgroup configuration; HSTU-like D=128 cases first
      # (CAUSAL_TIME seconds at most for each command)
      SHOPML_ATTN_AUTOTUNE=0 timeout -k 5 "${CAUSAL_TIME:-280}" python3 -m pytest -q -m gpu \
        -p no:cacheprovider -k "causal or switch_routes" tests/jagged/test_attention_gluon.py \
        tests/jagged/test_attention_gluon_bwd.py > "$OUT/causal_tests.log" 2>&1
      grep -v DEBUG "$OUT/causal_tests.log" | grep -E "passed|failed|FAILED|Error" | tail -15
      SHOPML_ATTN_AUTOTUNE=0 OUT=$OUT timeout -k 5 "${CAUSAL_TIME:-280}" \
        python3 benchmarks/attention_gluon.py --parts bench-bwd --rounds 3 \
        --bwd-variants tma_1wg \
        --cases 512x1024x4x128x0.5xcausal,64x4096x4x128x0.5xcausal,1024x1024x2x64x0.25xcausal,256x4096x2x64x0.25xcausal \
        > "$OUT/causal_bwd_bench.log" 2>&1
      grep -E "^\| |check" "$OUT/causal_bwd_bench.log" | tail -60 ;;
    causal-fwd)
      # the causal Gluon forward timed (switch on) against the Triton forward and varlen_attn,
      # with the launcher configurations that could serve it (CAUSAL_TIME seconds at most)
      SHOPML_ATTN_AUTOTUNE=0 OUT=$OUT timeout -k 5 "${CAUSAL_TIME:-280}" \
        python3 benchmarks/attention_gluon.py --parts bench --rounds 3 \
        --variants bn64,own2_bn64_s2,own1_bn64_r128,own1_bn64_s3_r128,own1_bn64_r80,3wg \
        --cases 512x1024x4x128x0.5xcausal,64x4096x4x128x0.5xcausal,1024x1024x2x64x0.25xcausal,256x4096x2x64x0.25xcausal \
        > "$OUT/causal_bench.log" 2>&1
      grep "^| " "$OUT/causal_bench.log" | tail -60 ;;
    *) echo "unknown part: $part (tests, variants, grid, graph, short, steps, providers, cold, causal, causal-fwd, host, split, harness)" >&2; exit 2 ;;
  esac
done
