"""FlashAttention-3-style backward of jagged attention in Gluon, for sm_90.

Serves the calls the Gluon forward serves (attention_gluon.py: no bias, causal or not,
fp16/bf16, head dim 64 or 128, q/k/v ``(T, H, D)`` with heads packed), on either forward's
outputs and lse; on sm_90 ``_attn_bwd`` routes them here where :func:`auto_config` says this
kernel measured faster (``SHOPML_ATTN_GLUON``: sequences over 256 rows, or at D=128 shorter ones
from 2^25 query values; 2^24 query values; a mean of 64 rows at D=128 and 512 at D=64; causal or
not). Inputs as the Triton backward's after its post-scale fold (``_attn_bwd``: dO times
``post_scale``, O divided by it): q, k, v, o, dO and the forward's natural-log ``lse``
``(T_q, H)`` fp32; outputs dq, dk, dv in the input dtype (dK and dQ include the softmax
``scale``, as the Triton kernels').

Algorithm (FlashAttention-3's backward, with Gluon's explicit primitives):
- ``_attn_bwd_delta_kernel`` (attention_bwd_dq.py) writes ``delta = rowsum(dO * O)`` and zeroes
  a float32 dQ accumulator with BLOCK_M rows of padding: ``(T_q + BLOCK_M, H, D)`` as the
  inputs when the copy engine adds into it (DQ_TMA, the default: the last pass is then a
  contiguous cast, where heads outermost needed a transposing one; 7% less backward at mid
  lengths, session 16), else ``(H, T_q + BLOCK_M, D)``, heads outermost, so that a head's rows
  are D apart (a constexpr stride for the atomic adds, see Registers).
- One program a key block of BLOCK_N = 64 x NUM_WG rows, numbered key block fastest, then
  sample, then head (``cdiv(max_seqlen_k, BLOCK_N) * B * H``); programs past their sequence's
  end exit at once, a sequence without queries gets dK = dV = 0.
- Four host-built tensor descriptors view q, k, v, dO as 2-D ``(T, H*D)`` tensors (a head's
  tile is the column block ``[h*D, h*D + D)``), as the forward's, launched as its kernel is (a
  FastLauncher: direct launches, a compile job in the first call's dry run).
- Warp specialisation (``gl.warp_specialize``): a loader partition of one warp copies the key
  block's K and V (NUM_WG tiles of 64 rows, once), then streams the sequence's query blocks:
  Q and dO tiles of BLOCK_M rows into a ring of STAGES shared-memory slots, a ``ready``
  mbarrier per operand (the copy engine completes it) and an ``empty`` one per slot (each
  consumer arrives when done with it).
- NUM_WG consumer warpgroups (the default partition, plus a worker of 4 warps) each own 64 key
  rows and, per query block, with asynchronous ``warpgroup_mma`` (scores transposed, so that
  the key rows are wgmma's M and dK, dV stay in the warpgroup's registers):
  S^T = K Q^T and dP^T - delta = V dO^T - delta issued together (in the first of two
  warpgroups dP^T's accumulator starts at -delta; the others subtract delta after the wait: with
  that accumulator in both, ptxas waits for S^T before issuing dP^T in one); P'^T = exp2(S^T * scale * log2(e) - (lse * log2(e) - log2(scale))),
  i.e. ``scale * P^T``, while dP^T runs (lse and delta: plain loads into a value or two a
  thread, issued before the wait for Q); dS'^T = P'^T (dP^T - delta) = ``scale * dS^T`` into
  shared memory; dV' += P'^T dO (P'^T from registers), dK += dS'^T Q and dQ_i = dS' K
  together (dS'^T read transposed); the slot handed back, then dQ_i added into the float32
  accumulator: with DQ_TMA (the default) stored to a shared-memory buffer of the warpgroup and
  reduced by the copy engine (``cp.reduce.async.bulk.tensor``, FA3's way; the buffer is written
  again after ``tma.store_wait`` saw the previous reduction read it), else with ``gl.atomic_add``
  from registers (1.25x the time at D=128: the adds stall the warpgroup); either way dQ's
  summation order, and its last bits, vary between runs. Folding the softmax scale into P leaves no per-block multiply for dK and dQ;
  dV = dV' / scale once at the end. The accumulator's padding rows let the adds go without a
  mask (a block's rows past its sequence's end get exact zeros: their P' columns are 0). A
  cast gives dQ ``(T_q, H, D)`` in the input dtype.
- Causal (IS_CAUSAL; key j visible from query i iff ``j <= i + Lk - Lq``, bottom-right aligned
  as the forward's): a key block's loader and consumers run the query blocks from the block of
  the first query that sees its first key ``n_start``, ``i = n_start - (Lk - Lq)``
  (:func:`_first_query_block`), to the sequence's end (the last query sees every key): the
  blocks above the diagonal cost no copies and no matmuls. A warpgroup masks P' (exact zeros:
  its key row r is visible from column c of the block at ``m_start`` iff ``r <= c + m_start +
  rows_left - Lq``, one comparison an element) only in the blocks that cross its own diagonal,
  where column 0 does not see all 64 of its keys; the later blocks run as the non-causal
  kernel's. That mask also removes keys past the sequence's end (past every diagonal), and the
  rows that see no key (``Lq > Lk``: lse -inf, so P' = exp2(+inf) before the mask) lie only in
  masked blocks: the select gives exact zeros, no NaN (S is finite). Both warpgroups of a
  program run its blocks (the ring's slots and the split dQ's barrier are shared), so the second
  one's first blocks can be masked whole. With IS_CAUSAL False the generated code is the
  non-causal kernel's (the PTX of every configuration compared, Triton 3.6 and 3.8).

Registers (head dim 128, two consumer warpgroups at 240 registers a thread): dK and dV take
128, S^T and dP^T in flight 64, the block's lse spread over the score layout 16, so little is
left for addresses and scalars, and every value held across the query loop counts. Three
choices keep the loop free of spills (ptxas, Triton 3.6: 24/24 B of spills, all outside the
loop, against 244/212 B and 10-21 local loads/stores an iteration before): the dQ
accumulator's row stride is the constexpr D, so a thread's 16 adds of an iteration address two
row pointers with constant offsets (with a runtime row stride the compiler held 8 column
offsets as 64-bit values across the loop, 16 registers); in the first warpgroup delta enters
as dP^T's initial accumulator, so it is not held spread beside S^T and dP^T (16 registers; the same
subtraction, done by the wgmma's fp32 accumulation); the loop indexes lse and delta from the
sequence's first row in int32 (a sequence's rows x H < 2^31, lse's size), dQ from its block
start in int64. Causal (the first query block and the diagonal's offset held across the loop, the
mask in the loop): 56/68 B of spills (Triton 3.6), 5 local loads an iteration in the first
warpgroup's loop (from the L1), none in the second's; D=64 default 0/0 B.

Occupancy (refused by the launcher since session 15: non-finite dQ once many programs run,
cause not found in the PTX either, session 16): one consumer warpgroup and the loader warp
(padded to a warpgroup) at maxnreg 128 make 2 programs an SM (232 registers a consumer thread).
The 32-query-row form for 3 programs an SM (dQ_i^T = K^T dS'^T, without spills at maxnreg 80)
was deleted with the refusal's second session (its timings: benchmarks/README.md, sessions
12-14).

Differences from the reference: the descriptors read the rows after a sequence's end from the
next sequence (queries there get lse +inf, so P = 0; keys there are zeroed in P when the key
block is partial): a non-finite value in a neighbouring sequence's Q or K would make NaN here,
where the Triton kernels read zeros. Not covered: biases, other head dims, fp32.
"""

from __future__ import annotations

import math

import torch
from triton._C.libtriton import ir
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language._core import builtin
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

from shopml.jagged.triton._common import cdiv, pow2
from shopml.jagged.triton.attention_bwd_dq import _DELTA
from shopml.jagged.triton.attention_gluon import (
    _NO_SPEC,
    _ROWS,
    LOG2E,
    WG_ROWS,
    _checked_desc,
    _desc,
    _extent,
    consumer_regs,
    gluon_ok,
)
from shopml.jagged.triton.launch import FastLauncher, dry_run

LOG2E_K = gl.constexpr(LOG2E)

# (BLOCK_M, STAGES, NUM_WG, SPLIT_DQ, maxnreg, DQ_TMA) per head dim; BLOCK_N = 64 x NUM_WG key
# rows. FA3's D=128 tiles (64 query rows against 128 keys), two consumer warpgroups with 240
# registers a thread (maxnreg 168 over 3 warpgroups, the loader's at 24), dQ split by columns
# between them (SPLIT_DQ) and reduced by the copy engine (DQ_TMA: 4.00 ms against 5.00 with
# atomic adds and the Triton backward's 4.69 at B=64, N=2048, H=8). D=64: the same tiles, as
# FA3's 128 query rows spill 188/228 B a thread (ptxas, Triton 3.6); the occupancy
# configurations for D=64 (one warpgroup, 2-3 programs an SM, see the header) are refused (see
# FULL_REGS). Timings: benchmarks/README.md ("Gluon backward prototype", "Session 12").
CONFIGS = {64: (64, 2, 2, True, 168, True), 128: (64, 2, 2, True, 168, True)}
# ``auto``: the Gluon backward on sequences longer than MAX_TRITON rows (at D=128 shorter ones
# too from MIN_SHORT values), with at least MIN_ELEMENTS query values (T x H x D) and a mean
# sequence of MIN_MEAN[D] rows; the rest stay with the Triton kernels. D=128: in the session-13
# grid x0.53-0.84 the Triton backward's speed under 2^24 values, x1.14-1.55 elsewhere; in
# session 18 it led on the grid's device-bound short cases too (fwd+bwd ms, Gluon / Triton
# backward, the same forward, 3 rotated rounds: B=1024, N=256, fill 1.0, H=4 1.400 / 1.508;
# fill 1.0, H=2 0.719 / 0.782; fill 0.5, H=4 1.028 / 1.099; B=1024, N=1024, fill 0.1 (a mean of
# 100 rows), H=4 1.159 / 1.284, H=2 0.580 / 0.645) but not on host-bound ones (0.616 / 0.579 at
# 29 M values, 0.746 / 0.431 at 22 M; benchmarks/README.md, "Session 18"). D=64 (session 14):
# 1.904 ms against Triton's 2.243 at B=256, N=4096, fill 0.24 (a mean of 973 rows), but 0.903
# against 0.847 at a mean of 256 rows and 0.319 against 0.221 at 110 (benchmarks/README.md)
MAX_TRITON = 256
MIN_ELEMENTS = 2**24
MIN_SHORT = {64: None, 128: 2**25}
MIN_MEAN = {64: 512, 128: 64}
# the occupancy configurations (maxnreg under FULL_REGS: 2-3 programs an SM) passed the small
# reference checks but gave non-finite dQ with many programs (B=128 of 1-1024 rows, H200,
# session 15; one with atomic adds already on the grid in session 11): refused by the launcher
FULL_REGS = 168


def auto_config(
    q: torch.Tensor, batch: int, max_seqlen_k: int, forced: bool = False
) -> tuple[int, int, int, bool, int, bool] | None:
    """The launcher configuration for this call, or None where the Triton backward is faster
    (``forced``: never None, for tests). Causal calls as the others: on the H200 the causal
    kernel led the Triton backward where the non-causal one does (1.993 against 2.282 ms at
    B=512, N=1024, H=4, D=128; 1.172 against 1.357 at B=256, N=4096, D=64, a mean of 973 rows)
    and trailed it below a mean of 512 rows at D=64 (0.716 against 0.635 at 256:
    benchmarks/README.md, session 15)."""
    d = q.shape[-1]
    if forced:
        return CONFIGS[d]
    numel = q.numel()
    if numel < MIN_ELEMENTS or q.shape[0] < MIN_MEAN[d] * max(batch, 1):
        return None
    if max_seqlen_k <= MAX_TRITON and (MIN_SHORT[d] is None or numel < MIN_SHORT[d]):
        return None
    return CONFIGS[d]


def gluon_bwd_ok(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, scale: float
) -> bool:
    """Whether this bias-free backward (causal or not) can run here: the forward's conditions
    (``attention_gluon.gluon_ok``) for q, k, v and dO. Either forward's outputs and lse serve it
    (they are the same)."""
    return gluon_ok(q, k, v, scale) and gluon_ok(do, k, v, scale)


# ------------------------------------------------------------------ kernel pieces
@builtin
def _tma_reduce_add(tensor_desc, coord, src, _semantic=None):  # noqa: ANN001, ANN202
    """``global[coord:] += src`` (a shared-memory tile) through the copy engine's bulk reduction
    (``cp.reduce.async.bulk.tensor``), completed as TMA stores are (``tma.store_wait``).
    Gluon 3.6 has the builder call but no wrapper for it."""
    coord = _semantic._convert_to_ir_values(coord, require_i64=False)
    _semantic.builder.create_async_tma_reduce(
        ir.DESCRIPTOR_REDUCE_KIND.ADD, tensor_desc.handle, coord, src.handle
    )


@gluon.jit
def _key_tile(params, BLOCK_N: gl.constexpr):
    """This program's key block: (first key row, key rows left in the sequence, the sample's
    query start and length, head); rows left <= 0: nothing to do."""
    lse_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, stride_lse_t, stride_delta_t, \
        stride_dq_h, stride_dk_t, stride_dk_h, stride_dv_t, stride_dv_h, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, batch, qk_scale, scale, log2_scale, pid = params  # fmt: skip
    num_n = gl.cdiv(max_seqlen_k, BLOCK_N)
    n = pid % num_n
    bh = pid // num_n
    b = bh % batch
    h = bh // batch
    k_start, k_len = _extent(k_offsets_ptr, b, max_seqlen_k)
    q_start, q_len = _extent(q_offsets_ptr, b, max_seqlen_q)
    n_start = n * BLOCK_N
    return k_start + n_start, k_len - n_start, q_start, q_len, h


@gluon.jit
def _first_query_block(q_len, k_left, BLOCK_M: gl.constexpr):
    """Causal: the first query block that sees a key of this key block, the block of the first
    query row that sees its first key (``n_start``, this program's first key row):
    ``i = n_start - (Lk - Lq) = q_len - k_left``, at least 0. Every later block sees one too (the
    sequence's last query row sees every key), so loader and consumers run the blocks from it to
    the sequence's end."""
    return (gl.maximum(q_len - k_left, 0) // BLOCK_M).to(gl.int32)


@gluon.jit
def _store_rows(ptr, stride_t, stride_h, row, rows_left, h, value, layout: gl.constexpr):
    """``value`` (64 x D, in ``layout``) into rows ``row + i`` (i < ``rows_left``) of head h."""
    ROWS: gl.constexpr = value.shape[0]
    HEAD_DIM: gl.constexpr = value.shape[1]
    rows = gl.arange(0, ROWS, layout=gl.SliceLayout(1, layout))
    cols = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, layout))
    ptrs = ptr + gl.expand_dims((row + rows) * stride_t, 1) + h * stride_h + gl.expand_dims(cols, 0)
    mask = gl.expand_dims(rows < rows_left, 1) & gl.expand_dims(cols < HEAD_DIM, 0)
    gl.store(ptrs, value.to(ptr.dtype.element_ty), mask=mask)


@gluon.jit
def _zero_key_rows(params, k_row, k_left, h, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr):
    """dK = dV = 0 for the rows of a key block whose sequence has no queries."""
    lse_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, stride_lse_t, stride_delta_t, \
        stride_dq_h, stride_dk_t, stride_dk_h, stride_dv_t, stride_dv_h, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, batch, qk_scale, scale, log2_scale, pid = params  # fmt: skip
    layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [gl.num_warps(), 1], [1, 0])
    zeros = gl.zeros([BLOCK_N, HEAD_DIM], gl.float32, layout)
    _store_rows(dk_ptr, stride_dk_t, stride_dk_h, k_row, k_left, h, zeros, layout)
    _store_rows(dv_ptr, stride_dv_t, stride_dv_h, k_row, k_left, h, zeros, layout)


@gluon.jit
def _bwd_consumer(shared, params, dq_desc, WG: gl.constexpr, IS_CAUSAL: gl.constexpr):
    """Consumer warpgroup WG: key rows [64 WG, 64 WG + 64) of the block against every query
    block of the sequence (causal: those from :func:`_first_query_block` on); dK and dV stored
    at the end. Sizes from the buffers' shapes (constexpr arguments reach worker partitions as
    tensors in Triton 3.6; a constexpr bool as such)."""
    k_smem, v_smem, q_bufs, do_bufs, ds_smem, dq_smem, kv_bar, q_bars, do_bars, empty_bars, \
        ds_bars = shared  # fmt: skip
    STAGES: gl.constexpr = q_bufs.shape[0]
    BLOCK_M: gl.constexpr = q_bufs.shape[1]
    HEAD_DIM: gl.constexpr = q_bufs.shape[2]
    NUM_WG: gl.constexpr = v_smem.shape[0]
    SPLIT_DQ: gl.constexpr = ds_bars.shape[0] == 2  # see the kernel's Step 2
    DQ_TMA: gl.constexpr = dq_smem.shape[1] == BLOCK_M  # see the kernel's Step 2
    DQ_BUFS: gl.constexpr = dq_smem.shape[0] // NUM_WG  # with DQ_TMA: buffers a warpgroup
    gl.static_assert(BLOCK_M >= WG_ROWS, "BLOCK_M: at least wgmma's 64 rows")
    # delta as dP^T's initial accumulator in the first of two warpgroups only (16 values fewer
    # beside S^T and dP^T, see the header's Registers: without it its loop spills, 7 local
    # accesses an iteration at D=128); the other warpgroups subtract it after the wait, so that
    # ptxas issues dP^T right behind S^T (with the accumulator in both, ptxas waits for S^T first
    # in one of them, its note C7517: the accumulator's copies follow the wgmma fence). ptxas,
    # Triton 3.6, D=128 default: 24/24 B of spills, none in either loop, no injected wait.
    DELTA_ACC: gl.constexpr = NUM_WG == 2 and WG == 0
    HALF: gl.constexpr = HEAD_DIM // 2
    dtype: gl.constexpr = q_bufs.dtype
    lse_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, stride_lse_t, stride_delta_t, \
        stride_dq_h, stride_dk_t, stride_dk_h, stride_dv_t, stride_dv_h, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, batch, qk_scale, scale, log2_scale, pid = params  # fmt: skip
    k_row, k_left, q_start, q_len, h = _key_tile(params, WG_ROWS * NUM_WG)
    # S^T, dP^T: (64 keys, BLOCK_M queries); dK, dV: (64 keys, D); dQ_i: (BLOCK_M, D)
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_M, 16]
    )
    d_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    # lse and delta load into a compact layout (a value or two a thread) and spread to the
    # score columns only where used: 2 x 16-32 registers fewer over the loop
    vec_layout: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
    k = k_smem.slice(WG * WG_ROWS, WG_ROWS)
    v = v_smem.index(WG)
    rows_left = k_left - WG * WG_ROWS  # this warpgroup's keys left in the sequence
    key_ok = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, s_layout)) < rows_left
    partial = rows_left < WG_ROWS  # keys of the next sequence (or none) among the 64
    cols = gl.arange(0, BLOCK_M, layout=vec_layout)
    # dQ_i: (BLOCK_M, D), or with SPLIT_DQ this warpgroup's half of its columns
    DQ_COLS: gl.constexpr = HALF if SPLIT_DQ else HEAD_DIM
    zero_s = gl.zeros([WG_ROWS, BLOCK_M], gl.float32, s_layout)
    q_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, DQ_COLS, 16]
    )
    dq_rows = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, q_layout))
    dq_cols = gl.arange(0, DQ_COLS, layout=gl.SliceLayout(0, q_layout))
    if SPLIT_DQ:
        dq_cols += WG * HALF
    zero_q = gl.zeros([BLOCK_M, DQ_COLS], gl.float32, q_layout)
    dk = gl.zeros([WG_ROWS, HEAD_DIM], gl.float32, d_layout)
    dv = gl.zeros([WG_ROWS, HEAD_DIM], gl.float32, d_layout)
    # the sequence's first query of this head in lse, delta and dQ (rows D apart: constant
    # offsets for the adds); rows within the sequence in int32 (see the header's Registers)
    q_len = q_len.to(gl.int32)  # at most max_seqlen_q
    lse_q = lse_ptr + q_start * stride_lse_t + h
    delta_q = delta_ptr + q_start * stride_delta_t + h
    dq_q = dq_ptr + h.to(gl.int64) * stride_dq_h + q_start * HEAD_DIM
    # with DQ_TMA the accumulator is laid out as the inputs, (T_q + BLOCK_M, H, D): the
    # sequence's first query row and head h's columns (this warpgroup's) in its 2-D view
    # (T_q + BLOCK_M rows < 2^31, checked by the launcher)
    dq_row = q_start.to(gl.int32)
    dq_col = (h * HEAD_DIM + (WG * HALF if SPLIT_DQ else 0)).to(gl.int32)
    # causal: the query blocks from ``lo`` on (i counts the iterations: the ring's and the
    # barriers' counter); key row r of this warpgroup visible from column c of the block at
    # m_start iff r <= c + m_start + rows_left - q_len (``j <= i + Lk - Lq`` in the sequence)
    lo = 0
    if IS_CAUSAL:
        lo = _first_query_block(q_len, k_left, BLOCK_M)
        diag = (rows_left - q_len).to(gl.int32)  # column 0 of query block 0: its last key row
        key_rows = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, s_layout))
        cols_s = gl.arange(0, BLOCK_M, layout=col_layout)
    mbarrier.wait(kv_bar.index(0), 0)
    for i in range(gl.cdiv(q_len, BLOCK_M) - lo):
        stage = i % STAGES
        phase = (i // STAGES) & 1
        q = q_bufs.index(stage)
        do = do_bufs.index(stage)
        m_start = (i + lo) * BLOCK_M
        # Step 1: lse and delta of the block's queries (+inf past the end: P = 0 there); the
        # base-2 lse less log2(scale) makes P' = scale * P (see the header)
        col_ok = cols < q_len - m_start
        lse = gl.load(lse_q + (m_start + cols) * stride_lse_t, mask=col_ok,
                      other=float("inf")) * LOG2E_K - log2_scale  # fmt: skip
        delta = gl.load(delta_q + (m_start + cols) * stride_delta_t, mask=col_ok, other=0.0)
        # Step 2: S^T = K Q^T and dP^T - delta = V dO^T - delta together (an accumulator
        # starting at -delta: delta not held beside them, see the header's Registers); P'^T
        # while the second runs
        mbarrier.wait(q_bars.index(stage), phase)
        st = warpgroup_mma(k, q.permute((1, 0)), zero_s, use_acc=False, is_async=True)
        mbarrier.wait(do_bars.index(stage), phase)
        if DELTA_ACC:
            minus_delta = zero_s - gl.expand_dims(gl.convert_layout(delta, col_layout), 0)
            dpt = warpgroup_mma(v, do.permute((1, 0)), minus_delta, is_async=True)
        else:
            dpt = warpgroup_mma(v, do.permute((1, 0)), zero_s, use_acc=False, is_async=True)
        st = warpgroup_mma_wait(1, deps=(st,))
        pt = gl.exp2(st * qk_scale - gl.expand_dims(gl.convert_layout(lse, col_layout), 0))
        if IS_CAUSAL:  # only blocks that cross this warpgroup's diagonal: P' = 0 past it
            last = m_start + diag  # the last key row column 0 sees
            if last < WG_ROWS - 1:  # (keys past the sequence's end lie past every diagonal)
                visible = gl.expand_dims(key_rows, 1) <= gl.expand_dims(cols_s + last, 0)
                pt = gl.where(visible, pt, 0.0)  # exact 0s: also rows with lse -inf (P' inf)
        elif partial:
            pt = gl.where(gl.expand_dims(key_ok, 1), pt, 0.0)
        # Step 3: dS'^T = P'^T (dP^T - delta) into shared memory; P'^T to registers in the
        # wgmma operand layout (S^T and dP^T die here: the peak is before, 2 x 64 x BLOCK_M)
        dpt = warpgroup_mma_wait(0, deps=(dpt,))
        if not DELTA_ACC:
            dpt = dpt - gl.expand_dims(gl.convert_layout(delta, col_layout), 0)
        dst = pt * dpt
        p_op = gl.convert_layout(pt.to(dtype), gl.DotOperandLayout(0, d_layout, 2))
        ds_all = ds_smem.index(i % ds_smem.shape[0])  # (NUM_WG x 64 keys, BLOCK_M)
        ds = ds_all.slice(WG * WG_ROWS, WG_ROWS)
        ds.store(dst.to(dtype))
        fence_async_shared()
        # Step 4: dV' += P'^T dO, dK += dS'^T Q and dQ_i = dS' K together
        dv = warpgroup_mma(p_op, do, dv, is_async=True)
        dk = warpgroup_mma(ds, q, dk, is_async=True)
        if SPLIT_DQ:  # once both warpgroups' dS' are in: all keys, half the columns
            mbarrier.arrive(ds_bars.index(i % 2))
            mbarrier.wait(ds_bars.index(i % 2), (i // 2) & 1)
            dq = warpgroup_mma(ds_all.permute((1, 0)), k_smem.slice(WG * HALF, HALF, dim=1),
                               zero_q, use_acc=False, is_async=True)  # fmt: skip
        else:
            dq = warpgroup_mma(ds.permute((1, 0)), k, zero_q, use_acc=False, is_async=True)
        dv, dk, dq, p_op = warpgroup_mma_wait(0, deps=(dv, dk, dq, p_op))
        mbarrier.arrive(empty_bars.index(stage))
        # Step 5: this key block's share of dQ, added in fp32 without a mask: rows past the
        # sequence's end get exact zeros (their P' columns are 0), the accumulator has BLOCK_M
        # rows of padding past the last sequence
        if DQ_TMA:  # through shared memory and the copy engine, FA3's way (see Step 2)
            tma.store_wait(DQ_BUFS - 1)  # the reduction DQ_BUFS blocks back has read its buffer
            dq_buf = dq_smem.index(WG * DQ_BUFS + i % DQ_BUFS)
            dq_buf.store(dq)
            fence_async_shared()
            _tma_reduce_add(dq_desc, [dq_row + m_start, dq_col], dq_buf)
        else:
            offs = gl.expand_dims(dq_rows * HEAD_DIM, 1) + gl.expand_dims(dq_cols, 0)
            gl.atomic_add(dq_q + m_start.to(gl.int64) * HEAD_DIM + offs, dq, sem="relaxed")
    if DQ_TMA:
        tma.store_wait(0)  # shared memory stays until the last reduction has read it
    row = k_row + WG * WG_ROWS
    _store_rows(dk_ptr, stride_dk_t, stride_dk_h, row, rows_left, h, dk, d_layout)
    _store_rows(dv_ptr, stride_dv_t, stride_dv_h, row, rows_left, h, dv / scale, d_layout)


@gluon.jit
def _bwd_first_consumer(shared, params, dq_desc, IS_CAUSAL: gl.constexpr):
    """The default partition: the first consumer warpgroup (key rows 0-63)."""
    _bwd_consumer(shared, params, dq_desc, 0, IS_CAUSAL)


@gluon.jit
def _bwd_second_consumer(shared, params, dq_desc, IS_CAUSAL: gl.constexpr):
    """A worker partition of 4 warps: the second consumer warpgroup (key rows 64-127)."""
    _bwd_consumer(shared, params, dq_desc, 1, IS_CAUSAL)


@gluon.jit
def _bwd_loader(descs, shared, params, IS_CAUSAL: gl.constexpr):
    """The producer warp: the key block's K and V, then per query block Q and dO through the
    ring of slots (causal: the blocks from :func:`_first_query_block` on)."""
    q_desc, k_desc, v_desc, do_desc = descs
    k_smem, v_smem, q_bufs, do_bufs, ds_smem, dq_smem, kv_bar, q_bars, do_bars, empty_bars, \
        ds_bars = shared  # fmt: skip
    STAGES: gl.constexpr = q_bufs.shape[0]
    BLOCK_M: gl.constexpr = q_bufs.shape[1]
    HEAD_DIM: gl.constexpr = q_bufs.shape[2]
    NUM_WG: gl.constexpr = v_smem.shape[0]
    lse_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, stride_lse_t, stride_delta_t, \
        stride_dq_h, stride_dk_t, stride_dk_h, stride_dv_t, stride_dv_h, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, batch, qk_scale, scale, log2_scale, pid = params  # fmt: skip
    k_row, k_left, q_start, q_len, h = _key_tile(params, WG_ROWS * NUM_WG)
    col = (h * HEAD_DIM).to(gl.int32)
    mbarrier.expect(kv_bar.index(0), NUM_WG * (k_desc.block_type.nbytes + v_desc.block_type.nbytes))
    for wg in gl.static_range(NUM_WG):
        row = (k_row + wg * WG_ROWS).to(gl.int32)
        tma.async_copy_global_to_shared(k_desc, [row, col], kv_bar.index(0),
                                        k_smem.slice(wg * WG_ROWS, WG_ROWS))  # fmt: skip
        tma.async_copy_global_to_shared(v_desc, [row, col], kv_bar.index(0), v_smem.index(wg))
    lo = 0
    if IS_CAUSAL:
        lo = _first_query_block(q_len, k_left, BLOCK_M)
    for i in range((gl.cdiv(q_len, BLOCK_M) - lo).to(gl.int32)):
        stage = i % STAGES
        # a fresh mbarrier counts as having completed the phase before phase 0
        mbarrier.wait(empty_bars.index(stage), ((i // STAGES) & 1) ^ 1)
        row = (q_start + (i + lo) * BLOCK_M).to(gl.int32)
        mbarrier.expect(q_bars.index(stage), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [row, col], q_bars.index(stage),
                                        q_bufs.index(stage))  # fmt: skip
        mbarrier.expect(do_bars.index(stage), do_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(do_desc, [row, col], do_bars.index(stage),
                                        do_bufs.index(stage))  # fmt: skip


@gluon.jit(do_not_specialize=[*_NO_SPEC, "stride_dq_h"])  # (values that change per call)
def _attn_bwd_gluon_kernel(
    q_desc, k_desc, v_desc, do_desc, dq_desc, lse_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr,
    q_offsets_ptr, k_offsets_ptr, stride_lse_t, stride_delta_t, stride_dq_h,
    stride_dk_t, stride_dk_h, stride_dv_t, stride_dv_h, max_seqlen_q, max_seqlen_k, batch,
    qk_scale, scale, log2_scale,
    HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, STAGES: gl.constexpr, NUM_WG: gl.constexpr,
    SPLIT_DQ: gl.constexpr, DQ_TMA: gl.constexpr, CONSUMER_REGS: gl.constexpr,
    IS_CAUSAL: gl.constexpr,
):  # fmt: skip
    BLOCK_N: gl.constexpr = WG_ROWS * NUM_WG
    pid = gl.program_id(0)
    params = (lse_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, stride_lse_t, stride_delta_t,
              stride_dq_h, stride_dk_t, stride_dk_h, stride_dv_t, stride_dv_h,
              q_offsets_ptr, k_offsets_ptr, max_seqlen_q, max_seqlen_k, batch, qk_scale, scale,
              log2_scale, pid)  # fmt: skip
    # Step 1: this program's key block, else an exit before any setup
    k_row, k_left, q_start, q_len, h = _key_tile(params, BLOCK_N)
    if k_left <= 0:  # past the sequence's end
        return
    if q_len == 0:
        _zero_key_rows(params, k_row, k_left, h, BLOCK_N, HEAD_DIM)
        return
    # Step 2: shared memory (K, V, dS^T per warpgroup; the Q/dO ring) and its barriers
    dtype: gl.constexpr = q_desc.dtype
    k_smem = gl.allocate_shared_memory(dtype, [BLOCK_N, HEAD_DIM], k_desc.layout)  # all keys
    v_smem = gl.allocate_shared_memory(dtype, [NUM_WG, WG_ROWS, HEAD_DIM], v_desc.layout)
    q_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_DIM], q_desc.layout)
    do_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_DIM], do_desc.layout)
    # dS'^T of the block's keys, one 64-row slice a warpgroup; SPLIT_DQ (two warpgroups): two
    # buffers, and a barrier each that both warpgroups arrive on once their slice is in, after
    # which each computes dQ_i for half the head's columns from both slices (half the atomic
    # adds of one dQ_i a warpgroup). The buffer of iteration i is written again at i + 2, after
    # its writer has passed iteration i + 1's barrier, so after the other warpgroup finished
    # reading it at i. A placeholder [1, 1] barrier without SPLIT_DQ.
    DS_BUFS: gl.constexpr = 2 if SPLIT_DQ else 1
    ds_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, BLOCK_M], dtype)
    ds_smem = gl.allocate_shared_memory(dtype, [DS_BUFS, BLOCK_N, BLOCK_M], ds_layout)
    ds_bars = gl.allocate_shared_memory(gl.int64, [DS_BUFS, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(DS_BUFS):
        mbarrier.init(ds_bars.index(i), count=NUM_WG)
    # DQ_TMA (1 or 2): that many float32 dQ_i buffers a warpgroup (its columns), reduced into
    # the accumulator by the copy engine (FA3's dQ path: no atomic adds from registers); a
    # buffer is written again DQ_TMA blocks later, after ``tma.store_wait`` saw its reduction
    # read it. Else a placeholder.
    if DQ_TMA:
        dq_smem = gl.allocate_shared_memory(
            gl.float32, [NUM_WG * DQ_TMA, BLOCK_M, HEAD_DIM // DS_BUFS], dq_desc.layout
        )
    else:
        dq_smem = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    kv_bar = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    q_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    do_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_bar.index(0), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(q_bars.index(i), count=1)
        mbarrier.init(do_bars.index(i), count=1)
        mbarrier.init(empty_bars.index(i), count=NUM_WG)  # each consumer arrives once a block
    # Step 3: the partitions
    shared = (k_smem, v_smem, q_bufs, do_bufs, ds_smem, dq_smem, kv_bar, q_bars, do_bars,
              empty_bars, ds_bars)  # fmt: skip
    # (IS_CAUSAL in the calls' own tuples: a tuple assigned to a name holds it as an i1 value,
    # and the partition's ``if IS_CAUSAL`` would become a branch on it)
    descs = (q_desc, k_desc, v_desc, do_desc)
    if NUM_WG == 2:
        gl.warp_specialize(
            [
                (_bwd_first_consumer, (shared, params, dq_desc, IS_CAUSAL)),
                (_bwd_second_consumer, (shared, params, dq_desc, IS_CAUSAL)),
                (_bwd_loader, (descs, shared, params, IS_CAUSAL)),
            ],
            [4, 1],
            [CONSUMER_REGS, 24],
        )
    else:
        gl.warp_specialize(
            [
                (_bwd_first_consumer, (shared, params, dq_desc, IS_CAUSAL)),
                (_bwd_loader, (descs, shared, params, IS_CAUSAL)),
            ],
            [1],
            [24],
        )


# ------------------------------------------------------------------ launcher
_BWD = FastLauncher(_attn_bwd_gluon_kernel)  # the descriptors' tiles and layouts: in its signature


def _attn_bwd_gluon(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    q_offsets: torch.Tensor,
    k_offsets: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
    zero_init: bool = True,
    config: tuple[int, int, int, bool, int, bool] | None = None,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of jagged attention through the Gluon kernel (inputs as ``_attn_bwd``'s,
    ``do`` and ``out`` after its post-scale fold; check :func:`gluon_bwd_ok` first).
    ``zero_init``: key rows the kernel does not write (past ``max_seqlen_k``) hold 0 (query rows
    always do). ``config``: (BLOCK_M, STAGES, NUM_WG, SPLIT_DQ, maxnreg, DQ_TMA: 0 for atomic
    adds, else the dQ_i buffers a warpgroup), default ``CONFIGS[D]``. ``causal``: key j visible
    from query i iff ``j <= i + Lk - Lq`` (bottom-right aligned, as the forward's)."""
    total, heads, d = q.shape
    batch = q_offsets.numel() - 1
    alloc = torch.zeros_like if zero_init else torch.empty_like
    dk, dv = alloc(k), alloc(v)
    if batch == 0 or total == 0 or k.shape[0] == 0 or max_seqlen_q == 0 or max_seqlen_k == 0:
        return torch.zeros_like(q), dk.zero_(), dv.zero_()
    block_m, stages, num_wg, split_dq, maxnreg, dq_tma = config or CONFIGS[d]
    if maxnreg < FULL_REGS:
        raise ValueError(
            f"Gluon backward configuration with maxnreg={maxnreg} (several programs an SM): on "
            f"the H200 these gave non-finite dQ once many programs ran (B=128, causal or not; "
            f"issue 15), so they are refused; maxnreg {FULL_REGS} (one program an SM) serves"
        )
    split_dq = split_dq and num_wg == 2
    if total + block_m >= 2**31:  # the copy engine's int32 row coordinates
        dq_tma = False
    if block_m < WG_ROWS:
        raise ValueError(f"Gluon backward: BLOCK_M={block_m}, at least {_ROWS} (wgmma's rows)")
    # Step 1: delta = rowsum(dO * O) and the zeroed fp32 dQ accumulator with BLOCK_M padding
    # rows: laid out as the inputs with DQ_TMA (the copy engine's reductions go anywhere, and
    # the last pass is then a contiguous cast), else heads outermost (a head's rows D apart:
    # constant offsets for the kernel's atomic adds)
    shape = (total + block_m, heads, d) if dq_tma else (heads, total + block_m, d)
    dq = torch.empty(shape, device=q.device, dtype=torch.float32)
    stride_dq_t, stride_dq_h = (dq.stride(0), dq.stride(1)) if dq_tma else (d, dq.stride(0))
    delta = torch.empty((total, heads), device=q.device, dtype=torch.float32)
    block_t = 64
    _DELTA(
        lambda meta: (cdiv(total, block_t), heads),
        (out, do, delta, dq, total, out.stride(0), out.stride(1), do.stride(0), do.stride(1),
         delta.stride(0), stride_dq_t, stride_dq_h),
        dict(HEAD_DIM=d, BLOCK_D=pow2(d), BLOCK_T=block_t),
    )  # fmt: skip
    # Step 2: one program a key block
    grid = (cdiv(max_seqlen_k, _ROWS * num_wg) * batch * heads,)
    dq_2d = dq.view(-1, heads * d) if dq_tma else dq.view(-1, d)
    dq_desc = _checked_desc(dq_2d, list(dq_2d.shape), dq_2d.shape[1], block_m,
                            d // 2 if split_dq else d)  # fmt: skip
    _BWD(
        lambda meta: grid,
        (_desc(q, block_m), _desc(k, _ROWS), _desc(v, _ROWS), _desc(do, block_m), dq_desc,
         lse, delta,
         dq, dk, dv, q_offsets, k_offsets, lse.stride(0), delta.stride(0), stride_dq_h,
         dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), max_seqlen_q, max_seqlen_k,
         batch, scale * LOG2E, scale, math.log2(scale)),
        dict(HEAD_DIM=d, BLOCK_M=block_m, STAGES=stages, NUM_WG=num_wg,
             SPLIT_DQ=split_dq, DQ_TMA=int(dq_tma), CONSUMER_REGS=consumer_regs(num_wg, maxnreg),
             IS_CAUSAL=causal, num_warps=4, maxnreg=maxnreg),
    )  # fmt: skip
    if dry_run():  # inside launch.collecting: both launchers recorded their compiles, launched
        return torch.empty_like(q), dk, dv  # nothing; outputs unwritten
    # one cast (DQ_TMA: a contiguous one; else transposing) into (T, H, D): no intermediate
    # beside the fp32 accumulator (its peak is then varlen_attn's: the accumulator and the three
    # gradients)
    dq_out = torch.empty((total, heads, d), device=q.device, dtype=q.dtype)
    return dq_out.copy_(dq[:total] if dq_tma else dq[:, :total].transpose(0, 1)), dk, dv
