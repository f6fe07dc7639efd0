"""Ranking examples from behaviour logs: per impression, the user's history as jagged features.

Inputs (a world directory, or a user's own files in the same format, see docs/data.md):

- ``catalog``: product_id int64, category str, brand str, price float64 (other columns ignored)
- ``events``: user_id int64, product_id int64, ts datetime64, action str in {view, click, cart,
  purchase}
- ``impressions``: user_id int64, product_id int64, ts datetime64, label 0/1, split "train"|"test"

For every impression the history is the user's events *strictly before* its ``ts``, truncated to the
``max_history`` most recent ones and kept in time order (oldest first). Each history event carries
five id features, the keys of the batch's :class:`~shopml.jagged.tensor.KeyedJaggedTensor`:
``item``, ``category``, ``brand``, ``action`` and ``time_bucket`` (log2 minutes before the
impression), plus its time in seconds relative to the impression (int64, <= 0; the relative-time attention bias
reads the differences of these). Candidates carry
``item``, ``category``, ``brand`` ids and a standardised log price.

Nothing here loops over examples in Python. :class:`RankExamples` finds each impression's history
window once with one ``searchsorted`` over (user, time) keys; :meth:`RankExamples.collate` gathers a
batch with ``repeat`` + ``arange`` index arithmetic. :class:`BatchLoader` wraps it in a
``torch.utils.data.DataLoader`` (workers, pinned memory) that yields whole batches.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from shopml.common.io import check_columns, read_table
from shopml.formats.schemas import CATALOG, EVENTS, IMPRESSIONS, SPLITS
from shopml.rank.config import ACTIONS

HISTORY_KEYS = ("item", "category", "brand", "action", "time_bucket")
CANDIDATE_KEYS = ("item", "category", "brand")

CATALOG_SCHEMA = CATALOG.kinds(["product_id", "category", "brand", "price"])
EVENTS_SCHEMA = EVENTS.kinds()
IMPRESSIONS_SCHEMA = IMPRESSIONS.kinds(["user_id", "product_id", "ts", "label", "split"])


# --------------------------------------------------------------------------- tables and vocab
@dataclass(frozen=True)
class RankTables:
    """The three validated input tables."""

    catalog: pd.DataFrame
    events: pd.DataFrame
    impressions: pd.DataFrame

    @classmethod
    def from_world(cls, world_dir: str | os.PathLike[str]) -> RankTables:
        """Read ``catalog``, ``events`` and ``impressions`` of a world directory.

        Each table is ``<name>.parquet``, or ``<name>.csv`` when no parquet file is there (a
        user's own data in the world's format).
        """
        world_dir = Path(world_dir)
        if not world_dir.is_dir():
            raise ValueError(
                f"world: expected a world directory, found no directory at {world_dir}"
            )

        def table(name: str) -> Path:
            parquet = world_dir / f"{name}.parquet"
            csv = world_dir / f"{name}.csv"
            return csv if not parquet.exists() and csv.exists() else parquet

        return cls.from_files(table("catalog"), table("events"), table("impressions"))

    @classmethod
    def from_files(
        cls,
        catalog: str | os.PathLike[str],
        events: str | os.PathLike[str],
        impressions: str | os.PathLike[str],
    ) -> RankTables:
        """Read and validate a user's own files (parquet or CSV with the world's columns)."""
        cat = read_table(catalog, "catalog")
        ev = read_table(events, "events")
        imp = read_table(impressions, "impressions")
        for df, name in ((ev, "events"), (imp, "impressions")):
            if "ts" in df.columns and not pd.api.types.is_datetime64_any_dtype(df["ts"]):
                try:
                    df["ts"] = pd.to_datetime(df["ts"])
                except (ValueError, TypeError) as exc:
                    raise ValueError(
                        f"{name}: column 'ts' should hold timestamps, found values like "
                        f"{df['ts'].iloc[0]!r}"
                    ) from exc
        return cls.from_frames(cat, ev, imp)

    @classmethod
    def from_frames(
        cls, catalog: pd.DataFrame, events: pd.DataFrame, impressions: pd.DataFrame
    ) -> RankTables:
        """Validate three data frames; raises ``ValueError`` naming the table and column."""
        for df, schema, name in (
            (catalog, CATALOG_SCHEMA, "catalog"),
            (events, EVENTS_SCHEMA, "events"),
            (impressions, IMPRESSIONS_SCHEMA, "impressions"),
        ):
            if not isinstance(df, pd.DataFrame):
                raise ValueError(f"{name}: expected a pandas DataFrame, found {type(df).__name__}")
            check_columns(df, schema, name)
        if len(catalog) == 0:
            raise ValueError("catalog: expected at least one product, found an empty table")
        if len(impressions) == 0:
            raise ValueError("impressions: expected at least one impression, found an empty table")
        if catalog["product_id"].duplicated().any():
            dup = catalog["product_id"][catalog["product_id"].duplicated()].iloc[0]
            raise ValueError(f"catalog: column 'product_id' should be unique, found {dup} twice")
        bad_actions = sorted(set(events["action"].unique()) - set(ACTIONS))
        if bad_actions:
            raise ValueError(
                f"events: column 'action' should be one of {list(ACTIONS)}, found {bad_actions[:5]}"
            )
        labels = set(np.unique(impressions["label"].to_numpy()).tolist())
        if not labels <= {0, 1}:
            raise ValueError(
                f"impressions: column 'label' should be 0 or 1, found {sorted(labels)}"
            )
        bad_splits = sorted(set(impressions["split"].unique()) - set(SPLITS))
        if bad_splits:
            raise ValueError(
                f"impressions: column 'split' should be 'train' or 'test', found {bad_splits}"
            )
        for df, name in ((events, "events"), (impressions, "impressions")):
            if df["ts"].isna().any():
                raise ValueError(f"{name}: column 'ts' should have no missing values, found NaT")
        if catalog["price"].isna().any() or (catalog["price"] < 0).any():
            raise ValueError(
                "catalog: column 'price' should be >= 0 and present, found NaN/negative"
            )
        return cls(catalog, events, impressions)


@dataclass(frozen=True)
class RankVocab:
    """Id maps from raw catalog values to embedding rows (row 0 = padding / unknown).

    Attributes:
        product_ids: ``(n,)`` int64 sorted catalog product ids; product ``product_ids[i]`` is row i+1.
        categories / brands: sorted names; name ``categories[i]`` is row i+1.
        item_category / item_brand: ``(n+1,)`` int64 category / brand row of every item row.
        item_price: ``(n+1,)`` float32 standardised log1p(list price) of every item row (0 at 0).
    """

    product_ids: np.ndarray
    categories: tuple[str, ...]
    brands: tuple[str, ...]
    item_category: np.ndarray
    item_brand: np.ndarray
    item_price: np.ndarray

    @property
    def num_items(self) -> int:
        return len(self.product_ids) + 1

    @property
    def num_categories(self) -> int:
        return len(self.categories) + 1

    @property
    def num_brands(self) -> int:
        return len(self.brands) + 1

    def item_rows(self, product_ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Embedding rows of raw product ids (0 for ids not in the catalog)."""
        ids = np.asarray(product_ids, dtype=np.int64)
        pos = np.searchsorted(self.product_ids, ids)
        pos = np.minimum(pos, len(self.product_ids) - 1)
        found = self.product_ids[pos] == ids
        return np.where(found, pos + 1, 0).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in the checkpoint (``extra["vocab"]``)."""
        return {
            "product_ids": self.product_ids.tolist(),
            "categories": list(self.categories),
            "brands": list(self.brands),
            "item_category": self.item_category.tolist(),
            "item_brand": self.item_brand.tolist(),
            "item_price": [float(x) for x in self.item_price],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankVocab:
        return cls(
            product_ids=np.asarray(d["product_ids"], dtype=np.int64),
            categories=tuple(d["categories"]),
            brands=tuple(d["brands"]),
            item_category=np.asarray(d["item_category"], dtype=np.int64),
            item_brand=np.asarray(d["item_brand"], dtype=np.int64),
            item_price=np.asarray(d["item_price"], dtype=np.float32),
        )


def build_vocab(catalog: pd.DataFrame) -> RankVocab:
    """Vocabularies of a (validated) catalog."""
    cat = catalog.sort_values("product_id", kind="stable")
    product_ids = cat["product_id"].to_numpy(dtype=np.int64)
    categories, cat_codes = np.unique(cat["category"].astype(str).to_numpy(), return_inverse=True)
    brands, brand_codes = np.unique(cat["brand"].astype(str).to_numpy(), return_inverse=True)
    logp = np.log1p(cat["price"].to_numpy(dtype=np.float64))
    std = float(logp.std()) or 1.0
    price = ((logp - logp.mean()) / std).astype(np.float32)
    zero = np.zeros(1, dtype=np.int64)
    return RankVocab(
        product_ids=product_ids,
        categories=tuple(str(c) for c in categories),
        brands=tuple(str(b) for b in brands),
        item_category=np.concatenate([zero, cat_codes.astype(np.int64) + 1]),
        item_brand=np.concatenate([zero, brand_codes.astype(np.int64) + 1]),
        item_price=np.concatenate([np.zeros(1, np.float32), price]),
    )


def time_buckets(age_seconds: np.ndarray, num_buckets: int) -> np.ndarray:
    """Bucket ``1 + min(floor(log2(1 + minutes)), num_buckets - 1)`` of ages in seconds (>= 0)."""
    minutes = np.maximum(age_seconds, 0.0) / 60.0
    b = np.floor(np.log2(1.0 + minutes)).astype(np.int64)
    return 1 + np.minimum(b, num_buckets - 1)


# --------------------------------------------------------------------------- batches
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


# --------------------------------------------------------------------------- examples
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
    "CANDIDATE_KEYS",
    "HISTORY_KEYS",
    "JaggedHistory",
    "PaddedHistory",
    "RankBatch",
    "RankExamples",
    "RankTables",
    "RankVocab",
    "build_vocab",
    "load_examples",
    "log_fill",
    "time_buckets",
]
