"""Split-conformal calibration of the forecast's spread, per horizon step.

The network's intervals can be too narrow (Dominick's OJ: 80% intervals covered 65%) or too wide
(the small world: 90%). After training, the estimator forecasts held-out validation horizons and,
for each step ``t``, computes one conformity score per observed actual on the scaled axis ``z``
(``log1p(y)``, ``log1p(y) - log(nu)`` or ``y / nu``; the score is invariant to the per-series
``nu``, so it is computed from ``log1p(y)`` or ``y``)::

    s = (z - m) / (q_hi - m)   if z >= m        (m = median, q_hi = upper quantile of the level)
    s = (m - z) / (m - q_lo)   otherwise

i.e. the factor by which the central interval of ``level`` must be stretched around the median to
reach the actual. The ``level`` quantile ``f_{t,level}`` of the step's scores is its *spread*; it
is computed for the central levels 20/40/60/80/90% (those of wQL's quantiles), and forecasts scale
each draw's distance to the median by the spread interpolated at the draw's own central level
(``predict.apply_spread``), so each calibrated interval covers its level of exchangeable new
actuals. (The
plain empirical quantile, not split conformal's conservative rank ``ceil((n + 1) level)``: the
goal is coverage close to ``level``, not at least ``level``.) A step with fewer than
``MIN_PER_STEP`` observed actuals uses the scores of all steps pooled.

With ``sides=2`` (monthly and quarterly data by default, ``ARMDNConfig.calibration_sides``) the
two sides of the median get their own factors: the lower one is the ``(1 + level) / 2``
quantile of ``(m - z) / (m - q_lo)`` over actuals below the median (0 for the others), the upper
one likewise, so each tail misses ``(1 - level) / 2`` of the actuals on its own. A forecast whose
median runs above the actuals on validation (fpp3's PBS: 13% of the validation year below the
10% quantile, 9% above the 90% one) then widens its lower band and narrows its upper one instead
of stretching both.
"""

from __future__ import annotations

import numpy as np

SPREAD_RANGE = (0.25, 4.0)
MIN_PER_STEP = 50
LEVELS = (0.2, 0.4, 0.6, 0.8, 0.9)  # the central intervals of wQL's quantiles 0.1..0.9


def conformal_spread(
    samples: np.ndarray,
    y: np.ndarray,
    observed: np.ndarray,
    scaling: str,
    levels: tuple[float, ...] = LEVELS,
    sides: int = 1,
) -> np.ndarray:
    """Spread factors ``(V, len(levels))`` per horizon step and central level.

    Args:
        samples: ``(n, S, V)`` sampled forecasts (units of ``y``); y: ``(n, V)`` actuals;
        observed: ``(n, V)`` bool, which actuals count; scaling: the model's target scaling.
        levels: central intervals to calibrate, increasing (0.8: the 10%-90% band).
        sides: 1 (one factor for both sides of the median) or 2 (lower and upper factors).

    Returns:
        ``(V, L)`` float32 in ``SPREAD_RANGE`` (1.0 where a step has no observed actual), or
        ``(V, L, 2)`` (lower, upper) with ``sides=2``.
    """
    if any(not 0.0 < v < 1.0 for v in levels) or list(levels) != sorted(levels):
        raise ValueError(f"levels: expected increasing probabilities in (0, 1), found {levels}")
    if sides not in (1, 2):
        raise ValueError(f"sides: expected 1 or 2, found {sides}")
    z_of = np.log1p if scaling in ("log1p", "logmean") else (lambda v: v)
    z = z_of(np.asarray(y, np.float64))
    med = z_of(np.quantile(samples, 0.5, axis=1))  # (n, V)
    out = np.ones((samples.shape[2], len(levels), sides), np.float64)
    if observed.any():
        for j, level in enumerate(levels):
            a = (1.0 - level) / 2.0
            lo, hi = (z_of(q) for q in np.quantile(samples, [a, 1.0 - a], axis=1))  # (n, V)
            above = z >= med
            width = np.where(above, hi - med, med - lo)
            dist = np.abs(z - med)
            with np.errstate(divide="ignore", invalid="ignore"):
                score = np.where(dist == 0, 0.0, np.where(width > 0, dist / width, np.inf))
            if sides == 1:
                _step_quantiles(out[:, j, 0], score, observed, level)
            else:  # each side's own scores, 0 for actuals on the other side
                _step_quantiles(out[:, j, 0], np.where(above, 0.0, score), observed, 1.0 - a)
                _step_quantiles(out[:, j, 1], np.where(above, score, 0.0), observed, 1.0 - a)
    out = np.clip(np.nan_to_num(out, posinf=SPREAD_RANGE[1]), *SPREAD_RANGE).astype(np.float32)
    return out[..., 0] if sides == 1 else out


def _step_quantiles(out: np.ndarray, score: np.ndarray, observed: np.ndarray, q: float) -> None:
    """``out[t]`` = the ``q`` quantile of step ``t``'s observed scores (all steps' pooled where
    a step has fewer than ``MIN_PER_STEP``)."""
    pooled = np.quantile(score[observed], q)
    for t in range(score.shape[1]):
        s = score[observed[:, t], t]
        out[t] = np.quantile(s, q) if len(s) >= MIN_PER_STEP else pooled


def interval_coverage(
    samples: np.ndarray, y: np.ndarray, observed: np.ndarray, level: float = 0.8
) -> float:
    """Share of observed actuals inside the central ``level`` interval of ``samples (n, S, V)``."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a], axis=1)
    inside = (y >= lo) & (y <= hi)
    return float(inside[observed].mean()) if observed.any() else float("nan")
