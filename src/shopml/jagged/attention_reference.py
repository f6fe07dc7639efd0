"""Executable spec of jagged flash attention: pure PyTorch, fp32 math, no loop over the batch.

Every function here pads the jagged inputs to ``(B, H, N, D)`` with index arithmetic, computes
per-sequence dense softmax attention with masks, and gathers the valid rows back. It is the
reference the Triton kernels of :mod:`shopml.jagged.attention_triton` are tested against, the CPU
path of :mod:`shopml.jagged.attention`, and the fallback behind the torch.compile custom op.

Semantics (shared with the Triton backend):

- sample ``b`` has ``Lq = min(offsets[b+1] - offsets[b], max_seqlen)`` queries and
  ``Lk = min(k_offsets[b+1] - k_offsets[b], max_seqlen_k)`` keys (rows past ``max_seqlen`` are
  truncated, FBGEMM-style; the public API rejects such inputs unless content checks are off);
- ``s_ij = scale * q_i . k_j + bias_ij``; ``causal`` keeps keys ``j <= i + Lk - Lq`` (bottom-right
  aligned, as flash-attention >= 2.1; plain ``j <= i`` for self-attention);
- a query row with no visible key outputs 0 and its log-sum-exp is ``-inf``;
- ``lse_i = log(sum_j exp(s_ij))`` in float32 (natural log).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "RelativeBias",
    "bucketize_delta",
    "consecutive_boundaries",
    "jagged_bias_offsets",
    "jagged_flash_attention",
    "pad_index",
    "relative_bias_dense",
]


@dataclass(frozen=True)
class RelativeBias:
    """A learnable relative position/time bias, evaluated inside the attention kernel.

    The bias of query ``i`` and key ``j`` of one sample, head ``h``, is
    ``table[bucket(t_i - t_j), h]`` where ``bucket(d) = #{k : boundaries[k] <= d}`` (that is
    ``torch.bucketize(d, boundaries, right=True)``), an integer in ``[0, num_buckets)``. The
    pairwise deltas and buckets are computed on the fly from per-token timestamps, so no
    ``(sum L_i^2)`` tensor is ever built; the gradient flows to ``table`` only.

    Positions are used where timestamps are None: query ``i`` sits at ``i + Lk - Lq`` and key ``j``
    at ``j`` (so for self-attention ``d = i - j``, and for a single target query ``d`` is the
    recency of key ``j``: 0 for the latest event).

    Attributes:
        table: ``(num_buckets, H)`` float tensor (usually an ``nn.Parameter``), any device.
        boundaries: ``(num_buckets - 1,)`` int64, strictly increasing, same device.
        q_timestamps: ``(T_q,)`` int64 per query token, or None for positions.
        k_timestamps: ``(T_k,)`` int64 per key token, or None (positions; or ``q_timestamps``
            when the keys are the queries, i.e. self-attention without ``k_offsets``).
        consecutive: :func:`consecutive_boundaries` of ``boundaries`` if the maker knows it
            (:class:`~shopml.jagged.modules.RelativeBiasTable` does); None: the Triton backend
            decides at each call (``attention_triton._consecutive``, the one place).
    """

    table: torch.Tensor
    boundaries: torch.Tensor
    q_timestamps: torch.Tensor | None = None
    k_timestamps: torch.Tensor | None = None
    consecutive: bool | None = None

    @property
    def num_buckets(self) -> int:
        return int(self.table.shape[0])


def consecutive_boundaries(boundaries: torch.Tensor) -> bool:
    """Whether ``boundaries`` are consecutive integers ``first, first + 1, ..., last`` (none or
    one included) with ``first`` above int64's minimum: then ``bucket(d) = clamp(d, first - 1,
    last) - (first - 1)``, the Triton kernels' closed form. Reads the values (a device sync off
    the CPU)."""
    values = boundaries.tolist()
    steps = all(b - a == 1 for a, b in zip(values, values[1:], strict=False))
    return steps and (not values or values[0] > -(2**63))


def bucketize_delta(delta: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """``bucket(d) = #{k : boundaries[k] <= d}`` for an int64 tensor of deltas."""
    if boundaries.numel() == 0:
        return torch.zeros_like(delta)
    return torch.bucketize(delta, boundaries, right=True)


def pad_index(
    offsets: torch.Tensor, max_seqlen: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row index and validity mask of the padded ``(B, N)`` layout of a jagged tensor.

    Returns:
        ``(index, valid, lengths)``: ``index (B, N)`` int64 row of the values (clamped to a legal
        row where invalid), ``valid (B, N)`` bool, ``lengths (B,)`` int64 clamped to ``max_seqlen``.
    """
    offsets = offsets.long()
    lengths = (offsets[1:] - offsets[:-1]).clamp(max=max_seqlen)
    pos = torch.arange(max_seqlen, device=offsets.device)
    index = offsets[:-1, None] + pos[None, :]
    valid = pos[None, :] < lengths[:, None]
    index = torch.where(valid, index, torch.zeros_like(index))
    return index, valid, lengths


def jagged_bias_offsets(q_lengths: torch.Tensor, k_lengths: torch.Tensor) -> torch.Tensor:
    """Offsets ``(B+1,)`` int64 of a per-sample ``(Lq_i * Lk_i)`` jagged bias (row-major blocks)."""
    sizes = q_lengths.long() * k_lengths.long()
    return torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])


def _acc(t: torch.Tensor) -> torch.Tensor:
    """Upcast to the math dtype: float32, or float64 for float64 inputs (gradcheck)."""
    return t if t.dtype == torch.float64 else t.float()


def _gather_padded(values: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values (T, ...) -> (B, N, ...) with zeros where invalid (differentiable)."""
    if values.shape[0] == 0:  # nothing to gather; "+ 0 * sum" keeps the autograd graph
        return values.new_zeros(*index.shape, *values.shape[1:]) + values.sum() * 0
    out = values[index]
    mask = valid.view(*valid.shape, *([1] * (values.dim() - 1)))
    return torch.where(mask, out, torch.zeros_like(out))


def _positions(
    timestamps: torch.Tensor | None, index: torch.Tensor, shift: torch.Tensor | None
) -> torch.Tensor:
    """(B, N) int64 position/time of each padded slot."""
    if timestamps is not None:
        if timestamps.shape[0] == 0:
            return torch.zeros_like(index)
        return timestamps.long()[index]
    pos = torch.arange(index.shape[1], device=index.device).expand_as(index)
    return pos + shift[:, None] if shift is not None else pos


def _relative_dense(
    bias: RelativeBias,
    q_index: torch.Tensor,
    q_valid: torch.Tensor,
    q_len: torch.Tensor,
    k_index: torch.Tensor,
    k_valid: torch.Tensor,
    k_len: torch.Tensor,
    self_attention: bool,
) -> torch.Tensor:
    k_ts = bias.k_timestamps
    if k_ts is None and self_attention:
        k_ts = bias.q_timestamps
    tq = _positions(bias.q_timestamps, q_index, k_len - q_len)  # (B, Nq)
    tk = _positions(k_ts, k_index, None)  # (B, Nk)
    bucket = bucketize_delta(tq[:, :, None] - tk[:, None, :], bias.boundaries)  # (B, Nq, Nk)
    # F.embedding, not table[bucket]: its CUDA backward sums per bucket with a sorted reduction,
    # where indexing's backward would send every (i, j) gradient to a handful of rows with atomics
    dense = torch.nn.functional.embedding(bucket, _acc(bias.table))  # (B, Nq, Nk, H)
    valid = q_valid[:, :, None] & k_valid[:, None, :]
    dense = torch.where(valid[..., None], dense, torch.zeros_like(dense))
    return dense.permute(0, 3, 1, 2)  # (B, H, Nq, Nk)


def _tensor_bias_dense(
    attn_bias: torch.Tensor,
    q_valid: torch.Tensor,
    q_len: torch.Tensor,
    k_valid: torch.Tensor,
    k_len: torch.Tensor,
) -> torch.Tensor:
    starts = jagged_bias_offsets(q_len, k_len)[:-1]
    nq, nk = q_valid.shape[1], k_valid.shape[1]
    i = torch.arange(nq, device=attn_bias.device)
    j = torch.arange(nk, device=attn_bias.device)
    index = starts[:, None, None] + i[None, :, None] * k_len[:, None, None] + j[None, None, :]
    valid = q_valid[:, :, None] & k_valid[:, None, :]
    dense = _gather_padded(_acc(attn_bias), torch.where(valid, index, 0), valid)  # (B,Nq,Nk,H)
    return dense.permute(0, 3, 1, 2)


def relative_bias_dense(
    bias: RelativeBias,
    offsets: torch.Tensor,
    max_seqlen: int,
    *,
    k_offsets: torch.Tensor | None = None,
    max_seqlen_k: int | None = None,
) -> torch.Tensor:
    """The dense ``(B, H, N, Nk)`` float32 form of a :class:`RelativeBias` (zeros outside lengths).

    This is the additive bias a padded implementation (SDPA with a float mask) adds to its scores
    to compute the same function as the jagged kernel; it is differentiable w.r.t. ``bias.table``.
    """
    q_index, q_valid, q_len = pad_index(offsets, max_seqlen)
    if k_offsets is None:
        k_index, k_valid, k_len = q_index, q_valid, q_len
    else:
        nk = max_seqlen if max_seqlen_k is None else max_seqlen_k
        k_index, k_valid, k_len = pad_index(k_offsets, nk)
    return _relative_dense(
        bias, q_index, q_valid, q_len, k_index, k_valid, k_len, self_attention=k_offsets is None
    )


def jagged_flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    *,
    k_offsets: torch.Tensor | None = None,
    max_seqlen_k: int | None = None,
    scale: float | None = None,
    causal: bool = False,
    attn_bias: torch.Tensor | RelativeBias | None = None,
    return_lse: bool = False,
    post_scale: float = 1.0,
    math_dtype: torch.dtype | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Reference jagged attention (arguments as :func:`shopml.jagged.attention.jagged_flash_attention`).

    ``post_scale`` multiplies the output after the softmax (FBGEMM's ``1 / max_seq_len``).
    ``math_dtype`` overrides the compute dtype (default float32, float64 for float64 inputs);
    tests pass the low precision itself to build flash-attention's "reference in low precision".
    Inputs are not validated here. Output dtype = ``q.dtype``; lse float32 ``(T_q, H)``.
    """
    acc = _acc if math_dtype is None else (lambda t: t.to(math_dtype))
    self_attention = k_offsets is None
    if k_offsets is None:
        k_offsets = offsets
    if max_seqlen_k is None:
        max_seqlen_k = max_seqlen
    head_dim = q.shape[-1]
    if scale is None:
        scale = head_dim**-0.5

    q_index, q_valid, q_len = pad_index(offsets, max_seqlen)  # (B, Nq)
    k_index, k_valid, k_len = pad_index(k_offsets, max_seqlen_k)  # (B, Nk)
    qp = _gather_padded(acc(q), q_index, q_valid).transpose(1, 2)  # (B, H, Nq, D)
    kp = _gather_padded(acc(k), k_index, k_valid).transpose(1, 2)  # (B, H, Nk, D)
    vp = _gather_padded(acc(v), k_index, k_valid).transpose(1, 2)  # (B, H, Nk, D)

    scores = torch.matmul(qp, kp.transpose(-1, -2)) * scale  # (B, H, Nq, Nk)
    if isinstance(attn_bias, RelativeBias):
        scores = scores + _relative_dense(
            attn_bias, q_index, q_valid, q_len, k_index, k_valid, k_len, self_attention
        ).to(scores.dtype)
    elif attn_bias is not None:
        scores = scores + _tensor_bias_dense(attn_bias, q_valid, q_len, k_valid, k_len).to(
            scores.dtype
        )

    visible = k_valid[:, None, None, :].expand_as(scores)  # (B, 1->H, Nq, Nk)
    if causal:
        i = torch.arange(scores.shape[2], device=q.device)
        j = torch.arange(scores.shape[3], device=q.device)
        limit = i[None, :, None] + (k_len - q_len)[:, None, None]  # (B, Nq, 1)
        visible = visible & (j[None, None, :] <= limit)[:, None]
    scores = scores.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (B, H, Nq), -inf where nothing is visible
    if lse.dtype not in (torch.float32, torch.float64):
        lse = lse.float()
        probs_dtype = scores.dtype
    else:
        probs_dtype = None
    safe_lse = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    probs = torch.exp(scores.to(safe_lse.dtype) - safe_lse[..., None])  # exactly 0 where masked
    if probs_dtype is not None:  # low-precision reference: P rounded like a kernel's P @ V
        probs = probs.to(probs_dtype)
    out = torch.matmul(probs, vp) * post_scale  # (B, H, Nq, D)

    out_rows = out.transpose(1, 2)[q_valid]  # (T_q', H, D), token order
    lse = lse.float() if lse.dtype != torch.float64 else lse
    lse_rows = lse.transpose(1, 2)[q_valid]  # (T_q', H)
    total = q.shape[0]
    if out_rows.shape[0] != total:  # truncated sequences: rows past max_seqlen stay 0 / -inf
        flat = q_index[q_valid]
        out_full = out_rows.new_zeros(total, *out_rows.shape[1:]).index_copy(0, flat, out_rows)
        lse_full = lse_rows.new_full((total, lse_rows.shape[1]), float("-inf"))
        lse_rows = lse_full.index_copy(0, flat, lse_rows)
        out_rows = out_full
    out_rows = out_rows.to(q.dtype)
    if return_lse:
        return out_rows, lse_rows
    return out_rows
