"""Sales calibration: the M5 statistics, weekday pattern, elasticity, events, lifecycle, noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopml.formats import readers
from shopml.world.describe import event_effects, price_elasticity, sales_statistics
from shopml.world.sales import DEAL_LIFT, DOW_FACTORS


@pytest.fixture(scope="module")
def sales(tiny_world):
    return readers.read_sales(tiny_world)


@pytest.fixture(scope="module")
def calendar(tiny_world):
    return readers.read_calendar(tiny_world)


@pytest.fixture(scope="module")
def truth(tiny_world):
    return readers.read_sales_truth(tiny_world)


def test_m5_statistics(sales, calendar):
    s = sales_statistics(sales, calendar)
    assert 0.45 <= s["zero_share"] <= 0.62  # M5: 0.544
    assert 0.35 <= s["series_mean_quantiles"]["p50"] <= 1.0  # M5: 0.64, "well under one a day"
    assert 0.35 <= s["top10_share"] <= 0.7  # M5: 0.515


def test_weekday_pattern(sales, truth):
    dow = truth["ds"].dt.dayofweek.to_numpy()
    m = np.bincount(dow, weights=truth["mean_base"].to_numpy(), minlength=7) / np.bincount(
        dow, minlength=7
    )
    np.testing.assert_allclose(m / m.mean(), DOW_FACTORS / DOW_FACTORS.mean(), rtol=0.05)
    f = sales_statistics(sales)["dow_factors"]
    assert (f["Sat"] + f["Sun"]) / (f["Wed"] + f["Thu"]) > 1.15  # noisy observed units


def test_price_elasticity_recovered(sales, calendar):
    assert -3.0 <= price_elasticity(sales, calendar) <= -2.0  # generated around -2.5


def test_promo_about_doubles_demand(sales, truth):
    # Noise-free: the mean on promo days over the same product's non-promo days at equal discount.
    df = sales[["unique_id", "discount", "promo"]].assign(m=truth["mean_base"].to_numpy())
    df = df[df["discount"] > 0]
    g = df.groupby(["unique_id", "discount", "promo"])["m"].mean().unstack("promo").dropna()
    ratio = float(np.exp(np.log(g[1] / g[0]).median()))
    assert 1.5 <= ratio <= 3.0


def test_festival_lift_dip_and_hangover(sales, calendar):
    e = event_effects(sales, calendar)
    assert e["festival"] > 2.0
    assert e["before"] < 0.95
    assert e["after"] < 0.95
    fest = calendar[calendar["is_festival"] == 1]
    assert 5 <= fest.groupby(fest["ds"].dt.year).size().min() <= 8  # multi-day, every year
    assert fest["ds"].dt.month.isin([9, 10]).all()  # autumn
    assert calendar["event"].nunique() >= 5  # festival + smaller events + ""


def test_calendar_covers_sales_plus_90_days(sales, calendar):
    assert calendar["ds"].min() <= sales["ds"].min()
    assert calendar["ds"].max() == sales["ds"].max() + pd.Timedelta(days=90)
    assert calendar["ds"].diff().dropna().dt.days.eq(1).all()
    on = calendar["event"] != ""
    assert (calendar.loc[on, "days_to_event"] == 0).all()


def test_launches_and_delistings(tiny_world, sales):
    cat = readers.read_catalog(tiny_world, check_images="none")
    span = sales.groupby("unique_id")["ds"].agg(["min", "max", "size"])
    span = span.join(cat.set_index("product_id")[["launch_date", "delist_date"]])
    assert (span["min"] >= span["launch_date"]).all()
    gone = span["delist_date"].notna()
    assert gone.sum() >= 5
    assert (span.loc[gone, "max"] < span.loc[gone, "delist_date"]).all()
    assert (span["size"] < 60).sum() >= 3  # cold starts with short histories


def test_noise_is_negative_binomial_around_the_mean(tiny_world, sales, truth):
    y = sales["y"].to_numpy()
    m = truth["mean"].to_numpy()
    assert abs(y.sum() / m.sum() - 1) < 0.03
    k = pd.read_parquet(tiny_world / "truth" / "products.parquet").set_index("product_id")[
        "dispersion"
    ]
    kk = truth["unique_id"].map(k).to_numpy()
    pearson = (y - m) ** 2 / (m + m**2 / kk)
    assert 0.9 <= pearson.mean() <= 1.1
    assert (y == np.round(y)).all() and (y >= 0).all()


def test_hidden_regime_is_multimodal(truth, calendar):
    fest_days = calendar.loc[calendar["is_festival"] == 1, "ds"]
    on_fest = truth["ds"].isin(fest_days)
    share_fest = truth.loc[on_fest, "regime"].mean()
    share_else = truth.loc[~on_fest, "regime"].mean()
    assert 0.03 <= share_fest <= 0.1 and 0.005 <= share_else <= 0.02
    r = truth["regime"] == 1
    np.testing.assert_allclose(truth.loc[r, "mean"] / truth.loc[r, "mean_base"], DEAL_LIFT)
    np.testing.assert_allclose(truth.loc[~r, "mean"], truth.loc[~r, "mean_base"])


def test_annual_seasonality_per_category(tiny_world, truth):
    cat = readers.read_catalog(tiny_world, check_images="none").set_index("product_id")["category"]
    t = truth.assign(category=truth["unique_id"].map(cat).to_numpy(), month=truth["ds"].dt.month)
    summer = t[t["month"].isin([6, 7])].groupby("category")["mean_base"].mean()
    winter = t[t["month"].isin([12, 1])].groupby("category")["mean_base"].mean()
    ratio = summer / winter
    assert ratio["sunglasses"] > 1.5  # peaks mid-year
    assert ratio["mugs"] < 0.8  # peaks at the turn of the year
