"""Batch containers of ranking examples: the history as a KeyedJaggedTensor or as padded tensors.

Each history event carries five id features, the keys of the batch's
:class:`~shopml.jagged.tensor.KeyedJaggedTensor`: ``item``, ``category``, ``brand``, ``action`` and
``time_bucket`` (log2 minutes before the impression), plus its time in seconds relative to the
impression (int64, <= 0; the relative-time attention bias reads the differences of these).
Candidates carry ``item``, ``category``, ``brand`` ids and a standardised log price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

HISTORY_KEYS = ("item", "category", "brand", "action", "time_bucket")
CANDIDATE_KEYS = ("item", "category", "brand")


@dataclass
class PaddedHistory:
    """History on padded tensors (the "padded" backend's input).

    Attributes:
        features: ``{key: (B, N) int64}`` for every key of ``HISTORY_KEYS``, 0 past each length.
        times: ``(B, N)`` int64 event time in seconds relative to the impression (<= 0), 0 past
            each length.
        lengths: ``(B,)`` int64.
    """

    features: dict[str, torch.Tensor]
    times: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PaddedHistory:
        return PaddedHistory(
            {k: v.to(device, non_blocking=non_blocking) for k, v in self.features.items()},
            self.times.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> PaddedHistory:
        return PaddedHistory(
            {k: v.pin_memory() for k, v in self.features.items()},
            self.times.pin_memory(),
            self.lengths.pin_memory(),
        )


@dataclass
class JaggedHistory:
    """History as a KeyedJaggedTensor (the "jagged" and "pooling" backends' input).

    Attributes:
        kjt: keys ``HISTORY_KEYS``, int64 values; every key has the same lengths ``(B,)``.
        times: ``(T,)`` int64 event time in seconds relative to the impression (<= 0), aligned
            with each key's values.
        max_seqlen: host int, the longest history of the batch.
    """

    kjt: Any  # shopml.jagged.tensor.KeyedJaggedTensor (imported lazily)
    times: torch.Tensor
    max_seqlen: int

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` lengths (those of the first key)."""
        return self.kjt.lengths[: self.kjt.batch_size]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> JaggedHistory:
        """Copy to ``device``; offsets were validated when built, so no content checks (no
        host-device synchronisation) run on the copy."""
        from shopml.jagged.checks import checks_enabled
        from shopml.jagged.tensor import KeyedJaggedTensor

        kjt = self.kjt
        with checks_enabled(False):
            moved = KeyedJaggedTensor(
                kjt.keys,
                kjt.values.to(device, non_blocking=non_blocking),
                lengths=kjt.lengths.to(device, non_blocking=non_blocking),
                offsets=kjt.offsets.to(device, non_blocking=non_blocking),
            )
        return JaggedHistory(
            moved, self.times.to(device, non_blocking=non_blocking), self.max_seqlen
        )

    def pin_memory(self) -> JaggedHistory:
        from shopml.jagged.tensor import KeyedJaggedTensor

        kjt = self.kjt
        pinned = KeyedJaggedTensor(
            kjt.keys,
            kjt.values.pin_memory(),
            lengths=kjt.lengths.pin_memory(),
            offsets=kjt.offsets.pin_memory(),
        )
        return JaggedHistory(pinned, self.times.pin_memory(), self.max_seqlen)


@dataclass
class RankBatch:
    """One batch of ranking examples.

    Attributes:
        history: :class:`JaggedHistory` or :class:`PaddedHistory`.
        candidates: ``{"item", "category", "brand": (B,) int64, "price": (B,) float32}``.
        labels: ``(B,)`` float32 in {0, 1}.
    """

    history: JaggedHistory | PaddedHistory
    candidates: dict[str, torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> RankBatch:
        return RankBatch(
            self.history.to(device, non_blocking=non_blocking),
            {k: v.to(device, non_blocking=non_blocking) for k, v in self.candidates.items()},
            self.labels.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> RankBatch:
        return RankBatch(
            self.history.pin_memory(),
            {k: v.pin_memory() for k, v in self.candidates.items()},
            self.labels.pin_memory(),
        )


__all__ = ["CANDIDATE_KEYS", "HISTORY_KEYS", "JaggedHistory", "PaddedHistory", "RankBatch"]
