"""FlashAttention-3-style forward of jagged attention in Gluon, for sm_90.

The same contract as ``_attn_fwd_kernel`` (attention_fwd.py) for the case it serves: no bias,
causal or not, fp16/bf16, head dim 64 or 128, q/k/v ``(T, H, D)`` with heads packed
(``stride(1) == D``, ``stride(2) == 1``); output ``(T_q, H, D)`` in the input dtype and the
natural-log ``lse`` ``(T_q, H)`` fp32; a row that sees no key (its sequence has none, or
causal with ``Lq > Lk``) outputs 0 with lse -inf. On sm_90 ``_attn_fwd`` routes such calls
here where :func:`auto_config` says this kernel measured faster (``SHOPML_ATTN_GLUON=auto``,
the default; causal calls too since session 14), every such call (``1``) or none (``0``).

Algorithm (FlashAttention-3's pipeline, written with Gluon's explicit primitives):
- tiles of BLOCK_M = 64 x NUM_WG query rows, numbered query block fastest, then sample, then
  head (``cdiv(max_seqlen_q, BLOCK_M) * B * H``); one program a tile (those past their
  sequence's end exit at once), or PERSISTENT: as many programs as the SMs hold at once
  (:func:`per_sm`), each walking every grid-size-th tile (its loader fetches the next tile's
  queries into a second buffer and its first keys while the consumers finish the current one).
- Three host-built tensor descriptors view q, k, v as 2-D ``(T, H*D)`` tensors; a tile of one
  head is the column block ``[h*D, h*D + D)``. Nothing is built per program (the Triton Hopper
  path builds a descriptor per program, 1-2 us each). A FastLauncher (launch.py) launches the
  kernel: after a signature's first launch the cached binary directly, the descriptors passed as
  they are (the binary's launcher encodes each into a TMA descriptor); inside
  ``launch.collecting`` it records the compile instead (the first call's parallel compile).
  Settings seen before take a :class:`_Plan`: both launches (the tile table's, the kernel's)
  bound once, a call passing its descriptors and its tensors' addresses.
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
- OWN_TILES (for short sequences): each consumer warpgroup owns a tile of 64 query rows of its
  own, of any sample and head, so no program holds rows past a sequence's end but in its last
  64-row block. 64-row blocks are numbered by slots, head fastest: sample b's g-th block is slot
  ``q_offsets[b] // 64 + b + g`` (``T // 64 + B`` slots, at most two of a sample idle; a
  one-launch table maps slots to samples, no cumulative sum and no host sync); a program runs
  NUM_WG consecutive tiles, one a warpgroup. Each warpgroup has its own query buffer and its own
  ring of STAGES K/V slots, which the one loader warp fills in rounds (block r of each
  warpgroup's stream, then block r + 1): the order in which two ping-ponging warpgroups take
  their turns, which last as many key blocks as the shorter of their two tiles has (both
  compute that count; the longer one then runs on alone). Persistent only with one consumer
  warpgroup: the PERSISTENT walk above over the 64-row numbering (a tile a warpgroup, its next
  tile's query and first keys loaded while it finishes the current one).
- Scores in base 2 (``qk_scale = scale * log2(e)``, folded into the exponent's FMA); only the
  first and the last key block are masked (keys past the sequence's end read as -inf).
- Causal (IS_CAUSAL; key j visible from query i iff ``j <= i + Lk - Lq``, bottom-right
  aligned as the Triton forward): a tile reads only the key blocks that hold a key its last
  row sees, ``cdiv(min(Lk, q_end + Lk - Lq), BLOCK_N)`` (``q_end``: its last row in the
  sequence + 1; none: its rows output 0 with lse -inf, no copies), a count its loader and its
  consumers compute alike (:func:`_tile_keys`). A warpgroup runs its key blocks unmasked up to
  the first one its first row does not see whole, then masked (``col < Lk`` and ``col <= row
  + Lk - Lq``, one comparison an element); masked blocks subtract a max of 0 for rows that
  have seen no key yet, so such rows end with P = 0, l = 0: output 0, lse -inf. Warpgroups
  that share a tile (ping-pong) both run the tile's blocks (the ring's slots are handed back
  by both), the first one past its own diagonal fully masked. With IS_CAUSAL False the
  generated code is that of the non-causal kernel (benchmarks/attention_gluon.py
  ``--parts compile`` lists both).

Differences from the reference: the descriptors read the rows after a sequence's end from the
next sequence (masked to -inf in S; their V rows are multiplied by an exact 0, so a non-finite
value in a neighbouring sequence's V would make NaN here, where the Triton kernel reads zeros).
Not covered: biases, other head dims, fp32, the backward.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from shopml.jagged.triton._common import cdiv
from shopml.jagged.triton.attention_common import (
    MAX_PLANS,
    _dummy,
    _fwd_outputs,
    _sm90_exactly,
    plan_cache,
)
from shopml.jagged.triton.launch import Bound, FastLauncher, dry_run

LOG2E = 1.4426950408889634
LN2 = gl.constexpr(0.6931471805599453)
WG_ROWS = gl.constexpr(64)  # query rows of one consumer warpgroup (wgmma's M per warpgroup)
_ROWS = WG_ROWS.value  # the same as a host int (constexpr arithmetic costs microseconds)
# integer arguments that change from call to call (a jagged batch's longest sequence): no binary
# of their own for their value classes (== 1, multiple of 16), or a new class met mid-run would
# compile the kernel again (seconds)
_NO_SPEC = ["max_seqlen_q", "max_seqlen_k", "batch"]

# (BLOCK_N, STAGES, NUM_WG, PINGPONG, PERSISTENT, OWN_TILES, maxnreg) per head dim, the fastest
# measured on an H200 (benchmarks/README.md, "Gluon forward prototype" and "Session 12").
# CONFIGS where the mean sequence has at least LONG_ROWS rows, SHORT_CONFIGS below it.
# D=64, long: FA3's tile, three consumer warpgroups of 64 rows each (192 query rows) against
# 128-key blocks in two slots (5.448 ms against 5.595 for own tiles and 7.553 for varlen_attn at
# B=256, N=4096, H=4, a mean of 2,565 rows; 6.430 against 6.799 at B=1024, N=4096, H=2, a mean of
# 1,756; session 17). D=64, short: one consumer warpgroup of its own 64-row tiles, 64-key blocks
# in two slots, 80 registers a thread so that three programs share an SM (0.270 ms against 0.292
# for the Triton forward and 0.377 for three warpgroups at B=1024, N=1024, fill 0.25; 0.646
# against 0.733 for FA3's tile at a mean of 973 rows, session 17). D=128, long: two consumer
# warpgroups taking turns, 128-key blocks in three slots (224 KiB of shared memory; 554-604
# TFLOP/s on the grid's N=4096 cases in session 16, where 64-key blocks in three slots ran 476
# against its 538 on one case; 128-key blocks in two slots had run 465 against 490 in session
# 11: the third slot keeps the loader two blocks ahead); D=128, short: one warpgroup of its own
# tiles, 64-key blocks in three slots (0.857 ms against 1.057 and Triton's 0.972 at B=1024,
# N=1024, H=4, fill 0.25). maxnreg: 65536 registers / threads (168: 3 warpgroups, the loader
# warp's gets 24 a thread, the consumers 240; 128: 4 warpgroups).
CONFIGS = {64: (128, 2, 3, False, False, False, 128), 128: (128, 3, 2, True, False, False, 168)}
SHORT_CONFIGS = {64: (64, 2, 1, False, False, True, 80), 128: (64, 3, 1, False, False, True, 128)}
LONG_ROWS = 1024
# ``auto``: sequences of at most MAX_TRITON rows stay with the Triton forward (B=1024, N=256, D=64:
# 0.072 ms against Gluon's 0.106 and varlen_attn's 0.116, session 12), and so do queries of
# fewer than MIN_ELEMENTS values (T x H x D; x0.35-0.91 the Triton forward's speed under 2^24 in
# session 13's grid, x1.03-1.57 above it). At D=128 the Gluon forward (own tiles) leads on short
# sequences too from MIN_SHORT values: with its launches bound (session 17) the grid's N=256
# cases of 29-84 M values ran x0.98-1.13 varlen_attn's speed against the Triton forward's
# x0.88-0.97 (0.135 against 0.148 ms at B=1024, fill 0.5, H=2), and 21 M lost (0.120 against
# 0.109). Under 2^24 values the Gluon forward (own tiles, or one warpgroup walking them
# persistently) led the Triton one in a loop of forward calls alone (ms, Triton / own tiles /
# persistent / varlen_attn: B=1024, N=256, fill 0.1, H=4 0.112 / 0.092 / 0.068 / 0.116; B=256,
# N=1024, fill 0.1, H=4 0.104 / 0.073 / 0.074 / 0.092) but not in the grid's harness (the same
# forwards timed beside forward+backward steps: 0.110-0.140 against 0.102-0.111, its rows
# spread 2x where the Triton ones were within 2%). Session 18 found why: its host path (66 us a
# tiny public call against the Triton forward's 30; the tile table's launch 10.5, the main launch
# with its three descriptors 13.3, ``gluon_ok`` 4.7) outgrows the L2 flush that hides host time
# in the benchmark, and host-bound forward+backward steps pay it whole (0.566 against 0.421 ms at
# B=1024, N=256, fill 0.1, H=4): they stay with Triton.
MAX_TRITON = 256
MIN_ELEMENTS = 2**24
MIN_SHORT = {64: None, 128: 3 * 2**23}


def auto_config(
    q: torch.Tensor, batch: int, max_seqlen_q: int, forced: bool = False
) -> tuple[int, int, int, bool, bool, bool, int] | None:
    """The launcher configuration for this call, or None where the Triton forward is faster
    (``forced``: never None, for tests). Causal calls take the same choice: in session 14 the
    causal Gluon forward (the same tiles) was at least as fast as the Triton one on all four
    cases timed, D=64 and 128, N=1024 and 4096 (0.563 ms against 0.682 at B=512, N=1024, H=4,
    D=128; benchmarks/README.md, "Session 14")."""
    d = q.shape[-1]
    if not forced:
        numel = q.numel()
        if numel < MIN_ELEMENTS:
            return None
        if max_seqlen_q <= MAX_TRITON and (MIN_SHORT[d] is None or numel < MIN_SHORT[d]):
            return None
    return CONFIGS[d] if q.shape[0] >= LONG_ROWS * max(batch, 1) else SHORT_CONFIGS[d]


def gluon_ok(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> bool:
    """Whether this bias-free forward (causal or not) can run here: sm_90 exactly, fp16/bf16,
    head dim 64 or 128, heads packed, 16-byte aligned rows, a positive scale."""
    if scale <= 0 or not q.is_cuda:
        return False
    if not _sm90_exactly(q.device.index or 0):  # cached: this runs on every routed call
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
def _num_slots(q_offsets_ptr, batch):
    """Slots of the 64-row tile numbering, ``T // 64 + B`` (int32; ``T = q_offsets[B]``, the
    size of :func:`_tile_samples`' table)."""
    return gl.load(q_offsets_ptr + batch).to(gl.int32) // WG_ROWS + batch


@gluon.jit
def _tile_keys(q_len, k_len, ROWS: gl.constexpr, IS_CAUSAL: gl.constexpr):
    """Keys a tile of ROWS query rows reads (``q_len``: its rows left in the sequence): all
    ``k_len``, or causal those up to its last row's diagonal, ``min(Lk, q_end + Lk - Lq)``
    (``q_end``: the last row in the sequence + 1) = ``Lk - max(q_len - ROWS, 0)``, at least
    0 (0: no row of it sees a key)."""
    if IS_CAUSAL:
        k_len = gl.maximum(k_len - gl.maximum(q_len - ROWS, 0), 0)
    return k_len


@gluon.jit
def _softmax_block(s, m_i, l_i, qk_scale, limit, diag, MASK: gl.constexpr,
                   CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr,
                   s_layout: gl.constexpr):  # fmt: skip
    """One key block's online-softmax update in base 2: (P, new max, new sum, rescale factor).
    ``MASK``: keys at column >= ``limit`` are invisible, and with ``CAUSAL`` those at column >
    row + ``diag`` too. Without CAUSAL every block holds a visible key, so the new max is
    finite and the rescale factor of the first block is exp2(-inf) = 0; with it a row may have
    seen no key yet (its max -inf): it subtracts 0 instead (P = 0, rescale factor 0)."""
    if MASK:
        cols = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        if CAUSAL:  # one comparison an element: column <= min(row + diag, limit - 1)
            rows = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, s_layout))
            last = gl.minimum(rows + diag, limit - 1)
            s = gl.where(gl.expand_dims(cols, 0) <= gl.expand_dims(last, 1), s, float("-inf"))
        else:
            s = gl.where(gl.expand_dims(cols < limit, 0), s, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
    m_sub = m_new
    if CAUSAL and MASK:  # a row that has seen no key yet
        m_sub = gl.where(m_new == float("-inf"), 0.0, m_new)
    p = gl.exp2(s * qk_scale - gl.expand_dims(m_sub, 1))
    alpha = gl.exp2(m_i - m_sub)
    l_i = l_i * alpha + gl.sum(p, axis=1)
    return p, m_new, l_i, alpha


@gluon.jit
def _turn(turn_bars, i, turns, WG: gl.constexpr):
    """Ping-pong (FA3's warp-scheduler barriers): before issuing its matmuls of iteration i, a
    warpgroup waits until the other one has issued its own of iteration i - 1 (the first, WG 0)
    or i (the second, WG 1); one arrival per iteration on the other's barrier hands the turn on.
    Only iterations i < ``turns`` take turns (warpgroups of their own tiles: the shorter tile's
    key blocks; sharing a tile: all). A placeholder ``[1, 1]`` ``turn_bars`` (one consumer
    warpgroup, or ping-pong off) skips it."""
    if turn_bars.shape[0] == 2:
        k = i - 1 + WG  # the other warpgroup's arrival this waits for
        mbarrier.wait(turn_bars.index(WG), k & 1, pred=(k >= 0) & (i < turns))


@gluon.jit
def _pass_turn(turn_bars, i, turns, WG: gl.constexpr):
    if turn_bars.shape[0] == 2:
        mbarrier.arrive(turn_bars.index(1 - WG), pred=i < turns)


@gluon.jit
def _key_block(j, it, q, p, acc, m_i, l_i, shared, qk_scale, k_len, diag, turns,
               WG: gl.constexpr, BASE: gl.constexpr, STAGES: gl.constexpr, MASK: gl.constexpr,
               CAUSAL: gl.constexpr, s_layout: gl.constexpr,
               o_layout: gl.constexpr):  # fmt: skip
    """Key block j >= 1 of a tile whose block 0 is the ring's block ``it`` (the ring: slots
    BASE, ..., BASE + STAGES - 1): S_j = Q K_j^T and O += P_{j-1} V_{j-1} issued together (in
    this warpgroup's turn); the softmax of S_j runs while the second is in flight; then O is
    rescaled and slot j-1 handed back to the loader. ``diag``: see :func:`_attend`."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    cur = it + j  # the ring's block counter
    stage = BASE + cur % STAGES
    prev = BASE + (cur - 1) % STAGES
    mbarrier.wait(k_bars.index(stage), (cur // STAGES) & 1)
    mbarrier.wait(v_bars.index(prev), ((cur - 1) // STAGES) & 1)
    p_op = gl.convert_layout(p.to(q.dtype), gl.DotOperandLayout(0, o_layout, 2))
    zero = gl.zeros([WG_ROWS, BLOCK_N], gl.float32, s_layout)
    _turn(turn_bars, cur, turns, WG)
    s = warpgroup_mma(q, k_bufs.index(stage).permute((1, 0)), zero, use_acc=False, is_async=True)
    acc = warpgroup_mma(p_op, v_bufs.index(prev), acc, is_async=True)
    _pass_turn(turn_bars, cur, turns, WG)
    s = warpgroup_mma_wait(1, deps=(s,))  # S_j done (issued first), P_{j-1} V_{j-1} may run
    p, m_i, l_i, alpha = _softmax_block(s, m_i, l_i, qk_scale, k_len - j * BLOCK_N,
                                        diag - j * BLOCK_N, MASK, CAUSAL, BLOCK_N,
                                        s_layout)  # fmt: skip
    acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))  # p_op's registers live until here
    mbarrier.arrive(empty_bars.index(prev))
    acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
    return p, acc, m_i, l_i


@gluon.jit
def _attend(shared, params, q, it, q_row, q_len, k_len, diag, h, turns, WG: gl.constexpr,
            BASE: gl.constexpr, STAGES: gl.constexpr, IS_CAUSAL: gl.constexpr):  # fmt: skip
    """64 query rows of one warpgroup (``q_row``, int64: their first row; ``q_len``: how many
    of them lie in the sequence, <= 0: none) against ``k_len`` >= 1 keys (the tile's: causal,
    see :func:`_tile_keys`), whose first block is the block ``it`` of the ring of slots BASE,
    ..., BASE + STAGES - 1; output and lse stored. ``turns``: see :func:`_turn`. IS_CAUSAL:
    ``diag`` is the last key the first row sees (``Lk - Lq`` + its row in the sequence; < 0:
    none); the blocks from the first one past it on are masked, and rows that see no key
    output 0 with lse -inf."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    n_blocks = gl.cdiv(k_len, BLOCK_N).to(gl.int32)
    # Step 1: key block 0 (masked: it may be the last)
    first = BASE + it % STAGES
    mbarrier.wait(k_bars.index(first), (it // STAGES) & 1)
    zero = gl.zeros([WG_ROWS, BLOCK_N], gl.float32, s_layout)
    _turn(turn_bars, it, turns, WG)
    s = warpgroup_mma(q, k_bufs.index(first).permute((1, 0)), zero, use_acc=False, is_async=True)
    _pass_turn(turn_bars, it, turns, WG)
    s = warpgroup_mma_wait(0, deps=(s,))
    m_i = gl.full([WG_ROWS], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
    l_i = gl.zeros([WG_ROWS], gl.float32, gl.SliceLayout(1, s_layout))
    if IS_CAUSAL:  # (int32 masks)
        diag = diag.to(gl.int32)
        k_len = k_len.to(gl.int32)
    p, m_i, l_i, alpha = _softmax_block(s, m_i, l_i, qk_scale, k_len, diag, True, IS_CAUSAL,
                                        BLOCK_N, s_layout)  # fmt: skip
    acc = gl.zeros([WG_ROWS, HEAD_DIM], gl.float32, o_layout)
    # Step 2: interior key blocks, then the last one masked (causal: the blocks from the
    # first one the first row does not see whole on)
    if IS_CAUSAL:
        n_full = (gl.minimum(gl.maximum(diag + 1, 0), k_len) // BLOCK_N).to(gl.int32)
        for j in range(1, n_full):
            p, acc, m_i, l_i = _key_block(j, it, q, p, acc, m_i, l_i, shared, qk_scale, k_len,
                                          diag, turns, WG, BASE, STAGES, False, True, s_layout,
                                          o_layout)  # fmt: skip
        for j in range(gl.maximum(n_full, 1), n_blocks):
            p, acc, m_i, l_i = _key_block(j, it, q, p, acc, m_i, l_i, shared, qk_scale, k_len,
                                          diag, turns, WG, BASE, STAGES, True, True, s_layout,
                                          o_layout)  # fmt: skip
    else:
        for j in range(1, n_blocks - 1):
            p, acc, m_i, l_i = _key_block(j, it, q, p, acc, m_i, l_i, shared, qk_scale, k_len,
                                          diag, turns, WG, BASE, STAGES, False, False,
                                          s_layout, o_layout)  # fmt: skip
        if n_blocks > 1:
            p, acc, m_i, l_i = _key_block(n_blocks - 1, it, q, p, acc, m_i, l_i, shared,
                                          qk_scale, k_len, diag, turns, WG, BASE, STAGES, True,
                                          False, s_layout, o_layout)  # fmt: skip
    # Step 3: the last block's P V (outside the turns)
    last = it + n_blocks - 1
    slot = BASE + last % STAGES
    mbarrier.wait(v_bars.index(slot), (last // STAGES) & 1)
    p_op = gl.convert_layout(p.to(q.dtype), gl.DotOperandLayout(0, o_layout, 2))
    acc = warpgroup_mma(p_op, v_bufs.index(slot), acc, is_async=True)
    acc, p_op = warpgroup_mma_wait(0, deps=(acc, p_op))
    mbarrier.arrive(empty_bars.index(slot))
    # Step 4: normalise and store this warpgroup's rows (every row saw a key: l >= 1; causal:
    # a row that saw none has l = 0, O = 0 and m = -inf, so lse = -inf)
    l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
    if IS_CAUSAL:
        l_o = gl.where(l_o == 0.0, 1.0, l_o)
    out = acc * gl.expand_dims(post_scale / l_o, 1)
    rows = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, o_layout))
    cols = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    ptrs = (o_ptr + gl.expand_dims((q_row + rows) * stride_o_t, 1) + h * stride_o_h
            + gl.expand_dims(cols, 0))  # fmt: skip
    mask = gl.expand_dims(rows < q_len, 1) & gl.expand_dims(cols < HEAD_DIM, 0)
    gl.store(ptrs, out.to(o_ptr.dtype.element_ty), mask=mask)
    rows_s = gl.arange(0, WG_ROWS, layout=gl.SliceLayout(1, s_layout))
    lse = (m_i + gl.log2(l_i)) * LN2
    gl.store(lse_ptr + (q_row + rows_s) * stride_lse_t + h, lse, mask=rows_s < q_len)


@gluon.jit
def _empty_rows(params, q_row, q_len, h, FIRST: gl.constexpr, COUNT: gl.constexpr,
                HEAD_DIM: gl.constexpr):  # fmt: skip
    """Rows of a tile whose sequence has no keys: output 0, lse -inf, for the row blocks
    FIRST, ..., FIRST + COUNT - 1 of 64 rows."""
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
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
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
    m = tile % num_m
    bh = tile // num_m
    b = bh % batch
    h = bh // batch
    q_start, q_len = _extent(q_offsets_ptr, b, max_seqlen_q)
    k_start, k_len = _extent(k_offsets_ptr, b, max_seqlen_k)
    m_start = m * BLOCK_M
    return q_start + m_start, q_len - m_start, k_start, k_len, h


@gluon.jit
def _walk_tile(tile, params, BLOCK_M: gl.constexpr, OWN: gl.constexpr):
    """Tile ``tile`` of the walk: of the 64-row numbering (OWN, one consumer warpgroup, see
    :func:`_own_tile`) or query block fastest (:func:`_tile`)."""
    if OWN:
        return _own_tile(tile, params)
    else:
        return _tile(tile, params, BLOCK_M)


@gluon.jit
def _consumer(shared, params, WG: gl.constexpr, IS_CAUSAL: gl.constexpr, OWN: gl.constexpr):
    """Consumer warpgroup WG over this program's tiles (one, or a persistent program's
    share; OWN: a persistent walk of the 64-row numbering, one warpgroup). The tile sizes come
    from the buffers' shapes (constexpr arguments reach worker partitions as tensors in Triton
    3.6; a constexpr bool as such)."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    NUM_WG: gl.constexpr = q_smem.shape[0] // q_bars.shape[0]
    QBUF: gl.constexpr = q_bars.shape[0]
    STAGES: gl.constexpr = k_bufs.shape[0]
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
    it = 0  # key blocks through the ring so far
    t = 0  # tiles with keys so far (the query buffers' counter)
    for tile in range(pid, num_tiles, nprog):
        q_row, q_len, k_start, k_len, h = _walk_tile(tile, params, WG_ROWS * NUM_WG, OWN)
        diag = k_len - q_len + WG * WG_ROWS  # causal: the last key this warpgroup's row 0 sees
        k_len = _tile_keys(q_len, k_len, WG_ROWS * NUM_WG, IS_CAUSAL)
        if q_len > 0:
            if k_len == 0:
                _empty_rows(params, q_row, q_len, h, WG, 1, HEAD_DIM)
            else:
                qb = t % QBUF
                mbarrier.wait(q_bars.index(qb), (t // QBUF) & 1)
                q = q_smem.index(qb * NUM_WG + WG)
                _attend(shared, params, q, it, q_row + WG * WG_ROWS, q_len - WG * WG_ROWS,
                        k_len, diag, h, 2147483647, WG, 0, STAGES, IS_CAUSAL)  # fmt: skip
                mbarrier.arrive(q_empty.index(qb))
                it += gl.cdiv(k_len, BLOCK_N).to(gl.int32)
                t += 1


@gluon.jit
def _first_consumer(shared, params, IS_CAUSAL: gl.constexpr, OWN: gl.constexpr):
    """The default partition: the first consumer warpgroup (rows 0-63)."""
    _consumer(shared, params, 0, IS_CAUSAL, OWN)


@gluon.jit
def _second_consumer(shared, params, IS_CAUSAL: gl.constexpr, OWN: gl.constexpr):
    """A worker partition of 4 warps: the second consumer warpgroup (rows 64-127)."""
    _consumer(shared, params, 1, IS_CAUSAL, OWN)


@gluon.jit
def _third_consumer(shared, params, IS_CAUSAL: gl.constexpr, OWN: gl.constexpr):
    """A worker partition of 4 warps: the third consumer warpgroup (rows 128-191)."""
    _consumer(shared, params, 2, IS_CAUSAL, OWN)


@gluon.jit
def _loader(descs, shared, params, IS_CAUSAL: gl.constexpr, OWN: gl.constexpr):
    """The producer warp: per tile with keys, the query tile (into a free query buffer), then
    K and V tiles through the ring of slots (causal: the blocks of the tile's keys,
    :func:`_tile_keys`; OWN: the tiles as :func:`_consumer`'s)."""
    q_desc, k_desc, v_desc = descs
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    QBUF: gl.constexpr = q_bars.shape[0]
    NUM_WG: gl.constexpr = q_smem.shape[0] // QBUF
    STAGES: gl.constexpr = k_bufs.shape[0]
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    q_bytes: gl.constexpr = NUM_WG * q_desc.block_type.nbytes
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
    it = 0
    t = 0
    for tile in range(pid, num_tiles, nprog):
        q_row, q_len, k_start, k_len, h = _walk_tile(tile, params, WG_ROWS * NUM_WG, OWN)
        k_len = _tile_keys(q_len, k_len, WG_ROWS * NUM_WG, IS_CAUSAL)
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


# ------------------------------------------------------ warpgroups of their own tiles (OWN_TILES)
@gluon.jit
def _own_tile(tile, params):
    """Tile ``tile`` of the 64-row numbering (head fastest, then slot; slot ``q_offsets[b] // 64
    + b + g`` is the g-th 64-row block of sample b, ``tile_b_ptr`` maps slots to samples): (first
    row, rows left in the sequence (<= 0: a slot past its sample's blocks, or no tile), the
    sample's key start and length, head)."""
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
    slot = gl.minimum(tile, num_tiles - 1) // heads
    h = tile % heads
    b = gl.load(tile_b_ptr + slot)
    q_start, q_len = _extent(q_offsets_ptr, b, max_seqlen_q)
    k_start, k_len = _extent(k_offsets_ptr, b, max_seqlen_k)
    m_start = (slot - q_start // WG_ROWS - b) * WG_ROWS  # < 0 only before the first sample
    dead = (tile >= num_tiles) | (m_start < 0)
    return q_start + m_start, gl.where(dead, 0, q_len - m_start), k_start, k_len, h


@gluon.jit
def _own_stream(tile, params, BLOCK_N: gl.constexpr, IS_CAUSAL: gl.constexpr):
    """(first key row, head, key blocks) of tile ``tile``'s K/V stream; 0 blocks: nothing to
    load (no rows or no keys; causal: no key any row of it sees)."""
    q_row, q_len, k_start, k_len, h = _own_tile(tile, params)
    k_len = _tile_keys(q_len, k_len, WG_ROWS, IS_CAUSAL)
    return k_start, h, gl.where(q_len > 0, gl.cdiv(k_len, BLOCK_N), 0).to(gl.int32)


@gluon.jit
def _own_consumer(shared, params, WG: gl.constexpr, IS_CAUSAL: gl.constexpr):
    """Consumer warpgroup WG of a program whose NUM_WG warpgroups own a tile each (the
    program's NUM_WG consecutive tiles of the 64-row numbering, of any samples and heads): its
    own query buffer, its own K/V stream through its own STAGES slots of the rings; with
    ping-pong (two warpgroups) the two take turns for as many key blocks as the shorter of their
    tiles has, then run on alone."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    NUM_WG: gl.constexpr = q_bars.shape[0]
    STAGES: gl.constexpr = k_bufs.shape[0] // NUM_WG
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
    q_row, q_len, k_start, k_len, h = _own_tile(pid * NUM_WG + WG, params)
    diag = k_len - q_len  # causal: the last key row 0 sees
    k_len = _tile_keys(q_len, k_len, WG_ROWS, IS_CAUSAL)
    if q_len > 0:
        if k_len == 0:
            _empty_rows(params, q_row, q_len, h, 0, 1, HEAD_DIM)
        else:
            turns = 0
            if turn_bars.shape[0] == 2:  # ping-pong: as long as the other's tile has blocks
                k0, h0, n_other = _own_stream(pid * NUM_WG + 1 - WG, params, BLOCK_N,
                                              IS_CAUSAL)  # fmt: skip
                turns = gl.minimum(gl.cdiv(k_len, BLOCK_N).to(gl.int32), n_other)
            mbarrier.wait(q_bars.index(WG), 0)
            _attend(shared, params, q_smem.index(WG), 0, q_row, q_len, k_len, diag, h, turns,
                    WG, WG * STAGES, STAGES, IS_CAUSAL)  # fmt: skip


@gluon.jit
def _own_first(shared, params, IS_CAUSAL: gl.constexpr):
    """The default partition: the first warpgroup's tile."""
    _own_consumer(shared, params, 0, IS_CAUSAL)


@gluon.jit
def _own_second(shared, params, IS_CAUSAL: gl.constexpr):
    """A worker partition of 4 warps: the second warpgroup's tile."""
    _own_consumer(shared, params, 1, IS_CAUSAL)


@gluon.jit
def _own_third(shared, params, IS_CAUSAL: gl.constexpr):
    """A worker partition of 4 warps: the third warpgroup's tile."""
    _own_consumer(shared, params, 2, IS_CAUSAL)


@gluon.jit
def _own_query(q_desc, q_smem, q_bars, tile, params, W: gl.constexpr, IS_CAUSAL: gl.constexpr):
    """The query tile of warpgroup W (if it has rows and keys) into its buffer."""
    HEAD_DIM: gl.constexpr = q_smem.shape[2]
    q_row, q_len, k_start, k_len, h = _own_tile(tile, params)
    k_len = _tile_keys(q_len, k_len, WG_ROWS, IS_CAUSAL)
    if (q_len > 0) & (k_len > 0):
        mbarrier.expect(q_bars.index(W), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [q_row.to(gl.int32), (h * HEAD_DIM).to(gl.int32)],
                                        q_bars.index(W), q_smem.index(W))  # fmt: skip


@gluon.jit
def _feed(k_desc, v_desc, shared, r, k_start, h, n, W: gl.constexpr):
    """Key block r of warpgroup W's stream (if it has ``n`` > r blocks) into the stream's slot
    r % STAGES, once the warpgroup has handed back the block STAGES before it."""
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    STAGES: gl.constexpr = k_bufs.shape[0] // q_bars.shape[0]
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    HEAD_DIM: gl.constexpr = k_bufs.shape[2]
    if r < n:
        slot = W * STAGES + r % STAGES
        mbarrier.wait(empty_bars.index(slot), ((r // STAGES) & 1) ^ 1)
        row = (k_start + r * BLOCK_N).to(gl.int32)
        col = (h * HEAD_DIM).to(gl.int32)
        mbarrier.expect(k_bars.index(slot), k_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [row, col], k_bars.index(slot),
                                        k_bufs.index(slot))  # fmt: skip
        mbarrier.expect(v_bars.index(slot), v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(v_desc, [row, col], v_bars.index(slot),
                                        v_bufs.index(slot))  # fmt: skip


@gluon.jit
def _own_loader(descs, shared, params, IS_CAUSAL: gl.constexpr):
    """The producer warp of a program of own tiles: each warpgroup's query tile, then the
    streams' key blocks in rounds (block r of the first stream, of the second, ..., then block
    r + 1), the order in which ping-ponging warpgroups take their turns."""
    q_desc, k_desc, v_desc = descs
    q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty = shared
    NUM_WG: gl.constexpr = q_bars.shape[0]
    BLOCK_N: gl.constexpr = k_bufs.shape[1]
    o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale, q_offsets_ptr, \
        k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch, num_tiles, pid, nprog, \
        tile_b_ptr, heads = params  # fmt: skip
    first = pid * NUM_WG
    for w in gl.static_range(NUM_WG):
        _own_query(q_desc, q_smem, q_bars, first + w, params, w, IS_CAUSAL)
    k0, h0, n0 = _own_stream(first, params, BLOCK_N, IS_CAUSAL)
    k1, h1, n1 = _own_stream(first + 1, params, BLOCK_N, IS_CAUSAL)
    k2, h2, n2 = _own_stream(first + 2, params, BLOCK_N, IS_CAUSAL)
    rounds = n0
    if NUM_WG > 1:
        rounds = gl.maximum(rounds, n1)
    if NUM_WG > 2:
        rounds = gl.maximum(rounds, n2)
    for r in range(rounds):
        _feed(k_desc, v_desc, shared, r, k0, h0, n0, 0)
        if NUM_WG > 1:
            _feed(k_desc, v_desc, shared, r, k1, h1, n1, 1)
        if NUM_WG > 2:
            _feed(k_desc, v_desc, shared, r, k2, h2, n2, 2)


@gluon.jit(do_not_specialize=_NO_SPEC)
def _attn_fwd_gluon_kernel(
    q_desc, k_desc, v_desc, o_ptr, lse_ptr, q_offsets_ptr, k_offsets_ptr, tile_b_ptr,
    stride_o_t, stride_o_h, stride_lse_t, max_seqlen_q, max_seqlen_k, batch, heads,
    qk_scale, post_scale,
    HEAD_DIM: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, NUM_WG: gl.constexpr,
    PINGPONG: gl.constexpr, PERSISTENT: gl.constexpr, OWN_TILES: gl.constexpr,
    IS_CAUSAL: gl.constexpr, CONSUMER_REGS: gl.constexpr,
):  # fmt: skip
    gl.static_assert(not (OWN_TILES and PERSISTENT) or NUM_WG == 1,
                     "own tiles, persistent: one consumer warpgroup")  # fmt: skip
    BLOCK_M: gl.constexpr = WG_ROWS * NUM_WG
    pid = gl.program_id(0)
    nprog = gl.num_programs(0)
    num_m = gl.cdiv(max_seqlen_q, BLOCK_M)
    num_tiles = num_m * batch * heads
    if OWN_TILES:  # the 64-row numbering (see _own_tile, _tile_samples): NUM_WG tiles a program
        num_tiles = _num_slots(q_offsets_ptr, batch) * heads
    params = (o_ptr, lse_ptr, stride_o_t, stride_o_h, stride_lse_t, qk_scale, post_scale,
              q_offsets_ptr, k_offsets_ptr, max_seqlen_q, max_seqlen_k, num_m, batch,
              num_tiles, pid, nprog, tile_b_ptr, heads)  # fmt: skip
    # Step 1: one tile (group) a program: an exit before any setup when it has no rows
    if OWN_TILES and not PERSISTENT:
        idle = True
        for w in gl.static_range(NUM_WG):
            q_row, q_len, k_start, k_len, h = _own_tile(pid * NUM_WG + w, params)
            idle = idle & (q_len <= 0)
        if idle:
            return
    elif not PERSISTENT:
        q_row, q_len, k_start, k_len, h = _tile(pid, params, BLOCK_M)
        if q_len <= 0:  # past the sequence's end
            return
        if _tile_keys(q_len, k_len, BLOCK_M, IS_CAUSAL) == 0:  # (causal: no row sees a key)
            _empty_rows(params, q_row, q_len, h, 0, NUM_WG, HEAD_DIM)
            return
    # Step 2: shared memory (query tiles, K/V ring) and its barriers
    # (own tiles: a query buffer, a query barrier and STAGES ring slots a warpgroup; q_empty
    # unused)
    QBUF: gl.constexpr = 2 if PERSISTENT else 1  # a persistent loader fetches the next Q early
    QBARS: gl.constexpr = NUM_WG if OWN_TILES and not PERSISTENT else QBUF
    # the ring's slots (own tiles: a ring of STAGES slots a warpgroup, warpgroup w's from w x
    # STAGES on)
    SLOTS: gl.constexpr = NUM_WG * STAGES if OWN_TILES else STAGES
    dtype: gl.constexpr = q_desc.dtype
    q_smem = gl.allocate_shared_memory(dtype, [QBUF * NUM_WG, WG_ROWS, HEAD_DIM], q_desc.layout)
    k_bufs = gl.allocate_shared_memory(dtype, [SLOTS, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_bufs = gl.allocate_shared_memory(dtype, [SLOTS, BLOCK_N, HEAD_DIM], v_desc.layout)
    q_bars = gl.allocate_shared_memory(gl.int64, [QBARS, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [QBUF, 1], mbarrier.MBarrierLayout())
    k_bars = gl.allocate_shared_memory(gl.int64, [SLOTS, 1], mbarrier.MBarrierLayout())
    v_bars = gl.allocate_shared_memory(gl.int64, [SLOTS, 1], mbarrier.MBarrierLayout())
    empty_bars = gl.allocate_shared_memory(gl.int64, [SLOTS, 1], mbarrier.MBarrierLayout())
    # the ping-pong's barriers (see _turn): [2, 1], or a placeholder [1, 1] without ping-pong
    TURNS: gl.constexpr = 2 if PINGPONG and NUM_WG == 2 else 1
    turn_bars = gl.allocate_shared_memory(gl.int64, [TURNS, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(QBARS):
        mbarrier.init(q_bars.index(i), count=1)
    for i in gl.static_range(QBUF):
        mbarrier.init(q_empty.index(i), count=NUM_WG)  # each consumer arrives once a tile
    for i in gl.static_range(SLOTS):
        mbarrier.init(k_bars.index(i), count=1)
        mbarrier.init(v_bars.index(i), count=1)
        # each consumer arrives once a block (own tiles: the slot's ring's one warpgroup)
        mbarrier.init(empty_bars.index(i), count=1 if OWN_TILES else NUM_WG)
    for i in gl.static_range(TURNS):
        mbarrier.init(turn_bars.index(i), count=1)
    # Step 3: the partitions, each walking the same tiles
    shared = (q_smem, k_bufs, v_bufs, k_bars, v_bars, empty_bars, turn_bars, q_bars, q_empty)
    descs = (q_desc, k_desc, v_desc)
    # (IS_CAUSAL in the partitions' argument tuples as written: a tuple assigned to a name would
    # turn the constexpr into a tensor)
    # the worker partitions' registers a thread (the default partition gets what maxnreg leaves)
    # (OWN: the persistent walk of the 64-row numbering, one warpgroup: the partitions of
    # query-block tiles, the tile numbering of own tiles)
    OWN: gl.constexpr = OWN_TILES and PERSISTENT
    if OWN_TILES and not PERSISTENT and NUM_WG == 3:
        gl.warp_specialize(
            [
                (_own_first, (shared, params, IS_CAUSAL)),
                (_own_second, (shared, params, IS_CAUSAL)),
                (_own_third, (shared, params, IS_CAUSAL)),
                (_own_loader, (descs, shared, params, IS_CAUSAL)),
            ],
            [4, 4, 1],
            [CONSUMER_REGS, CONSUMER_REGS, 24],
        )
    elif OWN_TILES and not PERSISTENT and NUM_WG == 2:
        gl.warp_specialize(
            [
                (_own_first, (shared, params, IS_CAUSAL)),
                (_own_second, (shared, params, IS_CAUSAL)),
                (_own_loader, (descs, shared, params, IS_CAUSAL)),
            ],
            [4, 1],
            [CONSUMER_REGS, 24],
        )
    elif OWN_TILES and not PERSISTENT:
        gl.warp_specialize(
            [
                (_own_first, (shared, params, IS_CAUSAL)),
                (_own_loader, (descs, shared, params, IS_CAUSAL)),
            ],
            [1],
            [24],
        )
    elif NUM_WG == 3:
        gl.warp_specialize(
            [
                (_first_consumer, (shared, params, IS_CAUSAL, OWN)),
                (_second_consumer, (shared, params, IS_CAUSAL, OWN)),
                (_third_consumer, (shared, params, IS_CAUSAL, OWN)),
                (_loader, (descs, shared, params, IS_CAUSAL, OWN)),
            ],
            [4, 4, 1],
            [CONSUMER_REGS, CONSUMER_REGS, 24],
        )
    elif NUM_WG == 2:
        gl.warp_specialize(
            [
                (_first_consumer, (shared, params, IS_CAUSAL, OWN)),
                (_second_consumer, (shared, params, IS_CAUSAL, OWN)),
                (_loader, (descs, shared, params, IS_CAUSAL, OWN)),
            ],
            [4, 1],
            [CONSUMER_REGS, 24],
        )
    else:
        gl.warp_specialize(
            [
                (_first_consumer, (shared, params, IS_CAUSAL, OWN)),
                (_loader, (descs, shared, params, IS_CAUSAL, OWN)),
            ],
            [1],
            [24],
        )


# ------------------------------------------------------------------ launcher
@triton.jit(do_not_specialize=["batch"])
def _tile_samples_kernel(offsets_ptr, table_ptr, batch, PER: tl.constexpr):
    """Slots ``[offsets[b] // 64 + b, offsets[b + 1] // 64 + b + 1)`` of the 64-row tile
    numbering hold sample b = ``program_id(0)`` (the first sample's from 0, the last one's up to
    the table's end, ``offsets[batch] // 64 + batch``): every slot written once, no cumulative
    sum."""
    b = tl.program_id(0)
    lo = tl.load(offsets_ptr + b).to(tl.int64) // 64 + b
    hi = tl.load(offsets_ptr + b + 1).to(tl.int64) // 64 + b + 1
    lo = tl.where(b == 0, 0, lo)
    hi = tl.where(b == batch - 1, tl.load(offsets_ptr + batch).to(tl.int64) // 64 + batch, hi)
    for start in range(lo, hi, PER):
        slots = start + tl.arange(0, PER)
        tl.store(table_ptr + slots, b, mask=slots < hi)


_TILE_SAMPLES = FastLauncher(_tile_samples_kernel)
_PER = {"PER": 32}  # the slots a tile-numbering program writes at once
_FWD = FastLauncher(_attn_fwd_gluon_kernel)  # the descriptors' tiles and layouts: in its signature
_PLANS = plan_cache()  # settings -> _Plan (see _attn_fwd_gluon)


def _tile_samples(q_offsets: torch.Tensor, total: int, bound: Bound | None = None) -> torch.Tensor:
    """The sample of each slot of the 64-row tile numbering (int32, ``total // 64 + B`` slots;
    see :func:`_own_tile`): sample b's g-th block of 64 query rows is slot ``q_offsets[b] // 64
    + b + g``. The slots of consecutive samples never overlap (a sample of L rows gets
    ``L // 64 + 1`` or ``+ 2`` of them, at most two of them idle). One
    launch, no host sync; through ``bound`` (a :class:`_Plan`'s) where given."""
    batch = q_offsets.numel() - 1
    table = torch.empty(total // _ROWS + batch, dtype=torch.int32, device=q_offsets.device)
    if bound is not None:
        bound(q_offsets, table)
    else:
        _TILE_SAMPLES(lambda meta: (batch,), (q_offsets, table, batch), _PER)
    return table


def consumer_regs(num_wg: int, maxnreg: int) -> int:
    """Registers a thread of each consumer warpgroup: the kernel's ``maxnreg`` x (NUM_WG + 1)
    warpgroups, less the loader's warpgroup at 24, shared out (a multiple of 8, at most 256)."""
    return min(256, (maxnreg * (num_wg + 1) - 24) // num_wg // 8 * 8)


def per_sm(num_wg: int, maxnreg: int) -> int:
    """Programs an SM holds by their registers: ``maxnreg`` x (NUM_WG + 1) warpgroups of 128
    threads out of 65,536 (the shared memory of the configurations that run several, at most
    97 KiB a program, fits as many; where it did not, the programs past it would start only as
    the first ones end: correct, slower)."""
    return max(1, 65536 // (maxnreg * 128 * (num_wg + 1)))


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


_GL_DTYPES = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16, torch.float32: gl.float32}


@functools.cache
def shared_layout(rows: int, cols: int, dtype: torch.dtype) -> gl.NVMMASharedLayout:
    """The shared-memory layout of a ``rows`` x ``cols`` tile (Gluon's default for it; computed
    once: 5 us a call on the CPU machine, and a launch needs three to five)."""
    return gl.NVMMASharedLayout.get_default_for([rows, cols], _GL_DTYPES[dtype])


_CHECKED: dict[tuple, dict] = {}  # (dtype, columns, row stride, tile) -> a checked one's fields


def _desc(t: torch.Tensor, rows: int) -> TensorDescriptor:
    """Descriptor over ``t`` as 2-D ``(T, H*D)`` with tiles of ``rows`` x D (one head)."""
    total, heads, d = t.shape
    return _checked_desc(t, [total, heads * d], t.stride(0), rows, d)


def _checked_desc(t: torch.Tensor, shape: list, row_stride: int, rows: int, cols: int):  # noqa: ANN202
    """Descriptor over ``t`` as the 2-D ``shape`` (rows ``row_stride`` elements apart) with
    tiles of ``rows`` x ``cols``.

    ``TensorDescriptor``'s own checks (alignment, strides, tile, layout) cost microseconds a
    descriptor on the host; they run once for each (dtype, columns, row stride, tile), after
    which a descriptor is that checked one's fields with this tensor, its rows and its address
    (aligned and with rows: :func:`gluon_ok`, the launchers' empty-input exits and fresh
    allocations)."""
    key = (t.dtype, shape[1], row_stride, rows, cols)
    fields = _CHECKED.get(key)
    if fields is None:
        rows = int(getattr(rows, "value", rows))
        layout = shared_layout(rows, cols, t.dtype)
        checked = TensorDescriptor(t, shape, [row_stride, 1], [rows, cols], layout)
        fields = _CHECKED[key] = dict(vars(checked))
        return checked
    desc = object.__new__(TensorDescriptor)
    vars(desc).update(fields)
    desc.base = t
    desc.shape = shape
    return desc


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
    config: tuple[int, int, int, bool, bool, bool, int] | None = None,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward of jagged attention through the Gluon kernel (inputs as ``_attn_fwd``'s;
    check :func:`gluon_ok` first). ``zero_init``: rows the kernel does not write (past
    ``max_seqlen_q``) hold 0 and lse -inf. ``config``: (BLOCK_N, STAGES, NUM_WG, PINGPONG,
    PERSISTENT, OWN_TILES, maxnreg), default ``CONFIGS[D]``. ``causal``: key j visible from
    query i iff ``j <= i + Lk - Lq`` (bottom-right aligned, as the Triton forward).

    Settings seen before (everything but the tensors, their row count and addresses) take
    their :class:`_Plan`: its launches bound (:meth:`FastLauncher.bind`)."""
    config = config or CONFIGS[q.shape[-1]]
    key = (q.device, q.dtype, q.shape[1:], q.stride(), k.stride(), v.stride(), q_offsets.dtype,
           k_offsets.dtype, q_offsets.numel(), max_seqlen_q, max_seqlen_k, scale, post_scale,
           zero_init, config, causal)  # fmt: skip
    plan = _PLANS.get(key)
    if plan is not None and q.shape[0] and k.shape[0]:
        return plan(q, k, v, q_offsets, k_offsets)
    total, heads, d = q.shape
    batch = q_offsets.numel() - 1
    out, lse = _fwd_outputs(q, max_seqlen_q, zero_init)
    if batch == 0 or total == 0 or max_seqlen_q == 0:
        return out, lse
    block_n, stages, num_wg, pingpong, persistent, own_tiles, maxnreg = config
    if k.shape[0] == 0:  # no keys anywhere: a descriptor needs a non-empty tensor
        if dry_run():  # inside launch.collecting: nothing launched, outputs unwritten
            return out, lse
        return out.zero_(), lse.fill_(float("-inf"))
    if own_tiles and persistent and num_wg != 1:
        raise ValueError(f"OWN_TILES persistent: one consumer warpgroup, got {num_wg}")
    plan = _Plan(q, out, k_offsets, max_seqlen_q, max_seqlen_k, scale, post_scale, zero_init,
                 config, causal)  # fmt: skip
    # (inside launch.collecting the launches record their compiles and launch nothing)
    plan.launch(q, k, v, out, lse, q_offsets, k_offsets)
    if not dry_run():
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return out, lse


class _Plan:
    """The Gluon forward's launches for one set of settings (:func:`_attn_fwd_gluon`'s key),
    bound once: a call then makes its outputs (and, for own tiles, the tile table), three
    descriptors, and passes them with its tensors' addresses to the bound launches (the tile
    count, and so the grid, follows each call's row count)."""

    def __init__(self, q: torch.Tensor, out: torch.Tensor, k_offsets: torch.Tensor,
                 max_seqlen_q: int, max_seqlen_k: int, scale: float, post_scale: float,
                 zero_init: bool, config: tuple, causal: bool) -> None:  # fmt: skip
        total, heads, d = q.shape
        batch = k_offsets.numel() - 1
        block_n, stages, num_wg, pingpong, persistent, own_tiles, maxnreg = config
        self.heads, self.batch, self.num_wg, self.block_n = heads, batch, num_wg, block_n
        self.own, self.max_seqlen_q, self.zero_init = own_tiles, max_seqlen_q, zero_init
        # persistent: as many programs as fit on the GPU at once (the registers' count)
        self.cap = _sm_count(q.device.index or 0) * per_sm(num_wg, maxnreg) if persistent else 0
        self.dummy = _dummy(q.device, torch.int32)
        # the fixed arguments (out's layout follows q's strides, in the key; lse is (T, H))
        self.fixed = (out.stride(0), out.stride(1), heads, max_seqlen_q, max_seqlen_k, batch,
                      heads, scale * LOG2E, post_scale)  # fmt: skip
        self.constexprs = _constexprs(d, config, causal)
        self.tiles = self.main = None

    def grid(self, total: int) -> int:
        """Programs of a call with ``total`` query rows."""
        if self.own:  # 64-row tiles of the slot numbering, num_wg consecutive ones a program
            tiles = cdiv((total // _ROWS + self.batch) * self.heads, self.num_wg)
        else:
            tiles = cdiv(self.max_seqlen_q, _ROWS * self.num_wg) * self.batch * self.heads
        return min(tiles, self.cap) if self.cap else tiles

    def launch(self, q, k, v, out, lse, q_offsets, k_offsets) -> None:  # noqa: ANN001
        """The launches of one call into ``out`` and ``lse``; binds them the first time (a bound
        launch's first call takes the launcher's own path)."""
        total = q.shape[0]
        table = self.dummy
        if self.own:
            if self.tiles is None:
                grid = lambda meta, b=self.batch: (b,)  # noqa: E731
                self.tiles = _TILE_SAMPLES.bind(grid, (q_offsets, None, self.batch), _PER, 2)
            table = _tile_samples(q_offsets, total, self.tiles)
        lead = (_desc(q, _ROWS), _desc(k, self.block_n), _desc(v, self.block_n), out, lse,
                q_offsets, k_offsets, table)  # fmt: skip
        gx = self.grid(total)
        if self.main is None:
            args = (*lead, *self.fixed)
            self.main = _FWD.bind(lambda meta: (gx,), args, self.constexprs, len(lead), 3)
        self.main.run(gx, *lead)

    def __call__(self, q, k, v, q_offsets, k_offsets) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        out, lse = _fwd_outputs(q, self.max_seqlen_q, self.zero_init)
        self.launch(q, k, v, out, lse, q_offsets, k_offsets)
        return out, lse


@functools.cache
def _constexprs(d: int, config: tuple, causal: bool) -> dict:
    """The forward kernel's constexprs and launch options for a configuration (built once: a
    launch reads them, never changes them)."""
    block_n, stages, num_wg, pingpong, persistent, own_tiles, maxnreg = config
    regs = consumer_regs(num_wg, maxnreg)
    return dict(HEAD_DIM=d, BLOCK_N=block_n, STAGES=stages, NUM_WG=num_wg, PINGPONG=pingpong,
                PERSISTENT=persistent, OWN_TILES=own_tiles, IS_CAUSAL=causal,
                CONSUMER_REGS=regs, num_warps=4, maxnreg=maxnreg)  # fmt: skip
