"""Ranking examples from behaviour logs: per impression, the user's history as jagged features.

For every impression the history is the user's events *strictly before* its ``ts``, truncated to the
``max_history`` most recent ones and kept in time order (oldest first); the features of a history
event and of a candidate are described in :mod:`shopml.rank.batch`. The tables come from
:mod:`shopml.rank.tables`, the id maps from :mod:`shopml.rank.vocab`.

Nothing here loops over examples in Python. :class:`RankExamples` finds each impression's history
window once with one ``searchsorted`` over (user, time) keys; :meth:`RankExamples.collate` gathers a
batch with ``repeat`` + ``arange`` index arithmetic. :class:`~shopml.rank.loader.BatchLoader` wraps
it in a ``torch.utils.data.DataLoader`` (workers, pinned memory) that yields whole batches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from shopml.rank.batch import HISTORY_KEYS, JaggedHistory, PaddedHistory, RankBatch
from shopml.rank.config import ACTIONS, SPLITS
from shopml.rank.tables import RankTables
from shopml.rank.vocab import RankVocab


def time_buckets(age_seconds: np.ndarray, num_buckets: int) -> np.ndarray:
    """Bucket ``1 + min(floor(log2(1 + minutes)), num_buckets - 1)`` of ages in seconds (>= 0)."""
    minutes = np.maximum(age_seconds, 0.0) / 60.0
    b = np.floor(np.log2(1.0 + minutes)).astype(np.int64)
    return 1 + np.minimum(b, num_buckets - 1)


@dataclass
class RankExamples:
    """Per-impression history windows over per-user event arrays, ready to collate.

    Events are sorted by (user, time) once; example ``i``'s history is the event rows
    ``[hist_start[i], hist_start[i] + hist_len[i])``.
    """

    vocab: RankVocab
    max_history: int
    num_time_buckets: int
    # event arrays, sorted by (user, ts)
    ev_item: np.ndarray
    ev_action: np.ndarray
    ev_ts: np.ndarray  # int64 nanoseconds
    # example arrays
    hist_start: np.ndarray
    hist_len: np.ndarray
    cand_item: np.ndarray
    imp_ts: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: slice | np.ndarray) -> RankExamples:
        """The examples ``index`` selects (the event arrays are shared, not copied)."""
        return dataclasses.replace(
            self,
            hist_start=self.hist_start[index],
            hist_len=self.hist_len[index],
            cand_item=self.cand_item[index],
            imp_ts=self.imp_ts[index],
            labels=self.labels[index],
        )

    @property
    def mean_history(self) -> float:
        return float(self.hist_len.mean()) if len(self) else 0.0

    @classmethod
    def build(
        cls,
        tables: RankTables,
        vocab: RankVocab,
        split: str | None,
        max_history: int,
        num_time_buckets: int,
    ) -> RankExamples:
        """Examples of one ``split`` ("train", "test" or None for all impressions).

        Raises:
            ValueError: for ``max_history < 1``, an unknown split, or a split with no impressions.
        """
        if not isinstance(max_history, int) or max_history < 1:
            raise ValueError(f"max_history: expected an int >= 1, found {max_history!r}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS} or None, found {split!r}")
        imp = tables.impressions
        if split is not None:
            imp = imp[imp["split"].to_numpy() == split]
        if len(imp) == 0:
            raise ValueError(f"impressions: expected impressions in split {split!r}, found none")
        ev = tables.events
        ev_user = ev["user_id"].to_numpy(dtype=np.int64)
        ev_ts = ev["ts"].to_numpy().astype("datetime64[ns]").astype(np.int64)
        imp_user = imp["user_id"].to_numpy(dtype=np.int64)
        imp_ts = imp["ts"].to_numpy().astype("datetime64[ns]").astype(np.int64)

        # Dense ranks of users and times over both tables keep the joint key exact in int64.
        users, user_code = np.unique(np.concatenate([ev_user, imp_user]), return_inverse=True)
        times, time_code = np.unique(np.concatenate([ev_ts, imp_ts]), return_inverse=True)
        n_ev = len(ev_user)
        key = user_code.astype(np.int64) * (len(times) + 1) + time_code.astype(np.int64)
        ev_key, imp_key = key[:n_ev], key[n_ev:]
        order = np.argsort(ev_key, kind="stable")
        ev_key = ev_key[order]
        # First event of the impression's user, and first event at or after its time.
        user_first = np.searchsorted(ev_key, user_code[n_ev:].astype(np.int64) * (len(times) + 1))
        end = np.searchsorted(ev_key, imp_key, side="left")
        start = np.maximum(user_first, end - max_history)
        ev_item = vocab.item_rows(ev["product_id"].to_numpy(dtype=np.int64)[order])
        action_codes = {a: i + 1 for i, a in enumerate(ACTIONS)}
        ev_action = ev["action"].map(action_codes).to_numpy(dtype=np.int64)[order]
        return cls(
            vocab=vocab,
            max_history=max_history,
            num_time_buckets=num_time_buckets,
            ev_item=ev_item,
            ev_action=ev_action,
            ev_ts=ev_ts[order],
            hist_start=start.astype(np.int64),
            hist_len=(end - start).astype(np.int64),
            cand_item=vocab.item_rows(imp["product_id"].to_numpy(dtype=np.int64)),
            imp_ts=imp_ts,
            labels=imp["label"].to_numpy().astype(np.float32),
        )

    def collate(self, idx: np.ndarray, layout: str = "jagged") -> RankBatch:
        """Gather examples ``idx`` into one batch, vectorised (no per-example Python loop).

        Args:
            idx: ``(B,)`` integer example indices.
            layout: "jagged" (KeyedJaggedTensor history) or "padded" (``(B, max_history)`` tensors).
        """
        if layout not in ("jagged", "padded"):
            raise ValueError(f"layout: expected 'jagged' or 'padded', found {layout!r}")
        idx = np.asarray(idx, dtype=np.int64)
        b = idx.shape[0]
        lengths = self.hist_len[idx]
        offsets = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        # Row t of the batch is event hist_start[i] + (t - offsets[i]) of the example i it belongs to.
        gather = np.repeat(self.hist_start[idx] - offsets[:-1], lengths) + np.arange(total)
        items = self.ev_item[gather]
        age_s = (np.repeat(self.imp_ts[idx], lengths) - self.ev_ts[gather]) / 1e9
        feats = {
            "item": items,
            "category": self.vocab.item_category[items],
            "brand": self.vocab.item_brand[items],
            "action": self.ev_action[gather],
            "time_bucket": time_buckets(age_s, self.num_time_buckets),
        }
        times = -np.round(age_s).astype(np.int64)
        cand = self.cand_item[idx]
        candidates = {
            "item": torch.from_numpy(cand),
            "category": torch.from_numpy(self.vocab.item_category[cand]),
            "brand": torch.from_numpy(self.vocab.item_brand[cand]),
            "price": torch.from_numpy(self.vocab.item_price[cand]),
        }
        labels = torch.from_numpy(self.labels[idx])
        if layout == "jagged":
            from shopml.jagged.tensor import KeyedJaggedTensor

            k = len(HISTORY_KEYS)
            values = np.concatenate([feats[key] for key in HISTORY_KEYS])
            all_lengths = np.tile(lengths, k)
            all_offsets = np.zeros(k * b + 1, dtype=np.int64)
            np.cumsum(all_lengths, out=all_offsets[1:])
            kjt = KeyedJaggedTensor(
                list(HISTORY_KEYS),
                torch.from_numpy(values),
                lengths=torch.from_numpy(all_lengths),
                offsets=torch.from_numpy(all_offsets),
            )
            max_seqlen = int(lengths.max()) if b else 0
            history: JaggedHistory | PaddedHistory = JaggedHistory(
                kjt, torch.from_numpy(times), max_seqlen
            )
        else:
            n = self.max_history
            rows = np.repeat(np.arange(b), lengths)
            cols = np.arange(total) - np.repeat(offsets[:-1], lengths)
            padded = {}
            for key in HISTORY_KEYS:
                dense = np.zeros((b, n), dtype=np.int64)
                dense[rows, cols] = feats[key]
                padded[key] = torch.from_numpy(dense)
            dense_times = np.zeros((b, n), dtype=np.int64)
            dense_times[rows, cols] = times
            history = PaddedHistory(
                padded, torch.from_numpy(dense_times), torch.from_numpy(lengths)
            )
        return RankBatch(history, candidates, labels)


def load_examples(
    tables: RankTables,
    vocab: RankVocab,
    max_history: int,
    num_time_buckets: int,
    max_train: int = 0,
    max_eval: int = 0,
) -> tuple[RankExamples, RankExamples]:
    """``(train, test)`` examples of the impressions' time-based split; ``max_train`` keeps the
    most recent train impressions and ``max_eval`` the first test ones (0 = all)."""
    train = RankExamples.build(tables, vocab, "train", max_history, num_time_buckets)
    test = RankExamples.build(tables, vocab, "test", max_history, num_time_buckets)
    if max_train and len(train) > max_train:
        train = train.take(np.sort(np.argsort(train.imp_ts, kind="stable")[-max_train:]))
    if max_eval and len(test) > max_eval:
        test = test.take(np.sort(np.argsort(test.imp_ts, kind="stable")[:max_eval]))
    return train, test


def log_fill(examples: RankExamples) -> dict[str, float]:
    """History length statistics (mean fill = mean length / max_history, p50, p99)."""
    lens = examples.hist_len
    if len(lens) == 0:
        return {"mean_fill": 0.0, "p50": 0.0, "p99": 0.0, "mean": 0.0}
    return {
        "mean": float(lens.mean()),
        "mean_fill": float(lens.mean()) / examples.max_history,
        "p50": float(np.percentile(lens, 50)),
        "p99": float(np.percentile(lens, 99)),
    }


__all__ = [
    "RankExamples",
    "RankTables",
    "load_examples",
    "log_fill",
    "time_buckets",
]
