from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from shopml.rank.batch import HISTORY_KEYS, JaggedHistory, PaddedHistory
from shopml.rank.data import RankExamples, time_buckets
from shopml.rank.loader import BatchLoader
from shopml.rank.tables import RankTables
from shopml.rank.vocab import build_vocab


def _examples(frames, max_history=4, split="train"):
    tables = RankTables.from_frames(*frames)
    vocab = build_vocab(tables.catalog)
    return tables, vocab, RankExamples.build(tables, vocab, split, max_history, 12)


@pytest.mark.parametrize("max_history", [1, 4, 1000])
def test_history_is_strictly_before_and_truncated(frames, max_history):
    catalog, events, impressions = frames
    # an event at exactly the impression time must be excluded
    first = impressions.iloc[0]
    events = pd.concat(
        [
            events,
            pd.DataFrame(
                {
                    "user_id": [first.user_id],
                    "product_id": [int(catalog.product_id.iloc[0])],
                    "ts": [first.ts],
                    "action": ["purchase"],
                }
            ),
        ],
        ignore_index=True,
    )
    tables, vocab, ex = _examples((catalog, events, impressions), max_history, split=None)
    assert len(ex) == len(impressions)
    for k in range(len(impressions)):
        row = impressions.iloc[k]
        ev = events[(events.user_id == row.user_id) & (events.ts < row.ts)].sort_values(
            "ts", kind="stable"
        )
        ev = ev.tail(max_history)
        got = ex.ev_item[ex.hist_start[k] : ex.hist_start[k] + ex.hist_len[k]]
        np.testing.assert_array_equal(got, vocab.item_rows(ev.product_id.to_numpy()))
    assert ex.hist_len.max() <= max_history


def test_collate_jagged_and_padded_agree(frames):
    _, vocab, ex = _examples(frames, max_history=6)
    idx = np.array([3, 0, 7, 5, 1])
    jag = ex.collate(idx, "jagged")
    pad = ex.collate(idx, "padded")
    assert isinstance(jag.history, JaggedHistory) and isinstance(pad.history, PaddedHistory)
    kjt = jag.history.kjt
    assert kjt.keys == list(HISTORY_KEYS)
    assert kjt.batch_size == len(idx)
    lengths = torch.as_tensor(ex.hist_len[idx])
    assert torch.equal(pad.history.lengths, lengths)
    assert jag.history.max_seqlen == int(lengths.max())
    for key, jt in kjt.to_dict().items():
        assert torch.equal(jt.lengths(), lengths)
        dense = jt.to_padded(6)
        assert torch.equal(dense, pad.history.features[key])
    assert (jag.history.times <= 0).all()
    assert torch.equal(jag.candidates["item"], torch.as_tensor(ex.cand_item[idx]))
    cats = torch.as_tensor(vocab.item_category)[jag.history.kjt.to_dict()["item"].values]
    assert torch.equal(cats, kjt.to_dict()["category"].values)
    assert torch.equal(jag.labels, pad.labels)


def test_time_buckets_are_monotone_and_bounded():
    ages = np.array([0, 30, 60, 120, 3600, 86400, 1e9])
    b = time_buckets(ages, 8)
    assert (np.diff(b) >= 0).all() and b.min() == 1 and b.max() == 8


def test_loader_shards_union_equals_single_process(frames):
    _, _, ex = _examples(frames)
    single = BatchLoader(ex, 16, shuffle=True, seed=3)
    shards = [BatchLoader(ex, 16, shuffle=True, seed=3, rank=r, world_size=2) for r in range(2)]
    for loader in (single, *shards):
        loader.set_epoch(1)
    s_batches = single._batches()
    r_batches = [s._batches() for s in shards]
    assert len(r_batches[0]) == len(r_batches[1]) == len(s_batches)
    for i, full in enumerate(s_batches):
        union = np.sort(np.concatenate([r_batches[0][i], r_batches[1][i]]))
        np.testing.assert_array_equal(union, np.sort(full))
    assert shards[0].global_batch_sizes() == [len(b) for b in s_batches]
    batches = list(single)
    assert sum(len(b) for b in batches) == len(ex)


def test_loader_with_a_worker_and_pinned_memory(frames):
    _, _, ex = _examples(frames)
    loader = BatchLoader(ex, 32, "padded", num_workers=1)
    sizes = [len(b) for b in loader]
    assert sum(sizes) == len(ex)


def test_bad_inputs_are_rejected(frames, tmp_path):
    catalog, events, impressions = frames
    with pytest.raises(ValueError, match="events: missing column"):
        RankTables.from_frames(catalog, events.rename(columns={"action": "kind"}), impressions)
    with pytest.raises(ValueError, match="impressions: missing column"):
        RankTables.from_frames(catalog, events, impressions.drop(columns=["label"]))
    with pytest.raises(ValueError, match="catalog: expected at least one product"):
        RankTables.from_frames(catalog.iloc[:0], events, impressions)
    with pytest.raises(ValueError, match="impressions: expected at least one"):
        RankTables.from_frames(catalog, events, impressions.iloc[:0])
    bad = events.copy()
    bad.loc[0, "action"] = "hover"
    with pytest.raises(ValueError, match="action.*hover"):
        RankTables.from_frames(catalog, bad, impressions)
    bad = impressions.copy()
    bad.loc[0, "label"] = 3
    with pytest.raises(ValueError, match="label"):
        RankTables.from_frames(catalog, events, bad)
    tables = RankTables.from_frames(catalog, events, impressions)
    vocab = build_vocab(catalog)
    with pytest.raises(ValueError, match="max_history: expected an int >= 1, found 0"):
        RankExamples.build(tables, vocab, "train", 0, 8)
    with pytest.raises(ValueError, match="split"):
        RankExamples.build(tables, vocab, "valid", 4, 8)
    # files: empty parquet, missing file, CSV with timestamps as text
    catalog.to_parquet(tmp_path / "catalog.parquet")
    events.to_csv(tmp_path / "events.csv", index=False)
    impressions.iloc[:0].to_parquet(tmp_path / "impressions.parquet")
    with pytest.raises(ValueError, match="impressions: expected at least one"):
        RankTables.from_files(
            tmp_path / "catalog.parquet", tmp_path / "events.csv", tmp_path / "impressions.parquet"
        )
    with pytest.raises(ValueError, match="nope.parquet"):
        RankTables.from_files(tmp_path / "catalog.parquet", tmp_path / "nope.parquet", tmp_path)
    with pytest.raises(ValueError, match="world: expected a world directory"):
        RankTables.from_world(tmp_path / "missing")


def test_users_without_events_and_unknown_products(frames):
    catalog, events, impressions = frames
    imp = impressions.copy()
    imp.loc[0, "user_id"] = 10_000  # no events at all
    imp.loc[1, "product_id"] = 999_999  # not in the catalog -> row 0
    _, vocab, ex = _examples((catalog, events, imp), split=None)
    assert ex.hist_len[0] == 0
    assert ex.cand_item[1] == 0
    batch = ex.collate(np.array([0, 1]), "jagged")
    assert int(batch.history.lengths[0]) == 0


def test_a_directory_of_csv_files_is_read(frames, tmp_path):
    catalog, events, impressions = frames
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    impressions.to_csv(tmp_path / "impressions.csv", index=False)
    tables = RankTables.from_world(tmp_path)
    assert len(tables.events) == len(events)
    assert tables.impressions["ts"].equals(impressions["ts"])


def test_example_caps_keep_most_recent_train_and_first_test(tiny_world):
    from shopml.rank.data import load_examples
    from shopml.rank.tables import RankTables
    from shopml.rank.vocab import build_vocab

    tables = RankTables.from_world(tiny_world)
    vocab = build_vocab(tables.catalog)
    full_train, full_test = load_examples(tables, vocab, 16, 8)
    train, test = load_examples(tables, vocab, 16, 8, max_train=100, max_eval=50)
    assert len(train) == 100 and len(test) == 50
    assert train.imp_ts.min() >= np.sort(full_train.imp_ts)[-100]
    assert test.imp_ts.max() <= np.sort(full_test.imp_ts)[49]
    assert np.array_equal(train.ev_item, full_train.ev_item)
