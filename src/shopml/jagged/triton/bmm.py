"""Triton kernels: jagged x dense and jagged x jagged batched matmuls, forward and backward.

Algorithms (per sequence i with rows ``x_i = x[offsets[i]:offsets[i+1]]``):

- ``jagged_dense_bmm``: ``out_i = x_i @ y_i``; x ``(T, K)``, y ``(B, K, N)`` (any strides), out
  ``(T, N)``. Grid ``(cdiv(max_seqlen, BLOCK_M), cdiv(N, BLOCK_N), B)``; each program owns a
  BLOCK_M x BLOCK_N output tile, loops over K in BLOCK_K chunks with ``tl.dot`` (fp32 accumulator)
  and exits at once if its rows start past the sequence's end. With ``truncate=True`` (the FBGEMM
  compat path) programs instead grid-stride over all of the sequence's row blocks, so rows at
  positions ``>= max_seqlen`` get zeros.
- ``jagged_jagged_bmm``: ``out_i = x_i^T @ y_i``; x ``(T, D)``, y ``(T, N)``, out ``(B, D, N)``.
  Grid ``(cdiv(D, BLOCK_M), cdiv(N, BLOCK_N), B)``; each program reduces over the sequence's rows
  (the first ``max_seqlen``) in BLOCK_K chunks; an empty sequence writes zeros.

Backward reuses the two kernels through strided (transposed) views, no copies:
``d(x) = jdb(dout, y^T)``, ``d(y) = jjb(x, dout)`` for ``jagged_dense_bmm`` and
``d(x) = jdb(y, dout^T)``, ``d(y) = jdb(x, dout)`` for ``jagged_jagged_bmm``.

Limits / differences from the reference: fp32 inputs use IEEE fp32 ``tl.dot`` unless
``allow_tf32=True`` (then TF32 on GPU); fp16/bf16 multiply in their dtype and accumulate in fp32
(the reference upcasts first). Offsets are cast to int64 before stride arithmetic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.triton._common import cdiv, configs, pow2
from shopml.jagged.triton.launch import FastLauncher

_CONFIGS = configs(
    gpu=[
        {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32},
        {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8},
        {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 8},
        {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 64},
        {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8, "num_stages": 3},
        {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 64, "num_stages": 3},
    ],
    interpreter={"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32},
)


def _precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    return "tf32" if (dtype == torch.float32 and allow_tf32) else "ieee"


@triton.jit
def _jagged_dense_bmm_tile(
    x_ptr, y_base, out_ptr, row0, seq_start, seq_len, used_len, offs_n, mask_n, K,
    stride_x_t, stride_x_k, stride_y_k, stride_y_n, stride_out_t, stride_out_n,
    INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    offs_m = row0 + tl.arange(0, BLOCK_M).to(tl.int64)
    mask_used = offs_m < used_len
    acc = tl.zeros((BLOCK_M, offs_n.shape[0]), dtype=tl.float32)
    # acc += x_tile @ y_tile over K (rows past max_seqlen load as 0, so they store 0).
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        x = tl.load(
            x_ptr + (seq_start + offs_m)[:, None] * stride_x_t + offs_k[None, :] * stride_x_k,
            mask=mask_used[:, None] & mask_k[None, :],
            other=0.0,
        )
        y = tl.load(
            y_base + offs_k[:, None] * stride_y_k + offs_n[None, :] * stride_y_n,
            mask=mask_k[:, None] & mask_n[None, :],
            other=0.0,
        )
        acc = tl.dot(x, y, acc, input_precision=INPUT_PRECISION)
    out = out_ptr + (seq_start + offs_m)[:, None] * stride_out_t + offs_n[None, :] * stride_out_n
    tl.store(
        out, acc.to(out_ptr.dtype.element_ty), mask=(offs_m < seq_len)[:, None] & mask_n[None, :]
    )


@triton.autotune(configs=_CONFIGS, key=["M_BUCKET", "K_BUCKET", "N_BUCKET"])
@triton.jit
def _jagged_dense_bmm_fwd_kernel(
    x_ptr,
    y_ptr,
    out_ptr,
    offsets_ptr,
    max_seqlen,
    K,
    N,
    stride_x_t,
    stride_x_k,
    stride_y_b,
    stride_y_k,
    stride_y_n,
    stride_out_t,
    stride_out_n,
    M_BUCKET,
    K_BUCKET,
    N_BUCKET,
    INPUT_PRECISION: tl.constexpr,
    GRID_STRIDE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    # Step 1: sequence bounds, int64 before any stride multiplication.
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    used_len = tl.minimum(seq_len, max_seqlen)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    y_base = y_ptr + pid_b * stride_y_b
    if GRID_STRIDE:
        # Step 2 (truncation mode): grid-stride over all row blocks, so rows past max_seqlen
        # (FBGEMM truncation) are written as zeros.
        for row0 in range(pid_m * BLOCK_M, seq_len, tl.num_programs(0) * BLOCK_M):
            _jagged_dense_bmm_tile(
                x_ptr, y_base, out_ptr, row0, seq_start, seq_len, used_len, offs_n, mask_n, K,
                stride_x_t, stride_x_k, stride_y_k, stride_y_n, stride_out_t, stride_out_n,
                INPUT_PRECISION, BLOCK_M, BLOCK_K,
            )  # fmt: skip
    else:
        # Step 2: one tile per program; programs past the sequence's end exit.
        row0 = pid_m * BLOCK_M
        if row0 < seq_len:
            _jagged_dense_bmm_tile(
                x_ptr, y_base, out_ptr, row0, seq_start, seq_len, used_len, offs_n, mask_n, K,
                stride_x_t, stride_x_k, stride_y_k, stride_y_n, stride_out_t, stride_out_n,
                INPUT_PRECISION, BLOCK_M, BLOCK_K,
            )  # fmt: skip


@triton.autotune(configs=_CONFIGS, key=["M_BUCKET", "K_BUCKET", "N_BUCKET"])
@triton.jit
def _jagged_jagged_bmm_fwd_kernel(
    x_ptr,
    y_ptr,
    out_ptr,
    offsets_ptr,
    max_seqlen,
    D,
    N,
    stride_x_t,
    stride_x_d,
    stride_y_t,
    stride_y_n,
    stride_out_b,
    stride_out_d,
    stride_out_n,
    M_BUCKET,
    K_BUCKET,
    N_BUCKET,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    used_len = tl.minimum(seq_len, max_seqlen)
    offs_d = pid_d * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_d = offs_d < D
    mask_n = offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # Reduce over the sequence's rows: acc += x_rows^T @ y_rows.
    for k0 in range(0, used_len, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        mask_k = offs_k < used_len
        rows = seq_start + offs_k
        x = tl.load(
            x_ptr + rows[:, None] * stride_x_t + offs_d[None, :] * stride_x_d,
            mask=mask_k[:, None] & mask_d[None, :],
            other=0.0,
        )  # (BLOCK_K, BLOCK_M), row-major rows; transposed in registers for the dot
        y = tl.load(
            y_ptr + rows[:, None] * stride_y_t + offs_n[None, :] * stride_y_n,
            mask=mask_k[:, None] & mask_n[None, :],
            other=0.0,
        )
        acc = tl.dot(tl.trans(x), y, acc, input_precision=INPUT_PRECISION)
    out = (
        out_ptr
        + pid_b * stride_out_b
        + offs_d[:, None] * stride_out_d
        + offs_n[None, :] * stride_out_n
    )
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask_d[:, None] & mask_n[None, :])


# launches through FastLauncher: Triton's autotuner and binder once per launch signature
_JAGGED_DENSE_BMM_FWD = FastLauncher(_jagged_dense_bmm_fwd_kernel)
_JAGGED_JAGGED_BMM_FWD = FastLauncher(_jagged_jagged_bmm_fwd_kernel)


def _jagged_dense_bmm_fwd(
    x: torch.Tensor,
    offsets: torch.Tensor,
    y: torch.Tensor,
    max_seqlen: int,
    allow_tf32: bool,
    truncate: bool,
) -> torch.Tensor:
    t, k = x.shape
    b, _, n = y.shape
    out = torch.empty((t, n), dtype=x.dtype, device=x.device)
    if t == 0 or n == 0:
        return out
    if k == 0 or b == 0:
        return out.zero_()

    def grid(meta):
        return (
            cdiv(max(max_seqlen, 1), meta["BLOCK_M"]),
            cdiv(n, meta["BLOCK_N"]),
            b,
        )

    _JAGGED_DENSE_BMM_FWD[grid](
        x, y, out, offsets, max_seqlen, k, n,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1), y.stride(2),
        out.stride(0), out.stride(1),
        pow2(max_seqlen), pow2(k), pow2(n),
        INPUT_PRECISION=_precision(x.dtype, allow_tf32), GRID_STRIDE=truncate,
    )  # fmt: skip
    return out


def _jagged_jagged_bmm_fwd(
    x: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor, max_seqlen: int, allow_tf32: bool
) -> torch.Tensor:
    d = x.shape[1]
    n = y.shape[1]
    b = offsets.numel() - 1
    out = torch.empty((b, d, n), dtype=x.dtype, device=x.device)
    if b == 0 or d == 0 or n == 0:
        return out

    def grid(meta):
        return (cdiv(d, meta["BLOCK_M"]), cdiv(n, meta["BLOCK_N"]), b)

    _JAGGED_JAGGED_BMM_FWD[grid](
        x, y, out, offsets, max_seqlen, d, n,
        x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        out.stride(0), out.stride(1), out.stride(2),
        pow2(d), pow2(max_seqlen), pow2(n),
        INPUT_PRECISION=_precision(x.dtype, allow_tf32),
    )  # fmt: skip
    return out


class _JaggedDenseBmmFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offsets, y, max_seqlen, allow_tf32, truncate):
        ctx.save_for_backward(x, offsets, y)
        ctx.args = (max_seqlen, allow_tf32, truncate)
        return _jagged_dense_bmm_fwd(x, offsets, y, max_seqlen, allow_tf32, truncate)

    @staticmethod
    def backward(ctx, grad_out):
        x, offsets, y = ctx.saved_tensors
        m, tf32, truncate = ctx.args
        grad_out = grad_out.contiguous()
        dx = dy = None
        if ctx.needs_input_grad[0]:
            dx = _jagged_dense_bmm_fwd(grad_out, offsets, y.transpose(1, 2), m, tf32, truncate)
        if ctx.needs_input_grad[2]:
            dy = _jagged_jagged_bmm_fwd(x, grad_out, offsets, m, tf32)
        return dx, None, dy, None, None, None


class _JaggedJaggedBmmFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, offsets, max_seqlen, allow_tf32, truncate):
        ctx.save_for_backward(x, y, offsets)
        ctx.args = (max_seqlen, allow_tf32, truncate)
        return _jagged_jagged_bmm_fwd(x, y, offsets, max_seqlen, allow_tf32)

    @staticmethod
    def backward(ctx, grad_out):
        x, y, offsets = ctx.saved_tensors
        m, tf32, truncate = ctx.args
        dx = dy = None
        if ctx.needs_input_grad[0]:
            dx = _jagged_dense_bmm_fwd(y, offsets, grad_out.transpose(1, 2), m, tf32, truncate)
        if ctx.needs_input_grad[1]:
            dy = _jagged_dense_bmm_fwd(x, offsets, grad_out, m, tf32, truncate)
        return dx, dy, None, None, None, None


def jagged_dense_bmm(
    x: torch.Tensor,
    offsets: torch.Tensor,
    y: torch.Tensor,
    max_seqlen: int,
    allow_tf32: bool = False,
    truncate: bool = False,
) -> torch.Tensor:
    """Triton ``out_i = x_i @ y_i``; see :func:`shopml.jagged.ops.jagged_dense_bmm`.

    ``truncate=True`` supports lengths above ``max_seqlen`` (FBGEMM's truncation: those rows get
    0); otherwise every length must be <= ``max_seqlen`` (rows past it are left unwritten).
    """
    return _JaggedDenseBmmFunction.apply(x, offsets, y, max_seqlen, allow_tf32, truncate)


def jagged_jagged_bmm(
    x: torch.Tensor,
    y: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    allow_tf32: bool = False,
    truncate: bool = False,
) -> torch.Tensor:
    """Triton ``out_i = x_i^T @ y_i``; see :func:`shopml.jagged.ops.jagged_jagged_bmm`.

    ``truncate=True``: rows past ``max_seqlen`` are ignored and get zero gradients (FBGEMM).
    """
    return _JaggedJaggedBmmFunction.apply(x, y, offsets, max_seqlen, allow_tf32, truncate)
