"""FBGEMM sll attention drop-ins (moved to the end of fbgemm_compat.py once that file lands)."""

from __future__ import annotations

import torch

from shopml.jagged import attention_reference as _attn_ref
from shopml.jagged.attention import _INTERPRET as _ATTN_INTERPRET


def _attn_use_triton(t: torch.Tensor) -> bool:
    return t.is_cuda or _ATTN_INTERPRET


def _attn_fbgemm_checks(offsets: object, max_seq_len: object, **tensors: object) -> None:
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            found = (
                f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            )
            raise ValueError(f"{name}: expected a floating-point tensor, found {found}")
    if not isinstance(offsets, torch.Tensor) or offsets.dim() != 1 or offsets.is_floating_point():
        raise ValueError(f"offsets: expected a 1-D integer (B+1,) tensor, found {offsets!r:.80}")
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 0:
        raise ValueError(f"max_seq_len: expected a Python int >= 0, found {max_seq_len!r}")


def _attn_fbgemm(q, k, v, offsets, max_seq_len, *, post_scale, allow_tf32, attn_bias=None,  # noqa: ANN001, ANN202
                 k_offsets=None, max_seqlen_k=None):  # fmt: skip
    if _attn_use_triton(q):
        from shopml.jagged.attention_ops import triton_attention

        return triton_attention(
            q,
            k,
            v,
            offsets,
            max_seq_len,
            k_offsets=k_offsets,
            max_seqlen_k=max_seqlen_k,
            scale=1.0,
            attn_bias=attn_bias,
            post_scale=post_scale,
            allow_tf32=allow_tf32,
            zero_init=True,
        )
    return _attn_ref.jagged_flash_attention(
        q,
        k,
        v,
        offsets,
        max_seq_len,
        k_offsets=k_offsets,
        max_seqlen_k=max_seqlen_k,
        scale=1.0,
        attn_bias=attn_bias,
        post_scale=post_scale,
    )


def jagged_flash_attention_basic(
    q_weights: torch.Tensor,
    k_weights: torch.Tensor,
    v_weights: torch.Tensor,
    offsets: torch.Tensor,
    max_seq_len: int,
    use_mask: bool = False,
    allow_tf32: bool = True,
) -> torch.Tensor:
    """FBGEMM ``sll_jagged_flash_attention_basic``: single-head jagged attention, (T, D) in and out.

    Per sample (truncated to ``L = min(L_i, max_seq_len)`` rows; rows past it output 0):
    ``O = (softmax(Q K^T) / max_seq_len) V`` with NO ``1/sqrt(D)`` scale; with ``use_mask`` the
    softmax probabilities of keys ``j < i`` are zeroed after the softmax, without renormalising
    (the denominator still counts them). ``use_mask=True`` runs the PyTorch path (O(B N^2)).
    """
    _attn_fbgemm_checks(
        offsets, max_seq_len, q_weights=q_weights, k_weights=k_weights, v_weights=v_weights
    )
    post = 1.0 / max(max_seq_len, 1)
    q, k, v = q_weights[:, None], k_weights[:, None], v_weights[:, None]  # (T, 1, D)
    if not use_mask:
        return _attn_fbgemm(q, k, v, offsets, max_seq_len, post_scale=post, allow_tf32=allow_tf32)[
            :, 0
        ]
    # post-softmax mask: padded (B, N, N) probabilities, keep j >= i, no renormalisation
    index, valid, _ = _attn_ref.pad_index(offsets, max_seq_len)
    qp = _attn_ref._gather_padded(q_weights.float(), index, valid)  # (B, N, D)
    kp = _attn_ref._gather_padded(k_weights.float(), index, valid)
    vp = _attn_ref._gather_padded(v_weights.float(), index, valid)
    scores = torch.matmul(qp, kp.transpose(1, 2)).masked_fill(~valid[:, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # (B, N, N)
    keep = torch.ones(max_seq_len, max_seq_len, dtype=torch.bool, device=q.device).triu()
    out = torch.matmul(probs * keep, vp) * post  # (B, N, D)
    flat = out[valid]
    full = flat.new_zeros(q_weights.shape[0], flat.shape[-1]).index_copy(0, index[valid], flat)
    return full.to(q_weights.dtype)


def multi_head_jagged_flash_attention(
    q_weights: torch.Tensor,
    k_weights: torch.Tensor,
    v_weights: torch.Tensor,
    offsets: torch.Tensor,
    max_seq_len: int,
    allow_tf32: bool = True,
) -> torch.Tensor:
    """FBGEMM ``sll_multi_head_jagged_flash_attention``: ``(H, T, D)`` in and out.

    ``O_h = (softmax(Q_h K_h^T) / max_seq_len) V_h`` per sample, no ``1/sqrt(D)`` scale,
    sequences truncated to ``max_seq_len`` (rows past it output 0).
    """
    _attn_fbgemm_checks(
        offsets, max_seq_len, q_weights=q_weights, k_weights=k_weights, v_weights=v_weights
    )
    q, k, v = (t.permute(1, 0, 2) for t in (q_weights, k_weights, v_weights))  # (T, H, D) views
    out = _attn_fbgemm(
        q, k, v, offsets, max_seq_len, post_scale=1.0 / max(max_seq_len, 1), allow_tf32=allow_tf32
    )
    return out.permute(1, 0, 2)


def jagged_dense_flash_attention(
    q_weights: torch.Tensor,
    k_weights: torch.Tensor,
    v_weights: torch.Tensor,
    attn_bias: torch.Tensor,
    offsets: torch.Tensor,
    max_seq_len: int,
    allow_tf32: bool = True,
) -> torch.Tensor:
    """FBGEMM ``sll_jagged_dense_flash_attention``: dense slots attend over a jagged sequence.

    Args:
        q_weights: ``(T, D)`` jagged. k_weights: ``(B, D, S)`` dense (S query-like slots).
        v_weights: ``(T, D)`` jagged. attn_bias: ``(B, max_seq_len, S)``.
        offsets: ``(B+1,)``; max_seq_len: truncation length N.

    Returns:
        ``(B, S, D)``: ``out[b, s] = sum_l softmax_l(q_l . k[b, :, s] + bias[b, l, s]) v_l`` over the
        sample's first ``min(L_b, N)`` rows (no scale); an empty sample gives zeros.
    """
    _attn_fbgemm_checks(offsets, max_seq_len, q_weights=q_weights, k_weights=k_weights,
                        v_weights=v_weights, attn_bias=attn_bias)  # fmt: skip
    batch, _, slots = k_weights.shape
    index, valid, _ = _attn_ref.pad_index(offsets, max_seq_len)  # (B, N)
    bias_t = attn_bias[:, :max_seq_len].transpose(1, 2)  # (B, S, N)
    # jagged (sum S * L_b, 1) bias: sample b's (S, L_b) block row-major, as the kernel reads it
    bias = bias_t[valid[:, None, :].expand(batch, slots, max_seq_len)][:, None]
    queries = k_weights.transpose(1, 2).reshape(batch * slots, 1, -1)  # (B*S, 1, D)
    q_offsets = torch.arange(batch + 1, device=offsets.device, dtype=offsets.dtype) * slots
    out = _attn_fbgemm(
        queries,
        q_weights[:, None],
        v_weights[:, None],
        q_offsets,
        slots,
        post_scale=1.0,
        allow_tf32=allow_tf32,
        attn_bias=bias,
        k_offsets=offsets,
        max_seqlen_k=max_seq_len,
    )  # (B*S, 1, D)
    return out.view(batch, slots, -1)
