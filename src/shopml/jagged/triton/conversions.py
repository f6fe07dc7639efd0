"""Triton kernels: jagged <-> padded conversions (``jagged_to_padded``, ``padded_to_jagged``).

Algorithm: a pure copy. Trailing dims are flattened to D. ``jagged_to_padded`` writes every
position of the ``(B, N, D)`` output (real rows copied, the rest ``pad_value``) in one pass, so no
separate fill is needed. ``padded_to_jagged`` reads only real rows. Each is the other's backward (with ``pad_value = 0``).

Grid: ``(cdiv(N, BLOCK_N), B)``; each program loops over D in BLOCK_D chunks.

``padded_to_jagged`` programs loop over their sequence's rows with a grid stride, so rows at
positions >= N (possible only with content checks off, or in the backward of a truncating
``jagged_to_padded``) are written as zeros, as in the reference.

Limits: floating dtypes only (integer tensors use the reference).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.triton._common import cdiv, configs, flat2d, pow2
from shopml.jagged.triton.launch import FastLauncher

_CONFIGS = configs(
    gpu=[
        {"BLOCK_N": 16, "BLOCK_D": 128},
        {"BLOCK_N": 32, "BLOCK_D": 64},
        {"BLOCK_N": 32, "BLOCK_D": 128},
        {"BLOCK_N": 64, "BLOCK_D": 64},
        {"BLOCK_N": 8, "BLOCK_D": 256},
    ],
    interpreter={"BLOCK_N": 16, "BLOCK_D": 32},
)


@triton.autotune(configs=_CONFIGS, key=["N_BUCKET", "D_BUCKET"])
@triton.jit
def _jagged_to_padded_fwd_kernel(
    values_ptr,
    offsets_ptr,
    out_ptr,
    pad_value,
    N,
    D,
    stride_values_t,
    stride_out_b,
    stride_out_n,
    N_BUCKET,
    D_BUCKET,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    # Step 1: the sequence's bounds, int64 before any stride arithmetic.
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_end = tl.load(offsets_ptr + pid_b + 1).to(tl.int64)
    seq_len = tl.minimum(seq_end - seq_start, N)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    mask_n = offs_n < N
    mask_real = offs_n < seq_len
    # Step 2: copy real rows, write pad_value elsewhere, one D chunk at a time.
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        src = values_ptr + (seq_start + offs_n)[:, None] * stride_values_t + offs_d[None, :]
        x = tl.load(src, mask=mask_real[:, None] & mask_d[None, :], other=pad_value)
        dst = out_ptr + pid_b * stride_out_b + offs_n[:, None] * stride_out_n + offs_d[None, :]
        tl.store(dst, x.to(out_ptr.dtype.element_ty), mask=mask_n[:, None] & mask_d[None, :])


@triton.autotune(configs=_CONFIGS, key=["N_BUCKET", "D_BUCKET"])
@triton.jit
def _padded_to_jagged_fwd_kernel(
    dense_ptr,
    offsets_ptr,
    out_ptr,
    N,
    D,
    stride_dense_b,
    stride_dense_n,
    stride_out_t,
    N_BUCKET,
    D_BUCKET,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    # Grid-stride over the sequence's rows: programs past its end do nothing; rows at
    # positions >= N (possible only with content checks off) are written as zeros.
    step = tl.num_programs(0) * BLOCK_N
    for row0 in range(pid_n * BLOCK_N, seq_len, step):
        offs_n = row0 + tl.arange(0, BLOCK_N).to(tl.int64)
        mask_n = offs_n < seq_len
        mask_in = offs_n < N
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            mask_d = (offs_d < D)[None, :]
            src = (
                dense_ptr
                + pid_b * stride_dense_b
                + offs_n[:, None] * stride_dense_n
                + offs_d[None, :]
            )
            x = tl.load(src, mask=mask_in[:, None] & mask_d, other=0.0)
            dst = out_ptr + (seq_start + offs_n)[:, None] * stride_out_t + offs_d[None, :]
            tl.store(dst, x, mask=mask_n[:, None] & mask_d)


# launches through FastLauncher: Triton's autotuner and binder once per launch signature
_JAGGED_TO_PADDED_FWD = FastLauncher(_jagged_to_padded_fwd_kernel)
_PADDED_TO_JAGGED_FWD = FastLauncher(_padded_to_jagged_fwd_kernel)


def _jagged_to_padded_fwd(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_value: float
) -> torch.Tensor:
    b = offsets.numel() - 1
    rest = values.shape[1:]
    v2, d = flat2d(values, values.shape[0])
    out = torch.empty((b, max_len, d), dtype=values.dtype, device=values.device)
    if b > 0 and max_len > 0 and d > 0:

        def grid(meta):
            return (cdiv(max_len, meta["BLOCK_N"]), b)

        _JAGGED_TO_PADDED_FWD[grid](
            v2, offsets, out, float(pad_value), max_len, d,
            v2.stride(0), out.stride(0), out.stride(1),
            pow2(max_len), pow2(d),
        )  # fmt: skip
    return out.view(b, max_len, *rest)


def _padded_to_jagged_fwd(dense: torch.Tensor, offsets: torch.Tensor, total: int) -> torch.Tensor:
    b, n = dense.shape[:2]
    rest = dense.shape[2:]
    d = 1
    for size in rest:
        d *= size
    d3 = dense.contiguous().view(b, n, d)
    out = torch.empty((total, d), dtype=dense.dtype, device=dense.device)
    if n == 0:
        out.zero_()
    elif b > 0 and d > 0 and total > 0:

        def grid(meta):
            return (cdiv(n, meta["BLOCK_N"]), b)

        _PADDED_TO_JAGGED_FWD[grid](
            d3, offsets, out, n, d,
            d3.stride(0), d3.stride(1), out.stride(0),
            pow2(n), pow2(d),
        )  # fmt: skip
    return out.view(total, *rest)


class _JaggedToPaddedFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, offsets, max_len, pad_value):
        ctx.save_for_backward(offsets)
        ctx.total = values.shape[0]
        return _jagged_to_padded_fwd(values, offsets, max_len, pad_value)

    @staticmethod
    def backward(ctx, grad_out):
        (offsets,) = ctx.saved_tensors
        # Rows truncated by max_len get zero gradient (written by the kernel).
        grad = _padded_to_jagged_fwd(grad_out, offsets, ctx.total)
        return grad, None, None, None


class _PaddedToJaggedFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dense, offsets, total):
        ctx.save_for_backward(offsets)
        ctx.n = dense.shape[1]
        return _padded_to_jagged_fwd(dense, offsets, total)

    @staticmethod
    def backward(ctx, grad_out):
        (offsets,) = ctx.saved_tensors
        return _jagged_to_padded_fwd(grad_out, offsets, ctx.n, 0.0), None, None


def jagged_to_padded(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_value: float = 0.0
) -> torch.Tensor:
    """Triton ``(T, ...) -> (B, max_len, ...)``; see :func:`shopml.jagged.ops.jagged_to_padded`."""
    return _JaggedToPaddedFunction.apply(values, offsets, max_len, pad_value)


def padded_to_jagged(dense: torch.Tensor, offsets: torch.Tensor, total: int) -> torch.Tensor:
    """Triton ``(B, N, ...) -> (T, ...)``; see :func:`shopml.jagged.ops.padded_to_jagged`."""
    return _PaddedToJaggedFunction.apply(dense, offsets, total)
