"""Triton kernels: elementwise jagged ops (``jagged_dense_add``, ``jagged2_mul_dense``,
``jagged_pairwise_diff``), forward and backward.

- ``jagged_dense_add``: ``out[offsets[i] + j] = x[offsets[i] + j] + y[i, j]``; x ``(T, D)``, y
  ``(B, N, D)``. Grid ``(cdiv(N, BLOCK_M), B)``, row blocks grid-strided over L_i (rows at
  positions ``>= N``, possible only with content checks off, get ``x``), D looped in BLOCK_D
  chunks. Backward: ``dx = dout``, ``dy = jagged_to_padded(dout, N)``.
- ``jagged2_mul_dense``: jagged2 x ``(sum L_i^2,)`` times ``y[:L_i, :L_i]`` of y ``(N, N)``. Grid
  ``(cdiv(N, BLOCK_R), B)``, a program owns BLOCK_R rows of one matrix and loops over columns.
  Backward: ``dx = dout * y`` (same kernel) and ``dy[r, c] = sum_i dout_i[r, c] * x_i[r, c]``,
  accumulated with fp32 atomics (the order of additions, hence the last bits, is not fixed).
- ``jagged_pairwise_diff``: jagged2 ``out_i[p, q] = a_i[p] - b_i[q]``. Same grid shape, sized
  from the mean length (rows are grid-strided, so any grid size is correct). Backward:
  ``da_i[p] = sum_q dout_i[p, q]``, ``db_i[q] = -sum_p dout_i[p, q]`` by one row/column reduction
  kernel.

All math in fp32, results cast to the output dtype. Offsets cast to int64 before strides.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from shopml.jagged.ops_reference import jagged2_offsets
from shopml.jagged.triton._common import cdiv, configs, pow2
from shopml.jagged.triton.conversions import jagged_to_padded
from shopml.jagged.triton.launch import FastLauncher

_ADD_CONFIGS = configs(
    gpu=[
        {"BLOCK_M": 16, "BLOCK_D": 128},
        {"BLOCK_M": 32, "BLOCK_D": 64},
        {"BLOCK_M": 32, "BLOCK_D": 128, "num_warps": 8},
        {"BLOCK_M": 8, "BLOCK_D": 256},
    ],
    interpreter={"BLOCK_M": 32, "BLOCK_D": 32},
)
_J2_CONFIGS = configs(
    gpu=[
        {"BLOCK_R": 16, "BLOCK_C": 64},
        {"BLOCK_R": 32, "BLOCK_C": 64},
        {"BLOCK_R": 16, "BLOCK_C": 128},
        {"BLOCK_R": 64, "BLOCK_C": 64, "num_warps": 8},
    ],
    interpreter={"BLOCK_R": 32, "BLOCK_C": 32},
)


@triton.autotune(configs=_ADD_CONFIGS, key=["N_BUCKET", "D_BUCKET"])
@triton.jit
def _jagged_dense_add_fwd_kernel(
    x_ptr,
    y_ptr,
    out_ptr,
    offsets_ptr,
    N,
    D,
    stride_x_t,
    stride_y_b,
    stride_y_n,
    stride_out_t,
    N_BUCKET,
    D_BUCKET,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    for row0 in range(pid_m * BLOCK_M, seq_len, tl.num_programs(0) * BLOCK_M):
        offs_m = row0 + tl.arange(0, BLOCK_M).to(tl.int64)
        mask_m = offs_m < seq_len
        mask_y = offs_m < N
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            mask_d = (offs_d < D)[None, :]
            rows = (seq_start + offs_m)[:, None]
            x = tl.load(
                x_ptr + rows * stride_x_t + offs_d[None, :],
                mask=mask_m[:, None] & mask_d,
                other=0.0,
            )
            y = tl.load(
                y_ptr + pid_b * stride_y_b + offs_m[:, None] * stride_y_n + offs_d[None, :],
                mask=mask_y[:, None] & mask_d,
                other=0.0,
            )
            out = x.to(tl.float32) + y.to(tl.float32)
            tl.store(
                out_ptr + rows * stride_out_t + offs_d[None, :],
                out.to(out_ptr.dtype.element_ty),
                mask=mask_m[:, None] & mask_d,
            )


@triton.autotune(configs=_J2_CONFIGS, key=["N_BUCKET"], reset_to_zero=["dy_ptr"])
@triton.jit
def _jagged2_mul_dense_kernel(
    x_ptr,
    y_ptr,
    out_ptr,
    g_ptr,
    dy_ptr,
    offsets_ptr,
    offsets2_ptr,
    N,
    stride_y_r,
    N_BUCKET,
    COMPUTE_DY: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # Forward: out = x * y[r, c]. Backward (COMPUTE_DY): out = g * y[r, c] (= dx) and
    # dy[r, c] += g * x, with x_ptr holding the forward input.
    pid_r = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    base = tl.load(offsets2_ptr + pid_b).to(tl.int64)
    for r0 in range(pid_r * BLOCK_R, seq_len, tl.num_programs(0) * BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
        mask_r = offs_r < seq_len
        for c0 in range(0, seq_len, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
            mask = mask_r[:, None] & (offs_c < seq_len)[None, :]
            off = base + offs_r[:, None] * seq_len + offs_c[None, :]
            y = tl.load(
                y_ptr + offs_r[:, None] * stride_y_r + offs_c[None, :], mask=mask, other=0.0
            )
            x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
            if COMPUTE_DY:
                g = tl.load(g_ptr + off, mask=mask, other=0.0).to(tl.float32)
                tl.store(
                    out_ptr + off, (g * y.to(tl.float32)).to(out_ptr.dtype.element_ty), mask=mask
                )
                tl.atomic_add(
                    dy_ptr + offs_r[:, None] * stride_y_r + offs_c[None, :], g * x, mask=mask
                )
            else:
                tl.store(
                    out_ptr + off, (x * y.to(tl.float32)).to(out_ptr.dtype.element_ty), mask=mask
                )


@triton.autotune(configs=_J2_CONFIGS, key=["N_BUCKET"])
@triton.jit
def _jagged_pairwise_diff_fwd_kernel(
    a_ptr,
    b_ptr,
    out_ptr,
    offsets_ptr,
    offsets2_ptr,
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
        mask_r = offs_r < seq_len
        a = tl.load(a_ptr + seq_start + offs_r, mask=mask_r, other=0.0).to(tl.float32)
        for c0 in range(0, seq_len, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
            mask_c = offs_c < seq_len
            b = tl.load(b_ptr + seq_start + offs_c, mask=mask_c, other=0.0).to(tl.float32)
            out = a[:, None] - b[None, :]
            off = base + offs_r[:, None] * seq_len + offs_c[None, :]
            tl.store(
                out_ptr + off,
                out.to(out_ptr.dtype.element_ty),
                mask=mask_r[:, None] & mask_c[None, :],
            )


@triton.autotune(configs=_J2_CONFIGS, key=["N_BUCKET"])
@triton.jit
def _jagged2_reduce_kernel(
    g_ptr,
    out_ptr,
    offsets_ptr,
    offsets2_ptr,
    scale,
    N_BUCKET,
    TRANSPOSE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # out[seq_start + lane] = scale * sum over the other axis of the lane's row (or column).
    pid_r = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    base = tl.load(offsets2_ptr + pid_b).to(tl.int64)
    if TRANSPOSE:
        stride_lane = 1
        stride_red = seq_len
    else:
        stride_lane = seq_len
        stride_red = 1
    for l0 in range(pid_r * BLOCK_R, seq_len, tl.num_programs(0) * BLOCK_R):
        offs_l = l0 + tl.arange(0, BLOCK_R).to(tl.int64)
        mask_l = offs_l < seq_len
        acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
        for c0 in range(0, seq_len, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
            mask = mask_l[:, None] & (offs_c < seq_len)[None, :]
            g = tl.load(
                g_ptr + base + offs_l[:, None] * stride_lane + offs_c[None, :] * stride_red,
                mask=mask,
                other=0.0,
            )
            acc += tl.sum(g.to(tl.float32), axis=1)
        tl.store(
            out_ptr + seq_start + offs_l, (acc * scale).to(out_ptr.dtype.element_ty), mask=mask_l
        )


def _rows_grid(rows: int, b: int):
    def grid(meta):
        return (cdiv(max(rows, 1), meta["BLOCK_R"]), b)

    return grid


def _mean_len(total2: int, b: int) -> int:
    return max(1, math.isqrt(total2 // max(b, 1)))


# launches through FastLauncher: Triton's autotuner and binder once per launch signature
_JAGGED_DENSE_ADD_FWD = FastLauncher(_jagged_dense_add_fwd_kernel)
_JAGGED2_MUL_DENSE = FastLauncher(_jagged2_mul_dense_kernel)
_JAGGED2_REDUCE = FastLauncher(_jagged2_reduce_kernel)
_JAGGED_PAIRWISE_DIFF_FWD = FastLauncher(_jagged_pairwise_diff_fwd_kernel)


class _JaggedDenseAddFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offsets, y):
        x = x.contiguous()
        y = y.contiguous()
        t, d = x.shape
        b, n, _ = y.shape
        out = torch.empty_like(x)
        if t > 0 and d > 0:

            def grid(meta):
                return (cdiv(max(n, 1), meta["BLOCK_M"]), b)

            _JAGGED_DENSE_ADD_FWD[grid](
                x, y, out, offsets, n, d, x.stride(0), y.stride(0), y.stride(1), out.stride(0),
                pow2(n), pow2(d),
            )  # fmt: skip
        ctx.save_for_backward(offsets)
        ctx.n = n
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (offsets,) = ctx.saved_tensors
        dy = None
        if ctx.needs_input_grad[2]:
            dy = jagged_to_padded(grad_out.contiguous(), offsets, ctx.n, 0.0)
        return grad_out, None, dy


def _mul_launch(x, y, out, g, dy, offsets, compute_dy):
    n = y.shape[0]
    b = offsets.numel() - 1
    off2 = jagged2_offsets(offsets)
    _JAGGED2_MUL_DENSE[_rows_grid(n, b)](
        x, y, out, g, dy, offsets, off2, n, y.stride(0), pow2(n), COMPUTE_DY=compute_dy
    )


class _Jagged2MulDenseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offsets, y):
        x = x.contiguous()
        y = y.contiguous()
        out = torch.empty_like(x)
        if x.numel() > 0:  # g and dy unused; dy is zeroed by a tuning launch: not x, but out
            _mul_launch(x, y, out, out, out, offsets, False)
        ctx.save_for_backward(x, offsets, y)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, offsets, y = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        dx = torch.empty_like(x)
        dy32 = torch.zeros(y.shape, dtype=torch.float32, device=y.device)
        if x.numel() > 0:
            _mul_launch(x, y, dx, grad_out, dy32, offsets, True)
        return dx, None, dy32.to(y.dtype)


def _reduce(g, offsets, t, dtype, scale, transpose, total2):
    out = torch.empty(t, dtype=dtype, device=g.device)
    if t == 0:
        return out
    b = offsets.numel() - 1
    off2 = jagged2_offsets(offsets)
    _JAGGED2_REDUCE[_rows_grid(_mean_len(total2, b), b)](
        g, out, offsets, off2, scale, pow2(_mean_len(total2, b)), TRANSPOSE=transpose
    )
    return out


class _JaggedPairwiseDiffFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, offsets, b, total2):
        a = a.contiguous()
        same = b is None
        b_ = a if same else b.contiguous()
        out = torch.empty(total2, dtype=a.dtype, device=a.device)
        nb = offsets.numel() - 1
        if total2 > 0:
            off2 = jagged2_offsets(offsets)
            _JAGGED_PAIRWISE_DIFF_FWD[_rows_grid(_mean_len(total2, nb), nb)](
                a, b_, out, offsets, off2, pow2(_mean_len(total2, nb))
            )
        ctx.save_for_backward(offsets)
        ctx.same = same
        ctx.total2 = total2
        ctx.t = a.shape[0]
        ctx.dtype = a.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (offsets,) = ctx.saved_tensors
        g = grad_out.contiguous()
        da = _reduce(g, offsets, ctx.t, ctx.dtype, 1.0, False, ctx.total2)
        db = _reduce(g, offsets, ctx.t, ctx.dtype, -1.0, True, ctx.total2)
        if ctx.same:
            return da + db, None, None, None
        return da, None, db, None


def jagged_dense_add(x: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Triton jagged + padded; see :func:`shopml.jagged.ops.jagged_dense_add`."""
    return _JaggedDenseAddFunction.apply(x, offsets, y)


def jagged2_mul_dense(x: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Triton jagged2 * dense block; see :func:`shopml.jagged.ops.jagged2_mul_dense`."""
    return _Jagged2MulDenseFunction.apply(x, offsets, y)


def jagged_pairwise_diff(
    a: torch.Tensor, offsets: torch.Tensor, b: torch.Tensor | None, total2: int
) -> torch.Tensor:
    """Triton pairwise differences; see :func:`shopml.jagged.ops.jagged_pairwise_diff`."""
    return _JaggedPairwiseDiffFunction.apply(a, offsets, b, total2)
