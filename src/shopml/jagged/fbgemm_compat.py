"""Drop-in replacements for FBGEMM's ``torch.ops.fbgemm.sll_*`` jagged ops.

Switch by changing an import::

    # out = torch.ops.fbgemm.sll_jagged_dense_bmm(x, y, x_offsets, N, allow_tf32)
    from shopml.jagged import fbgemm_compat as sll
    out = sll.jagged_dense_bmm(x, y, x_offsets, N, allow_tf32)

Each function has the FBGEMM op's name (without ``sll_``), argument names and order, and its
semantics as implemented by FBGEMM's CPU path (fbgemm-gpu-cpu 1.9.0 serves as the test oracle),
including:

- silent truncation where FBGEMM truncates: ``jagged_dense_bmm`` (rows at positions
  ``>= N`` give 0), ``jagged_jagged_bmm`` (such rows are ignored), ``jagged_softmax`` (softmax
  over the first ``max_seq_len`` rows, later rows 0; FBGEMM leaves them uninitialised),
  ``array_jagged_bmm_jagged_out`` (only the top-left ``max_seq_len`` block and rows are used);
- the jagged2 offsets conventions: ``jagged2_to_padded_dense`` and
  ``jagged_dense_elementwise_mul_jagged_out`` take offsets of the flattened ``L_i x L_i`` blocks,
  ``jagged2_softmax`` takes the sequence offsets plus ``offsets_total`` (the block offsets);
- ``jagged_self_substraction_jagged_out`` (spelling kept): ``out_i[p, q] = a_i[p] - a_i[q + 1]``
  for a sequence of ``L_i + 1`` values.

Flags of FBGEMM's compiled kernels (``allow_tf32``, ``use_fbgemm_kernel``) are accepted and
ignored: fp32 matmuls always run in IEEE fp32. Unlike FBGEMM, every floating input receives a
gradient (FBGEMM gives none to the mask of ``jagged_dense_elementwise_mul_jagged_out`` and none at
all for ``dense_jagged_cat_jagged_out`` / ``jagged_self_substraction_jagged_out``).
Inputs are checked like :mod:`shopml.jagged.ops` (see :func:`shopml.jagged.checks_enabled`).
Dispatch is ``backend="auto"``: Triton on CUDA or under the interpreter, else the reference.
"""

from __future__ import annotations

import torch

from shopml.jagged import checks
from shopml.jagged import ops_reference as ref
from shopml.jagged.ops import impl
from shopml.jagged.tensor import lengths_to_offsets

__all__ = [
    "array_jagged_bmm_jagged_out",
    "dense_jagged_cat_jagged_out",
    "jagged2_softmax",
    "jagged2_to_padded_dense",
    "jagged_dense_bmm",
    "jagged_dense_elementwise_add",
    "jagged_dense_elementwise_mul_jagged_out",
    "jagged_jagged_bmm",
    "jagged_jagged_bmm_jagged_out",
    "jagged_self_substraction_jagged_out",
    "jagged_softmax",
]


def _longest(offsets: torch.Tensor) -> int:
    return int((offsets[1:] - offsets[:-1]).max()) if offsets.numel() > 1 else 0


def _block_lengths(block_offsets: torch.Tensor, name: str) -> torch.Tensor:
    """Sequence lengths L_i from the offsets of flattened L_i x L_i blocks."""
    sizes = (block_offsets[1:] - block_offsets[:-1]).long()
    lengths = torch.sqrt(sizes.double()).round().long()
    if checks.content_checks_on() and not torch.equal(lengths * lengths, sizes):
        bad = int(torch.nonzero(lengths * lengths != sizes)[0, 0])
        raise ValueError(
            f"{name}: expected block sizes that are perfect squares (L_i * L_i), found "
            f"{int(sizes[bad])} for sequence {bad}"
        )
    return lengths


def jagged_dense_bmm(
    x: torch.Tensor,
    y: torch.Tensor,
    x_offsets: torch.Tensor,
    N: int,  # noqa: N803  (FBGEMM's name)
    allow_tf32: bool,
    use_fbgemm_kernel: bool = True,
) -> torch.Tensor:
    """``sll_jagged_dense_bmm``: x ``(T, K)`` jagged, y ``(B, K, M)`` -> ``(T, M)``; rows past N: 0."""
    checks.check_tensor(x, "x", ndim=2, floating=True)
    checks.check_tensor(y, "y", ndim=3, device=x.device)
    checks.check_offsets(
        x_offsets, x.shape[0], name="x_offsets", device=x.device, batch_size=y.shape[0]
    )
    if y.shape[1] != x.shape[1] or y.dtype != x.dtype:
        raise ValueError(
            f"y: expected (B, {x.shape[1]}, M) of dtype {x.dtype}, found {tuple(y.shape)} {y.dtype}"
        )
    checks.check_max_seqlen(N, name="N")
    return impl("jagged_dense_bmm", "auto", x, y)(x, x_offsets, y, N, truncate=True)


def jagged_jagged_bmm(
    x: torch.Tensor,
    y: torch.Tensor,
    x_offsets: torch.Tensor,
    N: int,  # noqa: N803
    allow_tf32: bool,
    use_fbgemm_kernel: bool = True,
) -> torch.Tensor:
    """``sll_jagged_jagged_bmm``: x ``(T, D)``, y ``(T, M)`` -> ``(B, D, M)`` = x_i^T y_i (first N rows)."""
    checks.check_tensor(x, "x", ndim=2, floating=True)
    checks.check_tensor(y, "y", ndim=2, device=x.device)
    checks.check_offsets(x_offsets, x.shape[0], name="x_offsets", device=x.device)
    if y.shape[0] != x.shape[0] or y.dtype != x.dtype:
        raise ValueError(
            f"y: expected ({x.shape[0]}, M) of dtype {x.dtype}, found {tuple(y.shape)} {y.dtype}"
        )
    checks.check_max_seqlen(N, name="N")
    return impl("jagged_jagged_bmm", "auto", x, y)(x, y, x_offsets, N, truncate=True)


def jagged_softmax(
    x: torch.Tensor,
    x_offsets: torch.Tensor,
    max_seq_len: int,
    use_fbgemm_kernel: bool = True,
) -> torch.Tensor:
    """``sll_jagged_softmax``: per-column softmax over each sequence's first max_seq_len rows."""
    checks.check_tensor(x, "x", ndim=2, floating=True)
    checks.check_offsets(x_offsets, x.shape[0], name="x_offsets", device=x.device)
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    return impl("jagged_softmax", "auto", x)(x, x_offsets, max_seq_len)


def jagged2_softmax(
    x: torch.Tensor,
    offsets: torch.Tensor,
    offsets_total: torch.Tensor,
    max_seq_len: int,
    transpose: bool,
) -> torch.Tensor:
    """``sll_jagged2_softmax``: softmax of each L_i x L_i block along rows (``transpose``: columns).

    ``offsets`` are the sequence offsets, ``offsets_total`` those of the blocks; no truncation.
    """
    checks.check_tensor(x, "x", ndim=1, floating=True)
    checks.check_offsets(offsets, None, name="offsets", device=x.device)
    checks.check_offsets(offsets_total, x.shape[0], name="offsets_total", device=x.device)
    if checks.content_checks_on() and not torch.equal(
        ref.jagged2_offsets(offsets), offsets_total.long()
    ):
        raise ValueError(
            "offsets_total: expected the exclusive cumsum of squared lengths of offsets"
        )
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    # FBGEMM's CPU path does not truncate: size the kernels by the true longest length.
    longest = max(max_seq_len, _longest(offsets))
    return impl("jagged2_softmax", "auto", x)(x, offsets, longest, bool(transpose))


def jagged_jagged_bmm_jagged_out(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    x_offsets: torch.Tensor,
    y_lengths: torch.Tensor,
    y_offsets: torch.Tensor,
    z_lengths: torch.Tensor,
    z_offsets: torch.Tensor,
    max_seq_len: int,
    allow_tf32: bool,
) -> torch.Tensor:
    """``sll_jagged_jagged_bmm_jagged_out``: blocks ``x_i @ y_i^T`` flattened to ``(sum L_i^2,)``.

    Like FBGEMM, assumes x_lengths == y_lengths (checked) and no truncation by max_seq_len.
    """
    checks.check_tensor(x, "x", ndim=2, floating=True)
    checks.check_tensor(y, "y", ndim=2, device=x.device)
    if y.shape != x.shape or y.dtype != x.dtype:
        raise ValueError(
            f"y: expected shape {tuple(x.shape)} and dtype {x.dtype} (like x), found {tuple(y.shape)} {y.dtype}"
        )
    checks.check_offsets(x_offsets, x.shape[0], name="x_offsets", device=x.device)
    checks.check_offsets(y_offsets, y.shape[0], name="y_offsets", device=x.device)
    checks.check_offsets(z_offsets, None, name="z_offsets", device=x.device)
    if checks.content_checks_on() and not torch.equal(x_offsets.long(), y_offsets.long()):
        raise ValueError("y_offsets: expected the same sequence lengths as x_offsets (M_i = N_i)")
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    total2 = int(z_offsets[-1])
    return impl("jagged2_bmm", "auto", x, y)(x, y, x_offsets, _longest(x_offsets), total2)


def array_jagged_bmm_jagged_out(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    x_offsets: torch.Tensor,
    y_lengths: torch.Tensor,
    y_offsets: torch.Tensor,
    z_lengths: torch.Tensor,
    z_offsets: torch.Tensor,
    max_seq_len: int,
    allow_tf32: bool,
) -> torch.Tensor:
    """``sll_array_jagged_bmm_jagged_out``: ``z_i = X_i @ y_i`` for blocks X ``(sum L_i^2,)``, y ``(T, D)``.

    Only the top-left ``max_seq_len`` block and rows are used; rows past it are 0.
    """
    checks.check_tensor(x, "x", ndim=1, floating=True)
    checks.check_tensor(y, "y", ndim=2, device=x.device)
    if y.dtype != x.dtype:
        raise ValueError(f"y: expected dtype {x.dtype} (like x), found {y.dtype}")
    checks.check_offsets(y_offsets, y.shape[0], name="y_offsets", device=x.device)
    checks.check_offsets(x_offsets, x.shape[0], name="x_offsets", device=x.device)
    if checks.content_checks_on() and not torch.equal(
        ref.jagged2_offsets(y_offsets), x_offsets.long()
    ):
        raise ValueError("x_offsets: expected the exclusive cumsum of squared lengths of y_offsets")
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    return impl("jagged2_matmul", "auto", x, y)(x, y, y_offsets, max_seq_len, False, truncate=True)


def jagged_dense_elementwise_add(
    x: torch.Tensor,
    x_offsets: torch.Tensor,
    y: torch.Tensor,
    max_seq_len: int,
    use_fbgemm_kernel: bool = True,
) -> torch.Tensor:
    """``sll_jagged_dense_elementwise_add``: jagged x ``(T, D)`` + padded y ``(B, N, D)`` -> ``(T, D)``.

    Rows at positions ``>= N`` are returned as x (FBGEMM's compiled CPU path).
    """
    checks.check_tensor(x, "x", ndim=2, floating=True)
    checks.check_tensor(y, "y", ndim=3, device=x.device)
    checks.check_offsets(
        x_offsets, x.shape[0], name="x_offsets", device=x.device, batch_size=y.shape[0]
    )
    if y.shape[2] != x.shape[1] or y.dtype != x.dtype:
        raise ValueError(
            f"y: expected (B, N, {x.shape[1]}) of dtype {x.dtype}, found {tuple(y.shape)} {y.dtype}"
        )
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    return impl("jagged_dense_add", "auto", x, y)(x, x_offsets, y)


def jagged_dense_elementwise_mul_jagged_out(
    x: torch.Tensor,
    y: torch.Tensor,
    x_seq_lengths: torch.Tensor,
    x_offsets: torch.Tensor,
    max_seq_len: int,
) -> torch.Tensor:
    """``sll_jagged_dense_elementwise_mul_jagged_out``: each L_i x L_i block of x times ``y[:L_i, :L_i]``.

    ``x_offsets`` are the block offsets, ``x_seq_lengths`` the L_i; y ``(N, N)`` may be bool (a mask).
    """
    checks.check_tensor(x, "x", ndim=1, floating=True)
    checks.check_tensor(y, "y", ndim=2, device=x.device)
    checks.check_lengths(x_seq_lengths, name="x_seq_lengths", device=x.device)
    checks.check_offsets(x_offsets, x.shape[0], name="x_offsets", device=x.device)
    if y.shape[0] != y.shape[1]:
        raise ValueError(f"y: expected a square (N, N) tensor, found {tuple(y.shape)}")
    offsets = lengths_to_offsets(x_seq_lengths)
    if checks.content_checks_on():
        if not torch.equal(ref.jagged2_offsets(offsets), x_offsets.long()):
            raise ValueError("x_offsets: expected the exclusive cumsum of x_seq_lengths squared")
        checks.check_max_seqlen(y.shape[0], offsets, name="y.shape[0]")
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    y = y.to(x.dtype)
    return impl("jagged2_mul_dense", "auto", x, y)(x, offsets, y)


def jagged2_to_padded_dense(
    values: torch.Tensor,
    offsets: torch.Tensor,
    max_length: int,
    padding_value: float = 0.0,
) -> torch.Tensor:
    """``sll_jagged2_to_padded_dense``: blocks ``(sum L_i^2,)`` -> ``(B, max_length, max_length)``.

    ``offsets`` are the block offsets (L_i = sqrt of each block size). Larger blocks are cropped.
    """
    checks.check_tensor(values, "values", ndim=1)
    checks.check_offsets(offsets, values.shape[0], name="offsets", device=values.device)
    checks.check_max_seqlen(max_length, name="max_length")
    seq_offsets = lengths_to_offsets(_block_lengths(offsets, "offsets"))
    return impl("jagged2_to_padded", "auto", values)(values, seq_offsets, max_length, padding_value)


def dense_jagged_cat_jagged_out(
    a: torch.Tensor,
    b: torch.Tensor,
    a_offsets: torch.Tensor,
    max_seq_len: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sll_dense_jagged_cat_jagged_out``: prepend ``a[i]`` (a ``(B,)``) to sequence i of b ``(T,)``.

    ``a_offsets`` (FBGEMM's name) are b's offsets. Returns ``(c (T+B,), c_offsets int64)``.
    """
    checks.check_tensor(a, "a", ndim=1)
    checks.check_tensor(b, "b", ndim=1, device=a.device)
    if b.dtype != a.dtype:
        raise ValueError(f"b: expected dtype {a.dtype} (like a), found {b.dtype}")
    checks.check_offsets(
        a_offsets, b.shape[0], name="a_offsets", device=a.device, batch_size=a.shape[0]
    )
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    return impl("jagged_prepend_dense", "auto", a, b)(a, b, a_offsets)


def jagged_self_substraction_jagged_out(
    a: torch.Tensor,
    offsets_a: torch.Tensor,
    offsets_b: torch.Tensor,
    max_seq_len: int,
) -> torch.Tensor:
    """``sll_jagged_self_substraction_jagged_out``: ``out_i[p, q] = a_i[p] - a_i[q + 1]``.

    Sequence i of a has ``L_i + 1`` values; its block has ``L_i x L_i`` entries at ``offsets_b``.
    """
    checks.check_tensor(a, "a", ndim=1)
    checks.check_offsets(offsets_a, a.shape[0], name="offsets_a", device=a.device)
    checks.check_offsets(
        offsets_b, None, name="offsets_b", device=a.device, batch_size=offsets_a.numel() - 1
    )
    checks.check_max_seqlen(max_seq_len, name="max_seq_len")
    lengths = (offsets_a[1:] - offsets_a[:-1]).long().clamp(min=1) - 1  # L_i
    new_offsets = lengths_to_offsets(lengths)
    if checks.content_checks_on() and not torch.equal(
        ref.jagged2_offsets(new_offsets), offsets_b.long()
    ):
        raise ValueError("offsets_b: expected the exclusive cumsum of (len(a_i) - 1)^2")
    total_new = int(new_offsets[-1])
    # head_i = a_i[:-1], tail_i = a_i[1:], as jagged tensors with lengths L_i.
    seq, pos = ref.token_index(new_offsets, total_new)
    rows = offsets_a[:-1].long()[seq] + pos
    head, tail = a[rows], a[rows + 1]
    total2 = int(offsets_b[-1])
    return impl("jagged_pairwise_diff", "auto", head, tail)(head, new_offsets, tail, total2)


# ---------------------------------------------------------------------------------------------
# Attention compat functions (jagged_flash_attention_basic, multi_head_jagged_flash_attention,
# jagged_dense_flash_attention) are appended below by the attention work.

from shopml.jagged import attention_reference as _attn_ref  # noqa: E402
from shopml.jagged.attention import _INTERPRET as _ATTN_INTERPRET  # noqa: E402


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


__all__ += [
    "jagged_dense_flash_attention",
    "jagged_flash_attention_basic",
    "multi_head_jagged_flash_attention",
]
