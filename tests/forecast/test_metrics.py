"""Metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from shopml.forecast import metrics as M


def test_wmape_by_hand():
    # |1-2| + |3-3| + |0-1| + |4-2| = 4, sum y = 8
    assert M.wmape([1, 3, 0, 4], [2, 3, 1, 2]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="sum"):
        M.wmape([0, 0], [1, 1])


def test_mase_by_hand():
    hist = [np.array([1.0, 3.0, 2.0, 4.0]), np.array([5.0, 5.0, 5.0])]
    scale = M.seasonal_scale(hist, season=1)
    # series 0: diffs 2, 1, 2 -> 5/3; series 1 constant -> NaN (skipped)
    assert scale[0] == pytest.approx(5 / 3) and np.isnan(scale[1])
    y = np.array([[2.0, 2.0], [5.0, 5.0]])
    yhat = np.array([[3.0, 0.0], [0.0, 0.0]])
    # series 0: mean |e| = 1.5, / (5/3) = 0.9
    assert M.mase(y, yhat, scale) == pytest.approx(0.9)
    assert M.seasonal_scale([np.array([1.0, 2.0, 1.0, 4.0])], season=2)[0] == pytest.approx(1.0)


def test_weighted_quantile_loss_by_hand():
    y = np.array([10.0, 0.0])
    q = np.array([[8.0, 12.0], [1.0, 2.0]])  # quantiles 0.1, 0.9
    # pinball 0.1: y0 e=2 -> 0.2; y1 e=-1 -> 0.9 ; sum 1.1 -> 2*1.1/10 = 0.22
    # pinball 0.9: y0 e=-2 -> 0.2; y1 e=-2 -> 0.2 ; sum 0.4 -> 0.08
    assert M.weighted_quantile_loss(y, q, (0.1, 0.9)) == pytest.approx((0.22 + 0.08) / 2)
    with pytest.raises(ValueError, match="q_preds"):
        M.weighted_quantile_loss(y, q, (0.1, 0.5, 0.9))


def test_crps_from_samples_by_hand_and_brute_force():
    # samples {0, 2}, y = 1: E|X-y| = 1; E|X-X'| = (0 + 2 + 2 + 0) / 4 = 1 -> CRPS 0.5
    assert M.crps_from_samples(np.array(1.0), np.array([0.0, 2.0])) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 50))
    y = rng.normal(size=3)
    brute = np.abs(x - y[:, None]).mean(1) - 0.5 * np.abs(x[:, :, None] - x[:, None, :]).mean(
        (1, 2)
    )
    np.testing.assert_allclose(M.crps_from_samples(y, x), brute, rtol=1e-12)
    # a point mass: CRPS = absolute error
    assert M.crps_from_samples(np.array(3.0), np.full(10, 1.0)) == pytest.approx(2.0)


def test_crps_of_normal_samples_matches_closed_form():
    rng = np.random.default_rng(1)
    x = rng.normal(size=20000)
    # CRPS(N(0,1), 0) = 2 phi(0) - 1/sqrt(pi)
    expect = 2 / np.sqrt(2 * np.pi) - 1 / np.sqrt(np.pi)
    assert M.crps_from_samples(np.array(0.0), x) == pytest.approx(expect, rel=0.02)


def test_crps_from_quantiles_and_coverage():
    y = np.array([1.0, 5.0])
    q = np.array([[0.0, 2.0], [4.0, 6.0]])
    # pinball 0.25: y0 e=1 -> .25; y1 e=1 -> .25 ; pinball 0.75: y0 e=-1 -> .25; y1 e=-1 -> .25
    np.testing.assert_allclose(M.crps_from_quantiles(y, q, (0.25, 0.75)), [0.5, 0.5])
    assert M.coverage([1, 2, 3, 10], [0, 0, 0, 0], [2, 2, 2, 2]) == pytest.approx(0.5)
    cov = M.interval_coverages(np.zeros(4), np.tile(np.linspace(-1, 1, 101), (4, 1)), (50, 80))
    assert cov == {"coverage_50": 1.0, "coverage_80": 1.0}
