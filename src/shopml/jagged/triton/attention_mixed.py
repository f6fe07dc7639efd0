"""The relative bias's mixed tiles in a pass of their own (forward and dQ; issue 13).

With the relative-time bias most tiles hold one bucket (every pair beyond the outermost boundary:
one scalar add); the others, the *mixed* tiles (diagonal ones: pairs close in time), look a
bucket up for every score. Kept in one loop, the mixed tiles' code sets the whole kernel's
registers and software pipelining: on an H200 the forward and dQ took 2.4x and 3x their
bias-free time where a branch-free loop over the one-bucket tiles took 1.5-1.8x
(benchmarks/README.md). So with ``SHOPML_ATTN_BIAS_PASSES=2`` the forward and dQ kernels run with
``SKIP_MIXED`` (mixed tiles masked to -inf, their lookup code not compiled in), then the kernels
here add the mixed tiles only, at the same tiles (the same ``BLOCK_M``, ``BLOCK_N``, hence the
same classification, :func:`_tile_bucket` of the same spans):

- forward: each program takes up its query block's online softmax where the first pass left it
  (``m = lse * log2(e)``, ``l = 1``, ``acc = out / post_scale``: the same state, normalised),
  runs the block's mixed tiles, and writes out and lse again;
- dQ: each program sums its query block's mixed tiles into dQ (read back, added, stored) and its
  table-gradient partials into the first pass's slot.

The first pass's out and dQ are rounded to the input dtype before the second adds to them (two
roundings of a 16-bit output instead of one). The dK/dV kernel keeps one pass: there the mixed
code cost 1.2x, less than a second pass would.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.triton._common import cdiv
from shopml.jagged.triton.attention_common import (
    _NO_SPEC,
    BIAS_RELATIVE_K,
    LN2_K,
    LOG2E,
    LOG2E_K,
    _add_relative_bias,
    _add_table_grad,
    _below,
    _block_span,
    _edges,
    _extent,
    _rel32,
    _span,
    _tile_bucket,
    env_setting,
)
from shopml.jagged.triton.launch import FastLauncher


def bias_passes() -> int:
    """``SHOPML_ATTN_BIAS_PASSES``: 2 (the default) runs the relative bias's mixed tiles of the
    forward and dQ in a pass of their own (this module), 1 keeps them in the main loop."""
    return int(env_setting("SHOPML_ATTN_BIAS_PASSES", "2", ("1", "2")))


@triton.jit
def _query_side(tq_ptr, q_start, offs_m, mask_m, shift, HAS_TQ: tl.constexpr):
    """The query block's times (positions + shift without ``tq_ptr``), their span and the int32
    query side of the buckets, as the main kernels form them."""
    if HAS_TQ:
        tq = tl.load(tq_ptr + q_start + offs_m, mask=mask_m, other=0)
    else:
        tq = offs_m + shift
    q_lo, q_hi = _span(tq, mask_m)
    return tq, q_lo, q_hi, _rel32(tq, q_lo)


@triton.jit
def _key_span(tk_lo_ptr, tk_hi_ptr, k_start, b, start_n, k_len, HAS_TK: tl.constexpr,
              BLOCK_N: tl.constexpr):  # fmt: skip
    """The key tile's time span as the main kernels take it (granules, or the positions)."""
    if HAS_TK:
        k_lo, k_hi = _block_span(tk_lo_ptr, tk_hi_ptr, k_start, b, start_n, k_len, BLOCK_N)
    else:
        k_lo = tl.minimum(start_n, k_len)  # (int64, as k_len)
        k_hi = tl.minimum(start_n + BLOCK_N, k_len) - 1
    return k_lo, k_hi


@triton.jit(do_not_specialize=_NO_SPEC)
def _attn_fwd_mixed_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, q_offsets_ptr, k_offsets_ptr, table_ptr, bounds_ptr,
    tq_ptr, tk_ptr, tk_lo_ptr, tk_hi_ptr,
    stride_q_t, stride_q_h, stride_k_t, stride_k_h, stride_v_t, stride_v_h,
    stride_o_t, stride_o_h, stride_lse_t, stride_table_b,
    max_seqlen_q, max_seqlen_k, num_bounds, qk_scale, post_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    HAS_TQ: tl.constexpr, HAS_TK: tl.constexpr, CONSECUTIVE: tl.constexpr, NB_PAD: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
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
    q = tl.load(
        q_ptr + (q_start + offs_m)[:, None] * stride_q_t + h * stride_q_h + offs_d[None, :],
        mask=mask_md,
        other=0.0,
    )
    tq, q_lo, q_hi, rel_q = _query_side(tq_ptr, q_start, offs_m, mask_m, shift, HAS_TQ)
    below = _below(bounds_ptr, num_bounds, CONSECUTIVE)
    first, last, v_first, v_last = _edges(table_ptr, stride_table_b, h, bounds_ptr, num_bounds,
                                          BIAS_RELATIVE_K)  # fmt: skip
    # the first pass's state, normalised: m = lse in base 2, l = 1, acc = its output
    o_ptrs = o_ptr + (q_start + offs_m)[:, None] * stride_o_t + h * stride_o_h + offs_d[None, :]
    lse_ptrs = lse_ptr + (q_start + offs_m) * stride_lse_t + h
    acc = tl.load(o_ptrs, mask=mask_md, other=0.0).to(tl.float32) / post_scale
    m_i = tl.load(lse_ptrs, mask=mask_m, other=float("-inf")) * LOG2E_K
    l_i = tl.where(m_i == float("-inf"), 0.0, 1.0)
    hi = k_len
    if IS_CAUSAL:
        hi = tl.maximum(tl.minimum(k_len, m_start + BLOCK_M + shift), 0)
    for start_n in range(0, hi, BLOCK_N):
        k_lo, k_hi = _key_span(tk_lo_ptr, tk_hi_ptr, k_start, b, start_n, k_len, HAS_TK, BLOCK_N)
        shared = _tile_bucket(q_lo, q_hi, k_lo, k_hi, first, last, num_bounds, CONSECUTIVE)
        if shared < 0:  # the tiles the first pass left out
            offs_n = start_n + tl.arange(0, BLOCK_N)
            mask_n = offs_n < k_len
            kt = tl.load(
                k_ptr + (k_start + offs_n)[None, :] * stride_k_t + h * stride_k_h
                + offs_d[:, None],
                mask=mask_n[None, :] & mask_d[:, None],
                other=0.0,
            )  # fmt: skip
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
            tk = offs_n
            if HAS_TK:
                tk = tl.load(tk_ptr + k_start + offs_n, mask=mask_n, other=0)
            rel_k = _rel32(q_lo - below, tk)
            s = _add_relative_bias(s, tq[:, None], tk[None, :], shared, rel_q[:, None],
                                   rel_k[None, :], v_first, v_last, below, table_ptr,
                                   stride_table_b, h, bounds_ptr, num_bounds, CONSECUTIVE,
                                   NB_PAD, False, tk_ptr, 0, True, False, False)  # fmt: skip
            visible = mask_n[None, :]
            if IS_CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None] + shift)
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(s - m_safe[:, None])
            alpha = tl.math.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(
                v_ptr + (k_start + offs_n)[:, None] * stride_v_t + h * stride_v_h
                + offs_d[None, :],
                mask=mask_n[:, None] & mask_d[None, :],
                other=0.0,
            )  # fmt: skip
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
            m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    tl.store(o_ptrs, (acc * (post_scale / l_safe)[:, None]).to(o_ptr.dtype.element_ty),
             mask=mask_md)  # fmt: skip
    lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.math.log2(l_safe)) * LN2_K)
    tl.store(lse_ptrs, lse, mask=mask_m)


@triton.jit(do_not_specialize=_NO_SPEC)
def _attn_bwd_dq_mixed_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, q_offsets_ptr, k_offsets_ptr,
    table_ptr, bounds_ptr, tq_ptr, tk_ptr, tk_lo_ptr, tk_hi_ptr, dtable_ptr,
    stride_q_t, stride_q_h, stride_k_t, stride_k_h, stride_v_t, stride_v_h,
    stride_do_t, stride_do_h, stride_lse_t, stride_dq_t, stride_dq_h, stride_table_b,
    max_seqlen_q, max_seqlen_k, num_bounds, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    HAS_TQ: tl.constexpr, HAS_TK: tl.constexpr, CONSECUTIVE: tl.constexpr, NB_PAD: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1)
    b = pid_b.to(tl.int64)
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
    rows = (q_start + offs_m)[:, None]
    q = tl.load(q_ptr + rows * stride_q_t + h * stride_q_h + offs_d[None, :], mask=mask_md,
                other=0.0)  # fmt: skip
    do = tl.load(do_ptr + rows * stride_do_t + h * stride_do_h + offs_d[None, :], mask=mask_md,
                 other=0.0)  # fmt: skip
    lse = tl.load(lse_ptr + (q_start + offs_m) * stride_lse_t + h, mask=mask_m, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * LOG2E_K
    delta = tl.load(delta_ptr + (q_start + offs_m) * stride_lse_t + h, mask=mask_m, other=0.0)
    tq, q_lo, q_hi, rel_q = _query_side(tq_ptr, q_start, offs_m, mask_m, shift, HAS_TQ)
    below = _below(bounds_ptr, num_bounds, CONSECUTIVE)
    first, last, v_first, v_last = _edges(table_ptr, stride_table_b, h, bounds_ptr, num_bounds,
                                          BIAS_RELATIVE_K)  # fmt: skip
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    dtab = tl.zeros([BLOCK_M, NB_PAD], dtype=tl.float32)
    hi = k_len
    if IS_CAUSAL:
        hi = tl.maximum(tl.minimum(k_len, m_start + BLOCK_M + shift), 0)
    for start_n in range(0, hi, BLOCK_N):
        k_lo, k_hi = _key_span(tk_lo_ptr, tk_hi_ptr, k_start, b, start_n, k_len, HAS_TK, BLOCK_N)
        shared = _tile_bucket(q_lo, q_hi, k_lo, k_hi, first, last, num_bounds, CONSECUTIVE)
        if shared < 0:  # the tiles the first pass left out
            offs_n = start_n + tl.arange(0, BLOCK_N)
            mask_n = offs_n < k_len
            mask_dn = mask_d[:, None] & mask_n[None, :]
            cols = (k_start + offs_n)[None, :]
            kt = tl.load(k_ptr + cols * stride_k_t + h * stride_k_h + offs_d[:, None],
                         mask=mask_dn, other=0.0)  # fmt: skip
            vt = tl.load(v_ptr + cols * stride_v_t + h * stride_v_h + offs_d[:, None],
                         mask=mask_dn, other=0.0)  # fmt: skip
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
            tk = offs_n
            if HAS_TK:
                tk = tl.load(tk_ptr + k_start + offs_n, mask=mask_n, other=0)
            rel_k = _rel32(q_lo - below, tk)
            s = _add_relative_bias(s, tq[:, None], tk[None, :], shared, rel_q[:, None],
                                   rel_k[None, :], v_first, v_last, below, table_ptr,
                                   stride_table_b, h, bounds_ptr, num_bounds, CONSECUTIVE,
                                   NB_PAD, True, tk_ptr, 0, True, False, False)  # fmt: skip
            visible = mask_n[None, :]
            if IS_CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None] + shift)
            p = tl.where(visible, tl.math.exp2(s - lse[:, None]), 0.0)
            dp = tl.dot(do, vt, input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dq = tl.dot(ds.to(kt.dtype), tl.trans(kt), dq, input_precision=PRECISION)
            dtab = _add_table_grad(dtab, ds, tq[:, None], tk[None, :], shared, rel_q[:, None],
                                   rel_k[None, :], mask_m[:, None] & visible, below, bounds_ptr,
                                   num_bounds, CONSECUTIVE, NB_PAD, False)  # fmt: skip
    dq_ptrs = dq_ptr + rows * stride_dq_t + h * stride_dq_h + offs_d[None, :]
    first_pass = tl.load(dq_ptrs, mask=mask_md, other=0.0).to(tl.float32)
    tl.store(dq_ptrs, (first_pass + dq * scale).to(dq_ptr.dtype.element_ty), mask=mask_md)
    # the table partials: this program's slot of the first pass (same grid), added to
    slot = (pid_m * tl.num_programs(1) + pid_b).to(tl.int64) * tl.num_programs(2) + h
    part = dtable_ptr + slot * NB_PAD + tl.arange(0, NB_PAD)
    tl.store(part, tl.load(part) + tl.sum(dtab, 0))


_FWD_MIXED = FastLauncher(_attn_fwd_mixed_kernel)
_DQ_MIXED = FastLauncher(_attn_bwd_dq_mixed_kernel)
_LAUNCH = {"num_warps": 4, "num_stages": 2}  # a loop with a branch: not pipelined anyway


def _tile(meta: dict) -> dict:
    return {"BLOCK_M": meta["BLOCK_M"], "BLOCK_N": meta["BLOCK_N"], **_LAUNCH}


def fwd_mixed(
    meta: dict,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    q_offsets: torch.Tensor,
    k_offsets: torch.Tensor,
    table: torch.Tensor,
    bounds: torch.Tensor,
    tq: torch.Tensor,
    tk: torch.Tensor,
    tk_lo: torch.Tensor,
    tk_hi: torch.Tensor,
    num_bounds: int,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
    post_scale: float,
) -> None:
    """The forward's mixed tiles after its first pass (``meta``: that launch's, for its tiles
    and constexprs); rewrites ``out`` and ``lse`` in place."""
    batch, heads = q_offsets.numel() - 1, q.shape[1]
    bm = meta["BLOCK_M"]
    _FWD_MIXED(
        lambda m: (cdiv(max_seqlen_q, bm), batch, heads),
        (q, k, v, out, lse, q_offsets, k_offsets, table, bounds, tq, tk, tk_lo, tk_hi,
         q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
         out.stride(0), out.stride(1), lse.stride(0), table.stride(0), max_seqlen_q,
         max_seqlen_k, num_bounds, scale * LOG2E, post_scale),
        dict(HEAD_DIM=meta["HEAD_DIM"], BLOCK_D=meta["BLOCK_D"], IS_CAUSAL=meta["IS_CAUSAL"],
             HAS_TQ=meta["HAS_TQ"], HAS_TK=meta["HAS_TK"], CONSECUTIVE=meta["CONSECUTIVE"],
             NB_PAD=meta["NB_PAD"], PRECISION=meta["PRECISION"], **_tile(meta)),
    )  # fmt: skip


def dq_mixed(
    meta: dict,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    do: torch.Tensor,
    lse: torch.Tensor,
    delta: torch.Tensor,
    dq: torch.Tensor,
    q_offsets: torch.Tensor,
    k_offsets: torch.Tensor,
    table: torch.Tensor,
    bounds: torch.Tensor,
    tq: torch.Tensor,
    tk: torch.Tensor,
    tk_lo: torch.Tensor,
    tk_hi: torch.Tensor,
    dtab_part: torch.Tensor,
    num_bounds: int,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
) -> None:
    """dQ's mixed tiles after its first pass (``meta``: that launch's); adds into ``dq`` and
    the first pass's table partials ``dtab_part``."""
    batch, heads = q_offsets.numel() - 1, q.shape[1]
    bm = meta["BLOCK_M"]
    _DQ_MIXED(
        lambda m: (cdiv(max_seqlen_q, bm), batch, heads),
        (q, k, v, do, lse, delta, dq, q_offsets, k_offsets, table, bounds, tq, tk, tk_lo, tk_hi,
         dtab_part, q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0),
         v.stride(1), do.stride(0), do.stride(1), lse.stride(0), dq.stride(0), dq.stride(1),
         table.stride(0), max_seqlen_q, max_seqlen_k, num_bounds, scale * LOG2E, scale),
        dict(HEAD_DIM=meta["HEAD_DIM"], BLOCK_D=meta["BLOCK_D"], IS_CAUSAL=meta["IS_CAUSAL"],
             HAS_TQ=meta["HAS_TQ"], HAS_TK=meta["HAS_TK"], CONSECUTIVE=meta["CONSECUTIVE"],
             NB_PAD=meta["NB_PAD"], PRECISION=meta["PRECISION"], **_tile(meta)),
    )  # fmt: skip
