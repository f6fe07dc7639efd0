"""RankingModel: click-through prediction over a user's variable-length behaviour history.

Architecture (E = ``embed_dim``)::

    history events (item, category, brand, action, time bucket) --sum of embeddings--> tokens (T, E)
        -> L x [pre-LN jagged self-attention with a relative-time bias, pre-LN feed-forward]
        -> LayerNorm                                                         encoded history
    candidate (item, category, brand)  --sum of the same tables--> query (B, M, E)
    target attention of the query over the encoded history   -> (B, M, E)     "what in the history
    mean pooling of the encoded history                       -> (B, E)        matters for this item"
    x0 = [pooled, target, query, query * target, price, log history length]
        -> DCN-v2 cross layers -> MLP -> one logit per candidate

Interaction block: **DCN-v2 cross layers** (Wang et al., 2021) stacked before the MLP, not a
DHEN-style ensemble. Why: the inputs of the interaction are few (four E-wide vectors and two
scalars), so the win of DHEN — mixing many heterogeneous feature groups with an ensemble of
interaction modules per layer — has little to work on, while it multiplies parameters, tuning knobs
and step time. A cross layer ``x_{l+1} = x0 * (W x_l + b) + x_l`` adds explicit bounded-degree
feature crosses (candidate x history summary, price x recency) for one d x d matmul each, is
well-understood at production scale, and keeps the cost of the model in the sequence encoder —
which is what the jagged/padded/pooling comparison measures.

Sequence backends (``RankConfig.sequence_backend``), all sharing the same parameters:

- ``"jagged"``: the history stays a ``JaggedTensor`` (values ``(T, E)`` + offsets) end to end;
  attention is ``JaggedMultiheadAttention.forward`` / ``JaggedTargetAttention.forward``.
- ``"padded"``: the history is ``(B, N, E)`` with N = ``max_history``; attention is the modules'
  ``forward_padded`` (SDPA + padding mask), every per-token op runs on padding too. The same math:
  with the same weights it gives the same outputs and gradients as "jagged".
- ``"pooling"``: no attention at all: the blocks keep only their feed-forward, and the target
  attention is replaced by the mean-pooled history.

Embedding lookups of the "jagged" and "pooling" backends (:meth:`RankingModel._embed`): one lookup
per table over the history and candidate ids together, and, when gradients are taken, the small
tables (at most ``ONEHOT_MAX_ROWS`` rows: actions, time buckets, usually categories) summed by one
matmul of a one-hot matrix with their stacked weights. Their gradient is then a matmul too: the ordinary
embedding backward scatters one atomic add per token and column into a few rows, which serialises
on the GPU (0.7 ms of a 7 ms step at 213k tokens). Row 0 stays the padding row (no gradient). The
"padded" backend keeps plain ``nn.Embedding`` lookups (what a user of padded tensors writes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shopml.rank.batch import CANDIDATE_KEYS, HISTORY_KEYS, JaggedHistory, PaddedHistory
from shopml.rank.config import ACTIONS, RankConfig

CPU_ATTENTION_PAIRS = 1 << 18  # padded (query, key) pairs per self-attention call off CUDA
ONEHOT_MAX_ROWS = 128  # tables this small are looked up by a one-hot matmul (see the docstring)


def length_groups(lengths: np.ndarray, max_pairs: int) -> list[np.ndarray]:
    """Sequence indices grouped for the padded CPU attention: sorted by length, cut so that each
    group's ``count * longest**2 <= max_pairs`` (a longer sequence goes alone)."""
    order = np.argsort(lengths, kind="stable")
    longest = lengths[order].astype(np.int64) ** 2
    cuts = [0]
    for i in range(1, len(order)):
        if (i + 1 - cuts[-1]) * longest[i] > max_pairs:
            cuts.append(i)
    cuts.append(len(order))
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _minutes(times: torch.Tensor) -> torch.Tensor:
    """Event times in whole minutes (int64): the unit of the relative-time bias buckets.

    The bias table's log-spaced buckets reach ``max_distance = 4096`` units, i.e. about three
    days in minutes, which spans a session (minutes) and a few days of revisits.
    """
    return torch.div(times, 60, rounding_mode="floor")


class FeedForward(nn.Module):
    """Pre-LN position-wise feed-forward ``x -> W2 gelu(W1 LN(x))`` on ``(..., E)``."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(self.norm(x)))))  # (..., E)


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))`` then ``x + ffn(x)``; attention absent for "pooling"."""

    def __init__(self, config: RankConfig, with_attention: bool) -> None:
        super().__init__()
        e = config.embed_dim
        self.attn = None
        if with_attention:
            from shopml.jagged.modules import JaggedMultiheadAttention

            self.norm = nn.LayerNorm(e)
            self.attn = JaggedMultiheadAttention(
                e,
                config.num_heads,
                dropout=config.dropout,
                causal=False,
                num_bias_buckets=config.num_bias_buckets,
                backend=config.attention_backend,
            )
        self.ffn = FeedForward(e, config.ffn_mult * e, config.dropout)

    def forward_jagged(self, x, times: torch.Tensor):
        """``x``: JaggedTensor with values ``(T, E)``; ``times``: ``(T,)`` int64 seconds."""
        v = x.values  # (T, E)
        if self.attn is not None:
            v = v + self._attend(x.with_values(self.norm(v)), times)  # (T, E)
        v = v + self.ffn(v)  # (T, E)
        return x.with_values(v)

    def _attend(self, x, times: torch.Tensor) -> torch.Tensor:
        """Self-attention values ``(T, E)``. Off CUDA the attention pads its batch to
        ``(B, H, N, N)`` scores (N: the longest history), about 25x the work and memory of the
        real ``sum(L_i**2)`` pairs of a batch of the small world (mean length 31 of 256): there it
        runs over groups of similar lengths (:func:`length_groups`), each padded to its own
        longest (the same math: attention never crosses sequences)."""
        if x.values.device.type != "cpu":
            return self.attn(x, times).values
        from shopml.jagged.tensor import JaggedTensor

        offsets = x.offsets.numpy()  # a CPU tensor: no device sync
        lengths = np.diff(offsets)
        groups = length_groups(lengths, CPU_ATTENTION_PAIRS)
        if len(groups) == 1:
            return self.attn(x, times).values
        parts, rows = [], []
        for seqs in groups:
            lens = lengths[seqs]
            ends = np.cumsum(lens)
            # token rows of the group's sequences, in group order
            index = torch.from_numpy(
                np.repeat(offsets[seqs] - ends + lens, lens) + np.arange(ends[-1])
            )
            chunk = JaggedTensor(
                x.values.index_select(0, index),
                torch.from_numpy(np.concatenate([[0], ends])).to(x.offsets.dtype),
                max(int(lens.max()), 1),
            )
            parts.append(self.attn(chunk, times.index_select(0, index)).values)
            rows.append(index)
        order = torch.cat(rows)  # rows of the grouped output; every row once
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel())
        return torch.cat(parts).index_select(0, inverse)

    def forward_padded(
        self, x: torch.Tensor, lengths: torch.Tensor, times: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``x (B, N, E)``, ``lengths (B,)``, ``times (B, N)``, ``mask (B, N, 1)`` -> ``(B, N, E)``."""
        if self.attn is not None:
            x = x + self.attn.forward_padded(self.norm(x), lengths, times)  # (B, N, E)
        x = x + self.ffn(x)  # (B, N, E)
        return x * mask  # padding rows back to 0


class CrossNetwork(nn.Module):
    """DCN-v2 cross layers: ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` (W full or low rank)."""

    def __init__(self, dim: int, num_layers: int, rank: int = 0) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            if rank and rank < dim:
                self.layers.append(
                    nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim))
                )
            else:
                self.layers.append(nn.Linear(dim, dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x  # (..., d)
        return x


class RankingModel(nn.Module):
    """Click-through ranking model over jagged behaviour histories.

    Args:
        config: :class:`~shopml.rank.config.RankConfig` (vocabulary sizes filled in).

    Inputs of :meth:`forward` / :meth:`score`:
        history: :class:`~shopml.rank.batch.JaggedHistory` (KeyedJaggedTensor with the keys
            ``HISTORY_KEYS``, all with the same lengths; ``times (T,)`` int64) or
            :class:`~shopml.rank.batch.PaddedHistory` (``(B, N)`` tensors). Either is converted to
            what the backend needs, so any model scores any history layout.
        candidates: ``{"item", "category", "brand": (B,) or (B, M) int64, "price": same shape
            float}`` on the model's device.
    """

    def __init__(self, config: RankConfig) -> None:
        super().__init__()
        self.config = config
        e = config.embed_dim
        self.backend = config.sequence_backend
        self.item_emb = nn.Embedding(config.num_items, e, padding_idx=0)
        self.category_emb = nn.Embedding(config.num_categories, e, padding_idx=0)
        self.brand_emb = nn.Embedding(config.num_brands, e, padding_idx=0)
        self.action_emb = nn.Embedding(len(ACTIONS) + 1, e, padding_idx=0)
        self.time_emb = nn.Embedding(config.num_time_buckets + 1, e, padding_idx=0)
        with_attention = self.backend != "pooling"
        self.blocks = nn.ModuleList(
            EncoderBlock(config, with_attention) for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(e)
        self.target_attn = None
        if with_attention:
            from shopml.jagged.modules import JaggedTargetAttention

            self.target_attn = JaggedTargetAttention(
                e, config.num_heads, backend=config.attention_backend
            )
        d = 4 * e + 2
        self.cross = CrossNetwork(d, config.num_cross_layers, config.cross_rank)
        layers: list[nn.Module] = []
        width = d
        for hidden in config.mlp_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self._log_max = math.log1p(config.max_history)
        self.onehot_max_rows = ONEHOT_MAX_ROWS
        self._init_weights()

    def _init_weights(self) -> None:
        for emb in (
            self.item_emb,
            self.category_emb,
            self.brand_emb,
            self.action_emb,
            self.time_emb,
        ):
            nn.init.normal_(emb.weight, std=0.05)
            with torch.no_grad():
                emb.weight[0].zero_()

    # ------------------------------------------------------------------ pieces
    def _tokens(self, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the five history embeddings, ``(...,)`` ids -> ``(..., E)``."""
        return (
            self.item_emb(ids["item"])
            + self.category_emb(ids["category"])
            + self.brand_emb(ids["brand"])
            + self.action_emb(ids["action"])
            + self.time_emb(ids["time_bucket"])
        )

    def _tables(self) -> tuple[nn.Embedding, ...]:
        """The embedding tables in ``HISTORY_KEYS`` order."""
        return (self.item_emb, self.category_emb, self.brand_emb, self.action_emb, self.time_emb)

    def _embed(
        self, ids: torch.Tensor, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """History tokens ``(T, E)`` of ``ids (K, T)`` (rows in ``HISTORY_KEYS`` order) and
        candidate queries ``(R, E)`` of ``candidates (3, R)`` (item, category, brand rows).

        One lookup per table over the history and candidate ids together; tables of at most
        ``onehot_max_rows`` rows by one one-hot matmul (module docstring). The same sums as
        :meth:`_tokens` and :meth:`_query`.
        """
        t = ids.shape[1]
        k = candidates.shape[0]  # the tables shared with the candidates come first
        shared = torch.cat([ids[:k], candidates], dim=1)  # (k, T+R)
        both: torch.Tensor | None = None  # (T+R, E)
        history: torch.Tensor | None = None  # (T, E)
        small_ids, small_w = [], []
        # the one-hot matmul pays in the backward only: forward-only lookups gather
        limit = self.onehot_max_rows if torch.is_grad_enabled() else 0
        for i, table in enumerate(self._tables()):
            rows = shared[i] if i < k else ids[i]
            if table.num_embeddings <= limit and table.weight.requires_grad:
                if i >= k:  # candidates have no such feature: padding id 0
                    rows = torch.cat([rows, rows.new_zeros(candidates.shape[1])])
                small_ids.append(rows)
                small_w.append(table.weight)
                continue
            x = table(rows)
            if i < k:
                both = x if both is None else both + x
            else:
                history = x if history is None else history + x
        if small_ids:
            cols, base = [], 0
            for rows, w in zip(small_ids, small_w, strict=True):
                cols.append(torch.where(rows > 0, rows - 1 + base, -1))  # id 0: no column
                base += w.shape[0] - 1
            arange = torch.arange(base, device=ids.device)
            onehot = cols[0][:, None] == arange  # (T+R, S)
            for col in cols[1:]:
                onehot = onehot | (col[:, None] == arange)
            weight = torch.cat([w[1:] for w in small_w])  # (S, E), padding rows left out
            x = onehot.to(weight.dtype) @ weight  # (T+R, E)
            both = x if both is None else both + x
        tokens = both[:t] if history is None else both[:t] + history
        return tokens, both[t:]

    def _query(self, candidates: dict[str, torch.Tensor]) -> torch.Tensor:
        return (
            self.item_emb(candidates["item"])
            + self.category_emb(candidates["category"])
            + self.brand_emb(candidates["brand"])
        )  # (B, M, E)

    def _encode_jagged(
        self,
        tokens: torch.Tensor,
        times: torch.Tensor,
        offsets: torch.Tensor,
        max_seqlen: int,
        query: torch.Tensor,
    ):
        """``tokens (T, E)``, ``times (T,)`` int64 seconds, ``offsets (B+1,)``, host
        ``max_seqlen``, ``query (B, M, E)``; no host synchronisation."""
        from shopml.jagged.tensor import JaggedTensor

        b = offsets.shape[0] - 1
        t = tokens.shape[0]
        x = JaggedTensor(tokens, offsets, max_seqlen)
        minutes = _minutes(times)  # (T,)
        for block in self.blocks:
            x = block.forward_jagged(x, minutes)
        x = x.with_values(self.final_norm(x.values))  # (T, E)
        lengths = offsets[1:] - offsets[:-1]  # (B,)
        segment = torch.repeat_interleave(
            torch.arange(b, device=offsets.device), lengths, output_size=t
        )  # (T,)
        sums = x.values.new_zeros(b, x.values.shape[1]).index_add_(0, segment, x.values)
        pooled = sums / lengths.clamp(min=1).to(sums.dtype)[:, None]  # (B, E)
        if self.target_attn is not None:
            target = self.target_attn(query, x)  # (B, M, E)
        else:
            target = pooled[:, None, :].expand_as(query)
        return pooled, target, lengths

    def _encode_padded(self, history: PaddedHistory, query: torch.Tensor):
        lengths = history.lengths  # (B,)
        n = history.times.shape[1]
        mask = (torch.arange(n, device=lengths.device)[None, :] < lengths[:, None])[..., None]
        x = self._tokens(history.features)  # (B, N, E)
        times = _minutes(history.times)  # (B, N)
        for block in self.blocks:
            x = block.forward_padded(x, lengths, times, mask.to(x.dtype))
        x = self.final_norm(x) * mask  # (B, N, E)
        pooled = x.sum(dim=1) / lengths.clamp(min=1).to(x.dtype)[:, None]  # (B, E)
        if self.target_attn is not None:
            target = self.target_attn.forward_padded(query, x, lengths)  # (B, M, E)
        else:
            target = pooled[:, None, :].expand_as(query)
        return pooled, target, lengths

    def _head(self, pooled, target, lengths, query, price) -> torch.Tensor:  # noqa: ANN001
        """Interaction block and MLP: one logit per candidate, ``(B, M)``."""
        m = query.shape[1]
        pooled = pooled[:, None, :].expand(-1, m, -1).to(query.dtype)  # (B, M, E)
        target = target.to(query.dtype)
        loglen = (torch.log1p(lengths.to(query.dtype)) / self._log_max)[:, None, None]
        x0 = torch.cat(
            [
                pooled,
                target,
                query,
                query * target,
                price.to(query.dtype)[..., None],
                loglen.expand(-1, m, 1),
            ],
            dim=-1,
        )  # (B, M, 4E + 2)
        return self.mlp(self.cross(x0)).squeeze(-1)  # (B, M)

    # ------------------------------------------------------------------ public
    def forward(
        self, history: JaggedHistory | PaddedHistory, candidates: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Logits ``(B,)`` for ``(B,)`` candidates, or ``(B, M)`` for ``(B, M)`` candidates."""
        single = candidates["item"].dim() == 1
        if single:
            candidates = {k: v[:, None] for k, v in candidates.items()}
        if self.backend == "padded":
            query = self._query(candidates)  # (B, M, E)
            history = to_padded_history(history, self.config.max_history)
            pooled, target, lengths = self._encode_padded(history, query)
        else:
            history = to_jagged_history(history)
            kjt = history.kjt
            t = kjt.values.shape[0] // len(HISTORY_KEYS)
            ids = kjt.values.view(len(HISTORY_KEYS), t)  # (K, T)
            offsets = kjt.offsets[: kjt.batch_size + 1]
            b, m = candidates["item"].shape
            cand = torch.stack([candidates[k].reshape(-1) for k in CANDIDATE_KEYS])  # (3, B*M)
            tokens, query = self._embed(ids, cand)
            query = query.view(b, m, -1)  # (B, M, E)
            pooled, target, lengths = self._encode_jagged(
                tokens, history.times, offsets, history.max_seqlen, query
            )
        logits = self._head(pooled, target, lengths, query, candidates["price"])
        return logits[:, 0] if single else logits

    def forward_flat(
        self,
        ids: torch.Tensor,
        times: torch.Tensor,
        offsets: torch.Tensor,
        max_seqlen: int,
        candidates: torch.Tensor,
        price: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``(B,)`` from plain tensors (the captured fast step, "jagged"/"pooling" only).

        Args:
            ids: ``(K, T)`` int64 history ids, one row per key of ``HISTORY_KEYS``.
            times: ``(T,)`` int64 event times in seconds relative to the impression.
            offsets: ``(B+1,)`` int64 history offsets.
            max_seqlen: host int >= the longest history.
            candidates: ``(3, B)`` int64 candidate item, category and brand rows.
            price: ``(B,)`` float32 standardised log price.
        """
        if self.backend == "padded":
            raise ValueError("sequence_backend: forward_flat serves 'jagged' and 'pooling' only")
        tokens, query = self._embed(ids, candidates)  # (T, E), (B, E)
        query = query[:, None, :]  # (B, 1, E)
        pooled, target, lengths = self._encode_jagged(tokens, times, offsets, max_seqlen, query)
        return self._head(pooled, target, lengths, query, price[:, None])[:, 0]

    @torch.no_grad()
    def score(
        self, histories: JaggedHistory | PaddedHistory, candidates: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Click probabilities for serving: ``(B,)`` or ``(B, M)`` float32 in (0, 1)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self.forward(histories, candidates).float())
        finally:
            self.train(was_training)


def to_padded_history(history: JaggedHistory | PaddedHistory, max_len: int) -> PaddedHistory:
    """A :class:`PaddedHistory` of width ``max_len`` (identity for one already padded)."""
    if isinstance(history, PaddedHistory):
        return history
    from shopml.jagged.tensor import JaggedTensor

    kjt = history.kjt
    b = kjt.batch_size
    t = kjt.values.shape[0] // len(HISTORY_KEYS)
    offsets = kjt.offsets[: b + 1]
    ids = kjt.values.view(len(HISTORY_KEYS), t).t()  # (T, K)
    dense = JaggedTensor(ids, offsets, history.max_seqlen).to_padded(max_len)  # (B, N, K)
    times = JaggedTensor(history.times, offsets, history.max_seqlen).to_padded(max_len)
    feats = {k: dense[..., i] for i, k in enumerate(HISTORY_KEYS)}
    return PaddedHistory(feats, times, offsets[1:] - offsets[:-1])


def to_jagged_history(history: JaggedHistory | PaddedHistory) -> JaggedHistory:
    """A :class:`JaggedHistory` (identity for one already jagged)."""
    if isinstance(history, JaggedHistory):
        return history
    from shopml.jagged.tensor import JaggedTensor, KeyedJaggedTensor

    lengths = history.lengths
    jts = {k: JaggedTensor.from_padded(history.features[k], lengths) for k in HISTORY_KEYS}
    kjt = KeyedJaggedTensor.from_dict(jts)
    times = JaggedTensor.from_padded(history.times, lengths).values
    return JaggedHistory(kjt, times, history.times.shape[1])
