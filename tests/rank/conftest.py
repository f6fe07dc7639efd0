"""Synthetic frames in the world's format, for tests that do not need a whole world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopml.rank.config import RankConfig
from shopml.rank.data import RankExamples
from shopml.rank.tables import RankTables
from shopml.rank.vocab import build_vocab

ACTIONS = ["view", "click", "cart", "purchase"]


def make_frames(
    n_users: int = 12, n_items: int = 30, n_events: int = 300, n_imp: int = 160, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """catalog, events, impressions with a planted signal: a click is likely when the candidate's
    category is the category of one of the user's last 3 events before the impression."""
    rng = np.random.default_rng(seed)
    catalog = pd.DataFrame(
        {
            "product_id": np.arange(100, 100 + n_items, dtype=np.int64),
            "title": [f"p{i}" for i in range(n_items)],
            "category": [f"c{i % 5}" for i in range(n_items)],
            "brand": [f"b{i % 7}" for i in range(n_items)],
            "price": rng.uniform(5, 100, n_items),
        }
    )
    t0 = pd.Timestamp("2026-01-01")
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, n_users, n_events).astype(np.int64),
            "product_id": rng.integers(100, 100 + n_items, n_events).astype(np.int64),
            "ts": t0 + pd.to_timedelta(rng.integers(0, 30 * 86400, n_events), unit="s"),
            "action": rng.choice(ACTIONS, n_events),
        }
    ).sort_values(["user_id", "ts"], ignore_index=True)
    imp_user = rng.integers(0, n_users, n_imp).astype(np.int64)
    imp_ts = t0 + pd.to_timedelta(rng.integers(86400, 31 * 86400, n_imp), unit="s")
    imp_item = rng.integers(100, 100 + n_items, n_imp).astype(np.int64)
    labels = np.zeros(n_imp, dtype=np.int8)
    cat_of = dict(zip(catalog["product_id"], catalog["category"], strict=True))
    for i in range(n_imp):  # the label rule (a loop is fine in a fixture)
        ev = events[(events["user_id"] == imp_user[i]) & (events["ts"] < imp_ts[i])].tail(3)
        recent = {cat_of[p] for p in ev["product_id"]}
        labels[i] = int(cat_of[imp_item[i]] in recent)
    impressions = pd.DataFrame(
        {
            "user_id": imp_user,
            "product_id": imp_item,
            "ts": imp_ts,
            "position": np.zeros(n_imp, dtype=np.int16),
            "label": labels,
            "split": np.where(np.arange(n_imp) < int(0.75 * n_imp), "train", "test"),
        }
    )
    return catalog, events, impressions


@pytest.fixture()
def frames():
    return make_frames()


@pytest.fixture()
def frame_world(tmp_path):
    """A directory with catalog/events/impressions parquet files of :func:`make_frames`."""
    catalog, events, impressions = make_frames()
    d = tmp_path / "fworld"
    d.mkdir()
    catalog.to_parquet(d / "catalog.parquet", index=False)
    events.to_parquet(d / "events.parquet", index=False)
    impressions.to_parquet(d / "impressions.parquet", index=False)
    return d


@pytest.fixture()
def rank_setup(frames):
    """``rank_setup(backend="jagged", max_history=6, **settings) -> (examples, config)``: the
    examples of :func:`make_frames` and a small model's config (E=32, H=2, one layer, reference
    attention; ``settings`` override any RankConfig field), vocabularies from the frames."""

    def make(backend: str = "jagged", max_history: int = 6, **settings):
        tables = RankTables.from_frames(*frames)
        vocab = build_vocab(tables.catalog)
        examples = RankExamples.build(tables, vocab, None, max_history, 12)
        fields = {
            "num_time_buckets": 12,
            "embed_dim": 32,
            "num_heads": 2,
            "num_layers": 1,
            "num_bias_buckets": 6,
            "mlp_dims": (16,),
            "attention_backend": "reference",
            **settings,
        }
        config = RankConfig(
            num_items=vocab.num_items,
            num_categories=vocab.num_categories,
            num_brands=vocab.num_brands,
            max_history=max_history,
            sequence_backend=backend,
            **fields,
        )
        return examples, config

    return make
