"""Small synthetic sales frames of the world's shape (sales + calendar columns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_sales(
    n_series: int = 6, n_days: int = 120, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(df, static_df)``: daily sales with price, discount, promo and event covariates."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=n_days, freq="D")
    rows = []
    for i in range(n_series):
        base = rng.uniform(0.5, 8.0)
        list_price = rng.uniform(5, 50)
        promo = (rng.random(n_days) < 0.1).astype(np.int8)
        discount = np.where(promo == 1, rng.uniform(0.1, 0.4, n_days), 0.0)
        festival = ((np.arange(n_days) % 60) < 3).astype(np.int8)
        lam = base * (1 + 0.3 * (ds.weekday >= 5)) * np.exp(2.0 * discount) * (1 + 2 * festival)
        y = rng.poisson(lam).astype(np.float64)
        days_to = (60 - np.arange(n_days) % 60) % 60
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": np.int64(100 + i),
                    "ds": ds,
                    "y": y,
                    "price": list_price * (1 - discount),
                    "discount": discount,
                    "promo": promo,
                    "event": np.where(festival == 1, "festival", ""),
                    "is_festival": festival,
                    "days_to_event": days_to.astype(np.int32),
                }
            )
        )
    df = pd.concat(rows, ignore_index=True)
    static = pd.DataFrame(
        {
            "unique_id": np.arange(100, 100 + n_series, dtype=np.int64),
            "category": [f"c{i % 2}" for i in range(n_series)],
            "brand": [f"b{i % 3}" for i in range(n_series)],
            "price": rng.uniform(5, 50, n_series),
        }
    )
    return df, static


def split_future(df: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(history, futr_df, actuals)``: the last ``horizon`` days of every series held out."""
    last = df.groupby("unique_id")["ds"].transform("max")
    fut = df["ds"] > last - pd.Timedelta(days=horizon)
    hist = df[~fut].reset_index(drop=True)
    futr = df[fut].drop(columns=["y"]).reset_index(drop=True)
    return hist, futr, df[fut].reset_index(drop=True)


@pytest.fixture(scope="module")
def sales():
    return make_sales()
