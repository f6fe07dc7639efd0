"""FBGEMM ``sll`` jagged ops with FBGEMM's names, arguments and semantics (see the package doc).

Each function checks its arguments like :mod:`shopml.jagged.ops`, then runs the implementation
that :func:`shopml.jagged.ops.impl` picks (``backend="auto"``).
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
