"""FlashAttention-3-style forward of jagged attention in Gluon, for sm_90 (a prototype).

The same contract as ``_attn_fwd_kernel`` (attention_fwd.py) for the case it serves: no bias,
not causal, fp16/bf16, head dim 64 or 128, q/k/v ``(T, H, D)`` with heads packed
(``stride(1) == D``, ``stride(2) == 1``); output ``(T_q, H, D)`` in the input dtype and the
natural-log ``lse`` ``(T_q, H)`` fp32; a row whose sequence has no key outputs 0 with lse -inf.
``SHOPML_ATTN_GLUON=1`` routes such calls here on sm_90 (``_attn_fwd``, ``gluon_ok``); default
off.

Algorithm (FlashAttention-3's pipeline, written with Gluon's explicit primitives):
- tiles of BLOCK_M = 64 x NUM_WG query rows, numbered query block fastest, then sample, then
  head (``cdiv(max_seqlen_q, BLOCK_M) * B * H``); one program a tile (those past their
  sequence's end exit at once), or PERSISTENT: one program an SM, each walking every
  grid-size-th tile (its loader fetches the next tile's queries into a second buffer and its
  first keys while the consumers finish the current one).
- Three host-built tensor descriptors view q, k, v as 2-D ``(T, H*D)`` tensors; a tile of one
  head is the column block ``[h*D, h*D + D)``. Nothing is built per program (the Triton Hopper
  path builds a descriptor per program, 1-2 us each).
- Warp specialisation (``gl.warp_specialize``): a loader partition of one warp issues the TMA
  copies: the query tile of a tile, then K and V tiles into a ring of STAGES shared-memory slots,
  each guarded by a ``ready`` mbarrier per operand (the copy engine completes it) and an
  ``empty`` mbarrier (the consumers arrive when they are done with the slot).
- NUM_WG consumer warpgroups (1-3: the default partition, plus worker partitions of 4 warps)
  each own 64 query rows and run the online softmax with asynchronous wgmma and
  FA3's intra-warpgroup overlap: at key block j a warpgroup issues S_j = Q K_j^T and
  O += P_{j-1} V_{j-1} back to back, waits for S_j only, computes the softmax of S_j while the
  tensor cores run P_{j-1} V_{j-1}, then waits for O and rescales it. With two consumer
  warpgroups and PINGPONG they take turns issuing their matmuls (FA3's warp-scheduler barriers,
  here a pair of mbarriers), so one's softmax overlaps the other's matmuls; without it the
  warp schedulers interleave them as they come.
- Scores in base 2 (``qk_scale = scale * log2(e)``, folded into the exponent's FMA); only the
  first and the last key block are masked (keys past the sequence's end read as -inf).

Differences from the reference: the descriptors read the rows after a sequence's end from the
next sequence (masked to -inf in S; their V rows are multiplied by an exact 0, so a non-finite
value in a neighbouring sequence's V would make NaN here, where the Triton kernel reads zeros).
Not covered: causal masks, biases, other head dims, fp32, the backward.
"""

from __future__ import annotations

import functools

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from shopml.jagged.triton.attention_common import _fwd_outputs

LOG2E = 1.4426950408889634
LN2 = gl.constexpr(0.6931471805599453)
WG_ROWS = gl.constexpr(64)  # query rows of one consumer warpgroup (wgmma's M per warpgroup)

# (BLOCK_N, STAGES, NUM_WG, PINGPONG, PERSISTENT, maxnreg) per head dim, the fastest measured
# on an H200 (benchmarks/README.md, "Gluon forward prototype"): D=128 64-key blocks in three
# slots, two consumer warpgroups taking turns (490 TFLOP/s at N=2048, full fill; 128-key blocks
# 465); D=64 three consumer warpgroups without turns, BLOCK_M = 192 as FA3's (0.374 ms against
# 0.431 for two at B=1024, N=1024, fill 0.25). maxnreg: 65536 registers / threads (168: 3
# warpgroups, the loader warp's gets 24 a thread, the consumers 240; 128: 4 warpgroups)
CONFIGS = {64: (64, 3, 3, False, False, 128), 128: (64, 3, 2, True, False, 168)}


def gluon_ok(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
             scale: float) -> bool:  # fmt: skip
    """Whether this bias-free forward can run here: sm_90 exactly, fp16/bf16, not causal, head
    dim 64 or 128, heads packed, 16-byte aligned rows, a positive scale."""
    if causal or scale <= 0 or not q.is_cuda:
        return False
    if torch.cuda.get_device_capability(q.device)[0] != 9:
        return False
    d = q.shape[-1]
    if q.dtype not in (torch.float16, torch.bfloat16) or d not in CONFIGS:
        return False
    return all(
        t.dtype == q.dtype
        and t.stride(2) == 1
        and t.stride(1) == d
        and (t.stride(0) * t.element_size()) % 16 == 0
        and t.data_ptr() % 16 == 0
        for t in (q, k, v)
    )


# ------------------------------------------------------------------ kernel pieces
@gluon.jit
def _extent(offsets_ptr, b, max_seqlen):
    """(start, length) of sample ``b``, int64, the length capped at ``max_seqlen``."""
    start = gl.load(offsets_ptr + b).to(gl.int64)
    length = gl.minimum(gl.load(offsets_ptr + b + 1).to(gl.int64) - start, max_seqlen)
    return start, length


@gluon.jit
def _softmax_block(s, m_i, l_i, qk_scale, limit, MASK: gl.constexpr, BLOCK_N: gl.constexpr,
                   s_layout: gl.constexpr):  # fmt: skip
    """One key block's online-softmax update in base 2: (P, new max, new sum, rescale factor).
    ``MASK``: keys at column >= ``limit`` are invisible. Every block holds a visible key, so the
    new max is finite and the rescale factor of the first block is exp2(-inf) = 0."""
    if MASK:
        cols = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        s = gl.where(gl.expand_dims(cols < limit, 0), s, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
    p = gl.exp2(s * qk_scale - gl.expand_dims(m_new, 1))
    alpha = gl.exp2(m_i - m_new)
    l_i = l_i * alpha + gl.sum(p, axis=1)
    return p, m_new, l_i, alpha


@gluon.jit
def _turn(turn_bars, i, WG: gl.constexpr):
    """Ping-pong (FA3's warp-scheduler barriers): before issuing its matmuls of iteration i, a
    warpgroup waits until the other one has issued its own of iteration i - 1 (the first, WG 0)
    or i (the second, WG 1); one arrival per iteration on the other's barrier hands the turn on.
    A placeholder ``[1, 1]`` ``turn_bars`` (one consumer warpgroup, or ping-pong off) skips it."""
    if turn_bars.shape[0] == 2:
        k = i - 1 + WG  # the other warpgroup's arrival this waits for
        mbarrier.wait(turn_bars.index(WG), k & 1, pred=k >= 0)


@gluon.jit
def _pass_turn(turn_bars, WG: gl.constexpr):
    if turn_bars.shape[0] == 2:
        mbarrier.arrive(turn_bars.index(1 - WG))


@gluon.jit
def _key_block(j, it, q, p, acc, m_i, l_i, shared, qk_scale, k_len, WG: gl.constexpr,
               MASK: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr):  # fmt: skip
    """Key block j >= 1 of a tile whose block 0 is the ring's block ``it``: S_j = Q K_j^T and
    O += P_{j-1} V_{j-1} issued together (in this warpgroup's turn); the softmax of S_j runs
    while the second is in flight; then O is rescaled and slot j-1 handed back to the loader."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    STAGES: gl.constexpr = k_bufs.shape[0]
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    cur = it + j  # the ring's block counter
    stage = cur % STAGES
    prev = (cur - 1) % STAGES
    mbarrier.wait(k_bars.index(stage), (cur // STAGES) & 1)
    mbarrier.wait(v_bars.index(prev), ((cur - 1) // STAGES) & 1)
    p_op = gl.convert_layout(p.to(q.dtype), gl.DotOperandLayout(0, o_layout, 2))
    zero = gl.zeros([WG_ROWS, BLOCK_N], gl.float32, s_layout)
    _turn(turn_bars, cur, WG)
    s = warpgroup_mma(q, k_bufs.index(stage).permute((1, 0)), zero, use_acc=False, is_async=True)
    acc = warpgroup_mma(p_op, v_bufs.index(prev), acc, is_async=True)
    _pass_turn(turn_bars, WG)
    s = warpgroup_mma_wait(1, deps=(s,))  # S_j done (issued first), P_{j-1} V_{j-1} may run
    p, m_i, l_i, alpha = _softmax_block(s, m_i, l_i, qk_scale, k_len - j * BLOCK_N, MASK,
                                        BLOCK_N, s_layout)  # fmt: skip
    acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))  # p_op's registers live until here
    mbarrier.arrive(empty_bars.index(prev))
    acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
    return p, acc, m_i, l_i


@gluon.jit
def _attend(shared, params, q, it, q_row, q_len, k_len, h, WG: gl.constexpr):
    """One tile of one warpgroup: 64 query rows (``q_row``, int64: the tile's first row; ``q_len``:
    the tile's rows left in the sequence) against ``k_len`` >= 1 keys, whose first block is the
    ring's block ``it``; output and lse stored."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    STAGES: gl.constexpr = k_bufs.shape[0]
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog = params  # fmt: skip
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    n_blocks = gl.cdiv(k_len, BLOCK_N).to(gl.int32)
    # Step 1: key block 0 (masked: it may be the last)
    first = it % STAGES
    mbarrier.wait(k_bars.index(first), (it // STAGES) & 1)
    zero = gl.zeros([WG_ROWS, BLOCK_N], gl.float32, s_layout)
    _turn(turn_bars, it, WG)
    s = warpgroup_mma(q, k_bufs.index(first).permute((1, 0)), zero, use_acc=False, is_async=True)
    _pass_turn(turn_bars, WG)
    s = warpgroup_mma_wait(0, deps=(s,))
    m_i = gl.full([WG_ROWS], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
    l_i = gl.zeros([WG_ROWS], gl.float32, gl.SliceLayout(1, s_layout))
    p, m_i, l_i, alpha = _softmax_block(s, m_i, l_i, qk_scale, k_len, True, BLOCK_N, s_layout)
    acc = gl.zeros([WG_ROWS, HEAD_DIM], gl.float32, o_layout)
    # Step 2: interior key blocks, then the last one masked
    for j in range(1, n_blocks - 1):
        p, acc, m_i, l_i = _key_block(j, it, q, p, acc, m_i, l_i, shared, qk_scale, k_len, WG,
                                      False, s_layout, o_layout)  # fmt: skip
    if n_blocks > 1:
        p, acc, m_i, l_i = _key_block(n_blocks - 1, it, q, p, acc, m_i, l_i, shared, qk_scale,
                                      k_len, WG, True, s_layout, o_layout)  # fmt: skip
    # Step 3: the last block's P V (outside the turns)
    last = it + n_blocks - 1
    mbarrier.wait(v_bars.index(last % STAGES), (last // STAGES) & 1)
    p_op = gl.convert_layout(p.to(q.dtype), gl.DotOperandLayout(0, o_layout, 2))
    acc = warpgroup_mma(p_op, v_bufs.index(last % STAGES), acc, is_async=True)
    acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))
    mbarrier.arrive(empty_bars.index(last % STAGES))
    # Step 4: normalise and store this warpgroup's rows (every row saw a key: l >= 1)
    l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
    out = acc * gl.expand_dims(post_scale / l_o, 1)
    rows = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, o_layout)) + WG * WG_ROWS
    cols = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    ptrs = (o_ptr + gl.expand_dims((q_row + rows) * stride_o_t, 1) + h * stride_o_h
            + gl.expand_dims(cols, 0))  # fmt: skip
    mask = gl.expand_dims(rows < q_len, 1) & gl.expand_dims(cols < HEAD_DIM, 0)
    gl.store(ptrs, out.to(o_ptr.dtype.element_ty), mask=mask)
    rows_s = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, s_layout)) + WG * WG_ROWS
    lse = (m_i + gl.log2(l_i)) * LN2
    gl.store(lse_ptr + (q_row + rows_s) * stride_lse_t + h, lse, mask=rows_s < q_len)


@gluon.jit
def _empty_rows(params, q_row, q_len, h, FIRST: gl.constexpr, COUNT: gl.constexpr,
                HEAD_DIM: gl.constexpr):  # fmt: skip
    """Rows of a tile whose sequence has no keys: output 0, lse -inf, for the row blocks
    FIRST, ..., FIRST + COUNT - 1 of 64 rows."""
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog = params  # fmt: skip
    layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [gl.num_warps(), 1], [1, 0])
    cols = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, layout))
    zeros = gl.zeros([WG_ROWS, HEAD_DIM], o_ptr.dtype.element_ty, layout)
    minus_inf = gl.full([WG_ROWS], float("-inf"), gl.float32, gl.SliceLayout(1, layout))
    for wg in gl.static_range(FIRST, FIRST + COUNT):
        rows = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, layout)) + wg * WG_ROWS
        mask = gl.expand_dims(rows < q_len, 1) & gl.expand_dims(cols < HEAD_DIM, 0)
        ptrs = (o_ptr + gl.expand_dims((q_row + rows) * stride_o_t, 1) + h * stride_o_h
                + gl.expand_dims(cols, 0))  # fmt: skip
        gl.store(ptrs, zeros, mask=mask)
        gl.store(lse_ptr + (q_row + rows) * stride_lse_t + h, minus_inf, mask=rows < q_len)


@gluon.jit
def _tile(tile, params, BLOCK_M: gl.constexpr):
    """Tile ``tile`` (query block fastest, then sample, then head): (first row, rows left in
    the sequence, the sample's key start and length, head); rows left <= 0: nothing to do."""
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog = params  # fmt: skip
    m = tile % num_m
    bh = tile // num_m
    b = bh % batch
    h = bh // batch
    q_start, q_len = _extent(q_offsets_ptr, b, max_seqlen_q)
    k_start, k_len = _extent(k_offsets_ptr, b, max_seqlen_k)
    m_start = m * BLOCK_M
    return q_start + m_start, q_len - m_start, k_start, k_len, h


@gluon.jit
def _consumer(shared, params, WG: gl.constexpr):
    """Consumer warpgroup WG over this program's tiles (one, or a persistent program's
    share). The tile sizes come from the buffers' shapes (constexpr arguments reach worker
    partitions as tensors in Triton 3.6)."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    NUM_WG: gl.constexpr = q_smem.shape[0] // q_bars.shape[0]
    QBUF: gl.constexpr = q_bars.shape[0]
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog = params  # fmt: skip
    it = 0  # key blocks through the ring so far
    t = 0  # tiles with keys so far (the query buffers' counter)
    for tile in range(pid, num_tiles, nprog):
        q_row, q_len, k_start, k_len, h = _tile(tile, params, WG_ROWS * NUM_WG)
        if q_len > 0:
            if k_len == 0:
                _empty_rows(params, q_row, q_len, h, WG, 1, HEAD_DIM)
            else:
                qb = t % QBUF
                mbarrier.wait(q_bars.index(qb), (t // QBUF) & 1)
                q = q_smem.index(qb * NUM_WG + WG)
                _attend(shared, params, q, it, q_row, q_len, k_len, h, WG)
                mbarrier.arrive(q_empty.index(qb))
                it += gl.cdiv(k_len, BLOCK_N).to(gl.int32)
                t += 1


@gluon.jit
def _first_consumer(shared, params):
    """The default partition: the first consumer warpgroup (rows 0-63)."""
    _consumer(shared, params, 0)


@gluon.jit
def _second_consumer(shared, params):
    """A worker partition of 4 warps: the second consumer warpgroup (rows 64-127)."""
    _consumer(shared, params, 1)


@gluon.jit
def _third_consumer(shared, params):
    """A worker partition of 4 warps: the third consumer warpgroup (rows 128-191)."""
    _consumer(shared, params, 2)


@gluon.jit
def _loader(descs, shared, params):
    """The producer warp: per tile with keys, the query tile (into a free query buffer), then
    K and V tiles through the ring of slots."""
    q_desc, k_desc, v_desc = descs
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    QBUF: gl.constexpr = q_bars.shape[0]
    NUM_WG: gl.constexpr = q_smem.shape[0] // QBUF
    STAGES: gl.constexpr = k_bufs.shape[0]
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    q_bytes: gl.constexpr = NUM_WG * q_desc.block_type.nbytes
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog = params  # fmt: skip
    it = 0
    t = 0
    for tile in range(pid, num_tiles, nprog):
        q_row, q_len, k_start, k_len, h = _tile(tile, params, WG_ROWS * NUM_WG)
        if (q_len > 0) & (k_len > 0):
            col = (h * HEAD_DIM).to(gl.int32)
            qb = t % QBUF
            # a fresh mbarrier counts as having completed the phase before phase 0
            mbarrier.wait(q_empty.index(qb), ((t // QBUF) & 1) ^ 1)
            mbarrier.expect(q_bars.index(qb), q_bytes)
            for wg in gl.static_range(NUM_WG):
                tma.async_copy_global_to_shared(
                    q_desc, [(q_row + wg * WG_ROWS).to(gl.int32), col], q_bars.index(qb),
                    q_smem.index(qb * NUM_WG + wg),
                )  # fmt: skip
            n_blocks = gl.cdiv(k_len, BLOCK_N).to(gl.int32)
            for j in range(n_blocks):
                cur = it + j
                stage = cur % STAGES
                mbarrier.wait(empty_bars.index(stage), ((cur // STAGES) & 1) ^ 1)
                row = (k_start + j * BLOCK_N).to(gl.int32)
                mbarrier.expect(k_bars.index(stage), k_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(k_desc, [row, col], k_bars.index(stage),
                                                k_bufs.index(stage))  # fmt: skip
                mbarrier.expect(v_bars.index(stage), v_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(v_desc, [row, col], v_bars.index(stage),
                                                v_bufs.index(stage))  # fmt: skip
            it += n_blocks
            t += 1


@gluon.jit
def _attn_fwd_gluon_kernel(
    q_desc, k_desc, v_desc, o_ptr, lse_ptr, q_offsets_ptr, k_offsets_ptr,
    stride_o_t, stride_o_h, stride_lse_t, max_seqlen_q, max_seqlen_k, batch, heads,
    qk_scale, post_scale,
    HEAD_DIM: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, NUM_WG: gl.constexpr,
    PINGPONG: gl.constexpr, PERSISTENT: gl.constexpr, CONSUMER_REGS: gl.constexpr,
):  # fmt: skip
    BLOCK_M: gl.constexpr = WG_ROWS * NUM_WG
    pid = gl.program_id(0)
    nprog = gl.num_programs(0)
    num_m = gl.cdiv(max_seqlen_q, BLOCK_M)
    num_tiles = num_m * batch * heads
    params = (o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale,
              q_offsets_ptr, k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch,
              num_tiles, pid, nprog)  # fmt: skip
    # Step 1: one tile a program (grid = the tiles): its rows, else an exit before any setup
    if not PERSISTENT:
        q_row, q_len, k_start, k_len, h = _tile(pid, params, BLOCK_M)
        if q_len <= 0:  # past the sequence's end
            return
        if k_len == 0:
            _empty_rows(params, q_row, q_len, h, 0, NUM_WG, HEAD_DIM)
            return
    # Step 2: shared memory (query tiles, K/V ring) and its barriers
    QBUF: gl.constexpr = 2 if PERSISTENT else 1  # a persistent loader fetches the next Q early
    dtype: gl.constexpr = q_desc.dtype
    q_smem = gl.allocate_shared_memory(dtype, [QBUF * NUM_WG, WG_ROWS, HEAD_DIM], q_desc.layout)
    k_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_bufs = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
    q_bars = gl.allocate_shared_memory(gl.int64, [QBUF, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [QBUF, 1], mbarrier.MBarrierLayout())
    k_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty_bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    # the ping-pong's barriers (see _turn): [2, 1], or a placeholder [1, 1] without ping-pong
    TURNS: gl.constexpr = 2 if PINGPONG and NUM_WG == 2 else 1
    turn_bars = gl.allocate_shared_memory(gl.int64, [TURNS, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(QBUF):
        mbarrier.init(q_bars.index(i), count=1)
        mbarrier.init(q_empty.index(i), count=NUM_WG)  # each consumer arrives once a tile
    for i in gl.static_range(STAGES):
        mbarrier.init(k_bars.index(i), count=1)
        mbarrier.init(v_bars.index(i), count=1)
        mbarrier.init(empty_bars.index(i), count=NUM_WG)  # each consumer arrives once a block
    for i in gl.static_range(TURNS):
        mbarrier.init(turn_bars.index(i), count=1)
    # Step 3: the partitions, each walking the same tiles
    shared = (q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty)
    load_args = ((q_desc, k_desc, v_desc), shared, params)
    # the worker partitions' registers a thread (the default partition gets what maxnreg leaves)
    if NUM_WG == 3:
        gl.warp_specialize(
            [
                (_first_consumer, (shared, params)),
                (_second_consumer, (shared, params)),
                (_third_consumer, (shared, params)),
                (_loader, load_args),
            ],
            [4, 4, 1],
            [CONSUMER_REGS, CONSUMER_REGS, 24],
        )
    elif NUM_WG == 2:
        gl.warp_specialize(
            [
                (_first_consumer, (shared, params)),
                (_second_consumer, (shared, params)),
                (_loader, load_args),
            ],
            [4, 1],
            [CONSUMER_REGS, 24],
        )
    else:
        gl.warp_specialize([(_first_consumer, (shared, params)), (_loader, load_args)], [1], [24])


# ------------------------------------------------------------------ launcher
def consumer_regs(num_wg: int, maxnreg: int) -> int:
    """Registers a thread of each consumer warpgroup: the kernel's ``maxnreg`` x (NUM_WG + 1)
    warpgroups, less the loader's warpgroup at 24, shared out (a multiple of 8, at most 256)."""
    return min(256, (maxnreg * (num_wg + 1) - 24) // num_wg // 8 * 8)


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _layout(block: list[int], dtype: torch.dtype) -> gl.NVMMASharedLayout:
    return gl.NVMMASharedLayout.get_default_for(
        block, gl.bfloat16 if dtype == torch.bfloat16 else gl.float16
    )


def _desc(t: torch.Tensor, rows: int) -> TensorDescriptor:
    """Descriptor over ``t`` as 2-D ``(T, H*D)`` with tiles of ``rows`` x D (one head)."""
    total, heads, d = t.shape
    block = [int(getattr(rows, "value", rows)), int(d)]
    return TensorDescriptor(t, [total, heads * d], [t.stride(0), 1], block, _layout(block, t.dtype))


def _attn_fwd_gluon(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_offsets: torch.Tensor,
    k_offsets: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
    post_scale: float,
    zero_init: bool = False,
    config: tuple[int, int, int, bool, bool, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward of jagged attention through the Gluon kernel (inputs as ``_attn_fwd``'s;
    check :func:`gluon_ok` first). ``zero_init``: rows the kernel does not write (past
    ``max_seqlen_q``) hold 0 and lse -inf. ``config``: (BLOCK_N, STAGES, NUM_WG, PINGPONG,
    PERSISTENT, maxnreg), default ``CONFIGS[D]``."""
    total, heads, d = q.shape
    batch = q_offsets.numel() - 1
    out, lse = _fwd_outputs(q, max_seqlen_q, zero_init)
    if batch == 0 or total == 0 or max_seqlen_q == 0:
        return out, lse
    block_n, stages, num_wg, pingpong, persistent, maxnreg = config or CONFIGS[d]
    if k.shape[0] == 0:  # no keys anywhere: a descriptor needs a non-empty tensor
        return out.zero_(), lse.fill_(float("-inf"))
    tiles = triton.cdiv(max_seqlen_q, WG_ROWS * num_wg) * batch * heads
    grid = (min(tiles, _sm_count(q.device.index or 0)) if persistent else tiles,)
    _attn_fwd_gluon_kernel[grid](
        _desc(q, WG_ROWS), _desc(k, block_n), _desc(v, block_n), out, lse, q_offsets, k_offsets,
        out.stride(0), out.stride(1), lse.stride(0), max_seqlen_q, max_seqlen_k, batch, heads,
        scale * LOG2E, post_scale,
        HEAD_DIM=d, BLOCK_N=block_n, STAGES=stages, NUM_WG=num_wg, PINGPONG=pingpong,
        PERSISTENT=persistent,
        CONSUMER_REGS=consumer_regs(num_wg, maxnreg),
        num_warps=4, maxnreg=maxnreg,
    )  # fmt: skip
    return out, lse
