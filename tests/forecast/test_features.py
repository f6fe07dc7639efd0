"""Price features that read earlier periods: the same for history and horizon rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopml.forecast.features import (
    PRICE_WINDOW,
    FeatureSpec,
    dynamic_features,
    fit_feature_spec,
    price_lags,
)

from .conftest import split_future


def test_price_change_and_cut_below_regular_price():
    uid = np.array([1, 1, 1, 1, 2, 2])
    log_p = np.log(np.array([2.0, 2.0, 1.0, 2.0, 5.0, 4.0]))
    chg, reg = price_lags(uid, log_p)
    np.testing.assert_allclose(chg, [0, 0, np.log(0.5), np.log(2.0), 0, np.log(0.8)], atol=1e-12)
    # regular price = max of the previous PRICE_WINDOW periods of the same series only
    np.testing.assert_allclose(reg, [0, 0, np.log(0.5), 0, 0, np.log(0.8)], atol=1e-12)
    long = np.log(np.r_[4.0, np.full(PRICE_WINDOW, 2.0), 2.0])
    _, reg_long = price_lags(np.zeros(len(long), int), long)
    assert reg_long[-1] == 0.0  # the 4.0 has left the window
    assert reg_long[PRICE_WINDOW] < 0.0  # still inside it


def test_horizon_features_read_the_history(sales):
    df, static = sales
    spec = fit_feature_spec(df, "D", static)
    assert spec.price_lags and "price_chg" in spec.real_names
    whole, _ = dynamic_features(df, spec)
    hist, futr, _ = split_future(df, 7)
    fut_real, fut_cat = dynamic_features(futr, spec, history=hist)
    is_fut = df["ds"] > df.groupby("unique_id")["ds"].transform("max") - pd.Timedelta(days=7)
    np.testing.assert_allclose(fut_real, whole[is_fut.to_numpy()], rtol=1e-6)
    alone, _ = dynamic_features(futr, spec)  # without the history the first step is wrong
    assert not np.allclose(alone, whole[is_fut.to_numpy()])


def test_old_spec_without_price_lags_keeps_its_features(sales):
    df, static = sales
    d = fit_feature_spec(df, "D", static).to_dict()
    d.pop("price_lags"), d.pop("price_scale"), d.pop("annual")
    old = FeatureSpec.from_dict(d)
    real, _ = dynamic_features(df, old)
    assert real.shape[1] == old.num_real == len(old.real_names)
    assert "price_chg" not in old.real_names and "year_sin" not in old.real_names


def test_annual_phase_for_daily_data_only(sales):
    df, static = sales
    spec = fit_feature_spec(df, "D", static)
    real, _ = dynamic_features(df, spec)
    sin, cos = (real[:, spec.real_names.index(n)] for n in ("year_sin", "year_cos"))
    np.testing.assert_allclose(sin**2 + cos**2, 1.0, rtol=1e-5)
    doy = df["ds"].dt.dayofyear.to_numpy()
    np.testing.assert_allclose(sin[doy == 1], 0.0, atol=1e-6)  # 1 January: phase 0
    np.testing.assert_allclose(cos[doy == 1], 1.0, atol=1e-6)
    # a quarter of a year later the phase is pi / 2
    np.testing.assert_allclose(sin[doy == 92], np.sin(2 * np.pi * 91 / 365.25), rtol=1e-5)
    monthly = df[df["ds"].dt.is_month_start].reset_index(drop=True)
    assert not fit_feature_spec(monthly, "MS").annual
    weekly = df[df["ds"].dt.weekday == 0].reset_index(drop=True)
    assert not fit_feature_spec(weekly, "W-MON").annual
