"""Forecast accuracy metrics on NumPy arrays (CPU, float64).

Conventions: ``y`` holds actuals of any shape ``(...)``; a point forecast has the same shape;
quantile forecasts add a trailing axis ``(..., Q)`` matching ``quantiles``; samples add a trailing
axis ``(..., S)``. Weighted metrics divide by ``sum(|y|)`` over everything scored, the retail
convention (GluonTS' ``wQuantileLoss``, M5's weighting by volume).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUANTILES_WQL: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _denominator(y: np.ndarray) -> float:
    denom = float(np.abs(y).sum())
    if denom <= 0:
        raise ValueError("y: weighted metrics need sum(|y|) > 0, found only zeros")
    return denom


def wmape(y, y_hat) -> float:
    """Weighted MAPE: ``sum|y - y_hat| / sum|y|``."""
    y, y_hat = _f64(y), _f64(y_hat)
    return float(np.abs(y - y_hat).sum() / _denominator(y))


def seasonal_scale(history: Sequence[np.ndarray], season: int = 1) -> np.ndarray:
    """MASE scale per series: mean ``|y_t - y_{t-season}|`` over each in-sample history.

    Args:
        history: one 1-D array per series (training part only).
        season: seasonal lag ``m`` (1 for the naive scale).

    Returns:
        ``(n_series,)`` float64; NaN where a series is too short or constant at that lag.
    """
    out = np.full(len(history), np.nan)
    for i, h in enumerate(history):
        h = _f64(h)
        if h.size > season:
            d = np.abs(h[season:] - h[:-season]).mean()
            out[i] = d if d > 0 else np.nan
    return out


def mase(y, y_hat, scale) -> float:
    """Mean absolute scaled error: mean over series of ``mean_t |y - y_hat| / scale_series``.

    Args:
        y, y_hat: ``(n_series, horizon)``.
        scale: ``(n_series,)`` from :func:`seasonal_scale`; series with a NaN scale are skipped.
    """
    y, y_hat, scale = _f64(y), _f64(y_hat), _f64(scale)
    if y.ndim != 2 or y.shape != y_hat.shape or scale.shape != (y.shape[0],):
        raise ValueError(
            f"mase: expected y, y_hat (n, h) and scale (n,), found {y.shape}, {y_hat.shape}, "
            f"{scale.shape}"
        )
    ok = np.isfinite(scale)
    if not ok.any():
        return float("nan")
    per_series = np.abs(y - y_hat)[ok].mean(axis=1) / scale[ok]
    return float(per_series.mean())


def pinball(y, q_pred, q: float) -> np.ndarray:
    """Elementwise quantile (pinball) loss ``max(q (y - p), (q - 1)(y - p))``."""
    e = _f64(y) - _f64(q_pred)
    return np.maximum(q * e, (q - 1.0) * e)


def weighted_quantile_loss(y, q_preds, quantiles: Sequence[float] = QUANTILES_WQL) -> float:
    """Mean over quantiles of ``2 * sum(pinball_q) / sum|y|`` (GluonTS ``mean_wQuantileLoss``).

    Args:
        y: actuals ``(...)``.
        q_preds: ``(..., Q)`` quantile forecasts, in the order of ``quantiles``.
    """
    y, q_preds = _f64(y), _f64(q_preds)
    if q_preds.shape != (*y.shape, len(quantiles)):
        raise ValueError(
            f"q_preds: expected shape {(*y.shape, len(quantiles))}, found {q_preds.shape}"
        )
    denom = _denominator(y)
    losses = [2.0 * pinball(y, q_preds[..., i], q).sum() / denom for i, q in enumerate(quantiles)]
    return float(np.mean(losses))


def crps_from_samples(y, samples) -> np.ndarray:
    """CRPS of each point from samples: ``E|X - y| - 0.5 E|X - X'|`` (empirical distribution).

    ``E|X - X'|`` uses the sorted-sample identity ``(2 / S^2) sum_i (2i - S - 1) x_(i)``, so the cost
    is ``O(S log S)`` per point instead of ``O(S^2)``.

    Args:
        y: ``(...)``; samples: ``(..., S)``.

    Returns:
        ``(...)`` float64.
    """
    y, x = _f64(y), _f64(samples)
    if x.shape[:-1] != y.shape:
        raise ValueError(f"samples: expected shape {(*y.shape, 'S')}, found {x.shape}")
    s = x.shape[-1]
    term1 = np.abs(x - y[..., None]).mean(-1)
    xs = np.sort(x, axis=-1)
    i = np.arange(1, s + 1, dtype=np.float64)
    gini = (2.0 / (s * s)) * (xs * (2.0 * i - s - 1.0)).sum(-1)
    return term1 - 0.5 * gini


def weighted_crps(y, samples) -> float:
    """Sum of sample CRPS over all points divided by ``sum|y|``."""
    y = _f64(y)
    return float(crps_from_samples(y, samples).sum() / _denominator(y))


def crps_from_quantiles(y, q_preds, quantiles: Sequence[float]) -> np.ndarray:
    """CRPS approximated from a quantile grid: ``2 * mean_q pinball_q`` (midpoint rule of
    ``CRPS = int_0^1 2 pinball_q dq``), per point, shape ``(...)``."""
    y, q_preds = _f64(y), _f64(q_preds)
    return np.mean([2.0 * pinball(y, q_preds[..., i], q) for i, q in enumerate(quantiles)], axis=0)


def coverage(y, lower, upper) -> float:
    """Share of actuals inside ``[lower, upper]``."""
    y = _f64(y)
    return float(((y >= _f64(lower)) & (y <= _f64(upper))).mean())


def interval_coverages(y, samples, levels: Sequence[int] = (50, 80, 95)) -> dict[str, float]:
    """Central-interval coverage from samples, ``{"coverage_50": ..., ...}``."""
    out = {}
    for level in levels:
        a = (1.0 - level / 100.0) / 2.0
        lo, hi = np.quantile(_f64(samples), [a, 1.0 - a], axis=-1)
        out[f"coverage_{level}"] = coverage(y, lo, hi)
    return out
