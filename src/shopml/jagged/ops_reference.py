"""Executable specification of the jagged ops: pure PyTorch, fp32 math, no Python loop over B.

Every function here is the reference its Triton twin (``shopml.jagged.triton``) is tested
against. Inputs are assumed valid (:mod:`shopml.jagged.ops` checks them). Low-precision floating
inputs are computed in float32 and the result is cast back to the input dtype. All functions are
differentiable through PyTorch autograd with respect to every floating input.

Notation: B sequences, lengths L_i, ``offsets (B+1,)``, T = sum L_i, N = max_seqlen.
"Jagged2" tensors hold one L_i x L_i matrix per sequence, row-major, flattened and concatenated:
shape ``(sum L_i^2,)``, offsets2 = exclusive cumsum of L_i^2 (see :func:`jagged2_offsets`).

Truncation (the FBGEMM semantics the compat layer needs; the public ops forbid lengths above
``max_seqlen`` while content checks are on): where an op takes ``max_seqlen``, rows at positions
``>= max_seqlen`` are treated as absent: they do not contribute to reductions and get a zero
output (``jagged_dense_add``: rows at positions ``>= y.shape[1]`` get ``x``).
"""

from __future__ import annotations

import torch

_NEG = -1e30  # finite "minus infinity": padded softmax columns stay NaN-free


def token_index(offsets: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of the T rows: (sequence id, position within the sequence), both int64 (T,)."""
    b = offsets.numel() - 1
    offsets = offsets.long()
    lengths = offsets[1:] - offsets[:-1]
    seq = torch.repeat_interleave(
        torch.arange(b, device=offsets.device), lengths, output_size=total
    )
    pos = torch.arange(total, device=offsets.device) - offsets[:-1][seq]
    return seq, pos


def jagged2_offsets(offsets: torch.Tensor) -> torch.Tensor:
    """``(B+1,)`` offsets of a jagged2 tensor (exclusive cumsum of L_i^2), int64."""
    lengths = (offsets[1:] - offsets[:-1]).long()
    out = torch.zeros(offsets.numel(), dtype=torch.int64, device=offsets.device)
    torch.cumsum(lengths * lengths, dim=0, out=out[1:])
    return out


def jagged2_index(
    offsets: torch.Tensor, total2: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of the sum L_i^2 entries of a jagged2 tensor: (sequence, row, column), int64."""
    lengths = (offsets[1:] - offsets[:-1]).long()
    off2 = jagged2_offsets(offsets)
    seq = torch.repeat_interleave(
        torch.arange(lengths.numel(), device=offsets.device), lengths * lengths, output_size=total2
    )
    local = torch.arange(total2, device=offsets.device) - off2[:-1][seq]
    n = lengths[seq].clamp(min=1)
    return seq, local // n, local % n


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _zero_graph(values: torch.Tensor) -> torch.Tensor:
    """A 0 that keeps ``values`` in the autograd graph (its gradient is then 0, not None)."""
    return 0 * values.sum() if values.is_floating_point() else 0


# ----------------------------------------------------------------------------- conversions
def jagged_to_padded(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_value: float = 0.0
) -> torch.Tensor:
    """(T, ...) -> (B, max_len, ...); rows past max_len are dropped, padding is pad_value."""
    b = offsets.numel() - 1
    rest = values.shape[1:]
    if values.shape[0] == 0 or max_len == 0:
        return values.new_full((b, max_len, *rest), pad_value) + _zero_graph(values)
    starts = offsets[:-1].long()
    lengths = offsets[1:].long() - starts
    pos = torch.arange(max_len, device=values.device)
    valid = pos[None, :] < lengths[:, None]  # (B, N)
    idx = (starts[:, None] + pos[None, :]).clamp(max=values.shape[0] - 1)  # (B, N)
    gathered = values[idx.reshape(-1)].reshape(b, max_len, *rest)
    mask = valid.reshape(b, max_len, *([1] * len(rest)))
    return torch.where(mask, gathered, torch.full_like(gathered, pad_value))


def padded_to_jagged(
    dense: torch.Tensor, offsets: torch.Tensor, total: int | None = None
) -> torch.Tensor:
    """(B, N, ...) -> (T, ...): row j of sequence i is dense[i, j]; rows at j >= N are zeros."""
    if total is None:
        total = int(offsets[-1])
    n = dense.shape[1]
    rest = dense.shape[2:]
    if total == 0 or n == 0:
        return dense.new_zeros((total, *rest)) + _zero_graph(dense)
    seq, pos = token_index(offsets, total)
    inside = pos < n
    out = dense[seq, pos.clamp(max=n - 1)]
    return torch.where(inside.reshape(total, *([1] * len(rest))), out, torch.zeros_like(out))


# ----------------------------------------------------------------------------- bmm
def jagged_dense_bmm(
    x: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor, max_seqlen: int, truncate: bool = True
) -> torch.Tensor:
    """x (T, K) jagged, y (B, K, N) -> (T, N) with out_i = x_i @ y_i (rows >= max_seqlen: 0).

    ``truncate`` (here and below) is accepted for parity with the Triton versions; the reference
    always truncates.
    """
    xp = jagged_to_padded(_f32(x), offsets, max_seqlen)  # (B, M, K)
    out = torch.bmm(xp, _f32(y))  # (B, M, N)
    return padded_to_jagged(out, offsets, x.shape[0]).to(x.dtype)


def jagged_jagged_bmm(
    x: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor, max_seqlen: int, truncate: bool = True
) -> torch.Tensor:
    """x (T, D), y (T, N) jagged -> (B, D, N) with out_i = x_i^T @ y_i (rows >= max_seqlen ignored)."""
    xp = jagged_to_padded(_f32(x), offsets, max_seqlen)  # (B, M, D)
    yp = jagged_to_padded(_f32(y), offsets, max_seqlen)  # (B, M, N)
    return torch.bmm(xp.transpose(1, 2), yp).to(x.dtype)


# ----------------------------------------------------------------------------- softmax
def jagged_softmax(x: torch.Tensor, offsets: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """x (T, H): softmax over the rows of each sequence, per column (rows >= max_seqlen: 0)."""
    xp = jagged_to_padded(_f32(x), offsets, max_seqlen, pad_value=_NEG)  # (B, M, H)
    p = torch.softmax(xp, dim=1)
    return padded_to_jagged(p, offsets, x.shape[0]).to(x.dtype)


def jagged2_softmax(
    x: torch.Tensor, offsets: torch.Tensor, max_seqlen: int, transpose: bool = False
) -> torch.Tensor:
    """x (sum L_i^2,): softmax of each L_i x L_i matrix over its rows' entries (``transpose``: columns)."""
    dense = jagged2_to_padded(_f32(x), offsets, max_seqlen, pad_value=_NEG)  # (B, M, M)
    p = torch.softmax(dense, dim=1 if transpose else 2)
    return padded_to_jagged2(p, offsets, x.shape[0]).to(x.dtype)


# ----------------------------------------------------------------------------- elementwise
def jagged_dense_add(x: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (T, D) jagged + y (B, N, D) padded -> (T, D); rows at positions >= N get x."""
    return (_f32(x) + padded_to_jagged(_f32(y), offsets, x.shape[0])).to(x.dtype)


def jagged2_mul_dense(x: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (sum L_i^2,) jagged2 times the top-left L_i x L_i block of y (N, N) -> (sum L_i^2,)."""
    seq, r, c = jagged2_index(offsets, x.shape[0])
    n = y.shape[0]
    if n == 0:
        return (_f32(x) * 0 + _zero_graph(y)).to(x.dtype)
    inside = (r < n) & (c < n)  # entries outside y (L_i > N, checks off) are multiplied by 0
    yv = torch.where(inside, _f32(y)[r.clamp(max=n - 1), c.clamp(max=n - 1)], 0.0)
    return (_f32(x) * yv).to(x.dtype)


def jagged_pairwise_diff(
    a: torch.Tensor, offsets: torch.Tensor, b: torch.Tensor | None = None, total2: int | None = None
) -> torch.Tensor:
    """a, b (T,) -> jagged2 (sum L_i^2,) with out_i[p, q] = a_i[p] - b_i[q] (b defaults to a)."""
    b = a if b is None else b
    if total2 is None:
        total2 = int(jagged2_offsets(offsets)[-1])
    seq, r, c = jagged2_index(offsets, total2)
    start = offsets[:-1].long()[seq]
    return (_f32(a)[start + r] - _f32(b)[start + c]).to(a.dtype)


# ----------------------------------------------------------------------------- reductions
def jagged_sum(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """x (T, D) -> (B, D): per-sequence sum (empty sequence: 0)."""
    seq, _ = token_index(offsets, x.shape[0])
    out = torch.zeros((offsets.numel() - 1, *x.shape[1:]), dtype=_f32(x).dtype, device=x.device)
    return out.index_add(0, seq, _f32(x)).to(x.dtype)


def jagged_mean(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """x (T, D) -> (B, D): per-sequence mean (empty sequence: 0)."""
    lengths = (offsets[1:] - offsets[:-1]).clamp(min=1).to(_f32(x).dtype)
    s = jagged_sum(_f32(x), offsets)
    return (s / lengths.reshape(-1, *([1] * (x.dim() - 1)))).to(x.dtype)


# ----------------------------------------------------------------------------- concat
def jagged_concat(
    a: torch.Tensor, a_offsets: torch.Tensor, b: torch.Tensor, b_offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence concatenation [a_i; b_i] -> (values (Ta+Tb, ...), offsets (B+1,) int64)."""
    a_off = a_offsets.long()
    b_off = b_offsets.long()
    out_off = a_off + b_off
    seq_a, pos_a = token_index(a_offsets, a.shape[0])
    seq_b, pos_b = token_index(b_offsets, b.shape[0])
    a_len = a_off[1:] - a_off[:-1]
    idx_a = out_off[:-1][seq_a] + pos_a
    idx_b = out_off[:-1][seq_b] + a_len[seq_b] + pos_b
    out = a.new_zeros((a.shape[0] + b.shape[0], *a.shape[1:]))
    out = out.index_copy(0, idx_a, a).index_copy(0, idx_b, b)
    return out, out_off


def jagged_prepend_dense(
    dense: torch.Tensor, x: torch.Tensor, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend dense[i] (B, ...) to sequence i of x (T, ...) -> (values (T+B, ...), offsets int64)."""
    b = offsets.numel() - 1
    ones = torch.arange(b + 1, device=offsets.device, dtype=torch.int64)
    return jagged_concat(dense, ones, x, offsets)


# ----------------------------------------------------------------------------- jagged2 family
def jagged2_bmm(
    x: torch.Tensor,
    y: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    total2: int | None = None,
    truncate: bool = True,
) -> torch.Tensor:
    """x, y (T, D) -> jagged2 (sum L_i^2,) with out_i = x_i @ y_i^T (e.g. attention scores)."""
    if total2 is None:
        total2 = int(jagged2_offsets(offsets)[-1])
    xp = jagged_to_padded(_f32(x), offsets, max_seqlen)  # (B, M, D)
    yp = jagged_to_padded(_f32(y), offsets, max_seqlen)  # (B, M, D)
    s = torch.bmm(xp, yp.transpose(1, 2))  # (B, M, M)
    return padded_to_jagged2(s, offsets, total2).to(x.dtype)


def jagged2_matmul(
    p: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    transpose: bool = False,
    truncate: bool = True,
) -> torch.Tensor:
    """p jagged2 (sum L_i^2,), v (T, D) -> (T, D) with out_i = P_i @ v_i (``transpose``: P_i^T @ v_i).

    With L_i > max_seqlen only the top-left max_seqlen block and rows are used; other rows are 0.
    """
    pp = jagged2_to_padded(_f32(p), offsets, max_seqlen)  # (B, M, M)
    if transpose:
        pp = pp.transpose(1, 2)
    vp = jagged_to_padded(_f32(v), offsets, max_seqlen)  # (B, M, D)
    return padded_to_jagged(torch.bmm(pp, vp), offsets, v.shape[0]).to(v.dtype)


def jagged2_to_padded(
    x: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_value: float = 0.0
) -> torch.Tensor:
    """jagged2 (sum L_i^2,) -> (B, max_len, max_len); entries past max_len are dropped."""
    b = offsets.numel() - 1
    seq, r, c = jagged2_index(offsets, x.shape[0])
    keep = (r < max_len) & (c < max_len)
    flat = (seq * max_len + r.clamp(max=max(max_len - 1, 0))) * max_len + c.clamp(
        max=max(max_len - 1, 0)
    )
    n_flat = b * max_len * max_len
    if n_flat == 0:
        return x.new_full((b, max_len, max_len), pad_value) + _zero_graph(x)
    # scatter real entries (dropped ones are routed to a dummy slot past the end)
    flat = torch.where(keep, flat, torch.full_like(flat, n_flat))
    base = x.new_full((n_flat + 1,), pad_value)
    out = base.index_put((flat,), x)
    return out[:n_flat].reshape(b, max_len, max_len)


def padded_to_jagged2(dense: torch.Tensor, offsets: torch.Tensor, total2: int) -> torch.Tensor:
    """(B, N, N) -> jagged2 (sum L_i^2,); entries past N are zeros."""
    n = dense.shape[1]
    seq, r, c = jagged2_index(offsets, total2)
    if total2 == 0 or n == 0:
        return dense.new_zeros((total2,)) + _zero_graph(dense)
    inside = (r < n) & (c < n)
    out = dense[seq, r.clamp(max=n - 1), c.clamp(max=n - 1)]
    return torch.where(inside, out, torch.zeros_like(out))
