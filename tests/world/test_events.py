"""Users, events and impressions: ordering, heavy tails, the click model's recency signal, split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopml.formats import readers
from shopml.world.events import SLATE, ProductIndex, make_users
from shopml.world.generate import SCALE_CONFIGS


@pytest.fixture(scope="module")
def events(tiny_world):
    return readers.read_events(tiny_world)


@pytest.fixture(scope="module")
def impressions(tiny_world):
    return readers.read_impressions(tiny_world)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    r = pd.Series(score).rank().to_numpy()  # average ranks for ties
    n1 = label.sum()
    n0 = label.size - n1
    return float((r[label == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_events_sorted_and_valid(tiny_world, events):
    raw = pd.read_parquet(tiny_world / "events.parquet")
    key = raw[["user_id", "ts"]]
    assert key.equals(key.sort_values(["user_id", "ts"], kind="stable"))
    assert set(raw["action"]) == {"view", "click", "cart", "purchase"}
    share = raw["action"].value_counts(normalize=True)
    assert share["view"] > share["click"] > share["cart"] > share["purchase"] > 0


def test_history_lengths_heavy_tailed(events):
    lens = events.groupby("user_id").size().to_numpy()
    assert lens.min() >= 3
    assert lens.max() >= 5 * np.median(lens)


def test_medium_scale_has_users_with_thousands_of_events(tiny_world):
    cfg = SCALE_CONFIGS["medium"]
    cat = pd.read_parquet(tiny_world / "catalog.parquet")
    truth = pd.read_parquet(tiny_world / "truth" / "products.parquet")
    index = ProductIndex(cat, truth, np.stack(truth["vector"].to_numpy()))
    users = make_users(np.random.default_rng(0), cfg.n_users, cfg.users, index, 63_158_400)
    assert (users.n_events >= 1000).sum() >= 50
    assert np.median(users.n_events) < 100


def test_slates_and_time_split(tiny_world, impressions):
    req = impressions.groupby(["user_id", "ts"])["position"]
    assert (req.size() == SLATE).all()
    assert (impressions.groupby(["user_id", "ts"])["product_id"].nunique() == SLATE).all()
    assert (req.apply(lambda p: sorted(p) == list(range(1, SLATE + 1)))).all()
    train = impressions[impressions["split"] == "train"]
    test = impressions[impressions["split"] == "test"]
    assert len(train) > 0 and len(test) > 0
    assert train["ts"].max() < test["ts"].min()
    assert 0.05 <= impressions["label"].mean() <= 0.3
    ctr = impressions.groupby("position")["label"].mean()
    assert ctr.loc[1:3].mean() > ctr.loc[8:10].mean()  # position bias


def test_each_request_has_history_before_it(impressions, events):
    first = events.groupby("user_id")["ts"].min()
    req = impressions.groupby(["user_id", "ts"]).size().reset_index()
    assert (req["ts"].to_numpy() > req["user_id"].map(first).to_numpy()).all()


def test_recent_items_carry_signal_mean_pooling_loses(tiny_world, impressions, events):
    """A max over the last items' similarity ranks clicks clearly better than mean pooling."""
    truth = pd.read_parquet(tiny_world / "truth" / "products.parquet")
    vec = np.stack(truth["vector"].to_numpy())
    row = pd.Series(np.arange(len(truth)), index=truth["product_id"])
    hist = {
        u: (g["ts"].to_numpy(), row[g["product_id"]].to_numpy())
        for u, g in events.groupby("user_id")
    }
    cand = row[impressions["product_id"]].to_numpy()
    mean_s, max_s = [], []
    for k, (u, t) in enumerate(
        zip(impressions["user_id"][::SLATE], impressions["ts"][::SLATE], strict=True)
    ):
        ts, items = hist[u]
        h = vec[items[ts < t]]
        c = vec[cand[k * SLATE : (k + 1) * SLATE]]
        mean_s.append(c @ h.mean(axis=0))
        max_s.append((c @ h[-10:].T).max(axis=1))
    label = impressions["label"].to_numpy()
    auc_mean = _auc(np.concatenate(mean_s), label)
    auc_max = _auc(np.concatenate(max_s), label)
    assert auc_max > auc_mean + 0.04, (auc_max, auc_mean)
    assert auc_max > 0.75


@pytest.mark.parametrize("name", ["events.parquet", "impressions.parquet"])
def test_products_are_on_sale_when_seen(tiny_world, name):
    df = pd.read_parquet(tiny_world / name, columns=["product_id", "ts"])
    cat = pd.read_parquet(tiny_world / "catalog.parquet").set_index("product_id")
    j = df.join(cat[["launch_date", "delist_date"]], on="product_id")
    assert (j["ts"] >= j["launch_date"]).all()
    assert (j["delist_date"].isna() | (j["ts"] < j["delist_date"])).all()
    sales = pd.read_parquet(tiny_world / "sales.parquet", columns=["ds"])
    assert df["ts"].max() < sales["ds"].max() + pd.Timedelta(days=1)
