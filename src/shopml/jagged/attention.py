"""Jagged flash attention: public API (input checks once, then dispatch to a backend).

Attention over variable-length sequences stored without padding (flash-attention's varlen
layout): ``q, k, v`` are ``(T, H, D)`` with the rows of sample ``b`` at
``offsets[b]:offsets[b+1]`` (``offsets`` is flash-attention's ``cu_seqlens``).

Backends, chosen by :func:`shopml.jagged.backend.use_triton` like every jagged op's:
``"triton"`` (:mod:`shopml.jagged.attention_triton`: fused online-softmax kernels, forward and
backward, memory linear in T; on CUDA, or on CPU under ``TRITON_INTERPRET=1``), ``"reference"``
(:mod:`shopml.jagged.attention_reference`: pure PyTorch, pads to ``(B, H, N, N)``: the executable
spec) and ``"auto"`` (Triton on CUDA tensors or under the interpreter, else the reference).
Inputs are checked here, once, with :mod:`shopml.jagged.checks` (content checks: one device sync
per offsets tensor, one more for a tensor bias; off with ``checks_enabled(False)``).

Example:
    >>> import torch
    >>> from shopml.jagged.attention import jagged_flash_attention
    >>> offsets = torch.tensor([0, 3, 3, 7])          # lengths 3, 0, 4
    >>> q = k = v = torch.randn(7, 2, 16)             # (T, H, D)
    >>> out = jagged_flash_attention(q, k, v, offsets, max_seqlen=4, backend="reference")
    >>> out.shape
    torch.Size([7, 2, 16])
"""

from __future__ import annotations

import math

import torch

from shopml.jagged import attention_reference as ref
from shopml.jagged import checks
from shopml.jagged.attention_reference import (
    RelativeBias,
    bucketize_delta,
    consecutive_boundaries,
    relative_bias_dense,
)
from shopml.jagged.backend import BACKENDS, use_triton
from shopml.jagged.checks import describe

__all__ = [
    "BACKENDS",
    "RelativeBias",
    "bucketize_delta",
    "consecutive_boundaries",
    "jagged_flash_attention",
    "jagged_target_attention",
    "log_bucket_boundaries",
    "relative_bias_dense",
]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 256

_TRITON_ATTENTION = None  # shopml.jagged.attention_triton.jagged_flash_attention, once imported


def _triton_attention():  # noqa: ANN202
    """The Triton backend function; imports Triton on first use only."""
    global _TRITON_ATTENTION
    if _TRITON_ATTENTION is None:
        from shopml.jagged.attention_triton import jagged_flash_attention

        _TRITON_ATTENTION = jagged_flash_attention
    return _TRITON_ATTENTION


def _check_qkv(q: object, k: object, v: object) -> None:
    """Structure of q, k, v: float tensors of rank 3, one dtype and device, shared (H, D)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, found {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(
                f"{name}: expected dtype float16, bfloat16 or float32, found {describe(t)}"
            )
        if t.dim() != 3:
            raise ValueError(f"{name}: expected a 3-D (T, H, D) tensor, found {describe(t)}")
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
    assert isinstance(v, torch.Tensor)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name}: expected dtype {q.dtype} (that of q), found {describe(t)}")
        if t.device != q.device:
            raise ValueError(f"{name}: expected device {q.device} (that of q), found {describe(t)}")
    if v.shape != k.shape:
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, found {describe(v)}")
    if q.shape[1:] != k.shape[1:]:
        raise ValueError(
            f"k: expected (T_k, H, D) with H, D = {tuple(q.shape[1:])} (those of q), "
            f"found {describe(k)}"
        )
    head_dim = q.shape[-1]
    if not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(
            f"q: expected a head dim D in [{MIN_HEAD_DIM}, {MAX_HEAD_DIM}], found D = {head_dim}"
        )


def _check_relative_bias(bias: RelativeBias, heads: int, device: torch.device, total_q: int,
                         total_k: int) -> None:  # fmt: skip
    table, boundaries = bias.table, bias.boundaries
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.shape[1] != heads:
        found = describe(table) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ValueError(
            f"attn_bias.table: expected a (num_buckets, H={heads}) tensor, found {found}"
        )
    if not table.is_floating_point() or table.device != device:
        raise ValueError(
            f"attn_bias.table: expected a float tensor on {device}, found {describe(table)}"
        )
    buckets = table.shape[0]
    if buckets < 1:
        raise ValueError("attn_bias.table: expected at least one bucket, found 0")
    if (
        not isinstance(boundaries, torch.Tensor)
        or boundaries.dtype != torch.int64
        or boundaries.shape != (buckets - 1,)
        or boundaries.device != device
    ):
        found = (
            describe(boundaries)
            if isinstance(boundaries, torch.Tensor)
            else type(boundaries).__name__
        )
        raise ValueError(
            f"attn_bias.boundaries: expected an int64 ({buckets - 1},) tensor on {device}, "
            f"found {found}"
        )
    for name, ts, total in (
        ("attn_bias.q_timestamps", bias.q_timestamps, total_q),
        ("attn_bias.k_timestamps", bias.k_timestamps, total_k),
    ):
        if ts is None:
            continue
        if not isinstance(ts, torch.Tensor) or ts.dtype != torch.int64 or ts.shape != (total,):
            found = describe(ts) if isinstance(ts, torch.Tensor) else type(ts).__name__
            raise ValueError(f"{name}: expected an int64 ({total},) tensor, found {found}")
        if ts.device != device:
            raise ValueError(f"{name}: expected device {device}, found {describe(ts)}")


def _check_bias(
    attn_bias: object,
    heads: int,
    device: torch.device,
    offsets: torch.Tensor,
    k_offsets: torch.Tensor | None,
    total_q: int,
    total_k: int,
) -> None:
    if attn_bias is None:
        return
    if isinstance(attn_bias, RelativeBias):
        _check_relative_bias(attn_bias, heads, device, total_q, total_k)
        return
    if not isinstance(attn_bias, torch.Tensor):
        raise ValueError(
            f"attn_bias: expected None, a (sum Lq_i*Lk_i, H) tensor or a RelativeBias, "
            f"found {type(attn_bias).__name__}"
        )
    if attn_bias.dim() != 2 or attn_bias.shape[1] != heads or not attn_bias.is_floating_point():
        raise ValueError(
            f"attn_bias: expected a float (sum Lq_i*Lk_i, H={heads}) tensor, "
            f"found {describe(attn_bias)}"
        )
    if attn_bias.device != device:
        raise ValueError(f"attn_bias: expected device {device}, found {describe(attn_bias)}")
    if checks.content_checks_on():  # one device sync
        lq = (offsets[1:] - offsets[:-1]).long()
        lk = lq if k_offsets is None else (k_offsets[1:] - k_offsets[:-1]).long()
        need = int((lq * lk).sum())
        if attn_bias.shape[0] != need:
            raise ValueError(
                f"attn_bias: expected {need} rows (sum over samples of Lq_i * Lk_i), "
                f"found {describe(attn_bias)}"
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
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention within each sequence of a jagged batch (self or cross attention).

    For sample ``b`` with queries ``q[offsets[b]:offsets[b+1]]`` (``Lq`` rows) and keys/values
    ``k, v[k_offsets[b]:k_offsets[b+1]]`` (``Lk`` rows):
    ``out_i = sum_j softmax_j(scale * q_i . k_j + bias_ij) v_j``, per head. Empty sequences are
    legal; a query that sees no key (empty key sequence, or causal with ``Lq > Lk``) outputs 0
    and has ``lse = -inf``.

    Args:
        q: ``(T_q, H, D)`` float16, bfloat16 or float32; ``16 <= D <= 256``. CUDA or CPU.
        k: ``(T_k, H, D)``, same dtype and device (``T_k = T_q`` for self-attention).
        v: ``(T_k, H, D)``, same dtype and device.
        offsets: ``(B+1,)`` int32/int64 query offsets (flash-attention's ``cu_seqlens_q``),
            ``offsets[0] = 0``, non-decreasing, ``offsets[-1] = T_q``; same device.
        max_seqlen: host int >= the longest query sequence (sizes the grid; never read from
            the device in the hot path).
        k_offsets: ``(B+1,)`` key offsets for cross attention; None = ``offsets``.
        max_seqlen_k: host int >= the longest key sequence; None = ``max_seqlen``.
        scale: multiplier of ``q . k``; None = ``1 / sqrt(D)``.
        causal: keep keys ``j <= i + Lk - Lq`` (bottom-right aligned; ``j <= i`` for self).
        attn_bias: None; a ``(sum_b Lq_b * Lk_b, H)`` float tensor holding each sample's
            ``(Lq_b, Lk_b)`` bias block row-major, samples in batch order (gradient supported);
            or a :class:`RelativeBias` (learnable bucketed relative position/time bias, computed
            inside the kernel; gradient to its table).
        return_lse: also return the log-sum-exp of the scores ``(T_q, H)`` float32.
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``out (T_q, H, D)`` in q's dtype, and ``lse (T_q, H)`` float32 if ``return_lse``.

    Raises:
        ValueError: on any malformed argument (the message names it). Content checks of the
            offsets (one device sync) follow ``shopml.jagged.checks.checks_enabled``.
    """
    _check_qkv(q, k, v)
    device = q.device
    checks.check_max_seqlen(max_seqlen)
    checks.check_offsets(offsets, q.shape[0], device=device, max_len=max_seqlen)
    if k_offsets is None:
        if k.shape[0] != q.shape[0]:
            raise ValueError(
                f"k: expected T_k = T_q = {q.shape[0]} for self-attention (no k_offsets), "
                f"found {describe(k)}"
            )
        if max_seqlen_k is not None and max_seqlen_k != max_seqlen:
            raise ValueError(
                f"max_seqlen_k: expected None or max_seqlen ({max_seqlen}) without k_offsets, "
                f"found {max_seqlen_k}"
            )
        max_seqlen_k = max_seqlen
    else:
        if max_seqlen_k is None:
            max_seqlen_k = max_seqlen
        checks.check_max_seqlen(max_seqlen_k, name="max_seqlen_k")
        checks.check_offsets(
            k_offsets,
            k.shape[0],
            name="k_offsets",
            device=device,
            batch_size=offsets.numel() - 1,
            max_len=max_seqlen_k,
            max_len_name="max_seqlen_k",
        )
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale: expected None or a finite float, found {scale!r}")
    if not isinstance(causal, bool):
        raise ValueError(f"causal: expected a bool, found {type(causal).__name__}")
    _check_bias(attn_bias, q.shape[1], device, offsets, k_offsets, q.shape[0], k.shape[0])
    run = _triton_attention() if use_triton(backend, q) else ref.jagged_flash_attention
    return run(
        q,
        k,
        v,
        offsets,
        max_seqlen,
        k_offsets=k_offsets,
        max_seqlen_k=max_seqlen_k,
        scale=float(scale),
        causal=causal,
        attn_bias=attn_bias,
        return_lse=return_lse,
    )


def jagged_target_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    *,
    attn_bias: torch.Tensor | RelativeBias | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Dense queries attend over a jagged history (DIN / PMA-style target attention).

    Sample ``b``'s ``M`` queries ``q[b]`` attend over its history ``k, v[offsets[b]:offsets[b+1]]``;
    an empty history gives zeros. Implemented as cross attention with query offsets
    ``M * arange(B+1)`` (one kernel, forward and backward).

    Args:
        q: ``(B, M, H, D)`` dense queries (candidates or seeds), float16/bfloat16/float32.
        k: ``(T, H, D)`` jagged history keys, same dtype and device.
        v: ``(T, H, D)`` jagged history values.
        offsets: ``(B+1,)`` int32/int64 history offsets.
        max_seqlen: host int >= the longest history.
        attn_bias: None; a ``(sum_b M * L_b, H)`` tensor (sample ``b``'s ``(M, L_b)`` block
            row-major); or a :class:`RelativeBias` whose ``q_timestamps`` (if any) are ``(B*M,)``.
        scale: None = ``1 / sqrt(D)``.
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``(B, M, H, D)`` in q's dtype.
    """
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        found = describe(q) if isinstance(q, torch.Tensor) else type(q).__name__
        raise ValueError(f"q: expected a 4-D (B, M, H, D) tensor, found {found}")
    if not isinstance(offsets, torch.Tensor) or offsets.dim() != 1:
        found = describe(offsets) if isinstance(offsets, torch.Tensor) else type(offsets).__name__
        raise ValueError(f"offsets: expected a 1-D (B+1,) tensor, found {found}")
    batch, m = q.shape[0], q.shape[1]
    if offsets.numel() != batch + 1:
        raise ValueError(
            f"offsets: expected B+1 = {batch + 1} entries (B from q), found {offsets.numel()}"
        )
    q_offsets = torch.arange(batch + 1, device=q.device, dtype=offsets.dtype) * m
    out = jagged_flash_attention(
        q.reshape(batch * m, *q.shape[2:]),
        k,
        v,
        q_offsets,
        m,
        k_offsets=offsets,
        max_seqlen_k=max_seqlen,
        scale=scale,
        attn_bias=attn_bias,
        backend=backend,
    )
    assert isinstance(out, torch.Tensor)
    return out.view(q.shape)


def log_bucket_boundaries(
    num_buckets: int, max_distance: int = 4096, *, bidirectional: bool = True, exact: int = 8
) -> torch.Tensor:
    """Integer bucket boundaries for :class:`RelativeBias`: exact near 0, logarithmic further out.

    With ``bidirectional`` the buckets split between negative and non-negative deltas; otherwise
    every negative delta falls in bucket 0 (what causal self-attention sees never is negative).

    Args:
        num_buckets: number of buckets (>= 1).
        max_distance: deltas with ``|d| >= max_distance`` share the last bucket of their sign.
        exact: how many small distances get a bucket each (capped by the bucket count).

    Returns:
        ``(num_buckets - 1,)`` int64 strictly increasing boundaries (CPU).
    """
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
        raise ValueError(f"num_buckets: expected an int >= 1, found {num_buckets!r}")
    if not isinstance(max_distance, int) or max_distance < 1:
        raise ValueError(f"max_distance: expected an int >= 1, found {max_distance!r}")

    def one_side(n: int) -> list[int]:
        # n boundaries > 0: 1, 2, ..., then geometric up to max_distance, strictly increasing
        if n <= 0:
            return []
        small = list(range(1, min(exact, n) + 1))
        rest = n - len(small)
        start = small[-1] if small else 1
        geo: list[int] = []
        for idx in range(1, rest + 1):
            val = int(round(start * (max_distance / start) ** (idx / rest)))
            prev = geo[-1] if geo else start
            geo.append(max(val, prev + 1))
        return small + geo

    if bidirectional:  # ..., -2, -1 | 0 | 1, 2, ...: distinct buckets around 0, both signs
        pos = one_side((num_buckets - 2) // 2) if num_buckets > 1 else []
        neg = one_side(num_buckets - 2 - len(pos)) if num_buckets > 1 else []
        bounds = [-b for b in reversed(neg)] + ([0] if num_buckets > 1 else []) + pos
    else:  # every delta <= 0 shares bucket 0
        bounds = one_side(num_buckets - 1)
    out = torch.tensor(bounds, dtype=torch.int64)
    if out.numel() != num_buckets - 1 or (out.numel() > 1 and bool((out[1:] <= out[:-1]).any())):
        raise AssertionError(f"internal: bad boundaries {bounds} for {num_buckets} buckets")
    return out
