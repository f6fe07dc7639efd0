"""Backward kernels of jagged flash attention and their launcher.

Two ways, chosen per call by :func:`_bwd_variant`:

- one pass (``SHOPML_ATTN_BWD=fused``; measured slower on an H200, so not the default):
  ``_attn_bwd_delta_kernel`` writes ``delta = rowsum(dO * O)`` and zeroes a float32 dQ
  accumulator; ``_attn_bwd_dkdv_kernel`` with ``FUSED_DQ`` then owns one key block, loops over
  the query blocks that see it, and computes ``QK^T`` and ``dP`` once per block pair: dK and dV
  in registers, ``dS K`` added into the dQ accumulator (``tl.atomic_add``, so dQ's summation
  order, and its last bits, vary between runs); a cast gives dQ in the input dtype.
- two passes, no atomics (the default; ``SHOPML_ATTN_BWD=split``): ``_attn_bwd_dq_kernel`` owns one query block (and writes delta), then
  ``_attn_bwd_dkdv_kernel`` owns one key block; ``QK^T`` and ``dP`` are computed in both.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.triton._common import cdiv, pow2
from shopml.jagged.triton.attention_bwd_dq import _DELTA, _attn_bwd_dq_kernel
from shopml.jagged.triton.attention_common import (
    _INTERPRET,
    _NO_SPEC,
    _POINTER,
    BIAS_NONE,
    BIAS_RELATIVE,
    BIAS_RELATIVE_K,
    BIAS_TENSOR,
    BIAS_TENSOR_K,
    LOG2E,
    LOG2E_K,
    MAX_PLANS,
    _add_relative_bias,
    _add_table_grad,
    _below,
    _block_span,
    _dummies,
    _edges,
    _ensure_allocator,
    _extent,
    _gluon,
    _gluon_mode,
    _load_bias,
    _loop_operands,
    _order,
    _precision,
    _rel32,
    _sample_index,
    _span,
    _tile_bucket,
    _time_spans,
    _tma_ok,
    _tuner,
    _use_order,
    env_setting,
    plan_cache,
)
from shopml.jagged.triton.launch import FastLauncher


@triton.jit
def _attn_bwd_dkdv_inner(
    dk, dv, dtab, k, v, q_ptr, do_ptr, q_desc, do_desc, lse_ptr, delta_ptr, dbias_ptr, dq_ptr, q_start, q_len,
    k_len, h, stride_q_t, stride_q_h, stride_do_t, stride_do_h, stride_lse_t, stride_dq_t,
    stride_dq_h, offs_n, mask_n, offs_d, mask_d, shift, lo, hi, qk_scale, scale, bias_ptr,
    bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
    tq_ptr, tq_lo_ptr, tq_hi_ptr, b, tk, tk_ptr, k_start,
    IS_CAUSAL: tl.constexpr, BIAS_MODE: tl.constexpr, HAS_TQ: tl.constexpr, HAS_TK: tl.constexpr,
    CONSECUTIVE: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr, NB_PAD: tl.constexpr,
    PRECISION: tl.constexpr,
    FUSED_DQ: tl.constexpr, TMA: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Query blocks [lo, hi) seen by one key block. MASKED=False: all queries/keys valid, visible.
    TMA: Q and dO tiles through the descriptors ``q_desc``, ``do_desc`` (zeros past the end)."""
    below = _below(bounds_ptr, num_bounds, CONSECUTIVE)  # the bias's first boundary - 1
    first, last, v_first, v_last = _edges(table_ptr, stride_table_b, h, bounds_ptr, num_bounds,
                                          BIAS_MODE)  # fmt: skip
    k_lo, k_hi = _span(tk, mask_n)  # the key block's times (for tiles of one bucket)
    rel_k = _rel32(k_hi, tk)  # the key side of the int32 buckets
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < q_len
        qt_ptrs = (
            q_ptr + (q_start + offs_m)[None, :] * stride_q_t + h * stride_q_h + offs_d[:, None]
        )
        do_ptrs = (
            do_ptr + (q_start + offs_m)[:, None] * stride_do_t + h * stride_do_h + offs_d[None, :]
        )
        if TMA:
            qt = q_desc.load([tl.cast(start_m, tl.int32), 0]).T  # (D, BM), zeros past the end
        elif MASKED:
            qt = tl.load(qt_ptrs, mask=mask_m[None, :] & mask_d[:, None], other=0.0)  # (D, BM)
        elif EVEN_D:
            qt = tl.load(qt_ptrs)
        else:
            qt = tl.load(qt_ptrs, mask=mask_d[:, None], other=0.0)
        if MASKED:
            lse = tl.load(
                lse_ptr + (q_start + offs_m) * stride_lse_t + h, mask=mask_m, other=float("inf")
            )
            delta = tl.load(
                delta_ptr + (q_start + offs_m) * stride_lse_t + h, mask=mask_m, other=0.0
            )
        else:
            lse = tl.load(lse_ptr + (q_start + offs_m) * stride_lse_t + h)
            delta = tl.load(delta_ptr + (q_start + offs_m) * stride_lse_t + h)
        lse = tl.where(lse == float("-inf"), float("inf"), lse) * LOG2E_K
        st = tl.dot(k, qt, input_precision=PRECISION) * qk_scale  # scores, transposed (BN, BM)
        if BIAS_MODE == BIAS_TENSOR_K:
            bias = _load_bias(bias_ptr, bias_start, offs_m, offs_n, k_len,
                              mask_m[:, None] & mask_n[None, :], stride_bias_t, h)  # fmt: skip
            st += tl.trans(bias) * LOG2E_K
        shared = -1
        tq = offs_m + shift
        rel_q = offs_m
        # (BN, BM) like the transposed scores; the int64 arm of mixed tiles reads the key times
        # again unless the one-pass kernel's table gradient holds them anyway
        if BIAS_MODE == BIAS_RELATIVE_K:
            if HAS_TQ:
                tq = tl.load(tq_ptr + q_start + offs_m, mask=mask_m, other=0)
                q_lo, q_hi = _block_span(tq_lo_ptr, tq_hi_ptr, q_start, b, start_m, q_len,
                                         BLOCK_M)  # fmt: skip
            else:
                q_lo, q_hi = _span(tq, mask_m)
            shared = _tile_bucket(q_lo, q_hi, k_lo, k_hi, first, last, num_bounds, CONSECUTIVE)
            rel_q = _rel32(tq, k_hi + below)  # the query side of the int32 buckets
            st = _add_relative_bias(st, tq[None, :], tk[:, None], shared, rel_q[None, :],
                                    rel_k[:, None], v_first, v_last, below, table_ptr,
                                    stride_table_b, h, bounds_ptr, num_bounds, CONSECUTIVE,
                                    NB_PAD, True, tk_ptr + k_start, offs_n, mask_n,
                                    HAS_TK and not FUSED_DQ)  # fmt: skip
        pt = tl.math.exp2(st - lse[None, :])
        visible = mask_n[:, None] & mask_m[None, :]
        if MASKED:
            if IS_CAUSAL:
                visible = visible & (offs_n[:, None] <= offs_m[None, :] + shift)
            pt = tl.where(visible, pt, 0.0)
        if TMA:
            do = do_desc.load([tl.cast(start_m, tl.int32), 0])
        elif MASKED:
            do = tl.load(do_ptrs, mask=mask_m[:, None] & mask_d[None, :], other=0.0)
        elif EVEN_D:
            do = tl.load(do_ptrs)
        else:
            do = tl.load(do_ptrs, mask=mask_d[None, :], other=0.0)
        dv = tl.dot(pt.to(do.dtype), do, dv, input_precision=PRECISION)
        dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        dst = pt * (dpt - delta[None, :])  # dL/ds (natural units), transposed
        dk = tl.dot(dst.to(qt.dtype), tl.trans(qt), dk, input_precision=PRECISION)
        if FUSED_DQ:  # this key block's share of dQ = scale * dS K, added in fp32
            dq = tl.dot(tl.trans(dst.to(k.dtype)), k, input_precision=PRECISION) * scale
            dq_ptrs = (
                dq_ptr + (q_start + offs_m)[:, None] * stride_dq_t + h * stride_dq_h
                + offs_d[None, :]
            )  # fmt: skip
            if MASKED or not EVEN_D:
                tl.atomic_add(dq_ptrs, dq, mask=mask_m[:, None] & mask_d[None, :], sem="relaxed")
            else:
                tl.atomic_add(dq_ptrs, dq, sem="relaxed")
        if BIAS_MODE == BIAS_TENSOR_K:  # each (i, j) belongs to exactly one program: plain stores
            rows = bias_start + offs_m[None, :] * k_len + offs_n[:, None]
            tl.store(
                dbias_ptr + rows * stride_bias_t + h,
                dst.to(dbias_ptr.dtype.element_ty),
                mask=visible,
            )
        if BIAS_MODE == BIAS_RELATIVE_K and FUSED_DQ:  # the table gradient (else in dQ's)
            dtab = _add_table_grad(dtab, dst, tq[None, :], tk[:, None], shared, rel_q[None, :],
                                   rel_k[:, None], visible, below, bounds_ptr, num_bounds,
                                   CONSECUTIVE, NB_PAD)  # fmt: skip
    return dk, dv, dtab


@triton.jit(do_not_specialize=_NO_SPEC)
def _attn_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, dq_ptr,
    q_offsets_ptr, k_offsets_ptr, order_ptr,
    bias_ptr, bias_offsets_ptr, dbias_ptr, table_ptr, bounds_ptr, tq_ptr, tq_lo_ptr, tq_hi_ptr,
    tk_ptr, dtable_ptr,
    stride_q_t, stride_q_h, stride_k_t, stride_k_h, stride_v_t, stride_v_h,
    stride_do_t, stride_do_h, stride_lse_t, stride_dk_t, stride_dk_h, stride_dv_t, stride_dv_h,
    stride_dq_t, stride_dq_h, stride_bias_t, stride_table_b,
    max_seqlen_q, max_seqlen_k, num_bounds, qk_scale, scale,
    seqlen_q_bucket, seqlen_k_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BIAS_MODE: tl.constexpr, HAS_TQ: tl.constexpr, HAS_TK: tl.constexpr,
    CONSECUTIVE: tl.constexpr, USE_ORDER: tl.constexpr, NB_PAD: tl.constexpr,
    PRECISION: tl.constexpr, FUSED_DQ: tl.constexpr, TMA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1)
    b = _sample_index(order_ptr, USE_ORDER)
    h = tl.program_id(2).to(tl.int64)
    k_start, k_len = _extent(k_offsets_ptr, b, max_seqlen_k)
    n_start = pid_n * BLOCK_N
    if n_start >= k_len:
        return
    q_start, q_len = _extent(q_offsets_ptr, b, max_seqlen_q)
    shift = k_len - q_len

    offs_n = n_start + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < k_len
    mask_d = offs_d < HEAD_DIM
    mask_nd = mask_n[:, None] & mask_d[None, :]
    # Step 1: this program's key/value tile stays in registers
    # the query loop's tiles through the copy engine on the Hopper path
    q_desc, do_desc = _loop_operands(q_ptr, do_ptr, q_start, q_len, h, stride_q_t, stride_q_h,
                                     stride_do_t, stride_do_h, HEAD_DIM, BLOCK_M, BLOCK_D, TMA)  # fmt: skip
    k = tl.load(
        k_ptr + (k_start + offs_n)[:, None] * stride_k_t + h * stride_k_h + offs_d[None, :],
        mask=mask_nd,
        other=0.0,
    )
    v = tl.load(
        v_ptr + (k_start + offs_n)[:, None] * stride_v_t + h * stride_v_h + offs_d[None, :],
        mask=mask_nd,
        other=0.0,
    )
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dtab = tl.zeros([BLOCK_N, NB_PAD], dtype=tl.float32)  # table gradient, per key row
    bias_start = 0
    tk = offs_n
    if BIAS_MODE == BIAS_TENSOR_K:
        bias_start = tl.load(bias_offsets_ptr + b)
    if BIAS_MODE == BIAS_RELATIVE_K and HAS_TK:
        tk = tl.load(tk_ptr + k_start + offs_n, mask=mask_n, other=0)

    # Step 2: query blocks [lo, q_len): masked diagonal blocks [lo, mid), mask-free interior
    # blocks [mid, full) (full query block, full key block, entirely visible), masked tail
    lo = 0
    mid = 0
    if IS_CAUSAL:  # the first query that sees key n_start is i = n_start - shift
        lo = (tl.maximum(n_start - shift, 0) // BLOCK_M) * BLOCK_M
        # first aligned query block whose every row sees the whole key block
        mid = ((tl.maximum(n_start + BLOCK_N - 1 - shift, 0) + BLOCK_M - 1) // BLOCK_M) * BLOCK_M
        mid = tl.maximum(mid, lo)
    full = tl.maximum((q_len // BLOCK_M) * BLOCK_M, lo)
    if n_start + BLOCK_N > k_len:  # partial key block: everything masked
        full = tl.minimum(full, lo)  # == lo, keeping full's int64 type
    mid = tl.minimum(mid, full)
    dk, dv, dtab = _attn_bwd_dkdv_inner(
        dk, dv, dtab, k, v, q_ptr, do_ptr, q_desc, do_desc, lse_ptr, delta_ptr, dbias_ptr, dq_ptr, q_start, q_len,
        k_len, h, stride_q_t, stride_q_h, stride_do_t, stride_do_h, stride_lse_t, stride_dq_t,
        stride_dq_h, offs_n, mask_n, offs_d, mask_d, shift, lo, mid, qk_scale, scale, bias_ptr,
        bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
        tq_ptr, tq_lo_ptr, tq_hi_ptr, b, tk, tk_ptr, k_start, IS_CAUSAL, BIAS_MODE, HAS_TQ, HAS_TK, CONSECUTIVE, True, HEAD_DIM == BLOCK_D, NB_PAD, PRECISION,
        FUSED_DQ, TMA, BLOCK_M, BLOCK_N,
    )  # fmt: skip
    dk, dv, dtab = _attn_bwd_dkdv_inner(
        dk, dv, dtab, k, v, q_ptr, do_ptr, q_desc, do_desc, lse_ptr, delta_ptr, dbias_ptr, dq_ptr, q_start, q_len,
        k_len, h, stride_q_t, stride_q_h, stride_do_t, stride_do_h, stride_lse_t, stride_dq_t,
        stride_dq_h, offs_n, mask_n, offs_d, mask_d, shift, mid, full, qk_scale, scale, bias_ptr,
        bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
        tq_ptr, tq_lo_ptr, tq_hi_ptr, b, tk, tk_ptr, k_start, IS_CAUSAL, BIAS_MODE, HAS_TQ, HAS_TK, CONSECUTIVE, False, HEAD_DIM == BLOCK_D, NB_PAD, PRECISION,
        FUSED_DQ, TMA, BLOCK_M, BLOCK_N,
    )  # fmt: skip
    dk, dv, dtab = _attn_bwd_dkdv_inner(
        dk, dv, dtab, k, v, q_ptr, do_ptr, q_desc, do_desc, lse_ptr, delta_ptr, dbias_ptr, dq_ptr, q_start, q_len,
        k_len, h, stride_q_t, stride_q_h, stride_do_t, stride_do_h, stride_lse_t, stride_dq_t,
        stride_dq_h, offs_n, mask_n, offs_d, mask_d, shift, full, q_len, qk_scale, scale, bias_ptr,
        bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
        tq_ptr, tq_lo_ptr, tq_hi_ptr, b, tk, tk_ptr, k_start, IS_CAUSAL, BIAS_MODE, HAS_TQ, HAS_TK, CONSECUTIVE, True, HEAD_DIM == BLOCK_D, NB_PAD, PRECISION,
        FUSED_DQ, TMA, BLOCK_M, BLOCK_N,
    )  # fmt: skip
    # Step 3: write dK (times the softmax scale) and dV; table partials per program
    tl.store(
        dk_ptr + (k_start + offs_n)[:, None] * stride_dk_t + h * stride_dk_h + offs_d[None, :],
        (dk * scale).to(dk_ptr.dtype.element_ty),
        mask=mask_nd,
    )
    tl.store(
        dv_ptr + (k_start + offs_n)[:, None] * stride_dv_t + h * stride_dv_h + offs_d[None, :],
        dv.to(dv_ptr.dtype.element_ty),
        mask=mask_nd,
    )
    if BIAS_MODE == BIAS_RELATIVE_K and FUSED_DQ:
        slot = (pid_n * tl.num_programs(1) + pid_b).to(tl.int64) * tl.num_programs(2) + h
        tl.store(dtable_ptr + slot * NB_PAD + tl.arange(0, NB_PAD), tl.sum(dtab, 0))


# bump a version when its kernel's code changes: remembered and shipped tiles are dropped
_DKDV = FastLauncher(_attn_bwd_dkdv_kernel, _tuner("dkdv", 2))
_FUSED = FastLauncher(_attn_bwd_dkdv_kernel, _tuner("bwd", 1, reset=("dq_ptr",)))
_DQ = FastLauncher(_attn_bwd_dq_kernel, _tuner("dq", 2))
# the Hopper path: the same kernels with tensor-descriptor loads, tiles tuned of their own
_DKDV_TMA = FastLauncher(_attn_bwd_dkdv_kernel, _tuner("dkdv", 1, tma=True))
_DQ_TMA = FastLauncher(_attn_bwd_dq_kernel, _tuner("dq", 1, tma=True))
_PLANS = plan_cache()  # the bias-free two-pass launches, bound (see _attn_bwd)


def _bwd_variant(q: torch.Tensor, head_dim: int) -> str:
    """ "fused" (one pass, atomic dQ) or "split" (two passes): ``SHOPML_ATTN_BWD``, else split.

    Split is the default everywhere: on an H200 the fused kernel's best tile was 1-35% slower
    than the best dQ + dK/dV in 20 of 24 (head dim, causal, length bucket) keys and 1-7% faster
    in 4 (buckets 128-256), before its extra launches; 1.26-1.36x slower on whole backward
    passes (benchmarks/README.md, "Hopper suite").
    """
    forced = env_setting("SHOPML_ATTN_BWD", "auto", ("auto", "fused", "split"))
    return "fused" if forced == "fused" else "split"


def _attn_bwd(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    q_offsets: torch.Tensor,
    k_offsets: torch.Tensor,
    bias: torch.Tensor | None,
    bias_offsets: torch.Tensor | None,
    table: torch.Tensor | None,
    bounds: torch.Tensor | None,
    tq: torch.Tensor | None,
    tk: torch.Tensor | None,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
    post_scale: float,
    causal: bool,
    allow_tf32: bool,
    zero_init: bool = True,
    consecutive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    total, heads, head_dim = q.shape
    batch = q_offsets.numel() - 1
    dev = q.device
    use_order = _use_order()
    dbias = torch.zeros_like(bias) if bias is not None else None
    if batch == 0 or total == 0 or k.shape[0] == 0 or max_seqlen_q == 0 or max_seqlen_k == 0:
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        dtable = torch.zeros_like(table) if table is not None else None
        return dq, dk, dv, dbias, dtable
    do = do.contiguous()
    if post_scale != 1.0:  # out = post * P V: fold the post-softmax scale into dO
        do = do * post_scale
        out_for_delta = out / post_scale
    else:
        out_for_delta = out
    gluon = _gluon_mode(q, bias is not None or table is not None)
    if gluon != "0":  # FA3's backward in Gluon (imported on first use: import time)
        glb = _gluon("attention_gluon_bwd")
        config = glb.auto_config(q, q_offsets.numel() - 1, max_seqlen_k, forced=gluon == "1")
        if config is not None and glb.gluon_bwd_ok(q, k, v, do, scale):
            dq, dk, dv = glb._attn_bwd_gluon(do, q, k, v, out_for_delta, lse, q_offsets,
                                             k_offsets, max_seqlen_q, max_seqlen_k, scale,
                                             zero_init, config, causal)  # fmt: skip
            return dq, dk, dv, None, None
    variant = _bwd_variant(q, head_dim)
    # every row of a (non-truncated) sequence is written by the kernels
    alloc = torch.zeros_like if zero_init else torch.empty_like
    dk, dv = alloc(k), alloc(v)
    if variant == "fused":  # fp32 accumulator, zeroed by the delta kernel
        dq = torch.empty((total, heads, head_dim), device=dev, dtype=torch.float32)
    else:
        dq = alloc(q)
    delta = torch.empty((total, heads), device=dev, dtype=torch.float32)
    plain = bias is None and table is None and tq is None and tk is None and variant == "split"
    if plain:  # settings seen before: the bound launches (see plan_cache)
        key = (q.device, q.dtype, q.shape[1:], q.stride(), k.stride(), v.stride(),
               out_for_delta.stride(), q_offsets.dtype, k_offsets.dtype, batch, max_seqlen_q,
               max_seqlen_k, scale, causal, allow_tf32, zero_init,
               (q.data_ptr() | k.data_ptr() | v.data_ptr() | do.data_ptr()) % 16 == 0)  # fmt: skip
        plan = _PLANS.get(key)
        if plan is not None:
            tma, bound_dq, bound_dkdv = plan
            if tma:
                _ensure_allocator()
            bound_dq(q, k, v, out_for_delta, do, lse, delta, dq, q_offsets, k_offsets)
            bound_dkdv(q, k, v, do, lse, delta, dk, dv, dq, q_offsets, k_offsets)
            return dq, dk, dv, None, None
    # the Hopper path (two-pass backward only)
    tma = variant == "split" and _tma_ok(head_dim, q, k, v, do)  # the descriptors
    if tma:
        _ensure_allocator()
    block_d = pow2(head_dim)
    mode = (
        BIAS_NONE
        if (bias is None and table is None)
        else (BIAS_TENSOR if bias is not None else BIAS_RELATIVE)
    )
    common = dict(
        HEAD_DIM=head_dim,
        BLOCK_D=block_d,
        IS_CAUSAL=causal,
        BIAS_MODE=mode,
        HAS_TQ=tq is not None,
        HAS_TK=tk is not None,
        CONSECUTIVE=consecutive and mode == BIAS_RELATIVE,  # closed-form buckets
        USE_ORDER=use_order,
        PRECISION=_precision(q.dtype, allow_tf32),
        **({} if tma else _POINTER),  # the Hopper tiles carry TMA
    )
    none_f, none_i32, none_i64 = _dummies(dev)
    if use_order:
        order_q, order_k = _order(q_offsets, max_seqlen_q), _order(k_offsets, max_seqlen_k)
    else:
        order_q = order_k = none_i32
    bias_arg = bias if bias is not None else none_f
    boff_arg = bias_offsets if bias_offsets is not None else none_i64
    table_arg = table if table is not None else none_f
    bounds_arg = bounds if bounds is not None else none_i64
    tq_arg = tq if tq is not None else none_i64
    tk_arg = tk if tk is not None else none_i64
    relative = mode == BIAS_RELATIVE
    if relative:
        tk_lo, tk_hi = _time_spans(tk if variant == "split" else None, k_offsets, max_seqlen_k)
        if tq is tk and q_offsets is k_offsets and variant == "split":  # self-attention
            tq_lo, tq_hi = tk_lo, tk_hi
        else:
            tq_lo, tq_hi = _time_spans(tq, q_offsets, max_seqlen_q)
    else:
        tk_lo = tk_hi = tq_lo = tq_hi = none_i64
    num_bounds = bounds.numel() if bounds is not None else 0
    num_buckets = table.shape[0] if table is not None else 1
    nb_pad = pow2(num_buckets)
    stride_bias = bias.stride(0) if bias is not None else 0
    stride_table = table.stride(0) if table is not None else 0
    qb, kb = pow2(max_seqlen_q), pow2(max_seqlen_k)
    sq, sk, sv, sdo, sdq = q.stride(), k.stride(), v.stride(), do.stride(), dq.stride()
    # the table gradient's partial sums, one row per program of the kernel that sums dS per
    # bucket: dQ's (query blocks), or the one-pass kernel's (key blocks); tiles >= 32 rows
    min_block = 16 if _INTERPRET else 32
    if table is not None:
        blocks = cdiv(max_seqlen_k if variant == "fused" else max_seqlen_q, min_block)
        dtab_part = torch.zeros((blocks * batch * heads, nb_pad), device=dev, dtype=torch.float32)
    else:
        dtab_part = none_f
    if variant == "fused":
        block_t = 16 if _INTERPRET else 64
        _DELTA(
            lambda meta: (cdiv(total, block_t), heads),
            (out_for_delta, do, delta, dq, total, out_for_delta.stride(0), out_for_delta.stride(1),
             sdo[0], sdo[1], heads, sdq[0], sdq[1]),
            dict(HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_T=block_t),
        )  # fmt: skip
    else:  # dQ first: its programs also write delta = rowsum(dO * O), which dK/dV reads
        so = out_for_delta.stride()
        dq_launch = (
            _DQ_TMA if tma else _DQ,
            lambda meta: (cdiv(max_seqlen_q, meta["BLOCK_M"]), batch, heads),
            (q, k, v, out_for_delta, do, lse, delta, dq, q_offsets, k_offsets, order_k, bias_arg,
             boff_arg, table_arg, bounds_arg, tq_arg, tk_arg, tk_lo, tk_hi, dtab_part, sq[0],
             sq[1], sk[0], sk[1], sv[0], sv[1], so[0], so[1], sdo[0], sdo[1], lse.stride(0),
             sdq[0], sdq[1], stride_bias, stride_table, max_seqlen_q, max_seqlen_k, num_bounds,
             scale * LOG2E, scale, qb, kb),
            dict(common, NB_PAD=nb_pad),
        )  # fmt: skip
        dq_launch[0](*dq_launch[1:])
    sdk, sdv = dk.stride(), dv.stride()
    dkdv_launch = (
        _FUSED if variant == "fused" else (_DKDV_TMA if tma else _DKDV),
        lambda meta: (cdiv(max_seqlen_k, meta["BLOCK_N"]), batch, heads),
        (q, k, v, do, lse, delta, dk, dv, dq, q_offsets, k_offsets, order_q, bias_arg, boff_arg,
         dbias if dbias is not None else none_f, table_arg, bounds_arg, tq_arg, tq_lo, tq_hi,
         tk_arg, dtab_part, sq[0], sq[1], sk[0], sk[1], sv[0], sv[1], sdo[0], sdo[1],
         lse.stride(0), sdk[0], sdk[1], sdv[0], sdv[1], sdq[0], sdq[1], stride_bias,
         stride_table, max_seqlen_q, max_seqlen_k, num_bounds, scale * LOG2E, scale, qb, kb),
        dict(common, NB_PAD=nb_pad, FUSED_DQ=variant == "fused"),
    )  # fmt: skip
    dkdv_launch[0](*dkdv_launch[1:])
    if plain and not use_order:  # (order tensors are made per call: not bound)
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = (tma, dq_launch[0].bind(*dq_launch[1:], 10),
                       dkdv_launch[0].bind(*dkdv_launch[1:], 11))  # fmt: skip
    if variant == "fused" and q.dtype != torch.float32:
        dq = dq.to(q.dtype)
    dtable = None
    if table is not None:
        dtable = dtab_part.view(-1, heads, nb_pad).sum(0)[:, :num_buckets].t().contiguous()
        dtable = dtable.to(table.dtype)
    return dq, dk, dv, dbias, dtable
