"""nn.Modules over jagged flash attention: self-attention, target attention, relative bias table.

Each module has a jagged ``forward`` and a ``forward_padded`` that runs the SAME weights and math
on padded tensors through ``F.scaled_dot_product_attention`` with a padding mask (plus the dense
form of the relative bias): the padded baseline the Jagged Flash Attention paper compares with.
Padded rows (positions >= length) of ``forward_padded`` outputs are exactly 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shopml.jagged.attention import (
    RelativeBias,
    consecutive_boundaries,
    jagged_flash_attention,
    jagged_target_attention,
    log_bucket_boundaries,
    relative_bias_dense,
)

__all__ = ["JaggedMultiheadAttention", "JaggedTargetAttention", "RelativeBiasTable"]


def _offsets_from_lengths(lengths: torch.Tensor) -> torch.Tensor:
    return torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])


class RelativeBiasTable(nn.Module):
    """Learnable bucketed relative position/time bias: ``table (num_buckets, H)`` + boundaries.

    ``forward(q_timestamps=None, k_timestamps=None)`` returns the :class:`RelativeBias` to pass
    as ``attn_bias``; the kernel computes ``table[bucket(t_i - t_j), h]`` on the fly.

    Args:
        num_buckets: number of buckets (>= 1).
        num_heads: H.
        max_distance: deltas beyond it share the outermost buckets.
        bidirectional: separate buckets for negative deltas (False for causal attention).
    """

    def __init__(
        self,
        num_buckets: int,
        num_heads: int,
        *,
        max_distance: int = 4096,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_buckets, num_heads))
        self.register_buffer(
            "boundaries",
            log_bucket_boundaries(num_buckets, max_distance, bidirectional=bidirectional),
            persistent=False,
        )
        # the kernels' way to bucket, decided once here (no device sync per call)
        self.consecutive = consecutive_boundaries(self.boundaries)

    def forward(
        self, q_timestamps: torch.Tensor | None = None, k_timestamps: torch.Tensor | None = None
    ) -> RelativeBias:
        return RelativeBias(
            self.table, self.boundaries, q_timestamps, k_timestamps, self.consecutive
        )


def _self_mask(lengths: torch.Tensor, n: int, causal: bool) -> torch.Tensor:
    """(B, 1, N, N) bool: True = attend. Padded query rows attend everywhere (zeroed later)."""
    pos = torch.arange(n, device=lengths.device)
    key_ok = pos[None, None, :] < lengths[:, None, None]  # (B, 1, N)
    if causal:
        key_ok = key_ok & (pos[None, None, :] <= pos[None, :, None])
    row_pad = pos[None, :, None] >= lengths[:, None, None]  # (B, N, 1)
    return (key_ok | row_pad)[:, None]


class JaggedMultiheadAttention(nn.Module):
    """Multi-head self-attention over jagged sequences (fused QKV and output projections).

    Args:
        embed_dim: E, divisible by ``num_heads``; head dim ``E / H`` in [16, 256].
        num_heads: H.
        dropout: dropout on the attention output (before the output projection) in training;
            the kernel itself has no attention-probability dropout.
        causal: each token attends to itself and earlier tokens only.
        num_bias_buckets: > 0 adds a learnable relative position/time bias with that many
            buckets (:class:`RelativeBiasTable`).
        backend: attention backend, ``"auto"``, ``"triton"`` or ``"reference"``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        causal: bool = False,
        num_bias_buckets: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(
                f"num_heads: expected a divisor of embed_dim={embed_dim}, found {num_heads}"
            )
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.causal, self.backend, self.dropout = causal, backend, dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.rel_bias = (
            RelativeBiasTable(num_bias_buckets, num_heads, bidirectional=not causal)
            if num_bias_buckets > 0
            else None
        )

    def _bias(self, timestamps: torch.Tensor | None) -> RelativeBias | None:
        return self.rel_bias(timestamps) if self.rel_bias is not None else None

    def forward(self, x, timestamps: torch.Tensor | None = None):  # noqa: ANN001, ANN201
        """x: JaggedTensor with values ``(T, E)``; timestamps ``(T,)`` int64 or None -> JaggedTensor."""
        values = x.values  # (T, E)
        qkv = self.qkv(values).view(-1, 3, self.num_heads, self.head_dim)  # (T, 3, H, Dh)
        q, k, v = qkv.unbind(1)  # (T, H, Dh) each
        attn = jagged_flash_attention(
            q,
            k,
            v,
            x.offsets,
            x.max_seqlen,
            causal=self.causal,
            attn_bias=self._bias(timestamps),
            backend=self.backend,
        )  # (T, H, Dh)
        attn = F.dropout(attn.reshape(-1, self.embed_dim), self.dropout, self.training)
        return x.with_values(self.out_proj(attn))  # (T, E)

    def forward_padded(
        self, x: torch.Tensor, lengths: torch.Tensor, timestamps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Padded baseline: x ``(B, N, E)``, lengths ``(B,)``, timestamps ``(B, N)`` -> ``(B, N, E)``."""
        batch, n, _ = x.shape
        qkv = self.qkv(x).view(batch, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, Dh) each
        allowed = _self_mask(lengths, n, self.causal)  # (B, 1, N, N)
        if self.rel_bias is not None:
            offsets = _offsets_from_lengths(lengths)
            valid = torch.arange(n, device=x.device)[None, :] < lengths[:, None]
            ts = timestamps[valid] if timestamps is not None else None
            dense = relative_bias_dense(self._bias(ts), offsets, n)  # (B, H, N, N)
            mask = dense.to(q.dtype).masked_fill(~allowed, float("-inf"))
        else:
            mask = allowed
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, N, Dh)
        attn = attn.transpose(1, 2).reshape(batch, n, self.embed_dim)
        attn = F.dropout(attn, self.dropout, self.training)
        out = self.out_proj(attn)  # (B, N, E)
        row_ok = torch.arange(n, device=x.device)[None, :, None] < lengths[:, None, None]
        return torch.where(row_ok, out, torch.zeros_like(out))


class JaggedTargetAttention(nn.Module):
    """Dense queries (candidates / seeds) attend over a jagged history (DIN / PMA-style).

    Args:
        embed_dim: E, divisible by ``num_heads``.
        num_heads: H.
        backend: attention backend.

    An empty history gives an attention output of 0, i.e. ``out_proj.bias`` after projection.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, backend: str = "auto") -> None:
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(
                f"num_heads: expected a divisor of embed_dim={embed_dim}, found {num_heads}"
            )
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.backend = backend
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.kv_proj = nn.Linear(embed_dim, 2 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query: torch.Tensor, history) -> torch.Tensor:  # noqa: ANN001
        """query ``(B, M, E)``, history JaggedTensor with values ``(T, E)`` -> ``(B, M, E)``."""
        batch, m, _ = query.shape
        q = self.q_proj(query).view(batch, m, self.num_heads, self.head_dim)  # (B, M, H, Dh)
        kv = self.kv_proj(history.values).view(-1, 2, self.num_heads, self.head_dim)
        k, v = kv.unbind(1)  # (T, H, Dh)
        attn = jagged_target_attention(
            q, k, v, history.offsets, history.max_seqlen, backend=self.backend
        )  # (B, M, H, Dh)
        return self.out_proj(attn.reshape(batch, m, self.embed_dim))

    def forward_padded(
        self, query: torch.Tensor, history: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Padded baseline: query ``(B, M, E)``, history ``(B, N, E)``, lengths ``(B,)``."""
        batch, m, _ = query.shape
        n = history.shape[1]
        q = self.q_proj(query).view(batch, m, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv_proj(history).view(batch, n, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, Dh)
        key_ok = torch.arange(n, device=query.device)[None, :] < lengths[:, None]  # (B, N)
        empty = lengths == 0
        mask = (key_ok | empty[:, None])[:, None, None, :]  # (B, 1, 1, N)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, M, Dh)
        attn = torch.where(empty[:, None, None, None], torch.zeros_like(attn), attn)
        return self.out_proj(attn.transpose(1, 2).reshape(batch, m, self.embed_dim))
