"""Forward kernel of jagged flash attention and its launcher (see attention_triton.py)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.triton._common import cdiv, pow2
from shopml.jagged.triton.attention_common import (
    _NO_SPEC,
    _POINTER,
    BIAS_NONE,
    BIAS_RELATIVE,
    BIAS_RELATIVE_K,
    BIAS_TENSOR,
    BIAS_TENSOR_K,
    LN2_K,
    LOG2E,
    LOG2E_K,
    MAX_PLANS,
    _below,
    _dummies,
    _edges,
    _ensure_allocator,
    _extent,
    _fwd_outputs,
    _gluon,
    _gluon_mode,
    _key_block_bias,
    _load_bias,
    _loop_operands,
    _order,
    _precision,
    _rel32,
    _sample_index,
    _span,
    _time_spans,
    _tma_ok,
    _tuner,
    _use_order,
    plan_cache,
)
from shopml.jagged.triton.launch import FastLauncher


@triton.jit
def _attn_fwd_inner(
    acc,
    l_i,
    m_i,
    q,
    k_ptr,
    v_ptr,
    k_desc,
    v_desc,
    k_start,
    k_len,
    h,
    stride_k_t,
    stride_k_h,
    stride_v_t,
    stride_v_h,
    offs_m,
    mask_m,
    offs_d,
    mask_d,
    shift,
    lo,
    hi,
    qk_scale,
    bias_ptr,
    bias_start,
    stride_bias_t,
    table_ptr,
    stride_table_b,
    bounds_ptr,
    num_bounds,
    tq,
    tk_ptr,
    tk_lo_ptr,
    tk_hi_ptr,
    b,
    IS_CAUSAL: tl.constexpr,
    BIAS_MODE: tl.constexpr,
    HAS_TK: tl.constexpr,
    CONSECUTIVE: tl.constexpr,
    NB_PAD: tl.constexpr,
    MASKED: tl.constexpr,
    EVEN_D: tl.constexpr,
    PRECISION: tl.constexpr,
    TMA: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Online-softmax over key blocks [lo, hi). MASKED=False: every key valid and visible.
    TMA: K and V tiles through the descriptors ``k_desc``, ``v_desc`` (zeros past the end)."""
    below = _below(bounds_ptr, num_bounds, CONSECUTIVE)  # the bias's first boundary - 1
    first, last, v_first, v_last = _edges(table_ptr, stride_table_b, h, bounds_ptr, num_bounds,
                                          BIAS_MODE)  # fmt: skip
    q_lo, q_hi = _span(tq, mask_m)  # the query block's times (for tiles of one bucket)
    rel_q = _rel32(tq, q_lo)  # the query side of the int32 buckets
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < k_len
        k_ptrs = k_ptr + (k_start + offs_n)[None, :] * stride_k_t + h * stride_k_h + offs_d[:, None]
        v_ptrs = v_ptr + (k_start + offs_n)[:, None] * stride_v_t + h * stride_v_h + offs_d[None, :]
        if TMA:
            kt = k_desc.load([tl.cast(start_n, tl.int32), 0]).T
        elif MASKED:
            kt = tl.load(k_ptrs, mask=mask_n[None, :] & mask_d[:, None], other=0.0)
        elif EVEN_D:
            kt = tl.load(k_ptrs)
        else:
            kt = tl.load(k_ptrs, mask=mask_d[:, None], other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), base 2
        if BIAS_MODE == BIAS_TENSOR_K:
            bias = _load_bias(bias_ptr, bias_start, offs_m, offs_n, k_len,
                              mask_m[:, None] & mask_n[None, :], stride_bias_t, h)  # fmt: skip
            s += bias * LOG2E_K
        if BIAS_MODE == BIAS_RELATIVE_K:  # table[bucket(t_q - t_k), h]
            s, tk, shared, rel_k = _key_block_bias(s, tq, q_lo, q_hi, rel_q, tk_ptr, tk_lo_ptr,
                                                   tk_hi_ptr, b, k_start, k_len, start_n, offs_n,
                                                   mask_n, first, last, v_first, v_last, below,
                                                   table_ptr, stride_table_b, h, bounds_ptr,
                                                   num_bounds, HAS_TK, CONSECUTIVE, NB_PAD, False,
                                                   BLOCK_N)  # fmt: skip
        if MASKED:
            visible = mask_n[None, :]
            if IS_CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None] + shift)
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing visible yet
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = m_new
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if TMA:
            v = v_desc.load([tl.cast(start_n, tl.int32), 0])
        elif MASKED:
            v = tl.load(v_ptrs, mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        elif EVEN_D:
            v = tl.load(v_ptrs)
        else:
            v = tl.load(v_ptrs, mask=mask_d[None, :], other=0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit(do_not_specialize=_NO_SPEC)
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, q_offsets_ptr, k_offsets_ptr, order_ptr,
    bias_ptr, bias_offsets_ptr, table_ptr, bounds_ptr, tq_ptr, tk_ptr, tk_lo_ptr, tk_hi_ptr,
    stride_q_t, stride_q_h, stride_k_t, stride_k_h, stride_v_t, stride_v_h,
    stride_o_t, stride_o_h, stride_lse_t, stride_bias_t, stride_table_b,
    max_seqlen_q, max_seqlen_k, num_bounds, qk_scale, post_scale,
    seqlen_q_bucket, seqlen_k_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BIAS_MODE: tl.constexpr, HAS_TQ: tl.constexpr, HAS_TK: tl.constexpr,
    CONSECUTIVE: tl.constexpr, NB_PAD: tl.constexpr, USE_ORDER: tl.constexpr,
    PRECISION: tl.constexpr, TMA: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    b = _sample_index(order_ptr, USE_ORDER)  # longest sequences first if ordered
    h = tl.program_id(2).to(tl.int64)
    # Step 1: this sample's extent
    q_start, q_len = _extent(q_offsets_ptr, b, max_seqlen_q)
    m_start = pid_m * BLOCK_M
    if m_start >= q_len:  # early exit past the sequence's end
        return
    k_start, k_len = _extent(k_offsets_ptr, b, max_seqlen_k)
    shift = k_len - q_len  # causal: key j visible from query i iff j <= i + shift

    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < q_len
    mask_d = offs_d < HEAD_DIM
    # Step 2: the query tile stays in registers for the whole loop
    # the key loop's tiles through the copy engine on the Hopper path
    k_desc, v_desc = _loop_operands(k_ptr, v_ptr, k_start, k_len, h, stride_k_t, stride_k_h,
                                    stride_v_t, stride_v_h, HEAD_DIM, BLOCK_N, BLOCK_D, TMA)  # fmt: skip
    q = tl.load(
        q_ptr + (q_start + offs_m)[:, None] * stride_q_t + h * stride_q_h + offs_d[None, :],
        mask=mask_m[:, None] & mask_d[None, :],
        other=0.0,
    )
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    bias_start = 0
    tq = offs_m
    if BIAS_MODE == BIAS_TENSOR_K:
        bias_start = tl.load(bias_offsets_ptr + b)
    if BIAS_MODE == BIAS_RELATIVE_K:
        if HAS_TQ:
            tq = tl.load(tq_ptr + q_start + offs_m, mask=mask_m, other=0)
        else:
            tq = offs_m + shift

    # Step 3: key blocks split into mask-free interior blocks [0, full) and masked ones [full, hi)
    hi = k_len
    full = (k_len // BLOCK_N) * BLOCK_N
    if IS_CAUSAL:
        hi = tl.maximum(tl.minimum(k_len, m_start + BLOCK_M + shift), 0)
        full = tl.minimum(full, tl.maximum((m_start + shift + 1) // BLOCK_N, 0) * BLOCK_N)
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_ptr, v_ptr, k_desc, v_desc, k_start, k_len, h, stride_k_t, stride_k_h, stride_v_t,
        stride_v_h, offs_m, mask_m, offs_d, mask_d, shift, 0, full, qk_scale,
        bias_ptr, bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
        tq, tk_ptr, tk_lo_ptr, tk_hi_ptr, b, IS_CAUSAL, BIAS_MODE, HAS_TK, CONSECUTIVE, NB_PAD, False, HEAD_DIM == BLOCK_D, PRECISION,
        TMA, BLOCK_M, BLOCK_N,
    )  # fmt: skip
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_ptr, v_ptr, k_desc, v_desc, k_start, k_len, h, stride_k_t, stride_k_h, stride_v_t,
        stride_v_h, offs_m, mask_m, offs_d, mask_d, shift, full, hi, qk_scale,
        bias_ptr, bias_start, stride_bias_t, table_ptr, stride_table_b, bounds_ptr, num_bounds,
        tq, tk_ptr, tk_lo_ptr, tk_hi_ptr, b, IS_CAUSAL, BIAS_MODE, HAS_TK, CONSECUTIVE, NB_PAD, True, HEAD_DIM == BLOCK_D, PRECISION,
        TMA, BLOCK_M, BLOCK_N,
    )  # fmt: skip
    # Step 4: normalise; a row that saw no key outputs 0 with lse = -inf
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc * (post_scale / l_safe)[:, None]
    tl.store(
        o_ptr + (q_start + offs_m)[:, None] * stride_o_t + h * stride_o_h + offs_d[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_d[None, :],
    )
    lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.math.log2(l_safe)) * LN2_K)
    tl.store(lse_ptr + (q_start + offs_m) * stride_lse_t + h, lse, mask=mask_m)


# bump the version when the kernel's code changes: remembered and shipped tiles are dropped
_FWD = FastLauncher(_attn_fwd_kernel, _tuner("fwd", 2))
_FWD_TMA = FastLauncher(_attn_fwd_kernel, _tuner("fwd", 1, tma=True))
_PLANS = plan_cache()


def _attn_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
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
    zero_init: bool,
    consecutive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    gluon = _gluon_mode(q, bias is not None or table is not None)
    if gluon != "0":  # FA3's pipeline in Gluon (imported on first use: import time)
        glu = _gluon("attention_gluon")
        config = glu.auto_config(q, q_offsets.numel() - 1, max_seqlen_q, forced=gluon == "1")
        if config is not None and glu.gluon_ok(q, k, v, scale):
            return glu._attn_fwd_gluon(q, k, v, q_offsets, k_offsets, max_seqlen_q, max_seqlen_k,
                                       scale, post_scale, zero_init, config, causal)  # fmt: skip
    total, heads, head_dim = q.shape
    batch = q_offsets.numel() - 1
    out, lse = _fwd_outputs(q, max_seqlen_q, zero_init)
    if batch == 0 or total == 0 or max_seqlen_q == 0:
        return out, lse
    plain = bias is None and table is None and tq is None and tk is None  # no per-call extras
    if plain:  # settings seen before: the bound launch (see plan_cache)
        key = (q.device, q.dtype, q.shape[1:], q.stride(), k.stride(), v.stride(),
               q_offsets.dtype, k_offsets.dtype, batch, max_seqlen_q, max_seqlen_k, scale,
               post_scale, causal, allow_tf32, zero_init,
               (k.data_ptr() | v.data_ptr()) % 16 == 0)  # fmt: skip
        plan = _PLANS.get(key)
        if plan is not None:
            tma, bound = plan
            if tma:
                _ensure_allocator()
            bound(q, k, v, out, lse, q_offsets, k_offsets)
            return out, lse
    mode = (
        BIAS_NONE
        if (bias is None and table is None)
        else (BIAS_TENSOR if bias is not None else BIAS_RELATIVE)
    )
    dev = q.device
    use_order = _use_order()
    tma = _tma_ok(head_dim, k, v)  # the descriptors: K and V
    if tma:
        _ensure_allocator()
    none_f, none_i32, none_i64 = _dummies(dev)
    sq, sk, sv, so = q.stride(), k.stride(), v.stride(), out.stride()
    grid = lambda meta: (cdiv(max_seqlen_q, meta["BLOCK_M"]), batch, heads)
    launcher = _FWD_TMA if tma else _FWD
    args = (
        q,
        k,
        v,
        out,
        lse,
        q_offsets,
        k_offsets,
        _order(k_offsets, max_seqlen_k) if use_order else none_i32,
        bias if bias is not None else none_f,
        bias_offsets if bias_offsets is not None else none_i64,
        table if table is not None else none_f,
        bounds if bounds is not None else none_i64,
        tq if tq is not None else none_i64,
        tk if tk is not None else none_i64,
        *(
            _time_spans(tk, k_offsets, max_seqlen_k)
            if mode == BIAS_RELATIVE
            else (none_i64, none_i64)
        ),
        sq[0],
        sq[1],
        sk[0],
        sk[1],
        sv[0],
        sv[1],
        so[0],
        so[1],
        heads,  # lse's row stride ((T, H) contiguous)
        bias.stride(0) if bias is not None else 0,
        table.stride(0) if table is not None else 0,
        max_seqlen_q,
        max_seqlen_k,
        bounds.numel() if bounds is not None else 0,
        scale * LOG2E,
        post_scale,
        pow2(max_seqlen_q),
        pow2(max_seqlen_k),
    )
    constexprs = dict(
        HEAD_DIM=head_dim,
        BLOCK_D=pow2(head_dim),
        IS_CAUSAL=causal,
        BIAS_MODE=mode,
        HAS_TQ=tq is not None,
        HAS_TK=tk is not None,
        CONSECUTIVE=consecutive and mode == BIAS_RELATIVE,  # closed-form buckets
        NB_PAD=pow2(table.shape[0]) if table is not None else 1,
        USE_ORDER=use_order,
        PRECISION=_precision(q.dtype, allow_tf32),
        **({} if tma else _POINTER),  # the Hopper tiles carry TMA
    )
    launcher(grid, args, constexprs)
    if plain and not use_order:  # (an order tensor is made per call: not bound)
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = (tma, launcher.bind(grid, args, constexprs, 7))
    return out, lse
