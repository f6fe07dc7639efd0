"""Shared pieces of the jagged attention kernels: constants, tile candidates, bias tile, helpers.

The Hopper path (``_tma_ok``: sm_90 or newer, fp16/bf16, head dim <= 128 and a multiple of 8,
16-byte aligned rows; ``SHOPML_ATTN_TMA`` forces it on or off) launches the same three kernels
(forward, dQ, dK/dV) through launchers of their own (``*_TMA``, tuned separately): a program
builds tensor descriptors over just its sample's rows of one head (``_seq_desc``) and its loop
reads the streamed operands (K and V, or Q and dO) through them, so the copy engine fetches
whole tiles asynchronously and returns zeros past the sequence's end. Its tiles (``_SHAPES_TMA``)
also offer the pointer loads (``TMA=0``): the tuner keeps what measured fastest per key. Everything else, and the CPU interpreter unless forced, takes the
pointer path (masked ``tl.load``).
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import torch
import triton
import triton.language as tl

from shopml.common.devices import is_interpreter
from shopml.jagged.triton.launch import FastLauncher
from shopml.jagged.triton.tuning import Tuner

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
BIAS_NONE, BIAS_TENSOR, BIAS_RELATIVE = 0, 1, 2
# the same constants as seen from inside the kernels (Triton reads globals only when constexpr)
LOG2E_K = tl.constexpr(LOG2E)
LN2_K = tl.constexpr(LN2)
BIAS_TENSOR_K = tl.constexpr(BIAS_TENSOR)
BIAS_RELATIVE_K = tl.constexpr(BIAS_RELATIVE)
_INTERPRET = is_interpreter()
HALF = (torch.float16, torch.bfloat16)


# SHOPML_ATTN_AUTOTUNE=0: never time candidates; a remembered or shipped choice (tuning.py), else
# the default config per kernel and head dim (the GPU tests run so).
_AUTOTUNE = os.environ.get("SHOPML_ATTN_AUTOTUNE", "1") not in ("", "0")

# (BLOCK_M, BLOCK_N, num_warps, num_stages) candidates per kernel; the first is the default.
# From a sweep of 41 shapes on an H200 (benchmarks/results/attention_tiles-nvidia-h200.log): each
# candidate was the best or near it in a measured case; the defaults were within 9% of the best in
# every case for fwd and dK/dV, and within 13% for dQ except N=4096, D=128.
# "bwd" is the one-pass backward (dK, dV and atomic dQ per key block; BLOCK_N keys per program).
_SHAPES = {
    "fwd": [(64, 64, 4, 3), (128, 64, 4, 3), (128, 32, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3),
            (64, 32, 4, 4)],
    "dkdv": [(32, 64, 4, 3), (16, 128, 4, 3), (32, 128, 8, 3), (32, 64, 4, 4), (64, 64, 4, 2),
             (64, 128, 8, 2)],
    "dq": [(64, 32, 4, 3), (128, 32, 8, 3), (128, 64, 8, 3), (128, 64, 4, 3), (128, 32, 4, 3),
           (64, 64, 4, 3)],
    "bwd": [(32, 128, 8, 2), (64, 64, 8, 2), (64, 128, 8, 2), (32, 64, 8, 2), (32, 64, 4, 3),
            (128, 64, 8, 2)],
}  # fmt: skip
# The Hopper path (sm_90+, fp16/bf16, see _tma_ok) chooses per tuning key among tiles that load
# the loop's operands through tensor descriptors (TMA=1) and the pointer path's best tiles
# (TMA=0, from the sweep above): on an H200 the descriptors won at length buckets >= 1024-4096
# and lost below (each program builds its descriptors: about 1-2 us before its first load),
# benchmarks/README.md. The first, the default when nothing was tuned, uses the descriptors (so
# the GPU tests run them). Warp-specialised loops (tl.range(warp_specialize=True)) did not
# compile for these kernels with Triton 3.6 on sm_90 (ptxas crash, pass-manager failure).
# (BLOCK_M, BLOCK_N, num_warps, num_stages, TMA)
_SHAPES_TMA = {
    "fwd": [(64, 64, 4, 3, 1), (128, 64, 4, 3, 1), (128, 128, 8, 2, 1), (64, 64, 4, 3, 0),
            (64, 32, 4, 4, 0)],
    "dkdv": [(32, 64, 4, 3, 1), (16, 128, 4, 3, 1), (32, 128, 8, 3, 1), (32, 64, 4, 3, 0),
             (16, 128, 4, 3, 0)],
    "dq": [(64, 32, 4, 3, 1), (128, 64, 8, 3, 1), (128, 32, 4, 3, 1), (64, 32, 4, 3, 0),
           (128, 64, 8, 3, 0)],
}  # fmt: skip
# the pointer path's kernel constexpr (the Hopper path's tiles carry their own)
_POINTER = {"TMA": 0}
# Hopper tiles left out (the benchmark drops those that failed to compile or run there)
_TMA_EXCLUDED: set[tuple[str, tuple[int, ...]]] = set()  # (kind, tile)
# the one-pass backward keeps dK and dV of BLOCK_N keys in registers; untimed defaults from ptxas
# spill reports for sm_90 (8 warps; half the keys per program above head dim 64). The H200's
# timed choices are in pretuned.json.
_DEFAULT_ABOVE_64 = {"bwd": (64, 64, 8, 2)}
# defaults for head dims > 128 (shared memory)
_SHAPES_LARGE_D = {
    "fwd": (64, 32, 4, 2), "dkdv": (32, 32, 4, 2), "dq": (64, 32, 4, 2), "bwd": (32, 32, 8, 2),
}  # fmt: skip
# integer arguments whose value classes (== 1, multiple of 16) Triton must not compile variants
# for: one binary then serves every length of a bucket (cold start, warmup.py)
_NO_SPEC = ["max_seqlen_q", "max_seqlen_k", "num_bounds", "seqlen_q_bucket", "seqlen_k_bucket"]
_NO_SPEC_DELTA = ["total"]
# tuning-key arguments of every attention kernel (see tuning.py)
_KEY = ("seqlen_q_bucket", "seqlen_k_bucket", "HEAD_DIM", "IS_CAUSAL", "BIAS_MODE")


def _config(shape: tuple[int, ...]) -> dict[str, int]:
    bm, bn, w, s, *tma = shape
    cfg = {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s}
    if tma:  # the Hopper path's tiles say how they load (a kernel constexpr)
        cfg["TMA"] = tma[0]
    return cfg


def _candidates(kind: str, tma: bool = False):  # noqa: ANN202
    def candidates(fields) -> list[dict[str, int]]:  # noqa: ANN001
        """Tiles worth timing for these key fields; one when there is nothing to choose."""
        if _INTERPRET:
            tile = {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1}
            return [dict(tile, TMA=1) if tma else tile]
        if tma:  # head dims <= 128 only (see _tma_ok)
            return [_config(s) for s in _SHAPES_TMA[kind] if (kind, tuple(s)) not in _TMA_EXCLUDED]
        if fields["HEAD_DIM"] > 128:  # shared memory: the small tile only
            return [_config(_SHAPES_LARGE_D[kind])]
        shapes = _SHAPES[kind]
        if fields["HEAD_DIM"] > 64 and kind in _DEFAULT_ABOVE_64:
            first = _DEFAULT_ABOVE_64[kind]
            shapes = [first, *(s for s in shapes if s != first)]
        return [_config(s) for s in shapes]

    return candidates


def _tuner(kind: str, version: int, reset: tuple[str, ...] = (), tma: bool = False) -> Tuner:
    """The tile chooser of one kernel; ``tma``: its Hopper form (own name, own candidates)."""
    return Tuner(
        f"attn_{kind}{'_tma' if tma else ''}", version, _KEY, _candidates(kind, tma),
        tune=_AUTOTUNE, reset=reset, soft=("BIAS_MODE",),
    )  # fmt: skip


# ------------------------------------------------------------------ shared kernel prologue
@triton.jit
def _extent(offsets_ptr, b, max_seqlen):
    """(start, length) of sample ``b``'s rows, as int64 (before any stride product), the length
    capped at ``max_seqlen``."""
    start = tl.load(offsets_ptr + b).to(tl.int64)
    length = tl.minimum(tl.load(offsets_ptr + b + 1).to(tl.int64) - start, max_seqlen)
    return start, length


@triton.jit
def _sample_index(order_ptr, USE_ORDER: tl.constexpr):
    """The sample of this program (grid axis 1), through the longest-first order if used."""
    if USE_ORDER:
        b = tl.load(order_ptr + tl.program_id(1)).to(tl.int64)
    else:
        b = tl.program_id(1).to(tl.int64)
    return b


@triton.jit
def _seq_desc(ptr, start, length, h, stride_t, stride_h, HEAD_DIM: tl.constexpr,
              ROWS: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    """Tensor descriptor (the Hopper path) over one head of one sample's rows, shape
    ``(length, HEAD_DIM)``, tiles ``(ROWS, BLOCK_D)``: the copy engine reads rows and columns
    past the end as 0, so no tile sees a neighbour's rows or head. Built by each program that
    uses it (about 1-2 us on an H200 before its first load: why short sequences keep pointer
    loads)."""
    return tl.make_tensor_descriptor(
        ptr + start * stride_t + h * stride_h,
        shape=[length.to(tl.int32), HEAD_DIM],
        strides=[stride_t, 1],
        block_shape=[ROWS, BLOCK_D],
    )


@triton.jit
def _loop_operands(a_ptr, b_ptr, start, length, h, stride_a_t, stride_a_h, stride_b_t, stride_b_h,
                   HEAD_DIM: tl.constexpr, ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
                   TMA: tl.constexpr):  # fmt: skip
    """The two tensors a kernel's loop streams (K and V, or Q and dO), for one head of one
    sample: on the Hopper path (``TMA``) a tensor descriptor each (:func:`_seq_desc`, tiles of
    ``ROWS`` rows), else their base pointers unchanged (the loop then loads through pointers)."""
    if TMA:
        a = _seq_desc(a_ptr, start, length, h, stride_a_t, stride_a_h, HEAD_DIM, ROWS, BLOCK_D)
        b = _seq_desc(b_ptr, start, length, h, stride_b_t, stride_b_h, HEAD_DIM, ROWS, BLOCK_D)
    else:
        a = a_ptr
        b = b_ptr
    return a, b


@triton.jit
def _load_bias(bias_ptr, bias_start, offs_m, offs_n, k_len, mask_mn, stride_bias_t, h):
    """Tile ``(BLOCK_M, BLOCK_N)`` of a jagged tensor bias (its sample's block is row-major),
    in natural units (fp32)."""
    rows = bias_start + offs_m[:, None] * k_len + offs_n[None, :]
    return tl.load(bias_ptr + rows * stride_bias_t + h, mask=mask_mn, other=0.0).to(tl.float32)


# ------------------------------------------------------------------ relative-bias buckets
# bucket(d) = #{k : bounds[k] <= d} (torch.bucketize(d, bounds, right=True)) of the int64 delta
# d = t_q - t_k (wrapping on int64 overflow, as the reference's subtraction does), in one of two
# ways chosen on the host once per set of boundaries (the kernels' CONSECUTIVE constexpr, from
# ``consecutive_boundaries`` in attention_reference.py, kept by RelativeBiasTable):
# - CONSECUTIVE (the model's default: 16 buckets give boundaries -7, ..., 7): the boundaries are
#   consecutive integers first, ..., last (first > int64's minimum), so
#   bucket = clamp(d, first - 1, last) - (first - 1), on the int64 delta: right for any
#   timestamps, no per-program frame or span condition;
# - otherwise the definition itself: the int64 delta compared with each boundary, unrolled over
#   NB_PAD - 1. (A binary search, log2(n) gathers a score, needed more registers: 64-bit
#   addresses per score.)
# Both equal the reference for every pair of int64 timestamps (tests/jagged/test_attention_buckets).
# Compiled for sm_90 (benchmarks/attention_sm90_counts.py), the int64 clamp needs about as many
# registers as the same clamp on int32 offsets from a per-program minimum (which holds only while
# a program's timestamps span < 2**28); a per-tile branch between the closed form and the
# per-boundary compares (the previous form) kept both in registers: the forward needed 255 and
# spilled; hence the constexpr.


@triton.jit
def _below(bounds_ptr, num_bounds, CONSECUTIVE: tl.constexpr):
    """``first - 1`` (int64) for CONSECUTIVE boundaries ``first, ...`` (-1 when there are none:
    bucket 0 everywhere), loaded once per program; 0 otherwise (unused)."""
    below = 0
    if CONSECUTIVE:
        below = tl.load(bounds_ptr, mask=num_bounds > 0, other=0) - 1
    return below


@triton.jit
def _bucket(tq, tk, below, bounds_ptr, num_bounds, CONSECUTIVE: tl.constexpr,
            NB_PAD: tl.constexpr):  # fmt: skip
    """int32 buckets of ``tq - tk`` (broadcastable, e.g. ``tq[:, None]`` and ``tk[None, :]``),
    in ``[0, num_bounds]`` on every lane, real or not; ``below`` from :func:`_below`;
    ``NB_PAD``: a power of two > ``num_bounds``."""
    d64 = tq.to(tl.int64) - tk.to(tl.int64)
    if CONSECUTIVE:
        bucket = (tl.minimum(tl.maximum(d64, below), below + num_bounds) - below).to(tl.int32)
    else:  # the reference's definition: one compare per boundary, unrolled (a loop here would
        # stop the enclosing loop's software pipelining)
        bucket = tl.zeros(d64.shape, dtype=tl.int32)
        for i in tl.static_range(NB_PAD - 1):
            real = i < num_bounds
            bound = tl.load(bounds_ptr + i, mask=real, other=0)
            bucket += ((d64 >= bound) & real).to(tl.int32)
    return bucket


# ------------------------------------------------------------------ the relative bias per tile
# With the model's timestamps (minutes, events hours apart) nearly every pair of a tile lies
# beyond the outermost boundaries, so most tiles hold one bucket: bucket 0 when every delta is
# < first, the last (``num_bounds``) when every delta is >= last. A tile's deltas span
# [min t_q - max t_k, max t_q - min t_k] (each program's stationary block's span once, the
# streamed block's per tile: two reductions of a vector); when that span lies on one side and
# neither end wraps in int64, the tile adds one scalar (its table entry, loaded once per program)
# and its table gradient is one row sum of dS. The other tiles (the diagonal ones: d = 0 is a
# middle bucket) bucket and look up every score.


_I64_MAX = tl.constexpr(9223372036854775807)
_I64_MIN = tl.constexpr(-9223372036854775807 - 1)


@triton.jit
def _span(t, valid):
    """``(min, max)`` int64 of the vector ``t`` over its ``valid`` lanes (at least one)."""
    t = t.to(tl.int64)
    lo = tl.min(tl.where(valid, t, _I64_MAX), 0)
    hi = tl.max(tl.where(valid, t, _I64_MIN), 0)
    return lo, hi


# Time spans of 16-row blocks ("granules"), computed once per call by ``_time_spans_kernel``: a
# tile's span is then the min/max of its ROWS / 16 granules (scalar-sized loads) instead of two
# int64 reductions over its ROWS times, which every tile paid in the loop (benchmarks/README.md,
# issue 13: the per-tile time work was 40% of the bias's cost). Granule g of sample b (rows
# [16 g, 16 g + 16)) lives at slot offsets[b] // 16 + b + g: the slots of consecutive samples
# never overlap, so T // 16 + B + 1 slots hold every granule without a cumulative sum.
SPAN_ROWS = 16
SPAN_ROWS_K = tl.constexpr(SPAN_ROWS)


@triton.jit(do_not_specialize=["max_seqlen"])
def _time_spans_kernel(t_ptr, offsets_ptr, lo_ptr, hi_ptr, max_seqlen, PER: tl.constexpr):
    """``PER`` granules of sample ``program_id(1)``: the min and max of their times."""
    b = tl.program_id(1).to(tl.int64)
    start, length = _extent(offsets_ptr, b, max_seqlen)
    g = tl.program_id(0) * PER + tl.arange(0, PER)
    rows = g[:, None] * SPAN_ROWS_K + tl.arange(0, SPAN_ROWS_K)[None, :]
    valid = rows < length
    t = tl.load(t_ptr + start + rows, mask=valid, other=0).to(tl.int64)
    lo = tl.min(tl.where(valid, t, _I64_MAX), 1)
    hi = tl.max(tl.where(valid, t, _I64_MIN), 1)
    slot = start // SPAN_ROWS_K + b + g
    keep = g * SPAN_ROWS_K < length
    tl.store(lo_ptr + slot, lo, mask=keep)
    tl.store(hi_ptr + slot, hi, mask=keep)


_SPANS = FastLauncher(_time_spans_kernel)


@triton.jit
def _block_span(lo_ptr, hi_ptr, seq_start, b, start, length, ROWS: tl.constexpr):
    """``(min, max)`` int64 of the times of rows ``[start, start + ROWS)`` of sample ``b`` (rows
    from ``length`` on left out; ``start`` a multiple of 16 below ``length``; ``seq_start`` the
    sample's first row), from its granules' spans."""
    slot = seq_start // SPAN_ROWS_K + b + start // SPAN_ROWS_K
    lo = tl.load(lo_ptr + slot)
    hi = tl.load(hi_ptr + slot)
    for g in tl.static_range(1, ROWS // SPAN_ROWS_K):  # scalar loads: no vector to reduce
        valid = start + g * SPAN_ROWS_K < length
        lo = tl.minimum(lo, tl.load(lo_ptr + slot + g, mask=valid, other=_I64_MAX))
        hi = tl.maximum(hi, tl.load(hi_ptr + slot + g, mask=valid, other=_I64_MIN))
    return lo, hi


@triton.jit
def _edges(table_ptr, stride_table_b, h, bounds_ptr, num_bounds, BIAS_MODE: tl.constexpr):
    """Per program: ``(first, last, v_first, v_last)``: a delta < ``first`` is in bucket 0 and
    one >= ``last`` in bucket ``num_bounds`` (0 and -1 when there are no boundaries: every delta
    either way is bucket 0); those buckets' table entries in base-2 units (fp32). Nothing is
    read without the relative bias (its pointers are placeholders)."""
    first = 0
    last = -1
    v_first = 0.0
    v_last = 0.0
    if BIAS_MODE == BIAS_RELATIVE_K:
        has = num_bounds > 0
        first = tl.load(bounds_ptr, mask=has, other=0)
        last = tl.load(bounds_ptr + num_bounds - 1, mask=has, other=-1)
        v_first = tl.load(table_ptr + h).to(tl.float32) * LOG2E_K
        v_last = tl.load(table_ptr + num_bounds * stride_table_b + h).to(tl.float32) * LOG2E_K
    return first, last, v_first, v_last


# A mixed tile whose deltas neither wrap nor span 2**28 or more (every diagonal tile of the
# model's minutes) buckets in int32: with ``below`` = first - 1 and any int64 anchor ``a``,
# d - below = (t_q - a) + (a - t_k - below) (or with the roles of the sides swapped), each side a
# vector over one block computed in int64 (wrapping) and cast to int32, exact on such a tile (both
# sides and their sum lie within (-2**29, 2**29)); the bucket is then clamp(sum, 0, num_bounds):
# one add and two clamps a score, where the int64 delta and its clamps take about four times
# the instructions and twice the registers. The anchor is a block span's end: the stationary
# block's side is formed once a program, the streamed block's once a tile (:func:`_rel32`).
SPAN32 = tl.constexpr(1 << 28)


@triton.jit
def _rel32(t, anchor):
    """``t - anchor`` (int64, wrapping) as int32: one side of :func:`_tile_bucket`'s int32 form."""
    return (t.to(tl.int64) - anchor).to(tl.int32)


@triton.jit
def _tile_bucket(q_lo, q_hi, k_lo, k_hi, first, last, num_bounds, CONSECUTIVE: tl.constexpr):
    """The bucket every pair of a tile shares (query times in ``[q_lo, q_hi]``, key times in
    ``[k_lo, k_hi]``, int64) when it is an end bucket (0 or ``num_bounds``); else -1 when the
    tile may bucket in int32 (CONSECUTIVE, its deltas exact and spanning less than ``SPAN32 -
    num_bounds``), -2
    otherwise (the int64 delta)."""
    d_lo = q_lo - k_hi  # (wrapping)
    d_hi = q_hi - k_lo
    # neither end wrapped: every pair's delta lies in [d_lo, d_hi] as exact integers
    exact = (((q_lo ^ k_hi) & (q_lo ^ d_lo)) >= 0) & (((q_hi ^ k_lo) & (q_hi ^ d_hi)) >= 0)
    mixed = -2
    if CONSECUTIVE:
        span = d_hi - d_lo  # (negative if it wrapped)
        small = (span >= 0) & (span < SPAN32) & (span + num_bounds < SPAN32)
        mixed = tl.where(exact & small, -1, -2)
    shared = tl.where(exact & (d_lo >= last), num_bounds, mixed)
    return tl.where(exact & (d_hi < first), 0, shared)


@triton.jit
def _mixed_bucket(tq, tk, shared, rel_q, rel_k, below, bounds_ptr, num_bounds,
                  CONSECUTIVE: tl.constexpr, NB_PAD: tl.constexpr):  # fmt: skip
    """int32 buckets of a mixed tile (``shared`` < 0 from :func:`_tile_bucket`): from the int32
    sides ``rel_q + rel_k`` (= d - below) when ``shared`` is -1, else from the int64 delta of
    ``tq``, ``tk`` (:func:`_bucket`); all four broadcast to the tile's shape."""
    if CONSECUTIVE:
        if shared == -1:
            bucket = tl.minimum(tl.maximum(rel_q + rel_k, 0), num_bounds)
        else:
            bucket = _bucket(tq, tk, below, bounds_ptr, num_bounds, CONSECUTIVE, NB_PAD)
    else:
        bucket = _bucket(tq, tk, below, bounds_ptr, num_bounds, CONSECUTIVE, NB_PAD)
    return bucket


@triton.jit
def _add_relative_bias(s, tq, tk, shared, rel_q, rel_k, v_first, v_last, below, table_ptr,
                       stride_table_b, h, bounds_ptr, num_bounds, CONSECUTIVE: tl.constexpr,
                       NB_PAD: tl.constexpr, LOAD_IN_BRANCH: tl.constexpr, tk_base, tk_offs,
                       tk_mask, TK_AGAIN: tl.constexpr):  # fmt: skip
    """``s + table[bucket(tq - tk), h] * log2(e)`` for a tile of scores ``s`` (``tq``, ``tk``
    broadcast to its shape: ``tq[:, None]``, ``tk[None, :]`` or transposed); ``shared``: the
    tile's one bucket from :func:`_tile_bucket` (one scalar add), or < 0 (an entry a score; the
    buckets by :func:`_mixed_bucket`, ``rel_q``, ``rel_k`` its int32 sides, broadcast likewise).

    ``LOAD_IN_BRANCH`` (dQ, dK/dV): the per-score entries looked up (:func:`_lookup`) inside
    the tile branch. Otherwise (the forward) tables of up to 16 buckets select the entries from
    registers inside the branch (:func:`_select`), larger ones look them up without the branch.
    Compiled for sm_90 (benchmarks/README.md): a branch around a per-score load made the
    compiler keep the forward's online softmax twice (in the dot's layout and the load's: twice
    the exp2 and a layout conversion of every score tile). In dQ the lookup reloads the key
    times on every tile and converts the mixed tiles' scores through shared memory, yet timed on
    an H200 (Triton 3.6) the selects were 9% slower there; they cost registers (dK/dV spilled
    more with them, dQ with the general way's per-boundary compares).

    ``TK_AGAIN`` (dK/dV: its tile's rows are the program's stationary keys, ``tk`` is
    ``(BN, 1)``; with ``LOAD_IN_BRANCH``): the int64 arm reads the key times again (the vector
    ``tk_base[tk_offs]`` where ``tk_mask``, from cache, as rows; the addresses formed inside the
    arm) instead of using ``tk``, so they are not held in the arm's layout in registers across
    the loop: at dK/dV's (16, 128) tile that held copy made the loop spill on every tile.
    ``tk_base``, ``tk_offs``, ``tk_mask`` are unused otherwise."""
    if LOAD_IN_BRANCH:
        if shared >= 0:
            s += tl.where(shared == 0, v_first, v_last)
        else:
            if TK_AGAIN and shared != -1:
                tk = tl.load(tk_base + tk_offs, mask=tk_mask, other=0)[:, None]
            bucket = _mixed_bucket(tq, tk, shared, rel_q, rel_k, below, bounds_ptr, num_bounds,
                                   CONSECUTIVE, NB_PAD)  # fmt: skip
            s += _lookup(bucket, v_first, v_last, table_ptr, stride_table_b, h, num_bounds)
    elif NB_PAD <= 16:
        if shared >= 0:
            s += tl.where(shared == 0, v_first, v_last)
        else:
            bucket = _mixed_bucket(tq, tk, shared, rel_q, rel_k, below, bounds_ptr, num_bounds,
                                   CONSECUTIVE, NB_PAD)  # fmt: skip
            s += _select(bucket, v_first, v_last, table_ptr, stride_table_b, h, num_bounds,
                         NB_PAD)  # fmt: skip
    else:
        bucket = _bucket(tq, tk, below, bounds_ptr, num_bounds, CONSECUTIVE, NB_PAD)
        s += _lookup(bucket, v_first, v_last, table_ptr, stride_table_b, h, num_bounds)
    return s


@triton.jit
def _key_block_bias(s, tq, q_lo, q_hi, rel_q, tk_ptr, tk_lo_ptr, tk_hi_ptr, b, k_start, k_len,
                    start_n, offs_n, mask_n, first, last, v_first, v_last, below, table_ptr,
                    stride_table_b, h, bounds_ptr, num_bounds, HAS_TK: tl.constexpr,
                    CONSECUTIVE: tl.constexpr, NB_PAD: tl.constexpr, LOAD_IN_BRANCH: tl.constexpr,
                    BLOCK_N: tl.constexpr):  # fmt: skip
    """The relative bias of a streamed key block against the program's query block (the forward
    and dQ): the keys' times (their positions without ``tk_ptr``), the tile's one bucket
    (:func:`_tile_bucket`; their span from the granules ``tk_lo_ptr``, ``tk_hi_ptr``, see
    :func:`_block_span`) and :func:`_add_relative_bias`; ``rel_q``: the query side
    ``_rel32(tq, q_lo)`` (once a program), the key side ``_rel32(q_lo - below, tk)`` here.
    Returns ``(s, tk, shared, rel_k)``."""
    tk = offs_n
    if HAS_TK:
        tk = tl.load(tk_ptr + k_start + offs_n, mask=mask_n, other=0)
        k_lo, k_hi = _block_span(tk_lo_ptr, tk_hi_ptr, k_start, b, start_n, k_len, BLOCK_N)
    else:
        k_lo, k_hi = _span(tk, mask_n)
    shared = _tile_bucket(q_lo, q_hi, k_lo, k_hi, first, last, num_bounds, CONSECUTIVE)
    rel_k = _rel32(q_lo - below, tk)
    s = _add_relative_bias(s, tq[:, None], tk[None, :], shared, rel_q[:, None], rel_k[None, :],
                           v_first, v_last, below, table_ptr, stride_table_b, h, bounds_ptr,
                           num_bounds, CONSECUTIVE, NB_PAD, LOAD_IN_BRANCH, tk_ptr, 0, True,
                           False)  # fmt: skip
    return s, tk, shared, rel_k


@triton.jit
def _lookup(bucket, v_first, v_last, table_ptr, stride_table_b, h, num_bounds):
    """``table[bucket, h] * log2(e)`` per score: the end buckets selected, the middle ones
    looked up (a masked load: a warp whose pairs are all in end buckets reads nothing)."""
    middle = (bucket > 0) & (bucket < num_bounds)
    looked = tl.load(table_ptr + bucket * stride_table_b + h, mask=middle, other=0.0)
    return tl.where(middle, looked.to(tl.float32) * LOG2E_K,
                    tl.where(bucket == 0, v_first, v_last))  # fmt: skip


@triton.jit
def _select(bucket, v_first, v_last, table_ptr, stride_table_b, h, num_bounds,
            NB_PAD: tl.constexpr):  # fmt: skip
    """:func:`_lookup` from registers: one ``tl.where`` a middle bucket (1 .. num_bounds - 1,
    their entries loaded once a call as scalars)."""
    bias = tl.where(bucket == 0, v_first, v_last)
    for kb in tl.static_range(1, NB_PAD - 1):
        real = kb < num_bounds
        v = tl.load(table_ptr + kb * stride_table_b + h, mask=real, other=0.0)
        bias = tl.where((bucket == kb) & real, v.to(tl.float32) * LOG2E_K, bias)
    return bias


@triton.jit
def _add_table_grad(dtab, ds, tq, tk, shared, rel_q, rel_k, visible, below, bounds_ptr,
                    num_bounds, CONSECUTIVE: tl.constexpr, NB_PAD: tl.constexpr):  # fmt: skip
    """The table gradient of one ``(R, C)`` tile added to the per-row partials ``dtab`` ``(R,
    NB_PAD)`` fp32 (summed over rows once per program): a row sum of ``ds`` when the tile shares
    one bucket (``shared`` >= 0), else per-bucket sums over the buckets the ``visible`` pairs
    hold (``ds`` is 0 elsewhere; the buckets recomputed as in :func:`_add_relative_bias`)."""
    idx = tl.arange(0, NB_PAD)
    if shared >= 0:
        dtab += tl.where(idx[None, :] == shared, tl.sum(ds, 1)[:, None], 0.0)
    else:
        bucket = _mixed_bucket(tq, tk, shared, rel_q, rel_k, below, bounds_ptr, num_bounds,
                               CONSECUTIVE, NB_PAD)  # fmt: skip
        seen = tl.where(visible, bucket, -1)
        dtab = _table_grad(dtab, ds, bucket, seen, NB_PAD)
    return dtab


@triton.jit
def _table_grad(dtab, ds, bucket, seen, NB_PAD: tl.constexpr):
    """``dtab[r, b] += sum over columns of ds[r, :] where bucket == b`` over one ``(R, C)`` tile:
    per-row partials ``(R, NB_PAD)`` fp32; ``seen``: ``bucket`` where ``ds`` may be non-zero,
    else -1. Unrolled over the buckets (a loop here would stop the enclosing loop's software
    pipelining), each summed only when the tile holds it: mostly three on a diagonal tile (the
    two ends and d = 0)."""
    held = tl.where(seen >= 0, 1 << tl.minimum(seen, 31), 0)  # buckets >= 31 share a bit
    held = tl.reduce(tl.reduce(held, 1, _bit_or), 0, _bit_or)
    idx = tl.arange(0, NB_PAD)
    for kb in tl.static_range(NB_PAD):
        if ((held >> min(kb, 31)) & 1) != 0:
            part = tl.sum(tl.where(bucket == kb, ds, 0.0), 1)  # (R,)
            dtab += tl.where(idx[None, :] == kb, part[:, None], 0.0)
    return dtab


@triton.jit
def _bit_or(a, b):
    return a | b


# The attention's switches (SHOPML_ATTN_BWD, _TMA, _ORDER, _GLUON) are read from the
# environment at their first use and kept: a lookup per call is host time on the eager path. Code
# that changes one inside a running process (tests, benchmarks) calls reread_settings() after.
_SETTINGS: dict[str, str] = {}


def env_setting(name: str, default: str, allowed: tuple[str, ...] = ()) -> str:
    """``os.environ[name]`` (else ``default``) as first read in this process (see above);
    ``ValueError`` naming the choices if ``allowed`` is given and the value is not one of them."""
    value = _SETTINGS.get(name)
    if value is None:
        value = os.environ.get(name, default)
        if allowed and value not in allowed:
            choices = ", ".join(map(repr, allowed[:-1])) + f" or {allowed[-1]!r}"
            raise ValueError(f"{name}: expected {choices}, found {value!r}")
        _SETTINGS[name] = value
    return value


def reread_settings() -> None:
    """Forget the kept switches, and the launch plans made under them: their next use reads the
    environment again."""
    _SETTINGS.clear()
    for plans in _PLANS:
        plans.clear()


_PLANS: list[dict] = []
MAX_PLANS = 256  # a plan cache's size, past which it starts again (settings seen in a process)


def plan_cache() -> dict:
    """A launcher module's cache of launch plans: its call sites' settings (everything but the
    tensors' addresses) -> the launches bound to them (:meth:`FastLauncher.bind`), so that a
    call with settings seen before skips the arguments' assembly and the launch signature.
    Emptied by :func:`reread_settings`; callers start it again past ``MAX_PLANS`` entries."""
    plans: dict = {}
    _PLANS.append(plans)
    return plans


def _use_order() -> bool:
    """``SHOPML_ATTN_ORDER=1`` maps the grid through a longest-first batch permutation.

    Off by default: measured on an H200 (benchmarks/README.md) it cost 3-8% on exponential
    lengths (the argsort launches, and no tail to balance once blocks are this small).
    """
    return env_setting("SHOPML_ATTN_ORDER", "0") == "1"


def _gluon_mode(q: torch.Tensor, has_bias: bool) -> str:
    """``SHOPML_ATTN_GLUON`` for this call: ``auto`` (the Gluon kernels with FA3's pipelines,
    attention_gluon.py and attention_gluon_bwd.py, where they measured faster than the Triton
    ones on an H200, their ``auto_config``; the default since the whole benchmark grid ran
    through it on the GPU, benchmarks/README.md "Session 13"), ``1`` (every call they can serve,
    for tests), or ``0`` (never: the Triton kernels). Calls they cannot serve (not sm_90
    exactly, a bias, a head dim other than 64 and 128, fp32) get ``0`` before any import of
    Gluon; causal calls do not (both Gluon kernels serve them, under the same ``auto_config``
    rules as the others)."""
    mode = env_setting("SHOPML_ATTN_GLUON", "auto", ("auto", "0", "1"))
    if (
        mode == "0"
        or has_bias
        or not q.is_cuda
        or q.dtype not in (torch.float16, torch.bfloat16)
        or q.shape[-1] not in (64, 128)
        or not _sm90_exactly(q.device.index or 0)
    ):
        return "0"
    return mode


@functools.cache
def _gluon(name: str) -> ModuleType:
    """``attention_gluon`` or ``attention_gluon_bwd``, imported on a routed call's first use
    (Gluon's import time stays out of processes that never route there), then looked up: an
    import statement in the launcher costs a microsecond of every call's host path."""
    return importlib.import_module(f"shopml.jagged.triton.{name}")


@functools.cache
def _sm90_exactly(index: int) -> bool:
    return torch.cuda.get_device_capability(index) == (9, 0)


def _time_spans(
    t: torch.Tensor | None, offsets: torch.Tensor, max_seqlen: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The min and max time of every 16-row granule of the samples (int64 vectors of T // 16 + B
    + 1 slots, see ``_time_spans_kernel``): what the bias kernels read for a tile's span. One
    launch, no host sync; placeholders when there are no times."""
    dev = offsets.device
    if t is None:
        return _dummy(dev, torch.int64), _dummy(dev, torch.int64)
    batch = offsets.numel() - 1
    size = t.numel() // SPAN_ROWS + batch + 1
    lo = torch.empty(size, dtype=torch.int64, device=dev)
    hi = torch.empty(size, dtype=torch.int64, device=dev)
    if batch > 0 and max_seqlen > 0 and t.numel() > 0:
        per = 8  # granules a program
        grid = lambda meta: (triton.cdiv(max_seqlen, SPAN_ROWS * per), batch)  # noqa: E731
        _SPANS(grid, (t, offsets, lo, hi, max_seqlen), {"PER": per})
    return lo, hi


def _order(offsets: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """Batch permutation, longest sequence first (int32, on device; no host sync)."""
    lengths = (offsets[1:] - offsets[:-1]).clamp(max=max_seqlen)
    return torch.argsort(lengths, descending=True, stable=True).to(torch.int32)


def _tma_mode() -> str:
    """``SHOPML_ATTN_TMA``: ``auto`` (the default: the Hopper path where :func:`_tma_ok`), ``1``
    (also in the CPU interpreter, for tests), ``0`` (never)."""
    return env_setting("SHOPML_ATTN_TMA", "auto", ("auto", "0", "1"))


@functools.cache
def _sm90_or_newer(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


def _fwd_outputs(
    q: torch.Tensor, max_seqlen_q: int, zero_init: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward's ``out`` (like q) and natural-log ``lse`` ``(T, H)`` fp32, for the Triton and
    the Gluon forward alike: every row of a (non-truncated) sequence is written by the kernel;
    with ``zero_init`` (or no query rows) the others hold 0 and lse -inf."""
    total, heads = q.shape[0], q.shape[1]
    out = (torch.zeros_like if zero_init else torch.empty_like)(q)
    if zero_init or max_seqlen_q == 0:
        lse = torch.full((total, heads), float("-inf"), device=q.device, dtype=torch.float32)
    else:
        lse = torch.empty((total, heads), device=q.device, dtype=torch.float32)
    return out, lse


def _tma_ok(head_dim: int, *tensors: torch.Tensor) -> bool:
    """Whether the Hopper path (tensor-descriptor loads) serves these ``(T, H, D)`` tensors.

    It needs the copy engine (sm_90 or newer; the CPU interpreter only when forced), fp16/bf16
    (float32 too when forced: the CPU tests), ``D <= 128`` and a multiple of 8, and 16-byte
    aligned bases and row/head strides.
    """
    mode = _tma_mode()
    if mode == "0":
        return False
    first = tensors[0]
    if _INTERPRET or not first.is_cuda:
        if mode != "1":
            return False
    elif not _sm90_or_newer(first.device.index or 0):
        return False
    dtypes = (torch.float16, torch.bfloat16, torch.float32) if mode == "1" else HALF
    if first.dtype not in dtypes or head_dim % 8 or head_dim > 128:
        return False
    size = first.element_size()
    return all(
        t.stride(2) == 1
        and (t.stride(0) * size) % 16 == 0
        and (t.stride(1) * size) % 16 == 0
        and t.data_ptr() % 16 == 0
        for t in tensors
    )


def _scratch(size: int, alignment: int, stream: int | None) -> torch.Tensor:
    """Global memory for the kernels' on-device tensor descriptors (128 bytes each)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _ensure_allocator() -> None:
    """Give Triton an allocator for on-device descriptors unless one is set.

    Triton keeps it in a context variable, and the backward runs on autograd's own thread: so
    this is checked at every launch of the Hopper path (a lookup), not once.
    """
    try:
        from triton.runtime import _allocation

        missing = isinstance(_allocation._allocator.get(), _allocation.NullAllocator)
    except (ImportError, AttributeError):  # another Triton: set ours
        missing = True
    if missing:
        triton.set_allocator(_scratch)


def _precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    return "tf32" if (dtype == torch.float32 and allow_tf32 and not _INTERPRET) else "ieee"


_DUMMIES: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
DUMMY_DTYPES = (torch.float32, torch.int32, torch.int64)  # the order of _dummies


def _dummy(device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A 1-element placeholder for an absent optional pointer (cached: saves host time)."""
    key = (device, dtype)
    t = _DUMMIES.get(key)
    if t is None:
        t = _DUMMIES[key] = torch.empty(1, device=device, dtype=dtype)
    return t


_DUMMY_SETS: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _dummies(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The float32, int32 and int64 placeholders of :func:`_dummy` at once (one lookup a call)."""
    got = _DUMMY_SETS.get(device)
    if got is None:
        got = _DUMMY_SETS[device] = tuple(_dummy(device, t) for t in DUMMY_DTYPES)
    return got
