"""Split-conformal calibration of the forecast's spread, per horizon step.

The network's intervals can be too narrow (Dominick's OJ: 80% intervals covered 65%) or too wide
(the small world: 90%). After training, the estimator forecasts held-out validation horizons and,
for each step ``t``, computes one conformity score per observed actual on the scaled axis ``z``
(``log1p(y)``, ``log1p(y) - log(nu)`` or ``y / nu``; the score is invariant to the per-series
``nu``, so it is computed from ``log1p(y)`` or ``y``)::

    s = (z - m) / (q_hi - m)   if z >= m        (m = median, q_hi = upper quantile of the level)
    s = (m - z) / (m - q_lo)   otherwise

i.e. the factor by which the central interval of ``level`` must be stretched around the median to
reach the actual. The ``level`` quantile ``f_t`` of the step's scores is its *spread*: forecasts
scale every draw's distance to the median by ``f_t`` (``predict.sample_paths``), so the ``level``
interval covers ``level`` of exchangeable new actuals, and the other levels move with it. (The
plain empirical quantile, not split conformal's conservative rank ``ceil((n + 1) level)``: the
goal is coverage close to ``level``, not at least ``level``.) A step with fewer than
``MIN_PER_STEP`` observed actuals uses the scores of all steps pooled.
"""

from __future__ import annotations

import numpy as np

SPREAD_RANGE = (0.25, 4.0)
MIN_PER_STEP = 50


def conformal_spread(
    samples: np.ndarray,
    y: np.ndarray,
    observed: np.ndarray,
    scaling: str,
    level: float = 0.8,
) -> np.ndarray:
    """Per-step spread factors ``(V,)`` from validation forecasts.

    Args:
        samples: ``(n, S, V)`` sampled forecasts (units of ``y``); y: ``(n, V)`` actuals;
        observed: ``(n, V)`` bool, which actuals count; scaling: the model's target scaling.
        level: central interval to calibrate (0.8: the 10%-90% band).

    Returns:
        ``(V,)`` float32 in ``SPREAD_RANGE`` (1.0 where a step has no observed actual).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a probability in (0, 1), found {level}")
    z_of = np.log1p if scaling in ("log1p", "logmean") else (lambda v: v)
    a = (1.0 - level) / 2.0
    lo, med, hi = (z_of(q) for q in np.quantile(samples, [a, 0.5, 1.0 - a], axis=1))  # (n, V)
    z = z_of(np.asarray(y, np.float64))
    up = z >= med
    width = np.where(up, hi - med, med - lo)
    dist = np.abs(z - med)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(dist == 0, 0.0, np.where(width > 0, dist / width, np.inf))
    out = np.ones(samples.shape[2], np.float64)
    if not observed.any():
        return out.astype(np.float32)
    pooled = np.quantile(score[observed], level)
    for t in range(samples.shape[2]):
        s = score[observed[:, t], t]
        out[t] = np.quantile(s, level) if len(s) >= MIN_PER_STEP else pooled
    return np.clip(np.nan_to_num(out, posinf=SPREAD_RANGE[1]), *SPREAD_RANGE).astype(np.float32)


def interval_coverage(
    samples: np.ndarray, y: np.ndarray, observed: np.ndarray, level: float = 0.8
) -> float:
    """Share of observed actuals inside the central ``level`` interval of ``samples (n, S, V)``."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a], axis=1)
    inside = (y >= lo) & (y <= hi)
    return float(inside[observed].mean()) if observed.any() else float("nan")
