"""Triton kernels: ``jagged_softmax`` (per column over a sequence) and ``jagged2_softmax``.

``jagged_softmax``: x ``(T, H)``; for each sequence and column, softmax over the sequence's rows.
Grid ``(cdiv(H, BLOCK_H), B)``. Each program streams its sequence twice in BLOCK_M-row chunks:
pass 1 keeps an online (max, sum of exp) per column in fp32, pass 2 writes ``exp(x - max) / sum``.
Rows at positions ``>= max_seqlen`` (FBGEMM truncation, content checks off) are excluded and
written as 0. Backward: ``dx = y * (dy - sum_rows(dy * y))``, same grid, two passes.

``jagged2_softmax``: x ``(sum L_i^2,)``, one ``L_i x L_i`` row-major matrix per sequence; softmax
along each row (``TRANSPOSE=False``) or each column (``TRANSPOSE=True``). One kernel serves both:
a program owns BLOCK_L "lanes" (rows, or columns) and reduces along the other axis in BLOCK_R
chunks, with the same two-pass online scheme. Grid ``(cdiv(max_seqlen, BLOCK_L), B)``, lanes
grid-strided over L_i so a program past the sequence's end does nothing.

Backward: the forward saves the fp32 log-sum-exp of each column (``(B, H)``) or matrix row/column
(``(B, max_seqlen)``) and the input; the backward recomputes ``y = exp(x - lse)`` in fp32 instead
of reading a rounded fp16/bf16 ``y``, so low-precision gradients match the fp32 reference closely.

Differences from the reference: the reference pads with -1e30 and calls ``torch.softmax`` in fp32;
here the max/sum are accumulated online in fp32, results cast to the input dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shopml.jagged.ops_reference import jagged2_offsets
from shopml.jagged.triton._common import cdiv, configs, pow2
from shopml.jagged.triton.launch import FastLauncher

_CONFIGS = configs(
    gpu=[
        {"BLOCK_M": 32, "BLOCK_H": 64},
        {"BLOCK_M": 64, "BLOCK_H": 32},
        {"BLOCK_M": 16, "BLOCK_H": 128},
        {"BLOCK_M": 64, "BLOCK_H": 64, "num_warps": 8},
        {"BLOCK_M": 128, "BLOCK_H": 16},
    ],
    interpreter={"BLOCK_M": 32, "BLOCK_H": 32},
)

_CONFIGS2 = configs(
    gpu=[
        {"BLOCK_L": 16, "BLOCK_R": 64},
        {"BLOCK_L": 32, "BLOCK_R": 64},
        {"BLOCK_L": 16, "BLOCK_R": 128},
        {"BLOCK_L": 64, "BLOCK_R": 32},
        {"BLOCK_L": 32, "BLOCK_R": 128, "num_warps": 8},
    ],
    interpreter={"BLOCK_L": 32, "BLOCK_R": 32},
)


@triton.autotune(configs=_CONFIGS, key=["M_BUCKET", "H_BUCKET"])
@triton.jit
def _jagged_softmax_fwd_kernel(
    x_ptr,
    out_ptr,
    lse_ptr,
    offsets_ptr,
    max_seqlen,
    H,
    stride_x_t,
    stride_out_t,
    M_BUCKET,
    H_BUCKET,
    BLOCK_M: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    used_len = tl.minimum(seq_len, max_seqlen)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    # Pass 1: online max and sum of exponentials per column, fp32.
    m = tl.full((BLOCK_H,), -float("inf"), dtype=tl.float32)
    s = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for row0 in range(0, used_len, BLOCK_M):
        offs_m = row0 + tl.arange(0, BLOCK_M).to(tl.int64)
        mask = (offs_m < used_len)[:, None] & mask_h[None, :]
        x = tl.load(
            x_ptr + (seq_start + offs_m)[:, None] * stride_x_t + offs_h[None, :],
            mask=mask,
            other=-float("inf"),
        ).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        m_safe = tl.where(m_new == -float("inf"), 0.0, m_new)
        s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(x - m_safe[None, :]), axis=0)
        m = m_new
    # Log-sum-exp per column, kept in fp32 for the backward (empty sequence: 0).
    lse = tl.where(m == -float("inf"), 0.0, m) + tl.log(tl.where(s == 0.0, 1.0, s))
    tl.store(lse_ptr + pid_b * H + offs_h, lse, mask=mask_h)
    # Pass 2: normalised values; rows past max_seqlen are written as 0.
    for row0 in range(0, seq_len, BLOCK_M):
        offs_m = row0 + tl.arange(0, BLOCK_M).to(tl.int64)
        mask = (offs_m < seq_len)[:, None] & mask_h[None, :]
        used = (offs_m < used_len)[:, None] & mask_h[None, :]
        x = tl.load(
            x_ptr + (seq_start + offs_m)[:, None] * stride_x_t + offs_h[None, :],
            mask=used,
            other=-float("inf"),
        ).to(tl.float32)
        y = tl.where(used, tl.exp(x - lse[None, :]), 0.0)
        tl.store(
            out_ptr + (seq_start + offs_m)[:, None] * stride_out_t + offs_h[None, :],
            y.to(out_ptr.dtype.element_ty),
            mask=mask,
        )


@triton.autotune(configs=_CONFIGS, key=["M_BUCKET", "H_BUCKET"])
@triton.jit
def _jagged_softmax_bwd_kernel(
    x_ptr,
    lse_ptr,
    dy_ptr,
    dx_ptr,
    offsets_ptr,
    max_seqlen,
    H,
    stride_x_t,
    stride_dy_t,
    stride_dx_t,
    M_BUCKET,
    H_BUCKET,
    BLOCK_M: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    used_len = tl.minimum(seq_len, max_seqlen)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    # y is recomputed in fp32 from x and the saved log-sum-exp (no rounded y is stored).
    lse = tl.load(lse_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0)
    # Pass 1: per-column sum of dy * y.
    acc = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for row0 in range(0, used_len, BLOCK_M):
        rows = seq_start + row0 + tl.arange(0, BLOCK_M).to(tl.int64)
        mask = (row0 + tl.arange(0, BLOCK_M) < used_len)[:, None] & mask_h[None, :]
        x = tl.load(
            x_ptr + rows[:, None] * stride_x_t + offs_h[None, :], mask=mask, other=-float("inf")
        )
        y = tl.exp(x.to(tl.float32) - lse[None, :])
        dy = tl.load(dy_ptr + rows[:, None] * stride_dy_t + offs_h[None, :], mask=mask, other=0.0)
        acc += tl.sum(y * dy.to(tl.float32), axis=0)
    # Pass 2: dx = y * (dy - acc) (0 past max_seqlen, where y is 0).
    for row0 in range(0, seq_len, BLOCK_M):
        offs_m = row0 + tl.arange(0, BLOCK_M).to(tl.int64)
        rows = seq_start + offs_m
        mask = (offs_m < seq_len)[:, None] & mask_h[None, :]
        used = (offs_m < used_len)[:, None] & mask_h[None, :]
        x = tl.load(
            x_ptr + rows[:, None] * stride_x_t + offs_h[None, :], mask=used, other=-float("inf")
        )
        y = tl.exp(x.to(tl.float32) - lse[None, :])
        dy = tl.load(dy_ptr + rows[:, None] * stride_dy_t + offs_h[None, :], mask=mask, other=0.0)
        dx = y * (dy.to(tl.float32) - acc[None, :])
        tl.store(
            dx_ptr + rows[:, None] * stride_dx_t + offs_h[None, :],
            dx.to(dx_ptr.dtype.element_ty),
            mask=mask,
        )


@triton.autotune(configs=_CONFIGS2, key=["M_BUCKET"])
@triton.jit
def _jagged2_softmax_fwd_kernel(
    x_ptr,
    out_ptr,
    lse_ptr,
    offsets_ptr,
    offsets2_ptr,
    LSE_STRIDE,
    M_BUCKET,
    TRANSPOSE: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    pid_l = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    seq_start = tl.load(offsets_ptr + pid_b).to(tl.int64)
    seq_len = tl.load(offsets_ptr + pid_b + 1).to(tl.int64) - seq_start
    base = tl.load(offsets2_ptr + pid_b).to(tl.int64)
    # Element (lane, red) lives at base + lane * stride_lane + red * stride_red.
    if TRANSPOSE:
        stride_lane = 1
        stride_red = seq_len
    else:
        stride_lane = seq_len
        stride_red = 1
    for lane0 in range(pid_l * BLOCK_L, seq_len, tl.num_programs(0) * BLOCK_L):
        offs_l = lane0 + tl.arange(0, BLOCK_L).to(tl.int64)
        mask_l = offs_l < seq_len
        m = tl.full((BLOCK_L,), -float("inf"), dtype=tl.float32)
        s = tl.zeros((BLOCK_L,), dtype=tl.float32)
        # Pass 1: online max / sum along the reduced axis.
        for r0 in range(0, seq_len, BLOCK_R):
            offs_r = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
            mask = mask_l[:, None] & (offs_r < seq_len)[None, :]
            ptrs = x_ptr + base + offs_l[:, None] * stride_lane + offs_r[None, :] * stride_red
            x = tl.load(ptrs, mask=mask, other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=1))
            m_safe = tl.where(m_new == -float("inf"), 0.0, m_new)
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(x - m_safe[:, None]), axis=1)
            m = m_new
        # Per-lane log-sum-exp in fp32 for the backward, at lse[b, lane] (lane < LSE_STRIDE).
        lse = tl.where(m == -float("inf"), 0.0, m) + tl.log(tl.where(s == 0.0, 1.0, s))
        tl.store(lse_ptr + pid_b * LSE_STRIDE + offs_l, lse, mask=mask_l & (offs_l < LSE_STRIDE))
        # Pass 2: write normalised values.
        for r0 in range(0, seq_len, BLOCK_R):
            offs_r = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
            mask = mask_l[:, None] & (offs_r < seq_len)[None, :]
            off = base + offs_l[:, None] * stride_lane + offs_r[None, :] * stride_red
            x = tl.load(x_ptr + off, mask=mask, other=-float("inf")).to(tl.float32)
            y = tl.exp(x - lse[:, None])
            tl.store(out_ptr + off, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=_CONFIGS2, key=["M_BUCKET"])
@triton.jit
def _jagged2_softmax_bwd_kernel(
    x_ptr,
    lse_ptr,
    dy_ptr,
    dx_ptr,
    offsets_ptr,
    offsets2_ptr,
    LSE_STRIDE,
    M_BUCKET,
    TRANSPOSE: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    pid_l = tl.program_id(0)
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
    for lane0 in range(pid_l * BLOCK_L, seq_len, tl.num_programs(0) * BLOCK_L):
        offs_l = lane0 + tl.arange(0, BLOCK_L).to(tl.int64)
        mask_l = offs_l < seq_len
        # y recomputed in fp32 from x and the saved per-lane log-sum-exp.
        lse = tl.load(
            lse_ptr + pid_b * LSE_STRIDE + offs_l, mask=mask_l & (offs_l < LSE_STRIDE), other=0.0
        )
        acc = tl.zeros((BLOCK_L,), dtype=tl.float32)
        for r0 in range(0, seq_len, BLOCK_R):
            offs_r = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
            mask = mask_l[:, None] & (offs_r < seq_len)[None, :]
            off = base + offs_l[:, None] * stride_lane + offs_r[None, :] * stride_red
            x = tl.load(x_ptr + off, mask=mask, other=-float("inf")).to(tl.float32)
            y = tl.exp(x - lse[:, None])
            dy = tl.load(dy_ptr + off, mask=mask, other=0.0).to(tl.float32)
            acc += tl.sum(y * dy, axis=1)
        for r0 in range(0, seq_len, BLOCK_R):
            offs_r = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
            mask = mask_l[:, None] & (offs_r < seq_len)[None, :]
            off = base + offs_l[:, None] * stride_lane + offs_r[None, :] * stride_red
            x = tl.load(x_ptr + off, mask=mask, other=-float("inf")).to(tl.float32)
            y = tl.exp(x - lse[:, None])
            dy = tl.load(dy_ptr + off, mask=mask, other=0.0).to(tl.float32)
            tl.store(dx_ptr + off, (y * (dy - acc[:, None])).to(dx_ptr.dtype.element_ty), mask=mask)


# launches through FastLauncher: Triton's autotuner and binder once per launch signature
_JAGGED_SOFTMAX_FWD = FastLauncher(_jagged_softmax_fwd_kernel)
_JAGGED_SOFTMAX_BWD = FastLauncher(_jagged_softmax_bwd_kernel)
_JAGGED2_SOFTMAX_FWD = FastLauncher(_jagged2_softmax_fwd_kernel)
_JAGGED2_SOFTMAX_BWD = FastLauncher(_jagged2_softmax_bwd_kernel)


def _jagged_softmax_fwd(x: torch.Tensor, offsets: torch.Tensor, max_seqlen: int):
    t, h = x.shape
    b = offsets.numel() - 1
    out = torch.empty_like(x)
    lse = torch.empty((b, h), dtype=torch.float32, device=x.device)
    if t == 0 or h == 0:
        return out, lse

    def grid(meta):
        return (cdiv(h, meta["BLOCK_H"]), b)

    _JAGGED_SOFTMAX_FWD[grid](
        x,
        out,
        lse,
        offsets,
        max_seqlen,
        h,
        x.stride(0),
        out.stride(0),
        pow2(max_seqlen),
        pow2(h),
    )
    return out, lse


def _jagged_softmax_bwd(x, lse, dy, offsets, max_seqlen):
    t, h = x.shape
    dx = torch.empty_like(x)
    if t == 0 or h == 0:
        return dx

    def grid(meta):
        return (cdiv(h, meta["BLOCK_H"]), offsets.numel() - 1)

    _JAGGED_SOFTMAX_BWD[grid](
        x, lse, dy, dx, offsets, max_seqlen, h, x.stride(0), dy.stride(0), dx.stride(0),
        pow2(max_seqlen), pow2(h),
    )  # fmt: skip
    return dx


class _JaggedSoftmaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offsets, max_seqlen):
        x = x.contiguous()
        y, lse = _jagged_softmax_fwd(x, offsets, max_seqlen)
        ctx.save_for_backward(x, lse, offsets)
        ctx.max_seqlen = max_seqlen
        return y

    @staticmethod
    def backward(ctx, dy):
        x, lse, offsets = ctx.saved_tensors
        return _jagged_softmax_bwd(x, lse, dy.contiguous(), offsets, ctx.max_seqlen), None, None


def _jagged2_launch(kernel, tensors, offsets, max_seqlen, transpose):
    b = offsets.numel() - 1
    off2 = jagged2_offsets(offsets)

    def grid(meta):
        return (cdiv(max(max_seqlen, 1), meta["BLOCK_L"]), b)

    kernel[grid](*tensors, offsets, off2, max_seqlen, pow2(max_seqlen), TRANSPOSE=transpose)


class _Jagged2SoftmaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offsets, max_seqlen, transpose):
        x = x.contiguous()
        y = torch.empty_like(x)
        # fp32 log-sum-exp of each row (column), at [b, lane]; lanes past max_seqlen (content
        # checks off) are not stored and their backward is undefined.
        lse = torch.empty((offsets.numel() - 1, max_seqlen), dtype=torch.float32, device=x.device)
        if x.numel() > 0:
            _jagged2_launch(_JAGGED2_SOFTMAX_FWD, (x, y, lse), offsets, max_seqlen, transpose)
        ctx.save_for_backward(x, lse, offsets)
        ctx.max_seqlen = max_seqlen
        ctx.transpose = transpose
        return y

    @staticmethod
    def backward(ctx, dy):
        x, lse, offsets = ctx.saved_tensors
        dx = torch.empty_like(x)
        if x.numel() > 0:
            tensors = (x, lse, dy.contiguous(), dx)
            _jagged2_launch(_JAGGED2_SOFTMAX_BWD, tensors, offsets, ctx.max_seqlen, ctx.transpose)
        return dx, None, None, None


def jagged_softmax(x: torch.Tensor, offsets: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """Triton jagged softmax; see :func:`shopml.jagged.ops.jagged_softmax`."""
    return _JaggedSoftmaxFunction.apply(x, offsets, max_seqlen)


def jagged2_softmax(
    x: torch.Tensor, offsets: torch.Tensor, max_seqlen: int, transpose: bool = False
) -> torch.Tensor:
    """Triton jagged2 softmax; see :func:`shopml.jagged.ops.jagged2_softmax`."""
    return _Jagged2SoftmaxFunction.apply(x, offsets, max_seqlen, bool(transpose))
