"""Triton kernels: ``jagged_sum`` and ``jagged_mean`` (per-sequence pooling), forward and backward.

Forward: x ``(T, D)`` -> ``(B, D)``. Grid ``(cdiv(D, BLOCK_D), B)``; each program streams its
sequence's rows in BLOCK_M chunks into a ``(BLOCK_M, BLOCK_D)`` fp32 accumulator, reduces it once
at the end, and divides by ``max(L_i, 1)`` for the mean. An empty sequence writes 0.

Backward: ``dx[row] = dout[i] (/ L_i)``. Grid ``(cdiv(D, BLOCK_D), B, S)`` with S sized from the
mean length; row blocks are grid-strided over the sequence, so programs past its end do nothing.

Differences from the reference (``index_add``): summation order (blocked here), fp32 either way.
Trailing dims of x are flattened into D.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.triton._common import cdiv, configs, flat2d, pow2
from shopml.jagged.triton.launch import FastLauncher

_CONFIGS = configs(
    gpu=[
        {"BLOCK_M": 32, "BLOCK_D": 64},
        {"BLOCK_M": 16, "BLOCK_D": 128},
        {"BLOCK_M": 64, "BLOCK_D": 64, "num_warps": 8},
        {"BLOCK_M": 8, "BLOCK_D": 256},
    ],
    interpreter={"BLOCK_M": 32, "BLOCK_D": 32},
)


@triton.autotune(configs=_CONFIGS, key=["M_BUCKET", "D_BUCKET"])
@triton.jit
def _jagged_sum_fwd_kernel(
    x_ptr,
    out_ptr,
    offsets_ptr,
    D,
    stride_x_t,
    stride_out_b,
    M_BUCKET,
    D_BUCKET,
    MEAN: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for row0 in range(0, seq_len, BLOCK_M):
        offs_m = row0 + tl.arange(0, BLOCK_M).to(tl.int64)
        mask = (offs_m < seq_len)[:, None] & mask_d[None, :]
        x = tl.load(
            x_ptr + (seq_start + offs_m)[:, None] * stride_x_t + offs_d[None, :],
            mask=mask,
            other=0.0,
        )
        acc += x.to(tl.float32)
    total = tl.sum(acc, axis=0)
    if MEAN:
        total = total / tl.maximum(seq_len, 1).to(tl.float32)
    tl.store(
        out_ptr + pid_b * stride_out_b + offs_d, total.to(out_ptr.dtype.element_ty), mask=mask_d
    )


@triton.autotune(configs=_CONFIGS, key=["M_BUCKET", "D_BUCKET"])
@triton.jit
def _jagged_sum_bwd_kernel(
    g_ptr,
    dx_ptr,
    offsets_ptr,
    D,
    stride_g_b,
    stride_dx_t,
    M_BUCKET,
    D_BUCKET,
    MEAN: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    g = tl.load(g_ptr + pid_b * stride_g_b + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if MEAN:
        g = g / tl.maximum(seq_len, 1).to(tl.float32)
    tile = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32) + g[None, :]
    for row0 in range(pid_s * BLOCK_M, seq_len, tl.num_programs(2) * BLOCK_M):
        offs_m = row0 + tl.arange(0, BLOCK_M).to(tl.int64)
        mask = (offs_m < seq_len)[:, None] & mask_d[None, :]
        tl.store(
            dx_ptr + (seq_start + offs_m)[:, None] * stride_dx_t + offs_d[None, :],
            tile.to(dx_ptr.dtype.element_ty),
            mask=mask,
        )


# launches through FastLauncher: Triton's autotuner and binder once per launch signature
_JAGGED_SUM_FWD = FastLauncher(_jagged_sum_fwd_kernel)
_JAGGED_SUM_BWD = FastLauncher(_jagged_sum_bwd_kernel)


class _JaggedSumFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offsets, mean):
        t = x.shape[0]
        rest = x.shape[1:]
        x2, d = flat2d(x, t)
        b = offsets.numel() - 1
        out = torch.empty((b, d), dtype=x.dtype, device=x.device)
        mean_len = t // max(b, 1)
        if b > 0 and d > 0:

            def grid(meta):
                return (cdiv(d, meta["BLOCK_D"]), b)

            _JAGGED_SUM_FWD[grid](
                x2,
                out,
                offsets,
                d,
                x2.stride(0),
                out.stride(0),
                pow2(mean_len),
                pow2(d),
                MEAN=mean,
            )
        ctx.save_for_backward(offsets)
        ctx.shape = (t, d, rest, mean_len)
        ctx.mean = mean
        return out.view(b, *rest)

    @staticmethod
    def backward(ctx, grad_out):
        (offsets,) = ctx.saved_tensors
        t, d, rest, mean_len = ctx.shape
        b = offsets.numel() - 1
        g = grad_out.contiguous().view(b, d)
        dx = torch.empty((t, d), dtype=grad_out.dtype, device=grad_out.device)
        if t > 0 and d > 0:

            def grid(meta):
                return (
                    cdiv(d, meta["BLOCK_D"]),
                    b,
                    cdiv(max(mean_len, 1), meta["BLOCK_M"]),
                )

            _JAGGED_SUM_BWD[grid](
                g,
                dx,
                offsets,
                d,
                g.stride(0),
                dx.stride(0),
                pow2(mean_len),
                pow2(d),
                MEAN=ctx.mean,
            )
        return dx.view(t, *rest), None, None


def jagged_sum(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Triton per-sequence sum; see :func:`shopml.jagged.ops.jagged_sum`."""
    return _JaggedSumFunction.apply(x, offsets, False)


def jagged_mean(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Triton per-sequence mean; see :func:`shopml.jagged.ops.jagged_mean`."""
    return _JaggedSumFunction.apply(x, offsets, True)
