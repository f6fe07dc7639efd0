"""Baselines through the field's libraries, all returning quantile grids ``(n, H, Q)``.

* statsforecast (local models, refit at every origin): ``SeasonalNaive`` and ``AutoETS`` with their
  own prediction intervals (a series whose forecast is non-finite or beyond 3x its history's
  maximum falls back to seasonal naive: :func:`fall_back`; the backtest counts them); ``CrostonClassic`` and ``TSB`` (alpha_d = alpha_p = 0.1) with
  conformal intervals (statsforecast's ``ConformalIntervals``, 2 windows), since these intermittent
  models have no distribution of their own.
* LightGBM (one global direct model per quantile level, ``objective="quantile"``): features known at
  the forecast origin (last 7 values, 7- and 28-step means, the seasonal lag of the target step),
  the step number, the target step's calendar and causal covariates (the AR-MDN feature set: price
  relative to reference, discount, promo, event flags and distances) and static codes.

Quantile levels: :data:`QUANTILE_GRID` (0.05, 0.10, ..., 0.95). Every forecast is clipped at 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopml.forecast.data import Panel

QUANTILE_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
LEVELS: list[int] = [10, 20, 30, 40, 50, 60, 70, 80, 90]
STATS_MODELS = ("snaive", "ets", "croston", "tsb")


def _grid_from_levels(out: pd.DataFrame, alias: str, n: int, horizon: int) -> np.ndarray:
    """Assemble ``(n, H, 19)`` quantiles from statsforecast's ``alias-lo-L`` / ``alias-hi-L``."""
    cols = {}
    for level in LEVELS:
        a = round((1 - level / 100) / 2, 2)
        cols[a] = out[f"{alias}-lo-{level}"].to_numpy()
        cols[round(1 - a, 2)] = out[f"{alias}-hi-{level}"].to_numpy()
    cols[0.5] = out[alias].to_numpy()
    q = np.stack([cols[round(x, 2)] for x in QUANTILE_GRID], axis=-1)
    q = np.sort(q, axis=-1)  # conformal bands can cross the point forecast by float noise
    return np.clip(q, 0.0, None).reshape(n, horizon, len(QUANTILE_GRID))


def statsforecast_quantiles(
    hist: pd.DataFrame, horizon: int, freq: str, season: int, name: str
) -> np.ndarray:
    """Fit the statsforecast model ``name`` on ``hist`` (``unique_id, ds, y``, gap-free) and
    forecast.

    Returns:
        ``(n_series, horizon, 19)`` with series in sorted ``unique_id`` order.
    """
    from statsforecast import StatsForecast
    from statsforecast.models import TSB, AutoETS, CrostonClassic, SeasonalNaive
    from statsforecast.utils import ConformalIntervals

    if name not in STATS_MODELS:
        raise ValueError(f"baselines: expected a name in {list(STATS_MODELS)}, found {name!r}")
    conformal = ConformalIntervals(h=horizon, n_windows=2)
    make = {
        "snaive": lambda: SeasonalNaive(season_length=season, alias="snaive"),
        "ets": lambda: AutoETS(season_length=season, alias="ets"),
        "croston": lambda: CrostonClassic(alias="croston", prediction_intervals=conformal),
        "tsb": lambda: TSB(0.1, 0.1, alias="tsb", prediction_intervals=conformal),
    }
    sf = StatsForecast(models=[make[name]()], freq=freq, n_jobs=1)
    out = sf.forecast(df=hist[["unique_id", "ds", "y"]], h=horizon, level=LEVELS)
    out = out.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    return _grid_from_levels(out, name, hist["unique_id"].nunique(), horizon)


def fall_back(
    grid: np.ndarray, fallback: np.ndarray, hist_max: np.ndarray, cap: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Replace the forecasts of series whose grid is non-finite or far outside their history.

    A series falls back when any quantile is NaN/inf or exceeds ``cap`` times its largest
    historical value (+1): e.g. AutoETS with a multiplicative trend extrapolated over a season.

    Args:
        grid, fallback: ``(n, H, Q)`` quantile grids (fallback: e.g. seasonal naive).
        hist_max: ``(n,)`` largest observed value of each series.

    Returns:
        ``(grid, fell_back (n,) bool)``.
    """
    bound = cap * np.asarray(hist_max, np.float64) + 1.0
    bad = ~np.isfinite(grid).all(axis=(1, 2)) | (
        np.nan_to_num(grid, nan=np.inf) > bound[:, None, None]
    ).any(axis=(1, 2))
    out = np.where(bad[:, None, None], fallback, grid)
    return out, bad


# ------------------------------------------------------------------------------------------------
def _lgb_features(
    panel: Panel,
    series: np.ndarray,
    origin: np.ndarray,
    horizon: int,
    season: int,
    long_window: int = 28,
) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows ``(len(series) * H, P)`` and labels for origins (last observed positions)."""
    base = panel.offsets[series]  # (M,)
    y = panel.y
    lags = np.stack([y[base + origin - j] for j in range(7)], axis=1)  # (M, 7)
    win = base[:, None] + origin[:, None] - np.arange(long_window)[None, :]
    mean_long = y[win].mean(1)
    mean7 = lags.mean(1)
    k = np.arange(1, horizon + 1)
    tgt = base[:, None] + origin[:, None] + k[None, :]  # (M, H)
    seas = base[:, None] + origin[:, None] + k - season * np.ceil(k / season).astype(np.int64)
    m, h = tgt.shape
    parts = [
        np.repeat(lags, h, axis=0),
        np.repeat(mean7, h)[:, None],
        np.repeat(mean_long, h)[:, None],
        y[seas].reshape(-1, 1),
        np.tile(k, m)[:, None],
        panel.real[tgt.reshape(-1)],
        panel.cat[tgt.reshape(-1)],
        np.repeat(panel.static_cat[series], h, axis=0),
        np.repeat(panel.static_real[series], h, axis=0),
    ]
    feats = np.concatenate([p.astype(np.float32) for p in parts], axis=1)
    return feats, y[tgt.reshape(-1)].astype(np.float64)


class LightGBMQuantiles:
    """Global direct LightGBM, one booster per level of :data:`QUANTILE_GRID`.

    Args:
        horizon: steps per forecast; season: seasonal lag (the frequency's, e.g. 7 daily).
        long_window: steps of the long moving-average feature (28; a year for M/Q data).
        stride: steps between training origins.
        max_rows: training rows kept (random subsample) to bound CPU time.
        n_estimators, learning_rate, num_leaves: LightGBM settings.
    """

    def __init__(
        self,
        horizon: int,
        season: int,
        long_window: int = 28,
        stride: int = 7,
        max_rows: int = 300_000,
        n_estimators: int = 100,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        seed: int = 0,
    ):
        self.horizon, self.season, self.max_rows, self.seed = horizon, season, max_rows, seed
        self.long_window, self.stride = long_window, stride
        self.params = dict(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=50,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            n_jobs=1,
            verbose=-1,
            random_state=seed,
        )
        self.models: list = []

    def fit(self, panel: Panel, cutoff_pos: np.ndarray) -> LightGBMQuantiles:
        """Train on origins ``o`` with ``o + H <= cutoff_pos[s]`` (exclusive), every ``stride``.

        Args:
            cutoff_pos: ``(S,)`` number of observations of each series before the first test
                origin (targets after it are never used).
        """
        import lightgbm as lgb

        min_origin = max(self.long_window - 1, self.season, 6)
        stride = self.stride
        series, origin = [], []
        for s in range(panel.num_series):
            last = int(cutoff_pos[s]) - 1 - self.horizon
            if last >= min_origin:
                o = np.arange(last, min_origin - 1, -stride)
                series.append(np.full(len(o), s))
                origin.append(o)
        if not series:
            raise ValueError("lightgbm: no series has enough history before the first cutoff")
        s_all, o_all = np.concatenate(series), np.concatenate(origin)
        rng = np.random.default_rng(self.seed)
        keep = self.max_rows // self.horizon
        if len(s_all) > keep:
            pick = rng.choice(len(s_all), keep, replace=False)
            s_all, o_all = s_all[pick], o_all[pick]
        x, y = _lgb_features(panel, s_all, o_all, self.horizon, self.season, self.long_window)
        self.models = [
            lgb.LGBMRegressor(objective="quantile", alpha=q, **self.params).fit(x, y)
            for q in QUANTILE_GRID
        ]
        return self

    def predict(self, panel: Panel, series: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """``(len(series), H, 19)`` quantiles for origins (last observed positions)."""
        x, _ = _lgb_features(panel, series, origin, self.horizon, self.season, self.long_window)
        q = np.stack([m.predict(x) for m in self.models], axis=-1)
        q = np.sort(np.clip(q, 0.0, None), axis=-1)  # fix quantile crossing
        return q.reshape(len(series), self.horizon, len(QUANTILE_GRID))
