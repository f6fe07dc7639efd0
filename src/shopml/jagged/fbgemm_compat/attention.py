"""FBGEMM ``sll`` jagged flash attention with FBGEMM's names, arguments and semantics.

Unlike :func:`shopml.jagged.attention.jagged_flash_attention`: no ``1/sqrt(D)`` scale, the output
of the basic and multi-head functions is divided by ``max_seq_len``, and sequences longer than
``max_seq_len`` are truncated (their extra rows output 0). Dispatch is ``backend="auto"``
(:func:`shopml.jagged.backend.use_triton`); the Triton path is the attention's own entry
(:mod:`shopml.jagged.attention_triton`) with ``post_scale`` and zero-filled outputs.
"""

from __future__ import annotations

import torch

from shopml.jagged import attention_reference as ref
from shopml.jagged import checks
from shopml.jagged.backend import use_triton

__all__ = [
    "jagged_dense_flash_attention",
    "jagged_flash_attention_basic",
    "multi_head_jagged_flash_attention",
]


def _check(offsets: object, max_seq_len: object, token_dim: int, **tensors: tuple) -> None:
    """``tensors``: name -> (tensor, ndim), floating, on one device; the first one's dim
    ``token_dim`` has the T rows that ``offsets`` index (lengths above ``max_seq_len`` are legal:
    truncated). Content checks of the offsets follow :func:`shopml.jagged.checks_enabled`."""
    first = None
    for name, (t, ndim) in tensors.items():
        checks.check_tensor(
            t, name, ndim=ndim, floating=True, device=None if first is None else first.device
        )
        first = t if first is None else first
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    checks.check_offsets(offsets, first.shape[token_dim], device=first.device)


def _attention(q, k, v, offsets, max_seq_len, *, post_scale, allow_tf32, attn_bias=None,  # noqa: ANN001, ANN202
               k_offsets=None, max_seqlen_k=None):  # fmt: skip
    """(T, H, D) attention with FBGEMM's semantics on the chosen backend (inputs checked)."""
    if use_triton("auto", q):
        from shopml.jagged.attention_triton import jagged_flash_attention as run

        extra = {"allow_tf32": allow_tf32, "zero_init": True}
    else:
        run, extra = ref.jagged_flash_attention, {}
    return run(q, k, v, offsets, max_seq_len, k_offsets=k_offsets, max_seqlen_k=max_seqlen_k,
               scale=1.0, attn_bias=attn_bias, post_scale=post_scale, **extra)  # fmt: skip


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
    _check(offsets, max_seq_len, 0, q_weights=(q_weights, 2), k_weights=(k_weights, 2),
           v_weights=(v_weights, 2))  # fmt: skip
    post = 1.0 / max(max_seq_len, 1)
    q, k, v = q_weights[:, None], k_weights[:, None], v_weights[:, None]  # (T, 1, D)
    if not use_mask:
        return _attention(q, k, v, offsets, max_seq_len, post_scale=post, allow_tf32=allow_tf32)[
            :, 0
        ]
    # post-softmax mask: padded (B, N, N) probabilities, keep j >= i, no renormalisation
    index, valid, _ = ref.pad_index(offsets, max_seq_len)
    qp = ref._gather_padded(q_weights.float(), index, valid)  # (B, N, D)
    kp = ref._gather_padded(k_weights.float(), index, valid)
    vp = ref._gather_padded(v_weights.float(), index, valid)
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
    _check(offsets, max_seq_len, 1, q_weights=(q_weights, 3), k_weights=(k_weights, 3),
           v_weights=(v_weights, 3))  # fmt: skip
    q, k, v = (t.permute(1, 0, 2) for t in (q_weights, k_weights, v_weights))  # (T, H, D) views
    out = _attention(
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
    _check(offsets, max_seq_len, 0, q_weights=(q_weights, 2), k_weights=(k_weights, 3),
           v_weights=(v_weights, 2), attn_bias=(attn_bias, 3))  # fmt: skip
    batch, _, slots = k_weights.shape
    index, valid, _ = ref.pad_index(offsets, max_seq_len)  # (B, N)
    bias_t = attn_bias[:, :max_seq_len].transpose(1, 2)  # (B, S, N)
    # jagged (sum S * L_b, 1) bias: sample b's (S, L_b) block row-major, as the kernel reads it
    bias = bias_t[valid[:, None, :].expand(batch, slots, max_seq_len)][:, None]
    queries = k_weights.transpose(1, 2).reshape(batch * slots, 1, -1)  # (B*S, 1, D)
    q_offsets = torch.arange(batch + 1, device=offsets.device, dtype=offsets.dtype) * slots
    out = _attention(
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
