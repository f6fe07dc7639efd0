"""Baselines that cannot blow up: an AutoETS forecast far outside a series' history falls back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopml.forecast.baselines import fall_back, statsforecast_quantiles


def test_a_series_that_makes_autoets_diverge_falls_back_to_seasonal_naive():
    rng = np.random.default_rng(0)
    n = 60
    surge = np.r_[10.0 + rng.normal(0, 1, n - 5), [40, 120, 400, 1300, 4000]]
    steady = 20.0 + 5 * np.sin(np.arange(n) * 2 * np.pi / 7) + rng.normal(0, 1, n)
    ds = pd.date_range("2024-01-01", periods=n, freq="D")
    hist = pd.DataFrame(
        {
            "unique_id": np.repeat(["steady", "surge"], n),
            "ds": np.tile(ds, 2),
            "y": np.r_[steady, surge],
        }
    )
    ets = statsforecast_quantiles(hist, 8, "D", 7, "ets")  # (2, 8, 19), sorted ids
    snaive = statsforecast_quantiles(hist, 8, "D", 7, "snaive")
    hist_max = np.array([steady.max(), surge.max()])
    assert ets[1].max() > 3 * surge.max()  # the extrapolated surge: far beyond anything seen
    fixed, fell = fall_back(ets, snaive, hist_max)
    assert fell.tolist() == [False, True]
    np.testing.assert_array_equal(fixed[0], ets[0])
    np.testing.assert_array_equal(fixed[1], snaive[1])
    assert fixed.max() <= 3 * hist_max.max() + 1
    nan = ets.copy()
    nan[0, 3, 5] = np.nan
    assert fall_back(nan, snaive, hist_max)[1].tolist() == [True, True]
