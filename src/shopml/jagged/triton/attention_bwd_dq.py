"""Per-query-block backward kernels: dQ of the two-pass backward, and delta of the one-pass one.

See attention_bwd.py for how they combine with the key-block kernel.
"""

from __future__ import annotations

import triton
import triton.language as tl

from shopml.jagged.triton.attention_common import (
    _NO_SPEC,
    _NO_SPEC_DELTA,
    BIAS_RELATIVE_K,
    BIAS_TENSOR_K,
    LOG2E_K,
    _add_table_grad,
    _below,
    _edges,
    _extent,
    _key_block_bias,
    _load_bias,
    _loop_operands,
    _rel32,
    _sample_index,
    _span,
)
from shopml.jagged.triton.launch import FastLauncher


@triton.jit
def _attn_bwd_dq_inner(
    dq, dtab, q, do, lse, delta, k_ptr, v_ptr, k_desc, v_desc, k_start, k_len, h, stride_k_t, stride_k_h, stride_v_t,
    stride_v_h, offs_m, mask_m, offs_d, mask_d, shift, lo, hi, qk_scale, bias_ptr, bias_start,
    stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds, tq, tk_ptr, tk_lo_ptr,
    tk_hi_ptr, b, IS_CAUSAL: tl.constexpr, BIAS_MODE: tl.constexpr, HAS_TK: tl.constexpr,
    CONSECUTIVE: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr, NB_PAD: tl.constexpr,
    PRECISION: tl.constexpr, TMA: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Key blocks [lo, hi) for one query block. MASKED=False: every key valid and visible.
    TMA: K and V tiles through the descriptors ``k_desc``, ``v_desc`` (zeros past the end)."""
    below = _below(bounds_ptr, num_bounds, CONSECUTIVE)  # the bias's first boundary - 1
    first, last, v_first, v_last = _edges(table_ptr, stride_table_b, h, bounds_ptr, num_bounds,
                                          BIAS_MODE)  # fmt: skip
    q_lo, q_hi = _span(tq, mask_m)  # the query block's times (for tiles of one bucket)
    rel_q = _rel32(tq, q_lo)  # the query side of the int32 buckets
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < k_len
        kt_ptrs = (
            k_ptr + (k_start + offs_n)[None, :] * stride_k_t + h * stride_k_h + offs_d[:, None]
        )
        vt_ptrs = (
            v_ptr + (k_start + offs_n)[None, :] * stride_v_t + h * stride_v_h + offs_d[:, None]
        )
        if TMA:
            kt = k_desc.load([tl.cast(start_n, tl.int32), 0]).T
            vt = v_desc.load([tl.cast(start_n, tl.int32), 0]).T
        elif MASKED:
            kt = tl.load(kt_ptrs, mask=mask_d[:, None] & mask_n[None, :], other=0.0)
            vt = tl.load(vt_ptrs, mask=mask_d[:, None] & mask_n[None, :], other=0.0)
        elif EVEN_D:
            kt = tl.load(kt_ptrs)
            vt = tl.load(vt_ptrs)
        else:
            kt = tl.load(kt_ptrs, mask=mask_d[:, None], other=0.0)
            vt = tl.load(vt_ptrs, mask=mask_d[:, None], other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        if BIAS_MODE == BIAS_TENSOR_K:
            bias = _load_bias(bias_ptr, bias_start, offs_m, offs_n, k_len,
                              mask_m[:, None] & mask_n[None, :], stride_bias_t, h)  # fmt: skip
            s += bias * LOG2E_K
        shared = -1
        tk = offs_n
        rel_k = offs_n
        if BIAS_MODE == BIAS_RELATIVE_K:  # table[bucket(t_q - t_k), h]
            # looked up in the mixed arm: the selects measured 9% slower here on an H200
            # (Triton 3.6, benchmarks/README.md), and spill with the general way's compares
            s, tk, shared, rel_k = _key_block_bias(s, tq, q_lo, q_hi, rel_q, tk_ptr, tk_lo_ptr,
                                                   tk_hi_ptr, b, k_start, k_len, start_n, offs_n,
                                                   mask_n, first, last, v_first, v_last, below,
                                                   table_ptr, stride_table_b, h, bounds_ptr,
                                                   num_bounds, HAS_TK, CONSECUTIVE, NB_PAD, True,
                                                   BLOCK_N)  # fmt: skip
        p = tl.math.exp2(s - lse[:, None])  # rows past the end have lse = +inf: p = 0
        if MASKED:
            visible = mask_n[None, :]
            if IS_CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None] + shift)
            p = tl.where(visible, p, 0.0)
        dp = tl.dot(do, vt, input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(kt.dtype), tl.trans(kt), dq, input_precision=PRECISION)
        if BIAS_MODE == BIAS_RELATIVE_K:  # the table gradient: per-bucket sums of dS
            seen = mask_m[:, None]  # (dS is 0 where not visible)
            if MASKED:
                seen = seen & visible
            dtab = _add_table_grad(dtab, ds, tq[:, None], tk[None, :], shared, rel_q[:, None],
                                   rel_k[None, :], seen, below, bounds_ptr, num_bounds,
                                   CONSECUTIVE, NB_PAD)  # fmt: skip
    return dq, dtab


@triton.jit(do_not_specialize=_NO_SPEC)
def _attn_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, q_offsets_ptr, k_offsets_ptr,
    order_ptr, bias_ptr, bias_offsets_ptr, table_ptr, bounds_ptr, tq_ptr, tk_ptr, tk_lo_ptr,
    tk_hi_ptr, dtable_ptr,
    stride_q_t, stride_q_h, stride_k_t, stride_k_h, stride_v_t, stride_v_h,
    stride_o_t, stride_o_h, stride_do_t, stride_do_h, stride_lse_t, stride_dq_t, stride_dq_h,
    stride_bias_t, stride_table_b, max_seqlen_q, max_seqlen_k, num_bounds, qk_scale, scale,
    seqlen_q_bucket, seqlen_k_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BIAS_MODE: tl.constexpr, HAS_TQ: tl.constexpr, HAS_TK: tl.constexpr,
    CONSECUTIVE: tl.constexpr, USE_ORDER: tl.constexpr, NB_PAD: tl.constexpr,
    PRECISION: tl.constexpr, TMA: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1)
    b = _sample_index(order_ptr, USE_ORDER)
    h = tl.program_id(2).to(tl.int64)
    q_start, q_len = _extent(q_offsets_ptr, b, max_seqlen_q)
    m_start = pid_m * BLOCK_M
    if m_start >= q_len:
        return
    k_start, k_len = _extent(k_offsets_ptr, b, max_seqlen_k)
    shift = k_len - q_len

    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < q_len
    mask_d = offs_d < HEAD_DIM
    mask_md = mask_m[:, None] & mask_d[None, :]
    # Step 1: query-side tiles in registers
    # the key loop's tiles through the copy engine on the Hopper path
    k_desc, v_desc = _loop_operands(k_ptr, v_ptr, k_start, k_len, h, stride_k_t, stride_k_h,
                                    stride_v_t, stride_v_h, HEAD_DIM, BLOCK_N, BLOCK_D, TMA)  # fmt: skip
    q = tl.load(
        q_ptr + (q_start + offs_m)[:, None] * stride_q_t + h * stride_q_h + offs_d[None, :],
        mask=mask_md,
        other=0.0,
    )
    do = tl.load(
        do_ptr + (q_start + offs_m)[:, None] * stride_do_t + h * stride_do_h + offs_d[None, :],
        mask=mask_md,
        other=0.0,
    )
    lse = tl.load(lse_ptr + (q_start + offs_m) * stride_lse_t + h, mask=mask_m, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * LOG2E_K
    # delta = rowsum(dO * O) for this block's rows, written for the dK/dV kernel launched next
    # (every row of every sequence belongs to exactly one query block, so all are written)
    o = tl.load(
        o_ptr + (q_start + offs_m)[:, None] * stride_o_t + h * stride_o_h + offs_d[None, :],
        mask=mask_md,
        other=0.0,
    )
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(delta_ptr + (q_start + offs_m) * stride_lse_t + h, delta, mask=mask_m)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    dtab = tl.zeros([BLOCK_M, NB_PAD], dtype=tl.float32)  # table gradient, per query row
    bias_start = 0
    tq = offs_m
    if BIAS_MODE == BIAS_TENSOR_K:
        bias_start = tl.load(bias_offsets_ptr + b)
    if BIAS_MODE == BIAS_RELATIVE_K:
        if HAS_TQ:
            tq = tl.load(tq_ptr + q_start + offs_m, mask=mask_m, other=0)
        else:
            tq = offs_m + shift
    # Step 2: mask-free interior key blocks [0, full), then masked blocks [full, hi)
    hi = k_len
    full = (k_len // BLOCK_N) * BLOCK_N
    if IS_CAUSAL:
        hi = tl.maximum(tl.minimum(k_len, m_start + BLOCK_M + shift), 0)
        full = tl.minimum(full, tl.maximum((m_start + shift + 1) // BLOCK_N, 0) * BLOCK_N)
    dq, dtab = _attn_bwd_dq_inner(
        dq, dtab, q, do, lse, delta, k_ptr, v_ptr, k_desc, v_desc, k_start, k_len, h, stride_k_t, stride_k_h,
        stride_v_t, stride_v_h, offs_m, mask_m, offs_d, mask_d, shift, 0, full, qk_scale,
        bias_ptr, bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
        tq, tk_ptr, tk_lo_ptr, tk_hi_ptr, b, IS_CAUSAL, BIAS_MODE, HAS_TK, CONSECUTIVE, False, HEAD_DIM == BLOCK_D, NB_PAD,
        PRECISION,
        TMA, BLOCK_M, BLOCK_N,
    )  # fmt: skip
    dq, dtab = _attn_bwd_dq_inner(
        dq, dtab, q, do, lse, delta, k_ptr, v_ptr, k_desc, v_desc, k_start, k_len, h, stride_k_t, stride_k_h,
        stride_v_t, stride_v_h, offs_m, mask_m, offs_d, mask_d, shift, full, hi, qk_scale,
        bias_ptr, bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
        tq, tk_ptr, tk_lo_ptr, tk_hi_ptr, b, IS_CAUSAL, BIAS_MODE, HAS_TK, CONSECUTIVE, True, HEAD_DIM == BLOCK_D, NB_PAD,
        PRECISION,
        TMA, BLOCK_M, BLOCK_N,
    )  # fmt: skip
    tl.store(
        dq_ptr + (q_start + offs_m)[:, None] * stride_dq_t + h * stride_dq_h + offs_d[None, :],
        (dq * scale).to(dq_ptr.dtype.element_ty),
        mask=mask_md,
    )
    if BIAS_MODE == BIAS_RELATIVE_K:  # table partials per program, summed by the launcher
        slot = (pid_m * tl.num_programs(1) + pid_b).to(tl.int64) * tl.num_programs(2) + h
        tl.store(dtable_ptr + slot * NB_PAD + tl.arange(0, NB_PAD), tl.sum(dtab, 0))


@triton.jit(do_not_specialize=_NO_SPEC_DELTA)
def _attn_bwd_delta_kernel(
    o_ptr, do_ptr, delta_ptr, dq_ptr, total, stride_o_t, stride_o_h, stride_do_t, stride_do_h,
    stride_delta_t, stride_dq_t, stride_dq_h,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
):  # fmt: skip
    """delta = rowsum(dO * O) for BLOCK_T tokens of one head; zeroes their fp32 dQ rows."""
    offs_t = (tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_t < total)[:, None] & (offs_d < HEAD_DIM)[None, :]
    o = tl.load(
        o_ptr + offs_t[:, None] * stride_o_t + h * stride_o_h + offs_d[None, :],
        mask=mask,
        other=0.0,
    )
    do = tl.load(
        do_ptr + offs_t[:, None] * stride_do_t + h * stride_do_h + offs_d[None, :],
        mask=mask,
        other=0.0,
    )
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(delta_ptr + offs_t * stride_delta_t + h, delta, mask=offs_t < total)
    tl.store(
        dq_ptr + offs_t[:, None] * stride_dq_t + h * stride_dq_h + offs_d[None, :],
        tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32),
        mask=mask,
    )


# delta and the zeroed fp32 dQ of the backwards with atomic dQ (the one-pass Triton, the Gluon)
_DELTA = FastLauncher(_attn_bwd_delta_kernel)
