"""Triton kernels: the per-sequence L x L ("jagged2") family, forward and backward.

A jagged2 tensor holds one ``L_i x L_i`` row-major matrix per sequence, concatenated, at
``offsets2[i] = sum_{j<i} L_j^2`` (computed on the device from ``offsets``).

- ``jagged2_bmm``: ``S_i = x_i @ y_i^T`` (attention scores); x, y ``(T, D)``. Grid
  ``(cdiv(M, BLOCK_M), cdiv(M, BLOCK_N), B)`` with M = max_seqlen; one output tile per program
  (tiles outside the L_i x L_i block exit at once); the K loop runs over D with ``tl.dot`` into
  an fp32 accumulator.
- ``jagged2_matmul``: ``O_i = P_i @ v_i`` (or ``P_i^T @ v_i``); v ``(T, D)``. Grid
  ``(cdiv(M, BLOCK_M), cdiv(D, BLOCK_N), B)``; reduction over the first ``min(L_i, M)`` columns
  of P.
- ``truncate=True`` (the FBGEMM compat path; ``GRID_STRIDE`` constexpr): programs grid-stride
  over all tiles of the block, so lengths above ``max_seqlen`` work: entries with a row or column
  ``>= max_seqlen`` are zero (``jagged2_bmm``), rows past it are zero (``jagged2_matmul``).
- ``jagged2_to_padded``: ``(sum L_i^2,) -> (B, N, N)`` with padding; its backward
  ``padded_to_jagged2`` gathers entries back (entries past N get 0).

Backward identities (no extra kernels): for ``S = x y^T``: ``dx = dS @ y``, ``dy = dS^T @ x``
(jagged2_matmul); for ``O = P v``: ``dP = dO v^T`` (jagged2_bmm), ``dv = P^T dO``; for
``O = P^T v``: ``dP = v dO^T``, ``dv = P dO``.

Limits / differences from the reference: fp32 uses IEEE ``tl.dot`` (``allow_tf32`` opt-in);
fp16/bf16 multiply in their dtype with fp32 accumulation. Transposed operands are loaded row-major
(coalesced) and transposed in registers (``tl.trans``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.ops_reference import jagged2_offsets
from shopml.jagged.triton._common import cdiv, configs, pow2
from shopml.jagged.triton.launch import FastLauncher

_MM_CONFIGS = configs(
    gpu=[
        {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32},
        {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32},
        {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 8},
        {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 8},
        {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 32},
    ],
    interpreter={"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32},
)
_PAD_CONFIGS = configs(
    gpu=[
        {"BLOCK_R": 16, "BLOCK_C": 64},
        {"BLOCK_R": 32, "BLOCK_C": 64},
        {"BLOCK_R": 16, "BLOCK_C": 128},
        {"BLOCK_R": 8, "BLOCK_C": 256},
    ],
    interpreter={"BLOCK_R": 32, "BLOCK_C": 32},
)


def _precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    return "tf32" if (dtype == torch.float32 and allow_tf32) else "ieee"


@triton.jit
def _jagged2_bmm_tile(
    x_ptr, y_ptr, out_ptr, r0, c0, seq_start, seq_len, used_len, base, D, stride_x_t, stride_y_t,
    INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    offs_r = r0 + tl.arange(0, BLOCK_M).to(tl.int64)
    offs_c = c0 + tl.arange(0, BLOCK_N).to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # acc += x[rows, k] @ y[cols, k]^T over D (y rows loaded row-major, transposed in registers).
    for k0 in range(0, D, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < D
        x = tl.load(
            x_ptr + (seq_start + offs_r)[:, None] * stride_x_t + offs_k[None, :],
            mask=(offs_r < used_len)[:, None] & mask_k[None, :],
            other=0.0,
        )
        y = tl.load(
            y_ptr + (seq_start + offs_c)[:, None] * stride_y_t + offs_k[None, :],
            mask=(offs_c < used_len)[:, None] & mask_k[None, :],
            other=0.0,
        )
        acc = tl.dot(x, tl.trans(y), acc, input_precision=INPUT_PRECISION)
    mask = (offs_r < seq_len)[:, None] & (offs_c < seq_len)[None, :]
    off = base + offs_r[:, None] * seq_len + offs_c[None, :]
    tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=_MM_CONFIGS, key=["M_BUCKET", "D_BUCKET"])
@triton.jit
def _jagged2_bmm_fwd_kernel(
    x_ptr,
    y_ptr,
    out_ptr,
    offsets_ptr,
    offsets2_ptr,
    max_seqlen,
    D,
    stride_x_t,
    stride_y_t,
    M_BUCKET,
    D_BUCKET,
    INPUT_PRECISION: tl.constexpr,
    GRID_STRIDE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    used_len = tl.minimum(seq_len, max_seqlen)
    base = tl.load(offsets2_ptr + pid_b).to(tl.int64)
    if GRID_STRIDE:
        # Truncation mode: cover the whole L x L block; entries past max_seqlen get 0.
        for r0 in range(pid_m * BLOCK_M, seq_len, tl.num_programs(0) * BLOCK_M):
            for c0 in range(pid_n * BLOCK_N, seq_len, tl.num_programs(1) * BLOCK_N):
                _jagged2_bmm_tile(
                    x_ptr, y_ptr, out_ptr, r0, c0, seq_start, seq_len, used_len, base, D,
                    stride_x_t, stride_y_t, INPUT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_K,
                )  # fmt: skip
    else:
        # One tile per program; tiles outside the L x L block exit at once.
        r0 = pid_m * BLOCK_M
        c0 = pid_n * BLOCK_N
        if (r0 < seq_len) & (c0 < seq_len):
            _jagged2_bmm_tile(
                x_ptr, y_ptr, out_ptr, r0, c0, seq_start, seq_len, used_len, base, D,
                stride_x_t, stride_y_t, INPUT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_K,
            )  # fmt: skip


@triton.jit
def _jagged2_matmul_tile(
    p_ptr, v_ptr, out_ptr, r0, seq_start, seq_len, used_len, base, offs_n, mask_n,
    stride_v_t, stride_out_t,
    TRANSPOSE: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    offs_r = r0 + tl.arange(0, BLOCK_M).to(tl.int64)
    mask_r = offs_r < used_len
    acc = tl.zeros((BLOCK_M, offs_n.shape[0]), dtype=tl.float32)
    # P[r, k] lives at base + r * L + k; P^T[r, k] = P[k, r] (loaded row-major, transposed).
    for k0 in range(0, used_len, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        mask_k = offs_k < used_len
        if TRANSPOSE:
            p = tl.trans(
                tl.load(
                    p_ptr + base + offs_k[:, None] * seq_len + offs_r[None, :],
                    mask=mask_k[:, None] & mask_r[None, :],
                    other=0.0,
                )
            )
        else:
            p = tl.load(
                p_ptr + base + offs_r[:, None] * seq_len + offs_k[None, :],
                mask=mask_r[:, None] & mask_k[None, :],
                other=0.0,
            )
        v = tl.load(
            v_ptr + (seq_start + offs_k)[:, None] * stride_v_t + offs_n[None, :],
            mask=mask_k[:, None] & mask_n[None, :],
            other=0.0,
        )
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=INPUT_PRECISION)
    tl.store(
        out_ptr + (seq_start + offs_r)[:, None] * stride_out_t + offs_n[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=(offs_r < seq_len)[:, None] & mask_n[None, :],
    )


@triton.autotune(configs=_MM_CONFIGS, key=["M_BUCKET", "D_BUCKET"])
@triton.jit
def _jagged2_matmul_fwd_kernel(
    p_ptr,
    v_ptr,
    out_ptr,
    offsets_ptr,
    offsets2_ptr,
    max_seqlen,
    D,
    stride_v_t,
    stride_out_t,
    M_BUCKET,
    D_BUCKET,
    TRANSPOSE: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    GRID_STRIDE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    used_len = tl.minimum(seq_len, max_seqlen)
    base = tl.load(offsets2_ptr + pid_b).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < D
    if GRID_STRIDE:
        # Truncation mode: all row blocks; rows past max_seqlen get 0.
        for r0 in range(pid_m * BLOCK_M, seq_len, tl.num_programs(0) * BLOCK_M):
            _jagged2_matmul_tile(
                p_ptr, v_ptr, out_ptr, r0, seq_start, seq_len, used_len, base, offs_n, mask_n,
                stride_v_t, stride_out_t, TRANSPOSE, INPUT_PRECISION, BLOCK_M, BLOCK_K,
            )  # fmt: skip
    else:
        r0 = pid_m * BLOCK_M
        if r0 < seq_len:
            _jagged2_matmul_tile(
                p_ptr, v_ptr, out_ptr, r0, seq_start, seq_len, used_len, base, offs_n, mask_n,
                stride_v_t, stride_out_t, TRANSPOSE, INPUT_PRECISION, BLOCK_M, BLOCK_K,
            )  # fmt: skip


@triton.autotune(configs=_PAD_CONFIGS, key=["N_BUCKET"])
@triton.jit
def _jagged2_to_padded_fwd_kernel(
    x_ptr,
    out_ptr,
    offsets_ptr,
    offsets2_ptr,
    pad_value,
    N,
    stride_out_b,
    stride_out_r,
    N_BUCKET,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    base = tl.load(offsets2_ptr + pid_b).to(tl.int64)
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    mask_r = offs_r < N
    for c0 in range(0, N, BLOCK_C):
        offs_c = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
        real = (offs_r < seq_len)[:, None] & (offs_c < seq_len)[None, :]
        x = tl.load(
            x_ptr + base + offs_r[:, None] * seq_len + offs_c[None, :], mask=real, other=pad_value
        )
        tl.store(
            out_ptr + pid_b * stride_out_b + offs_r[:, None] * stride_out_r + offs_c[None, :],
            x.to(out_ptr.dtype.element_ty),
            mask=mask_r[:, None] & (offs_c < N)[None, :],
        )


@triton.autotune(configs=_PAD_CONFIGS, key=["N_BUCKET"])
@triton.jit
def _padded_to_jagged2_fwd_kernel(
    dense_ptr,
    out_ptr,
    offsets_ptr,
    offsets2_ptr,
    N,
    stride_dense_b,
    stride_dense_r,
    N_BUCKET,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    base = tl.load(offsets2_ptr + pid_b).to(tl.int64)
    for r0 in range(pid_r * BLOCK_R, seq_len, tl.num_programs(0) * BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
        for c0 in range(0, seq_len, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
            inside = (offs_r < N)[:, None] & (offs_c < N)[None, :]
            x = tl.load(
                dense_ptr
                + pid_b * stride_dense_b
                + offs_r[:, None] * stride_dense_r
                + offs_c[None, :],
                mask=inside,
                other=0.0,
            )
            mask = (offs_r < seq_len)[:, None] & (offs_c < seq_len)[None, :]
            tl.store(out_ptr + base + offs_r[:, None] * seq_len + offs_c[None, :], x, mask=mask)


# launches through FastLauncher: Triton's autotuner and binder once per launch signature
_JAGGED2_BMM_FWD = FastLauncher(_jagged2_bmm_fwd_kernel)
_JAGGED2_MATMUL_FWD = FastLauncher(_jagged2_matmul_fwd_kernel)
_JAGGED2_TO_PADDED_FWD = FastLauncher(_jagged2_to_padded_fwd_kernel)
_PADDED_TO_JAGGED2_FWD = FastLauncher(_padded_to_jagged2_fwd_kernel)


def _jagged2_bmm_fwd(x, y, offsets, max_seqlen, total2, allow_tf32, truncate):
    x = x.contiguous()
    y = y.contiguous()
    out = torch.empty(total2, dtype=x.dtype, device=x.device)
    b = offsets.numel() - 1
    if total2 == 0:
        return out
    d = x.shape[1]
    if d == 0:
        return out.zero_()
    off2 = jagged2_offsets(offsets)

    def grid(meta):
        m = max(max_seqlen, 1)
        return (cdiv(m, meta["BLOCK_M"]), cdiv(m, meta["BLOCK_N"]), b)

    _JAGGED2_BMM_FWD[grid](
        x, y, out, offsets, off2, max_seqlen, d, x.stride(0), y.stride(0),
        pow2(max_seqlen), pow2(d), INPUT_PRECISION=_precision(x.dtype, allow_tf32),
        GRID_STRIDE=truncate,
    )  # fmt: skip
    return out


def _jagged2_matmul_fwd(p, v, offsets, max_seqlen, transpose, allow_tf32, truncate):
    p = p.contiguous()
    v = v.contiguous()
    t, d = v.shape
    out = torch.empty((t, d), dtype=v.dtype, device=v.device)
    b = offsets.numel() - 1
    if t == 0 or d == 0:
        return out
    off2 = jagged2_offsets(offsets)

    def grid(meta):
        return (
            cdiv(max(max_seqlen, 1), meta["BLOCK_M"]),
            cdiv(d, meta["BLOCK_N"]),
            b,
        )

    _JAGGED2_MATMUL_FWD[grid](
        p, v, out, offsets, off2, max_seqlen, d, v.stride(0), out.stride(0),
        pow2(max_seqlen), pow2(d), TRANSPOSE=transpose,
        INPUT_PRECISION=_precision(v.dtype, allow_tf32), GRID_STRIDE=truncate,
    )  # fmt: skip
    return out


def _jagged2_to_padded_fwd(x, offsets, max_len, pad_value):
    b = offsets.numel() - 1
    out = torch.empty((b, max_len, max_len), dtype=x.dtype, device=x.device)
    if b == 0 or max_len == 0:
        return out
    off2 = jagged2_offsets(offsets)

    def grid(meta):
        return (cdiv(max_len, meta["BLOCK_R"]), b)

    _JAGGED2_TO_PADDED_FWD[grid](
        x.contiguous(), out, offsets, off2, float(pad_value), max_len, out.stride(0), out.stride(1),
        pow2(max_len),
    )  # fmt: skip
    return out


def _padded_to_jagged2_fwd(dense, offsets, total2):
    b, n, _ = dense.shape
    out = torch.empty(total2, dtype=dense.dtype, device=dense.device)
    if total2 == 0:
        return out
    if n == 0:
        return out.zero_()
    dense = dense.contiguous()
    off2 = jagged2_offsets(offsets)

    def grid(meta):
        return (cdiv(n, meta["BLOCK_R"]), b)

    _PADDED_TO_JAGGED2_FWD[grid](
        dense, out, offsets, off2, n, dense.stride(0), dense.stride(1), pow2(n)
    )
    return out


class _Jagged2BmmFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, offsets, max_seqlen, total2, allow_tf32, truncate):
        ctx.save_for_backward(x, y, offsets)
        ctx.args = (max_seqlen, allow_tf32, truncate)
        return _jagged2_bmm_fwd(x, y, offsets, max_seqlen, total2, allow_tf32, truncate)

    @staticmethod
    def backward(ctx, ds):
        x, y, offsets = ctx.saved_tensors
        m, tf32, tr = ctx.args
        ds = ds.contiguous()
        dx = dy = None
        if ctx.needs_input_grad[0]:
            dx = _jagged2_matmul_fwd(ds, y, offsets, m, False, tf32, tr)
        if ctx.needs_input_grad[1]:
            dy = _jagged2_matmul_fwd(ds, x, offsets, m, True, tf32, tr)
        return dx, dy, None, None, None, None, None


class _Jagged2MatmulFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, v, offsets, max_seqlen, transpose, allow_tf32, truncate):
        ctx.save_for_backward(p, v, offsets)
        ctx.args = (max_seqlen, transpose, allow_tf32, truncate)
        return _jagged2_matmul_fwd(p, v, offsets, max_seqlen, transpose, allow_tf32, truncate)

    @staticmethod
    def backward(ctx, do):
        p, v, offsets = ctx.saved_tensors
        m, transpose, tf32, tr = ctx.args
        do = do.contiguous()
        dp = dv = None
        if ctx.needs_input_grad[0]:
            a, b = (v, do) if transpose else (do, v)
            dp = _jagged2_bmm_fwd(a, b, offsets, m, p.shape[0], tf32, tr)
        if ctx.needs_input_grad[1]:
            dv = _jagged2_matmul_fwd(p, do, offsets, m, not transpose, tf32, tr)
        return dp, dv, None, None, None, None, None


class _Jagged2ToPaddedFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offsets, max_len, pad_value):
        ctx.save_for_backward(offsets)
        ctx.total2 = x.shape[0]
        return _jagged2_to_padded_fwd(x, offsets, max_len, pad_value)

    @staticmethod
    def backward(ctx, g):
        (offsets,) = ctx.saved_tensors
        return _padded_to_jagged2_fwd(g, offsets, ctx.total2), None, None, None


def jagged2_bmm(
    x: torch.Tensor,
    y: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    total2: int,
    allow_tf32: bool = False,
    truncate: bool = False,
) -> torch.Tensor:
    """Triton ``S_i = x_i @ y_i^T`` as jagged2; see :func:`shopml.jagged.ops.jagged2_bmm`.

    ``truncate=True`` supports lengths above ``max_seqlen`` (entries past it get 0).
    """
    return _Jagged2BmmFunction.apply(x, y, offsets, max_seqlen, total2, allow_tf32, truncate)


def jagged2_matmul(
    p: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    transpose: bool = False,
    allow_tf32: bool = False,
    truncate: bool = False,
) -> torch.Tensor:
    """Triton ``O_i = P_i @ v_i``; see :func:`shopml.jagged.ops.jagged2_matmul`.

    ``truncate=True``: FBGEMM's cap (top-left ``max_seqlen`` block; later rows 0).
    """
    return _Jagged2MatmulFunction.apply(
        p, v, offsets, max_seqlen, bool(transpose), allow_tf32, truncate
    )


def jagged2_to_padded(
    x: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_value: float = 0.0
) -> torch.Tensor:
    """Triton jagged2 -> padded; see :func:`shopml.jagged.ops.jagged2_to_padded`."""
    return _Jagged2ToPaddedFunction.apply(x, offsets, max_len, pad_value)
