"""Shape buckets and packed batches: the host side of the captured fast step (no CUDA needed).

A CUDA graph replays fixed shapes. A jagged batch has three host sizes that move from batch to
batch: the examples ``B``, the history tokens ``T`` and the longest history ``max_seqlen``. Each is
rounded up to a bucket (:func:`bucket_key`), so that a few graphs serve a whole epoch:

- ``B`` to a power of two (or to ``min_batch``, so that the last, short batch of an epoch reuses
  the graph of the full ones); the missing examples are empty histories with loss weight 0;
- ``max_seqlen`` to a power of two (at least 16), capped at ``max(max_history, max_seqlen)``;
  attention programs whose block starts past their sequence's end exit at once;
- ``T`` to a multiple of a granule ``G`` (a power of two between ``T / 32`` and ``T / 16``).
  The ``T_b - T`` padding tokens form ``K = ceil(G / max_seqlen_b)`` **dummy sequences** after the
  real ones (each at most ``max_seqlen_b`` long, so the attention kernels see ordinary
  sequences): ids 0 (the zero padding embeddings), loss weight 0, and times
  :data:`DUMMY_TIME_STEP` apart, so that every pair of distinct dummy tokens lies beyond the
  relative-time bias's outermost boundary: the attention kernels take their tiles as tiles of
  one bucket (a scalar add) instead of a bucket a score (equal times, 0 before, made every dummy
  tile a mixed one: 15% of the bias's attention time at B=256, N=1024). Nothing crosses
  sequences in the model (attention, pooling and target attention are per sequence, every other
  op per token or per example), so the dummies change neither the loss nor any gradient.

:func:`pack` lays one batch out in two flat host buffers (int64: ids, times, offsets, candidate
ids; float32: price, labels, weights) with a fixed layout per bucket, pinned for one asynchronous
copy each into the graph's static input buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shopml.rank.batch import HISTORY_KEYS, JaggedHistory, RankBatch

MIN_SEQLEN_BUCKET = 16
MIN_TOKEN_GRANULE = 16
TOKEN_GRANULES_PER_BUCKET = 32  # padding below T / 16 tokens (granule <= 2T / 32)
# seconds between consecutive dummy tokens: 4097 minutes, past the bias buckets' largest
# ``max_distance`` (4096 minutes, shopml.jagged.modules.RelativeBiasTable), and small enough
# that one dummy sequence's times span under 2**28 minutes (the kernels' int32 closed form)
# for any ``max_seqlen`` below 65,000
DUMMY_TIME_STEP = 4097 * 60


def pow2_at_least(n: int, minimum: int = 1) -> int:
    """The smallest power of two >= ``max(n, minimum)``."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


def token_granule(tokens: int) -> int:
    """Granule of the token bucket of ``tokens``: a power of two near ``tokens / 32`` (>= 16)."""
    return max(MIN_TOKEN_GRANULE, pow2_at_least(tokens) // TOKEN_GRANULES_PER_BUCKET)


@dataclass(frozen=True)
class BucketKey:
    """The shapes of one graph.

    Attributes:
        batch: examples slots ``B_b`` (real examples first, then empty ones).
        tokens: history tokens ``T_b`` (real tokens first, then the dummy sequences').
        max_seqlen: ``max_seqlen_b``, the host bound every sequence (dummies too) stays within.
        dummies: ``K``, the dummy sequences after the ``B_b`` example slots.
    """

    batch: int
    tokens: int
    max_seqlen: int
    dummies: int

    @property
    def rows(self) -> int:
        """Sequences of the graph: ``B_b + K``."""
        return self.batch + self.dummies

    @property
    def int_size(self) -> int:
        """Length of the int64 buffer: ids ``(K_ids, T_b)``, times, offsets, candidates ``(3, R)``."""
        return (len(HISTORY_KEYS) + 1) * self.tokens + (self.rows + 1) + 3 * self.rows

    @property
    def float_size(self) -> int:
        """Length of the float32 buffer: price, labels, weights, each ``(R,)``."""
        return 3 * self.rows


def bucket_key(
    batch: int, tokens: int, max_seqlen: int, max_history: int, min_batch: int = 1
) -> BucketKey:
    """The bucket of a batch with ``batch`` examples, ``tokens`` history tokens and longest
    history ``max_seqlen`` (host ints, known when the batch is collated)."""
    for name, value in (("batch", batch), ("tokens", tokens), ("max_seqlen", max_seqlen)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}: expected an int >= 0, found {value!r}")
    if batch < 1:
        raise ValueError(f"batch: expected at least one example, found {batch}")
    seq_b = min(pow2_at_least(max_seqlen, MIN_SEQLEN_BUCKET), max(max_history, max_seqlen))
    granule = token_granule(tokens)
    tok_b = -(-max(tokens, 1) // granule) * granule
    # every token count mapping to tok_b has a granule <= token_granule(tok_b)
    dummies = -(-token_granule(tok_b) // seq_b)
    return BucketKey(pow2_at_least(batch, min_batch), tok_b, seq_b, dummies)


def dummy_lengths(key: BucketKey, tokens: int) -> np.ndarray:
    """``(K,)`` lengths of the dummy sequences holding the ``key.tokens - tokens`` padding."""
    pad = key.tokens - tokens
    if not 0 <= pad <= key.dummies * key.max_seqlen:
        raise ValueError(
            f"tokens: expected between {key.tokens - key.dummies * key.max_seqlen} and "
            f"{key.tokens} for bucket {key}, found {tokens}"
        )
    full = np.full(key.dummies, key.max_seqlen, dtype=np.int64)
    return np.clip(pad - np.arange(key.dummies) * key.max_seqlen, 0, full)


@dataclass
class PackedBatch:
    """One batch in a bucket's layout (see :meth:`views`), in two flat buffers.

    Attributes:
        key: its :class:`BucketKey`.
        ints: ``(key.int_size,)`` int64.
        floats: ``(key.float_size,)`` float32.
        examples: real examples (the first ``examples`` slots).
    """

    key: BucketKey
    ints: torch.Tensor
    floats: torch.Tensor
    examples: int

    def views(self) -> dict[str, torch.Tensor]:
        """Named views of the buffers (no copies)."""
        return layout_views(self.key, self.ints, self.floats)


def layout_views(
    key: BucketKey, ints: torch.Tensor, floats: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``ids (K_ids, T_b)``, ``times (T_b,)``, ``offsets (R+1,)``, ``candidates (3, R)``, and
    ``price``, ``labels``, ``weights`` ``(R,)`` as views of a bucket's two buffers."""
    k, t, r = len(HISTORY_KEYS), key.tokens, key.rows
    ids_end = k * t
    times_end = ids_end + t
    offsets_end = times_end + r + 1
    return {
        "ids": ints[:ids_end].view(k, t),
        "times": ints[ids_end:times_end],
        "offsets": ints[times_end:offsets_end],
        "candidates": ints[offsets_end : offsets_end + 3 * r].view(3, r),
        "price": floats[:r],
        "labels": floats[r : 2 * r],
        "weights": floats[2 * r :],
    }


def pack(
    batch: RankBatch, max_history: int, *, min_batch: int = 1, pin_memory: bool = False
) -> PackedBatch:
    """Lay a jagged host batch out in its bucket (see the module docstring).

    Args:
        batch: a batch with a :class:`~shopml.rank.batch.JaggedHistory` on the CPU.
        max_history: the model's ``max_history`` (caps the sequence-length bucket).
        min_batch: smallest example bucket (the training batch size: the short last batch of
            an epoch then shares the graph of the full ones).
        pin_memory: allocate the buffers in pinned memory (for asynchronous copies).
    """
    history = batch.history
    if not isinstance(history, JaggedHistory):
        raise ValueError(
            f"batch: expected a jagged history (layout 'jagged'), found {type(history).__name__}"
        )
    kjt = history.kjt
    b = kjt.batch_size
    k = len(HISTORY_KEYS)
    t = kjt.values.shape[0] // k
    key = bucket_key(b, t, history.max_seqlen, max_history, min_batch)
    ints = torch.zeros(key.int_size, dtype=torch.int64, pin_memory=pin_memory)
    floats = torch.zeros(key.float_size, dtype=torch.float32, pin_memory=pin_memory)
    v = layout_views(key, ints, floats)
    v["ids"][:, :t] = kjt.values.view(k, t)
    v["times"][:t] = history.times
    v["times"][t:] = (torch.arange(key.tokens - t) - (key.tokens - t)) * DUMMY_TIME_STEP
    offsets = v["offsets"]
    offsets[: b + 1] = kjt.offsets[: b + 1]
    offsets[b + 1 : key.batch + 1] = t  # empty example slots
    offsets[key.batch + 1 :] = t + torch.from_numpy(np.cumsum(dummy_lengths(key, t)))
    for row, name in enumerate(("item", "category", "brand")):
        v["candidates"][row, :b] = batch.candidates[name]
    v["price"][:b] = batch.candidates["price"]
    v["labels"][:b] = batch.labels
    v["weights"][:b] = 1.0
    return PackedBatch(key, ints, floats, b)


__all__ = [
    "BucketKey",
    "PackedBatch",
    "bucket_key",
    "dummy_lengths",
    "layout_views",
    "pack",
    "pow2_at_least",
    "token_granule",
]
