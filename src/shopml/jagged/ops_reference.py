"""Executable specification of the jagged ops: pure PyTorch, fp32 math, no Python loop over B.

Every function here is the reference its Triton twin (``shopml.jagged.triton``) is tested
against. Inputs are assumed valid (:mod:`shopml.jagged.ops` checks them). Low-precision inputs are
computed in float32 and the result is cast back to the input dtype. All functions are
differentiable through PyTorch autograd with respect to every floating input.

Notation: B sequences, lengths L_i, offsets (B+1,), T = sum L_i, N = max_seqlen.
"Jagged2" tensors hold one L_i x L_i matrix per sequence, row-major, flattened and concatenated:
shape (sum L_i^2,), offsets2 = exclusive cumsum of L_i^2.
"""

from __future__ import annotations

import torch


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


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() and t.dtype != torch.float64 else t


def jagged_to_padded(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, pad_value: float = 0.0
) -> torch.Tensor:
    """(T, ...) -> (B, max_len, ...); rows past max_len are dropped, padding is pad_value."""
    b = offsets.numel() - 1
    rest = values.shape[1:]
    if values.shape[0] == 0 or max_len == 0:
        return values.new_full((b, max_len, *rest), pad_value) + 0 * values.sum()
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
        return dense.new_zeros((total, *rest)) + 0 * dense.sum()
    seq, pos = token_index(offsets, total)
    inside = pos < n
    out = dense[seq, pos.clamp(max=n - 1)]
    return torch.where(inside.reshape(total, *([1] * len(rest))), out, torch.zeros_like(out))
